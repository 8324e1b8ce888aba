package kernels

import (
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/attention.cu: causal multi-head self-attention in the
// flash-attention-2 style, fp32, on qkv (B,T,3C) rows [q | k | v], head h
// in columns h*hs..(h+1)*hs of each part, hs = C/NH.
//
// The forward stores only the output and the logsumexp of each query row;
// no T×T matrix is ever written. The backward recomputes the probabilities
// from qkv and the logsumexp, in two kernels (one summing over queries for
// dK and dV, one over keys for dQ) so that every gradient element is summed
// by one thread in a fixed order: deterministic, with no atomics.
//
// Their shapes are validated by config.Dims.Validate before any program is
// built (head size at most ptx.AttentionMaxHeadSize, B and NH within the grid).

// attentionWork counts, over all B·NH heads, the live (causal) scores
// T(T+1)/2 per head, and one causal-size product: 2·hs FLOPs per live score.
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

func attentionArgs(B, T, C, NH int) []program.Arg {
	return []program.Arg{program.Int("B", B), program.Int("T", T), program.Int("C", C), program.Int("NH", NH)}
}

// AttentionForward computes out (B,T,C), the causal softmax(q·kᵀ/√hs)·v of
// every head with the heads concatenated, and lse (B,NH,T), the natural-log
// logsumexp of each query row's scaled scores, from qkv (B,T,3C). Both
// outputs are overwritten. Two products: S = QKᵀ and O = PV.
func AttentionForward(out, lse, qkv program.View, B, T, C, NH int) program.Op {
	rows, _, _ := ptx.AttentionTiles(C / NH)
	return attentionForward("attention", "attention_forward", rows, ptx.AttentionThreads, out, lse, qkv, B, T, C, NH)
}

// attentionForward is the forward launch of either tier (module, entry,
// its tile rows and threads): the same arguments, grid and FLOPs.
func attentionForward(module, entry string, rows, threads int, out, lse, qkv program.View, B, T, C, NH int) program.Op {
	N := int64(B * T)
	op := kernel(module, entry, program.D3(ceilDiv(T, rows), NH, B), program.D1(threads),
		append([]program.Arg{program.Out("out", out, N*int64(C)), program.Out("lse", lse, int64(B*NH*T)),
			program.In("qkv", qkv, 3*N*int64(C))}, attentionArgs(B, T, C, NH)...)...)
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
			program.In("out", out, N*int64(C))}, attentionArgs(B, T, C, NH)...)...)
	op.FLOPs = 2 * N * int64(C)
	return op
}

// AttentionBackwardDKDV overwrites the k and v parts of dqkv (B,T,3C) with
// their gradients, given d from the preprocess, dout (B,T,C), qkv and lse
// from the forward. The q part is not touched. Four products: it
// recomputes S = QKᵀ and dP = dO·Vᵀ, and forms dV = PᵀdO and dK = dSᵀQ.
func AttentionBackwardDKDV(dqkv, d, dout, qkv, lse program.View, B, T, C, NH int) program.Op {
	_, rows, _ := ptx.AttentionTiles(C / NH)
	return attentionBackward("attention", "attention_backward_dkdv", rows, ptx.AttentionThreads, 4, dqkv, d, dout, qkv, lse, B, T, C, NH)
}

// AttentionBackwardDQ overwrites the q part of dqkv (B,T,3C) with its
// gradient, given d from the preprocess, dout (B,T,C), qkv and lse from the
// forward. The k and v parts are not touched. Three products: it
// recomputes S = QKᵀ and dP = dO·Vᵀ, and forms dQ = dS·K.
func AttentionBackwardDQ(dqkv, d, dout, qkv, lse program.View, B, T, C, NH int) program.Op {
	_, _, rows := ptx.AttentionTiles(C / NH)
	return attentionBackward("attention", "attention_backward_dq", rows, ptx.AttentionThreads, 3, dqkv, d, dout, qkv, lse, B, T, C, NH)
}

// attentionBackward is a backward launch (dkdv or dq) of either tier.
func attentionBackward(module, entry string, rows, threads int, products int64, dqkv, d, dout, qkv, lse program.View, B, T, C, NH int) program.Op {
	N := int64(B * T)
	op := kernel(module, entry, program.D3(ceilDiv(T, rows), NH, B), program.D1(threads),
		append([]program.Arg{program.Out("dqkv", dqkv, 3*N*int64(C)), program.In("d", d, int64(B*NH*T)),
			program.In("dout", dout, N*int64(C)), program.In("qkv", qkv, 3*N*int64(C)),
			program.In("lse", lse, int64(B*NH*T))}, attentionArgs(B, T, C, NH)...)...)
	live, product := attentionWork(B, T, C, NH)
	op.MatmulFLOPs = products * product
	op.FLOPs = op.MatmulFLOPs + attnScoreBwdFLOPs*live
	return op
}

// AttentionBackward overwrites dqkv (B,T,3C) with the gradient of the
// attention output with respect to qkv, given dout (B,T,C) and qkv, out and
// lse from the forward. d is scratch of B·NH·T floats (overwritten). Three
// launches: the preprocess, dK and dV, dQ.
func AttentionBackward(dqkv, d, dout, qkv, out, lse program.View, B, T, C, NH int) []program.Op {
	return []program.Op{
		AttentionBackwardPreprocess(d, dout, out, B, T, C, NH),
		AttentionBackwardDKDV(dqkv, d, dout, qkv, lse, B, T, C, NH),
		AttentionBackwardDQ(dqkv, d, dout, qkv, lse, B, T, C, NH),
	}
}
