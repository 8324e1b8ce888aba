package kernels

import (
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/gelu.cu: the tanh-approximation GELU.

// geluGrid covers n elements at four per thread (the kernels move float4s
// when aligned, and grid-stride otherwise).
func geluGrid(n int) program.Dim3 { return program.D1(max(ceilDiv(ceilDiv(n, 4), ptx.GELUBlock), 1)) }

// GELUForward writes out[i] = gelu(inp[i]) for i < n. out may equal inp.
func GELUForward(out, inp program.View, n int) program.Op {
	op := kernel("gelu", "gelu_forward", geluGrid(n), program.D1(ptx.GELUBlock),
		program.Out("out", out, int64(n)), program.In("inp", inp, int64(n)), program.Int("n", n))
	op.FLOPs = int64(n) * GELUFwdFLOPs
	return op
}

// GELUBackward OVERWRITES dinp[i] = gelu'(inp[i])·dout[i] for i < n. dinp
// may equal dout.
func GELUBackward(dinp, inp, dout program.View, n int) program.Op {
	op := kernel("gelu", "gelu_backward", geluGrid(n), program.D1(ptx.GELUBlock),
		program.Out("dinp", dinp, int64(n)), program.In("inp", inp, int64(n)), program.In("dout", dout, int64(n)), program.Int("n", n))
	op.FLOPs = int64(n) * GELUBwdFLOPs
	return op
}
