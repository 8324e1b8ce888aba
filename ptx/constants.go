package ptx

import "fmt"

// This file is the Go side of every number that the kernels' CUDA sources
// and their Go launchers must agree on: block shapes, tile tables and the
// limits of what the kernels can run. Each value is written here once, with
// the macro or table it mirrors, and constants_test.go parses the .cu files
// and fails when the two drift apart. Package ptx imports nothing of CUDA,
// so the launchers (package kernels) and the planners (internal/memplan)
// can read them without a GPU; internal/config validates shapes against
// the limits.
//
// The GEMM's tile table and stage depth are not here: internal/gemmplan
// holds them (gemmplan.Tiles, gemmplan.BK) next to the cost model that
// chooses among the tiles, and constants_test.go checks those against
// matmul.cu too.

// WarpSize is WARP_SIZE in common.cuh: the lanes of a warp, which every
// warp-level reduction of the kernels assumes.
const WarpSize = 32

// Limits of the hardware and of the kernels' indexing, which bound the
// shapes a run may ask for (internal/config's Dims.Validate).
const (
	// MaxIndex is the largest element offset the kernels can form: they
	// index with 32-bit int (row*C + c, n*V + v, ...), so a buffer one
	// kernel indexes must hold at most MaxIndex elements. It is no macro:
	// it is the int the .cu files compute in.
	MaxIndex = 1<<31 - 1
	// MaxGridX is CUDA's limit on gridDim.x for compute capability 3.0 and
	// later (the PTX targets compute_70).
	MaxGridX = 1<<31 - 1
	// MaxGridYZ is CUDA's limit on gridDim.y and gridDim.z. The attention
	// kernels put NH in y and B in z, so it bounds the heads and the batch.
	MaxGridYZ = 65535
	// MaxBlockThreads is CUDA's limit on the threads of one block, and the
	// most block_sum and block_max of common.cuh support (their scratch
	// holds one float per warp, 32 of them).
	MaxBlockThreads = 1024
)

// fill_f32 (common.cu) grid-strides, so any launch covers any n; these are
// the launcher's choice, kept here with the other launch shapes.
const (
	// FillBlock is the block size of fill_f32.
	FillBlock = 256
	// FillMaxBlocks caps fill_f32's grid; past it the grid-stride loop
	// covers the rest.
	FillMaxBlocks = 65535
)

// encoder.cu.
const (
	// EncoderBlock is the block size of encoder_forward and
	// encoder_backward_wpe. Both grid-stride, so it is the launcher's choice
	// (no macro in encoder.cu).
	EncoderBlock = 256
	// EncoderWTECols is WTE_COLS in encoder.cu: the columns of dwte one
	// block of encoder_backward_wte owns, so its grid is
	// (buckets, ceil(C/EncoderWTECols)).
	EncoderWTECols = 128
	// EncoderWTEWarps is WTE_WARPS in encoder.cu: the warps of one
	// encoder_backward_wte block, which split a bucket's positions.
	EncoderWTEWarps = 4
	// EncoderWTEThreads is the block size of encoder_backward_wte,
	// WTE_WARPS·WARP_SIZE. The kernel's last step has thread x finish
	// column x, so it must equal EncoderWTECols.
	EncoderWTEThreads = EncoderWTEWarps * WarpSize
)

// layernorm.cu.
const (
	// LayerNormBlock is the block size of layernorm_forward (one warp a row,
	// so LayerNormBlock/WarpSize rows a block) and of
	// layernorm_backward_input. The kernels take any multiple of WarpSize
	// (no macro in layernorm.cu); the launchers use this one.
	LayerNormBlock = 256
	// LayerNormBwdRows is LN_BWD_ROWS in layernorm.cu: rows one block of
	// layernorm_backward_input reduces into one partial row, so the
	// partials scratch holds 2·ceil(N/LayerNormBwdRows)·C floats.
	LayerNormBwdRows = 32
	// LayerNormParamsCols is LN_PARAMS_COLS in layernorm.cu: blockDim.x of
	// layernorm_backward_params, the columns one block sums.
	LayerNormParamsCols = 32
	// LayerNormParamsSlices is LN_PARAMS_SLICES in layernorm.cu:
	// blockDim.y of layernorm_backward_params, the slices its chunks are
	// dealt into before the fixed final sum.
	LayerNormParamsSlices = 16
)

// matmul.cu's bias_backward (the GEMM's own numbers are in gemmplan).
const (
	// BiasBackwardCols is blockDim.x of bias_backward, the columns one block
	// owns (`blockIdx.x * 32 + x`, the inner dimension of part[32][32]), so
	// its grid is ceil(OC/BiasBackwardCols).
	BiasBackwardCols = 32
	// BiasBackwardRows is blockDim.y of bias_backward, the row lanes whose
	// partials part[32][32] holds and its tree adds (the outer dimension).
	BiasBackwardRows = 32
)

// gelu.cu and residual.cu: elementwise kernels that grid-stride, four
// elements a thread on their float4 path, so the block size is the
// launchers' choice (no macro in the .cu files).
const (
	// GELUBlock is the block size of gelu_forward and gelu_backward.
	GELUBlock = 256
	// ResidualBlock is the block size of residual_forward.
	ResidualBlock = 256
	// UnfusedBlock is the block size of unfused.cu's kernels (bias_add,
	// elem_mul, elem_axpby, elem_tanh_scale), which grid-stride too.
	UnfusedBlock = 256
)

