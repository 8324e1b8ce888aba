package bf16

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestFromFloat32(t *testing.T) {
	cases := []struct {
		f    float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3f80},
		{-2, 0xc000},
		{1 + 1.0/256, 0x3f80},                      // a tie: to even (down)
		{1 + 3.0/256, 0x3f82},                      // a tie: to even (up)
		{1 + 1.0/256 + 1.0/65536, 0x3f81},          // above the tie: up
		{math.MaxFloat32, 0x7f80},                  // rounds to +Inf
		{float32(math.Inf(-1)), 0xff80},            // -Inf stays
		{math.Float32frombits(1), 0x0000},          // the smallest subnormal rounds to 0
		{3.0e-39, 0x0021},                          // a subnormal keeps its top bits (3e-39 ≈ 0x0020a9a8)
		{float32(math.NaN()), 0x7fc0},              // quiet NaN
		{math.Float32frombits(0x7f800001), 0x7fc0}, // a signalling NaN whose payload is cut stays NaN
	}
	for _, c := range cases {
		if got := FromFloat32(c.f); got != c.want {
			t.Errorf("FromFloat32(%g = %#08x) = %#04x, want %#04x", c.f, math.Float32bits(c.f), got, c.want)
		}
	}
}

// TestRoundTrip: every bfloat16 that is not NaN converts to float32 and back
// unchanged, and every NaN stays NaN.
func TestRoundTrip(t *testing.T) {
	for h := 0; h <= 0xffff; h++ {
		f := ToFloat32(uint16(h))
		got := FromFloat32(f)
		if f != f {
			if g := ToFloat32(got); g == g {
				t.Fatalf("NaN %#04x came back as %g", h, g)
			}
			continue
		}
		if got != uint16(h) {
			t.Fatalf("%#04x → %g → %#04x", h, f, got)
		}
	}
}

// TestNearest: the rounding is to the nearest bfloat16, within half a unit
// in the last place, for random normal floats.
func TestNearest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		f := float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(20)-10)))
		g := ToFloat32(FromFloat32(f))
		if rel := math.Abs(float64(g-f)) / math.Abs(float64(f)); rel > Epsilon/2 {
			t.Fatalf("%g rounded to %g: relative error %g > 2^-8", f, g, rel)
		}
	}
}
