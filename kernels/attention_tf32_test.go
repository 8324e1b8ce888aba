//go:build gpu

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
)

// attnTF32Shapes: head size 64 throughout (the kernels' one), B 1 to 3, NH
// 1 to 12, a single token, T that is no multiple of the 64-row block tiles
// or the 32-row streamed tiles (37, 63, 65, 129, 200), whole tiles (128),
// the gpt2-124m layer (T=1024, NH=12) as multi-head attention, and grouped-
// query attention with groups of 2, 3 and 8.
var attnTF32Shapes = []attentionShape{
	{1, 1, 64, 1, 1},
	{2, 1, 128, 2, 1},
	{2, 37, 128, 2, 2},
	{3, 63, 192, 3, 3},
	{1, 65, 256, 4, 2},
	{3, 128, 128, 2, 2},
	{2, 129, 384, 6, 2},
	{1, 200, 512, 8, 1},
	{1, 1024, 768, 12, 12},
}

// Tolerances, from the precision. cvt.rna.tf32.f32 keeps 10 mantissa bits:
// a relative error of at most u = 2^-11 ≈ 4.9e-4 a rounding, about u/√3 ≈
// 2.8e-4 RMS over values spread across their binade. The errors of
// independent roundings add in quadrature and, over sums without
// cancellation, stay relative to the sum.
//   - out: S = Q·Kᵀ from two rounded operands (≈ 4e-4 of each term; the
//     scores, scaled by 1/8 and of RMS 1, move P by ≈ 4e-4·|s|·… ≈ 2e-4),
//     then P and V rounded before P·V (≈ 4e-4): ≈ 4-5e-4 of out's norm
//     (the CPU emulation, scripts/attnsim.sh, measures 3-3.5e-4). Allowed
//     2e-3: 4× over (H200: 1.7-3.7e-4), and a missing key tile or a wrong
//     head moves out by ≥ 1e-2.
//   - lse: a scaled score's error, ≈ √2·2.8e-4·√64·(RMS of q_i·k_i = 1)/8
//     ≈ 4e-4 absolute at T = 1, where lse is that one score (of any size,
//     near 0 too: so the bound is absolute), and averaged by P below that
//     for longer rows. Allowed an RMS of 2e-3 (H200: 1.7-3.9e-4 at T = 1,
//     5.8e-5 at T = 1024); a missing key tile moves lse by ≥ 1e-2.
//   - d: attention.cu's fp32 preprocess of the GPU's own out, as for the
//     fp32 kernels: 1e-5.
//   - dq, dk, dv: one rounding of each operand of S, dP and the gradient
//     product, plus the forward's out error carried through d into
//     dP − d: ≈ 5-7e-4 RMS (emulation: 4.7-5.3e-4; H200: 1.7-5.4e-4).
//     Allowed 3e-3.
//
// At T = 1 the reference dq and dk are exactly 0 (P = 1, dS = dP − d = 0),
// so there they are bounded by attnTF32GradTol·‖dv‖ instead, dv being the
// gradient's scale: dS is the rounding error of dP − d (≈ 5e-4·|dP|).
const (
	attnTF32OutTol  = 2e-3
	attnTF32LseRMS  = 2e-3
	attnTF32DTol    = 1e-5
	attnTF32GradTol = 3e-3
)

// attnTF32Tail is the number of poisoned floats after each output view
// that the kernels must leave untouched.
const attnTF32Tail = 67

func attnTF32Name(s attentionShape) string {
	return fmt.Sprintf("B%d_T%d_C%d_NH%d_NKV%d", s.b, s.t, s.c, s.nh, s.nkv)
}

// tailed returns a poisoned fp32 buffer of n + attnTF32Tail floats and the
// view of its first n.
func tailed(t *testing.T, name string, n int) program.View {
	t.Helper()
	return buffer(t, name, n+attnTF32Tail).Buf.Slice(name, 0, int64(n))
}

// tailUntouched fails unless the attnTF32Tail floats after view v are all
// still the poison (NaN).
func tailUntouched(t *testing.T, what string, v program.View) {
	t.Helper()
	n := int(v.Elems)
	all := download(t, v.Buf.All(), n+attnTF32Tail)
	for i, x := range all[n:] {
		if !math.IsNaN(x) {
			t.Fatalf("%s: element %d past the view was written (%g)", what, i, x)
		}
	}
}

