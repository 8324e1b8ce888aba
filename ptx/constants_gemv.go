package ptx

// gemv.cu (and gemv_bf16.cu, the same source): matvec_forward, the
// weight-streaming product of a decode step. constants_test.go's mirrors
// table holds each value to its macro.
const (
	// GemvThreads is GEMV_THREADS: the block size of matvec_forward
	// (its __launch_bounds__ and the final reduction's stride assume it).
	GemvThreads = 256
	// GemvWarps is GEMV_WARPS, GemvThreads/WarpSize: the warps of a block,
	// which the launcher deals into wc column tiles × wk slices of C
	// (wc·wk = GemvWarps).
	GemvWarps = GemvThreads / WarpSize
	// GemvMinBlocks is GEMV_MIN_BLOCKS, the blocks per SM that
	// matvec_forward's __launch_bounds__ guarantees room for: a wave of
	// the launcher's grid is SMs × GemvMinBlocks blocks.
	GemvMinBlocks = 2
	// GemvTile is GEMV_TILE: the output columns (rows of w) of one warp
	// tile.
	GemvTile = 16
	// GemvMaxRows is GEMV_MAX_ROWS: the most rows of inp (the decode batch)
	// one launch multiplies.
	GemvMaxRows = 16
	// GemvStep is GEMV_STEP: the columns of C one step of a warp covers;
	// the slices of C that the warps of a block split are whole steps, so
	// C has ceil(C/GemvStep) steps to split.
	GemvStep = 32
)
