package kernels

import (
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/unfused.cu, over f32 tensors (module unfused) or bf16
// ones (module unfused_bf16, elem.go): the tiny elementwise launches of the
// planted flaw `unfused`, which the clean step fuses into the matmul's
// epilogue (the bias) and into gelu_forward (the GELU). Nothing else
// launches them.

// The tanh approximation's constants as GELUChain computes them: the same
// numbers as gelu.cu's GELU_SCALE and GELU_COEF.
const (
	geluScale = 0.7978845608028654 // sqrt(2/π)
	geluCoef  = 0.044715
)

// unfusedGrid covers n elements of type s at one 16-byte vector per thread,
// as the clean elementwise kernels do (their scalar tails grid-stride).
func unfusedGrid(s program.Elem, n int) program.Dim3 {
	return program.D1(max(ceilDiv(ceilDiv(n, vector(s)), ptx.UnfusedBlock), 1))
}

// BiasAdd adds bias(oc) to every row of out(n, oc), whose rows are ld
// elements apart, in place: the bias a matmul launched without its fused
// bias leaves out. One element a thread.
func BiasAdd(out, bias program.View, n, oc, ld int) program.Op {
	s := storage("bias_add", out, bias)
	total := n * oc
	touched := int64(0) // the span of out it reaches: the last row ends at its oc-th column
	if n > 0 {
		touched = int64((n-1)*ld + oc)
	}
	op := stored(s, "unfused", "bias_add", program.D1(max(ceilDiv(total, ptx.UnfusedBlock), 1)), program.D1(ptx.UnfusedBlock),
		program.InOut("out", out, touched), program.In("bias", bias, int64(oc)),
		program.Int("n", n), program.Int("oc", oc), program.Int("ld", ld))
	// The bytes it moves: each of the n·oc elements of out read and
	// written once, and the bias (the touched span of out also holds the
	// padding between rows when ld > oc, which it never reads).
	op.Bytes = 2*int64(total)*s.Size() + int64(oc)*s.Size()
	op.FLOPs = int64(total) * BiasAddFLOPs
	return op
}

// ElemMul writes out[i] = a[i]·b[i] for i < n; out may equal a or b.
func ElemMul(out, a, b program.View, n int) program.Op {
	s := storage("elem_mul", out, a, b)
	op := stored(s, "unfused", "elem_mul", unfusedGrid(s, n), program.D1(ptx.UnfusedBlock),
		program.Out("out", out, int64(n)), program.In("a", a, int64(n)), program.In("b", b, int64(n)), program.Int("n", n))
	op.FLOPs = int64(n) * ElemMulFLOPs
	return op
}

// ElemAxpby writes out[i] = alpha·a[i] + beta·b[i] for i < n; out may equal
// a or b.
func ElemAxpby(out, a, b program.View, alpha, beta float32, n int) program.Op {
	s := storage("elem_axpby", out, a, b)
	op := stored(s, "unfused", "elem_axpby", unfusedGrid(s, n), program.D1(ptx.UnfusedBlock),
		program.Out("out", out, int64(n)), program.In("a", a, int64(n)), program.In("b", b, int64(n)),
		program.Float("alpha", alpha), program.Float("beta", beta), program.Int("n", n))
	op.FLOPs = int64(n) * ElemAxpbyFLOPs
	return op
}

// ElemTanhScale writes out[i] = tanh(scale·inp[i]) for i < n; out may equal
// inp.
func ElemTanhScale(out, inp program.View, scale float32, n int) program.Op {
	s := storage("elem_tanh_scale", out, inp)
	op := stored(s, "unfused", "elem_tanh_scale", unfusedGrid(s, n), program.D1(ptx.UnfusedBlock),
		program.Out("out", out, int64(n)), program.In("inp", inp, int64(n)), program.Float("scale", scale), program.Int("n", n))
	op.FLOPs = int64(n) * TanhScaleFLOPs
	return op
}

// GELUChain is GELUForward written op by op, as a program that spells out
// the tanh approximation does, one kernel per operation:
//
//	u = x·x;  u = u·x;  u = x + 0.044715·u;  u = tanh(√(2/π)·u);  u = x·u
//	out = 0.5·x + 0.5·u
//
// tmp holds u (n elements; it may not overlap inp or out). out is
// gelu(inp) up to the float rounding of each step (each kernel rounds its
// output to the storage type); out may not equal inp, which every step
// reads.
func GELUChain(out, tmp, inp program.View, n int) []program.Op {
	return []program.Op{
		ElemMul(tmp, inp, inp, n),
		ElemMul(tmp, tmp, inp, n),
		ElemAxpby(tmp, inp, tmp, 1, geluCoef, n),
		ElemTanhScale(tmp, tmp, geluScale, n),
		ElemMul(tmp, inp, tmp, n),
		ElemAxpby(out, inp, tmp, 0.5, 0.5, n),
	}
}
