//go:build gpu

package kernels

import (
	"fmt"
	"math"
	"runtime"
	"testing"

	"github.com/gpubench/gpubench/model/ref"
	"gorgonia.org/cu"
)

// matmulShapes are the (N, C, OC) of the matmul tests: a single element,
// sizes that are multiples of 4 but not of any tile (float4 path with
// edges), sizes that are not multiples of 4 (scalar path: C=100 makes the
// forward's operands vector-loadable but OC=1003 leaves the backward's
// dout rows unaligned), and a GPT-2 qkv-like product with K = 2304 in the
// input gradient.
var matmulShapes = [][3]int{
	{1, 1, 1},
	{37, 96, 288},
	{111, 100, 1003},
	{256, 128, 384},
	{64, 768, 2304},
}

// matmulTol bounds the relative error of an fp32 matmul against the float64
// reference. The inputs are the same float32 values on both sides, so the
// error is the kernel's fp32 rounding over a sum of K terms, about
// 2^-24·sqrt(K) ≈ 3e-6 relative at K = 2304; 1e-5 leaves margin and still
// catches any wrong or missing term (those give errors of order 1/K or more).
const matmulTol = 1e-5

// matmulSameBits fails the test unless got and want are bitwise equal (they come
// from float32, so comparing the float64 bits compares the float32 bits).
func matmulSameBits(t *testing.T, what string, got, want []float64) {
	t.Helper()
	for i := range want {
		if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
			t.Fatalf("%s: element %d differs: %g (%#x) vs %g (%#x)", what, i,
				got[i], math.Float32bits(float32(got[i])), want[i], math.Float32bits(float32(want[i])))
		}
	}
}

// TestMatmulForward checks matmul_forward against the reference with every
// tile shape, with and without bias, and that all tiles give the same bits.
func TestMatmulForward(t *testing.T) {
	dev, k := env(t)
	r := rng(t)
	for _, sh := range matmulShapes {
		n, c, oc := sh[0], sh[1], sh[2]
		for _, withBias := range []bool{true, false} {
			t.Run(fmt.Sprintf("N%d_C%d_OC%d_bias%v", n, c, oc, withBias), func(t *testing.T) {
				env(t) // a subtest runs on its own goroutine
				inp, inpV := upload(t, normal(r, n*c, 1))
				w, wV := upload(t, normal(r, oc*c, 1))
				var bias cu.DevicePtr
				var biasV []float64
				if withBias {
					bias, biasV = upload(t, normal(r, oc, 1))
				}
				want := make([]float64, n*oc)
				ref.MatmulForward(want, inpV, wV, biasV, n, c, oc)
				var first []float64
				for _, tile := range gemmTiles {
					out := buffer(t, n*oc)
					if err := k.Matmul.forwardTile(dev.Stream, out, inp, w, bias, n, c, oc, tile); err != nil {
						t.Fatal(err)
					}
					got := download(t, out, n*oc)
					checkClose(t, "out "+tile.String(), got, want, matmulTol)
					if first == nil {
						first = got
					} else {
						matmulSameBits(t, "out "+tile.String()+" vs "+gemmTiles[0].String(), got, first)
					}
				}
				// The launcher's own tile choice.
				out := buffer(t, n*oc)
				if err := k.Matmul.Forward(dev.Stream, out, inp, w, bias, n, c, oc); err != nil {
					t.Fatal(err)
				}
				matmulSameBits(t, "out (Forward)", download(t, out, n*oc), first)
			})
		}
	}
}

