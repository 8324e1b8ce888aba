#!/usr/bin/env bash
# dtype-check.sh: in one device call, the Must-show of the tensor-core
# issue for every --dtype: the GPU tests against the float64 reference, a
# PyTorch check of a dump, two processes bitwise identical,
# compute-sanitizer, the README's nsys command plus gpubench check, ncu's
# tensor pipe on one GEMM, and the speed table against PyTorch in the same
# call. Build here first:
#
#   make device && ../shared/device/fetch-nsys-deps.sh .nsys
#
# then run it on the GPU machine with .device and .nsys carried:
#   bash scripts/dtype-check.sh [DTYPES...]   (default: fp32 tf32 bf16)
# Every check prints "## ok ..." or "## FAIL ..."; the summary repeats
# them, and the script exits 1 if any failed.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/gpubench-dtype-check}
mkdir -p "$OUT" || exit 2
bin=.device/gpubench
dtypes=("$@")
[ ${#dtypes[@]} -gt 0 ] || dtypes=(fp32 tf32 bf16)
# shellcheck source=scripts/check-lib.sh
source scripts/check-lib.sh # the scripts run from the repository root
# torch_check's tolerances for an fp32-storage dump (bf16 dumps carry
# their own yardstick, PyTorch's bf16 step): TF32 products.
tc_flags() { [ "$1" = tf32 ] && echo "--loss-tol 1e-3 --grad-tol 5e-3" || true; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
$bin info >"$OUT/info.txt" 2>&1
check "info" $? 0 "$(grep -c -- '--dtype=' "$OUT/info.txt") dtype lines"

# The kernel tests (fp32 and the tensor-core tiers).
.device/kernels.test -test.count=1 -test.v >"$OUT/kernels.log" 2>&1
check "kernels.test" $? 0 "pass=$(grep -c -- '--- PASS' "$OUT/kernels.log") fail=$(grep -c -- '--- FAIL' "$OUT/kernels.log")"
[ -f .nsys/nsys-env.sh ] && source .nsys/nsys-env.sh

for dt in "${dtypes[@]}"; do
	.device/model-cuda.test -test.count=1 -test.v -dtype=$dt >"$OUT/model-$dt.log" 2>&1
	check "model-cuda.test $dt" $? 0 "pass=$(grep -c -- '--- PASS' "$OUT/model-$dt.log") fail=$(grep -c -- '--- FAIL' "$OUT/model-$dt.log")"
	for p in a b; do
		$bin --model=tiny --dtype=$dt --iters 1 --warmup 0 --dump "$OUT/dump-$dt-$p" >"$OUT/dump-$dt-$p.log" 2>&1
		check "dump $dt $p" $? 0
	done
	same=0
	for f in grads.safetensors outputs.safetensors; do cmp -s "$OUT/dump-$dt-a/$f" "$OUT/dump-$dt-b/$f" || same=1; done
	check "two processes bitwise $dt" $same 0
	python3 scripts/torch_check.py "$OUT/dump-$dt-a" $(tc_flags $dt) >"$OUT/torch-check-$dt.txt" 2>&1
	check "torch_check $dt" $? 0 "$(tail -1 "$OUT/torch-check-$dt.txt")"
	compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 \
		$bin --model=tiny --dtype=$dt --iters 1 --warmup 0 >"$OUT/memcheck-$dt.log" 2>&1
	check "memcheck $dt" $? 0 "$(grep -m1 'ERROR SUMMARY' "$OUT/memcheck-$dt.log")"
	rep="$OUT/profile_report_cpu_$dt"
	nsys profile -w true -t cuda,nvtx,osrt,cudnn,cublas -s process-tree --capture-range=cudaProfilerApi \
		--capture-range-end=stop --cudabacktrace=true -x true -f true -o "$rep" \
		$bin --model=small --dtype=$dt --batch-size 8 --profile >"$OUT/nsys-$dt.log" 2>&1
	check "nsys $dt" $? 0
	nsys export --type sqlite --force-overwrite true -o "$rep.sqlite" "$rep.nsys-rep" >>"$OUT/nsys-$dt.log" 2>&1
	$bin check --model=small --dtype=$dt --batch-size 8 "$rep.sqlite" >"$OUT/check-$dt.txt" 2>&1
	check "check $dt" $? 0 "$(grep -m1 'result:' "$OUT/check-$dt.txt")"
	rm -f "$rep.nsys-rep" "$rep.sqlite"
	rm -rf "$OUT/dump-$dt-b"
done

# ncu: the tensor pipe of one forward GEMM per tensor-core dtype.
for dt in tf32 bf16; do
	ncu --clock-control none --kernel-name "regex:matmul_forward_${dt}" --launch-count 1 \
		--metrics sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_tensor_op_hmma.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,gpu__time_duration.sum \
		$bin --model=small --dtype=$dt --iters 1 --warmup 0 >"$OUT/ncu-$dt.txt" 2>&1
	check "ncu tensor pipe $dt" $? 0 "$(grep -m1 'pct_of_peak_sustained_active' "$OUT/ncu-$dt.txt" | tr -s ' ')"
done

# Speed: gpubench and PyTorch eager at each dtype (SPEED_DTYPES, default
# all), in this call; then small with --graph against PyTorch's
# CUDA-graph step, bf16.
read -r -a speed_dtypes <<<"${SPEED_DTYPES:-${dtypes[*]}}"
for dt in "${speed_dtypes[@]}"; do
	for preset in tiny small gpt2-124m; do
		$bin --model=$preset --dtype=$dt --batch-size 8 --iters 20 --warmup 5 --json "$OUT/gb-$dt-$preset.json" >"$OUT/gb-$dt-$preset.txt" 2>&1
		check "run $dt $preset" $? 0 "$(grep -m1 '^step' "$OUT/gb-$dt-$preset.txt" | tr -s ' ')"
	done
	python3 scripts/torch_bench.py --all --dtype $dt --iters 20 --warmup 5 --json "$OUT/torch-$dt.json" >"$OUT/torch-$dt.txt" 2>&1
	check "torch_bench $dt" $? 0
done
$bin --model=small --dtype=bf16 --graph --batch-size 8 --iters 20 --warmup 5 --json "$OUT/gb-bf16-small-graph.json" >"$OUT/gb-bf16-small-graph.txt" 2>&1
check "run bf16 small --graph" $? 0
python3 scripts/torch_bench.py --model small --dtype bf16 --graph --iters 20 --warmup 5 --json "$OUT/torch-bf16-small-graph.json" >"$OUT/torch-bf16-small-graph.txt" 2>&1
check "torch_bench bf16 small --graph" $? 0
python3 - "$OUT" "${speed_dtypes[@]}" <<'PY' | tee "$OUT/speed.txt"
import json, sys, os
out, dtypes = sys.argv[1], sys.argv[2:]
def load(p):
    try:
        return json.load(open(p))
    except Exception:
        return None
print(f"{'dtype':6s} {'preset':10s} {'gpubench ms':>12s} {'torch ms':>10s} {'ratio':>7s} {'gb peak MiB':>12s} {'torch MiB':>10s}")
for dt in dtypes:
    t = load(f"{out}/torch-{dt}.json")
    runs = {r["config"]["model"]: r for r in (t or {}).get("runs", [])}
    for preset in ("tiny", "small", "gpt2-124m"):
        g = load(f"{out}/gb-{dt}-{preset}.json")
        gm = g["summary"]["step_ms"]["median"] if g else float("nan")
        gmem = g["memory"]["peak_bytes"] / 2**20 if g else float("nan")
        r = runs.get(preset)
        tm = r["summary"]["step_ms"]["median"] if r else float("nan")
        tmem = r.get("memory", {}).get("peak_bytes", float("nan")) / 2**20 if r else float("nan")
        print(f"{dt:6s} {preset:10s} {gm:12.3f} {tm:10.3f} {gm/tm:7.3f} {gmem:12.1f} {tmem:10.1f}")
g, t = load(f"{out}/gb-bf16-small-graph.json"), load(f"{out}/torch-bf16-small-graph.json")
if g and t:
    gm, tm = g["summary"]["step_ms"]["median"], t["summary"]["step_ms"]["median"]
    print(f"bf16   small --graph {gm:10.3f} {tm:10.3f} {gm/tm:7.3f}")
PY

{
	echo "summary:"
	printf '  %s\n' "${summary[@]}"
} | tee "$OUT/summary.txt"
(cd "$OUT" && tar czf logs.tgz --exclude=logs.tgz --exclude=summary.txt --exclude=speed.txt . &&
	find . -mindepth 1 ! -name logs.tgz ! -name summary.txt ! -name speed.txt -delete)
exit $failed
