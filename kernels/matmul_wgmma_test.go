//go:build gpu

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/gemmplan"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
)

// The tests of ptx/matmul_wgmma.cu, the Hopper tier: every product against
// the float64 reference on the bf16 inputs, at shapes whose M, N and K are
// not multiples of the tiles (so TMA's zero fill covers the tails, and a
// tail left uncomputed or read from the wrong place shows against the
// reference), with K long enough to wrap the ring of stages several times,
// the (n, oc) tensor padded (NaN in dout's padding, poison in out's that
// must stay), every plan the planner may take (both widths, unsplit and
// split), each launch twice into fresh poisoned outputs for the same bits.
// They need compute capability 9.0; on another GPU there is no such tier.

var wgmmaShapes = []mmaShape{
	{1, 8, 1, 8},            // one element of each, everything a tail
	{37, 104, 1000, 1008},   // K = 104: a full and a partial k-tile; ld > oc
	{67, 16, 45, 48},        // K = 16: one partial k-tile
	{200, 72, 300, 320},     // ld > oc
	{129, 56, 130, 136},     // one row past a tile
	{300, 256, 384, 448},    // several tiles, padded
	{512, 768, 2304, 2304},  // a gpt2-124m product (qkv) at a shorter n
	{1100, 64, 200, 200},    // 9 row tiles: a GROUP_M group and a partial one; dw's K = 1100 wraps the ring
	{256, 1536, 136, 136},   // forward K = 1536: 24 k-tiles, the ring wrapped 4 to 6 times
	{2048, 512, 1536, 1536}, // the small preset's qkv
	{64, 64, 50257, 50304},  // the lm head's vocabulary, padded (a short n and c, for the reference)
}

// wgmmaPlans are the plans a test forces on an m×n product over k: the
// planner's within ws, then each width unsplit and split in 2 and 3
// (where k allows that many slices).
func wgmmaPlans(m, n, k int, ws MatmulScratch) []gemmplan.MMASplit {
	plans := []gemmplan.MMASplit{wgmmaPlan(m, n, k, sms(), ws)}
	for _, bn := range gemmplan.WGMMABlockNs {
		for _, s := range []int{1, 2, 3} {
			if p := gemmplan.MMASplitOf(m, n, k, s, bn); p.Slices == s {
				plans = append(plans, p)
			}
		}
	}
	return plans
}

// wgmmaGrids are the persistent grids a test forces besides the planned
// one (0): one block doing every unit in turn, and a few, so that the
// ring of stages runs on from one unit into the next.
var wgmmaGrids = []int{0, 1, 5}

// withGrid is op with its persistent grid forced to g blocks (0: as built).
func withGrid(op program.Op, g int) program.Op {
	if g > 0 {
		op.Grid = program.D1(g)
	}
	return op
}

// wgmmaScratchFor is ws if it holds p, else a fresh workspace that does.
func wgmmaScratchFor(t *testing.T, ws MatmulScratch, p gemmplan.MMASplit) MatmulScratch {
	if int64(p.PartialFloats()) <= ws.Partials.Elems && int64(p.Counters()) <= ws.Counters.Elems {
		return ws
	}
	return matmulWorkspaceSized(t, max(p.PartialFloats(), 1), max(p.Counters(), 1))
}

// gridsFor is the grids to run plan i of wgmmaPlans at: every forced grid
// for the planner's plan (0), the built one for the others.
func gridsFor(i int) []int {
	if i == 0 {
		return wgmmaGrids
	}
	return wgmmaGrids[:1]
}

// sameAsFirst fails the test unless got has first's bits (the result of a
// plan does not depend on its grid), and returns first, or got if first
// is nil.
func sameAsFirst(t *testing.T, what string, first, got []float64) []float64 {
	t.Helper()
	if first == nil {
		return got
	}
	sameBits(t, what+" against the planned grid", got, first)
	return first
}

func TestMatmulWGMMA(t *testing.T) {
	env(t)
	if i := testDev.Info; i.CCMajor != 9 || i.CCMinor != 0 {
		t.Skipf("%s is compute capability %d.%d: the Hopper tier (sm_90a) runs on 9.0 only", i.Name, i.CCMajor, i.CCMinor)
	}
	r := rng(t)
	for _, sh := range wgmmaShapes {
		t.Run(fmt.Sprintf("N%d_C%d_OC%d_ld%d", sh.n, sh.c, sh.oc, sh.ld), func(t *testing.T) {
			env(t) // a subtest runs on its own goroutine
			testMatmulWGMMA(t, r, sh)
		})
	}
}

