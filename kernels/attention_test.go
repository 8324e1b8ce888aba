//go:build gpu

package kernels

import (
	"math"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
)

// attentionShapes covers a single token, odd T with tails in every tile size
// (37, 130), head sizes 32, 20 (not a multiple of the float4 width's tile),
// 64 and the gpt2-124m layer (T=1024, hs=64, NH=12). Shapes the kernels do
// not support are refused by config.Dims.Validate before any program is
// built, and tested there.
var attentionShapes = []struct{ b, t, c, nh int }{
	{1, 1, 8, 1},
	{2, 37, 96, 3},
	{3, 64, 128, 4},
	{1, 130, 60, 3},
	{2, 256, 512, 8},
	{1, 1024, 768, 12},
}

// Tolerances. Forward: every output element is a convex combination of v
// values and lse is a log of a sum of positive terms, so there is no
// cancellation; fp32 rounding over sums of up to T=1024 terms gives relative
// errors of a few 1e-7, and 1e-5 leaves a wide margin while any masking or
// indexing error gives O(1). Backward: dS = P∘(dP − D) subtracts two
// similar numbers and dK, dV, dQ sum up to T such terms, so the relative
// error is larger (a few 1e-7 to 1e-6 in practice); 1e-4 still catches any
// wrong or missing term, each of which is O(1/T) of the norm or more.
const (
	attentionFwdTol = 1e-5
	attentionBwdTol = 1e-4
)

func TestAttentionForward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range attentionShapes {
		b, tt, c, nh := sh.b, sh.t, sh.c, sh.nh
		qkvDev, qkv := upload(t, "qkv", normal(r, b*tt*3*c, 1))
		out, lse := buffer(t, "out", b*tt*c), buffer(t, "lse", b*nh*tt)
		run(t, AttentionForward(out, lse, qkvDev, b, tt, c, nh))
		wantOut, wantLse := make([]float64, b*tt*c), make([]float64, b*nh*tt)
		ref.AttentionForward(wantOut, wantLse, qkv, b, tt, c, nh)
		gotOut, gotLse := download(t, out, b*tt*c), download(t, lse, b*nh*tt)
		t.Logf("B=%d T=%d C=%d NH=%d", b, tt, c, nh)
		checkClose(t, "attention out", gotOut, wantOut, attentionFwdTol)
		checkClose(t, "attention lse", gotLse, wantLse, attentionFwdTol)

		// The forward has no cross-block reduction; check it is
		// bitwise repeatable all the same.
		out2, lse2 := buffer(t, "out", b*tt*c), buffer(t, "lse", b*nh*tt)
		run(t, AttentionForward(out2, lse2, qkvDev, b, tt, c, nh))
		sameBits(t, "attention out", download(t, out2, b*tt*c), gotOut)
		sameBits(t, "attention lse", download(t, lse2, b*nh*tt), gotLse)
	}
}

