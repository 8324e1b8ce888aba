#!/usr/bin/env bash
# device-verify.sh: the checks that need a GPU, in one go, for the device
# machine (see ../shared/device/README.md). Build here first:
#   make device && go test -c -o .device/nvtx.test ./nvtx
# then run it there with .device (and .nsys for the profiler steps) carried.
# Logs and reports go to $OUT; a summary is printed last.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/gpubench-verify}
mkdir -p "$OUT"
bin=.device/gpubench
steps=${STEPS:-"tests bench runs dumps profile signals"}
summary=()
note() { summary+=("$*"); echo "## $*"; }

has() { [[ " $steps " == *" $1 "* ]]; }

if has tests; then
	.device/kernels.test -test.count=1 -test.v >"$OUT/kernels.log" 2>&1
	note "kernels.test rc=$? pass=$(grep -c '^--- PASS' "$OUT/kernels.log") fail=$(grep -c -- '--- FAIL' "$OUT/kernels.log")"
	grep -- '--- FAIL' "$OUT/kernels.log" | head -20
	.device/model.test -test.count=1 -test.v >"$OUT/model.log" 2>&1
	note "model.test rc=$? pass=$(grep -c '^--- PASS' "$OUT/model.log") fail=$(grep -c -- '--- FAIL' "$OUT/model.log")"
	grep -E -- '--- FAIL|loss .* relative|allocated' "$OUT/model.log" | head -20
fi

if has bench; then
	.device/nvtx.test -test.run '^$' -test.bench . -test.benchmem -test.count 3 2>&1 | grep Benchmark | tee "$OUT/nvtx-bench.txt"
	.device/kernels.test -test.run '^$' -test.bench Matmul -test.benchtime 20x 2>&1 | grep Benchmark | tee "$OUT/matmul-bench.txt"
fi

if has runs; then
	for m in tiny small gpt2-124m; do
		$bin --model=$m --batch-size 8 --json "$OUT/run-$m.json" >"$OUT/run-$m.txt" 2>&1
		note "run $m rc=$? $(grep -E '^step' "$OUT/run-$m.txt")"
		grep -E '^(memory|TFLOP)' "$OUT/run-$m.txt"
	done
	$bin --model=small --mode=infer --json "$OUT/run-small-infer.json" >"$OUT/run-small-infer.txt" 2>&1
	note "run small infer rc=$? $(grep -E '^forward' "$OUT/run-small-infer.txt")"
fi

if has dumps; then
	odd="--vocab=1000 --seq-len=37 --layers=2 --heads=3 --channels=96 --batch-size 3"
	for shape in tiny odd; do
		args="--model=tiny"; [ $shape = odd ] && args="--model=tiny $odd"
		for k in 1 2; do $bin $args --iters 1 --warmup 0 --seed 7 --dump "$OUT/dump-$shape-$k" >/dev/null 2>&1; done
		if cmp -s "$OUT/dump-$shape-1/grads.safetensors" "$OUT/dump-$shape-2/grads.safetensors" &&
			cmp -s "$OUT/dump-$shape-1/outputs.safetensors" "$OUT/dump-$shape-2/outputs.safetensors"; then
			note "determinism $shape: two processes, bitwise-identical loss, logits and gradients"
		else
			note "determinism $shape: DIFFERENT"
		fi
		python3 scripts/torch_check.py "$OUT/dump-$shape-1" >"$OUT/torch-check-$shape.txt" 2>&1
		note "torch_check $shape rc=$?"
		tail -22 "$OUT/torch-check-$shape.txt"
	done
fi