func testMatmulWGMMA(t *testing.T, r *rand.Rand, sh mmaShape) {
	d := mmaDtypes[0] // bf16
	n, c, oc, ld := sh.n, sh.c, sh.oc, sh.ld
	inp, _, inpV := d.upload(t, "inp", normal(r, n*c, 1))
	w, _, wV := d.upload(t, "w", normal(r, oc*c, 1))
	bias, biasV, _ := d.upload(t, "bias", normal(r, oc, 1))
	dout, _, doutP := d.upload(t, "dout", mmaPadded(r, sh))
	doutV := mmaDense(doutP, sh)
	if !WGMMAFits(c, ld, inp, w, bias, dout) {
		t.Fatalf("shape %v does not fit TMA: fix the test's shapes", sh)
	}
	// A workspace larger than the model's, so that the planner may split
	// every product.
	ws := matmulWorkspaceSized(t, 16<<20, 4096)

	for _, withBias := range []bool{true, false} {
		b, bv := program.View{}, []float64(nil)
		if withBias {
			b, bv = bias, biasV
		}
		want := make([]float64, n*oc)
		ref.MatmulForward(want, inpV, wV, bv, n, c, oc)
		for i, p := range wgmmaPlans(n, oc, c, ws) {
			pws := wgmmaScratchFor(t, ws, p)
			var first []float64
			for _, g := range gridsFor(i) {
				what := fmt.Sprintf("out (bias %v) %v grid %d", withBias, p, g)
				got := mmaRunTwice(t, d, what, n*ld, func(out program.View) program.Op {
					return withGrid(MatmulForwardWGMMAPlan(out, inp, w, b, pws, n, c, oc, ld, p, sms()), g)
				}, func() { matmulCountersZero(t, what, pws) })
				checkClose(t, what, mmaDense(got, sh), want, d.tol)
				mmaPaddingPoisoned(t, what, got, sh)
				first = sameAsFirst(t, what, first, got)
			}
		}
	}

	wantDinp, wantDw := make([]float64, n*c), make([]float64, oc*c)
	ref.MatmulBackward(wantDinp, wantDw, nil, doutV, inpV, wV, n, c, oc)
	for i, p := range wgmmaPlans(n, c, oc, ws) {
		pws := wgmmaScratchFor(t, ws, p)
		var first []float64
		for _, g := range gridsFor(i) {
			what := fmt.Sprintf("dinp %v grid %d", p, g)
			got := mmaRunTwice(t, d, what, n*c, func(out program.View) program.Op {
				return withGrid(MatmulBackwardInputWGMMAPlan(out, dout, w, pws, n, c, oc, ld, p, sms()), g)
			}, func() { matmulCountersZero(t, what, pws) })
			checkClose(t, what, got, wantDinp, d.tol)
			first = sameAsFirst(t, what, first, got)
		}
	}
	for i, p := range wgmmaPlans(oc, c, n, ws) {
		pws := wgmmaScratchFor(t, ws, p)
		var first []float64
		for _, g := range gridsFor(i) {
			what := fmt.Sprintf("dw %v grid %d", p, g)
			got := mmaRunTwice(t, d, what, oc*c, func(out program.View) program.Op {
				return withGrid(MatmulBackwardWeightWGMMAPlan(out, dout, inp, pws, n, c, oc, ld, p, sms()), g)
			}, func() { matmulCountersZero(t, what, pws) })
			checkClose(t, what, got, wantDw, d.tol)
			first = sameAsFirst(t, what, first, got)
		}
	}

	// The backward convenience, as the model calls it: the product plans of
	// the model's workspace, and the bias gradient.
	mws := wgmmaModelWorkspace(t, n, c, oc)
	dinp, dw, dbias := d.poison(t, "dinp", n*c), d.poison(t, "dw", oc*c), d.poison(t, "dbias", oc)
	ops := MatmulBackwardWGMMA(dinp, dw, dbias, dout, inp, w, mws, n, c, oc, ld, sms())
	if len(ops) != 3 || ops[0].Name != "matmul_backward_input_wgmma" || ops[1].Name != "matmul_backward_weight_wgmma" {
		t.Fatalf("MatmulBackwardWGMMA: %d ops (%v), want the input and weight gradients and the bias gradient", len(ops), ops)
	}
	run(t, ops...)
	checkClose(t, "MatmulBackwardWGMMA dinp", d.download(t, dinp, n*c), wantDinp, d.tol)
	checkClose(t, "MatmulBackwardWGMMA dw", d.download(t, dw, oc*c), wantDw, d.tol)
	matmulCountersZero(t, "MatmulBackwardWGMMA", mws)
}

