package kernels

import (
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// Fill (ptx/common.cu, fill_f32) writes value into the n floats of dst.
func Fill(dst program.View, n int, value float32) program.Op {
	blocks := max(min(ceilDiv(n, ptx.FillBlock), ptx.FillMaxBlocks), 1)
	return kernel("common", "fill_f32", program.D1(blocks), program.D1(ptx.FillBlock),
		program.Out("dst", dst, int64(n)), program.Int("n", n), program.Float("value", value))
}