// TestMatmulBackward checks the input and weight gradients with every tile
// shape, the bias gradient, and the Backward convenience with and without
// a bias.
func TestMatmulBackward(t *testing.T) {
	dev, k := env(t)
	r := rng(t)
	for _, sh := range matmulShapes {
		n, c, oc := sh[0], sh[1], sh[2]
		t.Run(fmt.Sprintf("N%d_C%d_OC%d", n, c, oc), func(t *testing.T) {
			env(t) // a subtest runs on its own goroutine
			dout, doutV := upload(t, normal(r, n*oc, 1))
			inp, inpV := upload(t, normal(r, n*c, 1))
			w, wV := upload(t, normal(r, oc*c, 1))
			wantDinp := make([]float64, n*c)
			wantDw := make([]float64, oc*c)
			wantDbias := make([]float64, oc)
			ref.MatmulBackward(wantDinp, wantDw, wantDbias, doutV, inpV, wV, n, c, oc)

			var firstDinp, firstDw []float64
			for _, tile := range gemmTiles {
				dinp := buffer(t, n*c)
				dw := buffer(t, oc*c)
				if err := k.Matmul.backwardInputTile(dev.Stream, dinp, dout, w, n, c, oc, tile); err != nil {
					t.Fatal(err)
				}
				if err := k.Matmul.backwardWeightTile(dev.Stream, dw, dout, inp, n, c, oc, tile); err != nil {
					t.Fatal(err)
				}
				gotDinp := download(t, dinp, n*c)
				gotDw := download(t, dw, oc*c)
				checkClose(t, "dinp "+tile.String(), gotDinp, wantDinp, matmulTol)
				checkClose(t, "dw "+tile.String(), gotDw, wantDw, matmulTol)
				if firstDinp == nil {
					firstDinp, firstDw = gotDinp, gotDw
				} else {
					matmulSameBits(t, "dinp "+tile.String()+" vs "+gemmTiles[0].String(), gotDinp, firstDinp)
					matmulSameBits(t, "dw "+tile.String()+" vs "+gemmTiles[0].String(), gotDw, firstDw)
				}
			}

			dbias := buffer(t, oc)
			if err := k.Matmul.BiasBackward(dev.Stream, dbias, dout, n, oc); err != nil {
				t.Fatal(err)
			}
			checkClose(t, "dbias", download(t, dbias, oc), wantDbias, matmulTol)

			// Backward: 3 launches with a bias gradient, 2 without.
			dinp, dw, dbias2 := buffer(t, n*c), buffer(t, oc*c), buffer(t, oc)
			k.ResetCounts()
			if err := k.Matmul.Backward(dev.Stream, dinp, dw, dbias2, dout, inp, w, n, c, oc); err != nil {
				t.Fatal(err)
			}
			checkClose(t, "Backward dinp", download(t, dinp, n*c), wantDinp, matmulTol)
			checkClose(t, "Backward dw", download(t, dw, oc*c), wantDw, matmulTol)
			checkClose(t, "Backward dbias", download(t, dbias2, oc), wantDbias, matmulTol)
			dinp, dw = buffer(t, n*c), buffer(t, oc*c)
			if err := k.Matmul.Backward(dev.Stream, dinp, dw, 0, dout, inp, w, n, c, oc); err != nil {
				t.Fatal(err)
			}
			checkClose(t, "Backward (no bias) dinp", download(t, dinp, n*c), wantDinp, matmulTol)
			checkClose(t, "Backward (no bias) dw", download(t, dw, oc*c), wantDw, matmulTol)
			counts := k.LaunchCounts()
			if counts["matmul_backward_input"] != 2 || counts["matmul_backward_weight"] != 2 || counts["bias_backward"] != 1 {
				t.Errorf("Backward launch counts %v, want 2 input, 2 weight, 1 bias", counts)
			}
		})
	}
}

// TestMatmulUnaligned runs every entry on buffers that start one float past
// a 16-byte boundary, with sizes that are multiples of 4: the kernels must
// notice the misalignment and take the scalar path (a float4 access there
// would fault).
func TestMatmulUnaligned(t *testing.T) {
	dev, k := env(t)
	r := rng(t)
	const n, c, oc = 130, 132, 136
	// offset uploads v one float into a fresh buffer.
	offset := func(v []float64) (cu.DevicePtr, []float64) {
		p, seen := upload(t, append([]float64{0}, v...))
		return p + 4, seen[1:]
	}
	out1 := func(size int) cu.DevicePtr { return buffer(t, size+1) + 4 }
	inp, inpV := offset(normal(r, n*c, 1))
	w, wV := offset(normal(r, oc*c, 1))
	bias, biasV := offset(normal(r, oc, 1))
	dout, doutV := offset(normal(r, n*oc, 1))

	want := make([]float64, n*oc)
	ref.MatmulForward(want, inpV, wV, biasV, n, c, oc)
	wantDinp, wantDw, wantDbias := make([]float64, n*c), make([]float64, oc*c), make([]float64, oc)
	ref.MatmulBackward(wantDinp, wantDw, wantDbias, doutV, inpV, wV, n, c, oc)

	for _, tile := range gemmTiles {
		out, dinp, dw := out1(n*oc), out1(n*c), out1(oc*c)
		if err := k.Matmul.forwardTile(dev.Stream, out, inp, w, bias, n, c, oc, tile); err != nil {
			t.Fatal(err)
		}
		if err := k.Matmul.backwardInputTile(dev.Stream, dinp, dout, w, n, c, oc, tile); err != nil {
			t.Fatal(err)
		}
		if err := k.Matmul.backwardWeightTile(dev.Stream, dw, dout, inp, n, c, oc, tile); err != nil {
			t.Fatal(err)
		}
		checkClose(t, "out "+tile.String(), download(t, out, n*oc), want, matmulTol)
		checkClose(t, "dinp "+tile.String(), download(t, dinp, n*c), wantDinp, matmulTol)
		checkClose(t, "dw "+tile.String(), download(t, dw, oc*c), wantDw, matmulTol)
	}
	dbias := out1(oc)
	if err := k.Matmul.BiasBackward(dev.Stream, dbias, dout, n, oc); err != nil {
		t.Fatal(err)
	}
	checkClose(t, "dbias", download(t, dbias, oc), wantDbias, matmulTol)
}

