#!/usr/bin/env bash
# attn-tf32-check.sh: the TF32 attention (ptx/attention_tf32.cu) on a GPU,
# in one device call. Build here first (bash scripts/llama-check.sh build;
# for "step", also a gpubench of the tree without the kernels at
# .device/gpubench-base), carry .device, then on the machine, from the
# repository root:
#
#   bash scripts/attn-tf32-check.sh [steps]   steps: any of asm test bench step model sanitize
#                                             (default all, in that order)
#
#   asm       ptxas -arch=sm_90 -v of attention_tf32.ptx: registers, spills
#   test      the TF32 attention kernel tests (float64 reference, fp32
#             kernels, parts, tails, bits, NaN)
#   bench     BenchmarkAttentionTF32 (the fp32 kernels beside it)
#   step      gpt2-124m tf32 B=8, .device/gpubench-base and this build
#             alternated, 2 rounds
#   model     model-cuda.test -dtype=tf32 (the step against float64)
#   sanitize  compute-sanitizer memcheck and racecheck on the odd-shape tests
#
# Writes logs under $OUT (or ./attn-tf32-out); "## ok/FAIL" lines, and
# $OUT/summary.txt after every step.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-attn-tf32-out}
mkdir -p "$OUT" || exit 2
steps=${*:-asm test bench step model sanitize}
has() { [[ " $steps " == *" $1 "* ]]; }
# shellcheck source=scripts/check-lib.sh
source scripts/check-lib.sh
bin=${BIN:-$PWD/.device}
base=${BASE:-$bin/gpubench-base}
saysum() { printf '%s\n' "${summary[@]}" >"$OUT/summary.txt"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"

if has asm; then
	ptxas=$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)
	"$ptxas" -arch=sm_90 -v -o /dev/null ptx/attention_tf32.ptx >"$OUT/ptxas.log" 2>&1
	rc=$?
	grep -E "Compiling entry|registers|spill|error" "$OUT/ptxas.log" | sed 's/^ptxas info *: //'
	check "ptxas sm_90 attention_tf32" $rc 0 "$(grep -c ' 0 bytes spill stores' "$OUT/ptxas.log") of 3 without spills"
	saysum
fi
if has test; then
	(cd kernels && timeout 90 "$bin/kernels.test" -test.run 'AttentionTF32' -test.v -test.count 1) >"$OUT/test.log" 2>&1
	rc=$?
	grep -E "^(--- |ok|FAIL|PASS)|relative error|first bad|not deterministic|written|panic|rror|T = 1" "$OUT/test.log" | grep -v "^    --- PASS" | tail -60
	check "kernel tests AttentionTF32" $rc 0 "pass=$(grep -c -- '--- PASS' "$OUT/test.log") fail=$(grep -c -- '--- FAIL' "$OUT/test.log") skip=$(grep -c -- '--- SKIP' "$OUT/test.log")"
	saysum
fi
if has bench; then
	(cd kernels && timeout 60 "$bin/kernels.test" -test.run '^$' -test.bench 'AttentionTF32' -test.benchtime 1x) >"$OUT/bench.log" 2>&1
	check "bench AttentionTF32" $? 0
	grep -E "tf32|fp32|^Benchmark|SKIP|FAIL" "$OUT/bench.log"
	saysum
fi
if has step; then
	for round in 1 2; do
		for b in "$base" "$bin/gpubench"; do
			n=$(basename "$b")
			timeout 40 "$b" --model=gpt2-124m --dtype=tf32 --batch-size 8 --iters 10 --warmup 3 >"$OUT/step-$n-$round.txt" 2>&1
			check "gpt2-124m tf32 $n $round" $? 0 "$(grep -m1 '^step' "$OUT/step-$n-$round.txt" | tr -s ' ')"
		done
		saysum
	done
	"$bin/gpubench" info 2>&1 | grep -m1 -o 'tf32: [^;]*' | tee "$OUT/info.txt"
fi
if has model; then
	timeout 100 "$bin/model-cuda.test" -test.count=1 -test.v -dtype=tf32 >"$OUT/model.log" 2>&1
	check "model-cuda.test tf32" $? 0 "pass=$(grep -c -- '--- PASS' "$OUT/model.log") fail=$(grep -c -- '--- FAIL' "$OUT/model.log") skip=$(grep -c -- '--- SKIP' "$OUT/model.log")"
	grep -E "^--- FAIL|^    --- FAIL|first bad|hs64" "$OUT/model.log" | head -20
	saysum
fi
if has sanitize; then
	sel='TestAttentionTF32(Forward|Backward|BackwardParts)$/^(B2_T37|B3_T63|B1_T65|B2_T45|B2_T1_)'
	for tool in memcheck racecheck; do
		(cd kernels && timeout 60 compute-sanitizer --tool $tool --error-exitcode 9 "$bin/kernels.test" -test.run "$sel" -test.count 1 -test.v) >"$OUT/$tool.log" 2>&1
		check "$tool odd-shape tests" $? 0 "$(grep -m1 'ERROR SUMMARY\|RACECHECK SUMMARY' "$OUT/$tool.log") $(grep -c -- '--- PASS' "$OUT/$tool.log") passed"
		saysum
	done
fi
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
exit $failed
