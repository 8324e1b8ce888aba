//go:build gpu

package kernels

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/gemmplan"
	"github.com/gpubench/gpubench/internal/program"
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

func matmulWorkspaceFor(t testing.TB, p gemmplan.Split) MatmulScratch {
	t.Helper()
	return matmulWorkspaceSized(t, max(p.PartialFloats(), 1), max(p.Counters(), 1))
}

// matmulWorkspace allocates the workspace MatmulScratchSize asks for
// dw(oc,c) over n rows (at least one element each, as the model does).
func matmulWorkspace(t testing.TB, n, c, oc int) MatmulScratch {
	t.Helper()
	f, k := MatmulScratchSize(n, c, oc)
	return matmulWorkspaceSized(t, max(f, 1), max(k, 1))
}

// matmulWorkspaceSized allocates floats partials, poisoned, and counters
// int32 counters, which it zeroes with the model's setup memset (Memset).
func matmulWorkspaceSized(t testing.TB, floats, counters int) MatmulScratch {
	t.Helper()
	ws := MatmulScratch{Partials: buffer(t, "partials", floats), Counters: intBuffer(t, "counters", counters)}
	ws.Counters.Buf.State = true
	run(t, Memset(ws.Counters))
	return ws
}

// matmulCountersZero fails the test unless every tile counter of ws is
// back at zero, as each launch must leave them.
func matmulCountersZero(t *testing.T, what string, ws MatmulScratch) {
	t.Helper()
	for i, v := range downloadInt(t, ws.Counters) {
		if v != 0 {
			t.Fatalf("%s: tile counter %d is %d after the launch, want 0", what, i, v)
		}
	}
}

// TestMatmulForward checks matmul_forward against the reference with every
// tile shape, with and without bias, and that all tiles give the same bits.
func TestMatmulForward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range matmulShapes {
		n, c, oc := sh[0], sh[1], sh[2]
		for _, withBias := range []bool{true, false} {
			t.Run(fmt.Sprintf("N%d_C%d_OC%d_bias%v", n, c, oc, withBias), func(t *testing.T) {
				env(t) // a subtest runs on its own goroutine
				inp, inpV := upload(t, "inp", normal(r, n*c, 1))
				w, wV := upload(t, "w", normal(r, oc*c, 1))
				var bias program.View // null: no bias
				var biasV []float64
				if withBias {
					bias, biasV = upload(t, "bias", normal(r, oc, 1))
				}
				want := make([]float64, n*oc)
				ref.MatmulForward(want, inpV, wV, biasV, n, c, oc)
				var first []float64
				for _, tile := range gemmTiles {
					out := buffer(t, "out", n*oc)
					run(t, MatmulForwardTile(out, inp, w, bias, n, c, oc, tile))
					got := download(t, out, n*oc)
					checkClose(t, "out "+tile.String(), got, want, matmulTol)
					if first == nil {
						first = got
					} else {
						sameBits(t, "out "+tile.String()+" vs "+gemmTiles[0].String(), got, first)
					}
				}
				// The launcher's own tile choice.
				out := buffer(t, "out", n*oc)
				run(t, MatmulForward(out, inp, w, bias, n, c, oc, sms()))
				sameBits(t, "out (MatmulForward)", download(t, out, n*oc), first)
			})
		}
	}
}