func TestAttentionTF32Forward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range attnTF32Shapes {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		t.Run(attnTF32Name(sh), func(t *testing.T) {
			env(t)
			n, nl := b*tt*c, b*nh*tt
			qkvDev, qkv := upload(t, "qkv", normal(r, b*tt*sh.qkvW(), 1))
			out, lse := tailed(t, "out", n), tailed(t, "lse", nl)
			run(t, AttentionForwardTF32(out, lse, qkvDev, b, tt, c, nh, nkv))
			wantOut, wantLse := make([]float64, n), make([]float64, nl)
			ref.GQAttentionForward(wantOut, wantLse, qkv, b, tt, nh, nkv, c/nh)
			gotOut, gotLse := download(t, out, n), download(t, lse, nl)
			checkClose(t, "attention tf32 out", gotOut, wantOut, attnTF32OutTol)
			checkRMS(t, "attention tf32 lse", gotLse, wantLse, attnTF32LseRMS)
			tailUntouched(t, "attention tf32 out", out)
			tailUntouched(t, "attention tf32 lse", lse)

			// Beside the fp32 kernels: the same quantities, to TF32's error.
			out32, lse32 := buffer(t, "out32", n), buffer(t, "lse32", nl)
			run(t, AttentionForward(out32, lse32, qkvDev, b, tt, c, nh, nkv))
			checkClose(t, "attention tf32 out vs fp32 kernel", gotOut, download(t, out32, n), attnTF32OutTol)
			checkRMS(t, "attention tf32 lse vs fp32 kernel", gotLse, download(t, lse32, nl), attnTF32LseRMS)

			// No cross-block sums, but bitwise repeatable all the same.
			out2, lse2 := buffer(t, "out", n), buffer(t, "lse", nl)
			run(t, AttentionForwardTF32(out2, lse2, qkvDev, b, tt, c, nh, nkv))
			sameBits(t, "attention tf32 out", download(t, out2, n), gotOut)
			sameBits(t, "attention tf32 lse", download(t, lse2, nl), gotLse)
		})
	}
}

func TestAttentionTF32Backward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range attnTF32Shapes {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		t.Run(attnTF32Name(sh), func(t *testing.T) {
			env(t)
			n, nq, nl := b*tt*c, b*tt*sh.qkvW(), b*nh*tt
			qkvDev, qkv := upload(t, "qkv", normal(r, nq, 1))
			doutDev, dout := upload(t, "dout", normal(r, n, 1))
			// out and lse come from the TF32 forward, as in the model.
			out, lse := buffer(t, "out", n), buffer(t, "lse", nl)
			run(t, AttentionForwardTF32(out, lse, qkvDev, b, tt, c, nh, nkv))
			d, dqkv := tailed(t, "d", nl), tailed(t, "dqkv", nq)
			bwd := AttentionBackwardTF32(dqkv, d, doutDev, qkvDev, out, lse, b, tt, c, nh, nkv)
			if len(bwd) != 3 {
				t.Fatalf("AttentionBackwardTF32: %d ops, want 3 (preprocess, dK and dV, dQ)", len(bwd))
			}
			run(t, bwd...)
			got := download(t, dqkv, nq)
			tailUntouched(t, "attention tf32 dqkv", dqkv)
			tailUntouched(t, "attention tf32 d", d)

			// d = Σ dout·out per head row, from the GPU's own out.
			gotOut := download(t, out, n)
			hs := c / nh
			wantD := make([]float64, nl)
			for bi := range b {
				for ti := range tt {
					for h := range nh {
						s := 0.0
						for i := range hs {
							j := (bi*tt+ti)*c + h*hs + i
							s += dout[j] * gotOut[j]
						}
						wantD[(bi*nh+h)*tt+ti] = s
					}
				}
			}
			checkClose(t, "attention tf32 d", download(t, d, nl), wantD, attnTF32DTol)

			want := make([]float64, nq)
			ref.GQAttentionBackward(want, dout, qkv, b, tt, nh, nkv, hs)
			// Each part separately, so a wrong or unwritten part is not
			// hidden by the others' norm (a poisoned element is NaN).
			gotParts, wantParts := attnParts(got, sh), attnParts(want, sh)
			checkTF32Grads(t, "", tt, gotParts, wantParts)

			// Beside the fp32 kernels, forward and backward.
			out32, lse32, d32, dqkv32 := buffer(t, "out32", n), buffer(t, "lse32", nl), buffer(t, "d32", nl), buffer(t, "dqkv32", nq)
			run(t, append([]program.Op{AttentionForward(out32, lse32, qkvDev, b, tt, c, nh, nkv)},
				AttentionBackward(dqkv32, d32, doutDev, qkvDev, out32, lse32, b, tt, c, nh, nkv)...)...)
			checkTF32Grads(t, " vs fp32 kernel", tt, gotParts, attnParts(download(t, dqkv32, nq), sh))

			// Determinism: a second run into fresh poisoned buffers.
			d2, dqkv2 := buffer(t, "d", nl), buffer(t, "dqkv", nq)
			run(t, AttentionBackwardTF32(dqkv2, d2, doutDev, qkvDev, out, lse, b, tt, c, nh, nkv)...)
			sameBits(t, "attention tf32 d", download(t, d2, nl), download(t, d, nl))
			sameBits(t, "attention tf32 dqkv", download(t, dqkv2, nq), got)
		})
	}
}

