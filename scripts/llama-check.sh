#!/usr/bin/env bash
# llama-check.sh: the GPU checks of LLaMA and generate mode, in one device
# call. Build here (bash scripts/llama-check.sh build), carry .device and
# .nsys, run it there. STEPS picks steps (default: all of
# "tests sanitize hf profile bench soak"). Every check prints "## ok ..." or
# "## FAIL ..."; the summary comes last; exit 1 if any failed.
set -u
cd "$(dirname "$0")/.." || exit 2
if [ "${1:-}" = build ]; then
	set -e
	mkdir -p .device
	# -w drops DWARF only: the symbol table stays, so that nsys's CPU
	# samples name gpubench's functions (host-stall's dataLoaderStall).
	go build -ldflags="-w" -o .device/gpubench ./cmd/gpubench
	go test -c -tags gpu -ldflags="-s -w" -o .device/kernels.test ./kernels
	go test -c -tags gpu -ldflags="-s -w" -o .device/model-cuda.test ./model/cuda
	exit 0
fi
OUT=${OUT:-/tmp/gpubench-llama-check}
mkdir -p "$OUT"
bin=.device/gpubench
steps=${STEPS:-tests sanitize hf profile bench soak}
# shellcheck source=scripts/check-lib.sh
source scripts/check-lib.sh
has() { [[ " $steps " == *" $1 "* ]]; }

if has tests; then
	.device/kernels.test -test.run 'RMSNorm|RoPE|SwiGLU|Argmax|Gather|Embedding|Matvec|Attention|Decode' >"$OUT/kernels.txt" 2>&1
	check "kernel tests (LLaMA layers, GEMV, attention)" $? 0 "$(grep -c '^--- PASS\|^    --- PASS' "$OUT/kernels.txt") passed"
	for dt in fp32 bf16; do
		.device/model-cuda.test -test.run 'Llama|KVCache|LaunchesMatchPlan|MemoryMatchesPlan' -test.v -dtype=$dt >"$OUT/model-$dt.txt" 2>&1
		check "model tests $dt" $? 0 "$(grep -E 'logits|recompute' "$OUT/model-$dt.txt" | head -4 | tr -s ' ' | tr '\n' ';')"
	done
	.device/model-cuda.test -test.run 'LlamaGenerate|KVCache|LlamaLaunches' -dtype=bf16 -graph >"$OUT/model-bf16-graph.txt" 2>&1
	check "model tests bf16 --graph" $? 0
fi

if has sanitize; then
	compute-sanitizer --tool memcheck --error-exitcode 9 $bin --model=llama-tiny --mode=generate --iters 2 --warmup 1 >"$OUT/memcheck.txt" 2>&1
	check "memcheck llama-tiny generate" $? 0 "$(grep -o 'ERROR SUMMARY: [0-9]* errors' "$OUT/memcheck.txt")"
	compute-sanitizer --tool memcheck --error-exitcode 9 $bin --model=llama-tiny --mode=generate --dtype=bf16 --iters 2 --warmup 1 >"$OUT/memcheck-bf16.txt" 2>&1
	check "memcheck llama-tiny generate bf16" $? 0 "$(grep -o 'ERROR SUMMARY: [0-9]* errors' "$OUT/memcheck-bf16.txt")"
	compute-sanitizer --tool memcheck --error-exitcode 9 $bin --model=llama-tiny --iters 2 --warmup 1 >"$OUT/memcheck-train.txt" 2>&1
	check "memcheck llama-tiny train" $? 0 "$(grep -o 'ERROR SUMMARY: [0-9]* errors' "$OUT/memcheck-train.txt")"
fi

if has hf; then
	for dt in fp32 bf16; do
		rm -rf "$OUT/dump-$dt"
		$bin --model=llama-tiny --mode=generate --dtype=$dt --iters 1 --warmup 0 --dump "$OUT/dump-$dt" >"$OUT/dump-$dt.txt" 2>&1 &&
			HF_HUB_OFFLINE=1 python3 scripts/llama_hf_check.py "$OUT/dump-$dt" >>"$OUT/dump-$dt.txt" 2>&1
		check "transformers matches a llama-tiny $dt dump" $? 0 "$(tail -1 "$OUT/dump-$dt.txt")"
	done
	# llama2-7b's shape (every layer as the real one), 2 of its 32 layers
	# so the dump stays small, batch 8, 8 new tokens.
	rm -rf "$OUT/dump-7b"
	$bin --model=llama2-7b --layers=2 --mode=generate --dtype=bf16 --batch-size 8 --prompt-len 512 --new-tokens 8 --iters 1 --warmup 0 \
		--dump "$OUT/dump-7b" >"$OUT/dump-7b.txt" 2>&1 &&
		HF_HUB_OFFLINE=1 python3 scripts/llama_hf_check.py "$OUT/dump-7b" >>"$OUT/dump-7b.txt" 2>&1
	check "transformers matches a llama2-7b-shaped bf16 dump (2 layers)" $? 0 "$(tail -1 "$OUT/dump-7b.txt")"
	# llama3-8b's shape: theta 500000 (which transformers 5 reads from
	# rope_parameters) and 4 query heads a key/value head.
	rm -rf "$OUT/dump-8b"
	$bin --model=llama3-8b --layers=2 --mode=generate --dtype=bf16 --batch-size 2 --prompt-len 64 --new-tokens 8 --iters 1 --warmup 0 \
		--dump "$OUT/dump-8b" >"$OUT/dump-8b.txt" 2>&1 &&
		HF_HUB_OFFLINE=1 python3 scripts/llama_hf_check.py "$OUT/dump-8b" >>"$OUT/dump-8b.txt" 2>&1
	check "transformers matches a llama3-8b-shaped bf16 dump (2 layers)" $? 0 "$(tail -1 "$OUT/dump-8b.txt")"
	rm -rf "$OUT"/dump-*/ # the weights need not come back