// tf32Trunc is x as the Hopper tier's tf32 entries multiply it: fp32 with
// the low 13 mantissa bits dropped (truncated toward zero; wgmma reads the
// fp32 bits TMA copied to shared memory, with no cvt.rna).
func tf32Trunc(x float64) float64 {
	b := math.Float32bits(float32(x))
	if b&0x7f800000 != 0x7f800000 {
		b &^= 0x1fff
	}
	return float64(math.Float32frombits(b))
}

// tf32TruncBound bounds the relative error of a tf32 product on the Hopper
// tier against the float64 product of the exact fp32 operands: each
// truncated operand is off by less than 2^-10 relative, so a term by less
// than 2^-9 (biased toward zero), and the fp32 sum adds ~2^-24·√K; 2^-8
// leaves a factor of 2 for the norm over random terms and fails any wrong
// term. The same bound holds against matmul_mma's tf32 (rounded, 2^-11 an
// operand).
const tf32TruncBound = 1.0 / 256

// wgmmaTF32Refs are an output's references: on the truncated operands
// (what the tensor cores multiply: tf32Tol, the fp32 accumulation's
// error) and on the exact ones (tf32TruncBound).
type wgmmaTF32Refs struct{ trunc, exact []float64 }

// wgmmaTF32AccTol bounds the relative error of a tf32 product over k
// terms against the float64 product of the truncated operands: the fp32
// accumulation's alone, tf32Tol, plus k·2^-27. The tensor cores' fp32
// accumulation drifts linearly in k (on an H200: 5.4e-6 at k ≤ 2304,
// 1.19e-4 at the lm head's k = 50257, about 2^-28.6 a term, biased as
// truncation is); 2^-27 is 4× that, and still half what rounded operands
// give at k = 50257 (9.8e-4), so the check tells truncation from
// rounding at every k.
func wgmmaTF32AccTol(k int) float64 { return tf32Tol + float64(k)/(1<<27) }

// checkTF32 checks got, a product over k terms, against both references.
// A mismatch with the truncated reference alone is an error, not fatal:
// it says the tensor cores round the operands otherwise, and the error
// against the rounded reference is logged to say how.
func checkTF32(t *testing.T, what string, k int, got []float64, want wgmmaTF32Refs, rounded func() []float64) {
	t.Helper()
	checkClose(t, what+" (exact operands)", got, want.exact, tf32TruncBound)
	if e, tol := relErr(got, want.trunc), wgmmaTF32AccTol(k); !(e <= tol) {
		t.Errorf("%s: relative error %.3g against the truncated operands' product, allowed %.3g; against the rounded operands' %.3g",
			what, e, tol, relErr(got, rounded()))
		return
	}
	t.Logf("%s: relative error %.3g against the truncated operands' product", what, relErr(got, want.trunc))
}

func truncAll(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = tf32Trunc(x)
	}
	return out
}

func roundAll(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = tf32Round(x)
	}
	return out
}

// TestMatmulWGMMATF32 is TestMatmulWGMMA for the tf32 entries (f32 views),
// at the same shapes, plans and forced grids: every product against the
// float64 references (wgmmaTF32Refs), bitwise the same on every grid and
// on a rerun, the lm head's padding keeping its poison, the transposes
// the backward products read exact, and the forward against matmul_mma's
// tf32 entry within tf32TruncBound.
func TestMatmulWGMMATF32(t *testing.T) {
	env(t)
	if i := testDev.Info; i.CCMajor != 9 || i.CCMinor != 0 {
		t.Skipf("%s is compute capability %d.%d: the Hopper tier (sm_90a) runs on 9.0 only", i.Name, i.CCMajor, i.CCMinor)
	}
	r := rng(t)
	for _, sh := range wgmmaShapes {
		t.Run(fmt.Sprintf("N%d_C%d_OC%d_ld%d", sh.n, sh.c, sh.oc, sh.ld), func(t *testing.T) {
			env(t)
			testMatmulWGMMATF32(t, r, sh)
		})
	}
}

// uploadTransposed runs MatmulTransposeTF32 of in (rows × cols, stride
// ldi) into a poisoned buffer of cols rows of stride ldo and checks it
// against v, the values in holds: exact, and the padding columns still
// poisoned.
func uploadTransposed(t *testing.T, what string, in program.View, v []float64, rows, cols, ldi, ldo int) program.View {
	t.Helper()
	out := buffer(t, what, cols*ldo)
	op := MatmulTransposeTF32(out, in, rows, cols, ldi, ldo)
	mmaMatchesPTX(t, op)
	run(t, op)
	got := download(t, out, cols*ldo)
	for c := 0; c < cols; c++ {
		for r := 0; r < ldo; r++ {
			g := got[c*ldo+r]
			if r >= rows {
				if !math.IsNaN(g) {
					t.Fatalf("%s: padding (%d, %d) was written: %g", what, c, r, g)
				}
				continue
			}
			if w := v[r*ldi+c]; math.Float64bits(g) != math.Float64bits(w) && !(math.IsNaN(g) && math.IsNaN(w)) {
				t.Fatalf("%s: (%d, %d) is %g, want %g", what, c, r, g, w)
			}
		}
	}
	return out
}

