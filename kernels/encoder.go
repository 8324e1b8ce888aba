package kernels

import "gorgonia.org/cu"

// Encoder holds the kernels of ptx/encoder.cu: the token and position
// embedding and their gradients.
type Encoder struct {
	forward     *kernel
	backwardWPE *kernel
	backwardWTE *kernel
}

func (x *Encoder) load(l *loader) {
	x.forward = l.kernel("encoder", "encoder_forward")
	x.backwardWPE = l.kernel("encoder", "encoder_backward_wpe")
	x.backwardWTE = l.kernel("encoder", "encoder_backward_wte")
}

const (
	// encoderBlock is the block size of the elementwise encoder kernels.
	encoderBlock = 256
	// encoderWTECols and encoderWTEThreads are WTE_COLS and
	// WTE_WARPS*32 of ptx/encoder.cu: the columns one block of
	// encoder_backward_wte owns, and its (fixed) block size.
	encoderWTECols    = 128
	encoderWTEThreads = 128
)

// Forward writes out (B,T,C) = wte[tokens[b,t],:] + wpe[t,:]. tokens holds
// B*T int32 ids in [0, V); wte is (V,C), wpe has at least T rows of C.
func (x *Encoder) Forward(s cu.Stream, out, tokens, wte, wpe cu.DevicePtr, B, T, C int) error {
	work := B * T * C
	if C%4 == 0 {
		work /= 4 // the kernel moves float4s when it can; it grid-strides otherwise
	}
	blocks := max(ceilDiv(work, encoderBlock), 1)
	return x.forward.launch(s, grid1(blocks), grid1(encoderBlock), 0,
		ptr(out), ptr(tokens), ptr(wte), ptr(wpe), i32(B), i32(T), i32(C))
}

// BackwardWPE accumulates dwpe[t,:] += Σ_b dout[b,t,:] for t < T, summing
// over b in increasing order (deterministic). dout is (B,T,C).
func (x *Encoder) BackwardWPE(s cu.Stream, dwpe, dout cu.DevicePtr, B, T, C int) error {
	blocks := max(ceilDiv(T*C, encoderBlock), 1)
	return x.backwardWPE.launch(s, grid1(blocks), grid1(encoderBlock), 0,
		ptr(dwpe), ptr(dout), i32(B), i32(T), i32(C))
}

// BackwardWTE accumulates dwte[v,:] += Σ dout[p,:] over the positions p of
// token v, deterministically and without atomics. order, segStart and
// segToken are the int32 arrays of buckets.Build for this batch's tokens
// (Order, Start and Token; Start has numBuckets+1 entries), uploaded once per
// batch. dout is (B*T, C), dwte (V, C).
func (x *Encoder) BackwardWTE(s cu.Stream, dwte, dout, order, segStart, segToken cu.DevicePtr, numBuckets, C int) error {
	grid := grid2(max(numBuckets, 1), max(ceilDiv(C, encoderWTECols), 1))
	return x.backwardWTE.launch(s, grid, grid1(encoderWTEThreads), 0,
		ptr(dwte), ptr(dout), ptr(order), ptr(segStart), ptr(segToken), i32(numBuckets), i32(C))
}
