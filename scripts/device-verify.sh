#!/usr/bin/env bash
# device-verify.sh: the checks that need a GPU, in one go, for the device
# machine (see ../shared/device/README.md). Build here first:
#   make device && go test -c -o .device/nvtx.test ./nvtx
# then run it there with .device (and .nsys for the profiler steps) carried.
# Logs and reports go to $OUT. STEPS picks the steps (default: all of
# "tests bench runs dumps profile signals").
#
# Every check prints a line "## ok ..." or "## FAIL ...", and the summary
# printed last repeats them and lists the failed checks. It exits 1 if any
# check failed, 2 on bad usage, 0 only when every check passed.
#
# It ends what it starts by process id, never by name: the SIGINT checks
# signal the pid they recorded (under nsys, the process group of the nsys
# it started, as a Ctrl-C would, and gpubench's pid if nsys moved it to
# another group), a run that outlives its time is killed with what it
# started, and on exit it kills any of its background runs still alive.
# ncu runs with --clock-control none: the card's clocks are not ours to
# lock.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/gpubench-verify}
bin=.device/gpubench
all_steps="tests bench runs dumps profile signals"
steps=${STEPS:-$all_steps}
for s in $steps; do
	case " $all_steps " in
	*" $s "*) ;;
	*)
		echo "device-verify: unknown step \"$s\" in STEPS (known: $all_steps)" >&2
		exit 2
		;;
	esac
done
mkdir -p "$OUT" || exit 2

summary=()
failed=()
note() { summary+=("$*"); echo "## $*"; }

# verdict NAME OK DETAIL...: record a check; OK is 1 when it passed.
verdict() {
	local name=$1 ok=$2
	shift 2
	if [ "$ok" = 1 ]; then
		note "ok    $name $*"
	else
		note "FAIL  $name $*"
		failed+=("$name")
	fi
}

# check NAME RC WANT DETAIL...: a check that passes when RC is WANT.
check() {
	local name=$1 rc=$2 want=$3
	shift 3
	if [ "$rc" = "$want" ]; then
		verdict "$name" 1 "rc=$rc $*"
	else
		verdict "$name" 0 "rc=$rc (want $want) $*"
	fi
}

# Background runs, by pid (each the leader of its own process group): the
# EXIT trap kills the groups still alive, so an interrupted script leaves
# nothing running.
bg=()
cleanup() {
	local p
	for p in "${bg[@]}"; do
		kill -0 "$p" 2>/dev/null && kill_tree "$p"
	done
}

