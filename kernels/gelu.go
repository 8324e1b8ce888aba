package kernels

import "gorgonia.org/cu"

// GELU holds the kernels of ptx/gelu.cu: the tanh-approximation GELU.
type GELU struct {
	forward  *kernel
	backward *kernel
}

func (x *GELU) load(l *loader) {
	x.forward = l.kernel("gelu", "gelu_forward")
	x.backward = l.kernel("gelu", "gelu_backward")
}

// geluBlock is the block size of the GELU kernels.
const geluBlock = 256

// geluGrid covers n elements at four per thread (the kernels move float4s
// when aligned, and grid-stride otherwise).
func geluGrid(n int) dim3 { return grid1(max(ceilDiv(ceilDiv(n, 4), geluBlock), 1)) }

// Forward writes out[i] = gelu(inp[i]) for i < n. out may equal inp.
func (x *GELU) Forward(s cu.Stream, out, inp cu.DevicePtr, n int) error {
	return x.forward.launch(s, geluGrid(n), grid1(geluBlock), 0, ptr(out), ptr(inp), i32(n))
}

// Backward OVERWRITES dinp[i] = gelu'(inp[i])·dout[i] for i < n. dinp may
// equal dout.
func (x *GELU) Backward(s cu.Stream, dinp, inp, dout cu.DevicePtr, n int) error {
	return x.backward.launch(s, geluGrid(n), grid1(geluBlock), 0, ptr(dinp), ptr(inp), ptr(dout), i32(n))
}
