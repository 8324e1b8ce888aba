#!/usr/bin/env bash
# flaw-check.sh: in one device call, what shows that each planted flaw
# (gpubench flaws) runs, changes nothing it computes, is seen by the
# profiler and costs what it costs. Build here with `make device`, fetch
# nsys with ../shared/device/fetch-nsys-deps.sh .nsys, and run it on the
# GPU machine with .device and .nsys carried:
#
#   OUT=... bash scripts/flaw-check.sh [MODEL]      (default tiny)
#
# For each flaw: a run under nsys with --flaw, exported; `gpubench check
# --flaw` must pass on it and fail on the clean run's export (naming the
# missing signature); the plain check of the flawed export must fail
# (except host-stall, whose only trace is a gap); the median step time of
# the flawed run against the clean one, bare, in this call. Every check
# prints "## ok ..." or "## FAIL ..."; it exits 1 if any failed. The
# exports stay in $OUT for testdata.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/gpubench-flaw-check}
mkdir -p "$OUT" || exit 2
bin=.device/gpubench
model=${1:-tiny}
# shellcheck disable=SC1091
source .nsys/nsys-env.sh
ITERS=5
run_flags="--model=$model --batch-size 8 --iters $ITERS --warmup 2"
nsys_flags="-t cuda,nvtx,osrt -s cpu --capture-range=cudaProfilerApi --capture-range-end=stop -f true"
step_ms() { sed -nE 's/^step +([0-9.]+).*/\1/p' "$1" | head -1; }

# shellcheck source=scripts/check-lib.sh
source scripts/check-lib.sh # the scripts run from the repository root
capture() { # capture NAME FLAGS...: a profiled run exported to $OUT/NAME.sqlite
	local name=$1
	shift
	# shellcheck disable=SC2086
	nsys profile $nsys_flags -o "$OUT/$name" $bin $run_flags --profile "$@" >"$OUT/$name.log" 2>&1 &&
		nsys export --type sqlite --force-overwrite true -o "$OUT/$name.sqlite" "$OUT/$name.nsys-rep" >>"$OUT/$name.log" 2>&1
}

# The GPU tests of the flaws: same losses bit for bit as the clean step,
# every planted op run, alloc-per-iteration's memory.
.device/model-cuda.test -test.count=1 -test.v -test.run 'Flaws' >"$OUT/model-flaws.log" 2>&1
check "model-cuda.test -test.run Flaws" $? 0 "pass=$(grep -c -- '--- PASS' "$OUT/model-flaws.log") fail=$(grep -c -- '--- FAIL' "$OUT/model-flaws.log")"

# nsys analyze's expert rules on an export: the rules that can see the
# flaws (they match runtime-API names: the flaws call the runtime), each
# rule's output kept in $OUT/NAME.analyze.txt for the lessons.
RULES=${RULES:-cuda_api_sync cuda_memcpy_sync cuda_memcpy_async cuda_memset_sync gpu_gaps gpu_time_util}
analyze() { # analyze NAME: every rule of RULES on $OUT/NAME.sqlite
	local name=$1 r
	: >"$OUT/$name.analyze.txt"
	for r in $RULES; do
		echo "### rule $r" >>"$OUT/$name.analyze.txt"
		nsys analyze -r "$r" "$OUT/$name.sqlite" >>"$OUT/$name.analyze.txt" 2>&1
	done
}
nsys analyze --help >"$OUT/nsys-analyze-help.txt" 2>&1

capture clean
analyze clean
check "clean capture, plain check" "$($bin check $run_flags "$OUT/clean.sqlite" >"$OUT/clean.check.txt" 2>&1; echo $?)" 0
# shellcheck disable=SC2086
$bin $run_flags >"$OUT/clean.bare.txt" 2>&1
clean=$(step_ms "$OUT/clean.bare.txt")
for f in ${FLAWS:-sync-every-launch alloc-per-iteration host-stall readback-per-layer pageable-upload pinned-upload}; do
	capture "$f" --flaw=$f
	check "$f: run under nsys" $? 0
	analyze "$f"
	$bin check $run_flags --flaw=$f "$OUT/$f.sqlite" >"$OUT/$f.check.txt" 2>&1
	check "$f: check --flaw on its capture" $? 0 "$(grep -m1 'signature is in all' "$OUT/$f.check.txt")"
	$bin check $run_flags --flaw=$f "$OUT/clean.sqlite" >"$OUT/$f.on-clean.txt" 2>&1
	check "$f: check --flaw on the clean capture" $? 1 "$(grep -m1 'signature missing' "$OUT/$f.on-clean.txt")"
	$bin check $run_flags "$OUT/$f.sqlite" >"$OUT/$f.plain.txt" 2>&1
	want=1
	[ $f = host-stall ] && want=0
	check "$f: plain check of its capture" $? $want "$(grep -m1 '^  - ' "$OUT/$f.plain.txt")"
	# shellcheck disable=SC2086
	$bin $run_flags --flaw=$f >"$OUT/$f.bare.txt" 2>&1
	grep -qE '^(FLAWED|LESSON) .*not a benchmark result' "$OUT/$f.bare.txt"
	check "$f: the table says FLAWED or LESSON" $? 0
	step=$(step_ms "$OUT/$f.bare.txt")
	echo "## step $f: ${step:-?} ms, clean ${clean:-?} ms" | tee -a "$OUT/steps.txt"
	rm -f "$OUT/$f.nsys-rep"
done
rm -f "$OUT/clean.nsys-rep"
printf '%s\n' "${summary[@]}"
exit $failed