// TestMatmulDeterminism launches the two reductions twice into different
// poisoned buffers and requires bitwise-equal results.
func TestMatmulDeterminism(t *testing.T) {
	dev, k := env(t)
	r := rng(t)
	for _, sh := range [][3]int{{111, 100, 1003}, {1000, 256, 384}, {4099, 64, 96}} {
		n, c, oc := sh[0], sh[1], sh[2]
		t.Run(fmt.Sprintf("N%d_C%d_OC%d", n, c, oc), func(t *testing.T) {
			env(t) // a subtest runs on its own goroutine
			dout, _ := upload(t, normal(r, n*oc, 1))
			inp, _ := upload(t, normal(r, n*c, 1))
			var dws, dbiases [2][]float64
			for i := range 2 {
				dw, dbias := buffer(t, oc*c), buffer(t, oc)
				if err := k.Matmul.BackwardWeight(dev.Stream, dw, dout, inp, n, c, oc); err != nil {
					t.Fatal(err)
				}
				if err := k.Matmul.BiasBackward(dev.Stream, dbias, dout, n, oc); err != nil {
					t.Fatal(err)
				}
				dws[i], dbiases[i] = download(t, dw, oc*c), download(t, dbias, oc)
			}
			matmulSameBits(t, "dw run 2 vs run 1", dws[1], dws[0])
			matmulSameBits(t, "dbias run 2 vs run 1", dbiases[1], dbiases[0])
			if relErr(dws[0], dws[0]) != 0 || relErr(dbiases[0], dbiases[0]) != 0 {
				t.Fatal("unwritten (NaN) gradient elements")
			}
		})
	}
}

// TestMatmulTileChoice pins the launcher's tile model on a 132-SM GPU
// (H100/H200) for some of the model's products (see docs/matmul.md).
func TestMatmulTileChoice(t *testing.T) {
	x := Matmul{sms: 132}
	for _, tc := range []struct {
		m, n int
		want string
	}{
		{8192, 2304, "128x128"}, // gpt2-124m qkv forward
		{8192, 768, "128x128"},  // gpt2-124m attproj forward, input gradients
		{50257, 768, "128x128"}, // gpt2-124m lm head weight gradient
		{3072, 768, "64x64"},    // gpt2-124m fc weight gradient: 144 big tiles
		{2048, 1536, "128x64"},  // small qkv forward
		{512, 512, "64x64"},     // small attproj weight gradient
		{2048, 8192, "128x128"}, // small lm head forward
		{1, 1, "64x64"},
	} {
		if got := x.tile(tc.m, tc.n).String(); got != tc.want {
			t.Errorf("tile(%d, %d) = %s, want %s", tc.m, tc.n, got, tc.want)
		}
	}
}

// The benchmarks time the kernels with CUDA events over b.N back-to-back
// launches after a warm-up, and report TFLOP/s (2·N·C·OC per product) or
// GB/s (bias gradient). Run them with e.g.
//
//	kernels.test -test.run '^$' -test.bench Matmul -test.benchtime 20x

// matmulBenchShapes are the linear layers of the presets, as (N, C, OC).
var matmulBenchShapes = []struct {
	name     string
	n, c, oc int
	bias     bool
}{
	{"gpt2-124m/qkv", 8192, 768, 2304, true},
	{"gpt2-124m/attproj", 8192, 768, 768, true},
	{"gpt2-124m/fc", 8192, 768, 3072, true},
	{"gpt2-124m/fcproj", 8192, 3072, 768, true},
	{"gpt2-124m/lmhead", 8192, 768, 50257, false},
	{"small/qkv", 2048, 512, 1536, true},
	{"small/attproj", 2048, 512, 512, true},
	{"small/fc", 2048, 512, 2048, true},
	{"small/fcproj", 2048, 2048, 512, true},
	{"small/lmhead", 2048, 512, 8192, false},
}

// matmulBenchEnv is env for benchmarks; launches are not synchronised one by one.
func matmulBenchEnv(b *testing.B) *Kernels {
	b.Helper()
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	ctx, err := testDev.Context()
	if err != nil {
		b.Fatal(err)
	}
	if err := cu.SetCurrentContext(ctx); err != nil {
		b.Fatalf("set context: %v", err)
	}
	k := testKernels
	sync := k.SyncEachLaunch
	k.SyncEachLaunch = false
	b.Cleanup(func() { k.SyncEachLaunch = sync })
	return k
}

