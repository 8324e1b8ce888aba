package kernels

import "gorgonia.org/cu"

// CrossEntropy holds the kernels of ptx/crossentropy.cu: the softmax
// cross-entropy loss and its gradient.
type CrossEntropy struct {
	forward    *kernel
	lossReduce *kernel
	backward   *kernel
}

func (x *CrossEntropy) load(l *loader) {
	x.forward = l.kernel("crossentropy", "crossentropy_forward")
	x.lossReduce = l.kernel("crossentropy", "loss_reduce")
	x.backward = l.kernel("crossentropy", "crossentropy_backward")
}

// lossReduceBlock is the block size of loss_reduce. The summation order
// depends on it, so it is fixed.
const lossReduceBlock = 1024

// crossEntropyBlock is the block size for rows of V logits: a multiple of 32,
// at most 512, and no more threads than V needs. It depends on V only, so
// the summation order, and so the result bits, are fixed for a model.
func crossEntropyBlock(V int) int { return min(512, max(ceilDiv(V, 32)*32, 32)) }

// Forward writes losses[n] = logsumexp(logits[n,:]) − logits[n, targets[n]]
// for the N rows of logits (N,V), one block per row, and saves each row's
// logsumexp in lse (N) for Backward. lse may be 0 to skip it.
func (x *CrossEntropy) Forward(s cu.Stream, losses, lse, logits, targets cu.DevicePtr, N, V int) error {
	return x.forward.launch(s, grid1(max(N, 1)), grid1(crossEntropyBlock(V)), 0,
		ptr(losses), ptr(lse), ptr(logits), ptr(targets), i32(N), i32(V))
}

// LossReduce writes loss[0] = Σ_n losses[n] / N, summed by one block in a
// fixed order (deterministic).
func (x *CrossEntropy) LossReduce(s cu.Stream, loss, losses cu.DevicePtr, N int) error {
	return x.lossReduce.launch(s, grid1(1), grid1(lossReduceBlock), 0, ptr(loss), ptr(losses), i32(N))
}

// Backward OVERWRITES dlogits (N,V) with (softmax(logits[n,:]) −
// onehot(targets[n]))·scale; the model passes scale = 1/N. lse is Forward's,
// or 0 to have the kernel recompute it (one more read of the logits).
// dlogits may equal logits (in place).
func (x *CrossEntropy) Backward(s cu.Stream, dlogits, logits, lse, targets cu.DevicePtr, N, V int, scale float32) error {
	return x.backward.launch(s, grid1(max(N, 1)), grid1(crossEntropyBlock(V)), 0,
		ptr(dlogits), ptr(logits), ptr(lse), ptr(targets), i32(N), i32(V), f32(scale))
}
