package kernels

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernel of ptx/attention_wgmma.cu: the Hopper tier of the bf16
// attention forward, wgmma fed by TMA through a tensor map over qkv
// (program.TensorMap), a producer warpgroup and two consumers, on a
// persistent grid. sm_90a only (compute capability 9.0); every other GPU,
// and every shape AttentionWGMMAFits refuses, keeps AttentionForwardMMA,
// whose semantics it has. The backward is attention_mma's either way: it
// reads the same out and lse.
//
// Head size C/NH of 64 only (ptx.AttentionWGMMAHeadSizeOK).

// attnWGMMAModule is the PTX module of the Hopper attention forward.
const attnWGMMAModule = "attention_wgmma"

// AttentionWGMMAFits says whether AttentionForwardWGMMA can run on these
// views of a layer with C channels in NH heads: head size 64, qkv and out
// bf16 and lse fp32, qkv starting 16 bytes into its buffer's alignment
// (TMA reads it; its rows, (NH+2·NKV)·64 elements, are whole 16-byte
// chunks whatever NKV) and out at an even element (the kernel stores
// column pairs as 4-byte words). Otherwise take AttentionForwardMMA.
func AttentionWGMMAFits(out, lse, qkv program.View, C, NH int) bool {
	if NH <= 0 || C%NH != 0 || !ptx.AttentionWGMMAHeadSizeOK(C/NH) {
		return false
	}
	for _, a := range []attnMMAArg{{"out", out, program.BF16}, {"lse", lse, program.F32}, {"qkv", qkv, program.BF16}} {
		if a.v.IsNull() || a.v.Buf.Elem != a.elem {
			return false
		}
	}
	return qkv.Offset%8 == 0 && out.Offset%2 == 0
}

// AttentionForwardWGMMA computes out (B,T,C) bf16, the causal
// softmax(q·kᵀ/√hs)·v of every query head with the heads concatenated, and
// lse (B,NH,T) fp32, the natural-log logsumexp of each query row's scaled
// scores, from qkv (B,T,(NH+2·NKV)·hs) bf16, on Hopper's tensor cores.
// Both outputs are overwritten. Two products: S = QKᵀ and O = PV. The
// views must pass AttentionWGMMAFits (it panics otherwise).
//
// The grid is persistent: min(units, sms) blocks of one an SM, units =
// ceil(T/ptx.AttentionWGMMARows)·NH·B (128 query rows of one head each);
// any grid computes the same bits. FLOPs and bytes are
// AttentionForwardMMA's.
func AttentionForwardWGMMA(out, lse, qkv program.View, B, T, C, NH, NKV, sms int) program.Op {
	const entry = "attention_forward_wgmma"
	attnMMAElems(entry, attnMMAArg{"out", out, program.BF16}, attnMMAArg{"lse", lse, program.F32}, attnMMAArg{"qkv", qkv, program.BF16})
	if !AttentionWGMMAFits(out, lse, qkv, C, NH) {
		panic(fmt.Sprintf("kernels: %s needs head size %d (C = %d, NH = %d), qkv at a 16-byte-aligned offset (%v) and out at an even one (%v): check AttentionWGMMAFits first",
			entry, ptx.AttentionWGMMAHeadSize, C, NH, qkv, out))
	}
	rows := ptx.AttentionWGMMARows
	N, W := int64(B*T), int64(qkvWidth(C, NH, NKV))
	// qkv as one 2-D tensor of B·T rows: the Q, K and V tiles are all
	// boxes of one head's 64 columns by 128 rows.
	m := program.TensorMap{Inner: W, Outer: N, Stride: W, BoxInner: ptx.AttentionWGMMAHeadSize, BoxOuter: rows}
	units := ceilDiv(T, rows) * NH * B
	args := append([]program.Arg{program.InMap("qkv", qkv, N*W, m), program.Out("out", out, N*int64(C)),
		program.Out("lse", lse, int64(B*NH*T))}, attentionArgs(B, T, C, NH, NKV)...)
	op := kernel(attnWGMMAModule, entry, program.D1(max(1, min(units, sms))), program.D1(ptx.AttentionWGMMAThreads), args...)
	op.SharedBytes = ptx.AttentionWGMMASharedBytes
	// The work is the forward's whatever the tier: attentionForward counts it.
	ref := attentionForward(attnWGMMAModule, entry, rows, ptx.AttentionWGMMAThreads, out, lse, qkv, B, T, C, NH, NKV)
	op.MatmulFLOPs, op.FLOPs = ref.MatmulFLOPs, ref.FLOPs
	return op
}
