//go:build gpu

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/bf16"
	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/gemmplan"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
	"github.com/gpubench/gpubench/ptx"
	"gorgonia.org/cu"
)

// The tests of ptx/matmul_mma.cu: every product in bf16 and TF32 against
// the float64 reference on the inputs rounded as the tensor cores see them,
// at shapes that exercise the cp.async path with its zero-filled tails
// (strides that are multiples of 16 bytes), the element-wise fallback (K or
// ld not a multiple of 8 bf16 / 4 fp32), one tile and many, and a padded
// (n, oc) tensor whose columns past oc are NaN in dout (so that reading
// them would show) and must stay poisoned in out.

// tf32Tol bounds the relative error of a TF32 product against the float64
// reference on TF32-rounded operands: the products are then exact in fp32
// and only the fp32 accumulation over K terms errs, ~2^-24·√K; 1e-4 leaves
// room for the tensor cores' accumulation order and still fails a wrong
// operand rounding (which gives ~4e-4) or any wrong term.
const tf32Tol = 1e-4

// tf32Round is x rounded to TF32 as cvt.rna.tf32.f32 does: 10 fraction
// bits, to nearest with ties away from zero.
func tf32Round(x float64) float64 {
	b := math.Float32bits(float32(x))
	if b&0x7f800000 != 0x7f800000 {
		b = (b + 0x1000) &^ 0x1fff
	}
	return float64(math.Float32frombits(b))
}

// mmaDtype is one element type of the tensor-core kernels.
type mmaDtype struct {
	name string
	elem program.Elem
	tol  float64
}

var mmaDtypes = []mmaDtype{{"bf16", program.BF16, bf16Tol}, {"tf32", program.F32, tf32Tol}}

// upload allocates a buffer of v in the type, returning the values it
// holds (exact) and the values the tensor cores multiply (op: TF32-rounded
// for f32 storage, the same as exact for bf16).
func (d mmaDtype) upload(t *testing.T, name string, v []float64) (p program.View, exact, op []float64) {
	t.Helper()
	if d.elem == program.BF16 {
		p, exact = uploadBF16(t, name, v)
		return p, exact, exact
	}
	p, exact = upload(t, name, v)
	op = make([]float64, len(exact))
	for i, x := range exact {
		op[i] = tf32Round(x)
	}
	return p, exact, op
}

// poison allocates n elements of the type, NaN.
func (d mmaDtype) poison(t *testing.T, name string, n int) program.View {
	t.Helper()
	if d.elem == program.BF16 {
		return bf16Buffer(t, name, n)
	}
	return buffer(t, name, n)
}

func (d mmaDtype) download(t *testing.T, v program.View, n int) []float64 {
	t.Helper()
	if d.elem == program.BF16 {
		return downloadBF16(t, v, n)
	}
	return download(t, v, n)
}

// mmaShape is (n, c, oc) with the (n, oc) tensors' row stride ld.
type mmaShape struct{ n, c, oc, ld int }

// mmaWidths are the block widths the tests force: 0 for the launcher's
// choice (gemmplan.MMAPick), then each of gemmplan.MMABlockNs.
var mmaWidths = []int{0, gemmplan.MMABlockNWide, gemmplan.MMABlockNNarrow}

var mmaShapes = []mmaShape{
	{1, 1, 1, 1},
	{37, 100, 1003, 1003},  // C = 100: bf16 fallback for inp and w; ld odd: fallback for dout
	{37, 100, 1003, 1010},  // ld > oc, not 16-byte rows
	{67, 13, 45, 45},       // K = 13 in the forward, odd everything
	{200, 72, 300, 320},    // ld > oc, 16-byte rows: cp.async with a 4-element tail chunk
	{129, 52, 130, 136},    // C = 52: bf16 fallback, TF32 cp.async with K tails
	{300, 256, 384, 448},   // several tiles, aligned, padded
	{512, 768, 2304, 2304}, // a gpt2-124m product (qkv) at a shorter n
	{1100, 64, 200, 200},   // 9 row tiles: a GROUP_M group and a partial one
}

// mmaPadded draws the (n, oc) tensor of row stride ld: N(0,1) in the first
// oc columns, NaN in the padding (a kernel that reads it spreads NaN).
func mmaPadded(r *rand.Rand, sh mmaShape) []float64 {
	v := normal(r, sh.n*sh.ld, 1)
	for i := 0; i < sh.n; i++ {
		for j := sh.oc; j < sh.ld; j++ {
			v[i*sh.ld+j] = math.NaN()
		}
	}
	return v
}