func testMatmulWGMMATF32(t *testing.T, r *rand.Rand, sh mmaShape) {
	d := mmaDtypes[1] // tf32
	n, c, oc, ld := sh.n, sh.c, sh.oc, sh.ld
	inp, inpV, _ := d.upload(t, "inp", normal(r, n*c, 1))
	w, wV, _ := d.upload(t, "w", normal(r, oc*c, 1))
	bias, biasV, _ := d.upload(t, "bias", normal(r, oc, 1))
	dout, doutP, _ := d.upload(t, "dout", mmaPadded(r, sh))
	doutV := mmaDense(doutP, sh)
	if !WGMMAFits(c, ld, inp, w, bias, dout) {
		t.Fatalf("shape %v does not fit TMA: fix the test's shapes", sh)
	}
	ws := matmulWorkspaceSized(t, 16<<20, 4096)
	inpT, wT, doutT := truncAll(inpV), truncAll(wV), truncAll(doutV)

	for _, withBias := range []bool{true, false} {
		b, bv := program.View{}, []float64(nil)
		if withBias {
			b, bv = bias, biasV
		}
		var want wgmmaTF32Refs
		want.trunc, want.exact = make([]float64, n*oc), make([]float64, n*oc)
		ref.MatmulForward(want.trunc, inpT, wT, bv, n, c, oc)
		ref.MatmulForward(want.exact, inpV, wV, bv, n, c, oc)
		rounded := func() []float64 {
			v := make([]float64, n*oc)
			ref.MatmulForward(v, roundAll(inpV), roundAll(wV), bv, n, c, oc)
			return v
		}
		for i, p := range wgmmaPlans(n, oc, c, ws) {
			pws := wgmmaScratchFor(t, ws, p)
			var first []float64
			for _, g := range gridsFor(i) {
				what := fmt.Sprintf("tf32 out (bias %v) %v grid %d", withBias, p, g)
				got := mmaRunTwice(t, d, what, n*ld, func(out program.View) program.Op {
					return withGrid(MatmulForwardWGMMAPlan(out, inp, w, b, pws, n, c, oc, ld, p, sms()), g)
				}, func() { matmulCountersZero(t, what, pws) })
				checkTF32(t, what, c, mmaDense(got, sh), want, rounded)
				mmaPaddingPoisoned(t, what, got, sh)
				first = sameAsFirst(t, what, first, got)
			}
		}
		// The sm_80 tier's tf32 forward on the same inputs (rounded
		// operands): the two tiers agree within the truncation's bound.
		mma := mmaRunTwice(t, d, "mma.sync tf32 out", n*ld, func(out program.View) program.Op {
			return MatmulForwardMMA(out, inp, w, b, n, c, oc, ld, sms())
		}, nil)
		wg := mmaRunTwice(t, d, "wgmma tf32 out", n*ld, func(out program.View) program.Op {
			return MatmulForwardWGMMA(out, inp, w, b, ws, n, c, oc, ld, sms())
		}, func() { matmulCountersZero(t, "wgmma tf32 out", ws) })
		checkClose(t, fmt.Sprintf("tf32 out (bias %v) against matmul_forward_tf32", withBias), mmaDense(wg, sh), mmaDense(mma, sh), tf32TruncBound)
	}

	// The backward products read transposes (the model's
	// MatmulBackwardWGMMATF32 makes them the same way).
	ldt, ldn := roundUp8(oc), roundUp8(n)
	wTv := uploadTransposed(t, "wT", w, wV, oc, c, c, ldt)
	doutTv := uploadTransposed(t, "doutT", dout, doutP, n, oc, ld, ldn)
	inpTv := uploadTransposed(t, "inpT", inp, inpV, n, c, c, ldn)

	var wantDinp, wantDw wgmmaTF32Refs
	wantDinp.trunc, wantDw.trunc = make([]float64, n*c), make([]float64, oc*c)
	wantDinp.exact, wantDw.exact = make([]float64, n*c), make([]float64, oc*c)
	ref.MatmulBackward(wantDinp.trunc, wantDw.trunc, nil, doutT, inpT, wT, n, c, oc)
	ref.MatmulBackward(wantDinp.exact, wantDw.exact, nil, doutV, inpV, wV, n, c, oc)
	roundedBackward := func(dinp bool) func() []float64 {
		return func() []float64 {
			di, dw := make([]float64, n*c), make([]float64, oc*c)
			ref.MatmulBackward(di, dw, nil, roundAll(doutV), roundAll(inpV), roundAll(wV), n, c, oc)
			if dinp {
				return di
			}
			return dw
		}
	}
	for i, p := range wgmmaPlans(n, c, oc, ws) {
		pws := wgmmaScratchFor(t, ws, p)
		var first []float64
		for _, g := range gridsFor(i) {
			what := fmt.Sprintf("tf32 dinp %v grid %d", p, g)
			got := mmaRunTwice(t, d, what, n*c, func(out program.View) program.Op {
				return withGrid(MatmulBackwardInputWGMMATF32Plan(out, dout, wTv, pws, n, c, oc, ld, ldt, p, sms()), g)
			}, func() { matmulCountersZero(t, what, pws) })
			checkTF32(t, what, oc, got, wantDinp, roundedBackward(true))
			first = sameAsFirst(t, what, first, got)
		}
	}
	for i, p := range wgmmaPlans(oc, c, n, ws) {
		pws := wgmmaScratchFor(t, ws, p)
		var first []float64
		for _, g := range gridsFor(i) {
			what := fmt.Sprintf("tf32 dw %v grid %d", p, g)
			got := mmaRunTwice(t, d, what, oc*c, func(out program.View) program.Op {
				return withGrid(MatmulBackwardWeightWGMMATF32Plan(out, doutTv, inpTv, pws, n, c, oc, ldn, p, sms()), g)
			}, func() { matmulCountersZero(t, what, pws) })
			checkTF32(t, what, n, got, wantDw, roundedBackward(false))
			first = sameAsFirst(t, what, first, got)
		}
	}

	// The backward as the model runs it: the transposes into one scratch,
	// the model's workspace, and (where dout is dense) the bias gradient;
	// then with the weight gradient left on mma.sync.
	mws := wgmmaModelWorkspace(t, n, c, oc)
	for _, weightGrad := range []bool{true, false} {
		dinp, dw := d.poison(t, "dinp", n*c), d.poison(t, "dw", oc*c)
		dbias := program.View{}
		if ld == oc {
			dbias = d.poison(t, "dbias", oc)
		}
		tr := buffer(t, "tf32_transposes", int(MatmulTransposeScratchTF32(n, c, oc, weightGrad)))
		ops := MatmulBackwardWGMMATF32(dinp, dw, dbias, dout, inp, w, tr, mws, n, c, oc, ld, sms(), weightGrad)
		run(t, ops...)
		what := fmt.Sprintf("MatmulBackwardWGMMATF32 (weight gradient on wgmma %v)", weightGrad)
		checkTF32(t, what+" dinp", oc, d.download(t, dinp, n*c), wantDinp, roundedBackward(true))
		gotDw := d.download(t, dw, oc*c)
		if weightGrad {
			checkTF32(t, what+" dw", n, gotDw, wantDw, roundedBackward(false))
		} else {
			checkClose(t, what+" dw", gotDw, roundedBackward(false)(), tf32Tol)
		}
		if !dbias.IsNull() {
			wantDb := make([]float64, oc)
			for i := 0; i < n; i++ {
				for j := 0; j < oc; j++ {
					wantDb[j] += doutV[i*oc+j]
				}
			}
			checkClose(t, what+" dbias", d.download(t, dbias, oc), wantDb, 1e-5)
		}
		matmulCountersZero(t, what, mws)
	}
}

