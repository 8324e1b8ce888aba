//go:build gpu

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gpubench/gpubench/model/ref"
)

// geluSizes are odd element counts: a float4 tail of 1, 2 or 3, a single
// element, and more elements than one grid-stride pass of a small grid.
var geluSizes = []int{1, 2, 3, 5, 37, 1003, 4 * 111 * 100, 1<<20 + 3}

// geluInputs draws n inputs with std 3, which reaches far into both tails,
// clamped below at -9: past about -9.3, gelu(x) and gelu'(x) fall under
// float32's smallest normal number (1.2e-38), where denormals keep only a
// few significant bits and no float32 kernel can meet a relative
// tolerance. The clamp keeps the test about the kernel, not the format.
func geluInputs(r *rand.Rand, n int) []float64 {
	x := normal(r, n, 3)
	for i := range x {
		x[i] = math.Max(x[i], -9)
	}
	return x
}

func TestGeluForward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, n := range geluSizes {
		// offset 0 takes the float4 path; offset 1 float (4 bytes) makes
		// both views unaligned and takes the scalar path.
		for _, off := range []int64{0, 1} {
			x := geluInputs(r, n+int(off))
			inpD, inp := upload(t, "inp", x)
			out := buffer(t, "out", n+int(off))
			run(t, GELUForward(out.At(off), inpD.At(off), n))
			want := make([]float64, n)
			ref.GeluForward(want, inp[off:], n)
			// Elementwise, a few ulps: 1e-5 leaves a wide margin.
			got := download(t, out, n+int(off))
			checkClose(t, "gelu_forward", got[off:], want, 1e-5)
			if off == 1 && !math.IsNaN(got[0]) {
				t.Fatalf("gelu_forward wrote before out: %g", got[0])
			}
		}
	}
}

// TestGeluForwardInPlace runs out == inp.
func TestGeluForwardInPlace(t *testing.T) {
	env(t)
	r := rng(t)
	const n = 1003
	p, inp := upload(t, "act", geluInputs(r, n))
	run(t, GELUForward(p, p, n))
	want := make([]float64, n)
	ref.GeluForward(want, inp, n)
	checkClose(t, "gelu_forward in place", download(t, p, n), want, 1e-5)
}

func TestGeluBackward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, n := range geluSizes {
		for _, off := range []int64{0, 1} {
			inpD, inp := upload(t, "inp", geluInputs(r, n+int(off)))
			doutD, dout := upload(t, "dout", normal(r, n+int(off), 1))
			dinp := buffer(t, "dinp", n+int(off))
			run(t, GELUBackward(dinp.At(off), inpD.At(off), doutD.At(off), n))
			want := make([]float64, n)
			ref.GeluBackward(want, inp[off:], dout[off:], n)
			got := download(t, dinp, n+int(off))
			checkClose(t, "gelu_backward", got[off:], want, 1e-5)
			if off == 1 && !math.IsNaN(got[0]) {
				t.Fatalf("gelu_backward wrote before dinp: %g", got[0])
			}
		}
	}
}

// TestGeluBackwardInPlace runs dinp == dout, as a model may to save memory.
func TestGeluBackwardInPlace(t *testing.T) {
	env(t)
	r := rng(t)
	for _, n := range []int{37, 4*111*100 + 1} {
		inpD, inp := upload(t, "inp", geluInputs(r, n))
		doutD, dout := upload(t, "dout", normal(r, n, 1))
		run(t, GELUBackward(doutD, inpD, doutD, n))
		want := make([]float64, n)
		ref.GeluBackward(want, inp, dout, n)
		checkClose(t, "gelu_backward in place", download(t, doutD, n), want, 1e-5)
	}
}
