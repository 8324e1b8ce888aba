package flops

import (
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
)

func TestPeak(t *testing.T) {
	cases := []struct {
		dt           config.DType
		name         string
		sms, cc, clk int
		want         float64
		source       string
	}{
		{config.FP32, "NVIDIA H200", 132, 90, 1980, 66.9, "H200 SXM"},
		{config.BF16, "NVIDIA H200", 132, 90, 1980, 989.4, "dense bf16"},
		{config.TF32, "NVIDIA H200", 132, 90, 1980, 494.7, "dense TF32"},
		{config.BF16, "NVIDIA A100-SXM4-80GB", 108, 80, 1410, 312, "A100"},
		// Not in the table: the formula, 132 × 4096 × 1830 MHz.
		{config.BF16, "NVIDIA H800", 132, 90, 1830, 132 * 4096 * 1830e6 / 1e12, "formula"},
		{config.TF32, "NVIDIA H800", 132, 90, 1830, 132 * 2048 * 1830e6 / 1e12, "formula"},
		{config.BF16, "Some GPU", 48, 86, 1700, 0, "unknown"},
	}
	for _, c := range cases {
		got, src := Peak(c.dt, c.name, c.sms, c.cc/10, c.cc%10, c.clk)
		if diff := got - c.want; diff > 1e-9 || diff < -1e-9 || !strings.Contains(src, c.source) {
			t.Errorf("Peak(%s, %q) = %v (%s), want %v (%s)", c.dt, c.name, got, src, c.want, c.source)
		}
	}
}
