#!/usr/bin/env bash
# wgmma-check.sh: the Hopper tier (ptx/matmul_wgmma.cu) on a GPU machine, in
# one call. Build here first (bash scripts/llama-check.sh build) and carry
# .device; then, on the machine, from the repository root:
#
#   bash scripts/wgmma-check.sh [steps]     steps: any of asm test bench model attn (default all)
#
#   asm    ptxas -arch=sm_90a -v (the machine's CUDA 13): registers, spills
#   test   the kernel GPU tests of the tier (odd shapes, every plan, bits)
#   bench  BenchmarkMatmulWGMMA (with the sm_80 tier beside it) and cuBLAS
#          through torch on the same shapes (scripts/cublas_bench.py)
#   attn   the attention forward (ptx/attention_wgmma.cu): ptxas -v
#          (registers, spills, and whether ptxas serialised the wgmma),
#          its GPU tests (AttentionWGMMA), and BenchmarkAttentionWGMMA
#          with the mma.sync forward beside it
#   model  gpubench's bf16 step on both tiers (tiny, small, gpt2-124m, and
#          small with --graph), alternated, beside PyTorch eager bf16 and
#          PyTorch's CUDA-graph step of small
#
# Writes logs under $OUT (or ./wgmma-out) and exits non-zero if a step fails.
set -uo pipefail
out=${OUT:-wgmma-out}
mkdir -p "$out"
steps=${*:-asm test bench model attn}
fail=0
step() { echo "## $1: $2"; [ "$2" = ok ] || fail=1; }
has() { [[ " $steps " == *" $1 "* ]]; }
bin=$PWD/.device
if has asm; then
	ptxas=$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)
	if "$ptxas" -arch=sm_90a -v -o /dev/null ptx/matmul_wgmma.ptx >"$out/ptxas.log" 2>&1; then
		grep -E "Compiling entry|registers|spill|warning" "$out/ptxas.log" | sed 's/^ptxas info *: //'
		if grep -q "bytes spill stores\|bytes spill loads" "$out/ptxas.log" && grep -Eq "[1-9][0-9]* bytes spill" "$out/ptxas.log"; then step asm "spills"; else step asm ok; fi
	else
		cat "$out/ptxas.log"
		step asm "ptxas failed"
	fi
fi
if has test; then
	if (cd kernels && timeout 240 "$bin/kernels.test" -test.run 'WGMMA' -test.v -test.count 1) >"$out/test.log" 2>&1; then
		step test ok
	else
		step test failed
	fi
	grep -E "^(--- |=== RUN|ok|FAIL|PASS)|rel|panic|Error|error" "$out/test.log" | grep -v "=== RUN" | tail -40
fi
if has bench; then
	(cd kernels && timeout 240 "$bin/kernels.test" -test.run '^$' -test.bench 'MatmulWGMMA' -test.benchtime 1x) >"$out/bench.log" 2>&1 || step bench failed
	grep "^WGMMA" "$out/bench.log"
	python3 scripts/cublas_bench.py --dtype bf16 >"$out/cublas.log" 2>&1 || step cublas failed
	cat "$out/cublas.log"
fi
if has model; then
	for preset in tiny small gpt2-124m; do
		for round in 1 2; do
			for tier in mma wgmma; do
				timeout 120 "$bin/gpubench" --model=$preset --dtype=bf16 --tier=$tier --batch-size 8 --iters 20 --warmup 5 \
					--json "$out/gb-$preset-$tier-$round.json" >"$out/gb-$preset-$tier-$round.txt" 2>&1 || step "run $preset $tier" failed
				echo "$preset $tier round $round: $(grep -m1 '^step' "$out/gb-$preset-$tier-$round.txt" | tr -s ' ')"
			done
		done
	done
	for tier in mma wgmma; do
		timeout 120 "$bin/gpubench" --model=small --dtype=bf16 --tier=$tier --graph --batch-size 8 --iters 20 --warmup 5 >"$out/gb-small-graph-$tier.txt" 2>&1 || step "run small --graph $tier" failed
		echo "small --graph $tier: $(grep -m1 '^step' "$out/gb-small-graph-$tier.txt" | tr -s ' ')"
	done
	python3 scripts/torch_bench.py --all --dtype bf16 --iters 20 --warmup 5 --json "$out/torch-bf16.json" >"$out/torch-bf16.txt" 2>&1 || step torch_bench failed
	python3 scripts/torch_bench.py --model small --dtype bf16 --graph --iters 20 --warmup 5 >"$out/torch-bf16-small-graph.txt" 2>&1 || step "torch_bench --graph" failed
	grep -iE "median|step" "$out/torch-bf16.txt" "$out/torch-bf16-small-graph.txt" | head -12
fi
if has attn; then
	ptxas=$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)
	if "$ptxas" -arch=sm_90a -v -o /dev/null ptx/attention_wgmma.ptx >"$out/ptxas-attn.log" 2>&1; then
		grep -E "Compiling entry|registers|spill|warning|Performance Loss" "$out/ptxas-attn.log" | sed 's/^ptxas info *: //'
		if grep -Eq "[1-9][0-9]* bytes spill" "$out/ptxas-attn.log"; then
			step "attn asm" "spills"
		elif grep -q "Performance Loss" "$out/ptxas-attn.log"; then
			step "attn asm" "wgmma serialised"
		else
			step "attn asm" ok
		fi
	else
		cat "$out/ptxas-attn.log"
		step "attn asm" "ptxas failed"
	fi
	if (cd kernels && timeout 300 "$bin/kernels.test" -test.run 'AttentionWGMMA' -test.v -test.count 1) >"$out/attn-test.log" 2>&1; then
		step "attn test" ok
	else
		step "attn test" failed
	fi
	grep -E "^(--- |ok|FAIL|PASS)|relative error|panic|Error|error" "$out/attn-test.log" | tail -60
	(cd kernels && timeout 240 "$bin/kernels.test" -test.run '^$' -test.bench 'AttentionWGMMA' -test.benchtime 1x) >"$out/attn-bench.log" 2>&1 || step "attn bench" failed
	grep -E "^ATTN|^Benchmark|SKIP|FAIL" "$out/attn-bench.log"
fi
exit $fail
