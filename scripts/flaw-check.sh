#!/usr/bin/env bash
# flaw-check.sh: in one device call, what shows that each planted flaw
# (gpubench flaws) runs, changes nothing it computes, is seen by the
# profiler and costs what it costs. Build here with
# `bash scripts/llama-check.sh build` (the device binaries in .device), fetch
# nsys with ../shared/device/fetch-nsys-deps.sh .nsys, and run it on the GPU
# machine with .device and .nsys carried:
#
#   OUT=... bash scripts/flaw-check.sh [MODEL]      (default tiny)
#
# FLAWS picks the flaws (default: every name `gpubench flaws` lists);
# STEPS picks the parts (default "tests capture rules findings time ncu").
#
#   tests    the GPU tests of the flaws: each flawed step computes what the
#            clean step does, every planted op runs
#   capture  for each flaw, a run under nsys with --flaw, exported; `gpubench
#            check --flaw` must pass on it and fail on the clean run's export
#            (naming the missing signature); the plain check of the flawed
#            export must fail (except host-stall, whose only trace is a gap)
#   rules    nsys analyze's expert rules on every export; each rule the
#            lesson names (RULES_OF below) must fire on the flawed export and
#            not on the clean one
#   findings what the lessons say of the profiler beyond the rules: the
#            threshold in cuda_memcpy_sync's source, whether the rule fires
#            on pageable-upload once the batch is larger than it, and the
#            allocation calls in nsys stats' cuda_api_sum
#   time     median step times, bare, of the clean run, each flaw and each
#            fix, on MODEL and on small, alternated twice (the lower median)
#   ncu      Nsight Compute on one kernel of each kernel flaw and its clean
#            counterpart, with the sections its lesson names
#
# Every check prints "## ok ..." or "## FAIL ..."; it exits 1 if any failed.
# Everything lands in $OUT; the exports stay there for testdata.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/gpubench-flaw-check}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd) # the kernel tests run in kernels/
bin=.device/gpubench
model=${1:-tiny}
steps=${STEPS:-tests capture rules findings time ncu}
has() { [[ " $steps " == *" $1 "* ]]; }
# shellcheck disable=SC1091
source .nsys/nsys-env.sh >/dev/null
# shellcheck source=scripts/check-lib.sh
source scripts/check-lib.sh # the scripts run from the repository root
ITERS=3
run_flags="--model=$model --batch-size 8 --iters $ITERS --warmup 2"
nsys_flags="-t cuda,nvtx,osrt -s cpu --capture-range=cudaProfilerApi --capture-range-end=stop -f true"
all_flaws=$($bin flaws | grep -E '^[a-z]' | tr '\n' ' ')
flaws=${FLAWS:-$all_flaws}
step_ms() { sed -nE 's/^step +([0-9.]+).*/\1/p' "$1" | head -1; }

# The nsys analyze rules each lesson names: they must fire on the flawed
# capture and stay silent on the clean one. A flaw not listed here is one
# that no rule sees (its lesson says so, from the outputs kept in
# $OUT/NAME.analyze.txt). gpu_gaps' threshold is whole milliseconds.
declare -A RULES_OF=(
	[sync-every-launch]="cuda_api_sync"
	[readback-per-layer]="cuda_api_sync cuda_memcpy_async"
	[host-stall]="gpu_gaps:gap=1"
)
RULES="cuda_api_sync cuda_memcpy_sync cuda_memcpy_async cuda_memset_sync gpu_gaps gpu_gaps:gap=1 gpu_time_util"

# The kernel each kernel flaw plants, the clean kernel it replaces, and the
# ncu sections whose rules should see the difference.
declare -A NCU_OF=(
	[uncoalesced]="residual_forward_strided residual_forward SourceCounters,MemoryWorkloadAnalysis,MemoryWorkloadAnalysis_Tables"
	[bank-conflicts]="matmul_forward_nopad matmul_forward MemoryWorkloadAnalysis,MemoryWorkloadAnalysis_Tables"
	[low-occupancy]="matmul_forward matmul_forward LaunchStats,Occupancy,SpeedOfLight"
)

