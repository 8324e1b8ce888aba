#!/usr/bin/env bash
# tf32-verify.sh: in one device call, the tensor-core issue's Must-show for
# --dtype=tf32 as H100/H200 run it (the linear layers on the Hopper tier's
# wgmma, attention on attention_tf32), beside the same call's regression
# checks of bf16 and fp32 and the speed table against PyTorch:
#   - the GPU tests: the TF32 GEMM kernels, and the model tests of every
#     dtype (run side by side: they are checked against the float64
#     reference, not timed);
#   - a PyTorch check of a tf32 dump of small (head size 64: it covers the
#     TF32 attention), two processes bitwise identical;
#   - compute-sanitizer memcheck of a tiny and a small tf32 step;
#   - the README's nsys command on small tf32 plus gpubench check;
#   - ncu's tensor pipe on one tf32 wgmma GEMM;
#   - gpt2-124m tf32 on the default tier (twice, alternated with
#     --tier=mma) against PyTorch eager TF32, and gpt2-124m bf16 once.
# Build here first (bash scripts/llama-check.sh build && bash
# ../shared/device/fetch-nsys-deps.sh .nsys), carry .device and .nsys, then
# on the machine:
#
#   bash scripts/tf32-verify.sh
#
# Every check prints "## ok ..." or "## FAIL ..."; the script exits 1 if
# any failed.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/gpubench-tf32-verify}
mkdir -p "$OUT" || exit 2
bin=.device/gpubench
# shellcheck source=scripts/check-lib.sh
source scripts/check-lib.sh
[ -f .nsys/nsys-env.sh ] && source .nsys/nsys-env.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
$bin info >"$OUT/info.txt" 2>&1
check "info" $? 0 "$(grep -m1 -- 'tf32' "$OUT/info.txt" | tr -s ' ')"

# The GPU tests, side by side.
(cd kernels && timeout 200 ../.device/kernels.test -test.run 'TF32' -test.count 1 -test.v >"$OUT/kernels.log" 2>&1; echo $? >"$OUT/kernels.rc") &
for dt in tf32 bf16 fp32; do
	(timeout 200 .device/model-cuda.test -test.count=1 -test.v -dtype=$dt >"$OUT/model-$dt.log" 2>&1; echo $? >"$OUT/model-$dt.rc") &
done
wait
count() { echo "pass=$(grep -c -- '--- PASS' "$1") fail=$(grep -c -- '--- FAIL' "$1")"; }
check "kernel tests TF32" "$(cat "$OUT/kernels.rc")" 0 "$(count "$OUT/kernels.log")"
for dt in tf32 bf16 fp32; do
	check "model-cuda.test $dt" "$(cat "$OUT/model-$dt.rc")" 0 "$(count "$OUT/model-$dt.log")"
done

# A dump of small (head size 64), twice, and PyTorch's check of it.
for p in a b; do
	$bin --model=small --dtype=tf32 --iters 1 --warmup 0 --dump "$OUT/dump-$p" >"$OUT/dump-$p.log" 2>&1
	check "dump small tf32 $p" $? 0
done
same=0
for f in grads.safetensors outputs.safetensors; do cmp -s "$OUT/dump-a/$f" "$OUT/dump-b/$f" || same=1; done
check "two processes bitwise tf32" $same 0
python3 scripts/torch_check.py "$OUT/dump-a" --loss-tol 1e-3 --grad-tol 5e-3 >"$OUT/torch-check.txt" 2>&1
check "torch_check small tf32" $? 0 "$(tail -1 "$OUT/torch-check.txt")"
rm -rf "$OUT/dump-a" "$OUT/dump-b"

for preset in tiny small; do
	compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 \
		$bin --model=$preset --dtype=tf32 --iters 1 --warmup 0 >"$OUT/memcheck-$preset.log" 2>&1
	check "memcheck $preset tf32" $? 0 "$(grep -m1 'ERROR SUMMARY' "$OUT/memcheck-$preset.log")"
done

rep="$OUT/profile_report_cpu_tf32"
nsys profile -w true -t cuda,nvtx,osrt,cudnn,cublas -s process-tree --capture-range=cudaProfilerApi \
	--capture-range-end=stop --cudabacktrace=true -x true -f true -o "$rep" \
	$bin --model=small --dtype=tf32 --batch-size 8 --profile >"$OUT/nsys.log" 2>&1
check "nsys small tf32" $? 0
nsys export --type sqlite --force-overwrite true -o "$rep.sqlite" "$rep.nsys-rep" >>"$OUT/nsys.log" 2>&1
$bin check --model=small --dtype=tf32 --batch-size 8 "$rep.sqlite" >"$OUT/check.txt" 2>&1
check "check small tf32" $? 0 "$(grep -m1 'result:' "$OUT/check.txt")"
nsys stats --report cuda_gpu_kern_sum --format csv "$rep.sqlite" 2>/dev/null | head -14 >"$OUT/kern-small-tf32.csv"
rm -f "$rep.nsys-rep" "$rep.sqlite"

ncu --clock-control none --kernel-name matmul_forward_wgmma_tf32 --launch-count 1 \
	--metrics sm__inst_executed_pipe_tensor_op_gmma.sum,gpu__time_duration.sum \
	$bin --model=gpt2-124m --dtype=tf32 --iters 1 --warmup 0 >"$OUT/ncu.txt" 2>&1
check "ncu tf32 wgmma pipe" $? 0 "$(grep -E 'gmma|duration' "$OUT/ncu.txt" | tr -s ' ' | tr '\n' ';')"

# Speed, in this call: tf32 on both tiers alternated, then PyTorch.
for round in 1 2; do
	for tier in auto mma; do
		[ $round = 2 ] && [ $tier = mma ] && continue
		$bin --model=gpt2-124m --dtype=tf32 --tier=$tier --batch-size 8 --iters 20 --warmup 5 >"$OUT/gb-tf32-$tier-$round.txt" 2>&1
		check "gpt2-124m tf32 --tier=$tier $round" $? 0 "$(grep -m1 '^step' "$OUT/gb-tf32-$tier-$round.txt" | tr -s ' ')"
	done
done
python3 scripts/torch_bench.py --model gpt2-124m --dtype tf32 --iters 20 --warmup 5 >"$OUT/torch-tf32.txt" 2>&1
check "torch eager tf32" $? 0 "$(grep -m1 '^step' "$OUT/torch-tf32.txt" | tr -s ' ')"
$bin --model=gpt2-124m --dtype=bf16 --batch-size 8 --iters 20 --warmup 5 >"$OUT/gb-bf16.txt" 2>&1
check "gpt2-124m bf16" $? 0 "$(grep -m1 '^step' "$OUT/gb-bf16.txt" | tr -s ' ')"
grep -m1 '^memory' "$OUT/gb-tf32-auto-1.txt" >"$OUT/memory-tf32.txt"
grep -m1 'peak' "$OUT/torch-tf32.txt" >>"$OUT/memory-tf32.txt"

printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
exit $failed
