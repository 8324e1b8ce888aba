#!/usr/bin/env bash
# graph-check.sh: in one device call, what shows --graph is right and what
# it buys. Build here with `make device` and carry .device and .nsys (see
# program-check.sh). Every check prints "## ok ..." or "## FAIL ..."; it
# exits 1 if any failed. The two tiny exports (graph nodes traced, and the
# default whole-graph trace) come back in $OUT for testdata/nsys.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/gpubench-graph-check}
mkdir -p "$OUT/logs" || exit 2
bin=.device/gpubench
# shellcheck source=scripts/check-lib.sh
source scripts/check-lib.sh # the scripts run from the repository root
L=$OUT/logs

.device/model-cuda.test -test.count=1 -test.v -graph >"$L/model-graph.log" 2>&1
check "model-cuda.test -graph" $? 0 "pass=$(grep -c -- '--- PASS' "$L/model-graph.log") fail=$(grep -c -- '--- FAIL' "$L/model-graph.log")"

# Two processes, bit for bit, with graphs.
for i in 1 2; do $bin --model=small --graph --iters 2 --warmup 1 --dump "$L/dump$i" >"$L/dump$i.log" 2>&1; done
cmp -s <(cat "$L"/dump1/*) <(cat "$L"/dump2/*)
check "two processes bitwise with --graph" $? 0 "$(ls "$L/dump1" | wc -l) files"
# ... and the same bits as without graphs.
$bin --model=small --iters 2 --warmup 1 --dump "$L/dump0" >"$L/dump0.log" 2>&1
cmp -s <(cat "$L"/dump0/*) <(cat "$L"/dump1/*)
check "--graph bitwise equal to no graph" $? 0
rm -rf "$L"/dump0 "$L"/dump1 "$L"/dump2

compute-sanitizer --tool memcheck --error-exitcode 9 $bin --model=tiny --graph --iters 2 --warmup 1 >"$L/memcheck.log" 2>&1
check "memcheck tiny --graph" $? 0 "$(grep -m1 'ERROR SUMMARY' "$L/memcheck.log")"

source .nsys/nsys-env.sh
for trace in node graph; do
	rep="$OUT/tiny-graph-$trace-h200"
	nsys profile -t cuda,nvtx --capture-range=cudaProfilerApi --capture-range-end=stop --cuda-graph-trace=$trace -f true -o "$rep" \
		$bin --model=tiny --graph --iters 3 --profile >"$L/nsys-$trace.log" 2>&1
	check "nsys --cuda-graph-trace=$trace" $? 0
	nsys export --type sqlite --force-overwrite true -o "$rep.sqlite" "$rep.nsys-rep" >>"$L/nsys-$trace.log" 2>&1
	$bin check --model=tiny --graph --iters 3 "$rep.sqlite" >"$L/check-$trace.txt" 2>&1
	echo "check --cuda-graph-trace=$trace rc=$?"; head -30 "$L/check-$trace.txt"
	rm -f "$rep.nsys-rep"
done
# The guide's command (default graph trace) on small with --graph.
rep="$L/small-graph"
nsys profile -w true -t cuda,nvtx,osrt,cudnn,cublas -s process-tree --capture-range=cudaProfilerApi \
	--capture-range-end=stop --cudabacktrace=true -x true -f true -o "$rep" $bin --model=small --batch-size 8 --graph --profile >"$L/nsys-small.log" 2>&1
check "nsys guide small --graph" $? 0
nsys export --type sqlite --force-overwrite true -o "$rep.sqlite" "$rep.nsys-rep" >/dev/null 2>&1
$bin check --model=small --graph "$rep.sqlite" >"$L/check-small.txt" 2>&1
echo "check small --graph rc=$?"; grep -m3 "result\|graph" "$L/check-small.txt"
rm -f "$rep.nsys-rep" "$rep.sqlite"

ncu --clock-control none --graph-profiling node --nvtx --nvtx-include "iteration2/forward/" --profile-from-start off \
	--metrics gpu__time_duration.sum $bin --model=small --graph --iters 4 --warmup 1 --profile >"$L/ncu.log" 2>&1
n=$(grep -c '==PROF== Profiling' "$L/ncu.log")
check "ncu --graph-profiling node iteration2/forward" $? 0 "kernels profiled=$n plan forward=$($bin plan --model=small --format=json | python3 -c 'import json,sys; p=json.load(sys.stdin); print([c for c in p["iteration"]["children"] if c["name"]=="forward"][0]["direct"]["kernels"])')"

# Speed: with and without graphs, alternated, best of two medians.
for round in 1 2; do
	for preset in tiny small gpt2-124m; do
		for g in plain graph; do
			flag=""; [ $g = graph ] && flag=--graph
			$bin --model=$preset $flag --iters 20 --warmup 5 --json "$L/$g-$preset-$round.json" >"$L/$g-$preset-$round.txt" 2>&1
			check "run $g $preset #$round" $? 0
		done
	done
done
python3 - "$L" <<'PY' | tee "$OUT/speed.txt"
import json, sys, glob
d = sys.argv[1]
print("preset      plain step ms  graph step ms  graph/plain")
for p in ("tiny", "small", "gpt2-124m"):
    m = lambda g: min(json.load(open(f))["summary"]["step_ms"]["median"] for f in glob.glob(f"{d}/{g}-{p}-*.json"))
    a, b = m("plain"), m("graph")
    print(f"{p:10s} {a:13.3f} {b:14.3f} {b/a:12.3f}")
PY
for g in "" --graph; do
	python3 scripts/torch_bench.py --all $g --iters 20 --warmup 5 --json "$L/torch$g.json" >"$L/torch$g.txt" 2>&1
	check "torch_bench --all $g" $? 0
	grep -E "^(tiny|small|gpt2-124m) " "$L/torch$g.txt" | sed "s/^/torch$g /" | tee -a "$OUT/speed.txt"
done
{ echo "summary:"; printf '  %s\n' "${summary[@]}"; } | tee "$OUT/summary.txt"
(cd "$OUT" && tar czf logs.tgz logs && rm -rf logs)
exit $failed
