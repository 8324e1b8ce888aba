package ptx

// matmul_mma.cu's bias_backward_bf16 (the GEMM's block tile and pipeline
// are internal/gemmplan's MMA* constants, next to the plan that uses them;
// constants_mma_test.go checks both against the .cu).
const (
	// BiasBackwardBF16Cols is BIAS_COLS in matmul_mma.cu: the columns one
	// block of bias_backward_bf16 owns, so its grid is
	// ceil(OC/BiasBackwardBF16Cols).
	BiasBackwardBF16Cols = 64
	// BiasBackwardBF16PerThread is the columns one thread sums (one 16-byte
	// load of 8 bf16), so blockDim.x is BiasBackwardBF16Cols/8.
	BiasBackwardBF16PerThread = 8
	// BiasBackwardBF16Rows is BIAS_ROWS: blockDim.y, the row lanes whose
	// partials the block's shared-memory tree adds (a power of two).
	BiasBackwardBF16Rows = 32
)
