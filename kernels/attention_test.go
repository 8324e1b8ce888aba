//go:build gpu

package kernels

import (
	"math"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
)

// attentionShape is a test shape: B, T, C = NH·hs, NH query heads and NKV
// key/value heads.
type attentionShape struct{ b, t, c, nh, nkv int }

// attentionShapes covers a single token, odd T with tails in every tile size
// (37, 130), head sizes 32, 20 (not a multiple of the float4 width's tile),
// 64 and the gpt2-124m layer (T=1024, hs=64, NH=12), as multi-head attention
// (NKV = NH); then grouped-query attention, groups of 2 and of 8 (NH=4,
// NKV=2; NH=8, NKV=1) at odd T, for every compiled head-size tier (20, 32,
// 64, 128). Shapes the kernels do not support are refused by
// config.Dims.Validate before any program is built, and tested there.
var attentionShapes = []attentionShape{
	{1, 1, 8, 1, 1},
	{2, 37, 96, 3, 3},
	{3, 64, 128, 4, 4},
	{1, 130, 60, 3, 3},
	{2, 256, 512, 8, 8},
	{1, 1024, 768, 12, 12},
	{2, 37, 128, 4, 2},  // hs 32
	{1, 1, 256, 4, 2},   // hs 64, a single token
	{3, 67, 256, 4, 2},  // hs 64
	{2, 45, 160, 8, 1},  // hs 20
	{1, 131, 512, 8, 1}, // hs 64
	{2, 53, 512, 4, 1},  // hs 128
}

// qkvW is the qkv row width (NH+2·NKV)·hs of a shape.
func (s attentionShape) qkvW() int { return (s.nh + 2*s.nkv) * (s.c / s.nh) }

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
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		qkvDev, qkv := upload(t, "qkv", normal(r, b*tt*sh.qkvW(), 1))
		out, lse := buffer(t, "out", b*tt*c), buffer(t, "lse", b*nh*tt)
		run(t, AttentionForward(out, lse, qkvDev, b, tt, c, nh, nkv))
		wantOut, wantLse := make([]float64, b*tt*c), make([]float64, b*nh*tt)
		ref.GQAttentionForward(wantOut, wantLse, qkv, b, tt, nh, nkv, c/nh)
		gotOut, gotLse := download(t, out, b*tt*c), download(t, lse, b*nh*tt)
		t.Logf("B=%d T=%d C=%d NH=%d NKV=%d", b, tt, c, nh, nkv)
		checkClose(t, "attention out", gotOut, wantOut, attentionFwdTol)
		checkClose(t, "attention lse", gotLse, wantLse, attentionFwdTol)

		// The forward has no cross-block reduction; check it is
		// bitwise repeatable all the same.
		out2, lse2 := buffer(t, "out", b*tt*c), buffer(t, "lse", b*nh*tt)
		run(t, AttentionForward(out2, lse2, qkvDev, b, tt, c, nh, nkv))
		sameBits(t, "attention out", download(t, out2, b*tt*c), gotOut)
		sameBits(t, "attention lse", download(t, lse2, b*nh*tt), gotLse)
	}
}

func TestAttentionBackward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range attentionShapes {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		n, nq, nl := b*tt*c, b*tt*sh.qkvW(), b*nh*tt
		t.Logf("B=%d T=%d C=%d NH=%d NKV=%d", b, tt, c, nh, nkv)
		qkvDev, qkv := upload(t, "qkv", normal(r, nq, 1))
		doutDev, dout := upload(t, "dout", normal(r, n, 1))
		// out and lse come from the GPU forward, as in the model.
		out, lse := buffer(t, "out", n), buffer(t, "lse", nl)
		run(t, AttentionForward(out, lse, qkvDev, b, tt, c, nh, nkv))
		d, dqkv := buffer(t, "d", nl), buffer(t, "dqkv", nq)
		bwd := AttentionBackward(dqkv, d, doutDev, qkvDev, out, lse, b, tt, c, nh, nkv)
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
		ref.GQAttentionBackward(want, dout, qkv, b, tt, nh, nkv, hs)
		// Each part separately, so a wrong or unwritten part is not hidden
		// by the others' norm.
		gotParts, wantParts := attnParts(got, sh), attnParts(want, sh)
		for p, name := range []string{"dq", "dk", "dv"} {
			checkClose(t, "attention "+name, gotParts[p], wantParts[p], attentionBwdTol)
		}

		// Determinism: a second run into a fresh poisoned buffer must give
		// the same bits.
		dqkv2 := buffer(t, "dqkv", nq)
		run(t, AttentionBackward(dqkv2, d, doutDev, qkvDev, out, lse, b, tt, c, nh, nkv)...)
		sameBits(t, "attention dqkv", download(t, dqkv2, nq), got)
	}
}

