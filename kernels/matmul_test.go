//go:build gpu

package kernels

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/gpubench/gpubench/internal/gemmplan"
	"github.com/gpubench/gpubench/internal/gpu"
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

// matmulWorkspaceFor allocates a split-K workspace that holds plan p:
// partials poisoned with NaN (a reducer that read a slot no block wrote
// would spread NaN into dw) and counters zeroed, as the model does once.
// gemmTiles are the tiles of matmul.cu, largest first.
var gemmTiles = gemmplan.Tiles

func matmulWorkspaceFor(t *testing.T, p gemmplan.Split) MatmulScratch {
	t.Helper()
	return matmulWorkspaceSized(t, max(p.PartialFloats(), 1), max(p.Counters(), 1))
}

// matmulWorkspace allocates the workspace MatmulScratchSize asks for
// dw(oc,c) over n rows (at least one element each, as the model does).
func matmulWorkspace(t *testing.T, n, c, oc int) MatmulScratch {
	t.Helper()
	f, k := MatmulScratchSize(n, c, oc)
	return matmulWorkspaceSized(t, max(f, 1), max(k, 1))
}

func matmulWorkspaceSized(t *testing.T, floats, counters int) MatmulScratch {
	t.Helper()
	ws := MatmulScratch{Partials: buffer(t, floats), Counters: buffer(t, counters), PartialFloats: floats, CounterInts: counters}
	if err := cu.MemsetD32(ws.Counters, 0, int64(counters)); err != nil {
		t.Fatal(err)
	}
	return ws
}

// matmulCountersZero fails the test unless every tile counter of ws is
// back at zero, as each launch must leave them.
func matmulCountersZero(t *testing.T, what string, ws MatmulScratch) {
	t.Helper()
	if err := testDev.Synchronize(); err != nil {
		t.Fatalf("synchronize: %v", err)
	}
	c := make([]int32, ws.CounterInts)
	if err := gpu.Download(c, ws.Counters); err != nil {
		t.Fatal(err)
	}
	for i, v := range c {
		if v != 0 {
			t.Fatalf("%s: tile counter %d is %d after the launch, want 0", what, i, v)
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
						sameBits(t, "out "+tile.String()+" vs "+gemmTiles[0].String(), got, first)
					}
				}
				// The launcher's own tile choice.
				out := buffer(t, n*oc)
				if err := k.Matmul.Forward(dev.Stream, out, inp, w, bias, n, c, oc); err != nil {
					t.Fatal(err)
				}
				sameBits(t, "out (Forward)", download(t, out, n*oc), first)
			})
		}
	}
}