// mmaDense is the first oc columns of each of n rows of stride ld.
func mmaDense(v []float64, sh mmaShape) []float64 {
	out := make([]float64, 0, sh.n*sh.oc)
	for i := 0; i < sh.n; i++ {
		out = append(out, v[i*sh.ld:i*sh.ld+sh.oc]...)
	}
	return out
}

// mmaPaddingPoisoned fails the test unless columns oc..ld-1 of every row of
// an (n, oc) output are still NaN (its poison).
func mmaPaddingPoisoned(t *testing.T, what string, got []float64, sh mmaShape) {
	t.Helper()
	for i := 0; i < sh.n; i++ {
		for j := sh.oc; j < sh.ld; j++ {
			if v := got[i*sh.ld+j]; !math.IsNaN(v) {
				t.Fatalf("%s: padding element (%d, %d) was written: %g", what, i, j, v)
			}
		}
	}
}

// mmaMatchesPTX fails the test unless op names an entry of its module and
// passes one argument of the PTX's class per parameter.
func mmaMatchesPTX(t *testing.T, op program.Op) {
	t.Helper()
	types, ok := ptx.Params(op.Module, op.Name)
	if !ok {
		t.Fatalf("%s is not an entry of %s.ptx", op.Name, op.Module)
	}
	if len(types) != len(op.Args) {
		t.Fatalf("%s passes %d arguments, the PTX declares %d", op.Name, len(op.Args), len(types))
	}
	for i, a := range op.Args {
		want := program.Ptr
		switch types[i] {
		case "u32", "s32", "b32":
			want = program.I32Arg
		case "f32":
			want = program.F32Arg
		}
		if a.Kind != want {
			t.Errorf("%s argument %d (%s) is %s, the PTX declares .%s", op.Name, i, a.Param, a.Kind, types[i])
		}
	}
}

// mmaRunTwice runs op (built by build on a fresh output) twice into two
// freshly poisoned outputs of n elements and returns the first download,
// failing unless both are bitwise the same.
func mmaRunTwice(t *testing.T, d mmaDtype, what string, n int, build func(out program.View) program.Op, after func()) []float64 {
	t.Helper()
	var first []float64
	for i := range 2 {
		out := d.poison(t, what, n)
		op := build(out)
		if i == 0 {
			mmaMatchesPTX(t, op)
		}
		run(t, op)
		got := d.download(t, out, n)
		if after != nil {
			after()
		}
		if first == nil {
			first = got
		} else {
			sameBits(t, what+" rerun", got, first)
		}
	}
	return first
}

// TestMatmulMMA checks every tensor-core product, bf16 and TF32, at every
// shape of mmaShapes: the forward with and without bias, the input
// gradient, the weight gradient with the launcher's plan, unsplit and
// split in 2 and 3 (counters back at zero after each launch, partials
// poisoned), the bias gradient and the MatmulBackwardMMA convenience; each
// output poisoned, each launch run twice for bitwise-identical results.
func TestMatmulMMA(t *testing.T) {
	env(t)
	r := rng(t)
	for _, d := range mmaDtypes {
		for _, sh := range mmaShapes {
			t.Run(fmt.Sprintf("%s/N%d_C%d_OC%d_ld%d", d.name, sh.n, sh.c, sh.oc, sh.ld), func(t *testing.T) {
				env(t) // a subtest runs on its own goroutine
				testMatmulMMA(t, r, d, sh)
			})
		}
	}
}

