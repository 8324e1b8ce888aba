#!/usr/bin/env bash
# step-kernels-check.sh: the memory-bound kernels of a training step (the
# cross-entropy, LayerNorm and bias-gradient kernels, shared by every
# dtype and both tensor-core tiers) on a GPU machine, in one call: their
# GPU tests, the model's GPU tests for each dtype and tier, where the bf16
# step's GPU time goes under nsys, and the steps beside PyTorch. Build here
# first (bash scripts/llama-check.sh build && bash ../shared/device/fetch-nsys-deps.sh .nsys),
# carry .device and .nsys, then on the machine:
#
#   bash scripts/step-kernels-check.sh [steps]    steps: any of test model nsys speed (default all)
#
# Every check prints "## ok ..." or "## FAIL ..."; it exits 1 if any failed.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/gpubench-step-kernels}
mkdir -p "$OUT" || exit 2
bin=.device/gpubench
steps=${*:-test model nsys speed}
has() { [[ " $steps " == *" $1 "* ]]; }
# shellcheck source=scripts/check-lib.sh
source scripts/check-lib.sh
[ -f .nsys/nsys-env.sh ] && source .nsys/nsys-env.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"

if has test; then
	(cd kernels && timeout 300 ../.device/kernels.test -test.run 'CrossEntropy|LayerNorm|TestMatmulMMA|BiasSplit' -test.count 1 -test.v) >"$OUT/kernels.log" 2>&1
	check "kernel tests" $? 0 "pass=$(grep -c -- '--- PASS' "$OUT/kernels.log") fail=$(grep -c -- '--- FAIL' "$OUT/kernels.log")"
fi
if has model; then
	for run in "fp32 mma" "tf32 mma" "bf16 mma" "bf16 wgmma"; do
		set -- $run
		timeout 300 .device/model-cuda.test -test.count=1 -test.v -dtype=$1 -tier=$2 >"$OUT/model-$1-$2.log" 2>&1
		check "model-cuda.test $1 $2" $? 0 "pass=$(grep -c -- '--- PASS' "$OUT/model-$1-$2.log") fail=$(grep -c -- '--- FAIL' "$OUT/model-$1-$2.log")"
	done
fi
if has nsys; then
	for tier in wgmma mma; do
		rep="$OUT/gpt2-$tier"
		nsys profile -t cuda,nvtx --capture-range=cudaProfilerApi --capture-range-end=stop -f true -o "$rep" \
			$bin --model=gpt2-124m --dtype=bf16 --tier=$tier --batch-size 8 --iters 5 --warmup 2 --profile >"$OUT/nsys-$tier.log" 2>&1
		check "nsys gpt2-124m $tier" $? 0
		nsys stats --report cuda_gpu_kern_sum --format csv -o "$OUT/kern-$tier" "$rep.nsys-rep" >>"$OUT/nsys-$tier.log" 2>&1
		rm -f "$rep.nsys-rep" "$rep.sqlite"
	done
fi
if has speed; then
	for round in 1 2; do
		for tier in mma wgmma; do
			$bin --model=gpt2-124m --dtype=bf16 --tier=$tier --batch-size 8 --iters 20 --warmup 5 >"$OUT/gb-bf16-$tier-$round.txt" 2>&1
			check "gpt2-124m bf16 $tier $round" $? 0 "$(grep -m1 '^step' "$OUT/gb-bf16-$tier-$round.txt" | tr -s ' ')"
		done
	done
	$bin --model=gpt2-124m --dtype=fp32 --batch-size 8 --iters 5 --warmup 2 >"$OUT/gb-fp32.txt" 2>&1
	check "gpt2-124m fp32" $? 0 "$(grep -m1 '^step' "$OUT/gb-fp32.txt" | tr -s ' ')"
	for tier in mma wgmma; do
		$bin --model=small --dtype=bf16 --tier=$tier --graph --batch-size 8 --iters 20 --warmup 5 >"$OUT/gb-small-graph-$tier.txt" 2>&1
		check "small bf16 --graph $tier" $? 0 "$(grep -m1 '^step' "$OUT/gb-small-graph-$tier.txt" | tr -s ' ')"
	done
	python3 scripts/torch_bench.py --model gpt2-124m --dtype bf16 --iters 20 --warmup 5 >"$OUT/torch-bf16.txt" 2>&1
	check "torch eager bf16" $? 0 "$(grep -m1 'step median' "$OUT/torch-bf16.txt")"
	python3 scripts/torch_bench.py --model gpt2-124m --dtype bf16 --compile --iters 20 --warmup 5 >"$OUT/torch-compile.txt" 2>&1
	check "torch.compile bf16" $? 0 "$(grep -m1 'step median' "$OUT/torch-compile.txt")"
	python3 scripts/torch_bench.py --model small --dtype bf16 --graph --iters 20 --warmup 5 >"$OUT/torch-small-graph.txt" 2>&1
	check "torch CUDA graph small bf16" $? 0 "$(grep -m1 'step median' "$OUT/torch-small-graph.txt")"
	python3 scripts/torch_bench.py --model gpt2-124m --dtype fp32 --iters 5 --warmup 2 >"$OUT/torch-fp32.txt" 2>&1
	check "torch eager fp32" $? 0 "$(grep -m1 'step median' "$OUT/torch-fp32.txt")"
fi
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
exit $failed