# What the ncu rule each kernel-flaw lesson names prints, as an extended
# regular expression: it must appear in the flawed kernel's report and not
# in the clean kernel's (ncu prints rule results, not rule names, as text).
declare -A NCU_RULE_OF=(
	[uncoalesced]="uncoalesced global access"
	[bank-conflicts]="bank conflict"
)
# low-occupancy has no such rule: on the tiny model the clean product's
# grid (48 blocks) is smaller than the SM count too, and the launch
# statistics rule ("grid is too small") fires on both (H200). Its lesson
# reads the numbers instead: NCU_LESS_OF's metric must be smaller in the
# flawed kernel's report than in the clean one's, NCU_MORE_OF's larger.
declare -A NCU_LESS_OF=([low-occupancy]="Grid Size")
declare -A NCU_MORE_OF=([low-occupancy]="Duration")
NCU_GRID_RULE="grid is too small"
ncu_metric() { # ncu_metric NAME FILE: the first value of metric NAME in an ncu --print-details report
	sed -nE "s/^ +$1 +([a-z/%]+ +)?([0-9.,]+) *\$/\2/p" "$2" | head -1 | tr -d ,
}

capture() { # capture NAME FLAGS...: a profiled run exported to $OUT/NAME.sqlite
	local name=$1
	shift
	# shellcheck disable=SC2086
	nsys profile $nsys_flags -o "$OUT/$name" $bin $run_flags --profile "$@" >"$OUT/$name.log" 2>&1 &&
		nsys export --type sqlite --force-overwrite true -o "$OUT/$name.sqlite" "$OUT/$name.nsys-rep" >>"$OUT/$name.log" 2>&1
	local rc=$?
	rm -f "$OUT/$name.nsys-rep"
	return $rc
}

analyze() { # analyze NAME: every rule of RULES on $OUT/NAME.sqlite, one file per rule
	local name=$1 r
	for r in $RULES; do
		nsys analyze -r "$r" "$OUT/$name.sqlite" >"$OUT/$name.rule-${r//[:=]/_}.txt" 2>&1
	done
}

fired() { # fired NAME RULE: did RULE report something on NAME's export
	local f="$OUT/$1.rule-${2//[:=]/_}.txt"
	[ -s "$f" ] && grep -q '\*\* ' "$f" && ! grep -q 'There were no problems' "$f"
}

if has tests; then
	# The flawed steps against the clean one (and unfused against the
	# float64 reference), in fp32 and bf16; the kernels the flaws launch
	# against their references.
	for dt in fp32 bf16; do
		.device/model-cuda.test -test.count=1 -test.v -test.run 'Flaws|Unfused' -dtype=$dt >"$OUT/model-flaws-$dt.log" 2>&1
		check "model-cuda.test -test.run 'Flaws|Unfused' -dtype=$dt" $? 0 "pass=$(grep -c -- '--- PASS' "$OUT/model-flaws-$dt.log") skip=$(grep -c -- '--- SKIP' "$OUT/model-flaws-$dt.log") fail=$(grep -c -- '--- FAIL' "$OUT/model-flaws-$dt.log")"
	done
	# In its package's folder, as go test runs it (some tests read sources).
	(cd kernels && ../.device/kernels.test -test.count=1 -test.v -test.run 'Residual|Unfused|BiasAdd|GELUChain|Matmul|Storage') >"$OUT/kernels-flaws.log" 2>&1
	check "kernels.test of the flaws' kernels" $? 0 "pass=$(grep -c -- '--- PASS' "$OUT/kernels-flaws.log") skip=$(grep -c -- '--- SKIP' "$OUT/kernels-flaws.log") fail=$(grep -c -- '--- FAIL' "$OUT/kernels-flaws.log")"
fi

if has capture; then
	capture clean
	check "clean capture" $? 0
	$bin check $run_flags "$OUT/clean.sqlite" >"$OUT/clean.check.txt" 2>&1
	check "clean capture, plain check" $? 0
	for f in $flaws; do
		capture "$f" --flaw="$f"
		check "$f: run under nsys" $? 0
		$bin check $run_flags --flaw="$f" "$OUT/$f.sqlite" >"$OUT/$f.check.txt" 2>&1
		check "$f: check --flaw on its capture" $? 0 "$(grep -m1 'signature is in all' "$OUT/$f.check.txt")"
		$bin check $run_flags --flaw="$f" "$OUT/clean.sqlite" >"$OUT/$f.on-clean.txt" 2>&1
		check "$f: check --flaw on the clean capture" $? 1 "$(grep -m1 'signature missing' "$OUT/$f.on-clean.txt")"
		$bin check $run_flags "$OUT/$f.sqlite" >"$OUT/$f.plain.txt" 2>&1
		want=1
		[ "$f" = host-stall ] && want=0
		check "$f: plain check of its capture" $? $want "$(grep -m1 '^  - ' "$OUT/$f.plain.txt")"
		# shellcheck disable=SC2086
		$bin $run_flags --flaw="$f" >"$OUT/$f.bare.txt" 2>&1
		grep -qE '^(FLAWED|LESSON) .*not a benchmark result' "$OUT/$f.bare.txt"
		check "$f: the table says FLAWED or LESSON" $? 0
	done
