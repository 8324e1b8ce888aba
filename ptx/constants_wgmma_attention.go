package ptx

// attention_wgmma.cu: the Hopper (sm_90a) attention forward, wgmma fed by
// TMA. constants_wgmma_attention_test.go holds these to the source, as
// constants_mma_attention_test.go does for attention_mma.cu.

// AttentionWGMMAHeadSize is AW_HS in attention_wgmma.cu: the one head size
// attention_forward_wgmma runs (gpt2's 64: a head row is one 128-byte
// swizzle row of the TMA boxes and the wgmma descriptors).
const AttentionWGMMAHeadSize = 64

// AttentionWGMMARows is AW_BM: the query rows of a work unit (two consumer
// warpgroups of 64), which sets the units, ceil(T/AttentionWGMMARows)·NH·B.
// It is also the rows of the qkv tensor map's box: the key and value tiles
// (AW_BN) are the same box.
const AttentionWGMMARows = 128

// AttentionWGMMAThreads is AW_THREADS: the block of
// attention_forward_wgmma, a producer warpgroup and two consumers (its
// __launch_bounds__, setmaxnreg split and warpgroup roles assume it).
const AttentionWGMMAThreads = 384

// AttentionWGMMASharedBytes is AW_SMEM: the dynamic shared memory of a
// block (two Q tiles, the K and V rings, their mbarriers, and 1 KB to
// align the tiles), above the default 48 KB, so the executor opts in.
const AttentionWGMMASharedBytes = 132224

// AttentionWGMMAHeadSizeOK reports whether attention_forward_wgmma runs
// head size hs. For any other the entry writes nothing, so the caller
// must take another kernel (attention_mma) for it.
func AttentionWGMMAHeadSizeOK(hs int) bool { return hs == AttentionWGMMAHeadSize }
