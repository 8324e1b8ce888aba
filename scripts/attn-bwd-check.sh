#!/usr/bin/env bash
# attn-bwd-check.sh: the Hopper attention backward (ptx/attention_wgmma_bwd.cu)
# on a compute capability 9.0 GPU, in one device call. Build here first
# (bash scripts/llama-check.sh build; for "step", also a gpubench of the
# tree without the kernel at .device/gpubench-base), carry .device, then on
# the machine, from the repository root:
#
#   bash scripts/attn-bwd-check.sh [steps]   steps: any of asm test sanitize bench model step
#                                            (default all; a failed test stops the rest)
#
#   asm       ptxas -arch=sm_90a -v of both attention modules: registers,
#             spills, and whether ptxas serialised the wgmma
#   test      the attention kernel tests of the tier (forward and backward:
#             float64 reference, mma agreement, parts, grids, bits)
#   sanitize  compute-sanitizer memcheck and racecheck on the backward's
#             odd-shape tests
#   bench     BenchmarkAttentionWGMMABackward (the mma backward beside it)
#   model     model-cuda.test -dtype=bf16 -tier=wgmma (the step against
#             the float64 reference)
#   step      gpt2-124m bf16 B=8 on the wgmma tier, this build and
#             .device/gpubench-base (the mma backward) alternated, 2 rounds
#             (BIN, BASE and PTXDIR name other builds)
#
# Writes logs under $OUT (or ./attn-bwd-out); "## ok/FAIL" lines, summary last.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-attn-bwd-out}
mkdir -p "$OUT" || exit 2
steps=${*:-asm test sanitize bench model step}
has() { [[ " $steps " == *" $1 "* ]]; }
# shellcheck source=scripts/check-lib.sh
source scripts/check-lib.sh
bin=${BIN:-$PWD/.device}
base=${BASE:-$bin/gpubench-base}
ptxdir=${PTXDIR:-ptx}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"

if has asm; then
	ptxas=$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)
	for m in attention_wgmma attention_wgmma_bwd; do
		"$ptxas" -arch=sm_90a -v -o /dev/null $ptxdir/$m.ptx >"$OUT/ptxas-$m.log" 2>&1
		rc=$?
		grep -E "Compiling entry|registers|spill|warning|Performance Loss|error" "$OUT/ptxas-$m.log" | sed 's/^ptxas info *: //'
		bad=0
		grep -Eq "[1-9][0-9]* bytes spill|Performance Loss" "$OUT/ptxas-$m.log" && bad=1
		check "ptxas $m" "$rc/$bad" "0/0"
	done
fi
if has test; then
	(cd kernels && timeout 300 "$bin/kernels.test" -test.run 'AttentionWGMMA' -test.v -test.count 1) >"$OUT/test.log" 2>&1
	rc=$?
	grep -E "^(--- |ok|FAIL|PASS)|relative error|first bad|not deterministic|written|panic|rror" "$OUT/test.log" | grep -v "^    --- PASS" | tail -40
	check "kernel tests AttentionWGMMA" $rc 0 "pass=$(grep -c -- '--- PASS' "$OUT/test.log") fail=$(grep -c -- '--- FAIL' "$OUT/test.log") skip=$(grep -c -- '--- SKIP' "$OUT/test.log")"
	if [ $rc != 0 ]; then
		printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
		exit 1
	fi
fi
if has sanitize; then
	sel='TestAttentionWGMMABackward(Parts)?$/(B3_T1_|B2_T37|B2_T65|B2_T129|B2_T70)'
	for tool in memcheck racecheck; do
		(cd kernels && timeout 80 compute-sanitizer --tool $tool --error-exitcode 9 "$bin/kernels.test" -test.run "$sel" -test.count 1) >"$OUT/$tool.log" 2>&1
		check "$tool backward tests" $? 0 "$(grep -m1 'ERROR SUMMARY\|RACECHECK SUMMARY' "$OUT/$tool.log") $(grep -c -- '--- PASS' "$OUT/$tool.log") passed"
	done
fi
if has bench; then
	(cd kernels && timeout 120 "$bin/kernels.test" -test.run '^$' -test.bench 'AttentionWGMMABackward' -test.benchtime 1x) >"$OUT/bench.log" 2>&1
	check "bench backward" $? 0
	grep -E "^ATTN|^Benchmark|SKIP|FAIL" "$OUT/bench.log"
fi
if has model; then
	timeout 150 "$bin/model-cuda.test" -test.count=1 -test.v -dtype=bf16 -tier=wgmma >"$OUT/model.log" 2>&1
	check "model-cuda.test bf16 wgmma" $? 0 "pass=$(grep -c -- '--- PASS' "$OUT/model.log") fail=$(grep -c -- '--- FAIL' "$OUT/model.log") skip=$(grep -c -- '--- SKIP' "$OUT/model.log")"
	grep -E "^--- FAIL|rel|first bad" "$OUT/model.log" | head -20
fi
if has step; then
	for round in 1 2; do
		for b in "$base" "$bin/gpubench"; do
			n=$(basename "$b")
			timeout 60 "$b" --model=gpt2-124m --dtype=bf16 --tier=wgmma --batch-size 8 --iters 20 --warmup 5 >"$OUT/step-$n-$round.txt" 2>&1
			check "gpt2-124m $n $round" $? 0 "$(grep -m1 '^step' "$OUT/step-$n-$round.txt" | tr -s ' ')"
		done
	done
	"$bin/gpubench" info 2>&1 | grep -m1 -o 'bf16: [^;]*' >"$OUT/info.txt"
	cat "$OUT/info.txt"
fi
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
exit $failed
