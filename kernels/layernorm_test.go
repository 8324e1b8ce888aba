//go:build gpu

package kernels

import (
	"math"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
)

// layerNormShapes are the (N, C) the LayerNorm tests run: odd row counts
// (not multiples of the 8 rows of a forward block or the 32 of a backward
// chunk) and odd channel counts, with rows narrow enough that a backward
// block splits its chunk into row groups (96 and 128 floats: 8 groups; 768
// bf16: 2) and wide enough that it does not (768 fp32).
func layerNormShapes() [][2]int {
	var s [][2]int
	for _, N := range []int{1, 37, 111, 2048} {
		for _, C := range []int{1, 96, 100, 128, 768} {
			s = append(s, [2]int{N, C})
		}
	}
	return s
}

func TestLayerNormForward(t *testing.T)     { testLayerNormForward(t, program.F32) }
func TestLayerNormForwardBF16(t *testing.T) { testLayerNormForward(t, program.BF16) }

// testLayerNormForward runs layernorm_forward with inp, the parameters and
// out stored as e; mean and rstd are fp32 in both steps.
func testLayerNormForward(t *testing.T, e program.Elem) {
	env(t)
	r := rng(t)
	for _, sh := range layerNormShapes() {
		N, C := sh[0], sh[1]
		// Rows with their own offset and spread, so the mean and the
		// variance both matter.
		x := normal(r, N*C, 1)
		for n := 0; n < N; n++ {
			shift, spread := 2*r.Float64()-1, 0.5+r.Float64()
			for c := 0; c < C; c++ {
				x[n*C+c] = shift + spread*x[n*C+c]
			}
		}
		inpD, inp := uploadOf(t, e, "inp", x)
		wD, w := uploadOf(t, e, "weight", normal(r, C, 1))
		bD, b := uploadOf(t, e, "bias", normal(r, C, 1))
		forward := func() (out, mean, rstd []float64) {
			outD, meanD, rstdD := bufferOf(t, e, "out", N*C), buffer(t, "mean", N), buffer(t, "rstd", N)
			run(t, LayerNormForward(outD, meanD, rstdD, inpD, wD, bD, N, C))
			return downloadOf(t, e, outD, N*C), download(t, meanD, N), download(t, rstdD, N)
		}
		gotOut, gotMean, gotRstd := forward()

		wantOut, wantMean, wantRstd := make([]float64, N*C), make([]float64, N), make([]float64, N)
		ref.LayerNormForward(wantOut, wantMean, wantRstd, inp, w, b, N, C)
		// Elementwise after an fp32 two-pass mean/variance over C values:
		// a few ulps of relative error, far under 1e-5; bf16 rounds out
		// once more. The statistics are fp32 from the stored inputs in both.
		checkClose(t, "layernorm_forward out "+string(e), gotOut, wantOut, tolOf(e, 1e-5))
		checkClose(t, "layernorm_forward rstd "+string(e), gotRstd, wantRstd, 1e-5)
		// A row mean can be near zero, so it is compared on the scale of the
		// data (row spreads are at least 0.5), not by relErr, which would
		// divide by the means' own small norm.
		for n := range gotMean {
			if !(math.Abs(gotMean[n]-wantMean[n]) <= 1e-6) {
				t.Fatalf("layernorm_forward %s mean[%d] (N=%d C=%d) = %g, want %g", e, n, N, C, gotMean[n], wantMean[n])
			}
		}

		// The row reductions are fixed shuffle trees: a second run must give
		// the same bits.
		againOut, againMean, againRstd := forward()
		sameBits(t, "layernorm_forward out", gotOut, againOut)
		sameBits(t, "layernorm_forward mean", gotMean, againMean)
		sameBits(t, "layernorm_forward rstd", gotRstd, againRstd)
	}
}

// TestLayerNormForwardNoStats passes null mean and rstd.
func TestLayerNormForwardNoStats(t *testing.T) {
	env(t)
	r := rng(t)
	const N, C = 37, 100
	for _, e := range storages {
		inpD, inp := uploadOf(t, e, "inp", normal(r, N*C, 1))
		wD, w := uploadOf(t, e, "weight", normal(r, C, 1))
		bD, b := uploadOf(t, e, "bias", normal(r, C, 1))
		out := bufferOf(t, e, "out", N*C)
		run(t, LayerNormForward(out, program.View{}, program.View{}, inpD, wD, bD, N, C))
		want := make([]float64, N*C)
		ref.LayerNormForward(want, nil, nil, inp, w, b, N, C)
		checkClose(t, "layernorm_forward out "+string(e), downloadOf(t, e, out, N*C), want, tolOf(e, 1e-5))
	}
}

