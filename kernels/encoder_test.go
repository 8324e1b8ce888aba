//go:build gpu

package kernels

import (
	"math/rand/v2"
	"testing"

	"github.com/gpubench/gpubench/internal/buckets"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
)

// randomTokens returns n ids in [0, V).
func randomTokens(r *rand.Rand, n, V int) []int32 {
	tok := make([]int32, n)
	for i := range tok {
		tok[i] = int32(r.IntN(V))
	}
	return tok
}

// distinctTokens returns n different ids in [0, V), n <= V.
func distinctTokens(r *rand.Rand, n, V int) []int32 {
	perm := r.Perm(V)
	tok := make([]int32, n)
	for i := range tok {
		tok[i] = int32(perm[i])
	}
	return tok
}

func TestEncoderForward(t *testing.T)     { testEncoderForward(t, program.F32) }
func TestEncoderForwardBF16(t *testing.T) { testEncoderForward(t, program.BF16) }

// testEncoderForward runs encoder_forward with wte, wpe and out stored as e.
// One float addition of two stored values, rounded once to e: the result
// must equal the float64 sum (exact for these inputs) rounded as the
// kernel rounds it (roundOf), bit for bit.
func testEncoderForward(t *testing.T, e program.Elem) {
	env(t)
	r := rng(t)
	for _, c := range []struct{ B, T, C, V int }{
		{1, 1, 1, 2},
		{3, 37, 1, 5},     // scalar path
		{3, 37, 37, 1003}, // scalar path, odd C
		{3, 37, 4, 7},     // vectors of f32, scalar for bf16
		{3, 37, 96, 1003}, // vector path
		{3, 37, 100, 5},   // vectors of f32, scalar for bf16
		{4, 64, 768, 1000},
		{8, 256, 768, 50257},
	} {
		N := c.B * c.T
		maxT := c.T + 3 // wpe has more rows than a batch uses
		tokens := randomTokens(r, N, c.V)
		wteD, wte := uploadOf(t, e, "wte", normal(r, c.V*c.C, 1))
		wpeD, wpe := uploadOf(t, e, "wpe", normal(r, maxT*c.C, 1))
		tokD := uploadInt(t, "tokens", tokens)
		out := bufferOf(t, e, "out", N*c.C)
		run(t, EncoderForward(out, tokD, wteD, wpeD, c.B, c.T, c.C))
		got := downloadOf(t, e, out, N*c.C)
		want := make([]float64, N*c.C)
		ref.EncoderForward(want, tokens, wte, wpe, c.B, c.T, c.C)
		checkClose(t, "encoder_forward "+string(e), got, roundOf(e, want), 0)
	}
}

// TestEncoderForwardUnaligned runs the scalar path with C a multiple of
// the vector by handing the kernel views that do not start on a 16-byte
// boundary (off elements in: 4 or 2 bytes, and 8 bytes for bf16).
func TestEncoderForwardUnaligned(t *testing.T) {
	env(t)
	r := rng(t)
	const B, T, C, V = 3, 37, 96, 50
	N := B * T
	for _, e := range storages {
		offs := []int64{1}
		if e == program.BF16 {
			offs = append(offs, 4)
		}
		for _, off := range offs {
			tokens := randomTokens(r, N, V)
			wteD, wte := uploadOf(t, e, "wte", normal(r, V*C+int(off), 1))
			wpeD, wpe := uploadOf(t, e, "wpe", normal(r, T*C, 1))
			tokD := uploadInt(t, "tokens", tokens)
			out := bufferOf(t, e, "out", N*C+int(off))
			run(t, EncoderForward(out.At(off), tokD, wteD.At(off), wpeD, B, T, C))
			got := downloadOf(t, e, out, N*C+int(off))
			checkPoisoned(t, "encoder_forward (unaligned) before out", got[:off])
			want := make([]float64, N*C)
			ref.EncoderForward(want, tokens, wte[off:], wpe, B, T, C)
			checkClose(t, "encoder_forward (unaligned) "+string(e), got[off:], roundOf(e, want), 0)
		}
	}
}