// matmulBenchBuffer allocates n floats set to v.
func matmulBenchBuffer(b *testing.B, k *Kernels, n int, v float32) cu.DevicePtr {
	b.Helper()
	p, err := testDev.AllocF32(n)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { testDev.Free(p) })
	if err := k.Common.Fill(testDev.Stream, p, n, v); err != nil {
		b.Fatal(err)
	}
	return p
}

// matmulTimeLaunches returns the mean seconds per launch over b.N launches,
// timed with CUDA events on the test stream.
func matmulTimeLaunches(b *testing.B, launch func() error) float64 {
	b.Helper()
	s := testDev.Stream
	for range 3 { // warm-up: JIT, caches, clocks
		if err := launch(); err != nil {
			b.Fatal(err)
		}
	}
	start, err := cu.MakeEvent(cu.DefaultEvent)
	if err != nil {
		b.Fatal(err)
	}
	defer cu.DestroyEvent(&start)
	stop, err := cu.MakeEvent(cu.DefaultEvent)
	if err != nil {
		b.Fatal(err)
	}
	defer cu.DestroyEvent(&stop)
	if err := s.Synchronize(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if err := start.Record(s); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		if err := launch(); err != nil {
			b.Fatal(err)
		}
	}
	if err := stop.Record(s); err != nil {
		b.Fatal(err)
	}
	if err := stop.Synchronize(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	ms, err := start.Elapsed(stop)
	if err != nil {
		b.Fatal(err)
	}
	return ms / 1e3 / float64(b.N)
}

func matmulReportGEMM(b *testing.B, sec float64, n, c, oc int) {
	b.ReportMetric(2*float64(n)*float64(c)*float64(oc)/sec/1e12, "TFLOP/s")
	b.ReportMetric(sec*1e6, "us/launch")
}

func BenchmarkMatmulForward(b *testing.B) {
	for _, sh := range matmulBenchShapes {
		b.Run(sh.name, func(b *testing.B) {
			k := matmulBenchEnv(b)
			inp := matmulBenchBuffer(b, k, sh.n*sh.c, 0.01)
			w := matmulBenchBuffer(b, k, sh.oc*sh.c, 0.01)
			out := matmulBenchBuffer(b, k, sh.n*sh.oc, 0)
			var bias cu.DevicePtr
			if sh.bias {
				bias = matmulBenchBuffer(b, k, sh.oc, 0.01)
			}
			sec := matmulTimeLaunches(b, func() error {
				return k.Matmul.Forward(testDev.Stream, out, inp, w, bias, sh.n, sh.c, sh.oc)
			})
			matmulReportGEMM(b, sec, sh.n, sh.c, sh.oc)
		})
	}
}

func BenchmarkMatmulBackwardInput(b *testing.B) {
	for _, sh := range matmulBenchShapes {
		b.Run(sh.name, func(b *testing.B) {
			k := matmulBenchEnv(b)
			dout := matmulBenchBuffer(b, k, sh.n*sh.oc, 0.01)
			w := matmulBenchBuffer(b, k, sh.oc*sh.c, 0.01)
			dinp := matmulBenchBuffer(b, k, sh.n*sh.c, 0)
			sec := matmulTimeLaunches(b, func() error {
				return k.Matmul.BackwardInput(testDev.Stream, dinp, dout, w, sh.n, sh.c, sh.oc)
			})
			matmulReportGEMM(b, sec, sh.n, sh.c, sh.oc)
		})
	}
}

func BenchmarkMatmulBackwardWeight(b *testing.B) {
	for _, sh := range matmulBenchShapes {
		b.Run(sh.name, func(b *testing.B) {
			k := matmulBenchEnv(b)
			dout := matmulBenchBuffer(b, k, sh.n*sh.oc, 0.01)
			inp := matmulBenchBuffer(b, k, sh.n*sh.c, 0.01)
			dw := matmulBenchBuffer(b, k, sh.oc*sh.c, 0)
			sec := matmulTimeLaunches(b, func() error {
				return k.Matmul.BackwardWeight(testDev.Stream, dw, dout, inp, sh.n, sh.c, sh.oc)
			})
			matmulReportGEMM(b, sec, sh.n, sh.c, sh.oc)
		})
	}
}

func BenchmarkMatmulBiasBackward(b *testing.B) {
	for _, sh := range matmulBenchShapes {
		if !sh.bias {
			continue
		}
		b.Run(sh.name, func(b *testing.B) {
			k := matmulBenchEnv(b)
			dout := matmulBenchBuffer(b, k, sh.n*sh.oc, 0.01)
			dbias := matmulBenchBuffer(b, k, sh.oc, 0)
			sec := matmulTimeLaunches(b, func() error {
				return k.Matmul.BiasBackward(testDev.Stream, dbias, dout, sh.n, sh.oc)
			})
			b.ReportMetric(4*float64(sh.n)*float64(sh.oc)/sec/1e9, "GB/s")
			b.ReportMetric(sec*1e6, "us/launch")
		})
	}
}