// TestMatmulForwardNoPad: --flaw=bank-conflicts' matmul_forward_nopad,
// with every tile, with and without bias, on fresh inputs into a poisoned
// output, gives matmul_forward's bits (the pad moves values in shared
// memory, not the order of any sum) and the reference's values; through
// MatmulForwardWith it takes MatmulForward's tile and grid.
func TestMatmulForwardNoPad(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range matmulShapes {
		n, c, oc := sh[0], sh[1], sh[2]
		for _, withBias := range []bool{true, false} {
			t.Run(fmt.Sprintf("N%d_C%d_OC%d_bias%v", n, c, oc, withBias), func(t *testing.T) {
				env(t)
				inp, inpV := upload(t, "inp", normal(r, n*c, 1))
				w, wV := upload(t, "w", normal(r, oc*c, 1))
				var bias program.View
				var biasV []float64
				if withBias {
					bias, biasV = upload(t, "bias", normal(r, oc, 1))
				}
				want := make([]float64, n*oc)
				ref.MatmulForward(want, inpV, wV, biasV, n, c, oc)
				for _, tile := range gemmTiles {
					clean, flawed := buffer(t, "clean", n*oc), buffer(t, "nopad", n*oc)
					run(t, MatmulForwardTile(clean, inp, w, bias, n, c, oc, tile))
					op := MatmulForwardTile(flawed, inp, w, bias, n, c, oc, tile)
					op.Name = MatmulForwardNoPad
					run(t, op)
					got := download(t, flawed, n*oc)
					checkClose(t, "nopad "+tile.String(), got, want, matmulTol)
					sameBits(t, "nopad "+tile.String()+" vs matmul_forward", got, download(t, clean, n*oc))
				}
				clean, flawed := buffer(t, "clean", n*oc), buffer(t, "nopad", n*oc)
				ws := matmulWorkspace(t, n, c, oc) // the launcher's split, if any, too
				op := MatmulForwardWith(flawed, inp, w, bias, ws, n, c, oc, sms(), MatmulOptions{NoPad: true})
				ref := MatmulForwardWith(clean, inp, w, bias, ws, n, c, oc, sms(), MatmulOptions{})
				if op.Name != MatmulForwardNoPad || op.Grid != ref.Grid || op.Block != ref.Block {
					t.Fatalf("MatmulForwardWith NoPad launches %s<<<%v, %v>>>, clean %s<<<%v, %v>>>", op.Name, op.Grid, op.Block, ref.Name, ref.Grid, ref.Block)
				}
				run(t, op)
				run(t, ref)
				sameBits(t, "nopad (MatmulForwardWith)", download(t, flawed, n*oc), download(t, clean, n*oc))
			})
		}
	}
}