func testMatmulMMA(t *testing.T, r *rand.Rand, d mmaDtype, sh mmaShape) {
	x := testExec
	n, c, oc, ld := sh.n, sh.c, sh.oc, sh.ld
	inp, _, inpOp := d.upload(t, "inp", normal(r, n*c, 1))
	w, _, wOp := d.upload(t, "w", normal(r, oc*c, 1))
	bias, biasV, _ := d.upload(t, "bias", normal(r, oc, 1)) // added in fp32: not TF32-rounded
	dout, doutExact, doutOp := d.upload(t, "dout", mmaPadded(r, sh))
	doutV, doutExactV := mmaDense(doutOp, sh), mmaDense(doutExact, sh)

	// Forward, with and without the bias: the launcher's tile (bn 0), then
	// each width.
	for _, withBias := range []bool{true, false} {
		b, bv := program.View{}, []float64(nil)
		if withBias {
			b, bv = bias, biasV
		}
		want := make([]float64, n*oc)
		ref.MatmulForward(want, inpOp, wOp, bv, n, c, oc)
		for _, bn := range mmaWidths {
			what := fmt.Sprintf("out (bias %v, bn %d)", withBias, bn)
			got := mmaRunTwice(t, d, what, n*ld, func(out program.View) program.Op {
				if bn == 0 {
					return MatmulForwardMMA(out, inp, w, b, n, c, oc, ld, sms())
				}
				return mmaForward(out, inp, w, b, n, c, oc, ld, bn)
			}, nil)
			checkClose(t, what, mmaDense(got, sh), want, d.tol)
			mmaPaddingPoisoned(t, what, got, sh)
		}
	}

	wantDinp, wantDw := make([]float64, n*c), make([]float64, oc*c)
	ref.MatmulBackward(wantDinp, wantDw, nil, doutV, inpOp, wOp, n, c, oc)
	wantDbias := make([]float64, oc)
	for i := 0; i < n; i++ {
		for j := 0; j < oc; j++ {
			wantDbias[j] += doutExactV[i*oc+j]
		}
	}

	for _, bn := range mmaWidths {
		what := fmt.Sprintf("dinp (bn %d)", bn)
		got := mmaRunTwice(t, d, what, n*c, func(out program.View) program.Op {
			if bn == 0 {
				return MatmulBackwardInputMMA(out, dout, w, n, c, oc, ld, sms())
			}
			return mmaBackwardInput(out, dout, w, n, c, oc, ld, bn)
		}, nil)
		checkClose(t, what, got, wantDinp, d.tol)
	}

	// The weight gradient: the launcher's plan, then forced ones of each
	// width.
	ws := mmaWorkspace(t, n, c, oc)
	plans := []gemmplan.MMASplit{MatmulWeightPlanMMA(n, c, oc, sms(), ws)}
	for _, bn := range gemmplan.MMABlockNs {
		for _, s := range []int{1, 2, 3} {
			plans = append(plans, gemmplan.MMASplitOf(oc, c, n, s, bn))
		}
	}
	t.Logf("weight gradient plan on %d SMs: %v", sms(), plans[0])
	for i, p := range plans {
		pws := ws
		if int64(p.PartialFloats()) > ws.Partials.Elems || int64(p.Counters()) > ws.Counters.Elems {
			pws = matmulWorkspaceSized(t, max(p.PartialFloats(), 1), max(p.Counters(), 1))
		}
		what := "dw " + p.String()
		got := mmaRunTwice(t, d, what, oc*c, func(out program.View) program.Op {
			if i == 0 {
				return MatmulBackwardWeightMMA(out, dout, inp, pws, n, c, oc, ld, sms())
			}
			return MatmulBackwardWeightMMAPlan(out, dout, inp, pws, n, c, oc, ld, p)
		}, func() { matmulCountersZero(t, what, pws) })
		checkClose(t, what, got, wantDw, d.tol)
	}

	// The bias gradient: bf16's own kernel (any ld); f32 uses the fp32
	// BiasBackward, dense dout only.
	// Unsplit (no workspace), then split over the rows as the launcher plans
	// it with room for a slice per 64 rows.
	if d.elem == program.BF16 {
		bws := matmulWorkspaceSized(t, max(n/64, 1)*oc, ceilDiv(oc, ptx.BiasBackwardBF16Cols))
		for _, ws := range []MatmulScratch{{}, bws} {
			splits, rows := BiasSplit(n, oc, sms(), ws)
			what := fmt.Sprintf("dbias (%d slices of %d rows)", splits, rows)
			got := mmaRunTwice(t, d, what, oc, func(out program.View) program.Op {
				return BiasBackwardBF16(out, dout, ws, n, oc, ld, sms())
			}, func() {
				if !ws.Counters.IsNull() {
					matmulCountersZero(t, what, ws)
				}
			})
			checkClose(t, what, got, wantDbias, d.tol)
		}
	}

	// MatmulBackwardMMA: three launches with a bias gradient.
	if d.elem == program.F32 && ld != oc {
		mmaPanics(t, "MatmulBackwardMMA with an f32 bias gradient and ld > oc", func() {
			MatmulBackwardMMA(d.poison(t, "dinp", n*c), d.poison(t, "dw", oc*c), d.poison(t, "dbias", oc),
				dout, inp, w, ws, n, c, oc, ld, sms())
		})
		return
	}
	dinp, dw, dbias := d.poison(t, "dinp", n*c), d.poison(t, "dw", oc*c), d.poison(t, "dbias", oc)
	ops := MatmulBackwardMMA(dinp, dw, dbias, dout, inp, w, ws, n, c, oc, ld, sms())
	if len(ops) != 3 {
		t.Fatalf("MatmulBackwardMMA with a bias gradient: %d ops, want 3", len(ops))
	}
	x.ResetCounts()
	run(t, ops...)
	checkClose(t, "MatmulBackwardMMA dinp", d.download(t, dinp, n*c), wantDinp, d.tol)
	checkClose(t, "MatmulBackwardMMA dw", d.download(t, dw, oc*c), wantDw, d.tol)
	checkClose(t, "MatmulBackwardMMA dbias", d.download(t, dbias, oc), wantDbias, d.tol)
	matmulCountersZero(t, "MatmulBackwardMMA", ws)
	biasEntry := "bias_backward"
	if d.elem == program.BF16 {
		biasEntry = "bias_backward_bf16"
	}
	counts := x.LaunchCounts()
	if counts["matmul_backward_input_"+d.name] != 1 || counts["matmul_backward_weight_"+d.name] != 1 || counts[biasEntry] != 1 {
		t.Errorf("MatmulBackwardMMA launch counts %v, want one each of input, weight and %s", counts, biasEntry)
	}
	if ops := MatmulBackwardMMA(dinp, dw, program.View{}, dout, inp, w, ws, n, c, oc, ld, sms()); len(ops) != 2 {
		t.Errorf("MatmulBackwardMMA without a bias gradient: %d ops, want 2", len(ops))
	}
}

