#!/usr/bin/env bash
# profiler-matrix.sh: the guide's Nsight Systems command and variations of
# it, each run on the same gpubench step, and for every row: whether the
# report passes `gpubench check`, what the setting adds to the sqlite
# export (its tables beyond the baseline's), and the median step time under
# the profiler against the same binary without one, in this call.
#
# Usage (on a GPU machine, .device and .nsys carried):
#   OUT=... bash scripts/profiler-matrix.sh [MODEL]     (default tiny)
# Writes $OUT/profiler-matrix.md and exits 1 if a row that should pass fails
# (or one that should fail passes).
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/gpubench-matrix}
mkdir -p "$OUT" || exit 2
bin=$(pwd)/.device/gpubench
model=${1:-tiny}
ITERS=20
# shellcheck disable=SC1091
source .nsys/nsys-env.sh
guide="-w true -t cuda,nvtx,osrt,cudnn,cublas -s process-tree --capture-range=cudaProfilerApi --capture-range-end=stop --cudabacktrace=true -x true -f true"
run_flags="--model=$model --batch-size 8 --iters $ITERS --warmup 5"
step_ms() { sed -nE 's/^step +([0-9.]+).*/\1/p' "$1" | head -1; }
tables() { python3 -c "import sqlite3,sys; print(' '.join(sorted(r[0] for r in sqlite3.connect(sys.argv[1]).execute(\"select name from sqlite_master where type='table'\"))))" "$1" 2>/dev/null; }

# Without a profiler: the reference step time, twice (before and after).
$bin $run_flags >"$OUT/bare-1.txt" 2>&1
bare=$(step_ms "$OUT/bare-1.txt")

# name | nsys flags | gpubench flags | check flags | expect (pass/fail)
rows=(
	"guide's command|$guide|--profile||pass"
	"-s none|${guide/-s process-tree/-s none}|--profile||pass"
	"-s cpu|${guide/-s process-tree/-s cpu}|--profile||pass"
	"--cudabacktrace=false|${guide/--cudabacktrace=true/--cudabacktrace=false}|--profile||pass"
	"--cudabacktrace=all:5000 (threshold 5 µs)|${guide/--cudabacktrace=true/--cudabacktrace=all:5000}|--profile||pass"
	"-t without osrt|${guide/cuda,nvtx,osrt,cudnn,cublas/cuda,nvtx}|--profile||pass"
	"--capture-range=nvtx -p profile|${guide/--capture-range=cudaProfilerApi/--capture-range=nvtx -p profile}|--profile||pass"
	"--capture-range=none|${guide/--capture-range=cudaProfilerApi --capture-range-end=stop/}|--profile||fail"
	"--cuda-memory-usage=true|$guide --cuda-memory-usage=true|--profile||pass"
	"--nvtx=layer|$guide|--profile --nvtx=layer|--nvtx=layer|pass"
	"--graph, --cuda-graph-trace=node|$guide --cuda-graph-trace=node|--profile --graph|--graph|pass"
	"--graph, --cuda-graph-trace=graph|$guide|--profile --graph|--graph|pass"
	"--profile-iters=5-9|$guide|--profile-iters=5-9|--profile-iters=5-9|pass"
	"--capture-range-end=repeat:2|${guide/--capture-range-end=stop/--capture-range-end=repeat:2}|--profile-windows=2|--profile-windows=2|pass"
)
failed=0
base_tables=""
md="| setting | check | expected | step ms (bare $bare) | overhead | tables added to the export |
|---|---|---|---|---|---|"
k=0
for row in "${rows[@]}"; do
	IFS='|' read -r name nflags gflags cflags expect <<<"$row"
	k=$((k + 1))
	rep="$OUT/r$k"
	# shellcheck disable=SC2086 # flag lists split into words on purpose
	nsys profile $nflags -o "$rep" $bin $run_flags $gflags >"$rep.log" 2>&1
	rc=$?
	step=$(step_ms "$rep.log")
	verdict=""
	# repeat:N writes one report per window, with a number in its name.
	shopt -s nullglob
	reports=("$rep"*.nsys-rep)
	shopt -u nullglob
	checked=0
	ok=1
	added=""
	for r in "${reports[@]}"; do
		nsys export --type sqlite --force-overwrite true -o "${r%.nsys-rep}.sqlite" "$r" >>"$rep.log" 2>&1
		# shellcheck disable=SC2086
		$bin check $run_flags $cflags "${r%.nsys-rep}.sqlite" >"${r%.nsys-rep}.check.txt" 2>&1 || ok=0
		checked=$((checked + 1))
		t=$(tables "${r%.nsys-rep}.sqlite")
		[ -n "$base_tables" ] || base_tables=$t
		added=$(comm -13 <(tr ' ' '\n' <<<"$base_tables" | sort) <(tr ' ' '\n' <<<"$t" | sort) | tr '\n' ' ')
		rm -f "${r%.nsys-rep}.sqlite" "$r"
	done
	[ $checked -gt 0 ] || ok=0
	if [ $ok = 1 ]; then verdict=pass; else verdict=fail; fi
	[ "$verdict" = "$expect" ] || failed=1
	over="?"
	[ -n "$step" ] && [ -n "$bare" ] && over=$(python3 -c "print(f'{100*($step/$bare-1):+.1f}%')")
	md+="
| $name | $verdict ($checked report(s), nsys rc $rc) | $expect | ${step:-?} | $over | ${added:-none} |"
	echo "matrix: $name: $verdict (want $expect), step ${step:-?} ms" >&2
done
$bin $run_flags >"$OUT/bare-2.txt" 2>&1
md+="

Bare step after the matrix: $(step_ms "$OUT/bare-2.txt") ms (before: $bare ms)."
echo "$md" | tee "$OUT/profiler-matrix.md"
exit $failed