// TestMatmulBackward checks the input and weight gradients with every tile
// shape (the weight gradient unsplit, S = 1, where every tile gives the
// same bits), the bias gradient, and the Backward convenience with and
// without a bias, whose weight gradient takes the launcher's split.
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
				if err := k.Matmul.backwardWeightPlan(dev.Stream, dw, dout, inp, MatmulScratch{}, n, c, oc,
					gemmplan.SplitOf(tile, oc, c, n, 1)); err != nil {
					t.Fatal(err)
				}
				gotDinp := download(t, dinp, n*c)
				gotDw := download(t, dw, oc*c)
				checkClose(t, "dinp "+tile.String(), gotDinp, wantDinp, matmulTol)
				checkClose(t, "dw "+tile.String(), gotDw, wantDw, matmulTol)
				if firstDinp == nil {
					firstDinp, firstDw = gotDinp, gotDw
				} else {
					sameBits(t, "dinp "+tile.String()+" vs "+gemmTiles[0].String(), gotDinp, firstDinp)
					sameBits(t, "dw "+tile.String()+" vs "+gemmTiles[0].String(), gotDw, firstDw)
				}
			}

			dbias := buffer(t, oc)
			if err := k.Matmul.BiasBackward(dev.Stream, dbias, dout, n, oc); err != nil {
				t.Fatal(err)
			}
			checkClose(t, "dbias", download(t, dbias, oc), wantDbias, matmulTol)

			// Backward: 3 launches with a bias gradient, 2 without.
			ws := matmulWorkspace(t, n, c, oc)
			t.Logf("weight gradient plan on %d SMs: %v", k.Matmul.SMs(), k.Matmul.weightPlan(n, c, oc, ws))
			dinp, dw, dbias2 := buffer(t, n*c), buffer(t, oc*c), buffer(t, oc)
			k.ResetCounts()
			if err := k.Matmul.Backward(dev.Stream, dinp, dw, dbias2, dout, inp, w, ws, n, c, oc); err != nil {
				t.Fatal(err)
			}
			checkClose(t, "Backward dinp", download(t, dinp, n*c), wantDinp, matmulTol)
			checkClose(t, "Backward dw", download(t, dw, oc*c), wantDw, matmulTol)
			checkClose(t, "Backward dbias", download(t, dbias2, oc), wantDbias, matmulTol)
			dinp, dw = buffer(t, n*c), buffer(t, oc*c)
			if err := k.Matmul.Backward(dev.Stream, dinp, dw, 0, dout, inp, w, ws, n, c, oc); err != nil {
				t.Fatal(err)
			}
			checkClose(t, "Backward (no bias) dinp", download(t, dinp, n*c), wantDinp, matmulTol)
			checkClose(t, "Backward (no bias) dw", download(t, dw, oc*c), wantDw, matmulTol)
			matmulCountersZero(t, "Backward", ws)
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
// would fault). The weight gradient runs unsplit and split in 3.
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
		out, dinp, dw, dw3 := out1(n*oc), out1(n*c), out1(oc*c), out1(oc*c)
		if err := k.Matmul.forwardTile(dev.Stream, out, inp, w, bias, n, c, oc, tile); err != nil {
			t.Fatal(err)
		}
		if err := k.Matmul.backwardInputTile(dev.Stream, dinp, dout, w, n, c, oc, tile); err != nil {
			t.Fatal(err)
		}
		if err := k.Matmul.backwardWeightPlan(dev.Stream, dw, dout, inp, MatmulScratch{}, n, c, oc,
			gemmplan.SplitOf(tile, oc, c, n, 1)); err != nil {
			t.Fatal(err)
		}
		p3 := gemmplan.SplitOf(tile, oc, c, n, 3)
		if err := k.Matmul.backwardWeightPlan(dev.Stream, dw3, dout, inp, matmulWorkspaceFor(t, p3), n, c, oc, p3); err != nil {
			t.Fatal(err)
		}
		checkClose(t, "out "+tile.String(), download(t, out, n*oc), want, matmulTol)
		checkClose(t, "dinp "+tile.String(), download(t, dinp, n*c), wantDinp, matmulTol)
		checkClose(t, "dw "+tile.String(), download(t, dw, oc*c), wantDw, matmulTol)
		checkClose(t, "dw "+p3.String(), download(t, dw3, oc*c), wantDw, matmulTol)
	}
	dbias := out1(oc)
	if err := k.Matmul.BiasBackward(dev.Stream, dbias, dout, n, oc); err != nil {
		t.Fatal(err)
	}
	checkClose(t, "dbias", download(t, dbias, oc), wantDbias, matmulTol)
}

// TestMatmulDeterminism launches the two reductions three times each into
// different poisoned buffers and requires bitwise-equal results: the bias
// gradient, and the weight gradient both with the launcher's plan and split
// in 5 (so that S > 1 is tested on any GPU); the tile counters must be zero
// after every launch.
func TestMatmulDeterminism(t *testing.T) {
	dev, k := env(t)
	r := rng(t)
	for _, sh := range [][3]int{{111, 100, 1003}, {1000, 256, 384}, {4099, 64, 96}, {2048, 512, 512}, {512, 128, 384}} {
		n, c, oc := sh[0], sh[1], sh[2]
		t.Run(fmt.Sprintf("N%d_C%d_OC%d", n, c, oc), func(t *testing.T) {
			env(t) // a subtest runs on its own goroutine
			dout, _ := upload(t, normal(r, n*oc, 1))
			inp, _ := upload(t, normal(r, n*c, 1))
			ws := matmulWorkspace(t, n, c, oc)
			forced := gemmplan.SplitOf(gemmTiles[1], oc, c, n, 5)
			if forced.Slices < 2 {
				t.Fatalf("forced plan %v does not split", forced)
			}
			for _, p := range []gemmplan.Split{k.Matmul.weightPlan(n, c, oc, ws), forced} {
				pws := ws
				if p.PartialFloats() > ws.PartialFloats || p.Counters() > ws.CounterInts {
					pws = matmulWorkspaceFor(t, p)
				}
				var dws [3][]float64
				for i := range dws {
					dw := buffer(t, oc*c)
					if err := k.Matmul.backwardWeightPlan(dev.Stream, dw, dout, inp, pws, n, c, oc, p); err != nil {
						t.Fatal(err)
					}
					dws[i] = download(t, dw, oc*c)
					matmulCountersZero(t, fmt.Sprintf("dw %v run %d", p, i+1), pws)
				}
				if relErr(dws[0], dws[0]) != 0 {
					t.Fatalf("dw %v: unwritten (NaN) elements", p)
				}
				for i := 1; i < len(dws); i++ {
					sameBits(t, fmt.Sprintf("dw %v run %d vs run 1", p, i+1), dws[i], dws[0])
				}
			}
			var dbiases [3][]float64
			for i := range dbiases {
				dbias := buffer(t, oc)
				if err := k.Matmul.BiasBackward(dev.Stream, dbias, dout, n, oc); err != nil {
					t.Fatal(err)
				}
				dbiases[i] = download(t, dbias, oc)
			}
			if relErr(dbiases[0], dbiases[0]) != 0 {
				t.Fatal("dbias: unwritten (NaN) elements")
			}
			for i := 1; i < len(dbiases); i++ {
				sameBits(t, fmt.Sprintf("dbias run %d vs run 1", i+1), dbiases[i], dbiases[0])
			}
		})
	}
}