// TestAttentionGQAIsRepeatedKV: grouped-query attention is multi-head
// attention on k and v heads repeated over each group (Hugging Face's
// repeat_kv), and the kernels compute each query head alike in both
// layouts. So the forward's out and lse and the backward's dq of a GQA
// shape must equal, bit for bit, those of the MHA shape with the repeated
// k and v; and the GQA dk, dv must be the sums over each group of the MHA
// ones (to fp32 rounding: the GQA kernel sums the group in one accumulator).
// That pins the head indexing exactly, where the float64 comparison only
// bounds it.
func TestAttentionGQAIsRepeatedKV(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range []attentionShape{{2, 37, 128, 4, 2}, {1, 70, 512, 8, 1}} {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		hs, W, group := c/nh, sh.qkvW(), nh/nkv
		t.Logf("B=%d T=%d C=%d NH=%d NKV=%d", b, tt, c, nh, nkv)
		n, nl := b*tt*c, b*nh*tt
		gqa := normal(r, b*tt*W, 1)
		mha := repeatKV(gqa, b*tt, nh, nkv, hs)
		gqaDev, _ := upload(t, "qkv", gqa)
		mhaDev, _ := upload(t, "qkv mha", mha)
		doutDev, _ := upload(t, "dout", normal(r, n, 1))

		var outs, lses [2][]float64
		var dqkvs [2][]float64
		for i, l := range []struct {
			qkv  program.View
			nkv  int
			rows int
		}{{gqaDev, nkv, W}, {mhaDev, nh, 3 * c}} {
			out, lse, d, dqkv := buffer(t, "out", n), buffer(t, "lse", nl), buffer(t, "d", nl), buffer(t, "dqkv", b*tt*l.rows)
			run(t, AttentionForward(out, lse, l.qkv, b, tt, c, nh, l.nkv))
			run(t, AttentionBackward(dqkv, d, doutDev, l.qkv, out, lse, b, tt, c, nh, l.nkv)...)
			outs[i], lses[i], dqkvs[i] = download(t, out, n), download(t, lse, nl), download(t, dqkv, b*tt*l.rows)
		}
		sameBits(t, "GQA out vs repeated-KV MHA", outs[0], outs[1])
		sameBits(t, "GQA lse vs repeated-KV MHA", lses[0], lses[1])
		g := attnParts(dqkvs[0], sh)
		m := attnParts(dqkvs[1], attentionShape{b, tt, c, nh, nh})
		sameBits(t, "GQA dq vs repeated-KV MHA", g[0], m[0])
		for p, name := range []string{"dk", "dv"} {
			// Sum the MHA gradient over each group, in head order.
			want := make([]float64, b*tt*nkv*hs)
			for row := range b * tt {
				for h := range nh {
					for i := range hs {
						want[(row*nkv+h/group)*hs+i] += m[p+1][(row*nh+h)*hs+i]
					}
				}
			}
			checkClose(t, "GQA "+name+" vs the group sums of repeated-KV MHA", g[p+1], want, attentionBwdTol)
		}
	}
}

