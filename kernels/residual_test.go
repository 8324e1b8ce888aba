//go:build gpu

package kernels

import (
	"math"
	"testing"

	"github.com/gpubench/gpubench/model/ref"
	"gorgonia.org/cu"
)

// floatOffset is the byte offset of n floats, to hand a kernel a pointer
// into the middle of a buffer (not 16-byte aligned unless n%4 == 0).
func floatOffset(n int) cu.DevicePtr { return cu.DevicePtr(4 * n) }

func TestResidualForward(t *testing.T) {
	dev, k := env(t)
	r := rng(t)
	// Offsets (in floats) of out, a and b: all aligned (float4 path), and
	// each one unaligned in turn (scalar path).
	offsets := [][3]int{{0, 0, 0}, {1, 0, 0}, {0, 2, 0}, {0, 0, 3}, {1, 1, 1}}
	for _, n := range []int{1, 3, 4, 5, 37, 1003, 1000003} {
		for _, off := range offsets {
			aD, a := upload(t, normal(r, n+off[1], 1))
			bD, b := upload(t, normal(r, n+off[2], 1))
			out := buffer(t, n+off[0])
			syncAll(t)
			err := k.Residual.Forward(dev.Stream, out+floatOffset(off[0]), aD+floatOffset(off[1]), bD+floatOffset(off[2]), n)
			if err != nil {
				t.Fatal(err)
			}
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
	dev, k := env(t)
	r := rng(t)
	for _, n := range []int{37, 1003} {
		aD, a := upload(t, normal(r, n, 1))
		bD, b := upload(t, normal(r, n, 1))
		syncAll(t)
		if err := k.Residual.Forward(dev.Stream, aD, aD, bD, n); err != nil {
			t.Fatal(err)
		}
		want := make([]float64, n)
		ref.ResidualForward(want, a, b, n)
		for i := range want {
			want[i] = float64(float32(want[i]))
		}
		checkClose(t, "residual_forward in place", download(t, aD, n), want, 0)
	}
}
