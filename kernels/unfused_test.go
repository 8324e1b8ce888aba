//go:build gpu

package kernels

import (
	"math"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
)

// The unfused flaw's kernels against float64 references on the CPU: fresh
// random inputs each run (rng), poisoned outputs (an unwritten element is
// NaN, which never passes), both storage types, aligned and unaligned
// views (vector and scalar paths), in place as the model runs them, and
// deterministic.

// unfusedSizes are odd element counts, as geluSizes: every vector tail, a
// single element, and more than one grid-stride pass.
var unfusedSizes = []int{1, 3, 7, 9, 37, 1003, 1<<20 + 3}

// checkElem compares one elementwise result, rounded once to e after fp32
// arithmetic: fp32 to 1e-6 of the tensor's norm (an ulp or two: a fused
// multiply-add rounds once where the reference's float64 rounds not at
// all); bf16 to bf16Tol and each element within one bf16 rounding.
func checkElem(t *testing.T, e program.Elem, what string, got, want []float64) {
	t.Helper()
	checkClose(t, what+" "+string(e), got, want, tolOf(e, 1e-6))
	if e == program.BF16 {
		checkEachBF16(t, what+" "+string(e), got, want, 1e-6*maxAbs(want))
	}
}

// elemCase is one elementwise kernel: its launch over views of n elements
// and its float64 reference.
type elemCase struct {
	name  string
	build func(out, a, b program.View, n int) program.Op
	ref   func(a, b float64) float64
}

var elemCases = []elemCase{
	{"elem_mul", func(out, a, b program.View, n int) program.Op { return ElemMul(out, a, b, n) },
		func(a, b float64) float64 { return a * b }},
	{"elem_axpby", func(out, a, b program.View, n int) program.Op { return ElemAxpby(out, a, b, 0.5, -1.25, n) },
		func(a, b float64) float64 { return 0.5*a - 1.25*b }},
	{"elem_tanh_scale", func(out, a, _ program.View, n int) program.Op { return ElemTanhScale(out, a, geluScale, n) },
		func(a, _ float64) float64 { return math.Tanh(float64(float32(geluScale)) * a) }},
}

func TestUnfusedElementwise(t *testing.T) {
	env(t)
	r := rng(t)
	for _, c := range elemCases {
		for _, e := range storages {
			// Offsets of out, a, b: all aligned, then each unaligned.
			offsets := [][3]int{{0, 0, 0}, {1, 0, 0}, {0, 2, 0}, {0, 0, 3}}
			if e == program.BF16 {
				offsets = append(offsets, [3]int{4, 4, 4})
			}
			for _, n := range unfusedSizes {
				for _, off := range offsets {
					aD, a := uploadOf(t, e, "a", normal(r, n+off[1], 2))
					bD, b := uploadOf(t, e, "b", normal(r, n+off[2], 2))
					out := bufferOf(t, e, "out", n+off[0])
					launch := func() []float64 {
						run(t, c.build(out.At(int64(off[0])), aD.At(int64(off[1])), bD.At(int64(off[2])), n))
						return downloadOf(t, e, out, n+off[0])
					}
					got := launch()
					want := make([]float64, n)
					for i := range want {
						want[i] = c.ref(a[off[1]+i], b[off[2]+i])
					}
					checkElem(t, e, c.name, got[off[0]:], want)
					checkPoisoned(t, c.name+" before out", got[:off[0]])
					sameBits(t, c.name+" "+string(e), got, launch())
				}
			}
		}
	}
}

// TestUnfusedElementwiseInPlace runs out == b (out == a for the unary
// tanh), as the GELU chain does.
func TestUnfusedElementwiseInPlace(t *testing.T) {
	env(t)
	r := rng(t)
	const n = 1003
	for _, c := range elemCases {
		for _, e := range storages {
			aD, a := uploadOf(t, e, "a", normal(r, n, 2))
			bD, b := uploadOf(t, e, "b", normal(r, n, 2))
			out := bD
			if c.name == "elem_tanh_scale" {
				out = aD
			}
			run(t, c.build(out, aD, bD, n))
			want := make([]float64, n)
			for i := range want {
				want[i] = c.ref(a[i], b[i])
			}
			checkElem(t, e, c.name+" in place", downloadOf(t, e, out, n), want)
		}
	}
}