fi

# host-stall's lesson finds the data loader by name in nsys's CPU samples.
# Sampling takes a sample every few milliseconds, so this capture runs 20
# iterations (40 ms of stall) to give the loader a few dozen samples.
if has capture && [[ " $flaws " == *" host-stall "* ]]; then
	capture host-stall-samples --flaw=host-stall --iters 20
	check "host-stall: 20-iteration capture with CPU samples" $? 0
	python3 - "$OUT/host-stall-samples.sqlite" >"$OUT/host-stall-samples.txt" 2>&1 <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
total = db.execute("SELECT count(DISTINCT id) FROM SAMPLING_CALLCHAINS").fetchone()[0]
# The samples whose leaf (stackDepth 0) frame is each function, most first.
for name, n in db.execute(
    "SELECT s.value, count(*) FROM SAMPLING_CALLCHAINS c JOIN StringIds s ON s.id = c.symbol"
    " WHERE c.stackDepth = 0 GROUP BY s.value ORDER BY 2 DESC LIMIT 8"):
    print(f"leaf {n:5d}  {name}")
stall = db.execute(
    "SELECT count(DISTINCT c.id) FROM SAMPLING_CALLCHAINS c JOIN StringIds s ON s.id = c.symbol"
    " WHERE s.value LIKE '%dataLoaderStall%'").fetchone()[0]
print(f"samples {total}, with dataLoaderStall on the stack {stall}")
sys.exit(0 if stall > 0 else 1)
PY
	check "host-stall: CPU samples name dataLoaderStall" $? 0 "$(tail -1 "$OUT/host-stall-samples.txt")"
fi

if has rules && [ -f "$OUT/clean.sqlite" ]; then
	analyze clean
	for f in $flaws; do
		[ -f "$OUT/$f.sqlite" ] || continue
		analyze "$f"
		for r in ${RULES_OF[$f]:-}; do
			fired "$f" "$r"
			check "$f: nsys analyze -r $r fires on its capture" $? 0
			fired clean "$r"
			check "$f: nsys analyze -r $r is silent on the clean capture" $? 1
		done
		for r in $RULES; do
			if fired "$f" "$r"; then echo "## rule $f $r fires"; fi
		done
	done
	for r in $RULES; do
		if fired clean "$r"; then echo "## rule clean $r fires"; fi
	done
fi

