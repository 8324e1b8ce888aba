package kernels

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/crossentropy.cu: the softmax cross-entropy loss and
// its gradient. The logits and their gradient are f32 (module
// crossentropy) or bf16 (module crossentropy_bf16, elem.go); the losses,
// lse and the loss are f32 in both, and loss_reduce is in module
// crossentropy alone.

// The block sizes (ptx.CrossEntropyBlock, ptx.LossReduceBlock) fix the
// summation order, and so the result bits, for a model.

// The logits are N rows of V columns, Vp ≥ V elements apart (a padded
// vocabulary); the kernels never touch the Vp − V padding columns.

// logitsSpan is the elements from the start of N rows of V logits, Vp
// apart, that a kernel may touch: (N−1)·Vp + V.
func logitsSpan(N, V, Vp int) int64 {
	if Vp < V {
		panic(fmt.Sprintf("kernels: logits rows of %d columns, %d apart: the row stride is under V", V, Vp))
	}
	if N == 0 {
		return 0
	}
	return int64((N-1)*Vp + V)
}

// unpadded counts op's bytes with the N·V logits it moves in place of the
// span of their padded rows (the arguments' Touch, which the view must
// hold).
func unpadded(op *program.Op, N, V int) {
	op.Bytes = 0
	for _, a := range op.Args {
		if a.Param == "logits" || a.Param == "dlogits" {
			a.Touch = min(a.Touch, int64(N*V))
		}
		op.Bytes += a.Bytes()
	}
}

// CrossEntropyForward writes losses[n] = logsumexp(logits[n,:V]) −
// logits[n, targets[n]] for the N rows of logits (row n at n·Vp), one block
// per row, and saves each row's logsumexp in lse (N) for the backward. lse
// may be a null view to skip it.
func CrossEntropyForward(losses, lse, logits, targets program.View, N, V, Vp int) program.Op {
	s := storage("crossentropy_forward", logits)
	require("crossentropy_forward", program.F32, losses, lse)
	require("crossentropy_forward", program.I32, targets)
	op := stored(s, "crossentropy", "crossentropy_forward", program.D1(max(N, 1)), program.D1(ptx.CrossEntropyBlock(V)),
		program.Out("losses", losses, int64(N)), program.Out("lse", lse, optional(lse, N)),
		program.In("logits", logits, logitsSpan(N, V, Vp)), program.In("targets", targets, int64(N)),
		program.Int("N", N), program.Int("V", V), program.Int("Vp", Vp))
	unpadded(&op, N, V)
	op.FLOPs = int64(N*V) * CrossEntropyFwdFLOPs
	return op
}

// LossReduce writes loss[0] = Σ_n losses[n] / N, summed by one block in a
// fixed order (deterministic). It is f32 in both steps.
func LossReduce(loss, losses program.View, N int) program.Op {
	require("loss_reduce", program.F32, loss, losses)
	op := kernel("crossentropy", "loss_reduce", program.D1(1), program.D1(ptx.LossReduceBlock),
		program.Out("loss", loss, 1), program.In("losses", losses, int64(N)), program.Int("N", N))
	op.FLOPs = int64(N)
	return op
}

// CrossEntropyBackward OVERWRITES the first V columns of the N rows of
// dlogits (row n at n·Vp) with (softmax(logits[n,:V]) −
// onehot(targets[n]))·scale; the model passes scale = 1/N. lse is the
// forward's, or a null view to have the kernel recompute it (one more read
// of the logits). dlogits may equal logits (in place).
func CrossEntropyBackward(dlogits, logits, lse, targets program.View, N, V, Vp int, scale float32) program.Op {
	s := storage("crossentropy_backward", dlogits, logits)
	require("crossentropy_backward", program.F32, lse)
	require("crossentropy_backward", program.I32, targets)
	span := logitsSpan(N, V, Vp)
	dl := program.Out("dlogits", dlogits, span)
	if dlogits == logits {
		dl.Access = program.ReadWrite
	}
	args := []program.Arg{dl, program.In("logits", logits, span), program.In("lse", lse, optional(lse, N)),
		program.In("targets", targets, int64(N)), program.Int("N", N), program.Int("V", V), program.Int("Vp", Vp),
		program.Float("scale", scale)}
	if dlogits == logits {
		args[1].Touch = 0 // one pass over the row, read and written in place
	}
	op := stored(s, "crossentropy", "crossentropy_backward", program.D1(max(N, 1)), program.D1(ptx.CrossEntropyBlock(V)), args...)
	unpadded(&op, N, V)
	op.FLOPs = int64(N*V) * CrossEntropyBwdFLOPs
	return op
}
