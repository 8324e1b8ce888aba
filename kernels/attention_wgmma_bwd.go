package kernels

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/attention_wgmma_bwd.cu: the Hopper tier of the bf16
// attention backward, wgmma fed by TMA through tensor maps over qkv and
// dout (program.TensorMap), a producer warpgroup and two consumers, on a
// persistent grid, as the forward (attention_wgmma.go). Two kernels, so
// that every gradient element is summed by one thread (no atomics):
// dK and dV per 128 keys of a kv head, dQ per 128 queries of a head. The
// per-row term d = Σ dout·out stays attention_mma's preprocess. sm_90a
// only (compute capability 9.0); every other GPU, and every shape
// AttentionBackwardWGMMAFits refuses, keeps AttentionBackwardMMA, whose
// semantics these have. Either forward's out and lse feed either backward.
//
// Head size C/NH of 64 only (ptx.AttentionWGMMAHeadSizeOK).

// attnWGMMABwdModule is the PTX module of the Hopper attention backward.
const attnWGMMABwdModule = "attention_wgmma_bwd"

// AttentionBackwardWGMMAFits says whether AttentionBackwardWGMMA can run on
// these views of a layer with C channels in NH heads: head size 64; dqkv,
// dout, qkv and out bf16, d and lse fp32; qkv and dout starting 16 bytes
// into their buffers' alignment (TMA reads them; their rows, (NH+2·NKV)·64
// and C elements, are whole 16-byte chunks) and dqkv at an even element
// (the kernels store column pairs as 4-byte words); out as the mma
// preprocess needs it (16-byte chunks). Otherwise take AttentionBackwardMMA.
func AttentionBackwardWGMMAFits(dqkv, d, dout, qkv, out, lse program.View, C, NH int) bool {
	if NH <= 0 || C%NH != 0 || !ptx.AttentionWGMMAHeadSizeOK(C/NH) {
		return false
	}
	for _, a := range []attnMMAArg{{"dqkv", dqkv, program.BF16}, {"d", d, program.F32}, {"dout", dout, program.BF16},
		{"qkv", qkv, program.BF16}, {"out", out, program.BF16}, {"lse", lse, program.F32}} {
		if a.v.IsNull() || a.v.Buf.Elem != a.elem {
			return false
		}
	}
	return qkv.Offset%8 == 0 && dout.Offset%8 == 0 && out.Offset%8 == 0 && dqkv.Offset%2 == 0
}

// AttentionBackwardDKDVWGMMA overwrites the k and v parts of dqkv
// (B,T,(NH+2·NKV)·hs) bf16 with their gradients, given d from the
// preprocess, dout (B,T,C) bf16, qkv and lse from the forward; each kv
// head's sums over the query heads of its group, in their order. The q
// part is not touched. Four products, as AttentionBackwardDKDVMMA, whose
// FLOPs and bytes it counts. Persistent grid: min(units, sms) blocks,
// units = ceil(T/ptx.AttentionWGMMABackwardRows)·NKV·B; any grid gives the
// same bits.
func AttentionBackwardDKDVWGMMA(dqkv, d, dout, qkv, lse program.View, B, T, C, NH, NKV, sms int) program.Op {
	return attentionBackwardWGMMA("attention_backward_dkdv_wgmma", NKV, ptx.AttentionWGMMABackwardDKDVSharedBytes,
		AttentionBackwardDKDVMMA(dqkv, d, dout, qkv, lse, B, T, C, NH, NKV), dqkv, d, dout, qkv, lse, B, T, C, NH, NKV, sms)
}

