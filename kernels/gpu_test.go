//go:build gpu

package kernels

import (
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/gpubench/gpubench/internal/gpu"
	"gorgonia.org/cu"
)

// These tests need a GPU. They are built with -tags gpu and run on the
// device machine; they never skip: no device is a failure.

var (
	testDev     *gpu.Device
	testKernels *Kernels
)

func TestMain(m *testing.M) {
	dev, err := gpu.Open(0)
	if err != nil {
		println("kernels GPU tests: open device:", err.Error())
		os.Exit(1)
	}
	k, err := Load()
	if err != nil {
		println("kernels GPU tests: load kernels:", err.Error())
		os.Exit(1)
	}
	// Every launch is checked right away, so a fault names its kernel.
	k.SyncEachLaunch = true
	testDev, testKernels = dev, k
	code := m.Run()
	k.Unload()
	dev.Close()
	os.Exit(code)
}

// env makes the device's context current on the test's goroutine, which it
// locks to its thread for the test's duration.
func env(t *testing.T) (*gpu.Device, *Kernels) {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	ctx, err := testDev.Context()
	if err != nil {
		t.Fatal(err)
	}
	if err := cu.SetCurrentContext(ctx); err != nil {
		t.Fatalf("set context: %v", err)
	}
	return testDev, testKernels
}

// rng returns a generator with a fresh seed, logged so a failure can be
// replayed with GPUBENCH_TEST_SEED.
func rng(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("GPUBENCH_TEST_SEED"); s != "" {
		var err error
		if seed, err = parseUint(s); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
}

func parseUint(s string) (uint64, error) {
	var v uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, os.ErrInvalid
		}
		v = v*10 + uint64(c-'0')
	}
	return v, nil
}

// buffer is a device float32 buffer poisoned with NaN at allocation.
func buffer(t *testing.T, n int) cu.DevicePtr {
	t.Helper()
	p, err := testDev.AllocF32(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testDev.Free(p) })
	if err := gpu.Poison(p, n); err != nil {
		t.Fatal(err)
	}
	return p
}

// upload allocates a buffer holding the float64 values rounded to float32,
// and returns the values as the GPU sees them (in float64) for the reference.
func upload(t *testing.T, v []float64) (cu.DevicePtr, []float64) {
	t.Helper()
	f := make([]float32, len(v))
	seen := make([]float64, len(v))
	for i, x := range v {
		f[i] = float32(x)
		seen[i] = float64(f[i])
	}
	p := buffer(t, len(v))
	if err := gpu.Upload(p, f); err != nil {
		t.Fatal(err)
	}
	return p, seen
}

// uploadInt allocates and fills an int32 buffer.
func uploadInt(t *testing.T, v []int32) cu.DevicePtr {
	t.Helper()
	p, err := testDev.Alloc(int64(len(v)) * 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testDev.Free(p) })
	if err := gpu.Upload(p, v); err != nil {
		t.Fatal(err)
	}
	return p
}

// download synchronises and copies n floats back as float64.
func download(t *testing.T, p cu.DevicePtr, n int) []float64 {
	t.Helper()
	if err := testDev.Synchronize(); err != nil {
		t.Fatalf("synchronize: %v", err)
	}
	f := make([]float32, n)
	if err := gpu.Download(f, p); err != nil {
		t.Fatal(err)
	}
	out := make([]float64, n)
	for i, x := range f {
		out[i] = float64(x)
	}
	return out
}

// normal returns n values drawn from N(0, std²).
func normal(r *rand.Rand, n int, std float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64() * std
	}
	return v
}

// relErr is ‖got−want‖/‖want‖. Any NaN or Inf in got makes it +Inf, so an
// unwritten (poisoned) element always fails.
func relErr(got, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range got {
		if math.IsNaN(got[i]) || math.IsInf(got[i], 0) {
			return math.Inf(1)
		}
		d := got[i] - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// checkClose fails the test when relErr(got, want) exceeds tol.
func checkClose(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	e := relErr(got, want)
	if !(e <= tol) {
		for i := range got {
			if math.IsNaN(got[i]) || math.Abs(got[i]-want[i]) > tol*(1+math.Abs(want[i]))*10 {
				t.Errorf("%s: first bad element %d: got %g, want %g", what, i, got[i], want[i])
				break
			}
		}
		t.Fatalf("%s: relative error %.3g, allowed %.3g", what, e, tol)
	}
	t.Logf("%s: relative error %.3g", what, e)
}

// sameBits fails the test unless two downloads of a kernel's output are
// bitwise identical: the determinism check of every reducing kernel. (They
// come from float32, so comparing the float64 bits compares the float32
// bits.)
func sameBits(t *testing.T, what string, a, b []float64) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: lengths %d and %d", what, len(a), len(b))
	}
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			t.Fatalf("%s: not deterministic: element %d is %g, then %g", what, i, a[i], b[i])
		}
	}
}

func TestFill(t *testing.T) {
	dev, k := env(t)
	r := rng(t)
	for _, n := range []int{1, 31, 257, 1000003} {
		p := buffer(t, n)
		v := float32(r.NormFloat64())
		if err := k.Common.Fill(dev.Stream, p, n, v); err != nil {
			t.Fatal(err)
		}
		got := download(t, p, n)
		want := make([]float64, n)
		for i := range want {
			want[i] = float64(v)
		}
		checkClose(t, "fill", got, want, 0)
	}
}