// mmaWorkspace allocates the workspace MatmulScratchSizeMMA asks for (at
// least one element each, as the model does), partials poisoned and
// counters zeroed.
func mmaWorkspace(t *testing.T, n, c, oc int) MatmulScratch {
	t.Helper()
	f, k := MatmulScratchSizeMMA(n, c, oc)
	return matmulWorkspaceSized(t, max(f, 1), max(k, 1))
}

func mmaPanics(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

// TestMatmulMMAElemTypes: the builders pick the entry from the views'
// type and refuse a mix. It needs no device.
func TestMatmulMMAElemTypes(t *testing.T) {
	v := func(e program.Elem, n int) program.View {
		return (&program.Buffer{Name: "v", Layer: -1, Elem: e, Elems: int64(n)}).All()
	}
	if op := MatmulForwardMMA(v(program.BF16, 64), v(program.BF16, 64), v(program.BF16, 64), program.View{}, 8, 8, 8, 8, 132); op.Name != "matmul_forward_bf16" {
		t.Errorf("bf16 forward launches %s", op.Name)
	}
	if op := MatmulBackwardInputMMA(v(program.F32, 64), v(program.F32, 64), v(program.F32, 64), 8, 8, 8, 8, 132); op.Name != "matmul_backward_input_tf32" {
		t.Errorf("f32 input gradient launches %s", op.Name)
	}
	mmaPanics(t, "a bf16/f32 mix", func() {
		MatmulForwardMMA(v(program.BF16, 64), v(program.F32, 64), v(program.BF16, 64), program.View{}, 8, 8, 8, 8, 132)
	})
	mmaPanics(t, "an f32 bias on bf16", func() {
		MatmulForwardMMA(v(program.BF16, 64), v(program.BF16, 64), v(program.BF16, 64), v(program.F32, 8), 8, 8, 8, 8, 132)
	})
	mmaPanics(t, "ld < oc", func() {
		MatmulForwardMMA(v(program.BF16, 64), v(program.BF16, 64), v(program.BF16, 64), program.View{}, 8, 8, 8, 7, 132)
	})
	mmaPanics(t, "an f32 BiasBackwardBF16", func() { BiasBackwardBF16(v(program.F32, 8), v(program.F32, 64), MatmulScratch{}, 8, 8, 8, 1) })
}

// TestMatmulMMAUnaligned runs the GEMM entries on views that start one
// element past a 16-byte boundary: the kernels must notice and take the
// element-wise path (a cp.async of 16 bytes there would fault).
func TestMatmulMMAUnaligned(t *testing.T) {
	env(t)
	r := rng(t)
	sh := mmaShape{130, 136, 264, 272}
	n, c, oc, ld := sh.n, sh.c, sh.oc, sh.ld
	for _, d := range mmaDtypes {
		t.Run(d.name, func(t *testing.T) {
			env(t)
			off := func(name string, v []float64) (program.View, []float64) {
				p, _, op := d.upload(t, name, append([]float64{0}, v...))
				return p.At(1), op[1:]
			}
			inp, inpOp := off("inp", normal(r, n*c, 1))
			w, wOp := off("w", normal(r, oc*c, 1))
			dout, doutOp := off("dout", mmaPadded(r, sh))
			want := make([]float64, n*oc)
			ref.MatmulForward(want, inpOp, wOp, nil, n, c, oc)
			wantDinp, wantDw := make([]float64, n*c), make([]float64, oc*c)
			ref.MatmulBackward(wantDinp, wantDw, nil, mmaDense(doutOp, sh), inpOp, wOp, n, c, oc)
			for _, bn := range gemmplan.MMABlockNs {
				out := d.poison(t, "out", n*ld+1).At(1)
				dinp := d.poison(t, "dinp", n*c+1).At(1)
				dw := d.poison(t, "dw", oc*c+1).At(1)
				p := gemmplan.MMASplitOf(oc, c, n, 2, bn)
				ws := matmulWorkspaceSized(t, p.PartialFloats(), p.Counters())
				run(t, mmaForward(out, inp, w, program.View{}, n, c, oc, ld, bn),
					mmaBackwardInput(dinp, dout, w, n, c, oc, ld, bn),
					MatmulBackwardWeightMMAPlan(dw, dout, inp, ws, n, c, oc, ld, p))
				gotOut := d.download(t, out, n*ld)
				checkClose(t, fmt.Sprintf("out (bn %d)", bn), mmaDense(gotOut, sh), want, d.tol)
				mmaPaddingPoisoned(t, "out", gotOut, sh)
				checkClose(t, fmt.Sprintf("dinp (bn %d)", bn), d.download(t, dinp, n*c), wantDinp, d.tol)
				checkClose(t, "dw "+p.String(), d.download(t, dw, oc*c), wantDw, d.tol)
				matmulCountersZero(t, "dw", ws)
			}
		})
	}
}

// mmaBenchShapes are gpt2-124m's linear layers (batch 8 × T 1024), as (n,
// c, oc, ld): the lm head's vocabulary padded to a multiple of 64; and
// 8192³, the usual yardstick.
var mmaBenchShapes = []struct {
	name string
	mmaShape
}{
	{"qkv", mmaShape{8192, 768, 2304, 2304}},
	{"attproj", mmaShape{8192, 768, 768, 768}},
	{"fc", mmaShape{8192, 768, 3072, 3072}},
	{"fcproj", mmaShape{8192, 3072, 768, 768}},
	{"lmhead", mmaShape{8192, 768, 50257, 50304}},
	{"8192^3", mmaShape{8192, 8192, 8192, 8192}},
}

// mmaBenchReps is how many launches each benchmark times one by one.
const mmaBenchReps = 30

// mmaMedianSeconds runs op 3 times to warm up, then times mmaBenchReps
// launches each between two CUDA events on the executor's stream, and
// returns the median.
func mmaMedianSeconds(b *testing.B, x *cuexec.Executor, op program.Op) float64 {
	b.Helper()
	s := x.Stream()
	syncAll(b)
	for range 3 {
		if err := x.Do(&op); err != nil {
			b.Fatal(err)
		}
	}
	evs := make([]cu.Event, 2*mmaBenchReps)
	for i := range evs {
		e, err := cu.MakeEvent(cu.DefaultEvent)
		if err != nil {
			b.Fatal(err)
		}
		evs[i] = e
		defer cu.DestroyEvent(&evs[i])
	}
	for i := 0; i < mmaBenchReps; i++ {
		if err := evs[2*i].Record(s); err != nil {
			b.Fatal(err)
		}
		if err := x.Do(&op); err != nil {
			b.Fatal(err)
		}
		if err := evs[2*i+1].Record(s); err != nil {
			b.Fatal(err)
		}
	}
	if err := evs[len(evs)-1].Synchronize(); err != nil {
		b.Fatal(err)
	}
	ts := make([]float64, mmaBenchReps)
	for i := range ts {
		ms, err := evs[2*i].Elapsed(evs[2*i+1])
		if err != nil {
			b.Fatal(err)
		}
		ts[i] = ms / 1e3
	}
	sort.Float64s(ts)
	return ts[len(ts)/2]
}

// mmaBenchBuffer allocates n elements of the type holding a random N(0,1)
// pattern (a 1M-element draw, repeated: random enough for the tensor
// cores' power draw, cheap to make for the lm head's 412M).
func mmaBenchBuffer(b *testing.B, r *rand.Rand, d mmaDtype, name string, n int) program.View {
	b.Helper()
	const pattern = 1 << 20
	src := make([]float32, min(n, pattern))
	for i := range src {
		src[i] = float32(r.NormFloat64())
	}
	p := alloc(b, name, d.elem, n).All()
	if d.elem == program.BF16 {
		h := make([]uint16, n)
		for i := range h {
			h[i] = bf16.FromFloat32(src[i%len(src)])
		}
		if err := cuexec.Upload(testExec, p, h); err != nil {
			b.Fatal(err)
		}
		return p
	}
	f := make([]float32, n)
	for i := range f {
		f[i] = src[i%len(src)]
	}
	if err := cuexec.Upload(testExec, p, f); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkMatmulMMA times each product of gpt2-124m's layers (n = 8192) in
// bf16 and TF32: the median of mmaBenchReps launches, as TFLOP/s (2·n·c·oc)
// and µs; one line a product is printed too, for docs/matmul.md. Run it
// once: kernels.test -test.run '^$' -test.bench MatmulMMA -test.benchtime 1x
func BenchmarkMatmulMMA(b *testing.B) {
	x := matmulBenchEnv(b)
	r := rand.New(rand.NewPCG(1, 2))
	var lines []string
	for _, d := range mmaDtypes {
		for _, sh := range mmaBenchShapes {
			n, c, oc, ld := sh.n, sh.c, sh.oc, sh.ld
			inp := mmaBenchBuffer(b, r, d, "inp", n*c)
			w := mmaBenchBuffer(b, r, d, "w", oc*c)
			bias := mmaBenchBuffer(b, r, d, "bias", oc)
			dout := mmaBenchBuffer(b, r, d, "dout", n*ld)
			out := alloc(b, "out", d.elem, n*ld).All()
			dinp := alloc(b, "dinp", d.elem, n*c).All()
			dw := alloc(b, "dw", d.elem, oc*c).All()
			f, k := MatmulScratchSizeMMA(n, c, oc)
			ws := MatmulScratch{Partials: alloc(b, "partials", program.F32, max(f, 1)).All(), Counters: alloc(b, "counters", program.I32, max(k, 1)).All()}
			run(b, Memset(ws.Counters))
			plan := MatmulWeightPlanMMA(n, c, oc, sms(), ws)
			products := []struct {
				name string
				op   program.Op
			}{
				{"forward", MatmulForwardMMA(out, inp, w, bias, n, c, oc, ld, sms())},
				{"backward_input", MatmulBackwardInputMMA(dinp, dout, w, n, c, oc, ld, sms())},
				{"backward_weight", MatmulBackwardWeightMMA(dw, dout, inp, ws, n, c, oc, ld, sms())},
				// The split's baseline: the same product, one block a tile.
				{"backward_weight_unsplit", MatmulBackwardWeightMMA(dw, dout, inp, MatmulScratch{}, n, c, oc, ld, sms())},
			}
			type product = struct {
				name string
				op   program.Op
			}
			// The alternatives the planner weighs: each block width for the
			// forward and the input gradient, and (transformer-block shapes)
			// the weight gradient's splits of each width that fit ws.
			for _, bn := range gemmplan.MMABlockNs {
				products = append(products,
					product{fmt.Sprintf("forward_bn%d", bn), mmaForward(out, inp, w, bias, n, c, oc, ld, bn)},
					product{fmt.Sprintf("backward_input_bn%d", bn), mmaBackwardInput(dinp, dout, w, n, c, oc, ld, bn)})
				if sh.name == "lmhead" || sh.name == "8192^3" {
					continue
				}
				for _, s := range []int{1, 2, 3, 4, 5, 6, 8} {
					q := gemmplan.MMASplitOf(oc, c, n, s, bn)
					if q.Slices != s || int64(q.PartialFloats()) > ws.Partials.Elems || int64(q.Counters()) > ws.Counters.Elems {
						continue
					}
					products = append(products, product{"backward_weight_" + strings.NewReplacer(" ", "_", "/", "_").Replace(q.String()),
						MatmulBackwardWeightMMAPlan(dw, dout, inp, ws, n, c, oc, ld, q)})
				}
			}
			if d.elem == program.BF16 {
				dbias := alloc(b, "dbias", d.elem, oc).All()
				products = append(products, product{"bias_backward", BiasBackwardBF16(dbias, dout, ws, n, oc, ld, sms())})
			}
			for _, p := range products {
				b.Run(d.name+"/"+sh.name+"/"+p.name, func(b *testing.B) {
					env(b) // a sub-benchmark runs on its own goroutine
					sec := mmaMedianSeconds(b, x, p.op)
					if p.name == "bias_backward" { // memory-bound: report bytes
						gbs := float64(2*n*oc+2*oc) / sec / 1e9
						b.ReportMetric(gbs, "GB/s")
						lines = append(lines, fmt.Sprintf("MMA %s %-8s %-16s n=%d oc=%d ld=%d  %8.1f us  %6.0f GB/s",
							d.name, sh.name, p.name, n, oc, ld, sec*1e6, gbs))
						return
					}
					tflops := 2 * float64(n) * float64(c) * float64(oc) / sec / 1e12
					b.ReportMetric(tflops, "TFLOP/s")
					b.ReportMetric(sec*1e6, "us/launch")
					extra := fmt.Sprintf(" bn=%d", p.op.Args[len(p.op.Args)-1].Int)
					if p.name == "backward_weight" {
						extra = " " + plan.String()
					}
					lines = append(lines, fmt.Sprintf("MMA %s %-8s %-30s n=%d c=%d oc=%d ld=%d  %8.1f us  %6.1f TFLOP/s%s",
						d.name, sh.name, p.name, n, c, oc, ld, sec*1e6, tflops, extra))
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
	}
	fmt.Println(strings.Join(lines, "\n"))
}

// TestMatmulMMAStages: the 3-stage build (matmul_mma3, for GPUs whose
// blocks get under 216 KB of shared memory, such as an A100) gives the
// 4-stage build's bits for every product: the pipeline's depth changes
// when tiles land, never the order of any sum. (It runs on the H200 too,
// where both fit.)
func TestMatmulMMAStages(t *testing.T) {
	env(t)
	r := rng(t)
	for _, d := range mmaDtypes {
		for _, sh := range []mmaShape{{67, 13, 45, 45}, {300, 256, 384, 448}, {512, 768, 2304, 2304}} {
			t.Run(fmt.Sprintf("%s/N%d_C%d_OC%d_ld%d", d.name, sh.n, sh.c, sh.oc, sh.ld), func(t *testing.T) {
				env(t)
				n, c, oc, ld := sh.n, sh.c, sh.oc, sh.ld
				inp, _, _ := d.upload(t, "inp", normal(r, n*c, 1))
				w, _, _ := d.upload(t, "w", normal(r, oc*c, 1))
				dout, _, _ := d.upload(t, "dout", mmaPadded(r, sh))
				products := []struct {
					what  string
					elems int
					build func(out program.View) program.Op
				}{
					{"out", n * ld, func(out program.View) program.Op {
						return MatmulForwardMMA(out, inp, w, program.View{}, n, c, oc, ld, sms())
					}},
					{"dinp", n * c, func(out program.View) program.Op {
						return MatmulBackwardInputMMA(out, dout, w, n, c, oc, ld, sms())
					}},
					{"dw", oc * c, func(out program.View) program.Op {
						return MatmulBackwardWeightMMA(out, dout, inp, MatmulScratch{}, n, c, oc, ld, sms())
					}},
				}
				for _, p := range products {
					four := mmaRunTwice(t, d, p.what+" 4 stages", p.elems, p.build, nil)
					three := mmaRunTwice(t, d, p.what+" 3 stages", p.elems, func(out program.View) program.Op {
						op := MMAOnStages(gemmplan.MMAStagesLow, p.build(out))[0]
						if op.Module != "matmul_mma3" || op.SharedBytes > 163<<10 {
							t.Fatalf("%s: the 3-stage launch is %s with %d B of shared memory", p.what, op.Module, op.SharedBytes)
						}
						return op
					}, nil)
					sameBits(t, p.what+": 3 stages against 4", three, four)
				}
			})
		}
	}
}