if has findings; then
	rules_dir=$(ls -d /opt/nvidia/nsight-compute/*/host/target-linux-x64/rules 2>/dev/null | sort -V | tail -1)
	grep -n -i -E 'pageable|size|bytes|threshold' "$rules_dir/cuda_memcpy_sync.py" >"$OUT/cuda_memcpy_sync.source.txt" 2>&1
	check "findings: cuda_memcpy_sync's source read" $? 0 "$rules_dir"
	# small at batch 128 uploads 2 x 128 KiB a step, above the rule's
	# threshold; tiny's 2 x 2 KiB is below it.
	capture pageable-upload-large --flaw=pageable-upload --model=small --batch-size 128
	check "findings: pageable-upload, small at batch 128, under nsys" $? 0
	nsys analyze -r cuda_memcpy_sync "$OUT/pageable-upload-large.sqlite" >"$OUT/pageable-upload-large.rule-cuda_memcpy_sync.txt" 2>&1
	fired pageable-upload-large cuda_memcpy_sync
	echo "## finding cuda_memcpy_sync on pageable-upload at 128 KiB copies: $([ $? = 0 ] && echo fires || echo silent)"
	if [ -f "$OUT/alloc-per-iteration.sqlite" ]; then
		nsys stats -r cuda_api_sum -f csv -o "$OUT/alloc-per-iteration.stats" "$OUT/alloc-per-iteration.sqlite" >"$OUT/alloc-per-iteration.stats.log" 2>&1
		grep -h -E 'cudaMalloc|cudaFree' "$OUT"/alloc-per-iteration.stats*.csv >"$OUT/alloc-per-iteration.stats.txt" 2>&1
		check "findings: nsys stats cuda_api_sum lists cudaMalloc and cudaFree" $? 0 "$(tr '\n' ' ' <"$OUT/alloc-per-iteration.stats.txt" | cut -c1-200)"
	fi
fi

if has time; then
	# Each configuration twice, alternated, 20 iterations after 5 warm-up;
	# the lower of the two medians.
	for m in $model small; do
		configs=("clean" "clean --graph")
		for f in $flaws; do
			configs+=("$f")
			# The flaws that compose with --graph, timed with it too.
			if $bin plan --model="$m" --graph --flaw="$f" >/dev/null 2>&1; then configs+=("$f --graph"); fi
		done
		declare -A best=()
		for round in 1 2; do
			for c in "${configs[@]}"; do
				read -r name extra <<<"$c"
				args=(--model="$m" --batch-size 8 --iters 20 --warmup 5)
				[ "$name" != clean ] && args+=(--flaw="$name")
				# shellcheck disable=SC2206
				[ -n "${extra:-}" ] && args+=($extra)
				$bin "${args[@]}" >"$OUT/time-$m-${c// /_}-$round.txt" 2>&1
				ms=$(step_ms "$OUT/time-$m-${c// /_}-$round.txt")
				[ -z "$ms" ] && {
					check "time $m $c" 1 0 "$(tail -1 "$OUT/time-$m-${c// /_}-$round.txt")"
					continue
				}
				prev=${best[$c]:-}
				if [ -z "$prev" ] || awk "BEGIN{exit !($ms < $prev)}"; then best[$c]=$ms; fi
			done
		done
		clean_ms=${best[clean]:-0}
		for c in "${configs[@]}"; do
			[ -n "${best[$c]:-}" ] || continue
			echo "## time $m ${c// /_} ${best[$c]} ms ($(awk "BEGIN{printf \"%.2f\", ${best[$c]}/$clean_ms}")x clean)" | tee -a "$OUT/times.txt"
		done
		unset best
	done
fi

if has ncu; then
	ncu_flags="--clock-control none --profile-from-start off --nvtx --nvtx-include iteration1/forward/ -c 1"
	for f in $flaws; do
		[ -n "${NCU_OF[$f]:-}" ] || continue
		read -r flawed clean sections <<<"${NCU_OF[$f]}"
		secs=()
		for s in ${sections//,/ }; do secs+=(--section "$s"); done
		# shellcheck disable=SC2086
		ncu $ncu_flags -k "regex:^${flawed}\$" "${secs[@]}" --print-details all --print-rule-details $bin $run_flags --iters 2 --profile --flaw="$f" >"$OUT/$f.ncu.txt" 2>&1
		check "$f: ncu on $flawed" $? 0 "$(grep -cE '^ +(OPT|WRN|INF) ' "$OUT/$f.ncu.txt") rule results"
		# shellcheck disable=SC2086
		ncu $ncu_flags -k "regex:^${clean}\$" "${secs[@]}" --print-details all --print-rule-details $bin $run_flags --iters 2 --profile >"$OUT/$f.ncu-clean.txt" 2>&1
		check "$f: ncu on the clean $clean" $? 0
		if [ -n "${NCU_RULE_OF[$f]:-}" ]; then
			grep -q -i -E "${NCU_RULE_OF[$f]}" "$OUT/$f.ncu.txt"
			check "$f: ncu's rule fires on $flawed" $? 0 "$(grep -m1 -i -E "${NCU_RULE_OF[$f]}" "$OUT/$f.ncu.txt" | cut -c1-160)"
			grep -q -i -E "${NCU_RULE_OF[$f]}" "$OUT/$f.ncu-clean.txt"
			check "$f: ncu's rule is silent on the clean $clean" $? 1 "$(grep -m1 -i -E "${NCU_RULE_OF[$f]}" "$OUT/$f.ncu-clean.txt" | cut -c1-160)"
		fi
		for m in ${NCU_LESS_OF[$f]:+"${NCU_LESS_OF[$f]}"} ${NCU_MORE_OF[$f]:+"${NCU_MORE_OF[$f]}"}; do
			a=$(ncu_metric "$m" "$OUT/$f.ncu.txt")
			b=$(ncu_metric "$m" "$OUT/$f.ncu-clean.txt")
			op='<'
			[ "$m" = "${NCU_MORE_OF[$f]:-}" ] && op='>'
			[ -n "$a" ] && [ -n "$b" ] && awk "BEGIN{exit !($a $op $b)}"
			check "$f: ncu's $m on $flawed $op the clean one's" $? 0 "flawed ${a:-?}, clean ${b:-?}"
		done
		for r in flawed clean; do
			file="$OUT/$f.ncu.txt"
			[ $r = clean ] && file="$OUT/$f.ncu-clean.txt"
			if grep -q -i "$NCU_GRID_RULE" "$file"; then echo "## finding ncu '$NCU_GRID_RULE' fires on the $r kernel of $f"; fi
		done
	done
fi

printf '%s\n' "${summary[@]}"
exit $failed