// checkRMS fails unless the root mean square of got − want is at most tol
// (an absolute bound; NaN fails).
func checkRMS(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	var s float64
	for i := range got {
		s += (got[i] - want[i]) * (got[i] - want[i])
	}
	if e := math.Sqrt(s / float64(len(got))); !(e <= tol) {
		t.Fatalf("%s: RMS error %.3g, allowed %.3g", what, e, tol)
	} else {
		t.Logf("%s: RMS error %.3g", what, e)
	}
}

// checkTF32Grads compares the dq, dk, dv parts with attnTF32GradTol; at
// T = 1, where dq and dk are exactly zero, it bounds their norm by
// attnTF32GradTol·‖dv‖ instead (see the tolerances).
func checkTF32Grads(t *testing.T, what string, T int, got, want [3][]float64) {
	t.Helper()
	for p, name := range []string{"dq", "dk", "dv"} {
		if T > 1 || p == 2 {
			checkClose(t, "attention tf32 "+name+what, got[p], want[p], attnTF32GradTol)
			continue
		}
		var g, v float64
		for i, x := range got[p] {
			g += (x - want[p][i]) * (x - want[p][i])
		}
		for _, x := range want[2] {
			v += x * x
		}
		if e := math.Sqrt(g / v); !(e <= attnTF32GradTol) {
			t.Fatalf("attention tf32 %s%s at T = 1: ‖got − want‖/‖dv‖ = %.3g, allowed %.3g", name, what, e, attnTF32GradTol)
		} else {
			t.Logf("attention tf32 %s%s at T = 1: ‖got − want‖/‖dv‖ = %.3g", name, what, e)
		}
	}
}

// TestAttentionTF32BackwardParts checks that the dkdv kernel writes exactly
// the k and v parts and the dq kernel exactly the q part: each launched
// alone on a poisoned dqkv must leave the other part(s) NaN.
func TestAttentionTF32BackwardParts(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range []attentionShape{{2, 37, 192, 3, 3}, {1, 65, 256, 4, 2}, {2, 45, 512, 8, 1}} {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		t.Run(attnTF32Name(sh), func(t *testing.T) {
			env(t)
			n, nq, nl := b*tt*c, b*tt*sh.qkvW(), b*nh*tt
			qkvDev, _ := upload(t, "qkv", normal(r, nq, 1))
			doutDev, _ := upload(t, "dout", normal(r, n, 1))
			out, lse, d := buffer(t, "out", n), buffer(t, "lse", nl), buffer(t, "d", nl)
			run(t, AttentionForwardTF32(out, lse, qkvDev, b, tt, c, nh, nkv),
				AttentionBackwardPreprocess(d, doutDev, out, b, tt, c, nh))
			launches := []struct {
				name    string
				op      func(dqkv program.View) program.Op
				written [3]bool
			}{
				{"dkdv", func(p program.View) program.Op {
					return AttentionBackwardDKDVTF32(p, d, doutDev, qkvDev, lse, b, tt, c, nh, nkv)
				}, [3]bool{false, true, true}},
				{"dq", func(p program.View) program.Op {
					return AttentionBackwardDQTF32(p, d, doutDev, qkvDev, lse, b, tt, c, nh, nkv)
				}, [3]bool{true, false, false}},
			}
			for _, l := range launches {
				p := buffer(t, "dqkv", nq)
				run(t, l.op(p))
				checkWrittenParts(t, l.name, attnParts(download(t, p, nq), sh), l.written)
			}
		})
	}
}

