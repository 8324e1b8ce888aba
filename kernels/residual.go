package kernels

import "gorgonia.org/cu"

// Residual holds the kernel of ptx/residual.cu: the residual connection.
type Residual struct {
	forward *kernel
}

func (x *Residual) load(l *loader) {
	x.forward = l.kernel("residual", "residual_forward")
}

// residualBlock is the block size of residual_forward.
const residualBlock = 256

// Forward writes out[i] = a[i] + b[i] for i < n. out may equal a or b.
func (x *Residual) Forward(s cu.Stream, out, a, b cu.DevicePtr, n int) error {
	// Four elements per thread: the kernel moves float4s when all three
	// pointers are 16-byte aligned, and grid-strides otherwise.
	blocks := max(ceilDiv(ceilDiv(n, 4), residualBlock), 1)
	return x.forward.launch(s, grid1(blocks), grid1(residualBlock), 0, ptr(out), ptr(a), ptr(b), i32(n))
}
