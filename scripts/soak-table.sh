#!/usr/bin/env bash
# soak-table.sh: the soak (scripts/soak.sh) of every mode gpubench has, one
# row each: 10,000 iterations of tiny (or llama-tiny), host RSS and GPU memory sampled every
# second. "Flat": from 10% of the run to its end, RSS grows by under 1% and
# GPU memory by 0 bytes (SOAK_RSS_GROWTH=0.01). It prints the table
# (markdown, for docs/reliability.md) and exits 1 if any row is not flat.
#
# Usage: OUT=... scripts/soak-table.sh [GPUBENCH]   (default .device/gpubench)
set -u
cd "$(dirname "$0")/.." || exit 2
GPUBENCH=${1:-.device/gpubench}
OUTDIR=${OUT:-/tmp/gpubench-soak}
export SOAK_RSS_GROWTH=${SOAK_RSS_GROWTH:-0.01}
rows=(
	"fp32|"
	"fp32 --graph|--graph"
	"tf32|--dtype=tf32"
	"bf16|--dtype=bf16"
	"bf16 --graph|--dtype=bf16 --graph"
	"fp32 --nvtx=op|--nvtx=op"
	"bf16 infer|--dtype=bf16 --mode=infer"
	"alloc-per-iteration|--flaw=alloc-per-iteration|16"
	"pageable-upload|--flaw=pageable-upload"
	"pinned-upload|--flaw=pinned-upload"
	"readback-per-layer|--flaw=readback-per-layer"
	# LLaMA (the later --model wins over soak.sh's --model=tiny); a
	# generate iteration of llama-tiny is 15 decode steps, so 10,000
	# iterations are 150,000 of them.
	"llama-tiny train|--model=llama-tiny"
	"llama-tiny generate|--model=llama-tiny --mode=generate"
	"llama-tiny generate bf16 --graph|--model=llama-tiny --mode=generate --dtype=bf16 --graph"
)
# SOAK_ROWS, a regular expression, keeps only the rows whose name matches.
failed=0
table="| mode | flags | iterations | RSS baseline → end | GPU memory | result |
|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
	# A third field is the row's SOAK_GPU_SWING (soak.sh): a mode that
	# allocates and frees in its loop holds more GPU memory mid-iteration
	# than between iterations. alloc-per-iteration frees and reallocates
	# tiny's activations (about 8 MiB); 16 MiB leaves room for the driver's
	# rounding and nothing for a leak, whose peak would rise.
	name=${row%%|*} flags=${row#*|} swing=0
	if [[ $flags == *"|"* ]]; then swing=${flags#*|} flags=${flags%%|*}; fi
	[[ $name =~ ${SOAK_ROWS:-.} ]] || continue
	dir="$OUTDIR/soak-${name// /_}"
	mkdir -p "$dir"
	# shellcheck disable=SC2086 # flags split into words on purpose
	OUT="$dir" SOAK_GPU_SWING=$swing bash scripts/soak.sh "$GPUBENCH" $flags >"$dir/summary.txt" 2>&1
	rc=$?
	rss=$(sed -nE 's/^RSS: baseline ([0-9.]+) MiB, end ([0-9.]+) MiB: ([-+0-9.]+%).*/\1 → \2 MiB (\3)/p' "$dir/summary.txt")
	gpu=$(sed -nE 's/^GPU: (.*)  (OK|FAIL)$/\1/p' "$dir/summary.txt")
	result=flat
	[ $rc -eq 0 ] || { result="NOT FLAT (rc $rc)"; failed=1; }
	iters=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['completed_iters'])" "$dir/soak.json" 2>/dev/null || echo "?")
	table+="
| $name | \`${flags:-none}\` | $iters | ${rss:-?} | ${gpu:-?} | $result |"
	echo "soak-table: $name: $result" >&2
done
echo "$table" | tee "$OUTDIR/soak-table.md"
exit $failed
