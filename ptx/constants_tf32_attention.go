package ptx

// attention_tf32.cu: the TF32 tensor-core attention kernels (mma.sync, the
// sm_80 tier) of --dtype=tf32. constants_tf32_attention_test.go holds these
// to the source, as constants_mma_attention_test.go does for
// attention_mma.cu.

// AttentionTF32HeadSize is ATT_TF32_D: the one head size the kernels run
// (gpt2's 64). For any other the entries return without writing, so the
// caller must take attention.cu's fp32 kernels for it.
const AttentionTF32HeadSize = 64

// AttentionTF32Threads is ATT_TF32_THREADS: the block of the three entries
// (4 warps of 16 rows each; their __launch_bounds__ and tile loops assume it).
const AttentionTF32Threads = 128

// AttentionTF32ForwardRows, AttentionTF32DKDVRows and AttentionTF32DQRows
// are ATT_TF32_FWD_R, ATT_TF32_DKDV_R and ATT_TF32_DQ_R: the rows of the
// tile a block owns (query rows for the forward and dq, key rows for
// dkdv), so each grid's x is ceil(T/rows).
const (
	AttentionTF32ForwardRows = 64
	AttentionTF32DKDVRows    = 64
	AttentionTF32DQRows      = 64
)

// AttentionTF32ForwardSharedBytes, AttentionTF32DKDVSharedBytes and
// AttentionTF32DQSharedBytes are ATT_TF32_FWD_SMEM, ATT_TF32_DKDV_SMEM and
// ATT_TF32_DQ_SMEM: each entry's dynamic shared memory (fp32 tiles of rows
// padded to 68 floats, double-buffered). The forward's is above the default
// 48 KB, so the executor opts in.
const (
	AttentionTF32ForwardSharedBytes = 69632
	AttentionTF32DKDVSharedBytes    = 35328
	AttentionTF32DQSharedBytes      = 34816
)

// AttentionTF32HeadSizeOK reports whether the TF32 attention kernels run
// head size hs.
func AttentionTF32HeadSizeOK(hs int) bool { return hs == AttentionTF32HeadSize }