// TestMatmulSplitK checks the split weight gradient against the reference:
// the launcher's plan (which must split the first three shapes, as it does
// the tiny and small models' products: 2, 32 and 12 tiles for long K),
// every tile unsplit, and every tile at forced slice counts, with the
// same bits for every tile at one slice count (the slice boundaries do not
// depend on the tile). The shapes have partial last slices (4099 = 15·264 +
// 139 rows), K tails that are not whole stages (111, 37), unaligned rows
// (OC = 1003) and outputs that are no multiple of a tile. dw is poisoned,
// the partials are poisoned, and the counters must be zero after each
// launch.
func TestMatmulSplitK(t *testing.T) {
	dev, k := env(t)
	r := rng(t)
	for _, sh := range []struct {
		n, c, oc int
		splits   bool // the launcher must split it
	}{
		{4099, 64, 96, true},
		{2048, 512, 512, true},
		{512, 128, 384, true},
		{1000, 256, 384, false},
		{111, 100, 1003, false},
		{37, 96, 288, false},
	} {
		n, c, oc := sh.n, sh.c, sh.oc
		t.Run(fmt.Sprintf("N%d_C%d_OC%d", n, c, oc), func(t *testing.T) {
			env(t) // a subtest runs on its own goroutine
			dout, doutV := upload(t, normal(r, n*oc, 1))
			inp, inpV := upload(t, normal(r, n*c, 1))
			want := make([]float64, oc*c)
			ref.MatmulBackward(make([]float64, n*c), want, nil, doutV, inpV, make([]float64, oc*c), n, c, oc)

			// The launcher's plan, in the workspace MatmulScratchSize asks for.
			ws := matmulWorkspace(t, n, c, oc)
			p := k.Matmul.weightPlan(n, c, oc, ws)
			t.Logf("plan on %d SMs: %v", k.Matmul.SMs(), p)
			if sh.splits && p.Slices < 2 {
				t.Errorf("the launcher does not split dw (%d×%d over %d rows) on %d SMs: %v", oc, c, n, k.Matmul.SMs(), p)
			}
			dw := buffer(t, oc*c)
			if err := k.Matmul.BackwardWeight(dev.Stream, dw, dout, inp, ws, n, c, oc); err != nil {
				t.Fatal(err)
			}
			checkClose(t, "dw "+p.String(), download(t, dw, oc*c), want, matmulTol)
			matmulCountersZero(t, "dw "+p.String(), ws)

			// Every tile at S = 1 and at forced slice counts.
			for _, s := range []int{1, 2, 3, 8, p.Slices} {
				var first []float64
				for _, tile := range gemmTiles {
					fp := gemmplan.SplitOf(tile, oc, c, n, s)
					fws := matmulWorkspaceFor(t, fp)
					dw := buffer(t, oc*c)
					if err := k.Matmul.backwardWeightPlan(dev.Stream, dw, dout, inp, fws, n, c, oc, fp); err != nil {
						t.Fatal(err)
					}
					got := download(t, dw, oc*c)
					checkClose(t, "dw "+fp.String(), got, want, matmulTol)
					matmulCountersZero(t, "dw "+fp.String(), fws)
					if first == nil {
						first = got
					} else {
						sameBits(t, "dw "+fp.String()+" vs "+gemmTiles[0].String(), got, first)
					}
				}
			}
		})
	}
}

// TestMatmulSplitKRefuses: a plan that does not fit its workspace is an
// error, not an out-of-bounds write.
func TestMatmulSplitKRefuses(t *testing.T) {
	dev, k := env(t)
	const n, c, oc = 512, 128, 384
	dw, dout, inp := buffer(t, oc*c), buffer(t, n*oc), buffer(t, n*c)
	p := gemmplan.SplitOf(gemmTiles[2], oc, c, n, 8)
	small := matmulWorkspaceSized(t, p.PartialFloats()-1, p.Counters())
	if err := k.Matmul.backwardWeightPlan(dev.Stream, dw, dout, inp, small, n, c, oc, p); err == nil {
		t.Error("a plan one float larger than its workspace was launched")
	}
	if err := k.Matmul.backwardWeightPlan(dev.Stream, dw, dout, inp, MatmulScratch{}, n, c, oc, p); err == nil {
		t.Error("a split plan was launched without a workspace")
	}
	if got := k.Matmul.weightPlan(n, c, oc, MatmulScratch{}); got.Slices != 1 {
		t.Errorf("plan without a workspace: %v, want no split", got)
	}
}

