// Package kernels describes gpubench's kernel launches: for each kernel of
// ptx/<layer>.cu, one Go function in kernels/<layer>.go whose arguments
// mirror the kernel's parameters and which returns the launch as a
// program.Op: grid, block, shared memory, its arguments as views of named
// buffers, and the FLOPs and bytes it moves.
//
// It decides everything about a launch but performs none: it imports no
// CUDA binding, so the launches a model makes can be built, printed and
// checked on a machine without a GPU. internal/cuexec runs the ops on one.
//
// The FLOP annotations count the algorithm's floating-point operations, not
// the instructions a kernel happens to issue; see internal/flops for the
// method and each constant below for its count.
package kernels

import (
	"github.com/gpubench/gpubench/internal/program"
)

// Per-element FLOPs of the elementwise kernels (an add, multiply or
// transcendental such as exp, tanh or rsqrt each counts 1; per-row scalars
// such as one rsqrt per LayerNorm row are left out).
const (
	EncoderFwdFLOPs      = 1  // wte[tok] + wpe[t]
	EncoderBwdWTEFLOPs   = 1  // one add into dwte per position and channel
	EncoderBwdWPEFLOPs   = 1  // one add into dwpe per position and channel
	LayerNormFwdFLOPs    = 8  // mean 1, variance 3, normalise and affine 4
	LayerNormBwdFLOPs    = 12 // dnorm, two row means, dinp accumulate
	LayerNormParamsFLOPs = 2  // dweight and dbias partial sums, per element
	GELUFwdFLOPs         = 9  // tanh form
	GELUBwdFLOPs         = 20
	ResidualFwdFLOPs     = 1
	CrossEntropyFwdFLOPs = 4 // per logit: max, subtract, exp, sum
	CrossEntropyBwdFLOPs = 4 // per logit: subtract, exp, scale, one-hot subtract
	RMSNormFwdFLOPs      = 4 // square and add 2, normalise and weight 2
	RMSNormBwdFLOPs      = 8 // norm, dnorm, the row's dnorm·norm sum 2, dinp 3 and its accumulate
	RMSNormParamsFLOPs   = 2 // dweight partial sums, per element
	RoPEFLOPs            = 4 // per rotated element: 2 multiplies, an add, and half of its pair's sin and cos
	SwiGLUFwdFLOPs       = 5 // per output: silu's exp, add and divide, its multiply, the gate's multiply
	SwiGLUBwdFLOPs       = 11
	ArgmaxFLOPs          = 1 // per logit: one comparison
	// The unfused flaw's kernels (unfused.go), per element.
	BiasAddFLOPs   = 1 // the add the fused matmul's epilogue makes
	ElemMulFLOPs   = 1
	ElemAxpbyFLOPs = 3 // two multiplies and an add
	TanhScaleFLOPs = 2 // a multiply and the tanh
)

// kernel is a launch of entry in module with the traffic of its arguments
// counted.
func kernel(module, entry string, grid, block program.Dim3, args ...program.Arg) program.Op {
	op := program.Op{Kind: program.Kernel, Module: module, Name: entry, Grid: grid, Block: block, Args: args, Layer: -1}
	for _, a := range args {
		op.Bytes += a.Bytes()
	}
	return op
}

// ceilDiv is the number of blocks of size b that cover n.
func ceilDiv(n, b int) int { return (n + b - 1) / b }

// Memset zeroes the elements of v on the stream (32- or 16-bit words, as
// its buffer holds).
func Memset(v program.View) program.Op {
	return program.Op{Kind: program.Memset, Name: program.MemsetCall(v.Buf.Elem), Dst: v, Bytes: v.Bytes(), Layer: -1}
}

// optional is the elements a kernel touches through an optional pointer
// argument: n, or none when the caller left it out (a null view).
func optional(v program.View, n int) int64 {
	if v.IsNull() {
		return 0
	}
	return int64(n)
}
