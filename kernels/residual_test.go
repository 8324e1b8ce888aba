//go:build gpu

package kernels

import (
	"fmt"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
)

// One float addition of two stored values, rounded once to the storage
// type: the result must equal the float64 sum (exact for these inputs)
// rounded as the kernel rounds it (roundOf), bit for bit.

func TestResidualForward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range storages {
		// Offsets (in elements) of the views out, a and b into their
		// buffers (not 16-byte aligned unless a multiple of the vector, 4
		// floats or 8 bf16s): all aligned (vector path), and each one
		// unaligned in turn (scalar path); for bf16 also 8-byte aligned
		// (scalar) and aligned again at 8.
		offsets := [][3]int{{0, 0, 0}, {1, 0, 0}, {0, 2, 0}, {0, 0, 3}, {1, 1, 1}}
		if e == program.BF16 {
			offsets = append(offsets, [3]int{4, 4, 4}, [3]int{8, 8, 8})
		}
		for _, n := range []int{1, 3, 4, 5, 7, 8, 9, 37, 1003, 1000003} {
			for _, off := range offsets {
				aD, a := uploadOf(t, e, "a", normal(r, n+off[1], 1))
				bD, b := uploadOf(t, e, "b", normal(r, n+off[2], 1))
				out := bufferOf(t, e, "out", n+off[0])
				forward := func() []float64 {
					run(t, ResidualForward(out.At(int64(off[0])), aD.At(int64(off[1])), bD.At(int64(off[2])), n))
					return downloadOf(t, e, out, n+off[0])
				}
				got := forward()
				want := make([]float64, n)
				ref.ResidualForward(want, a[off[1]:], b[off[2]:], n)
				checkClose(t, "residual_forward "+string(e), got[off[0]:], roundOf(e, want), 0)
				checkPoisoned(t, "residual_forward before out", got[:off[0]])
				sameBits(t, "residual_forward "+string(e), got, forward())
			}
		}
	}
}

// TestResidualForwardInPlace runs out == a.
func TestResidualForwardInPlace(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range storages {
		for _, n := range []int{37, 1003} {
			aD, a := uploadOf(t, e, "a", normal(r, n, 1))
			bD, b := uploadOf(t, e, "b", normal(r, n, 1))
			run(t, ResidualForward(aD, aD, bD, n))
			want := make([]float64, n)
			ref.ResidualForward(want, a, b, n)
			checkClose(t, "residual_forward in place "+string(e), downloadOf(t, e, aD, n), roundOf(e, want), 0)
		}
	}
}

// TestResidualForwardStrided: --flaw=uncoalesced's kernel gives
// residual_forward's result bit for bit, for fresh random inputs into a
// poisoned output (NaN never equals), in both storages, vector-aligned or
// not, and in place.
func TestResidualForwardStrided(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range storages {
		for _, n := range []int{1, 3, 63, 64, 65, 1003, 16385, 1000003} {
			for _, off := range []int{0, 1} {
				aD, a := uploadOf(t, e, "a", normal(r, n+off, 1))
				bD, b := uploadOf(t, e, "b", normal(r, n+off, 1))
				out := bufferOf(t, e, "out", n+off)
				clean := bufferOf(t, e, "clean", n+off)
				run(t, ResidualForwardStrided(out.At(int64(off)), aD.At(int64(off)), bD.At(int64(off)), n))
				run(t, ResidualForward(clean.At(int64(off)), aD.At(int64(off)), bD.At(int64(off)), n))
				got, want := downloadOf(t, e, out, n+off), downloadOf(t, e, clean, n+off)
				ref64 := make([]float64, n)
				ref.ResidualForward(ref64, a[off:], b[off:], n)
				what := fmt.Sprintf("residual_forward_strided %s n=%d off=%d", e, n, off)
				checkClose(t, what, got[off:], roundOf(e, ref64), 0)
				checkPoisoned(t, what+" before out", got[:off])
				sameBits(t, what+" against residual_forward", got, want)
			}
		}
		// In place, out == a, as residual_forward allows.
		n := 4099
		aD, a := uploadOf(t, e, "a", normal(r, n, 1))
		bD, b := uploadOf(t, e, "b", normal(r, n, 1))
		run(t, ResidualForwardStrided(aD, aD, bD, n))
		want := make([]float64, n)
		ref.ResidualForward(want, a, b, n)
		checkClose(t, "residual_forward_strided in place "+string(e), downloadOf(t, e, aD, n), roundOf(e, want), 0)
	}
}
