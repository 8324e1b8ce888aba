package kernels

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/attention_tf32.cu: --dtype=tf32's attention, the
// semantics and launches of attention.go's fp32 kernels with every product
// on the TF32 tensor cores (mma.sync m16n8k8, sm_80 tier: Ampere and later,
// Hopper included). qkv, out, lse, dout, d and dqkv are fp32, as for the
// fp32 kernels; their lse means the same, so the backward's per-row term d
// is attention.cu's fp32 preprocess (AttentionBackwardPreprocess), and out
// and lse of either forward feed either backward. docs/attention.md has the
// design, the tolerances and the numbers.
//
// Head size C/NH of 64 only, and the row tensors' views at 16-byte-aligned
// offsets (the kernels copy 16-byte chunks): AttentionTF32ForwardFits and
// AttentionTF32BackwardFits say whether a layer's views qualify; otherwise
// take the fp32 kernels.
//
// FLOPs are counted exactly as for the fp32 kernels (attentionWork): the
// forward 2 products, the dkdv kernel 4, the dq kernel 3, plus the softmax
// terms.

// attnTF32Module is the PTX module of the TF32 attention kernels.
const attnTF32Module = "attention_tf32"

// AttentionTF32ForwardFits says whether AttentionForwardTF32 can run on
// these views of a layer with C channels in NH heads: head size 64, every
// view of an fp32 buffer, qkv and out at offsets of whole 16-byte chunks
// (the kernel copies qkv in 16-byte chunks, and its rows, (NH+2·NKV)·64
// floats, are whole chunks; it stores out in 8-byte pairs); lse, single
// floats, anywhere. Otherwise take AttentionForward.
func AttentionTF32ForwardFits(out, lse, qkv program.View, C, NH int) bool {
	return attnTF32Fits(C, NH, []program.View{out, qkv}, []program.View{lse})
}

// AttentionTF32BackwardFits is AttentionTF32ForwardFits for
// AttentionBackwardTF32: dqkv, dout, qkv and out at whole 16-byte chunks,
// d and lse anywhere. Otherwise take AttentionBackward.
func AttentionTF32BackwardFits(dqkv, d, dout, qkv, out, lse program.View, C, NH int) bool {
	return attnTF32Fits(C, NH, []program.View{dqkv, dout, qkv, out}, []program.View{d, lse})
}

func attnTF32Fits(C, NH int, chunked, words []program.View) bool {
	if NH <= 0 || C%NH != 0 || !ptx.AttentionTF32HeadSizeOK(C/NH) {
		return false
	}
	for _, v := range append(append([]program.View(nil), chunked...), words...) {
		if v.IsNull() || v.Buf.Elem != program.F32 {
			return false
		}
	}
	for _, v := range chunked {
		if v.Offset%4 != 0 {
			return false
		}
	}
	return true
}

// attnTF32Check panics unless the views fit: a head size the kernels do
// not run would leave the outputs unwritten, a misaligned view fault.
func attnTF32Check(entry string, C, NH int, chunked, words []program.View) {
	if !attnTF32Fits(C, NH, chunked, words) {
		panic(fmt.Sprintf("kernels: %s needs head size %d (C = %d, NH = %d), fp32 views, and %v at 16-byte-aligned offsets: check AttentionTF32ForwardFits or AttentionTF32BackwardFits first",
			entry, ptx.AttentionTF32HeadSize, C, NH, chunked))
	}
}

// AttentionForwardTF32 computes out (B,T,C), the causal
// softmax(q·kᵀ/√hs)·v of every query head with the heads concatenated, and
// lse (B,NH,T), the natural-log logsumexp of each query row's scaled
// scores, from qkv (B,T,(NH+2·NKV)·hs), all fp32, the products in TF32.
// Both outputs are overwritten. Two products: S = QKᵀ and O = PV.
func AttentionForwardTF32(out, lse, qkv program.View, B, T, C, NH, NKV int) program.Op {
	const entry = "attention_forward_tf32"
	attnTF32Check(entry, C, NH, []program.View{out, qkv}, []program.View{lse})
	op := attentionForward(attnTF32Module, entry, ptx.AttentionTF32ForwardRows, ptx.AttentionTF32Threads, out, lse, qkv, B, T, C, NH, NKV)
	op.SharedBytes = ptx.AttentionTF32ForwardSharedBytes
	return op
}

// AttentionBackwardDKDVTF32 overwrites the k and v parts of dqkv
// (B,T,(NH+2·NKV)·hs) with their gradients, given d from
// AttentionBackwardPreprocess, dout (B,T,C), qkv and lse from the forward;
// each kv head's sums over the query heads of its group. The q part is not
// touched. Four products: S = QKᵀ and dP = dO·Vᵀ recomputed, dV = PᵀdO and
// dK = dSᵀQ. Grid (tiles, NKV, B).
func AttentionBackwardDKDVTF32(dqkv, d, dout, qkv, lse program.View, B, T, C, NH, NKV int) program.Op {
	const entry = "attention_backward_dkdv_tf32"
	attnTF32Check(entry, C, NH, []program.View{dqkv, dout, qkv}, []program.View{d, lse})
	op := attentionBackward(attnTF32Module, entry, ptx.AttentionTF32DKDVRows, NKV, ptx.AttentionTF32Threads, 4, dqkv, d, dout, qkv, lse, B, T, C, NH, NKV)
	op.SharedBytes = ptx.AttentionTF32DKDVSharedBytes
	return op
}

// AttentionBackwardDQTF32 overwrites the q part of dqkv (B,T,(NH+2·NKV)·hs)
// with its gradient, given d from AttentionBackwardPreprocess, dout
// (B,T,C), qkv and lse from the forward. The k and v parts are not
// touched. Three products: S = QKᵀ and dP = dO·Vᵀ recomputed, dQ = dS·K.
func AttentionBackwardDQTF32(dqkv, d, dout, qkv, lse program.View, B, T, C, NH, NKV int) program.Op {
	const entry = "attention_backward_dq_tf32"
	attnTF32Check(entry, C, NH, []program.View{dqkv, dout, qkv}, []program.View{d, lse})
	op := attentionBackward(attnTF32Module, entry, ptx.AttentionTF32DQRows, NH, ptx.AttentionTF32Threads, 3, dqkv, d, dout, qkv, lse, B, T, C, NH, NKV)
	op.SharedBytes = ptx.AttentionTF32DQSharedBytes
	return op
}

// AttentionBackwardTF32 overwrites all of dqkv (B,T,(NH+2·NKV)·hs), its q,
// k and v parts, with the gradient of the attention output with respect to
// qkv, given dout (B,T,C) and qkv, out and lse from a forward. d is scratch
// of B·NH·T floats (overwritten). Three launches: attention.cu's fp32
// preprocess (d = Σ dout·out, no product to put on tensor cores), dK and
// dV, dQ.
func AttentionBackwardTF32(dqkv, d, dout, qkv, out, lse program.View, B, T, C, NH, NKV int) []program.Op {
	return []program.Op{
		AttentionBackwardPreprocess(d, dout, out, B, T, C, NH),
		AttentionBackwardDKDVTF32(dqkv, d, dout, qkv, lse, B, T, C, NH, NKV),
		AttentionBackwardDQTF32(dqkv, d, dout, qkv, lse, B, T, C, NH, NKV),
	}
}