// TestMatmulBackward checks the input and weight gradients with every tile
// shape (the weight gradient unsplit, S = 1, where every tile gives the
// same bits), the bias gradient, and the MatmulBackward convenience with
// and without a bias, whose weight gradient takes the launcher's split.
func TestMatmulBackward(t *testing.T) {
	x := env(t)
	r := rng(t)
	for _, sh := range matmulShapes {
		n, c, oc := sh[0], sh[1], sh[2]
		t.Run(fmt.Sprintf("N%d_C%d_OC%d", n, c, oc), func(t *testing.T) {
			env(t) // a subtest runs on its own goroutine
			dout, doutV := upload(t, "dout", normal(r, n*oc, 1))
			inp, inpV := upload(t, "inp", normal(r, n*c, 1))
			w, wV := upload(t, "w", normal(r, oc*c, 1))
			wantDinp := make([]float64, n*c)
			wantDw := make([]float64, oc*c)
			wantDbias := make([]float64, oc)
			ref.MatmulBackward(wantDinp, wantDw, wantDbias, doutV, inpV, wV, n, c, oc)

			var firstDinp, firstDw []float64
			for _, tile := range gemmTiles {
				dinp := buffer(t, "dinp", n*c)
				dw := buffer(t, "dw", oc*c)
				run(t, MatmulBackwardInputTile(dinp, dout, w, n, c, oc, tile),
					MatmulBackwardWeightPlan(dw, dout, inp, MatmulScratch{}, n, c, oc, gemmplan.SplitOf(tile, oc, c, n, 1)))
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

			dbias := buffer(t, "dbias", oc)
			run(t, BiasBackward(dbias, dout, n, oc))
			checkClose(t, "dbias", download(t, dbias, oc), wantDbias, matmulTol)

			// MatmulBackward: 3 launches with a bias gradient, 2 without.
			ws := matmulWorkspace(t, n, c, oc)
			t.Logf("weight gradient plan on %d SMs: %v", sms(), MatmulWeightPlan(n, c, oc, sms(), ws))
			dinp, dw, dbias2 := buffer(t, "dinp", n*c), buffer(t, "dw", oc*c), buffer(t, "dbias", oc)
			withBias := MatmulBackward(dinp, dw, dbias2, dout, inp, w, ws, n, c, oc, sms())
			if len(withBias) != 3 {
				t.Errorf("MatmulBackward with a bias gradient: %d ops, want 3", len(withBias))
			}
			x.ResetCounts()
			run(t, withBias...)
			checkClose(t, "MatmulBackward dinp", download(t, dinp, n*c), wantDinp, matmulTol)
			checkClose(t, "MatmulBackward dw", download(t, dw, oc*c), wantDw, matmulTol)
			checkClose(t, "MatmulBackward dbias", download(t, dbias2, oc), wantDbias, matmulTol)
			dinp, dw = buffer(t, "dinp", n*c), buffer(t, "dw", oc*c)
			noBias := MatmulBackward(dinp, dw, program.View{}, dout, inp, w, ws, n, c, oc, sms())
			if len(noBias) != 2 {
				t.Errorf("MatmulBackward without a bias gradient: %d ops, want 2", len(noBias))
			}
			run(t, noBias...)
			checkClose(t, "MatmulBackward (no bias) dinp", download(t, dinp, n*c), wantDinp, matmulTol)
			checkClose(t, "MatmulBackward (no bias) dw", download(t, dw, oc*c), wantDw, matmulTol)
			matmulCountersZero(t, "MatmulBackward", ws)
			counts := x.LaunchCounts()
			if counts["matmul_backward_input"] != 2 || counts["matmul_backward_weight"] != 2 || counts["bias_backward"] != 1 {
				t.Errorf("MatmulBackward launch counts %v, want 2 input, 2 weight, 1 bias", counts)
			}
		})
	}
}

// TestMatmulUnaligned runs every entry on views that start one float past
// a 16-byte boundary, with sizes that are multiples of 4: the kernels must
// notice the misalignment and take the scalar path (a float4 access there
// would fault). The weight gradient runs unsplit and split in 3.
func TestMatmulUnaligned(t *testing.T) {
	env(t)
	r := rng(t)
	const n, c, oc = 130, 132, 136
	// offset uploads v one float into a fresh buffer.
	offset := func(name string, v []float64) (program.View, []float64) {
		p, seen := upload(t, name, append([]float64{0}, v...))
		return p.At(1), seen[1:]
	}
	out1 := func(name string, size int) program.View { return buffer(t, name, size+1).At(1) }
	inp, inpV := offset("inp", normal(r, n*c, 1))
	w, wV := offset("w", normal(r, oc*c, 1))
	bias, biasV := offset("bias", normal(r, oc, 1))
	dout, doutV := offset("dout", normal(r, n*oc, 1))

	want := make([]float64, n*oc)
	ref.MatmulForward(want, inpV, wV, biasV, n, c, oc)
	wantDinp, wantDw, wantDbias := make([]float64, n*c), make([]float64, oc*c), make([]float64, oc)
	ref.MatmulBackward(wantDinp, wantDw, wantDbias, doutV, inpV, wV, n, c, oc)

	for _, tile := range gemmTiles {
		out, dinp, dw, dw3 := out1("out", n*oc), out1("dinp", n*c), out1("dw", oc*c), out1("dw3", oc*c)
		p3 := gemmplan.SplitOf(tile, oc, c, n, 3)
		run(t, MatmulForwardTile(out, inp, w, bias, n, c, oc, tile),
			MatmulBackwardInputTile(dinp, dout, w, n, c, oc, tile),
			MatmulBackwardWeightPlan(dw, dout, inp, MatmulScratch{}, n, c, oc, gemmplan.SplitOf(tile, oc, c, n, 1)),
			MatmulBackwardWeightPlan(dw3, dout, inp, matmulWorkspaceFor(t, p3), n, c, oc, p3))
		checkClose(t, "out "+tile.String(), download(t, out, n*oc), want, matmulTol)
		checkClose(t, "dinp "+tile.String(), download(t, dinp, n*c), wantDinp, matmulTol)
		checkClose(t, "dw "+tile.String(), download(t, dw, oc*c), wantDw, matmulTol)
		checkClose(t, "dw "+p3.String(), download(t, dw3, oc*c), wantDw, matmulTol)
	}
	dbias := out1("dbias", oc)
	run(t, BiasBackward(dbias, dout, n, oc))
	checkClose(t, "dbias", download(t, dbias, oc), wantDbias, matmulTol)
}

// TestMatmulDeterminism launches the two reductions three times each into
// different poisoned buffers and requires bitwise-equal results: the bias
// gradient, and the weight gradient both with the launcher's plan and split
// in 5 (so that S > 1 is tested on any GPU); the tile counters must be zero
// after every launch.
func TestMatmulDeterminism(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range [][3]int{{111, 100, 1003}, {1000, 256, 384}, {4099, 64, 96}, {2048, 512, 512}, {512, 128, 384}} {
		n, c, oc := sh[0], sh[1], sh[2]
		t.Run(fmt.Sprintf("N%d_C%d_OC%d", n, c, oc), func(t *testing.T) {
			env(t) // a subtest runs on its own goroutine
			dout, _ := upload(t, "dout", normal(r, n*oc, 1))
			inp, _ := upload(t, "inp", normal(r, n*c, 1))
			ws := matmulWorkspace(t, n, c, oc)
			forced := gemmplan.SplitOf(gemmTiles[1], oc, c, n, 5)
			if forced.Slices < 2 {
				t.Fatalf("forced plan %v does not split", forced)
			}
			for _, p := range []gemmplan.Split{MatmulWeightPlan(n, c, oc, sms(), ws), forced} {
				pws := ws
				if int64(p.PartialFloats()) > ws.Partials.Elems || int64(p.Counters()) > ws.Counters.Elems {
					pws = matmulWorkspaceFor(t, p)
				}
				var dws [3][]float64
				for i := range dws {
					dw := buffer(t, "dw", oc*c)
					run(t, MatmulBackwardWeightPlan(dw, dout, inp, pws, n, c, oc, p))
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
				dbias := buffer(t, "dbias", oc)
				run(t, BiasBackward(dbias, dout, n, oc))
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
	env(t)
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
			dout, doutV := upload(t, "dout", normal(r, n*oc, 1))
			inp, inpV := upload(t, "inp", normal(r, n*c, 1))
			want := make([]float64, oc*c)
			ref.MatmulBackward(make([]float64, n*c), want, nil, doutV, inpV, make([]float64, oc*c), n, c, oc)

			// The launcher's plan, in the workspace MatmulScratchSize asks for.
			ws := matmulWorkspace(t, n, c, oc)
			p := MatmulWeightPlan(n, c, oc, sms(), ws)
			t.Logf("plan on %d SMs: %v", sms(), p)
			if sh.splits && p.Slices < 2 {
				t.Errorf("the launcher does not split dw (%d×%d over %d rows) on %d SMs: %v", oc, c, n, sms(), p)
			}
			dw := buffer(t, "dw", oc*c)
			run(t, MatmulBackwardWeight(dw, dout, inp, ws, n, c, oc, sms()))
			checkClose(t, "dw "+p.String(), download(t, dw, oc*c), want, matmulTol)
			matmulCountersZero(t, "dw "+p.String(), ws)

			// Every tile at S = 1 and at forced slice counts.
			for _, s := range []int{1, 2, 3, 8, p.Slices} {
				var first []float64
				for _, tile := range gemmTiles {
					fp := gemmplan.SplitOf(tile, oc, c, n, s)
					fws := matmulWorkspaceFor(t, fp)
					dw := buffer(t, "dw", oc*c)
					run(t, MatmulBackwardWeightPlan(dw, dout, inp, fws, n, c, oc, fp))
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

// TestMatmulSplitKProducts checks the split forward (with and without
// bias) and the split input gradient against the reference, as
// TestMatmulSplitK does the weight gradient: the launcher's plan within
// the workspace MatmulScratchSize asks for (which must split the tiny
// model's 512×128 outputs over K = 512 and 384, 16 tiles for 132 SMs), and
// every tile at forced slice counts with the same bits for every tile at
// one count. K tails that are not whole stages (1003, 100) and unaligned
// rows (OC = 1003, C = 100) go through the K-contiguous operands' slice
// offsets. Outputs and partials are poisoned; the counters must be zero
// after each launch.
func TestMatmulSplitKProducts(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range []struct {
		n, c, oc int
		splits   bool // the launcher must split the forward (c long) or the input gradient (oc long)
	}{
		{512, 128, 512, true},
		{512, 512, 128, true},
		{512, 128, 384, true},
		{300, 100, 1003, false},
		{37, 1003, 96, false},
	} {
		n, c, oc := sh.n, sh.c, sh.oc
		t.Run(fmt.Sprintf("N%d_C%d_OC%d", n, c, oc), func(t *testing.T) {
			env(t)
			inp, inpV := upload(t, "inp", normal(r, n*c, 1))
			w, wV := upload(t, "w", normal(r, oc*c, 1))
			bias, biasV := upload(t, "bias", normal(r, oc, 1))
			dout, doutV := upload(t, "dout", normal(r, n*oc, 1))
			wantOut := make([]float64, n*oc)
			ref.MatmulForward(wantOut, inpV, wV, biasV, n, c, oc)
			wantIn := make([]float64, n*c)
			ref.MatmulBackward(wantIn, make([]float64, oc*c), nil, doutV, inpV, wV, n, c, oc)

			ws := matmulWorkspace(t, n, c, oc)
			fwd, bwd := MatmulPlan(n, oc, c, sms(), ws), MatmulPlan(n, c, oc, sms(), ws)
			t.Logf("plans on %d SMs: forward %v, input gradient %v", sms(), fwd, bwd)
			if sh.splits && fwd.Slices < 2 && bwd.Slices < 2 {
				t.Errorf("the launcher splits neither the forward nor the input gradient on %d SMs", sms())
			}
			out := buffer(t, "out", n*oc)
			run(t, MatmulForwardWith(out, inp, w, bias, ws, n, c, oc, sms(), MatmulOptions{}))
			checkClose(t, "out "+fwd.String(), download(t, out, n*oc), wantOut, matmulTol)
			matmulCountersZero(t, "out "+fwd.String(), ws)
			dinp := buffer(t, "dinp", n*c)
			run(t, MatmulBackwardInputPlan(dinp, dout, w, ws, n, c, oc, bwd))
			checkClose(t, "dinp "+bwd.String(), download(t, dinp, n*c), wantIn, matmulTol)
			matmulCountersZero(t, "dinp "+bwd.String(), ws)

			for _, s := range []int{2, 3, 8} {
				var firstOut, firstIn []float64
				for _, tile := range gemmTiles {
					fp := gemmplan.SplitOf(tile, n, oc, c, s)
					fws := matmulWorkspaceFor(t, fp)
					for _, withBias := range []bool{true, false} {
						b, want := bias, wantOut
						if !withBias {
							b = program.View{}
							want = make([]float64, n*oc)
							ref.MatmulForward(want, inpV, wV, nil, n, c, oc)
						}
						out := buffer(t, "out", n*oc)
						run(t, MatmulForwardPlan(out, inp, w, b, fws, n, c, oc, fp))
						got := download(t, out, n*oc)
						checkClose(t, fmt.Sprintf("out %v bias %v", fp, withBias), got, want, matmulTol)
						matmulCountersZero(t, "out "+fp.String(), fws)
						if withBias {
							if firstOut == nil {
								firstOut = got
							} else {
								sameBits(t, "out "+fp.String()+" vs "+gemmTiles[0].String(), got, firstOut)
							}
						}
					}
					bp := gemmplan.SplitOf(tile, n, c, oc, s)
					bws := matmulWorkspaceFor(t, bp)
					dinp := buffer(t, "dinp", n*c)
					run(t, MatmulBackwardInputPlan(dinp, dout, w, bws, n, c, oc, bp))
					got := download(t, dinp, n*c)
					checkClose(t, "dinp "+bp.String(), got, wantIn, matmulTol)
					matmulCountersZero(t, "dinp "+bp.String(), bws)
					if firstIn == nil {
						firstIn = got
					} else {
						sameBits(t, "dinp "+bp.String()+" vs "+gemmTiles[0].String(), got, firstIn)
					}
				}
			}
		})
	}
}

// TestMatmulSplitKRefuses: a plan that does not fit its workspace is an
// error before any launch, not an out-of-bounds write. A split plan with no
// workspace is only checked by program.Validate, never launched: if
// Validate let it through, the kernel would write its partials through a
// null pointer and ruin the context of every later test.
func TestMatmulSplitKRefuses(t *testing.T) {
	x := env(t)
	const n, c, oc = 512, 128, 384
	dw, dout, inp := buffer(t, "dw", oc*c), buffer(t, "dout", n*oc), buffer(t, "inp", n*c)
	p := gemmplan.SplitOf(gemmTiles[2], oc, c, n, 8)
	if p.Slices < 2 {
		t.Fatalf("plan %v does not split", p)
	}
	before := x.LaunchCounts()["matmul_backward_weight"]
	small := matmulWorkspaceSized(t, p.PartialFloats()-1, p.Counters())
	if err := launch(t, MatmulBackwardWeightPlan(dw, dout, inp, small, n, c, oc, p)); err == nil {
		t.Error("a plan one float larger than its workspace was launched")
	} else {
		var le *cuexec.LaunchError
		if errors.As(err, &le) {
			t.Errorf("a plan one float larger than its workspace reached the driver: %v", err)
		}
		if !strings.Contains(err.Error(), "partials") {
			t.Errorf("error %q does not name the partials", err)
		}
		t.Logf("refused: %v", err)
	}
	small = matmulWorkspaceSized(t, p.PartialFloats(), p.Counters()-1)
	if err := launch(t, MatmulBackwardWeightPlan(dw, dout, inp, small, n, c, oc, p)); err == nil {
		t.Error("a plan one counter larger than its workspace was launched")
	} else if !strings.Contains(err.Error(), "counters") {
		t.Errorf("error %q does not name the counters", err)
	}
	if got := x.LaunchCounts()["matmul_backward_weight"]; got != before {
		t.Errorf("matmul_backward_weight launched %d times by refused plans", got-before)
	}
	none := MatmulBackwardWeightPlan(dw, dout, inp, MatmulScratch{}, n, c, oc, p)
	if err := program.Validate(&none); err == nil {
		t.Errorf("a split plan (%v) without a workspace passes program.Validate: launched, it would write its partials through a null pointer", p)
	}
	if got := MatmulWeightPlan(n, c, oc, sms(), MatmulScratch{}); got.Slices != 1 {
		t.Errorf("plan without a workspace: %v, want no split", got)
	}
}

// TestMatmulTileChoice pins the launchers' choices on a 132-SM GPU
// (H100/H200) for some of the model's products (see docs/matmul.md; the
// full tables are internal/gemmplan's tests). It needs no device.
func TestMatmulTileChoice(t *testing.T) {
	const sms = 132
	for _, tc := range []struct {
		m, n, k int
		want    string
	}{
		{8192, 2304, 768, "128x128"}, // gpt2-124m qkv forward
		{8192, 768, 768, "128x128"},  // gpt2-124m attproj forward, input gradients
		{2048, 1536, 512, "128x64"},  // small qkv forward
		{2048, 8192, 512, "128x128"}, // small lm head forward
		{1, 1, 1, "128x64"},
	} {
		if got := gemmplan.Pick(tc.m, tc.n, tc.k, sms).String(); got != tc.want {
			t.Errorf("Pick(%d, %d, %d) = %s, want %s", tc.m, tc.n, tc.k, got, tc.want)
		}
	}
	// The forward launcher uses that tile: out(n,oc) is m×n over k = c.
	noBuf := func(name string, e program.Elem, n int) program.View {
		return (&program.Buffer{Name: name, Layer: -1, Elem: e, Elems: int64(n)}).All()
	}
	const n, c, oc = 2048, 512, 1536
	op := MatmulForward(noBuf("out", program.F32, n*oc), noBuf("inp", program.F32, n*c), noBuf("w", program.F32, oc*c),
		program.View{}, n, c, oc, sms)
	tile := gemmplan.Pick(n, oc, c, sms)
	if op.Block != program.D1(tile.Threads()) || op.Grid != program.D1(tile.Blocks(n, oc)) {
		t.Errorf("MatmulForward(%d, %d, %d) launches grid %v block %v, want the %v tile's %v and %v",
			n, c, oc, op.Grid, op.Block, tile, program.D1(tile.Blocks(n, oc)), program.D1(tile.Threads()))
	}
	for _, tc := range []struct {
		n, c, oc int
		want     string
	}{
		{512, 128, 384, "64x64/4×12 S=8/64"},    // tiny qkv weight gradient
		{2048, 512, 512, "64x64/4×64 S=4/512"},  // small attproj
		{8192, 768, 768, "128x128×36 S=11/752"}, // gpt2-124m attproj
		{8192, 768, 50257, "128x128×2358 S=1/8192"},
	} {
		f, k := MatmulScratchSize(tc.n, tc.c, tc.oc)
		ws := MatmulScratch{Partials: noBuf("partials", program.F32, f), Counters: noBuf("counters", program.I32, k)}
		if got := MatmulWeightPlan(tc.n, tc.c, tc.oc, sms, ws).String(); got != tc.want {
			t.Errorf("MatmulWeightPlan(%d, %d, %d) = %s, want %s", tc.n, tc.c, tc.oc, got, tc.want)
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
func matmulBenchEnv(b *testing.B) *cuexec.Executor {
	b.Helper()
	x := env(b)
	sync := x.SyncEachLaunch
	x.SyncEachLaunch = false
	b.Cleanup(func() { x.SyncEachLaunch = sync })
	return x
}

// matmulBenchBuffer allocates n floats set to v.
func matmulBenchBuffer(b *testing.B, name string, n int, v float32) program.View {
	b.Helper()
	p := alloc(b, name, program.F32, n).All()
	run(b, Fill(p, n, v))
	return p
}

// matmulTimeLaunches returns the mean seconds per launch of op over b.N
// launches, timed with CUDA events on the executor's stream. The op is
// prepared by its first launch; the timed ones allocate nothing.
func matmulTimeLaunches(b *testing.B, x *cuexec.Executor, op program.Op) float64 {
	b.Helper()
	s := x.Stream()
	syncAll(b)
	for range 3 { // warm-up: JIT, caches, clocks
		if err := x.Do(&op); err != nil {
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
		if err := x.Do(&op); err != nil {
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
			x := matmulBenchEnv(b)
			inp := matmulBenchBuffer(b, "inp", sh.n*sh.c, 0.01)
			w := matmulBenchBuffer(b, "w", sh.oc*sh.c, 0.01)
			out := matmulBenchBuffer(b, "out", sh.n*sh.oc, 0)
			var bias program.View
			if sh.bias {
				bias = matmulBenchBuffer(b, "bias", sh.oc, 0.01)
			}
			sec := matmulTimeLaunches(b, x, MatmulForward(out, inp, w, bias, sh.n, sh.c, sh.oc, sms()))
			matmulReportGEMM(b, sec, sh.n, sh.c, sh.oc)
		})
	}
}

func BenchmarkMatmulBackwardInput(b *testing.B) {
	for _, sh := range matmulBenchShapes {
		b.Run(sh.name, func(b *testing.B) {
			x := matmulBenchEnv(b)
			dout := matmulBenchBuffer(b, "dout", sh.n*sh.oc, 0.01)
			w := matmulBenchBuffer(b, "w", sh.oc*sh.c, 0.01)
			dinp := matmulBenchBuffer(b, "dinp", sh.n*sh.c, 0)
			sec := matmulTimeLaunches(b, x, MatmulBackwardInput(dinp, dout, w, sh.n, sh.c, sh.oc, sms()))
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
			x := matmulBenchEnv(b)
			dout := matmulBenchBuffer(b, "dout", sh.n*sh.oc, 0.01)
			inp := matmulBenchBuffer(b, "inp", sh.n*sh.c, 0.01)
			dw := matmulBenchBuffer(b, "dw", sh.oc*sh.c, 0)
			var ws MatmulScratch
			if split {
				f, c := MatmulScratchSize(sh.n, sh.c, sh.oc)
				ws = MatmulScratch{Partials: matmulBenchBuffer(b, "partials", max(f, 1), 0),
					Counters: alloc(b, "counters", program.I32, max(c, 1)).All()}
				ws.Counters.Buf.State = true
				run(b, Memset(ws.Counters)) // the counters start at zero
			}
			b.ReportMetric(float64(MatmulWeightPlan(sh.n, sh.c, sh.oc, sms(), ws).Slices), "slices")
			sec := matmulTimeLaunches(b, x, MatmulBackwardWeight(dw, dout, inp, ws, sh.n, sh.c, sh.oc, sms()))
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
			x := matmulBenchEnv(b)
			dout := matmulBenchBuffer(b, "dout", sh.n*sh.oc, 0.01)
			dbias := matmulBenchBuffer(b, "dbias", sh.oc, 0)
			sec := matmulTimeLaunches(b, x, BiasBackward(dbias, dout, sh.n, sh.oc))
			b.ReportMetric(4*float64(sh.n)*float64(sh.oc)/sec/1e9, "GB/s")
			b.ReportMetric(sec*1e6, "us/launch")
		})
	}
}

// BenchmarkMatmulPlanSweep times every product of the tiny and small
// presets under forced plans: the 64×64 tiles of gemm and gemm_fine at 1,
// 2, 4 and 8 slices, and the launcher's own plan ("plan"), so that the
// cost model's choice can be read against the measured best. Names are
// preset/layer/product/tile_S; us/launch is what to compare.
func BenchmarkMatmulPlanSweep(b *testing.B) {
	small := matmulBenchShapes[5:]
	for _, sh := range append(append(matmulTinyBenchShapes[:0:0], matmulTinyBenchShapes...), small...) {
		for _, prod := range []string{"fwd", "dinp", "dw"} {
			m, n, k := sh.n, sh.oc, sh.c
			switch prod {
			case "dinp":
				m, n, k = sh.n, sh.c, sh.oc
			case "dw":
				m, n, k = sh.oc, sh.c, sh.n
			}
			plans := map[string]gemmplan.Split{}
			for _, t := range gemmTiles[2:] {
				for _, s := range []int{1, 2, 4, 8} {
					p := gemmplan.SplitOf(t, m, n, k, s)
					if p.Slices == s {
						plans[fmt.Sprintf("%v_S%d", t, s)] = p
					}
				}
			}
			f, c := MatmulScratchSize(sh.n, sh.c, sh.oc)
			planned := gemmplan.Product(m, n, k, sms(), f, c)
			plans["plan_"+planned.String()] = planned
			for name, p := range plans {
				b.Run(sh.name+"/"+prod+"/"+name, func(b *testing.B) {
					x := matmulBenchEnv(b)
					a := matmulBenchBuffer(b, "a", sh.n*max(sh.c, sh.oc), 0.01)
					w := matmulBenchBuffer(b, "w", max(sh.n, sh.oc)*sh.c, 0.01)
					out := matmulBenchBuffer(b, "out", max(sh.n, sh.oc)*max(sh.c, sh.oc), 0)
					ws := MatmulScratch{Partials: matmulBenchBuffer(b, "partials", max(p.PartialFloats(), 1), 0),
						Counters: alloc(b, "counters", program.I32, max(p.Counters(), 1)).All()}
					ws.Counters.Buf.State = true
					run(b, Memset(ws.Counters))
					var op program.Op
					switch prod {
					case "fwd":
						op = MatmulForwardPlan(out, a, w, program.View{}, ws, sh.n, sh.c, sh.oc, p)
					case "dinp":
						op = MatmulBackwardInputPlan(out, a, w, ws, sh.n, sh.c, sh.oc, p)
					default:
						op = MatmulBackwardWeightPlan(out, a, w, ws, sh.n, sh.c, sh.oc, p)
					}
					sec := matmulTimeLaunches(b, x, op)
					matmulReportGEMM(b, sec, sh.n, sh.c, sh.oc)
				})
			}
		}
	}
}