func TestBiasAdd(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range storages {
		for _, s := range []struct{ n, oc, ld int }{{1, 1, 1}, {3, 5, 5}, {37, 96, 96}, {111, 288, 288}, {64, 768, 768}, {5, 50, 64}} {
			size := (s.n-1)*s.ld + s.oc
			outD, out := uploadOf(t, e, "out", normal(r, size, 1))
			biasD, bias := uploadOf(t, e, "bias", normal(r, s.oc, 1))
			run(t, BiasAdd(outD, biasD, s.n, s.oc, s.ld))
			got := downloadOf(t, e, outD, size)
			want := append([]float64(nil), out...)
			for row := 0; row < s.n; row++ {
				for col := 0; col < s.oc; col++ {
					i := row*s.ld + col
					want[i] = out[i] + bias[col]
				}
			}
			// Each sum of two stored values rounds once: exact to the
			// storage type's rounding (as residual_forward; a NaN fails),
			// and the padding between rows (ld > oc) untouched.
			checkClose(t, "bias_add "+string(e), got, roundOf(e, want), 0)
			sameBits(t, "bias_add padding "+string(e), padding(got, s.n, s.oc, s.ld), padding(out, s.n, s.oc, s.ld))
		}
	}
}

// TestGELUChain: the six kernels of the unfused GELU compute gelu up to
// their roundings: each kernel rounds its output to the storage type, so
// the chain is checked against model/ref's Gelu with the tolerance of a
// few roundings. The tanh form 0.5x + 0.5x·tanh(u) cancels for negative x,
// so an element's error is of the order of |x| times the rounding unit,
// not of |gelu(x)|: each element is held to that bound. Over a tensor of
// many elements the large positive ones dominate the norm, which is also
// held to the tolerance gelu_forward's test uses (fp32: 1e-5; bf16: the
// chain's six bf16 roundings, 4·bf16Tol); a tensor of a few elements can
// be all cancellation (on an H200, n = 1 gave 3.7e-4 of the norm), so the
// norm is checked from 1000 elements on. The input (fch) is left as it
// was: the backward reads it.
func TestGELUChain(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range storages {
		for _, n := range []int{1, 7, 37, 4 * 111 * 100, 1<<20 + 3} {
			inpD, inp := uploadOf(t, e, "fch", geluInputs(r, n))
			tmp := bufferOf(t, e, "gelu_tmp", n)
			out := bufferOf(t, e, "fch_gelu", n)
			run(t, GELUChain(out, tmp, inpD, n)...)
			got := downloadOf(t, e, out, n)
			want := make([]float64, n)
			ref.GeluForward(want, inp, n)
			tol := 1e-5
			if e == program.BF16 {
				tol = 4 * bf16Tol
			}
			if n >= 1000 {
				checkClose(t, "gelu chain "+string(e), got, want, tol)
			}
			unit := 1e-6
			if e == program.BF16 {
				unit = 4e-2
			}
			for i := range got {
				if d := math.Abs(got[i] - want[i]); !(d <= unit*(math.Abs(inp[i])+math.Abs(want[i]))+1e-30) {
					t.Fatalf("gelu chain %s: element %d (x = %g) is %g, want %g", e, i, inp[i], got[i], want[i])
				}
			}
			sameBits(t, "gelu chain leaves fch", downloadOf(t, e, inpD, n), inp)
		}
	}
}

// padding is the elements of a (n, ld) matrix past each row's oc columns.
func padding(v []float64, n, oc, ld int) []float64 {
	var out []float64
	for row := 0; row+1 < n; row++ {
		out = append(out, v[row*ld+oc:(row+1)*ld]...)
	}
	return out
}
