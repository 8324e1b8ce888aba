//go:build gpu

package kernels

import (
	"testing"

	"github.com/gpubench/gpubench/internal/bf16"
	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/gpu"
	"github.com/gpubench/gpubench/internal/program"
)

// The bf16 kernels' harness: buffers of bfloat16 held as uint16 bits,
// poisoned with the bf16 NaN, and the float64 values the GPU sees.

// bf16Buffer is a device bf16 buffer of n elements poisoned with NaN.
func bf16Buffer(t testing.TB, name string, n int) program.View {
	t.Helper()
	v := alloc(t, name, program.BF16, n).All()
	if err := gpu.PoisonBF16(testExec.Ptr(v), n); err != nil {
		t.Fatal(err)
	}
	return v
}

// uploadBF16 allocates a bf16 buffer holding v rounded to bfloat16, and
// returns the rounded values (in float64) for the reference, which so runs
// on exactly the GPU's inputs.
func uploadBF16(t testing.TB, name string, v []float64) (program.View, []float64) {
	t.Helper()
	h := make([]uint16, len(v))
	seen := make([]float64, len(v))
	for i, x := range v {
		h[i] = bf16.FromFloat32(float32(x))
		seen[i] = float64(bf16.ToFloat32(h[i]))
	}
	p := bf16Buffer(t, name, len(v))
	if err := cuexec.Upload(testExec, p, h); err != nil {
		t.Fatal(err)
	}
	return p, seen
}

// downloadBF16 synchronises the stream and copies the first n bf16
// elements of v back as float64 (a poisoned element comes back NaN).
func downloadBF16(t testing.TB, v program.View, n int) []float64 {
	t.Helper()
	h := make([]uint16, n)
	if err := cuexec.Download(testExec, h, v); err != nil {
		t.Fatalf("download %s: %v", v, err)
	}
	out := make([]float64, n)
	for i, x := range h {
		out[i] = float64(bf16.ToFloat32(x))
	}
	return out
}

// bf16Tol is the relative error (‖got−want‖/‖want‖) allowed for a bf16
// kernel whose output is rounded to bf16 once, after fp32 arithmetic on
// bf16 inputs: the output rounding alone is up to 2^-9 relative per
// element, about 2^-9/√3 ≈ 1.1e-3 in the norm; 4e-3 leaves room for the
// fp32 accumulation and catches any wrong or missing term.
const bf16Tol = 4e-3
