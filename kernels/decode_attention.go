package kernels

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/decode_attention.cu: the decode step's attention, one
// new token per sequence against a KV cache, flash-decoding style. qkv,
// the caches and out are all f32 (module decode_attention) or all bf16
// (module decode_attention_bf16, elem.go); the scratch is f32 in both.
//
// The cache positions 0..pos are cut into splits of `chunk` positions; one
// block a (split, kv head, sequence) (and per DecodeHeads query heads of a
// larger group) writes its chunk's max, sum and unnormalised output to
// scratch, and a second launch merges the splits in split order:
// deterministic, no atomics.

// The split rule. A split covers at least decodeMinChunk positions (fewer
// would spend more on the block's fixed work and the partial it writes
// than on the cache it reads) and at most decodeMaxChunk (its scores live
// in shared memory: DecodeHeads·decodeMaxChunk floats = 32 KB), and the
// split count aims at decodeBlocksPerSM blocks an SM, about what an SM
// holds at once (the bf16 split kernel takes 128 registers: 4 blocks): one
// wave of long blocks. On an H200 at batch 8, hs 128, 16 blocks an SM ran
// 8% (llama2-7b, pos 4095) to 22% (llama3-8b, pos 4095) slower than the
// best of a sweep of split counts, and 4 an SM lands on or next to it
// (docs in BenchmarkDecodeAttention).
const (
	decodeMinChunk    = 64
	decodeMaxChunk    = 2048
	decodeBlocksPerSM = 4
)

// FLOPs of the decode attention, beyond its two products (q·k and p·v,
// 2·hs each per score): 4 per score (max, subtract, exp, sum); the combine
// 2·hs + 3 per split of a head (scale and add the partial; rescale and add
// the sum) and hs per output (normalise).
const (
	decodeScoreFLOPs    = 4
	decodeCombineFLOPs  = 3
	decodeNormaliseFLOP = 1
)

// decodeSplits is the split count for L = pos+1 positions when each split
// takes perSplit blocks (B·NKV·ceil(G/DecodeHeads)), on SMs multiprocessors.
// It never decreases as L grows or perSplit shrinks, which is what makes
// DecodeAttentionScratchSize a bound.
func decodeSplits(L, perSplit, SMs int) int {
	s := ceilDiv(decodeBlocksPerSM*max(SMs, 1), max(perSplit, 1))
	s = min(s, ceilDiv(L, decodeMinChunk))
	return max(s, ceilDiv(L, decodeMaxChunk), 1)
}

// decodeBlocksPerSplit is the split kernel's blocks per split: B·NKV, times
// the head chunks of a group larger than ptx.DecodeHeads.
func decodeBlocksPerSplit(B, NH, NKV int) int {
	return B * NKV * ceilDiv(NH/NKV, ptx.DecodeHeads)
}

// DecodeAttentionScratchSize is the f32 elements of scratch that
// DecodeAttention needs for any pos < MaxT, at any NKV dividing NH:
// B·NH·splits·(hs+2) at the largest split count (decodeSplits at
// L = MaxT and the fewest blocks a split, B).
func DecodeAttentionScratchSize(B, NH, hs, MaxT, SMs int) int {
	return decodeScratch(B, NH, hs, decodeSplits(MaxT, B, SMs))
}

// decodeScratch is the scratch of a launch with `splits` splits: each
// head's partial output (hs) and max and sum (1 each) per split.
func decodeScratch(B, NH, hs, splits int) int { return B * NH * splits * (hs + 2) }

// DecodeAttention OVERWRITES out (B, NH·hs) with the attention of the
// decode step's queries against the KV cache: for sequence b and query
// head h, softmax(q·kᵀ/√hs)·v over the cache positions 0..pos, with kv head
// h/(NH/NKV). q is the first NH·hs columns of qkv's row b (rows of
// (NH+2·NKV)·hs, already rotated; the k and v columns are not read);
// kcache and vcache are (B, MaxT, NKV·hs), of which positions 0..pos
// (pos, the new token's, already written) are read and nothing past pos.
// scratch holds DecodeAttentionScratchSize(B, NH, hs, MaxT, SMs) f32
// (overwritten; contents between calls do not matter). Two launches, the
// splits and their combine; SMs is the GPU's multiprocessor count, which
// sets the split count (model/ref.DecodeAttentionForward is the
// reference).
func DecodeAttention(out, qkv, kcache, vcache, scratch program.View, B, pos, NH, NKV, hs, MaxT, SMs int) []program.Op {
	if NKV < 1 || NH%NKV != 0 {
		panic(fmt.Sprintf("kernels: decode attention: %d key/value heads do not divide %d heads", NKV, NH))
	}
	splits := decodeSplits(pos+1, decodeBlocksPerSplit(B, NH, NKV), SMs)
	return decodeAttention(out, qkv, kcache, vcache, scratch, B, pos, NH, NKV, hs, MaxT, splits)
}

