#!/usr/bin/env bash
# nvtx-check.sh: what the NVTX depths cost and that ncu's NVTX filter sees
# them, in one device call (.device and .nsys carried; .device/nvtx.test
# from `go test -c -o .device/nvtx.test ./nvtx`).
#   - the step with no tool attached at --nvtx=iteration, layer and op,
#     alternated twice (medians of 20 iterations);
#   - push+pop of a registered range, global and in a domain (Go benchmark,
#     5 runs for the spread);
#   - ncu --nvtx-include at each depth profiles exactly the plan's kernels
#     of that range; --replay-mode range and app-range over a range;
#     --graph-profiling graph and node with --graph.
# Prints "## ok/FAIL" lines and a summary; exits 1 if a check failed.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/gpubench-nvtx}
mkdir -p "$OUT" || exit 2
bin=.device/gpubench
failed=0
say() { echo "## $*"; }
check() { if [ "$2" = "$3" ]; then say "ok    $1 ${*:4}"; else say "FAIL  $1 got $2 want $3 ${*:4}"; failed=1; fi; }

for round in 1 2; do
	for depth in iteration layer op; do
		$bin --model=small --nvtx=$depth --iters 20 --warmup 5 --json "$OUT/nvtx-$depth-$round.json" >/dev/null 2>&1
		check "run --nvtx=$depth #$round" $? 0
	done
done
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for d in ("iteration", "layer", "op"):
    v = [json.load(open(f"{out}/nvtx-{d}-{r}.json"))["summary"]["step_ms"]["median"] for r in (1, 2)]
    print(f"## step --nvtx={d}: {v[0]:.3f} / {v[1]:.3f} ms (two rounds)")
PY
if [ -x .device/nvtx.test ]; then
	.device/nvtx.test -test.run '^$' -test.bench 'PushPop' -test.count 5 -test.benchtime 2000000x 2>&1 | grep -E '^Benchmark' | tee "$OUT/nvtx-bench.txt"
fi

# ncu's NVTX filter at each depth: the number of kernels profiled equals
# the plan's count for that range.
count_plan() { # count_plan DEPTH PATH...: kernels of the plan in that range (one iteration)
	$bin plan --model=tiny --nvtx=$1 --format=json | python3 -c '
import json, sys
p = json.load(sys.stdin)
rs = [p["iteration"]]
for name in sys.argv[1:]:  # every range on the path: ncu matches all same-named siblings
    rs = [c for r in rs for c in r["children"] if c["name"] == name]
print(sum(r["inclusive"]["kernels"] for r in rs))' "${@:2}"
}
ncu_count() { grep -c '^  [a-zA-Z_0-9]*.*(\([0-9]*, [0-9]*, [0-9]*\)x(' "$1"; }
for spec in "iteration|forward" "layer|forward layer1 attention" "op|backward layer0 mlp matmul_backward_input"; do
	depth=${spec%%|*} path=${spec#*|}
	want=$(count_plan $depth $path)
	inc="iteration2/$(tr ' ' '/' <<<"$path")/"
	ncu --clock-control none --nvtx --nvtx-include "$inc" --profile-from-start off --metrics gpu__time_duration.sum \
		$bin --model=tiny --nvtx=$depth --iters 4 --warmup 1 --profile >"$OUT/ncu-$depth.txt" 2>&1
	got=$(grep -c 'gpu__time_duration.sum' "$OUT/ncu-$depth.txt")
	check "ncu --nvtx-include $inc" "$got" "$want" "kernels (plan: $want)"
done
# Range replay: the whole range as one result.
for mode in range app-range; do
	ncu --clock-control none --nvtx --nvtx-include "iteration2/forward/" --replay-mode $mode --profile-from-start off \
		--metrics gpu__time_duration.sum $bin --model=tiny --iters 4 --warmup 1 --profile >"$OUT/ncu-replay-$mode.txt" 2>&1
	rc=$?
	check "ncu --replay-mode $mode" $rc 0 "$(grep -c 'gpu__time_duration.sum' "$OUT/ncu-replay-$mode.txt") result(s)"
done
for gp in node graph; do
	ncu --clock-control none --graph-profiling $gp --nvtx --nvtx-include "iteration2/forward/" --profile-from-start off \
		--metrics gpu__time_duration.sum $bin --model=tiny --graph --iters 4 --warmup 1 --profile >"$OUT/ncu-graph-$gp.txt" 2>&1
	rc=$?
	check "ncu --graph-profiling $gp" $rc 0 "$(grep -c 'gpu__time_duration.sum' "$OUT/ncu-graph-$gp.txt") result(s)"
done
exit $failed
