package kernels

import (
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/encoder.cu: the token and position embedding and their
// gradients. The tensors other than the int32 ids are all f32 (module
// encoder) or all bf16 (module encoder_bf16, elem.go); the gradients are
// accumulated in float and rounded once per launch.

// Block shapes are ptx.EncoderBlock, ptx.EncoderWTECols and
// ptx.EncoderWTEThreads.

// EncoderForward writes out (B,T,C) = wte[tokens[b,t],:] + wpe[t,:].
// tokens holds B*T int32 ids in [0, V); wte is (V,C), wpe has at least T
// rows of C.
func EncoderForward(out, tokens, wte, wpe program.View, B, T, C int) program.Op {
	s := storage("encoder_forward", out, wte, wpe)
	require("encoder_forward", program.I32, tokens)
	N := B * T
	work := N * C
	if v := vector(s); C%v == 0 {
		work /= v // the kernel moves 16-byte vectors when it can; it grid-strides otherwise
	}
	op := stored(s, "encoder", "encoder_forward", program.D1(max(ceilDiv(work, ptx.EncoderBlock), 1)), program.D1(ptx.EncoderBlock),
		program.Out("out", out, int64(N*C)), program.In("tokens", tokens, int64(N)),
		program.In("wte", wte, wte.Elems), program.In("wpe", wpe, int64(T*C)),
		program.Int("B", B), program.Int("T", T), program.Int("C", C))
	op.FLOPs = int64(N*C) * EncoderFwdFLOPs
	// The rows of wte it reads are at most N·C elements.
	op.Bytes = s.Size()*int64(N*C+min(N*C, int(wte.Elems))+T*C) + 4*int64(N)
	return op
}

// EncoderBackwardWPE accumulates dwpe[t,:] += Σ_b dout[b,t,:] for t < T,
// summing over b in increasing order (deterministic). dout is (B,T,C).
func EncoderBackwardWPE(dwpe, dout program.View, B, T, C int) program.Op {
	s := storage("encoder_backward_wpe", dwpe, dout)
	op := stored(s, "encoder", "encoder_backward_wpe", program.D1(max(ceilDiv(T*C, ptx.EncoderBlock), 1)), program.D1(ptx.EncoderBlock),
		program.InOut("dwpe", dwpe, int64(T*C)), program.In("dout", dout, int64(B*T*C)),
		program.Int("B", B), program.Int("T", T), program.Int("C", C))
	op.FLOPs = int64(B*T*C) * EncoderBwdWPEFLOPs
	return op
}

// EncoderBackwardWTE accumulates dwte[v,:] += Σ dout[p,:] over the
// positions p of token v, deterministically and without atomics, one block
// row per bucket of internal/buckets. order, segStart and segToken are the
// int32 arrays of a buckets.Padded grouping with numBuckets buckets of N
// positions (segStart has numBuckets+1 entries); dout is (N, C), dwte (V, C).
//
// The grid has one row per bucket. Since the padded grouping always has
// min(N, V) buckets, the launch is the same for every batch of a shape.
func EncoderBackwardWTE(dwte, dout, order, segStart, segToken program.View, numBuckets, N, C int) program.Op {
	s := storage("encoder_backward_wte", dwte, dout)
	require("encoder_backward_wte", program.I32, order, segStart, segToken)
	op := stored(s, "encoder", "encoder_backward_wte",
		program.D2(max(numBuckets, 1), max(ceilDiv(C, ptx.EncoderWTECols), 1)), program.D1(ptx.EncoderWTEThreads),
		program.InOut("dwte", dwte, dwte.Elems), program.In("dout", dout, int64(N*C)),
		program.In("order", order, int64(N)), program.In("seg_start", segStart, int64(numBuckets+1)),
		program.In("seg_token", segToken, int64(numBuckets)),
		program.Int("num_buckets", numBuckets), program.Int("C", C))
	op.FLOPs = int64(N*C) * EncoderBwdWTEFLOPs
	// It reads and writes only the rows of the batch's tokens.
	op.Bytes = s.Size()*int64(N*C+2*min(N, int(dwte.Elems)/max(C, 1))*C) + 4*int64(3*N)
	return op
}
