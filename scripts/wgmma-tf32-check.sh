#!/usr/bin/env bash
# wgmma-tf32-check.sh: the Hopper tier's TF32 GEMM on one GPU. Part a: its
# kernel tests (the bf16 ones beside), per-product timings of gpt2-124m's
# shapes in TF32 beside the sm_80 tier's tf32 entries, the gpt2-124m tf32
# step on --tier=mma and the default tier, the model tests at tf32, cuBLAS
# TF32 (torch). Part b: the model tests at bf16, compute-sanitizer
# memcheck on the odd-shape TF32 tests, the bf16 products beside the sm_80
# tier (no regression), PyTorch eager TF32's step, the step times again.
# Build first (bash scripts/llama-check.sh build); logs go to $OUT.
#
# Usage: scripts/wgmma-tf32-check.sh a|b|c   (c: BASE=dir of the previous build)
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/gpubench-wgmma-tf32}
mkdir -p "$OUT" || exit 2
S="$OUT/summary.txt"
say() { echo "$*" | tee -a "$S"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee -a "$S"

steps() {
	for tier in mma auto; do
		timeout 30 .device/gpubench --model=gpt2-124m --dtype=tf32 --tier=$tier --batch-size 8 --iters 10 --warmup 3 >"$OUT/g.txt" 2>&1
		rc=$?
		cat "$OUT/g.txt" >>"$OUT/steps.txt"
		say "gpubench gpt2-124m tf32 B=8 tier=$tier rc=$rc $(grep -E '^(step|forward|backward) ' "$OUT/g.txt" | tr -s ' ' | tr '\n' ';')"
	done
	rm -f "$OUT/g.txt"
}

model() {
	timeout "$2" .device/model-cuda.test -test.count=1 -test.v -dtype="$1" >"$OUT/model-$1.txt" 2>&1
	say "model-cuda.test $1 rc=$? pass=$(grep -c -- '--- PASS' "$OUT/model-$1.txt") fail=$(grep -c -- '--- FAIL' "$OUT/model-$1.txt") skip=$(grep -c -- '--- SKIP' "$OUT/model-$1.txt")"
	grep -m10 -- '--- FAIL' "$OUT/model-$1.txt" | tee -a "$S"
}

case "${1:-}" in
a)
	K="$OUT/kernels.txt"
	(cd kernels && timeout 70 ../.device/kernels.test -test.count=1 -test.v -test.run 'TestMatmulWGMMATF32|TestMatmulWGMMAFits|TestMatmulWGMMA$') >"$K" 2>&1
	say "kernel tests rc=$? pass=$(grep -c -- '--- PASS' "$K") fail=$(grep -c -- '--- FAIL' "$K") skip=$(grep -c -- '--- SKIP' "$K")"
	grep -m20 -- '--- FAIL\|against the rounded\|panic' "$K" | tee -a "$S"
	B="$OUT/bench.txt"
	(cd kernels && timeout 45 ../.device/kernels.test -test.run '^$' -test.bench 'MatmulWGMMATF32' -test.benchtime 1x) >"$B" 2>&1
	say "tf32 bench rc=$? lines=$(grep -c '^WTF32' "$B")"
	steps
	model tf32 50
	timeout 35 python3 scripts/cublas_bench.py --dtype tf32 >>"$B" 2>&1
	say "cublas tf32 rc=$? lines=$(grep -c '^CUBLAS' "$B")"
	;;
b)
	K="$OUT/kernels-b.txt"
	(cd kernels && timeout 70 ../.device/kernels.test -test.count=1 -test.v -test.run 'TestMatmulWGMMATF32/N(2048|64_C64)') >"$K" 2>&1
	say "kernel tests (the last two tf32 shapes) rc=$? pass=$(grep -c -- '--- PASS' "$K") fail=$(grep -c -- '--- FAIL' "$K")"
	grep -m20 -- '--- \|against the rounded\|panic' "$K" | tee -a "$S"
	model bf16 30
	C="$OUT/sanitize.txt"
	(cd kernels && timeout 40 compute-sanitizer --tool memcheck --error-exitcode 9 ../.device/kernels.test -test.count=1 -test.v -test.run 'TestMatmulWGMMATF32/N(1_|37_|67_)') >"$C" 2>&1
	say "memcheck odd-shape tf32 tests rc=$? $(grep -m1 'ERROR SUMMARY' "$C") $(grep -c -- '--- PASS' "$C") passed"
	B="$OUT/bench.txt"
	(cd kernels && timeout 25 ../.device/kernels.test -test.run '^$' -test.bench 'MatmulWGMMA$/(qkv|attproj|fc|fcproj|lmhead)/(forward|backward_input|backward_weight)$' -test.benchtime 1x) >>"$B" 2>&1
	say "bf16 bench rc=$? lines=$(grep -c '^WGMMA' "$B")"
	timeout 35 python3 scripts/torch_bench.py --model gpt2-124m --dtype tf32 --batch-size 8 --iters 10 --warmup 3 >"$OUT/torch.txt" 2>&1
	say "torch eager tf32 rc=$? $(grep -iE '^ *step' "$OUT/torch.txt" | tail -1 | tr -s ' ')"
	steps
	.device/gpubench info >"$OUT/info.txt" 2>&1
	grep -- '--dtype=tf32' "$OUT/info.txt" | tee -a "$S"
	;;
c)
	# The lm head's shape again (after the accumulation tolerance), and the
	# bf16 products and step beside the previous commit's binaries
	# ($BASE: gpubench, kernels.test), alternated, for no regression.
	K="$OUT/kernels-c.txt"
	(cd kernels && timeout 40 ../.device/kernels.test -test.count=1 -test.v -test.run 'TestMatmulWGMMATF32/N(64_C64|1_)') >"$K" 2>&1
	say "kernel tests (lm head, one element) rc=$? pass=$(grep -c -- '--- PASS' "$K") fail=$(grep -c -- '--- FAIL' "$K")"
	grep -m8 -- '--- \|against the rounded\|panic' "$K" | tee -a "$S"
	B="$OUT/bench-c.txt"
	for bin in "$BASE" .device "$BASE"; do
		(cd kernels && timeout 25 "../$bin/kernels.test" -test.run '^$' -test.bench '^MatmulWGMMA$/^(qkv|fc|fcproj|lmhead)$/^(forward|backward_input|backward_weight)$' -test.benchtime 1x) 2>&1 | grep '^WGMMA' | sed "s|^|$bin |" >>"$B"
		say "bf16 bench $bin rc=$? lines=$(grep -c "^$bin " "$B")"
	done
	for bin in "$BASE" .device "$BASE" .device; do
		timeout 25 "$bin/gpubench" --model=gpt2-124m --dtype=bf16 --batch-size 8 --iters 10 --warmup 3 >"$OUT/g.txt" 2>&1
		say "gpubench gpt2-124m bf16 B=8 $bin rc=$? $(grep -E '^step ' "$OUT/g.txt" | tr -s ' ')"
	done
	rm -f "$OUT/g.txt"
	;;
*)
	echo "usage: $0 a|b|c" >&2
	exit 2
	;;
esac
