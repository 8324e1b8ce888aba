package kernels

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/attention_mma.cu: the bf16 tensor-core (mma.sync,
// sm_80 tier) version of attention.go's causal grouped-query attention,
// with the same semantics and launches. qkv, out, dout and dqkv are bf16
// (program.BF16); lse and d are fp32 (program.F32). docs/attention.md has
// the design and the numbers.
//
// Head sizes C/NH of 32, 64 and 128 only (ptx.AttentionMMAHeadSizeOK);
// config validation must refuse the others, for which the builders panic.
// The kernels copy 16-byte chunks: the views of qkv, out and dout must
// start at a multiple of 8 elements (every whole tensor of a layer does;
// C is a multiple of 32).
//
// FLOPs are counted exactly as for the fp32 kernels (attentionWork): the
// forward 2 products, the dkdv kernel 4, the dq kernel 3, plus the softmax
// terms.

// attnMMAModule is the PTX module of the bf16 attention kernels.
const attnMMAModule = "attention_mma"

// attnMMAArg is a pointer argument and the element type its buffer must hold.
type attnMMAArg struct {
	name string
	v    program.View
	elem program.Elem
}

// attnMMAElems panics unless each view is of a buffer of its element type:
// a bf16 kernel reading fp32 data would compute garbage without a fault.
func attnMMAElems(entry string, args ...attnMMAArg) {
	for _, a := range args {
		if a.v.IsNull() || a.v.Buf.Elem != a.elem {
			panic(fmt.Sprintf("kernels: %s: %s is %v, want a view of a %s buffer", entry, a.name, a.v, a.elem))
		}
	}
}

// AttentionForwardMMA computes out (B,T,C) bf16, the causal
// softmax(q·kᵀ/√hs)·v of every query head with the heads concatenated, and
// lse (B,NH,T) fp32, the natural-log logsumexp of each query row's scaled
// scores, from qkv (B,T,(NH+2·NKV)·hs) bf16. Both outputs are overwritten.
// Two products: S = QKᵀ and O = PV.
func AttentionForwardMMA(out, lse, qkv program.View, B, T, C, NH, NKV int) program.Op {
	const entry = "attention_forward_bf16"
	attnMMAElems(entry, attnMMAArg{"out", out, program.BF16}, attnMMAArg{"lse", lse, program.F32}, attnMMAArg{"qkv", qkv, program.BF16})
	c := ptx.AttentionMMAConfigFor(C / NH)
	return attentionForward(attnMMAModule, entry, c.Fwd.R, ptx.AttentionMMAThreads, out, lse, qkv, B, T, C, NH, NKV)
}

// AttentionBackwardPreprocessMMA computes d (B,NH,T) fp32 = Σ over each
// head row of dout·out (both bf16), the per-row term of the softmax
// backward. d is overwritten.
func AttentionBackwardPreprocessMMA(d, dout, out program.View, B, T, C, NH int) program.Op {
	const entry = "attention_backward_preprocess_bf16"
	attnMMAElems(entry, attnMMAArg{"d", d, program.F32}, attnMMAArg{"dout", dout, program.BF16}, attnMMAArg{"out", out, program.BF16})
	ptx.AttentionMMAConfigFor(C / NH) // the head size check
	// One thread per 16-byte chunk (8 elements) of each (b,t,h) row.
	const block = ptx.AttentionMMAPreprocessBlock
	N := int64(B * T)
	op := kernel(attnMMAModule, entry, program.D1(ceilDiv(B*T*NH*(C/NH/8), block)), program.D1(block),
		append([]program.Arg{program.Out("d", d, int64(B*NH*T)), program.In("dout", dout, N*int64(C)),
			program.In("out", out, N*int64(C))}, headArgs(B, T, C, NH)...)...)
	op.FLOPs = 2 * N * int64(C)
	return op
}

// AttentionBackwardDKDVMMA overwrites the k and v parts of dqkv
// (B,T,(NH+2·NKV)·hs) bf16 with their gradients, given d from the
// preprocess, dout (B,T,C) bf16, qkv and lse from the forward; each kv
// head's sums over the query heads of its group. The q part is not
// touched. Four products: it recomputes S = QKᵀ and dP = dO·Vᵀ, and forms
// dV = PᵀdO and dK = dSᵀQ. Grid (tiles, NKV, B).
func AttentionBackwardDKDVMMA(dqkv, d, dout, qkv, lse program.View, B, T, C, NH, NKV int) program.Op {
	c := ptx.AttentionMMAConfigFor(C / NH)
	return attentionBackwardMMA("attention_backward_dkdv_bf16", c.DKDV.R, NKV, 4, dqkv, d, dout, qkv, lse, B, T, C, NH, NKV)
}

// AttentionBackwardDQMMA overwrites the q part of dqkv (B,T,(NH+2·NKV)·hs)
// bf16 with its gradient, given d from the preprocess, dout (B,T,C) bf16,
// qkv and lse from the forward. The k and v parts are not touched. Three
// products: it recomputes S = QKᵀ and dP = dO·Vᵀ, and forms dQ = dS·K.
func AttentionBackwardDQMMA(dqkv, d, dout, qkv, lse program.View, B, T, C, NH, NKV int) program.Op {
	c := ptx.AttentionMMAConfigFor(C / NH)
	return attentionBackwardMMA("attention_backward_dq_bf16", c.DQ.R, NH, 3, dqkv, d, dout, qkv, lse, B, T, C, NH, NKV)
}

func attentionBackwardMMA(entry string, rows, heads int, products int64, dqkv, d, dout, qkv, lse program.View, B, T, C, NH, NKV int) program.Op {
	attnMMAElems(entry, attnMMAArg{"dqkv", dqkv, program.BF16}, attnMMAArg{"d", d, program.F32},
		attnMMAArg{"dout", dout, program.BF16}, attnMMAArg{"qkv", qkv, program.BF16}, attnMMAArg{"lse", lse, program.F32})
	return attentionBackward(attnMMAModule, entry, rows, heads, ptx.AttentionMMAThreads, products, dqkv, d, dout, qkv, lse, B, T, C, NH, NKV)
}

// AttentionBackwardMMA overwrites all of dqkv (B,T,(NH+2·NKV)·hs) bf16,
// its q, k and v parts, with the gradient of the attention output with
// respect to qkv, given dout (B,T,C) bf16 and qkv, out and lse from
// AttentionForwardMMA. d is fp32 scratch of B·NH·T floats (overwritten).
// Three launches: the preprocess, dK and dV, dQ.
func AttentionBackwardMMA(dqkv, d, dout, qkv, out, lse program.View, B, T, C, NH, NKV int) []program.Op {
	return []program.Op{
		AttentionBackwardPreprocessMMA(d, dout, out, B, T, C, NH),
		AttentionBackwardDKDVMMA(dqkv, d, dout, qkv, lse, B, T, C, NH, NKV),
		AttentionBackwardDQMMA(dqkv, d, dout, qkv, lse, B, T, C, NH, NKV),
	}
}