// TestMatmulTileChoice pins the launcher's choices on a 132-SM GPU
// (H100/H200) for some of the model's products (see docs/matmul.md; the
// full tables are internal/gemmplan's tests).
func TestMatmulTileChoice(t *testing.T) {
	x := Matmul{sms: 132}
	for _, tc := range []struct {
		m, n, k int
		want    string
	}{
		{8192, 2304, 768, "128x128"}, // gpt2-124m qkv forward
		{8192, 768, 768, "128x128"},  // gpt2-124m attproj forward, input gradients
		{2048, 1536, 512, "128x64"},  // small qkv forward
		{2048, 8192, 512, "128x128"}, // small lm head forward
		{1, 1, 1, "64x64"},
	} {
		if got := x.tile(tc.m, tc.n, tc.k).String(); got != tc.want {
			t.Errorf("tile(%d, %d, %d) = %s, want %s", tc.m, tc.n, tc.k, got, tc.want)
		}
	}
	for _, tc := range []struct {
		n, c, oc int
		want     string
	}{
		{512, 128, 384, "64x64×12 S=8/64"},      // tiny qkv weight gradient
		{2048, 512, 512, "128x64×32 S=8/256"},   // small attproj
		{8192, 768, 768, "128x128×36 S=11/752"}, // gpt2-124m attproj
		{8192, 768, 50257, "128x128×2358 S=1/8192"},
	} {
		f, c := MatmulScratchSize(tc.n, tc.c, tc.oc)
		ws := MatmulScratch{Partials: 1, Counters: 1, PartialFloats: f, CounterInts: c}
		if got := x.weightPlan(tc.n, tc.c, tc.oc, ws).String(); got != tc.want {
			t.Errorf("weightPlan(%d, %d, %d) = %s, want %s", tc.n, tc.c, tc.oc, got, tc.want)
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

// BenchmarkMatmulBackwardWeight times the weight gradient with the
// launcher's plan (reported as "slices": 1 is unsplit), at the presets'
// shapes and at the tiny model's (as tiny/...).
func BenchmarkMatmulBackwardWeight(b *testing.B) {
	matmulBenchWeight(b, true)
}

// BenchmarkMatmulBackwardWeightUnsplit is the same without a workspace:
// version 1's kernel path (S = 1), the baseline of the split.
func BenchmarkMatmulBackwardWeightUnsplit(b *testing.B) {
	matmulBenchWeight(b, false)
}

// matmulTinyBenchShapes are the tiny preset's linear layers (N = 512,
// C = 128, V = 512), whose weight gradients the split is for.
var matmulTinyBenchShapes = []struct {
	name     string
	n, c, oc int
	bias     bool
}{
	{"tiny/qkv", 512, 128, 384, true},
	{"tiny/attproj", 512, 128, 128, true},
	{"tiny/fc", 512, 128, 512, true},
	{"tiny/fcproj", 512, 512, 128, true},
	{"tiny/lmhead", 512, 128, 512, false},
}

func matmulBenchWeight(b *testing.B, split bool) {
	for _, sh := range append(append(matmulBenchShapes[:0:0], matmulBenchShapes...), matmulTinyBenchShapes...) {
		b.Run(sh.name, func(b *testing.B) {
			k := matmulBenchEnv(b)
			dout := matmulBenchBuffer(b, k, sh.n*sh.oc, 0.01)
			inp := matmulBenchBuffer(b, k, sh.n*sh.c, 0.01)
			dw := matmulBenchBuffer(b, k, sh.oc*sh.c, 0)
			var ws MatmulScratch
			if split {
				f, c := MatmulScratchSize(sh.n, sh.c, sh.oc)
				f, c = max(f, 1), max(c, 1)
				// A float 0 is an int32 0: the counters start at zero.
				ws = MatmulScratch{Partials: matmulBenchBuffer(b, k, f, 0), Counters: matmulBenchBuffer(b, k, c, 0),
					PartialFloats: f, CounterInts: c}
			}
			b.ReportMetric(float64(k.Matmul.weightPlan(sh.n, sh.c, sh.oc, ws).Slices), "slices")
			sec := matmulTimeLaunches(b, func() error {
				return k.Matmul.BackwardWeight(testDev.Stream, dw, dout, inp, ws, sh.n, sh.c, sh.oc)
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