// crossentropy.cu: one block per row. Each row's reduction is a fixed tree
// over the block, so the block size decides the result bits and is a
// function of V alone (CrossEntropyBlock).
const (
	// CrossEntropyMaxBlock bounds the block of crossentropy_forward and
	// crossentropy_backward (the launchers' choice; the kernels take any
	// multiple of WarpSize up to MaxBlockThreads).
	CrossEntropyMaxBlock = 512
	// LossReduceBlock is the block size of loss_reduce, which sums all N
	// losses in one block: the whole block_sum width, MaxBlockThreads.
	LossReduceBlock = 1024
)

// CrossEntropyBlock is the block size of the cross-entropy kernels for rows
// of V logits: a multiple of WarpSize (block_max and block_sum reduce whole
// warps), at most CrossEntropyMaxBlock, and no more threads than V needs.
func CrossEntropyBlock(V int) int {
	return min(CrossEntropyMaxBlock, max((V+WarpSize-1)/WarpSize*WarpSize, WarpSize))
}

// attention.cu.
const (
	// AttentionThreads is ATT_THREADS in attention.cu: the block size of
	// attention_forward, attention_backward_dkdv and attention_backward_dq
	// (their __launch_bounds__ and tile loops assume it).
	AttentionThreads = 128
	// AttentionMaxHeadSize is ATT_HS_MAX in attention.cu: the largest head
	// size C/NH the kernels run (the largest compiled D of the tile tables;
	// its tiles fill the 48 KB of static shared memory). A larger one would
	// run none of the kernels' branches and leave the outputs unwritten.
	AttentionMaxHeadSize = 128
	// AttentionPreprocessBlock is the block size of
	// attention_backward_preprocess: one warp per (b,t,h) row, so its grid
	// is ceil(B·T·NH / (AttentionPreprocessBlock/WarpSize)). The kernel
	// takes any multiple of WarpSize; attention.cu's comment says 256.
	AttentionPreprocessBlock = 256
)

// AttentionTile is one specialisation of attention.cu's FwdTiles, DkdvTiles
// or DqTiles: R is the rows of the tile a block owns (query rows for the
// forward and dq, key rows for dkdv), so the grid's x is ceil(T/R); S is
// the rows of the tiles it streams through shared memory.
type AttentionTile struct{ R, S int }

// AttentionConfig is the tiles of one compiled maximum head size D: the
// kernels run a head of size hs with the smallest D ≥ hs.
type AttentionConfig struct {
	D             int
	Fwd, DKDV, DQ AttentionTile
}

// attentionConfigs mirrors FwdTiles<D>, DkdvTiles<D> and DqTiles<D> in
// attention.cu, by increasing D; the last D is ATT_HS_MAX.
var attentionConfigs = [...]AttentionConfig{
	{D: 32, Fwd: AttentionTile{R: 16, S: 32}, DKDV: AttentionTile{R: 16, S: 32}, DQ: AttentionTile{R: 16, S: 32}},
	{D: 64, Fwd: AttentionTile{R: 64, S: 32}, DKDV: AttentionTile{R: 32, S: 32}, DQ: AttentionTile{R: 32, S: 32}},
	{D: 128, Fwd: AttentionTile{R: 32, S: 16}, DKDV: AttentionTile{R: 16, S: 16}, DQ: AttentionTile{R: 16, S: 16}},
}

// AttentionConfigs returns the attention kernels' tile table by increasing
// D (a copy: the table itself is fixed by the compiled PTX).
func AttentionConfigs() []AttentionConfig {
	return append([]AttentionConfig(nil), attentionConfigs[:]...)
}

// AttentionConfigFor returns the tiles the kernels use for head size hs,
// those of the smallest D ≥ hs, as the kernels' `hs <= 32`, `hs <= 64`,
// `hs <= ATT_HS_MAX` branches pick them. hs must be in
// 1..AttentionMaxHeadSize, which config.Dims.Validate guarantees before
// anything is launched; outside it there is no tile, and it panics.
func AttentionConfigFor(hs int) AttentionConfig {
	if hs >= 1 {
		for _, c := range attentionConfigs {
			if hs <= c.D {
				return c
			}
		}
	}
	panic(fmt.Sprintf("ptx: attention head size %d is outside 1..%d (config.Dims.Validate rejects it)", hs, AttentionMaxHeadSize))
}

// AttentionTiles returns the rows R of the tile each block owns in
// attention_forward, attention_backward_dkdv and attention_backward_dq for
// head size hs, whose grids are (ceil(T/R), NH, B). hs must be in
// 1..AttentionMaxHeadSize (see AttentionConfigFor).
func AttentionTiles(hs int) (fwd, dkdv, dq int) {
	c := AttentionConfigFor(hs)
	return c.Fwd.R, c.DKDV.R, c.DQ.R
}

// decode_attention.cu: the decode step's attention against a KV cache
// (flash-decoding). The split count is the launcher's choice
// (kernels/decode_attention.go); these are what the kernels fix.
const (
	// DecodeThreads is DEC_THREADS: the block size of
	// decode_attention_split (its row slots and reductions assume it).
	DecodeThreads = 128
	// DecodeWarps is DEC_WARPS, DecodeThreads/WarpSize: the warps whose
	// partial outputs meet in the split's shared memory.
	DecodeWarps = DecodeThreads / WarpSize
	// DecodeHeads is DEC_HEADS: the query heads of one kv head's group one
	// split block serves; a larger group takes ceil(G/DecodeHeads) blocks
	// a split.
	DecodeHeads = 4
	// DecodeMaxHeadSize is DEC_MAX_HS: the largest head size the decode
	// kernels run (any multiple of 16 bytes' worth of elements up to it).
	DecodeMaxHeadSize = 128
	// DecodeCombineBlock is the block size of decode_attention_combine,
	// which loops over the head's columns with blockDim (no macro).
	DecodeCombineBlock = 128
)