// encoderBackward runs both embedding backward kernels, the gradients and
// dout stored as e, from the given starting gradients (already rounded to
// e) and returns dwte and dwpe. The positions are grouped as the model
// groups them: buckets.Padded, min(N, V) buckets, so that the grid is the
// same for every batch of a shape.
func encoderBackward(t *testing.T, e program.Elem, tokens []int32, dwte0, dwpe0 []float64, dout program.View, B, T, C, V int) (dwte, dwpe []float64) {
	t.Helper() // the caller holds the context (env)
	N := B * T
	bk, err := buckets.Padded(tokens, V)
	if err != nil {
		t.Fatal(err)
	}
	numBuckets := min(N, V)
	if bk.Len() != numBuckets || len(bk.Start) != numBuckets+1 || len(bk.Order) != N {
		t.Fatalf("buckets.Padded of %d tokens of %d: %d buckets, %d starts, %d positions; want %d, %d, %d",
			N, V, bk.Len(), len(bk.Start), len(bk.Order), numBuckets, numBuckets+1, N)
	}
	order := uploadInt(t, "order", bk.Order)
	start := uploadInt(t, "seg_start", bk.Start)
	token := uploadInt(t, "seg_token", bk.Token)
	dwteD, _ := uploadOf(t, e, "dwte", dwte0)
	dwpeD, _ := uploadOf(t, e, "dwpe", dwpe0)
	wte := EncoderBackwardWTE(dwteD, dout, order, start, token, numBuckets, N, C)
	if wte.Grid.X != numBuckets {
		t.Errorf("encoder_backward_wte grid %v: want one row per bucket, %d", wte.Grid, numBuckets)
	}
	run(t, wte, EncoderBackwardWPE(dwpeD, dout, B, T, C))
	return downloadOf(t, e, dwteD, V*C), downloadOf(t, e, dwpeD, T*C)
}

func TestEncoderBackward(t *testing.T)     { testEncoderBackward(t, program.F32) }
func TestEncoderBackwardBF16(t *testing.T) { testEncoderBackward(t, program.BF16) }

// testEncoderBackward runs both embedding gradients stored as e.
func testEncoderBackward(t *testing.T, e program.Elem) {
	env(t)
	r := rng(t)
	cases := []struct {
		name       string
		B, T, C, V int
		tokens     func(n, V int) []int32
	}{
		{"tiny", 1, 1, 1, 2, func(n, V int) []int32 { return randomTokens(r, n, V) }},
		{"repeats", 3, 37, 96, 5, func(n, V int) []int32 { return randomTokens(r, n, V) }},
		{"repeats C=100", 3, 37, 100, 5, func(n, V int) []int32 { return randomTokens(r, n, V) }},
		{"distinct", 3, 37, 100, 1003, func(n, V int) []int32 { return distinctTokens(r, n, V) }},
		{"distinct C=768", 4, 64, 768, 1000, func(n, V int) []int32 { return distinctTokens(r, n, V) }},
		{"one token", 8, 256, 129, 5, func(n, V int) []int32 {
			tok := make([]int32, n)
			for i := range tok {
				tok[i] = 3
			}
			return tok
		}},
		{"many repeats C=768", 8, 256, 768, 5, func(n, V int) []int32 { return randomTokens(r, n, V) }},
		{"gpt2 vocab", 8, 128, 768, 50257, func(n, V int) []int32 { return randomTokens(r, n, V) }},
	}
	for _, c := range cases {
		name := c.name + " " + string(e)
		N := c.B * c.T
		tokens := c.tokens(N, c.V)
		doutD, dout := uploadOf(t, e, "dout", normal(r, N*c.C, 1))
		// Both gradients accumulate, so they start from random values
		// (rounded to e by a throwaway upload).
		_, dwte0 := uploadOf(t, e, "dwte0", normal(r, c.V*c.C, 1))
		_, dwpe0 := uploadOf(t, e, "dwpe0", normal(r, c.T*c.C, 1))
		gotWTE, gotWPE := encoderBackward(t, e, tokens, dwte0, dwpe0, doutD, c.B, c.T, c.C, c.V)

		wantWTE := append([]float64(nil), dwte0...)
		wantWPE := append([]float64(nil), dwpe0...)
		ref.EncoderBackward(wantWTE, wantWPE, dout, tokens, c.B, c.T, c.C)
		// fp32 sums of up to N terms in another order than the float64
		// reference: rounding grows like sqrt(terms)·2^-24, well under 1e-5.
		// bf16 rounds each gradient once more, after the fp32 sum.
		checkClose(t, name+": encoder_backward_wte", gotWTE, wantWTE, tolOf(e, 1e-5))
		checkClose(t, name+": encoder_backward_wpe", gotWPE, wantWPE, tolOf(e, 1e-5))
		// The rows of tokens the batch does not hold keep their values.
		in := map[int32]bool{}
		for _, tok := range tokens {
			in[tok] = true
		}
		for v := 0; v < c.V; v++ {
			if in[int32(v)] {
				continue
			}
			for j := v * c.C; j < (v+1)*c.C; j++ {
				if gotWTE[j] != dwte0[j] {
					t.Fatalf("%s: encoder_backward_wte changed dwte[%d][%d] of a token not in the batch: %g, was %g", name, v, j-v*c.C, gotWTE[j], dwte0[j])
				}
			}
		}

		againWTE, againWPE := encoderBackward(t, e, tokens, dwte0, dwpe0, doutD, c.B, c.T, c.C, c.V)
		sameBits(t, name+": encoder_backward_wte", gotWTE, againWTE)
		sameBits(t, name+": encoder_backward_wpe", gotWPE, againWPE)
	}
}
