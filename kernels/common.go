package kernels

import "gorgonia.org/cu"

// Common holds the kernels of ptx/common.cu.
type Common struct {
	fill *kernel
}

func (c *Common) load(l *loader) {
	c.fill = l.kernel("common", "fill_f32")
}

// Fill sets n floats at dst to value.
func (c *Common) Fill(s cu.Stream, dst cu.DevicePtr, n int, value float32) error {
	const block = 256
	blocks := min(ceilDiv(n, block), 65535)
	return c.fill.launch(s, grid1(max(blocks, 1)), grid1(block), 0, ptr(dst), i32(n), f32(value))
}
