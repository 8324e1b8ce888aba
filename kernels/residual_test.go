//go:build gpu

package kernels

import (
	"math"
	"testing"

	"github.com/gpubench/gpubench/model/ref"
)

func TestResidualForward(t *testing.T) {
	env(t)
	r := rng(t)
	// Offsets (in floats) of the views out, a and b into their buffers
	// (not 16-byte aligned unless a multiple of 4): all aligned (float4
	// path), and each one unaligned in turn (scalar path).
	offsets := [][3]int{{0, 0, 0}, {1, 0, 0}, {0, 2, 0}, {0, 0, 3}, {1, 1, 1}}
	for _, n := range []int{1, 3, 4, 5, 37, 1003, 1000003} {
		for _, off := range offsets {
			aD, a := upload(t, "a", normal(r, n+off[1], 1))
			bD, b := upload(t, "b", normal(r, n+off[2], 1))
			out := buffer(t, "out", n+off[0])
			run(t, ResidualForward(out.At(int64(off[0])), aD.At(int64(off[1])), bD.At(int64(off[2])), n))
			want := make([]float64, n)
			ref.ResidualForward(want, a[off[1]:], b[off[2]:], n)
			// One correctly rounded float32 addition: exact against the
			// float64 sum rounded to float32.
			for i := range want {
				want[i] = float64(float32(want[i]))
			}
			got := download(t, out, n+off[0])
			checkClose(t, "residual_forward", got[off[0]:], want, 0)
			for i := 0; i < off[0]; i++ {
				if !math.IsNaN(got[i]) {
					t.Fatalf("residual_forward wrote before out: element %d = %g", i, got[i])
				}
			}
		}
	}
}

// TestResidualForwardInPlace runs out == a.
func TestResidualForwardInPlace(t *testing.T) {
	env(t)
	r := rng(t)
	for _, n := range []int{37, 1003} {
		aD, a := upload(t, "a", normal(r, n, 1))
		bD, b := upload(t, "b", normal(r, n, 1))
		run(t, ResidualForward(aD, aD, bD, n))
		want := make([]float64, n)
		ref.ResidualForward(want, a, b, n)
		for i := range want {
			want[i] = float64(float32(want[i]))
		}
		checkClose(t, "residual_forward in place", download(t, aD, n), want, 0)
	}
}
