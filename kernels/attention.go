package kernels

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/attention.cu: causal grouped-query self-attention in
// the flash-attention-2 style, fp32, on qkv (B,T,W) rows [q (NH·hs) |
// k (NKV·hs) | v (NKV·hs)], W = (NH+2·NKV)·hs, hs = C/NH: query head h in
// columns h*hs..(h+1)*hs of q, with key/value head h/(NH/NKV). NKV = NH is
// multi-head attention (W = 3C, GPT-2); NKV must divide NH.
//
// The forward stores only the output and the logsumexp of each query row;
// no T×T matrix is ever written. The backward recomputes the probabilities
// from qkv and the logsumexp, in two kernels (one summing over queries for
// dK and dV, one over keys for dQ) so that every gradient element is summed
// by one thread in a fixed order: deterministic, with no atomics. The dK
// and dV of a kv head sum over the NH/NKV query heads of its group inside
// one block, head by head.
//
// Their shapes are validated by config.Dims.Validate before any program is
// built (head size at most ptx.AttentionMaxHeadSize, B and NH within the grid).

// attentionWork counts, over all B·NH query heads, the live (causal) scores
// T(T+1)/2 per head, and one causal-size product: 2·hs FLOPs per live score.
// Grouped-query attention does the same arithmetic as multi-head attention
// with as many heads; only the k and v it reads are shared.
func attentionWork(B, T, C, NH int) (live, product int64) {
	hs := int64(C / NH)
	live = int64(B*NH) * int64(T) * int64(T+1) / 2
	return live, 2 * hs * live
}

// Softmax FLOPs of attention (see internal/flops): forward 5 per live score
// (scale, running max, subtract, exp, sum) plus hs+2 per query row
// (normalise the output row, log and add for the logsumexp); backward 6
// per live score in each kernel that rebuilds P and dS (scale, subtract
// lse, exp; subtract D, multiply by P, scale), and 2·hs per query row for
// D = rowsum(dO∘O).
const (
	attnScoreFwdFLOPs = 5
	attnRowFwdFLOPs   = 2
	attnScoreBwdFLOPs = 6
)

// headArgs are the shape arguments of the preprocess, which reads no qkv.
func headArgs(B, T, C, NH int) []program.Arg {
	return []program.Arg{program.Int("B", B), program.Int("T", T), program.Int("C", C), program.Int("NH", NH)}
}

// attentionArgs are the shape arguments of the kernels that read qkv.
func attentionArgs(B, T, C, NH, NKV int) []program.Arg {
	return append(headArgs(B, T, C, NH), program.Int("NKV", NKV))
}

// qkvWidth is the width (NH+2·NKV)·hs of a qkv row. It panics unless NKV
// divides NH (config validation refuses such shapes before any program is
// built; the kernels would read the wrong heads).
func qkvWidth(C, NH, NKV int) int {
	if NKV < 1 || NH%NKV != 0 {
		panic(fmt.Sprintf("kernels: attention: %d key/value heads do not divide %d heads", NKV, NH))
	}
	return (NH + 2*NKV) * (C / NH)
}

// AttentionForward computes out (B,T,C), the causal softmax(q·kᵀ/√hs)·v of
// every query head with the heads concatenated, and lse (B,NH,T), the
// natural-log logsumexp of each query row's scaled scores, from qkv
// (B,T,(NH+2·NKV)·hs). Both outputs are overwritten. Two products: S = QKᵀ
// and O = PV.
func AttentionForward(out, lse, qkv program.View, B, T, C, NH, NKV int) program.Op {
	rows, _, _ := ptx.AttentionTiles(C / NH)
	return attentionForward("attention", "attention_forward", rows, ptx.AttentionThreads, out, lse, qkv, B, T, C, NH, NKV)
}

// attentionForward is the forward launch of either tier (module, entry,
// its tile rows and threads): the same arguments, grid and FLOPs.
func attentionForward(module, entry string, rows, threads int, out, lse, qkv program.View, B, T, C, NH, NKV int) program.Op {
	N, W := int64(B*T), int64(qkvWidth(C, NH, NKV))
	op := kernel(module, entry, program.D3(ceilDiv(T, rows), NH, B), program.D1(threads),
		append([]program.Arg{program.Out("out", out, N*int64(C)), program.Out("lse", lse, int64(B*NH*T)),
			program.In("qkv", qkv, N*W)}, attentionArgs(B, T, C, NH, NKV)...)...)
	live, product := attentionWork(B, T, C, NH)
	op.MatmulFLOPs = 2 * product
	op.FLOPs = op.MatmulFLOPs + attnScoreFwdFLOPs*live + int64(B*NH*T)*int64(C/NH+attnRowFwdFLOPs)
	return op
}

