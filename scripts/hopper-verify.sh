#!/usr/bin/env bash
# hopper-verify.sh: in one device call, the Must-show of the Hopper tier
# (ptx/matmul_wgmma.cu) on a compute capability 9.0 GPU: the model's GPU
# tests on the tier (the step against the float64 reference, determinism,
# launches and memory against the plan), a PyTorch check of a bf16 dump,
# two processes bitwise identical, compute-sanitizer (memcheck on the step
# and on the tier's odd-shape kernel tests, racecheck and synccheck on the
# step), the README's nsys command plus gpubench check, ncu on one wgmma
# GEMM, and torch.compile's bf16 step beside gpubench's in the same call.
# Build here first:
#
#   bash scripts/llama-check.sh build && bash ../shared/device/fetch-nsys-deps.sh .nsys
#
# then on the GPU machine, .device and .nsys carried:
#   bash scripts/hopper-verify.sh
# Every check prints "## ok ..." or "## FAIL ..."; it exits 1 if any failed.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/gpubench-hopper-verify}
mkdir -p "$OUT" || exit 2
bin=.device/gpubench
# shellcheck source=scripts/check-lib.sh
source scripts/check-lib.sh
[ -f .nsys/nsys-env.sh ] && source .nsys/nsys-env.sh

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
$bin info >"$OUT/info.txt" 2>&1
check "info names the Hopper tier" $? 0 "$(grep -m1 -o 'wgmma[^;]*' "$OUT/info.txt")"

.device/model-cuda.test -test.count=1 -test.v -dtype=bf16 -tier=wgmma >"$OUT/model.log" 2>&1
check "model-cuda.test bf16 wgmma" $? 0 "pass=$(grep -c -- '--- PASS' "$OUT/model.log") fail=$(grep -c -- '--- FAIL' "$OUT/model.log")"
.device/model-cuda.test -test.count=1 -test.v -dtype=bf16 -tier=wgmma -graph >"$OUT/model-graph.log" 2>&1
check "model-cuda.test bf16 wgmma --graph" $? 0 "pass=$(grep -c -- '--- PASS' "$OUT/model-graph.log") fail=$(grep -c -- '--- FAIL' "$OUT/model-graph.log")"

for p in a b; do
	$bin --model=tiny --dtype=bf16 --tier=wgmma --iters 1 --warmup 0 --dump "$OUT/dump-$p" >"$OUT/dump-$p.log" 2>&1
	check "dump $p" $? 0
done
same=0
for f in grads.safetensors outputs.safetensors; do cmp -s "$OUT/dump-a/$f" "$OUT/dump-b/$f" || same=1; done
check "two processes bitwise" $same 0
python3 scripts/torch_check.py "$OUT/dump-a" >"$OUT/torch-check.txt" 2>&1
check "torch_check bf16 wgmma" $? 0 "$(tail -1 "$OUT/torch-check.txt")"
rm -rf "$OUT/dump-b"

for tool in memcheck racecheck synccheck; do
	extra=""
	[ $tool = memcheck ] && extra="--leak-check full"
	compute-sanitizer --tool $tool $extra --error-exitcode 9 \
		$bin --model=tiny --dtype=bf16 --tier=wgmma --iters 1 --warmup 0 >"$OUT/$tool.log" 2>&1
	check "$tool step" $? 0 "$(grep -m1 'ERROR SUMMARY\|RACECHECK SUMMARY' "$OUT/$tool.log")"
done
(cd kernels && compute-sanitizer --tool memcheck --error-exitcode 9 ../.device/kernels.test -test.run 'TestMatmulWGMMA$/N(37|67|1_|1100|129)' -test.count 1) >"$OUT/memcheck-kernels.log" 2>&1
check "memcheck odd-shape kernel tests" $? 0 "$(grep -m1 'ERROR SUMMARY' "$OUT/memcheck-kernels.log")"

for preset in small gpt2-124m; do
	rep="$OUT/profile_report_cpu_$preset"
	nsys profile -w true -t cuda,nvtx,osrt,cudnn,cublas -s process-tree --capture-range=cudaProfilerApi \
		--capture-range-end=stop --cudabacktrace=true -x true -f true -o "$rep" \
		$bin --model=$preset --dtype=bf16 --batch-size 8 --profile >"$OUT/nsys-$preset.log" 2>&1
	check "nsys $preset" $? 0
	nsys export --type sqlite --force-overwrite true -o "$rep.sqlite" "$rep.nsys-rep" >>"$OUT/nsys-$preset.log" 2>&1
	$bin check --model=$preset --dtype=bf16 --batch-size 8 "$rep.sqlite" >"$OUT/check-$preset.txt" 2>&1
	check "check $preset" $? 0 "$(grep -m1 'result:' "$OUT/check-$preset.txt")"
	nsys stats --report cuda_gpu_kern_sum --format csv "$rep.sqlite" 2>/dev/null | head -12 >"$OUT/kern-$preset.csv"
	rm -f "$rep.nsys-rep" "$rep.sqlite"
done

# ncu: the warpgroup MMA pipe of one forward GEMM (gpt2-124m's qkv).
ncu --query-metrics 2>/dev/null | grep -i "gmma\|tensor_op" >"$OUT/ncu-metrics.txt"
ncu --clock-control none --kernel-name matmul_forward_wgmma --launch-count 1 \
	--metrics sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_tensor_op_gmma.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,gpu__time_duration.sum \
	$bin --model=gpt2-124m --dtype=bf16 --iters 1 --warmup 0 >"$OUT/ncu.txt" 2>&1
check "ncu wgmma pipe" $? 0 "$(grep -E 'gmma|duration' "$OUT/ncu.txt" | tr -s ' ' | tr '\n' ';')"

# Speed: gpt2-124m bf16 on both tiers and PyTorch eager and compiled.
for round in 1 2; do
	for tier in mma wgmma; do
		$bin --model=gpt2-124m --dtype=bf16 --tier=$tier --batch-size 8 --iters 20 --warmup 5 >"$OUT/gb-$tier-$round.txt" 2>&1
		check "gpt2-124m $tier $round" $? 0 "$(grep -m1 '^step' "$OUT/gb-$tier-$round.txt" | tr -s ' ')"
	done
done
python3 scripts/torch_bench.py --model gpt2-124m --dtype bf16 --iters 20 --warmup 5 >"$OUT/torch-eager.txt" 2>&1
check "torch eager bf16" $? 0 "$(grep -m1 '^step' "$OUT/torch-eager.txt" | tr -s ' ')"
python3 scripts/torch_bench.py --model gpt2-124m --dtype bf16 --compile --iters 20 --warmup 5 >"$OUT/torch-compile.txt" 2>&1
check "torch.compile bf16" $? 0 "$(grep -m1 '^step' "$OUT/torch-compile.txt" | tr -s ' ')"

printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
exit $failed