// TestMatmulWGMMAFits: the operands TMA cannot read are refused, so the
// model takes matmul_mma for them.
func TestMatmulWGMMAFits(t *testing.T) {
	env(t)
	v := bf16Buffer(t, "v", 64)
	f := buffer(t, "f", 64)
	cases := []struct {
		what  string
		c, ld int
		views []program.View
		want  bool
	}{
		{"aligned bf16", 64, 64, []program.View{v}, true},
		{"c not a multiple of 8", 100, 64, []program.View{v}, false},
		{"ld not a multiple of 8", 64, 1003, []program.View{v}, false},
		{"f32 views (tf32)", 64, 64, []program.View{f}, true},
		{"bf16 and f32 views", 64, 64, []program.View{v, f}, false},
		{"an f32 view 4 elements in", 64, 64, []program.View{f.Buf.Slice("x", 4, 8)}, false},
		{"a view 4 elements in", 64, 64, []program.View{v.Buf.Slice("x", 4, 8)}, false},
	}
	for _, c := range cases {
		if got := WGMMAFits(c.c, c.ld, c.views...); got != c.want {
			t.Errorf("%s: WGMMAFits = %v, want %v", c.what, got, c.want)
		}
	}
}

// BenchmarkMatmulWGMMA times gpt2-124m's products (n = 8192), the small
// preset's, and 8192³ on the Hopper tier, each at the planner's choice and
// at each width unsplit, beside the sm_80 tier's planned kernel in the
// same process: the median of mmaBenchReps launches, TFLOP/s = 2·n·c·oc/t.
// One line a product is printed for docs/matmul.md. Run it once:
// kernels.test -test.run '^$' -test.bench MatmulWGMMA -test.benchtime 1x
func BenchmarkMatmulWGMMA(b *testing.B) {
	x := matmulBenchEnv(b)
	r := rand.New(rand.NewPCG(3, 4))
	d := mmaDtypes[0]
	shapes := append(mmaBenchShapes[:len(mmaBenchShapes):len(mmaBenchShapes)],
		struct {
			name string
			mmaShape
		}{"s.qkv", mmaShape{2048, 512, 1536, 1536}},
		struct {
			name string
			mmaShape
		}{"s.fc", mmaShape{2048, 512, 2048, 2048}},
		struct {
			name string
			mmaShape
		}{"s.fcproj", mmaShape{2048, 2048, 512, 512}})
	var lines []string
	for _, sh := range shapes {
		n, c, oc, ld := sh.n, sh.c, sh.oc, sh.ld
		inp := mmaBenchBuffer(b, r, d, "inp", n*c)
		w := mmaBenchBuffer(b, r, d, "w", oc*c)
		bias := mmaBenchBuffer(b, r, d, "bias", oc)
		dout := mmaBenchBuffer(b, r, d, "dout", n*ld)
		out := alloc(b, "out", d.elem, n*ld).All()
		dinp := alloc(b, "dinp", d.elem, n*c).All()
		dw := alloc(b, "dw", d.elem, oc*c).All()
		ws := wgmmaModelWorkspace(b, n, c, oc)
		type product = struct {
			name string
			op   program.Op
		}
		products := []product{
			{"forward", MatmulForwardWGMMA(out, inp, w, bias, ws, n, c, oc, ld, sms())},
			{"backward_input", MatmulBackwardInputWGMMA(dinp, dout, w, ws, n, c, oc, ld, sms())},
			{"backward_weight", MatmulBackwardWeightWGMMA(dw, dout, inp, ws, n, c, oc, ld, sms())},
			{"mma_forward", MatmulForwardMMA(out, inp, w, bias, n, c, oc, ld, sms())},
			{"mma_backward_input", MatmulBackwardInputMMA(dinp, dout, w, n, c, oc, ld, sms())},
			{"mma_backward_weight", MatmulBackwardWeightMMA(dw, dout, inp, ws, n, c, oc, ld, sms())},
		}
		for _, bn := range gemmplan.WGMMABlockNs {
			one := func(m, nn, kk int) gemmplan.MMASplit { return gemmplan.MMASplitOf(m, nn, kk, 1, bn) }
			products = append(products,
				product{fmt.Sprintf("forward_bn%d", bn), MatmulForwardWGMMAPlan(out, inp, w, bias, MatmulScratch{}, n, c, oc, ld, one(n, oc, c), sms())},
				product{fmt.Sprintf("backward_input_bn%d", bn), MatmulBackwardInputWGMMAPlan(dinp, dout, w, MatmulScratch{}, n, c, oc, ld, one(n, c, oc), sms())},
				product{fmt.Sprintf("backward_weight_bn%d", bn), MatmulBackwardWeightWGMMAPlan(dw, dout, inp, MatmulScratch{}, n, c, oc, ld, one(oc, c, n), sms())})
		}
		for _, p := range products {
			b.Run(sh.name+"/"+p.name, func(b *testing.B) {
				env(b)
				sec := mmaMedianSeconds(b, x, p.op)
				tflops := 2 * float64(n) * float64(c) * float64(oc) / sec / 1e12
				b.ReportMetric(tflops, "TFLOP/s")
				b.ReportMetric(sec*1e6, "us/launch")
				grid := p.op.Grid
				lines = append(lines, fmt.Sprintf("WGMMA %-8s %-24s n=%d c=%d oc=%d ld=%d  %8.1f us  %6.1f TFLOP/s  grid %dx%d %s",
					sh.name, p.name, n, c, oc, ld, sec*1e6, tflops, grid.X, grid.Y, p.op.Name))
			})
		}
		for _, p := range products {
			for _, a := range p.op.Args {
				if a.Kind == program.Ptr && !a.View.IsNull() {
					testExec.Free(a.View.Buf)
				}
			}
		}
	}
	fmt.Println(strings.Join(lines, "\n"))
}

