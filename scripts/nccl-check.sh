#!/usr/bin/env bash
# nccl-check.sh: what one GPU can show of --gpus (issue 15), in one device
# call. Build here (bash scripts/nccl-check.sh build), carry the bundle and
# .nsys, run it there. Every check prints "## ok ..." or "## FAIL ...";
# the summary comes last; exit 1 if any failed.
set -u
cd "$(dirname "$0")/.." || exit 2
if [ "${1:-}" = build ]; then
	set -e
	mkdir -p .device
	go build -ldflags="-w" -o .device/gpubench ./cmd/gpubench
	go test -c -tags gpu -ldflags="-s -w" -o .device/model-cuda.test ./model/cuda
	exit 0
fi
# Everything goes under $OUT/r, packed into $OUT/results.tgz at the end
# (the device tool brings back a handful of files).
RESULTS=${OUT:-/tmp/gpubench-nccl-check}
OUT=$RESULTS/r
mkdir -p "$OUT"
steps=${STEPS:-loss tests nsys}
has() { [[ " $steps " == *" $1 "* ]]; }
bin=.device/gpubench
export NCCL_NVLS_ENABLE=0
# shellcheck source=scripts/check-lib.sh
source scripts/check-lib.sh

nvidia-smi -L >"$OUT/gpus.txt" 2>&1
ls -l /usr/lib/x86_64-linux-gnu/libnccl* >>"$OUT/gpus.txt" 2>&1

# The loss with and without --gpus=1: the same parameters and batch, so
# the same loss, bitwise if the all-reduce of one rank is the identity.
lastloss() { grep -A3 '^data-parallel' "$1" | awk '$1 == "0" { print $8 }'; }
jsonloss() { python3 -c 'import json,sys,numpy as np; r=json.load(open(sys.argv[1])); print(repr(np.float32(r["iterations"][-1]["loss"])))' "$1"; }
has loss && for cfg in "tiny fp32 8" "gpt2-124m bf16 8"; do
	set -- $cfg
	tag=$1-$2
	timeout 60 $bin --model=$1 --dtype=$2 --batch-size $3 --json "$OUT/plain-$tag.json" >"$OUT/plain-$tag.txt" 2>&1
	check "plain $tag" $? 0 "$(grep -i 'step' "$OUT/plain-$tag.txt" | head -2 | tr -s ' ' | tr '\n' ';')"
	timeout 60 $bin --model=$1 --dtype=$2 --batch-size $3 --gpus=1 >"$OUT/gpus1-$tag.txt" 2>&1
	check "--gpus=1 $tag" $? 0 "$(tail -3 "$OUT/gpus1-$tag.txt" | tr -s ' ' | tr '\n' ';')"
	a=$(jsonloss "$OUT/plain-$tag.json" 2>&1) b=$(lastloss "$OUT/gpus1-$tag.txt")
	python3 -c 'import sys,numpy as np; a=np.float32(sys.argv[1].replace("np.float32(","").rstrip(")")); b=np.float32(sys.argv[2]); sys.exit(0 if a.tobytes()==b.tobytes() else 1)' "$a" "$b"
	check "loss $tag bitwise equal, plain vs --gpus=1" $? 0 "plain $a, --gpus=1 $b"
done

has tests && for dt in fp32 bf16; do
	timeout 90 .device/model-cuda.test -test.v -nccl -dtype=$dt \
		-test.run 'StepMatchesReference|Deterministic|LaunchesMatchPlan|MemoryMatchesPlan|OneRankAllReduceIsIdentity' >"$OUT/model-nccl-$dt.txt" 2>&1
	check "model GPU tests, one NCCL rank, $dt" $? 0 "$(grep -c -- '--- PASS' "$OUT/model-nccl-$dt.txt") passed; $(grep -o 'differ bitwise.*' "$OUT/model-nccl-$dt.txt" | head -2 | tr '\n' ';')"
done

# The README's command, with --gpus=1: nsys follows the child.
if has nsys && [ -f .nsys/nsys-env.sh ]; then
	# shellcheck disable=SC1091
	source .nsys/nsys-env.sh
	root=$PWD
	cd "$OUT" || exit 2
	# The README's command verbatim, with --gpus=1; then gpt2-124m bf16.
	for cfg in "profile_report_cpu --model=tiny --batch-size 8" "gpt2-bf16 --model=gpt2-124m --dtype=bf16 --batch-size 8"; do
		set -- $cfg
		name=$1
		shift
		timeout 120 nsys profile -w true -t cuda,nvtx,osrt,cudnn,cublas -s process-tree --capture-range=cudaProfilerApi --capture-range-end=stop --cudabacktrace=true -x true -f true -o $name "$root/$bin" "$@" --profile --gpus=1 >nsys-$name.txt 2>&1
		check "nsys profile $* --gpus=1" $? 0 "$(tail -2 nsys-$name.txt | tr '\n' ';')"
		nsys export --type sqlite -f true -o $name.sqlite $name.nsys-rep >export-$name.txt 2>&1
		check "nsys export $name" $? 0
		"$root/$bin" check "$@" --gpus=1 $name.sqlite >check-$name.txt 2>&1
		check "gpubench check $* --gpus=1" $? 0 "$(grep -E '^result|^all-reduce|^== ' check-$name.txt | tr '\n' ';')"
		rm -f $name.nsys-rep
	done
	cd "$root" || exit 2
fi

echo "## summary"
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
tar czf "$RESULTS/results.tgz" -C "$RESULTS" r && rm -rf "$OUT"
exit $failed
