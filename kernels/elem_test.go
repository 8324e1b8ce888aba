//go:build gpu

package kernels

import (
	"math"
	"testing"

	"github.com/gpubench/gpubench/internal/bf16"
	"github.com/gpubench/gpubench/internal/program"
)

// The harness of the tests that run a layer's kernels for both storage
// types (elem.go): buffers, uploads and downloads of either type, and the
// rounding each type's kernels apply once to their float results.

// storages are the storage types every such test runs.
var storages = []program.Elem{program.F32, program.BF16}

// bufferOf is buffer or bf16Buffer, by e: a poisoned buffer of n elements.
func bufferOf(t testing.TB, e program.Elem, name string, n int) program.View {
	t.Helper()
	if e == program.BF16 {
		return bf16Buffer(t, name, n)
	}
	return buffer(t, name, n)
}

// uploadOf is upload or uploadBF16, by e: it returns the values as the GPU
// sees them, rounded to e.
func uploadOf(t testing.TB, e program.Elem, name string, v []float64) (program.View, []float64) {
	t.Helper()
	if e == program.BF16 {
		return uploadBF16(t, name, v)
	}
	return upload(t, name, v)
}

// downloadOf is download or downloadBF16, by e.
func downloadOf(t testing.TB, e program.Elem, v program.View, n int) []float64 {
	t.Helper()
	if e == program.BF16 {
		return downloadBF16(t, v, n)
	}
	return download(t, v, n)
}

// roundOf returns v as a kernel that stores e leaves a float result: rounded
// to float32, then (bf16) to bfloat16, ties to even both times, exactly as
// the GPU's float arithmetic and cvt.rn.bf16.f32 do.
func roundOf(e program.Elem, v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		if e == program.BF16 {
			out[i] = bf16.Round(x)
		} else {
			out[i] = float64(float32(x))
		}
	}
	return out
}

// checkEachBF16 fails unless every element of got is within one bf16
// rounding of want plus floor: the rounding is at most half a bf16 ulp,
// 2^-8 of the value at worst; bf16.Epsilon = 2^-7 leaves room for the fp32
// arithmetic before it. It finds a wrong element that a tensor's norm
// would dilute (a tail element, one row).
func checkEachBF16(t *testing.T, what string, got, want []float64, floor float64) {
	t.Helper()
	checkEach(t, what, got, want, bf16.Epsilon, floor)
}

// checkEach fails unless every element is within rel of its reference
// value plus an absolute floor: for outputs whose error does not scale
// with the value (a difference that cancels, such as p − 1).
func checkEach(t *testing.T, what string, got, want []float64, rel, floor float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); !(d <= rel*math.Abs(want[i])+floor) {
			t.Fatalf("%s: element %d is %g, want %g (off by %.3g, allowed %.3g)", what, i, got[i], want[i], d, rel*math.Abs(want[i])+floor)
		}
	}
}

// maxAbs is the largest |v[i]|.
func maxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, math.Abs(x))
	}
	return m
}

// checkPoisoned fails unless every element of v is still the NaN poison:
// memory a kernel must not write.
func checkPoisoned(t *testing.T, what string, v []float64) {
	t.Helper()
	for i, x := range v {
		if !math.IsNaN(x) {
			t.Fatalf("%s: element %d was written (%g); it must stay poisoned", what, i, x)
		}
	}
}

// tolOf is the per-tensor relative tolerance of a kernel whose output of
// type e is rounded once after fp32 arithmetic: f32Tol for f32 (the fp32
// tests' own), bf16Tol for bf16.
func tolOf(e program.Elem, f32Tol float64) float64 {
	if e == program.BF16 {
		return bf16Tol
	}
	return f32Tol
}