// BenchmarkMatmulWGMMASplits times every split of GPT-2's layer products
// on the Hopper tier (both widths, S = 1..12) beside the launcher's plan:
// the measurements that tune gemmplan.WGMMAPlan's cost model. Lines
// "WSPLIT shape product plan us" on the log; the plan chosen is marked *.
func BenchmarkMatmulWGMMASplits(b *testing.B) {
	x := matmulBenchEnv(b)
	r := rand.New(rand.NewPCG(5, 6))
	d := mmaDtypes[0]
	var lines []string
	for _, sh := range mmaBenchShapes[:4] {
		n, c, oc, ld := sh.n, sh.c, sh.oc, sh.ld
		inp := mmaBenchBuffer(b, r, d, "inp", n*c)
		w := mmaBenchBuffer(b, r, d, "w", oc*c)
		dout := mmaBenchBuffer(b, r, d, "dout", n*ld)
		out := alloc(b, "out", d.elem, n*ld).All()
		dinp := alloc(b, "dinp", d.elem, n*c).All()
		dw := alloc(b, "dw", d.elem, oc*c).All()
		ws := matmulWorkspaceSized(b, gemmplan.MaxPartialFloats, 1<<14)
		f, k := wgmmaModelScratch(n, c, oc)
		launcherWS := MatmulScratch{Partials: ws.Partials.Buf.Slice("partials", 0, int64(f)), Counters: ws.Counters.Buf.Slice("counters", 0, int64(k))}
		type product struct {
			name    string
			m, nn   int
			kk      int
			build   func(p gemmplan.MMASplit) program.Op
			planned gemmplan.MMASplit
		}
		products := []product{
			{"forward", n, oc, c, func(p gemmplan.MMASplit) program.Op {
				return MatmulForwardWGMMAPlan(out, inp, w, program.View{}, ws, n, c, oc, ld, p, sms())
			}, wgmmaPlan(n, oc, c, sms(), launcherWS)},
			{"backward_input", n, c, oc, func(p gemmplan.MMASplit) program.Op {
				return MatmulBackwardInputWGMMAPlan(dinp, dout, w, ws, n, c, oc, ld, p, sms())
			}, wgmmaPlan(n, c, oc, sms(), launcherWS)},
			{"backward_weight", oc, c, n, func(p gemmplan.MMASplit) program.Op {
				return MatmulBackwardWeightWGMMAPlan(dw, dout, inp, ws, n, c, oc, ld, p, sms())
			}, wgmmaPlan(oc, c, n, sms(), launcherWS)},
		}
		for _, pr := range products {
			for _, bn := range gemmplan.WGMMABlockNs {
				for s := 1; s <= 12; s++ {
					p := gemmplan.MMASplitOf(pr.m, pr.nn, pr.kk, s, bn)
					if p.Slices != s || int64(p.PartialFloats()) > ws.Partials.Elems || int64(p.Counters()) > ws.Counters.Elems {
						continue
					}
					op := pr.build(p)
					b.Run(fmt.Sprintf("%s/%s/%v", sh.name, pr.name, p), func(b *testing.B) {
						env(b)
						sec := mmaMedianSeconds(b, x, op)
						mark := " "
						if p == pr.planned {
							mark = "*"
						}
						lines = append(lines, fmt.Sprintf("WSPLIT %-8s %-16s %s%-22v grid %4d  %8.1f us", sh.name, pr.name, mark, p, op.Grid.X, sec*1e6))
					})
				}
			}
		}
	}
	for _, l := range lines {
		b.Log(l)
		fmt.Println(l)
	}
}