// TestAttentionTF32NaN: a NaN in the input is not rounded away. A NaN in
// one element of key 0's value row reaches that column of every query
// row's output of the heads that read it (every query attends key 0), and
// no other column, head or lse.
func TestAttentionTF32NaN(t *testing.T) {
	env(t)
	r := rng(t)
	b, tt, c, nh, nkv := 1, 70, 256, 4, 2
	sh := attentionShape{b, tt, c, nh, nkv}
	n, nq, nl, hs := b*tt*c, b*tt*sh.qkvW(), b*nh*tt, c/nh
	host := normal(r, nq, 1)
	col := 5
	host[(nh+nkv)*hs+col] = math.NaN() // v of kv head 0, key 0, column 5
	qkvDev, _ := upload(t, "qkv", host)
	out, lse := buffer(t, "out", n), buffer(t, "lse", nl)
	run(t, AttentionForwardTF32(out, lse, qkvDev, b, tt, c, nh, nkv))
	got := download(t, out, n)
	for ti := range tt {
		for h := range nh {
			for i := range hs {
				x := got[ti*c+h*hs+i]
				if want := i == col && h/(nh/nkv) == 0; math.IsNaN(x) != want {
					t.Fatalf("query %d head %d column %d: %g (the NaN is in column %d of kv head 0's v)", ti, h, i, x, col)
				}
			}
		}
	}
	for _, x := range download(t, lse, nl) {
		if math.IsNaN(x) {
			t.Fatal("lse is NaN: the NaN in v must not reach the scores")
		}
	}
}

// BenchmarkAttentionTF32 times the TF32 attention at the gpt2-124m layer
// (B=8, NH=12, T=1024, hs=64) as BenchmarkAttentionMMA does the bf16 one
// (CUDA events, median of at least 30), with the fp32 kernels of
// attention.cu on the same inputs beside it. TFLOP/s are counted as
// FlashAttention counts them: causal forward 4·B·NH·T²·hs/2, backward 2.5×
// that. Run with
//
//	kernels.test -test.run '^$' -test.bench AttentionTF32 -test.benchtime 1x
func BenchmarkAttentionTF32(b *testing.B) {
	x := matmulBenchEnv(b)
	r := rand.New(rand.NewPCG(1, 2))
	B, T, C, NH := 8, 1024, 768, 12
	hs := C / NH
	n, nq, nl := B*T*C, B*T*3*C, B*NH*T
	qkv, _ := upload(b, "qkv", normal(r, nq, 1))
	dout, _ := upload(b, "dout", normal(r, n, 1))
	out, lse := buffer(b, "out", n), buffer(b, "lse", nl)
	d, dqkv := buffer(b, "d", nl), buffer(b, "dqkv", nq)
	fwd := []program.Op{AttentionForwardTF32(out, lse, qkv, B, T, C, NH, NH)}
	bwd := AttentionBackwardTF32(dqkv, d, dout, qkv, out, lse, B, T, C, NH, NH)
	reps := max(30, b.N)
	flops := 4 * float64(B*NH) * float64(T) * float64(T) * float64(hs) / 2
	tf := attnMMAMedian(b, x, reps, fwd)
	tb := attnMMAMedian(b, x, reps, bwd)
	tpre := attnMMAMedian(b, x, reps, bwd[:1])
	tkv := attnMMAMedian(b, x, reps, bwd[1:2])
	tq := attnMMAMedian(b, x, reps, bwd[2:3])

	o32, dq32 := buffer(b, "out32", n), buffer(b, "dqkv32", nq)
	f32 := []program.Op{AttentionForward(o32, lse, qkv, B, T, C, NH, NH)}
	b32 := AttentionBackward(dq32, d, dout, qkv, o32, lse, B, T, C, NH, NH)
	tf32 := attnMMAMedian(b, x, 10, f32)
	tb32 := attnMMAMedian(b, x, 10, b32)

	b.ReportMetric(flops/tf/1e12, "fwd-TFLOP/s")
	b.ReportMetric(2.5*flops/tb/1e12, "bwd-TFLOP/s")
	b.ReportMetric(tf*1e6, "fwd-us")
	b.ReportMetric(tb*1e6, "bwd-us")
	b.Logf("tf32 mma B=%d NH=%d T=%d hs=%d, median of %d: forward %.1f us (%.1f TFLOP/s); backward %.1f us (%.1f TFLOP/s) = preprocess %.1f + dkdv %.1f (%.1f TFLOP/s of its 4 products) + dq %.1f (%.1f TFLOP/s of its 3)",
		B, NH, T, hs, reps, tf*1e6, flops/tf/1e12, tb*1e6, 2.5*flops/tb/1e12, tpre*1e6, tkv*1e6, 2*flops/tkv/1e12, tq*1e6, 1.5*flops/tq/1e12)
	b.Logf("fp32 attention.cu, same inputs, median of 10: forward %.1f us (%.1f TFLOP/s), backward %.1f us (%.1f TFLOP/s); tf32 speedup forward %.2fx, backward %.2fx",
		tf32*1e6, flops/tf32/1e12, tb32*1e6, 2.5*flops/tb32/1e12, tf32/tf, tb32/tb)
}