// AttentionBackwardPreprocess computes d (B,NH,T) = Σ over each head row
// of dout·out, the per-row term of the softmax backward. d is overwritten.
func AttentionBackwardPreprocess(d, dout, out program.View, B, T, C, NH int) program.Op {
	const block = ptx.AttentionPreprocessBlock // one warp a (b,t,h) row
	N := int64(B * T)
	op := kernel("attention", "attention_backward_preprocess", program.D1(ceilDiv(B*T*NH, block/ptx.WarpSize)), program.D1(block),
		append([]program.Arg{program.Out("d", d, int64(B*NH*T)), program.In("dout", dout, N*int64(C)),
			program.In("out", out, N*int64(C))}, headArgs(B, T, C, NH)...)...)
	op.FLOPs = 2 * N * int64(C)
	return op
}

// AttentionBackwardDKDV overwrites the k and v parts of dqkv
// (B,T,(NH+2·NKV)·hs) with their gradients, given d from the preprocess,
// dout (B,T,C), qkv and lse from the forward; each kv head's sums over the
// query heads of its group. The q part is not touched. Four products: it
// recomputes S = QKᵀ and dP = dO·Vᵀ, and forms dV = PᵀdO and dK = dSᵀQ.
// One block per key tile and kv head: grid (tiles, NKV, B).
func AttentionBackwardDKDV(dqkv, d, dout, qkv, lse program.View, B, T, C, NH, NKV int) program.Op {
	_, rows, _ := ptx.AttentionTiles(C / NH)
	return attentionBackward("attention", "attention_backward_dkdv", rows, NKV, ptx.AttentionThreads, 4, dqkv, d, dout, qkv, lse, B, T, C, NH, NKV)
}

// AttentionBackwardDQ overwrites the q part of dqkv (B,T,(NH+2·NKV)·hs)
// with its gradient, given d from the preprocess, dout (B,T,C), qkv and lse
// from the forward. The k and v parts are not touched. Three products: it
// recomputes S = QKᵀ and dP = dO·Vᵀ, and forms dQ = dS·K.
func AttentionBackwardDQ(dqkv, d, dout, qkv, lse program.View, B, T, C, NH, NKV int) program.Op {
	_, _, rows := ptx.AttentionTiles(C / NH)
	return attentionBackward("attention", "attention_backward_dq", rows, NH, ptx.AttentionThreads, 3, dqkv, d, dout, qkv, lse, B, T, C, NH, NKV)
}

// attentionBackward is a backward launch (dkdv or dq) of either tier, with
// a grid of (tiles of rows, heads, B): heads is NKV for dkdv, NH for dq.
func attentionBackward(module, entry string, rows, heads, threads int, products int64, dqkv, d, dout, qkv, lse program.View, B, T, C, NH, NKV int) program.Op {
	N, W := int64(B*T), int64(qkvWidth(C, NH, NKV))
	op := kernel(module, entry, program.D3(ceilDiv(T, rows), heads, B), program.D1(threads),
		append([]program.Arg{program.Out("dqkv", dqkv, N*W), program.In("d", d, int64(B*NH*T)),
			program.In("dout", dout, N*int64(C)), program.In("qkv", qkv, N*W),
			program.In("lse", lse, int64(B*NH*T))}, attentionArgs(B, T, C, NH, NKV)...)...)
	live, product := attentionWork(B, T, C, NH)
	op.MatmulFLOPs = products * product
	op.FLOPs = op.MatmulFLOPs + attnScoreBwdFLOPs*live
	return op
}

// AttentionBackward overwrites all of dqkv (B,T,(NH+2·NKV)·hs), its q, k
// and v parts, with the gradient of the attention output with respect to
// qkv, given dout (B,T,C) and qkv, out and lse from the forward. d is
// scratch of B·NH·T floats (overwritten). Three launches: the preprocess,
// dK and dV, dQ.
func AttentionBackward(dqkv, d, dout, qkv, out, lse program.View, B, T, C, NH, NKV int) []program.Op {
	return []program.Op{
		AttentionBackwardPreprocess(d, dout, out, B, T, C, NH),
		AttentionBackwardDKDV(dqkv, d, dout, qkv, lse, B, T, C, NH, NKV),
		AttentionBackwardDQ(dqkv, d, dout, qkv, lse, B, T, C, NH, NKV),
	}
}
