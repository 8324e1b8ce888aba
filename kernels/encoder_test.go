//go:build gpu

package kernels

import (
	"math"
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

func TestEncoderForward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, c := range []struct{ B, T, C, V int }{
		{1, 1, 1, 2},
		{3, 37, 1, 5},     // scalar path
		{3, 37, 37, 1003}, // scalar path, odd C
		{3, 37, 96, 1003}, // float4 path
		{3, 37, 100, 5},
		{4, 64, 768, 1000},
		{8, 256, 768, 50257},
	} {
		N := c.B * c.T
		maxT := c.T + 3 // wpe has more rows than a batch uses
		tokens := randomTokens(r, N, c.V)
		wteD, wte := upload(t, "wte", normal(r, c.V*c.C, 1))
		wpeD, wpe := upload(t, "wpe", normal(r, maxT*c.C, 1))
		tokD := uploadInt(t, "tokens", tokens)
		out := buffer(t, "out", N*c.C)
		run(t, EncoderForward(out, tokD, wteD, wpeD, c.B, c.T, c.C))
		got := download(t, out, N*c.C)
		want := make([]float64, N*c.C)
		ref.EncoderForward(want, tokens, wte, wpe, c.B, c.T, c.C)
		// One float32 addition of float32 inputs: correctly rounded, so the
		// result must equal the float64 sum rounded to float32, exactly.
		for i := range want {
			want[i] = float64(float32(want[i]))
		}
		checkClose(t, "encoder_forward", got, want, 0)
	}
}

// TestEncoderForwardUnaligned runs the scalar path with C%4 == 0 by handing
// the kernel views that do not start on a 16-byte boundary.
func TestEncoderForwardUnaligned(t *testing.T) {
	env(t)
	r := rng(t)
	const B, T, C, V = 3, 37, 96, 50
	N := B * T
	tokens := randomTokens(r, N, V)
	wteD, wte := upload(t, "wte", normal(r, V*C+1, 1))
	wpeD, wpe := upload(t, "wpe", normal(r, T*C, 1))
	tokD := uploadInt(t, "tokens", tokens)
	out := buffer(t, "out", N*C+1)
	run(t, EncoderForward(out.At(1), tokD, wteD.At(1), wpeD, B, T, C))
	got := download(t, out, N*C+1)
	if !math.IsNaN(got[0]) {
		t.Fatalf("encoder_forward wrote before out: %g", got[0])
	}
	want := make([]float64, N*C)
	ref.EncoderForward(want, tokens, wte[1:], wpe, B, T, C)
	for i := range want {
		want[i] = float64(float32(want[i]))
	}
	checkClose(t, "encoder_forward (unaligned)", got[1:], want, 0)
}

// encoderBackward runs both embedding backward kernels from the given
// starting gradients and returns dwte and dwpe. The positions are grouped
// as the model groups them: buckets.Padded, min(N, V) buckets, so that the
// grid is the same for every batch of a shape.
func encoderBackward(t *testing.T, tokens []int32, dwte0, dwpe0 []float64, dout program.View, B, T, C, V int) (dwte, dwpe []float64) {
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
	dwteD, _ := upload(t, "dwte", dwte0)
	dwpeD, _ := upload(t, "dwpe", dwpe0)
	wte := EncoderBackwardWTE(dwteD, dout, order, start, token, numBuckets, N, C)
	if wte.Grid.X != numBuckets {
		t.Errorf("encoder_backward_wte grid %v: want one row per bucket, %d", wte.Grid, numBuckets)
	}
	run(t, wte, EncoderBackwardWPE(dwpeD, dout, B, T, C))
	return download(t, dwteD, V*C), download(t, dwpeD, T*C)
}

func TestEncoderBackward(t *testing.T) {
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
		N := c.B * c.T
		tokens := c.tokens(N, c.V)
		doutD, dout := upload(t, "dout", normal(r, N*c.C, 1))
		// Both gradients accumulate, so they start from random values
		// (rounded to float32 by a throwaway upload).
		_, dwte0 := upload(t, "dwte0", normal(r, c.V*c.C, 1))
		_, dwpe0 := upload(t, "dwpe0", normal(r, c.T*c.C, 1))
		gotWTE, gotWPE := encoderBackward(t, tokens, dwte0, dwpe0, doutD, c.B, c.T, c.C, c.V)

		wantWTE := append([]float64(nil), dwte0...)
		wantWPE := append([]float64(nil), dwpe0...)
		ref.EncoderBackward(wantWTE, wantWPE, dout, tokens, c.B, c.T, c.C)
		// fp32 sums of up to N terms in another order than the float64
		// reference: rounding grows like sqrt(terms)·2^-24, well under 1e-5.
		checkClose(t, c.name+": encoder_backward_wte", gotWTE, wantWTE, 1e-5)
		checkClose(t, c.name+": encoder_backward_wpe", gotWPE, wantWPE, 1e-5)

		againWTE, againWPE := encoderBackward(t, tokens, dwte0, dwpe0, doutD, c.B, c.T, c.C, c.V)
		sameBits(t, c.name+": encoder_backward_wte", gotWTE, againWTE)
		sameBits(t, c.name+": encoder_backward_wpe", gotWPE, againWPE)
	}
}