// AttentionBackwardDQWGMMA overwrites the q part of dqkv
// (B,T,(NH+2·NKV)·hs) bf16 with its gradient, given d from the preprocess,
// dout (B,T,C) bf16, qkv and lse from the forward. The k and v parts are
// not touched. Three products, as AttentionBackwardDQMMA, whose FLOPs and
// bytes it counts. Persistent grid: min(units, sms) blocks, units =
// ceil(T/ptx.AttentionWGMMABackwardRows)·NH·B.
func AttentionBackwardDQWGMMA(dqkv, d, dout, qkv, lse program.View, B, T, C, NH, NKV, sms int) program.Op {
	return attentionBackwardWGMMA("attention_backward_dq_wgmma", NH, ptx.AttentionWGMMABackwardDQSharedBytes,
		AttentionBackwardDQMMA(dqkv, d, dout, qkv, lse, B, T, C, NH, NKV), dqkv, d, dout, qkv, lse, B, T, C, NH, NKV, sms)
}

// attentionBackwardWGMMA is the launch of either kernel: heads (NKV or NH)
// sets its units, ref is the mma kernel of the same work (its element and
// head-size checks run first, its FLOPs are this one's).
func attentionBackwardWGMMA(entry string, heads, shared int, ref program.Op, dqkv, d, dout, qkv, lse program.View, B, T, C, NH, NKV, sms int) program.Op {
	if C%NH != 0 || !ptx.AttentionWGMMAHeadSizeOK(C/NH) || qkv.Offset%8 != 0 || dout.Offset%8 != 0 || dqkv.Offset%2 != 0 {
		panic(fmt.Sprintf("kernels: %s needs head size %d (C = %d, NH = %d), qkv and dout at 16-byte-aligned offsets (%v, %v) and dqkv at an even one (%v): check AttentionBackwardWGMMAFits first",
			entry, ptx.AttentionWGMMAHeadSize, C, NH, qkv, dout, dqkv))
	}
	N, W := int64(B*T), int64(qkvWidth(C, NH, NKV))
	// qkv and dout as 2-D tensors of B·T rows, in boxes of one head's 64
	// columns by 64 rows.
	box := ptx.AttentionWGMMABackwardBoxRows
	qm := program.TensorMap{Inner: W, Outer: N, Stride: W, BoxInner: ptx.AttentionWGMMAHeadSize, BoxOuter: box}
	dm := program.TensorMap{Inner: int64(C), Outer: N, Stride: int64(C), BoxInner: ptx.AttentionWGMMAHeadSize, BoxOuter: box}
	units := ceilDiv(T, ptx.AttentionWGMMABackwardRows) * heads * B
	args := append([]program.Arg{program.Out("dqkv", dqkv, N*W), program.In("d", d, int64(B*NH*T)),
		program.InMap("dout", dout, N*int64(C), dm), program.InMap("qkv", qkv, N*W, qm),
		program.In("lse", lse, int64(B*NH*T))}, attentionArgs(B, T, C, NH, NKV)...)
	op := kernel(attnWGMMABwdModule, entry, program.D1(max(1, min(units, sms))), program.D1(ptx.AttentionWGMMABackwardThreads), args...)
	op.SharedBytes = shared
	op.MatmulFLOPs, op.FLOPs = ref.MatmulFLOPs, ref.FLOPs
	return op
}

// AttentionBackwardWGMMA overwrites all of dqkv (B,T,(NH+2·NKV)·hs) bf16,
// its q, k and v parts, with the gradient of the attention output with
// respect to qkv, given dout (B,T,C) bf16 and qkv, out and lse from either
// bf16 forward; d is fp32 scratch of B·NH·T floats (overwritten). Three
// launches: the mma preprocess, dK and dV, dQ. The views must pass
// AttentionBackwardWGMMAFits (it panics otherwise).
func AttentionBackwardWGMMA(dqkv, d, dout, qkv, out, lse program.View, B, T, C, NH, NKV, sms int) []program.Op {
	return []program.Op{
		AttentionBackwardPreprocessMMA(d, dout, out, B, T, C, NH),
		AttentionBackwardDKDVWGMMA(dqkv, d, dout, qkv, lse, B, T, C, NH, NKV, sms),
		AttentionBackwardDQWGMMA(dqkv, d, dout, qkv, lse, B, T, C, NH, NKV, sms),
	}
}
