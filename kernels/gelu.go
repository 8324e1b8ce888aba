package kernels

import (
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/gelu.cu: the tanh-approximation GELU, over f32
// tensors (module gelu) or bf16 ones (module gelu_bf16, elem.go).

// geluGrid covers n elements of type s at one 16-byte vector per thread
// (the kernels move vectors when aligned, and grid-stride otherwise).
func geluGrid(s program.Elem, n int) program.Dim3 {
	return program.D1(max(ceilDiv(ceilDiv(n, vector(s)), ptx.GELUBlock), 1))
}

// GELUForward writes out[i] = gelu(inp[i]) for i < n. out may equal inp.
func GELUForward(out, inp program.View, n int) program.Op {
	s := storage("gelu_forward", out, inp)
	op := stored(s, "gelu", "gelu_forward", geluGrid(s, n), program.D1(ptx.GELUBlock),
		program.Out("out", out, int64(n)), program.In("inp", inp, int64(n)), program.Int("n", n))
	op.FLOPs = int64(n) * GELUFwdFLOPs
	return op
}

// GELUBackward OVERWRITES dinp[i] = gelu'(inp[i])·dout[i] for i < n. dinp
// may equal dout.
func GELUBackward(dinp, inp, dout program.View, n int) program.Op {
	s := storage("gelu_backward", dinp, inp, dout)
	op := stored(s, "gelu", "gelu_backward", geluGrid(s, n), program.D1(ptx.GELUBlock),
		program.Out("dinp", dinp, int64(n)), program.In("inp", inp, int64(n)), program.In("dout", dout, int64(n)), program.Int("n", n))
	op.FLOPs = int64(n) * GELUBwdFLOPs
	return op
}