func TestLayerNormBackward(t *testing.T)     { testLayerNormBackward(t, program.F32) }
func TestLayerNormBackwardBF16(t *testing.T) { testLayerNormBackward(t, program.BF16) }

// testLayerNormBackward runs both LayerNorm backward launches with dout,
// inp, the weight, dinp, dw and db stored as e; mean, rstd (as the forward
// saves them) and the partials are fp32 in both steps. The partials are
// the only value one launch hands the other, and they are not rounded.
func testLayerNormBackward(t *testing.T, e program.Elem) {
	env(t)
	r := rng(t)
	const guard = 64
	for _, sh := range layerNormShapes() {
		N, C := sh[0], sh[1]
		x := normal(r, N*C, 1)
		inpD, inp := uploadOf(t, e, "inp", x)
		wD, w := uploadOf(t, e, "weight", normal(r, C, 1))
		bias := normal(r, C, 1)
		// mean and rstd as the forward saves them, rounded to float32 like
		// everything the GPU sees.
		fwdOut, m64, s64 := make([]float64, N*C), make([]float64, N), make([]float64, N)
		ref.LayerNormForward(fwdOut, m64, s64, inp, w, bias, N, C)
		meanD, mean := upload(t, "mean", m64)
		rstdD, rstd := upload(t, "rstd", s64)
		doutD, dout := uploadOf(t, e, "dout", normal(r, N*C, 1))
		// dinp accumulates, so it starts from random values (rounded to e
		// by a throwaway upload).
		_, dinp0 := uploadOf(t, e, "dinp0", normal(r, N*C, 1))

		scratchN := LayerNormPartialSize(N, C)
		if want := 2 * ((N + 31) / 32) * C; scratchN != want {
			t.Fatalf("LayerNormPartialSize(%d, %d) = %d, want %d", N, C, scratchN, want)
		}
		backward := func() (dinp, dw, db []float64) {
			dinpD, _ := uploadOf(t, e, "dinp", dinp0)
			dwD, dbD := bufferOf(t, e, "dweight", C), bufferOf(t, e, "dbias", C)
			scratch := buffer(t, "scratch", scratchN+guard)
			ops := LayerNormBackward(dinpD, dwD, dbD, scratch, doutD, inpD, wD, meanD, rstdD, N, C)
			if len(ops) != 2 {
				t.Fatalf("LayerNormBackward: %d ops, want 2 (input, params)", len(ops))
			}
			run(t, ops...)
			s := download(t, scratch, scratchN+guard)
			for i := scratchN; i < len(s); i++ {
				if !math.IsNaN(s[i]) {
					t.Fatalf("N=%d C=%d: layernorm_backward_input wrote scratch[%d], past its %d floats", N, C, i, scratchN)
				}
			}
			return downloadOf(t, e, dinpD, N*C), downloadOf(t, e, dwD, C), downloadOf(t, e, dbD, C)
		}
		gotDinp, gotDw, gotDb := backward()

		wantDinp := append([]float64(nil), dinp0...)
		wantDw, wantDb := make([]float64, C), make([]float64, C)
		ref.LayerNormBackward(wantDinp, wantDw, wantDb, dout, inp, w, mean, rstd, N, C)
		// dinp: per-row fp32 reductions over C plus elementwise work; dw, db:
		// fp32 sums over N rows in chunks. Both stay within a few·sqrt(terms)
		// ulps, under 1e-5. bf16 rounds each of them once more (dinp after
		// adding to its stored value).
		tol := tolOf(e, 1e-5)
		checkClose(t, "layernorm_backward_input dinp "+string(e), gotDinp, wantDinp, tol)
		checkClose(t, "layernorm_backward_params dw "+string(e), gotDw, wantDw, tol)
		checkClose(t, "layernorm_backward_params db "+string(e), gotDb, wantDb, tol)

		againDinp, againDw, againDb := backward()
		sameBits(t, "layernorm_backward_input dinp", gotDinp, againDinp)
		sameBits(t, "layernorm_backward_params dw", gotDw, againDw)
		sameBits(t, "layernorm_backward_params db", gotDb, againDb)
	}
}
