package ptx

import (
	"fmt"
	"slices"
)

// attention_mma.cu: the bf16 tensor-core attention kernels (the sm_80
// tier). constants_mma_attention_test.go holds these to the source, as
// constants_test.go does for the fp32 kernels.

// AttentionMMAThreads is ATT_MMA_THREADS in attention_mma.cu: the block
// size of attention_forward_bf16, attention_backward_dkdv_bf16 and
// attention_backward_dq_bf16 (4 warps; their __launch_bounds__ and tile
// loops assume it).
const AttentionMMAThreads = 128

// AttentionMMAPreprocessBlock is the block size of
// attention_backward_preprocess_bf16: one thread per 16-byte chunk of a
// (b,t,h) row, so its grid is ceil(B·T·NH·hs/8 / AttentionMMAPreprocessBlock).
// The kernel takes any multiple of WarpSize; this is the launcher's choice.
const AttentionMMAPreprocessBlock = 256

// attentionMMAConfigs mirrors AttnMmaFwd<D>, AttnMmaDkdv<D> and
// AttnMmaDq<D> in attention_mma.cu, by increasing D. Unlike the fp32
// kernels, each D runs exactly head size D: the tiles are whole 16-byte
// chunks and 16-wide mma k-steps of the head, with no zero padding.
var attentionMMAConfigs = [...]AttentionConfig{
	{D: 32, Fwd: AttentionTile{R: 128, S: 64}, DKDV: AttentionTile{R: 64, S: 64}, DQ: AttentionTile{R: 64, S: 64}},
	{D: 64, Fwd: AttentionTile{R: 128, S: 64}, DKDV: AttentionTile{R: 64, S: 64}, DQ: AttentionTile{R: 64, S: 64}},
	{D: 128, Fwd: AttentionTile{R: 64, S: 32}, DKDV: AttentionTile{R: 64, S: 16}, DQ: AttentionTile{R: 64, S: 32}},
}

// AttentionMMAConfigs returns the bf16 attention kernels' tile table by
// increasing D (a copy).
func AttentionMMAConfigs() []AttentionConfig {
	return append([]AttentionConfig(nil), attentionMMAConfigs[:]...)
}

// AttentionMMAHeadSizes returns the head sizes C/NH the bf16 attention
// kernels run: 32, 64 and 128.
func AttentionMMAHeadSizes() []int {
	hs := make([]int, len(attentionMMAConfigs))
	for i, c := range attentionMMAConfigs {
		hs[i] = c.D
	}
	return hs
}

// AttentionMMAHeadSizeOK reports whether the bf16 attention kernels run
// head size hs. For any other the entries run none of their branches and
// leave the outputs unwritten, so config validation must refuse it.
func AttentionMMAHeadSizeOK(hs int) bool {
	return slices.Contains(AttentionMMAHeadSizes(), hs)
}

// AttentionMMAConfigFor returns the tiles of head size hs, which must be
// one of AttentionMMAHeadSizes (config validation guarantees it before
// anything is built); for any other it panics.
func AttentionMMAConfigFor(hs int) AttentionConfig {
	for _, c := range attentionMMAConfigs {
		if c.D == hs {
			return c
		}
	}
	panic(fmt.Sprintf("ptx: bf16 attention head size %d is not one of %v", hs, AttentionMMAHeadSizes()))
}
