package kernels

import (
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernel of ptx/residual.cu, over f32 tensors (module residual) or
// bf16 ones (module residual_bf16, elem.go).

// Each thread of residual_forward adds one 16-byte vector of elements (4
// floats, 8 bf16s) when aligned.

// ResidualForward writes out[i] = a[i] + b[i] for i < n.
func ResidualForward(out, a, b program.View, n int) program.Op {
	s := storage("residual_forward", out, a, b)
	op := stored(s, "residual", "residual_forward", program.D1(max(ceilDiv(ceilDiv(n, vector(s)), ptx.ResidualBlock), 1)), program.D1(ptx.ResidualBlock),
		program.Out("out", out, int64(n)), program.In("a", a, int64(n)), program.In("b", b, int64(n)), program.Int("n", n))
	op.FLOPs = int64(n) * ResidualFwdFLOPs
	return op
}

// ResidualStridedChunk is the elements each thread of
// residual_forward_strided adds (the launch's grid gives it): 64 floats
// are 256 bytes, so every lane of a warp's access lies in a 32-byte sector
// of its own.
const ResidualStridedChunk = 64

// ResidualForwardStrided is ResidualForward through residual_forward_strided
// (--flaw=uncoalesced): the same out[i] = a[i] + b[i], bit for bit, each
// thread adding a contiguous chunk of ResidualStridedChunk elements, so
// that a warp's accesses are a chunk apart instead of adjacent.
func ResidualForwardStrided(out, a, b program.View, n int) program.Op {
	s := storage("residual_forward_strided", out, a, b)
	op := stored(s, "residual", "residual_forward_strided", program.D1(max(ceilDiv(ceilDiv(n, ResidualStridedChunk), ptx.ResidualBlock), 1)), program.D1(ptx.ResidualBlock),
		program.Out("out", out, int64(n)), program.In("a", a, int64(n)), program.In("b", b, int64(n)), program.Int("n", n))
	op.FLOPs = int64(n) * ResidualFwdFLOPs
	return op
}
