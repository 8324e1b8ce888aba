package kernels

import (
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/crossentropy.cu: the softmax cross-entropy loss and
// its gradient.

// The block sizes (ptx.CrossEntropyBlock, ptx.LossReduceBlock) fix the
// summation order, and so the result bits, for a model.

// CrossEntropyForward writes losses[n] = logsumexp(logits[n,:]) −
// logits[n, targets[n]] for the N rows of logits (N,V), one block per row,
// and saves each row's logsumexp in lse (N) for the backward. lse may be a
// null view to skip it.
func CrossEntropyForward(losses, lse, logits, targets program.View, N, V int) program.Op {
	op := kernel("crossentropy", "crossentropy_forward", program.D1(max(N, 1)), program.D1(ptx.CrossEntropyBlock(V)),
		program.Out("losses", losses, int64(N)), program.Out("lse", lse, optional(lse, N)),
		program.In("logits", logits, int64(N*V)), program.In("targets", targets, int64(N)),
		program.Int("N", N), program.Int("V", V))
	op.FLOPs = int64(N*V) * CrossEntropyFwdFLOPs
	return op
}

// LossReduce writes loss[0] = Σ_n losses[n] / N, summed by one block in a
// fixed order (deterministic).
func LossReduce(loss, losses program.View, N int) program.Op {
	op := kernel("crossentropy", "loss_reduce", program.D1(1), program.D1(ptx.LossReduceBlock),
		program.Out("loss", loss, 1), program.In("losses", losses, int64(N)), program.Int("N", N))
	op.FLOPs = int64(N)
	return op
}

// CrossEntropyBackward OVERWRITES dlogits (N,V) with (softmax(logits[n,:])
// − onehot(targets[n]))·scale; the model passes scale = 1/N. lse is the
// forward's, or a null view to have the kernel recompute it (one more read
// of the logits). dlogits may equal logits (in place).
func CrossEntropyBackward(dlogits, logits, lse, targets program.View, N, V int, scale float32) program.Op {
	dl := program.Out("dlogits", dlogits, int64(N*V))
	if dlogits == logits {
		dl.Access = program.ReadWrite
	}
	args := []program.Arg{dl, program.In("logits", logits, int64(N*V)), program.In("lse", lse, optional(lse, N)),
		program.In("targets", targets, int64(N)), program.Int("N", N), program.Int("V", V), program.Float("scale", scale)}
	if dlogits == logits {
		args[1].Touch = 0 // one pass over the row, read and written in place
	}
	op := kernel("crossentropy", "crossentropy_backward", program.D1(max(N, 1)), program.D1(ptx.CrossEntropyBlock(V)), args...)
	op.FLOPs = int64(N*V) * CrossEntropyBwdFLOPs
	return op
}
