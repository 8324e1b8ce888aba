#!/usr/bin/env bash
# program-check.sh: in one device call, what shows that the GPU runs the
# program gpubench declares, and that it runs no slower than a baseline
# build. Build here first (it needs Go and the CUDA 11.8 headers):
#
#   make device                                    # .device/gpubench and the GPU tests
#   git worktree add /tmp/base <commit> && (cd /tmp/base && make build) &&
#       cp /tmp/base/bin/gpubench .device/gpubench-base
#   ../shared/device/fetch-nsys-deps.sh .nsys
#
# then run it on the GPU machine with .device and .nsys carried. Logs,
# reports and JSON go to $OUT. Every check prints "## ok ..." or
# "## FAIL ..."; the summary printed last repeats them. It exits 1 if any
# check failed, 0 only when all passed.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/gpubench-program-check}
mkdir -p "$OUT" || exit 2
bin=.device/gpubench
base=.device/gpubench-base
# shellcheck source=scripts/check-lib.sh
source scripts/check-lib.sh # the scripts run from the repository root

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"

# 1. The GPU tests: every kernel against its float64 reference, the step
# against the model reference, launches and allocations against the plan.
for t in kernels model-cuda; do
	.device/$t.test -test.count=1 -test.v >"$OUT/$t.log" 2>&1
	check "$t.test" $? 0 "pass=$(grep -c -- '--- PASS' "$OUT/$t.log") fail=$(grep -c -- '--- FAIL' "$OUT/$t.log")"
done

# 2. The guide's Nsight Systems command, flags verbatim, on small and on
# tiny in infer mode, then gpubench check with order compared.
if [ -f .nsys/nsys-env.sh ]; then
	# shellcheck disable=SC1091
	source .nsys/nsys-env.sh
	for run in "small train" "tiny infer"; do
		set -- $run
		rep="$OUT/profile_report_cpu_$1_$2"
		nsys profile -w true -t cuda,nvtx,osrt,cudnn,cublas -s process-tree --capture-range=cudaProfilerApi \
			--capture-range-end=stop --cudabacktrace=true -x true -f true -o "$rep" \
			$bin --model=$1 --mode=$2 --batch-size 8 --profile >"$OUT/nsys-$1-$2.log" 2>&1
		check "nsys $1 $2" $? 0
		nsys export --type sqlite --force-overwrite true -o "$rep.sqlite" "$rep.nsys-rep" >>"$OUT/nsys-$1-$2.log" 2>&1
		$bin check --model=$1 --mode=$2 --batch-size 8 "$rep.sqlite" >"$OUT/check-$1-$2.txt" 2>&1
		check "check $1 $2" $? 0 "$(grep -m1 'result:' "$OUT/check-$1-$2.txt")"
		rm -f "$rep.nsys-rep" # keep $OUT small; the sqlite stays for small
		[ "$1" = small ] || rm -f "$rep.sqlite"
	done
else
	check "nsys" 1 0 "no .nsys carried"
fi

# 3. compute-sanitizer memcheck on one tiny step: every address the new
# executor resolves lands inside its buffer.
compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 \
	$bin --model=tiny --iters 1 --warmup 0 >"$OUT/memcheck.log" 2>&1
check "memcheck tiny" $? 0 "$(grep -m1 'ERROR SUMMARY' "$OUT/memcheck.log")"

# 4. Speed: this build and the baseline build, alternated, then PyTorch,
# all in this call. Medians of 20 iterations after 5 warm-up.
if [ -x "$base" ]; then
	for round in 1 2; do
		for preset in tiny small gpt2-124m; do
			for b in base new; do
				exe=$bin
				[ $b = base ] && exe=$base
				$exe --model=$preset --batch-size 8 --iters 20 --warmup 5 --json "$OUT/$b-$preset-$round.json" >"$OUT/$b-$preset-$round.txt" 2>&1
				check "run $b $preset #$round" $? 0 "$(grep -m1 -i 'step' "$OUT/$b-$preset-$round.txt" | tr -s ' ')"
			done
		done
	done
	python3 - "$OUT" <<'PY' | tee "$OUT/speed.txt"
import json, sys, glob, os
out = sys.argv[1]
print("preset      base step ms   new step ms   new/base")
for preset in ("tiny", "small", "gpt2-124m"):
    def med(b):
        v = [json.load(open(f))["summary"]["step_ms"]["median"] for f in sorted(glob.glob(f"{out}/{b}-{preset}-*.json"))]
        return min(v) if v else float("nan")
    b, n = med("base"), med("new")
    print(f"{preset:10s} {b:12.3f} {n:13.3f} {n/b:10.3f}")
PY
fi
python3 scripts/torch_bench.py --all --json "$OUT/torch.json" >"$OUT/torch.txt" 2>&1
check "torch_bench" $? 0 "$(tail -4 "$OUT/torch.txt" | tr '\n' ' ')"

{
	echo "summary:"
	printf '  %s\n' "${summary[@]}"
} | tee "$OUT/summary.txt"
# The device tool returns few files: everything else goes into one archive.
(cd "$OUT" && tar czf logs.tgz --exclude=logs.tgz --exclude=summary.txt --exclude=speed.txt . &&
	find . -type f ! -name logs.tgz ! -name summary.txt ! -name speed.txt -delete)
exit $failed