# kill_tree PID: SIGKILL to PID's process group and to every process below
# PID (some may have left the group).
kill_tree() {
	local line
	local -a procs
	mapfile -t procs < <(descendants "$1") # all of them before any dies
	kill -KILL -- "-$1" 2>/dev/null
	for line in "${procs[@]}"; do kill -KILL "${line%% *}" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start CMD...: run CMD in the background in its own process group, with
# its pid, which is also the group's id, in $started.
start() {
	set -m
	"$@" &
	started=$!
	set +m
	bg+=("$started")
}

# descendants PID: "pid pgrp argv0" of every process below PID, found by
# parent pid in /proc.
descendants() {
	local root=$1 f line pid argv0
	local -a st
	for f in /proc/[0-9]*/stat; do
		{ read -r line <"$f"; } 2>/dev/null || continue
		read -r -a st <<<"${line##*) }" # state ppid pgrp ...
		[ "${st[1]}" = "$root" ] || continue
		pid=${f#/proc/}
		pid=${pid%/stat}
		argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1)
		echo "$pid ${st[2]} $argv0"
		descendants "$pid"
	done
}

# finish PID SECONDS: wait up to SECONDS for PID to exit, then kill it and
# what it started; the exit code is in $rc, and $timed_out is 1 if killed.
finish() {
	local pid=$1 i
	timed_out=0
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "device-verify: pid $pid still running after ${2}s, killing it and what it started" >&2
		kill_tree "$pid"
		timed_out=1
	fi
	wait "$pid"
	rc=$?
	local -a live=()
	for i in "${bg[@]}"; do [ "$i" = "$pid" ] || live+=("$i"); done
	bg=("${live[@]}")
}

has() { [[ " $steps " == *" $1 "* ]]; }

if has tests; then
	for t in kernels model-cuda; do
		.device/$t.test -test.count=1 -test.v >"$OUT/$t.log" 2>&1
		rc=$?
		check "$t.test" $rc 0 "pass=$(grep -c '^--- PASS' "$OUT/$t.log") fail=$(grep -c -- '--- FAIL' "$OUT/$t.log")"
		grep -- '--- FAIL' "$OUT/$t.log" | head -20
	done
	grep -E -- 'loss .* relative|allocated' "$OUT/model.log" | head -20
fi

if has bench; then
	.device/nvtx.test -test.run '^$' -test.bench . -test.benchmem -test.count 3 >"$OUT/nvtx-bench.log" 2>&1
	rc=$?
	grep Benchmark "$OUT/nvtx-bench.log" | tee "$OUT/nvtx-bench.txt"
	n=$(grep -c . "$OUT/nvtx-bench.txt")
	verdict "nvtx bench" "$([ $rc = 0 ] && [ "$n" -gt 0 ] && echo 1 || echo 0)" "rc=$rc benchmarks=$n (want rc 0 and some)"
	.device/kernels.test -test.run '^$' -test.bench Matmul -test.benchtime 20x >"$OUT/matmul-bench.log" 2>&1
	rc=$?
	grep Benchmark "$OUT/matmul-bench.log" | tee "$OUT/matmul-bench.txt"
	n=$(grep -c . "$OUT/matmul-bench.txt")
	verdict "matmul bench" "$([ $rc = 0 ] && [ "$n" -gt 0 ] && echo 1 || echo 0)" "rc=$rc benchmarks=$n (want rc 0 and some)"
fi

if has runs; then
	for m in tiny small gpt2-124m; do
		$bin --model=$m --batch-size 8 --json "$OUT/run-$m.json" >"$OUT/run-$m.txt" 2>&1
		rc=$?
		check "run $m" $rc 0 "$(grep -E '^step' "$OUT/run-$m.txt")"
		grep -E '^(memory|TFLOP)' "$OUT/run-$m.txt"
	done
	$bin --model=small --mode=infer --json "$OUT/run-small-infer.json" >"$OUT/run-small-infer.txt" 2>&1
	rc=$?
	check "run small infer" $rc 0 "$(grep -E '^forward' "$OUT/run-small-infer.txt")"
fi

if has dumps; then
	odd="--vocab=1000 --seq-len=37 --layers=2 --heads=3 --channels=96 --batch-size 3"
	for shape in tiny odd; do
		args="--model=tiny"
		[ $shape = odd ] && args="--model=tiny $odd"
		for k in 1 2; do
			# shellcheck disable=SC2086 # args is a list of flags
			$bin $args --iters 1 --warmup 0 --seed 7 --dump "$OUT/dump-$shape-$k" >"$OUT/dump-$shape-$k.txt" 2>&1
			rc=$?
			check "dump $shape #$k" $rc 0 "($OUT/dump-$shape-$k.txt)"
		done
		if cmp -s "$OUT/dump-$shape-1/grads.safetensors" "$OUT/dump-$shape-2/grads.safetensors" &&
			cmp -s "$OUT/dump-$shape-1/outputs.safetensors" "$OUT/dump-$shape-2/outputs.safetensors"; then
			verdict "determinism $shape" 1 "two processes, bitwise-identical loss, logits and gradients"
		else
			verdict "determinism $shape" 0 "the two processes' outputs or gradients differ (or are missing)"
		fi
		python3 scripts/torch_check.py "$OUT/dump-$shape-1" >"$OUT/torch-check-$shape.txt" 2>&1
		rc=$?
		check "torch_check $shape" $rc 0
		tail -22 "$OUT/torch-check-$shape.txt"
	done
fi

if has profile; then
	# shellcheck disable=SC1091 # carried with .nsys
	source .nsys/nsys-env.sh >/dev/null
	check "nsys env" $? 0
	nsys profile -w true -t cuda,nvtx,osrt,cudnn,cublas -s process-tree --capture-range=cudaProfilerApi \
		--capture-range-end=stop --cudabacktrace=true -x true -f true -o "$OUT/profile_report_cpu" \
		$bin --model=small --batch-size 8 --profile >"$OUT/nsys-small.log" 2>&1
	rc=$?
	check "nsys small" $rc 0 "report=$(ls "$OUT"/profile_report_cpu.nsys-rep 2>/dev/null)"
	nsys export --type sqlite -f true -o "$OUT/profile_report_cpu.sqlite" "$OUT/profile_report_cpu.nsys-rep" >/dev/null 2>&1
	check "nsys export small" $? 0
	$bin check --model=small --batch-size 8 "$OUT/profile_report_cpu.sqlite" >"$OUT/check-small.txt" 2>&1
	rc=$?
	check "gpubench check small" $rc 0
	head -40 "$OUT/check-small.txt"
	nsys stats --force-export=true -r nvtx_sum "$OUT/profile_report_cpu.nsys-rep" 2>/dev/null | grep -E 'Range|iteration|forward|backward' | head -20
	# Small exports for testdata/: one good, one made without the capture range.
	nsys profile -t cuda,nvtx -s none --capture-range=cudaProfilerApi --capture-range-end=stop -f true \
		-o "$OUT/tiny-good" $bin --model=tiny --iters 3 --warmup 1 --profile >/dev/null 2>&1
	check "nsys tiny-good" $? 0
	nsys export --type sqlite -f true -o "$OUT/tiny-good.sqlite" "$OUT/tiny-good.nsys-rep" >/dev/null 2>&1
	check "nsys export tiny-good" $? 0
	$bin check --model=tiny --iters 3 "$OUT/tiny-good.sqlite" >/dev/null 2>&1
	check "gpubench check tiny-good" $? 0
	nsys profile -t cuda,nvtx -s none -f true -o "$OUT/tiny-nocapture" $bin --model=tiny --iters 3 --warmup 1 >/dev/null 2>&1
	check "nsys tiny-nocapture" $? 0
	nsys export --type sqlite -f true -o "$OUT/tiny-nocapture.sqlite" "$OUT/tiny-nocapture.nsys-rep" >/dev/null 2>&1
	check "nsys export tiny-nocapture" $? 0
	$bin check --model=tiny --iters 3 "$OUT/tiny-nocapture.sqlite" >"$OUT/check-nocapture.txt" 2>&1
	rc=$?
	check "gpubench check tiny-nocapture" $rc 1 "$(tail -3 "$OUT/check-nocapture.txt" | tr '\n' ' ' | cut -c1-300)"
	ncu --clock-control none --nvtx --nvtx-include "iteration2/forward/" --profile-from-start off --metrics gpu__time_duration.sum \
		$bin --model=small --batch-size 8 --profile --iters 4 --warmup 1 >"$OUT/ncu.log" 2>&1
	rc=$?
	profiled=$(grep -c '==PROF== Profiling' "$OUT/ncu.log")
	planned=$($bin plan --model=small --format=json | python3 -c 'import json,sys; p=json.load(sys.stdin); print([c for c in p["iteration"]["children"] if c["name"]=="forward"][0]["direct"]["kernels"])')
	check "ncu iteration2/forward" $rc 0 "kernels profiled=$profiled plan forward=${planned:-?}"
	verdict "ncu kernels = plan forward" "$([ -n "$planned" ] && [ "$profiled" = "$planned" ] && echo 1 || echo 0)" \
		"profiled=$profiled planned=${planned:-?}"
fi

if has signals; then
	start $bin --model=small --iters 100000 --warmup 1 >"$OUT/sigint.txt" 2>&1
	pid=$started
	sleep 4
	kill -INT "$pid"
	finish "$pid" 60
	check "SIGINT" $rc 130 "$(grep -i -E 'partial|interrupted' "$OUT/sigint.txt" | tr '\n' ' ' | cut -c1-200)"
	# shellcheck disable=SC1091 # carried with .nsys
	source .nsys/nsys-env.sh >/dev/null
	rm -f "$OUT/sigint.nsys-rep"
	start nsys profile -t cuda,nvtx -s none --capture-range=cudaProfilerApi --capture-range-end=stop -f true \
		-o "$OUT/sigint" $bin --model=small --iters 100000 --warmup 1 --profile >"$OUT/sigint-nsys.txt" 2>&1
	pid=$started
	sleep 12
	# A Ctrl-C: SIGINT to nsys's process group, and to gpubench itself if
	# nsys started it in another group.
	kill -INT -- "-$pid"
	while read -r p g argv0; do
		[ "$argv0" = "$bin" ] && [ "$g" != "$pid" ] && kill -INT "$p"
	done < <(descendants "$pid")
	finish "$pid" 120
	report=$(ls "$OUT"/sigint.nsys-rep 2>/dev/null)
	verdict "SIGINT under nsys" "$([ -n "$report" ] && [ $timed_out = 0 ] && echo 1 || echo 0)" \
		"nsys rc=$rc report=${report:-none}$([ $timed_out = 1 ] && echo ', killed: nsys did not exit within 120 s')"
	$bin --model=tiny --layers=400 --channels=2048 --heads=16 >"$OUT/preflight.txt" 2>&1
	rc=$?
	check "preflight" $rc 2 "$(cat "$OUT/preflight.txt")"
	$bin --model=gpt2-124m --batch-size 41 --iters 1 --warmup 0 >/dev/null 2>&1
	check "gpt2-124m at the largest batch (41)" $? 0
fi

echo
echo "==== summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
	echo "device-verify: FAIL: ${#failed[@]} of ${#summary[@]} checks failed:"
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
echo "device-verify: PASS: all ${#summary[@]} checks"