func TestAttentionBackward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range attentionShapes {
		b, tt, c, nh := sh.b, sh.t, sh.c, sh.nh
		n, nq, nl := b*tt*c, b*tt*3*c, b*nh*tt
		t.Logf("B=%d T=%d C=%d NH=%d", b, tt, c, nh)
		qkvDev, qkv := upload(t, "qkv", normal(r, nq, 1))
		doutDev, dout := upload(t, "dout", normal(r, n, 1))
		// out and lse come from the GPU forward, as in the model.
		out, lse := buffer(t, "out", n), buffer(t, "lse", nl)
		run(t, AttentionForward(out, lse, qkvDev, b, tt, c, nh))
		d, dqkv := buffer(t, "d", nl), buffer(t, "dqkv", nq)
		bwd := AttentionBackward(dqkv, d, doutDev, qkvDev, out, lse, b, tt, c, nh)
		if len(bwd) != 3 {
			t.Fatalf("AttentionBackward: %d ops, want 3 (preprocess, dK and dV, dQ)", len(bwd))
		}
		run(t, bwd...)
		got := download(t, dqkv, nq)

		// D = Σ dout·out per head row, from the GPU's own out.
		gotOut := download(t, out, n)
		hs := c / nh
		wantD := make([]float64, nl)
		for bi := 0; bi < b; bi++ {
			for ti := 0; ti < tt; ti++ {
				for h := 0; h < nh; h++ {
					s := 0.0
					for i := 0; i < hs; i++ {
						j := (bi*tt+ti)*c + h*hs + i
						s += dout[j] * gotOut[j]
					}
					wantD[(bi*nh+h)*tt+ti] = s
				}
			}
		}
		// A dot product of hs terms: fp32 rounding relative ~1e-7, but
		// D can be near zero for a row, so compare as a whole vector.
		checkClose(t, "attention D", download(t, d, nl), wantD, attentionFwdTol)

		want := make([]float64, nq)
		ref.AttentionBackward(want, dout, qkv, nil, nil, b, tt, c, nh)
		// Each part separately, so a wrong or unwritten part is not hidden
		// by the others' norm.
		for p, name := range []string{"dq", "dk", "dv"} {
			checkClose(t, "attention "+name, attnPart(got, tt*b, c, p), attnPart(want, tt*b, c, p), attentionBwdTol)
		}

		// Determinism: a second run into a fresh poisoned buffer must give
		// the same bits.
		dqkv2 := buffer(t, "dqkv", nq)
		run(t, AttentionBackward(dqkv2, d, doutDev, qkvDev, out, lse, b, tt, c, nh)...)
		sameBits(t, "attention dqkv", download(t, dqkv2, nq), got)
	}
}

// TestAttentionBackwardParts checks that AttentionBackwardDKDV writes
// exactly the k and v parts and AttentionBackwardDQ exactly the q part:
// each launched alone on a poisoned dqkv must leave the other part(s) NaN.
func TestAttentionBackwardParts(t *testing.T) {
	env(t)
	r := rng(t)
	b, tt, c, nh := 2, 37, 96, 3
	n, nq, nl := b*tt*c, b*tt*3*c, b*nh*tt
	qkvDev, _ := upload(t, "qkv", normal(r, nq, 1))
	doutDev, _ := upload(t, "dout", normal(r, n, 1))
	out, lse, d := buffer(t, "out", n), buffer(t, "lse", nl), buffer(t, "d", nl)
	run(t, AttentionForward(out, lse, qkvDev, b, tt, c, nh),
		AttentionBackwardPreprocess(d, doutDev, out, b, tt, c, nh))
	launches := []struct {
		name    string
		op      func(dqkv program.View) program.Op
		written [3]bool
	}{
		{"dkdv", func(p program.View) program.Op {
			return AttentionBackwardDKDV(p, d, doutDev, qkvDev, lse, b, tt, c, nh)
		}, [3]bool{false, true, true}},
		{"dq", func(p program.View) program.Op {
			return AttentionBackwardDQ(p, d, doutDev, qkvDev, lse, b, tt, c, nh)
		}, [3]bool{true, false, false}},
	}
	for _, l := range launches {
		p := buffer(t, "dqkv", nq)
		run(t, l.op(p))
		got := download(t, p, nq)
		for pi, name := range []string{"q", "k", "v"} {
			v := attnPart(got, b*tt, c, pi)
			nans := 0
			for _, x := range v {
				if math.IsNaN(x) {
					nans++
				}
			}
			switch {
			case l.written[pi] && nans != 0:
				t.Errorf("%s left %d of %d elements of the %s part unwritten", l.name, nans, len(v), name)
			case !l.written[pi] && nans != len(v):
				t.Errorf("%s wrote %d of %d elements of the %s part, which it must not touch", l.name, len(v)-nans, len(v), name)
			}
		}
	}
}

// attnPart extracts part p (0 q, 1 k, 2 v) of a (rows, 3c) qkv-shaped array.
func attnPart(v []float64, rows, c, p int) []float64 {
	out := make([]float64, 0, rows*c)
	for r := 0; r < rows; r++ {
		out = append(out, v[r*3*c+p*c:][:c]...)
	}
	return out
}