fi

if has profile; then
	# shellcheck disable=SC1091
	source .nsys/nsys-env.sh
	flags=(--model=llama2-7b --mode=generate --dtype=bf16 --batch-size 8 --iters 2 --warmup 1)
	nsys profile -w true -t cuda,nvtx,osrt,cudnn,cublas -s process-tree --capture-range=cudaProfilerApi \
		--capture-range-end=stop --cudabacktrace=true -x true -f true -o "$OUT/profile_report_cpu" \
		$bin "${flags[@]}" --profile >"$OUT/nsys.txt" 2>&1
	check "nsys guide command, llama2-7b generate" $? 0
	nsys export --type sqlite -f true -o "$OUT/profile_report_cpu.sqlite" "$OUT/profile_report_cpu.nsys-rep" >>"$OUT/nsys.txt" 2>&1
	$bin check "${flags[@]}" "$OUT/profile_report_cpu.sqlite" >"$OUT/check.txt" 2>&1
	check "gpubench check of it" $? 0 "$(tail -1 "$OUT/check.txt")"
	rm -f "$OUT/profile_report_cpu.sqlite"
	want=$($bin plan --model=llama-tiny --mode=generate --format=json | python3 -c '
import json, sys
p = json.load(sys.stdin)
print(sum(c["inclusive"]["kernels"] for c in p["iteration"]["children"] if c["name"] == "decode3"))')
	ncu --clock-control none --nvtx --nvtx-include "iteration0/decode3/" --profile-from-start off --metrics gpu__time_duration.sum \
		$bin --model=llama-tiny --mode=generate --iters 2 --warmup 1 --profile >"$OUT/ncu-decode3.txt" 2>&1
	got=$(grep -c 'gpu__time_duration.sum' "$OUT/ncu-decode3.txt")
	check "ncu --nvtx-include iteration0/decode3/ (llama-tiny)" "$got" "$want" "kernels (plan: $want)"
fi

if has bench; then
	for m in "llama2-7b --batch-size 8 --prompt-len 512 --new-tokens 64" "llama3-8b --batch-size 8 --prompt-len 4033 --new-tokens 64"; do
		name=${m%% *}
		$bin --model=$m --mode=generate --dtype=bf16 --iters 3 --warmup 1 --json "$OUT/gen-$name.json" >"$OUT/gen-$name.txt" 2>&1
		check "gpubench generate $name bf16" $? 0 "$(grep -E '^(prefill|decode) ' "$OUT/gen-$name.txt" | tr -s ' ' | tr '\n' ';')"
		cat "$OUT/gen-$name.txt"
	done
	$bin --model=llama2-7b --mode=generate --dtype=bf16 --graph --iters 3 --warmup 1 --json "$OUT/gen-llama2-7b-graph.json" >"$OUT/gen-graph.txt" 2>&1
	check "gpubench generate llama2-7b bf16 --graph" $? 0 "$(grep -E '^(prefill|decode) ' "$OUT/gen-graph.txt" | tr -s ' ' | tr '\n' ';')"
	timeout 300 env HF_HUB_OFFLINE=1 python3 scripts/hf_llama_bench.py --model llama2-7b --cache static --json "$OUT/hf-static.json" >"$OUT/hf.txt" 2>&1
	check "transformers llama2-7b static cache" $? 0 "$(tail -1 "$OUT/hf.txt")"
fi

if has soak; then
	OUT="$OUT/soak" SOAK_ROWS=llama bash scripts/soak-table.sh $bin >"$OUT/soak.txt" 2>&1
	check "soak of llama-tiny train and generate" $? 0 "$(grep -c flat "$OUT/soak.txt") rows flat"
	cat "$OUT/soak.txt"
fi

echo
printf '%s\n' "${summary[@]}"
exit $failed