if has profile; then
	source .nsys/nsys-env.sh >/dev/null
	nsys profile -w true -t cuda,nvtx,osrt,cudnn,cublas -s process-tree --capture-range=cudaProfilerApi \
		--capture-range-end=stop --cudabacktrace=true -x true -f true -o "$OUT/profile_report_cpu" \
		$bin --model=small --batch-size 8 --profile >"$OUT/nsys-small.log" 2>&1
	note "nsys small rc=$? report=$(ls "$OUT"/profile_report_cpu.nsys-rep 2>/dev/null)"
	nsys export --type sqlite -f true -o "$OUT/profile_report_cpu.sqlite" "$OUT/profile_report_cpu.nsys-rep" >/dev/null 2>&1
	$bin check --model=small --batch-size 8 "$OUT/profile_report_cpu.sqlite" >"$OUT/check-small.txt" 2>&1
	note "gpubench check small rc=$?"
	head -40 "$OUT/check-small.txt"
	nsys stats --force-export=true -r nvtx_sum "$OUT/profile_report_cpu.nsys-rep" 2>/dev/null | grep -E 'Range|iteration|forward|backward' | head -20
	# Small exports for testdata/: one good, one made without the capture range.
	nsys profile -t cuda,nvtx -s none --capture-range=cudaProfilerApi --capture-range-end=stop -f true \
		-o "$OUT/tiny-good" $bin --model=tiny --iters 3 --warmup 1 --profile >/dev/null 2>&1
	nsys export --type sqlite -f true -o "$OUT/tiny-good.sqlite" "$OUT/tiny-good.nsys-rep" >/dev/null 2>&1
	$bin check --model=tiny --iters 3 "$OUT/tiny-good.sqlite" >/dev/null 2>&1
	note "check tiny-good rc=$? (want 0)"
	nsys profile -t cuda,nvtx -s none -f true -o "$OUT/tiny-nocapture" $bin --model=tiny --iters 3 --warmup 1 >/dev/null 2>&1
	nsys export --type sqlite -f true -o "$OUT/tiny-nocapture.sqlite" "$OUT/tiny-nocapture.nsys-rep" >/dev/null 2>&1
	$bin check --model=tiny --iters 3 "$OUT/tiny-nocapture.sqlite" >"$OUT/check-nocapture.txt" 2>&1
	note "check tiny-nocapture rc=$? (want 1): $(tail -3 "$OUT/check-nocapture.txt" | tr '\n' ' ' | cut -c1-300)"
	ncu --nvtx --nvtx-include "iteration2/forward/" --profile-from-start off --metrics gpu__time_duration.sum \
		$bin --model=small --batch-size 8 --profile --iters 4 --warmup 1 >"$OUT/ncu.log" 2>&1
	note "ncu iteration2/forward rc=$? kernels profiled=$(grep -c '==PROF== Profiling' "$OUT/ncu.log") plan forward=$($bin plan --model=small --format=json | python3 -c 'import json,sys; p=json.load(sys.stdin); print([c for c in p["iteration"]["children"] if c["name"]=="forward"][0]["direct"]["kernels"])')"
fi

if has signals; then
	$bin --model=small --iters 100000 --warmup 1 >"$OUT/sigint.txt" 2>&1 &
	pid=$!; sleep 4; kill -INT $pid; wait $pid; rc=$?
	note "SIGINT rc=$rc (want 130): $(grep -i -E 'partial|interrupted' "$OUT/sigint.txt" | tr '\n' ' ' | cut -c1-200)"
	source .nsys/nsys-env.sh >/dev/null
	nsys profile -t cuda,nvtx -s none --capture-range=cudaProfilerApi --capture-range-end=stop -f true \
		-o "$OUT/sigint" $bin --model=small --iters 100000 --warmup 1 --profile >"$OUT/sigint-nsys.txt" 2>&1 &
	sleep 12; pkill -INT -f "gpubench --model=small --iters 100000" ; wait $!
	note "SIGINT under nsys rc=$? report=$(ls "$OUT"/sigint.nsys-rep 2>/dev/null)"
	$bin --model=tiny --layers=400 --channels=2048 --heads=16 >"$OUT/preflight.txt" 2>&1
	note "preflight rc=$? (want 2): $(cat "$OUT/preflight.txt")"
	$bin --model=gpt2-124m --batch-size 41 --iters 1 --warmup 0 >/dev/null 2>&1
	note "gpt2-124m at the largest batch (41) rc=$?"
fi

echo
echo "==== summary"
printf '%s\n' "${summary[@]}"