// decodeAttention is DecodeAttention with the split count given (the
// tests and the benchmark choose their own). It is raised to cover the
// positions in chunks of at most decodeMaxChunk, then rounded so that no
// split is empty; scratch must hold decodeScratch for the result.
func decodeAttention(out, qkv, kcache, vcache, scratch program.View, B, pos, NH, NKV, hs, MaxT, splits int) []program.Op {
	const entry = "decode_attention_split"
	s := storage(entry, out, qkv, kcache, vcache)
	require(entry, program.F32, scratch)
	vec := vector(s)
	switch {
	case NKV < 1 || NH%NKV != 0:
		panic(fmt.Sprintf("kernels: %s: %d key/value heads do not divide %d heads", entry, NKV, NH))
	case pos < 0 || pos >= MaxT:
		panic(fmt.Sprintf("kernels: %s: position %d outside the cache's 0..%d", entry, pos, MaxT-1))
	case hs < 1 || hs > ptx.DecodeMaxHeadSize || hs%vec != 0:
		panic(fmt.Sprintf("kernels: %s: head size %d is not a multiple of %d up to %d", entry, hs, vec, ptx.DecodeMaxHeadSize))
	}
	// The kernels read 16-byte chunks of rows that start at multiples of hs.
	for _, v := range []program.View{qkv, kcache, vcache, out} {
		if v.Offset%int64(vec) != 0 {
			panic(fmt.Sprintf("kernels: %s: %s starts at element %d, not a multiple of %d (16 bytes)", entry, v, v.Offset, vec))
		}
	}
	L := pos + 1
	chunk := ceilDiv(L, max(splits, ceilDiv(L, decodeMaxChunk), 1))
	splits = ceilDiv(L, chunk) // no empty split
	G := NH / NKV
	nh, hchunks := min(G, ptx.DecodeHeads), ceilDiv(G, ptx.DecodeHeads)
	partial := int64(decodeScratch(B, NH, hs, splits))
	if scratch.Elems < partial {
		panic(fmt.Sprintf("kernels: %s: scratch %s holds %d floats, %d splits need %d", entry, scratch, scratch.Elems, splits, partial))
	}
	cache := int64(B) * int64(L) * int64(NKV*hs)
	scores := int64(B) * int64(NH) * int64(L)

	split := stored(s, "decode_attention", entry, program.D3(splits*hchunks, NKV, B), program.D1(ptx.DecodeThreads),
		program.Out("scratch", scratch, partial), program.In("qkv", qkv, int64(B*NH*hs)),
		program.In("kcache", kcache, cache), program.In("vcache", vcache, cache),
		program.Int("B", B), program.Int("pos", pos), program.Int("NH", NH), program.Int("NKV", NKV),
		program.Int("hs", hs), program.Int("MaxT", MaxT), program.Int("splits", splits), program.Int("chunk", chunk))
	// Each head's shared row of scores, reused for the warps' partials.
	split.SharedBytes = 4 * (2*ptx.DecodeHeads + max(nh*chunk, ptx.DecodeWarps*nh*hs))
	split.MatmulFLOPs = 4 * int64(hs) * scores
	split.FLOPs = split.MatmulFLOPs + decodeScoreFLOPs*scores

	combine := stored(s, "decode_attention", "decode_attention_combine", program.D1(B*NH), program.D1(ptx.DecodeCombineBlock),
		program.Out("out", out, int64(B*NH*hs)), program.In("scratch", scratch, partial),
		program.Int("B", B), program.Int("NH", NH), program.Int("hs", hs), program.Int("splits", splits))
	combine.FLOPs = int64(B*NH) * (int64(splits)*int64(2*hs+decodeCombineFLOPs) + int64(hs)*decodeNormaliseFLOP)
	return []program.Op{split, combine}
}
