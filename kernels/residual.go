package kernels

import (
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernel of ptx/residual.cu.

// Each thread of residual_forward adds four elements (float4s when
// aligned).

// ResidualForward writes out[i] = a[i] + b[i] for i < n.
func ResidualForward(out, a, b program.View, n int) program.Op {
	op := kernel("residual", "residual_forward", program.D1(max(ceilDiv(ceilDiv(n, 4), ptx.ResidualBlock), 1)), program.D1(ptx.ResidualBlock),
		program.Out("out", out, int64(n)), program.In("a", a, int64(n)), program.In("b", b, int64(n)), program.Int("n", n))
	op.FLOPs = int64(n) * ResidualFwdFLOPs
	return op
}