// repeatKV turns rows of a GQA qkv [q (NH·hs) | k (NKV·hs) | v (NKV·hs)]
// into MHA rows [q | k | v] of 3·NH·hs, query head h's k and v being kv
// head h/(NH/NKV)'s.
func repeatKV(qkv []float64, rows, nh, nkv, hs int) []float64 {
	W, group := (nh+2*nkv)*hs, nh/nkv
	out := make([]float64, 0, rows*3*nh*hs)
	for r := range rows {
		row := qkv[r*W : (r+1)*W]
		out = append(out, row[:nh*hs]...)
		for part := range 2 {
			for h := range nh {
				src := (nh + part*nkv + h/group) * hs
				out = append(out, row[src:src+hs]...)
			}
		}
	}
	return out
}

// TestAttentionBackwardParts checks that AttentionBackwardDKDV writes
// exactly the k and v parts and AttentionBackwardDQ exactly the q part:
// each launched alone on a poisoned dqkv must leave the other part(s) NaN.
func TestAttentionBackwardParts(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range []attentionShape{{2, 37, 96, 3, 3}, {2, 37, 128, 4, 2}, {1, 45, 160, 8, 1}} {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		t.Logf("B=%d T=%d C=%d NH=%d NKV=%d", b, tt, c, nh, nkv)
		n, nq, nl := b*tt*c, b*tt*sh.qkvW(), b*nh*tt
		qkvDev, _ := upload(t, "qkv", normal(r, nq, 1))
		doutDev, _ := upload(t, "dout", normal(r, n, 1))
		out, lse, d := buffer(t, "out", n), buffer(t, "lse", nl), buffer(t, "d", nl)
		run(t, AttentionForward(out, lse, qkvDev, b, tt, c, nh, nkv),
			AttentionBackwardPreprocess(d, doutDev, out, b, tt, c, nh))
		launches := []struct {
			name    string
			op      func(dqkv program.View) program.Op
			written [3]bool
		}{
			{"dkdv", func(p program.View) program.Op {
				return AttentionBackwardDKDV(p, d, doutDev, qkvDev, lse, b, tt, c, nh, nkv)
			}, [3]bool{false, true, true}},
			{"dq", func(p program.View) program.Op {
				return AttentionBackwardDQ(p, d, doutDev, qkvDev, lse, b, tt, c, nh, nkv)
			}, [3]bool{true, false, false}},
		}
		for _, l := range launches {
			p := buffer(t, "dqkv", nq)
			run(t, l.op(p))
			checkWrittenParts(t, l.name, attnParts(download(t, p, nq), sh), l.written)
		}
	}
}

// checkWrittenParts fails unless exactly the parts marked written (q, k, v)
// hold no NaN and the others are all still NaN (poisoned).
func checkWrittenParts(t *testing.T, launch string, parts [3][]float64, written [3]bool) {
	t.Helper()
	for pi, name := range []string{"q", "k", "v"} {
		v := parts[pi]
		nans := 0
		for _, x := range v {
			if math.IsNaN(x) {
				nans++
			}
		}
		switch {
		case written[pi] && nans != 0:
			t.Errorf("%s left %d of %d elements of the %s part unwritten", launch, nans, len(v), name)
		case !written[pi] && nans != len(v):
			t.Errorf("%s wrote %d of %d elements of the %s part, which it must not touch", launch, len(v)-nans, len(v), name)
		}
	}
}

// attnParts splits a (B·T, (NH+2·NKV)·hs) qkv-shaped array of shape sh into
// its q (NH·hs), k and v (NKV·hs each) columns, each row after row.
func attnParts(v []float64, sh attentionShape) [3][]float64 {
	hs := sh.c / sh.nh
	W, widths := sh.qkvW(), [3]int{sh.nh * hs, sh.nkv * hs, sh.nkv * hs}
	var parts [3][]float64
	for r := range sh.b * sh.t {
		off := r * W
		for p, w := range widths {
			parts[p] = append(parts[p], v[off:off+w]...)
			off += w
		}
	}
	return parts
}
