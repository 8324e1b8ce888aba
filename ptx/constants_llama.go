package ptx

// llama.cu: the LLaMA layers (embedding, RMSNorm, RoPE, SwiGLU) and the
// generation kernels (argmax, gather_rows). constants_test.go's mirrors
// table holds the macros below to llama.cu.
const (
	// RMSNormBwdRows is RMS_BWD_ROWS in llama.cu: the rows one block of
	// rmsnorm_backward_input reduces into one partial row, so the partials
	// scratch holds ceil(N/RMSNormBwdRows)·C floats.
	RMSNormBwdRows = 32
	// RMSNormParamsCols is RMS_PARAMS_COLS in llama.cu: blockDim.x of
	// rmsnorm_backward_params, the columns one block sums.
	RMSNormParamsCols = 32
	// RMSNormParamsSlices is RMS_PARAMS_SLICES in llama.cu: blockDim.y of
	// rmsnorm_backward_params, the slices its chunks are dealt into before
	// the fixed final sum.
	RMSNormParamsSlices = 16
	// ArgmaxThreads is ARGMAX_THREADS in llama.cu: the block of argmax (one
	// block per row; its __launch_bounds__ and shared arrays assume it).
	ArgmaxThreads = 1024
)

// The launchers' own choices for llama.cu (no macros: the kernels take any
// block of whole warps).
const (
	// LlamaBlock is the block size of the grid-stride kernels:
	// embedding_forward, gather_rows, rope_forward, rope_backward,
	// swiglu_forward and swiglu_backward.
	LlamaBlock = 256
	// RMSNormBlock is the threads of an rmsnorm_forward block whose rows
	// take fewer threads each: it then holds RMSNormBlock/threads-per-row
	// rows. rmsnorm_backward_input runs blocks of RMSNormBlock threads too.
	RMSNormBlock = 256
	// RMSNormFillThreads is the thread count rmsnorm_forward's launcher
	// aims for: about what an H200's 132 SMs hold at once (2048 threads
	// each). Rows get fewer threads each until N rows need no more than
	// this, but never fewer than one warp; a few decode rows get up to
	// MaxBlockThreads each, so their blocks still keep many loads in
	// flight.
	RMSNormFillThreads = 1 << 18
)
