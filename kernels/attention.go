package kernels

import (
	"fmt"

	"gorgonia.org/cu"
)

// Attention holds the kernels of ptx/attention.cu: causal multi-head
// self-attention in the flash-attention-2 style, fp32, on qkv (B,T,3C) rows
// [q | k | v], head h in columns h*hs..(h+1)*hs of each part, hs = C/NH.
//
// The forward stores only the output and the logsumexp of each query row;
// no T×T matrix is ever written. The backward recomputes the probabilities
// from qkv and the logsumexp, in two kernels (one summing over queries for
// dK and dV, one over keys for dQ) so that every gradient element is summed
// by one thread in a fixed order: deterministic, with no atomics.
//
// Attention forward = 1 launch (attention_forward). Attention backward = 3
// launches: attention_backward_preprocess, attention_backward_dkdv,
// attention_backward_dq.
type Attention struct {
	forward    *kernel
	preprocess *kernel
	dkdv       *kernel
	dq         *kernel
}

func (x *Attention) load(l *loader) {
	x.forward = l.kernel("attention", "attention_forward")
	x.preprocess = l.kernel("attention", "attention_backward_preprocess")
	x.dkdv = l.kernel("attention", "attention_backward_dkdv")
	x.dq = l.kernel("attention", "attention_backward_dq")
}

// AttentionMaxHeadSize is the largest head size C/NH the attention kernels
// support (ATT_HS_MAX in ptx/attention.cu): the tiles of one head's rows must
// fit in 48 KB of static shared memory.
const AttentionMaxHeadSize = 128

// attentionThreads is ATT_THREADS in ptx/attention.cu.
const attentionThreads = 128

// attentionTiles returns the rows of the tile each block owns in the
// forward, dkdv and dq kernels for head size hs. It mirrors FwdTiles,
// DkdvTiles and DqTiles (the R members) in ptx/attention.cu, where hs picks
// the compiled maximum head size D = 32, 64 or 128.
func attentionTiles(hs int) (fwd, dkdv, dq int) {
	switch {
	case hs <= 32:
		return 64, 32, 64
	case hs <= 64:
		return 64, 32, 32
	default:
		return 32, 16, 16
	}
}

// attentionShape checks the shape the kernels support and returns hs.
func attentionShape(b, t, c, nh int) (int, error) {
	if b <= 0 || t <= 0 || c <= 0 || nh <= 0 {
		return 0, fmt.Errorf("attention: B=%d, T=%d, C=%d, NH=%d must all be positive", b, t, c, nh)
	}
	if c%nh != 0 {
		return 0, fmt.Errorf("attention: C=%d is not a multiple of NH=%d", c, nh)
	}
	hs := c / nh
	if hs > AttentionMaxHeadSize {
		return 0, fmt.Errorf("attention: head size C/NH = %d/%d = %d is not supported (at most %d)", c, nh, hs, AttentionMaxHeadSize)
	}
	if b > 65535 || nh > 65535 {
		return 0, fmt.Errorf("attention: B=%d and NH=%d must be at most 65535 (grid z and y)", b, nh)
	}
	return hs, nil
}

// Forward computes out (B,T,C), the causal softmax(q·kᵀ/sqrt(hs))·v of every
// head with the heads concatenated, and lse (B,NH,T), the natural-log
// logsumexp of each query row's scaled scores, from qkv (B,T,3C). Both
// outputs are overwritten. hs = C/NH must be at most AttentionMaxHeadSize.
func (x *Attention) Forward(s cu.Stream, out, lse, qkv cu.DevicePtr, b, t, c, nh int) error {
	hs, err := attentionShape(b, t, c, nh)
	if err != nil {
		return err
	}
	rows, _, _ := attentionTiles(hs)
	return x.forward.launch(s, grid3(ceilDiv(t, rows), nh, b), grid1(attentionThreads), 0,
		ptr(out), ptr(lse), ptr(qkv), i32(b), i32(t), i32(c), i32(nh))
}

// BackwardPreprocess computes d (B,NH,T) = Σ over each head row of
// dout·out, the per-row term of the softmax backward. d is overwritten.
func (x *Attention) BackwardPreprocess(s cu.Stream, d, dout, out cu.DevicePtr, b, t, c, nh int) error {
	if _, err := attentionShape(b, t, c, nh); err != nil {
		return err
	}
	const block = 256 // 8 warps, one (b,t,h) row each
	return x.preprocess.launch(s, grid1(ceilDiv(b*t*nh, block/32)), grid1(block), 0,
		ptr(d), ptr(dout), ptr(out), i32(b), i32(t), i32(c), i32(nh))
}

// BackwardDKDV overwrites the k and v parts of dqkv (B,T,3C) with their
// gradients, given d from BackwardPreprocess, dout (B,T,C), qkv and lse from
// Forward. The q part is not touched.
func (x *Attention) BackwardDKDV(s cu.Stream, dqkv, d, dout, qkv, lse cu.DevicePtr, b, t, c, nh int) error {
	hs, err := attentionShape(b, t, c, nh)
	if err != nil {
		return err
	}
	_, rows, _ := attentionTiles(hs)
	return x.dkdv.launch(s, grid3(ceilDiv(t, rows), nh, b), grid1(attentionThreads), 0,
		ptr(dqkv), ptr(d), ptr(dout), ptr(qkv), ptr(lse), i32(b), i32(t), i32(c), i32(nh))
}

// BackwardDQ overwrites the q part of dqkv (B,T,3C) with its gradient, given
// d from BackwardPreprocess, dout (B,T,C), qkv and lse from Forward. The k
// and v parts are not touched.
func (x *Attention) BackwardDQ(s cu.Stream, dqkv, d, dout, qkv, lse cu.DevicePtr, b, t, c, nh int) error {
	hs, err := attentionShape(b, t, c, nh)
	if err != nil {
		return err
	}
	_, _, rows := attentionTiles(hs)
	return x.dq.launch(s, grid3(ceilDiv(t, rows), nh, b), grid1(attentionThreads), 0,
		ptr(dqkv), ptr(d), ptr(dout), ptr(qkv), ptr(lse), i32(b), i32(t), i32(c), i32(nh))
}

// Backward overwrites dqkv (B,T,3C) with the gradient of the attention
// output with respect to qkv, given dout (B,T,C) and qkv, out and lse from
// Forward. d is scratch of B·NH·T floats (overwritten). It launches
// BackwardPreprocess, BackwardDKDV and BackwardDQ: 3 launches.
func (x *Attention) Backward(s cu.Stream, dqkv, d, dout, qkv, out, lse cu.DevicePtr, b, t, c, nh int) error {
	if err := x.BackwardPreprocess(s, d, dout, out, b, t, c, nh); err != nil {
		return err
	}
	if err := x.BackwardDKDV(s, dqkv, d, dout, qkv, lse, b, t, c, nh); err != nil {
		return err
	}
	return x.BackwardDQ(s, dqkv, d, dout, qkv, lse, b, t, c, nh)
}
