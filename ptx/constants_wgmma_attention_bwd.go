package ptx

// attention_wgmma_bwd.cu: the Hopper (sm_90a) attention backward, wgmma
// fed by TMA, in two kernels (dK and dV; dQ). constants_wgmma_attention_bwd_test.go
// holds these to the source, as constants_wgmma_attention_test.go does for
// the forward. Its head size is the forward's, AttentionWGMMAHeadSize
// (AttentionWGMMAHeadSizeOK decides for both).

// AttentionWGMMABackwardRows is AWB_UNIT_ROWS: the rows of a work unit,
// keys in attention_backward_dkdv_wgmma and queries in
// attention_backward_dq_wgmma (two consumer warpgroups of 64), which set
// the units, ceil(T/AttentionWGMMABackwardRows)·NKV·B and ·NH·B.
const AttentionWGMMABackwardRows = 128

// AttentionWGMMABackwardBoxRows is AWB_BOX: the rows of the TMA boxes of
// both tensor maps (qkv and dout), one head's 64 columns by 64 rows; the
// streamed query (dkdv) and key (dq) tiles are one box each.
const AttentionWGMMABackwardBoxRows = 64

// AttentionWGMMABackwardThreads is AWB_THREADS: the block of both
// kernels, a producer warpgroup and two consumers (their
// __launch_bounds__, setmaxnreg split and warpgroup roles assume it).
const AttentionWGMMABackwardThreads = 384

// AttentionWGMMABackwardDKDVSharedBytes is AWB_DKDV_SMEM: the dynamic
// shared memory of a dkdv block (the unit's K and V, the ring's Q, dO, lse
// and d stages, the mbarriers, 1 KB to align the tiles), above the default
// 48 KB, so the executor opts in.
const AttentionWGMMABackwardDKDVSharedBytes = 118368

// AttentionWGMMABackwardDQSharedBytes is AWB_DQ_SMEM: the dynamic shared
// memory of a dq block (the unit's Q, dO, lse and d, the ring's K and V
// stages, the mbarriers, 1 KB to align the tiles).
const AttentionWGMMABackwardDQSharedBytes = 116832
