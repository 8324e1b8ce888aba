//go:build gpu

package kernels

import (
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/gpu"
	"github.com/gpubench/gpubench/internal/program"
	"gorgonia.org/cu"
)

// These tests need a GPU. They are built with -tags gpu and run on the
// device machine; they never skip: no device is a failure.
//
// The functions of this package only describe launches (program.Op); the
// tests run them with the CUDA executor, one op at a time, each validated
// (program.Validate) and, with SyncEachLaunch, synchronised so that a fault
// names its kernel.

var (
	testDev  *gpu.Device
	testExec *cuexec.Executor
)

func TestMain(m *testing.M) {
	dev, err := gpu.Open(0)
	if err != nil {
		println("kernels GPU tests: open device:", err.Error())
		os.Exit(1)
	}
	x, err := cuexec.New(dev)
	if err != nil {
		println("kernels GPU tests: load kernels:", err.Error())
		os.Exit(1)
	}
	// Every launch is checked right away, so a fault names its kernel.
	x.SyncEachLaunch = true
	testDev, testExec = dev, x
	code := m.Run()
	x.Close()
	dev.Close()
	os.Exit(code)
}

// env makes the device's context current on the test's goroutine, which it
// locks to its thread for the test's duration, and returns the executor.
func env(t testing.TB) *cuexec.Executor {
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
	return testExec
}

// sms is the device's multiprocessor count, for the launchers' tile and
// split choices.
func sms() int { return testDev.Info.SMs }

// syncAll waits for all of the context's work. The harness poisons and
// uploads with the synchronous driver calls (cuMemsetD32, cuMemcpyHtoD from
// pageable memory), which run on the legacy stream and may return before
// the device has finished them, while the kernels run on the executor's
// non-blocking stream, which does not wait for the legacy stream. A context
// synchronisation before each launch orders the two.
func syncAll(t testing.TB) {
	t.Helper()
	if err := cu.Synchronize(); err != nil {
		t.Fatalf("synchronize context: %v", err)
	}
}

// launch runs ops in order on the executor's stream, after the harness's
// own copies and memsets, and returns the first error (a Validate error
// before any launch, or a *cuexec.LaunchError). Each op is copied first:
// the executor caches what it prepared by the op's address.
func launch(t testing.TB, ops ...program.Op) error {
	t.Helper()
	syncAll(t)
	for i := range ops {
		op := ops[i]
		if err := testExec.Do(&op); err != nil {
			return err
		}
	}
	return nil
}

// run is launch that fails the test on an error.
func run(t testing.TB, ops ...program.Op) {
	t.Helper()
	if err := launch(t, ops...); err != nil {
		t.Fatal(err)
	}
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

// alloc allocates a new buffer of n elements in the executor, freed at the
// end of the test.
func alloc(t testing.TB, name string, e program.Elem, n int) *program.Buffer {
	t.Helper()
	b := &program.Buffer{Name: name, Layer: -1, Elem: e, Elems: int64(n), Group: program.Scratch}
	if err := testExec.Alloc(b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testExec.Free(b) })
	return b
}

// buffer is a device float32 buffer of n elements poisoned with NaN at
// allocation; it returns the view of all of it.
func buffer(t testing.TB, name string, n int) program.View {
	t.Helper()
	v := alloc(t, name, program.F32, n).All()
	if err := gpu.Poison(testExec.Ptr(v), n); err != nil {
		t.Fatal(err)
	}
	return v
}

// intBuffer is a device int32 buffer of n elements, poisoned with the NaN
// bit pattern (a large positive int32) so that a value never written shows.
func intBuffer(t testing.TB, name string, n int) program.View {
	t.Helper()
	v := alloc(t, name, program.I32, n).All()
	if err := gpu.Poison(testExec.Ptr(v), n); err != nil {
		t.Fatal(err)
	}
	return v
}

// upload allocates a buffer holding the float64 values rounded to float32,
// and returns the values as the GPU sees them (in float64) for the reference.
func upload(t testing.TB, name string, v []float64) (program.View, []float64) {
	t.Helper()
	f := make([]float32, len(v))
	seen := make([]float64, len(v))
	for i, x := range v {
		f[i] = float32(x)
		seen[i] = float64(f[i])
	}
	p := buffer(t, name, len(v))
	if err := cuexec.Upload(testExec, p, f); err != nil {
		t.Fatal(err)
	}
	return p, seen
}

// uploadInt allocates and fills an int32 buffer.
func uploadInt(t testing.TB, name string, v []int32) program.View {
	t.Helper()
	p := alloc(t, name, program.I32, len(v)).All()
	if err := cuexec.Upload(testExec, p, v); err != nil {
		t.Fatal(err)
	}
	return p
}

// download synchronises the stream and copies the first n floats of v back
// as float64.
func download(t testing.TB, v program.View, n int) []float64 {
	t.Helper()
	f := make([]float32, n)
	if err := cuexec.Download(testExec, f, v); err != nil {
		t.Fatalf("download %s: %v", v, err)
	}
	out := make([]float64, n)
	for i, x := range f {
		out[i] = float64(x)
	}
	return out
}

// downloadInt synchronises the stream and copies the int32 view v back.
func downloadInt(t testing.TB, v program.View) []int32 {
	t.Helper()
	out := make([]int32, v.Elems)
	if err := cuexec.Download(testExec, out, v); err != nil {
		t.Fatalf("download %s: %v", v, err)
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
	env(t)
	r := rng(t)
	for _, n := range []int{1, 31, 257, 1000003} {
		p := buffer(t, "dst", n)
		v := float32(r.NormFloat64())
		run(t, Fill(p, n, v))
		got := download(t, p, n)
		want := make([]float64, n)
		for i := range want {
			want[i] = float64(v)
		}
		checkClose(t, "fill", got, want, 0)
	}
}