// wgmmaModelScratch is the workspace size the model gives a linear layer
// on the Hopper tier (model.Step.allocateMatmulWorkspace): room for the
// Hopper tier's plans and the mma tier's, at least one of each.
func wgmmaModelScratch(n, c, oc int) (floats, counters int) {
	f, k := MatmulScratchSizeMMA(n, c, oc)
	fw, kw := MatmulScratchSizeWGMMA(n, c, oc)
	return max(f, fw, 1), max(k, kw, 1)
}

// wgmmaModelWorkspace allocates wgmmaModelScratch, counters zeroed.
func wgmmaModelWorkspace(t testing.TB, n, c, oc int) MatmulScratch {
	t.Helper()
	f, k := wgmmaModelScratch(n, c, oc)
	return matmulWorkspaceSized(t, f, k)
}

// BenchmarkMatmulWGMMATF32 times gpt2-124m's products (n = 8192) and 8192³
// in TF32 on the Hopper tier, each product alone (planned), the transposes
// its backward reads (wᵀ, doutᵀ, inpᵀ), and the sm_80 tier's tf32 entries
// beside them in the same process: the median of mmaBenchReps launches,
// TFLOP/s = 2·n·c·oc/t, a transpose's GB/s = 8·elements/t (read and
// written). One line a product for docs/matmul.md ("TF32 on the Hopper
// tier"); scripts/cublas_bench.py --dtype tf32 is cuBLAS's in the same
// call. kernels.test -test.run '^$' -test.bench MatmulWGMMATF32 -test.benchtime 1x
func BenchmarkMatmulWGMMATF32(b *testing.B) {
	x := matmulBenchEnv(b)
	r := rand.New(rand.NewPCG(7, 8))
	d := mmaDtypes[1]
	var lines []string
	for _, sh := range mmaBenchShapes {
		n, c, oc, ld := sh.n, sh.c, sh.oc, sh.ld
		ldt, ldn := roundUp8(oc), roundUp8(n)
		inp := mmaBenchBuffer(b, r, d, "inp", n*c)
		w := mmaBenchBuffer(b, r, d, "w", oc*c)
		bias := mmaBenchBuffer(b, r, d, "bias", oc)
		dout := mmaBenchBuffer(b, r, d, "dout", n*ld)
		out := alloc(b, "out", d.elem, n*ld).All()
		dinp := alloc(b, "dinp", d.elem, n*c).All()
		dw := alloc(b, "dw", d.elem, oc*c).All()
		wT := alloc(b, "wT", d.elem, c*ldt).All()
		doutT := alloc(b, "doutT", d.elem, oc*ldn).All()
		inpT := alloc(b, "inpT", d.elem, c*ldn).All()
		ws := wgmmaModelWorkspace(b, n, c, oc)
		type product = struct {
			name  string
			op    program.Op
			elems int // a transpose's elements; 0 for a product
		}
		products := []product{
			{"forward", MatmulForwardWGMMA(out, inp, w, bias, ws, n, c, oc, ld, sms()), 0},
			{"transpose_w", MatmulTransposeTF32(wT, w, oc, c, c, ldt), oc * c},
			{"backward_input", MatmulBackwardInputWGMMATF32(dinp, dout, wT, ws, n, c, oc, ld, ldt, sms()), 0},
			{"transpose_dout", MatmulTransposeTF32(doutT, dout, n, oc, ld, ldn), n * oc},
			{"transpose_inp", MatmulTransposeTF32(inpT, inp, n, c, c, ldn), n * c},
			{"backward_weight", MatmulBackwardWeightWGMMATF32(dw, doutT, inpT, ws, n, c, oc, ldn, sms()), 0},
			{"mma_forward", MatmulForwardMMA(out, inp, w, bias, n, c, oc, ld, sms()), 0},
			{"mma_backward_input", MatmulBackwardInputMMA(dinp, dout, w, n, c, oc, ld, sms()), 0},
			{"mma_backward_weight", MatmulBackwardWeightMMA(dw, dout, inp, ws, n, c, oc, ld, sms()), 0},
		}
		for _, p := range products {
			b.Run(sh.name+"/"+p.name, func(b *testing.B) {
				env(b)
				sec := mmaMedianSeconds(b, x, p.op)
				rate, unit := 2*float64(n)*float64(c)*float64(oc)/sec/1e12, "TFLOP/s"
				if p.elems > 0 {
					rate, unit = 8*float64(p.elems)/sec/1e9, "GB/s"
				}
				b.ReportMetric(rate, unit)
				b.ReportMetric(sec*1e6, "us/launch")
				lines = append(lines, fmt.Sprintf("WTF32 %-8s %-20s n=%d c=%d oc=%d ld=%d  %8.1f us  %7.1f %-7s grid %dx%d %s",
					sh.name, p.name, n, c, oc, ld, sec*1e6, rate, unit, p.op.Grid.X, p.op.Grid.Y, p.op.Name))
			})
		}
		for _, v := range []program.View{inp, w, bias, dout, out, dinp, dw, wT, doutT, inpT, ws.Partials, ws.Counters} {
			testExec.Free(v.Buf)
		}
	}
	fmt.Println(strings.Join(lines, "\n"))
}
