//go:build gpu

package kernels

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
	"github.com/gpubench/gpubench/ptx"
	"gorgonia.org/cu"
)

// attnMMAShapes: every head size (32, 64, 128) with B and NH > 1, a single
// token, T that is no multiple of any tile (17, 100, 257: tails in the
// forward's 128- and 64-row tiles and the streamed 16- to 64-row tiles),
// whole tiles (128), and the gpt2-124m layer (T=1024, hs=64, NH=12), as
// multi-head attention; then grouped-query attention (groups of 2, 4 and 8)
// at odd T for every head size.
var attnMMAShapes = []attentionShape{
	{1, 1, 64, 2, 2},    // hs 32
	{2, 17, 96, 3, 3},   // hs 32
	{3, 100, 128, 2, 2}, // hs 64
	{2, 257, 256, 4, 4}, // hs 64
	{2, 128, 128, 2, 2}, // hs 64
	{2, 1, 256, 2, 2},   // hs 128
	{2, 100, 256, 2, 2}, // hs 128
	{1, 257, 384, 3, 3}, // hs 128
	{1, 1024, 768, 12, 12},
	{2, 37, 128, 4, 2},   // hs 32
	{3, 67, 256, 4, 2},   // hs 64
	{1, 131, 512, 8, 1},  // hs 64
	{2, 1, 512, 4, 1},    // hs 128, a single token
	{2, 53, 512, 4, 1},   // hs 128
	{1, 100, 1024, 8, 1}, // hs 128
}

// Tolerances, from the precision (docs/attention.md derives them). A bf16
// rounding to nearest has a relative error of at most 2^-8 and, over
// values spread across their binade, an RMS of 2^-7/√12·0.74 ≈ 1.7e-3, so
// about 1.7e-3 of a tensor's norm when the errors are independent and the
// sum has no cancellation.
//   - out: P is rounded to bf16 before P·V (an independent 1.7e-3 on each
//     term of a convex combination, so ≈ 1.7e-3 of out), then out is
//     rounded: ≈ 2.4e-3 RMS. Allowed 8e-3.
//   - lse, d: fp32 sums of exact bf16 products, and 2^x by ex2.approx
//     (2 ulp): ~1e-7 relative. Allowed 2e-5 and 1e-5.
//   - dq, dk, dv: one rounding of P or dS before each product, the output
//     rounding, and (through d = Σ dout·out) the forward's out error
//     relative to dP − d: ≈ 2.5–3.5e-3 RMS. Allowed 1e-2.
//
// A wrong or missing key or query tile moves a tensor by far more.
const (
	attnMMAOutTol  = 8e-3
	attnMMALseTol  = 2e-5
	attnMMADTol    = 1e-5
	attnMMAGradTol = 1e-2
)

func attnMMAName(s attentionShape) string {
	return fmt.Sprintf("B%d_T%d_C%d_NH%d_NKV%d_hs%d", s.b, s.t, s.c, s.nh, s.nkv, s.c/s.nh)
}

func TestAttentionMMAForward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range attnMMAShapes {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		t.Run(attnMMAName(sh), func(t *testing.T) {
			env(t)
			n, nl := b*tt*c, b*nh*tt
			qkvDev, qkv := uploadBF16(t, "qkv", normal(r, b*tt*sh.qkvW(), 1))
			out, lse := bf16Buffer(t, "out", n), buffer(t, "lse", nl)
			run(t, AttentionForwardMMA(out, lse, qkvDev, b, tt, c, nh, nkv))
			wantOut, wantLse := make([]float64, n), make([]float64, nl)
			ref.GQAttentionForward(wantOut, wantLse, qkv, b, tt, nh, nkv, c/nh)
			gotOut, gotLse := downloadBF16(t, out, n), download(t, lse, nl)
			checkClose(t, "attention bf16 out", gotOut, wantOut, attnMMAOutTol)
			checkClose(t, "attention bf16 lse", gotLse, wantLse, attnMMALseTol)

			// No cross-block sums, but bitwise repeatable all the same.
			out2, lse2 := bf16Buffer(t, "out", n), buffer(t, "lse", nl)
			run(t, AttentionForwardMMA(out2, lse2, qkvDev, b, tt, c, nh, nkv))
			sameBits(t, "attention bf16 out", downloadBF16(t, out2, n), gotOut)
			sameBits(t, "attention bf16 lse", download(t, lse2, nl), gotLse)
		})
	}
}

func TestAttentionMMABackward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range attnMMAShapes {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		t.Run(attnMMAName(sh), func(t *testing.T) {
			env(t)
			n, nq, nl := b*tt*c, b*tt*sh.qkvW(), b*nh*tt
			qkvDev, qkv := uploadBF16(t, "qkv", normal(r, nq, 1))
			doutDev, dout := uploadBF16(t, "dout", normal(r, n, 1))
			// out and lse come from the GPU forward, as in the model.
			out, lse := bf16Buffer(t, "out", n), buffer(t, "lse", nl)
			run(t, AttentionForwardMMA(out, lse, qkvDev, b, tt, c, nh, nkv))
			d, dqkv := buffer(t, "d", nl), bf16Buffer(t, "dqkv", nq)
			bwd := AttentionBackwardMMA(dqkv, d, doutDev, qkvDev, out, lse, b, tt, c, nh, nkv)
			if len(bwd) != 3 {
				t.Fatalf("AttentionBackwardMMA: %d ops, want 3 (preprocess, dK and dV, dQ)", len(bwd))
			}
			run(t, bwd...)
			got := downloadBF16(t, dqkv, nq)

			// d = Σ dout·out per head row, from the GPU's own bf16 out.
			gotOut := downloadBF16(t, out, n)
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
			checkClose(t, "attention bf16 d", download(t, d, nl), wantD, attnMMADTol)

			want := make([]float64, nq)
			ref.GQAttentionBackward(want, dout, qkv, b, tt, nh, nkv, hs)
			// Each part separately, so a wrong or unwritten part is not
			// hidden by the others' norm (a poisoned element is NaN).
			gotParts, wantParts := attnParts(got, sh), attnParts(want, sh)
			for p, name := range []string{"dq", "dk", "dv"} {
				checkClose(t, "attention bf16 "+name, gotParts[p], wantParts[p], attnMMAGradTol)
			}

			// Determinism: a second run into fresh poisoned buffers.
			d2, dqkv2 := buffer(t, "d", nl), bf16Buffer(t, "dqkv", nq)
			run(t, AttentionBackwardMMA(dqkv2, d2, doutDev, qkvDev, out, lse, b, tt, c, nh, nkv)...)
			sameBits(t, "attention bf16 d", download(t, d2, nl), download(t, d, nl))
			sameBits(t, "attention bf16 dqkv", downloadBF16(t, dqkv2, nq), got)
		})
	}
}

// TestAttentionMMABackwardParts checks that the dkdv kernel writes exactly
// the k and v parts and the dq kernel exactly the q part: each launched
// alone on a poisoned dqkv must leave the other part(s) NaN.
func TestAttentionMMABackwardParts(t *testing.T) {
	env(t)
	r := rng(t)
	for _, sh := range []attentionShape{{2, 37, 96, 3, 3}, {2, 70, 128, 2, 2}, {1, 33, 256, 2, 2}, {2, 37, 128, 4, 2}, {1, 45, 512, 4, 1}} {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		t.Run(attnMMAName(sh), func(t *testing.T) {
			env(t)
			n, nq, nl := b*tt*c, b*tt*sh.qkvW(), b*nh*tt
			qkvDev, _ := uploadBF16(t, "qkv", normal(r, nq, 1))
			doutDev, _ := uploadBF16(t, "dout", normal(r, n, 1))
			out, lse, d := bf16Buffer(t, "out", n), buffer(t, "lse", nl), buffer(t, "d", nl)
			run(t, AttentionForwardMMA(out, lse, qkvDev, b, tt, c, nh, nkv),
				AttentionBackwardPreprocessMMA(d, doutDev, out, b, tt, c, nh))
			launches := []struct {
				name    string
				op      func(dqkv program.View) program.Op
				written [3]bool
			}{
				{"dkdv", func(p program.View) program.Op {
					return AttentionBackwardDKDVMMA(p, d, doutDev, qkvDev, lse, b, tt, c, nh, nkv)
				}, [3]bool{false, true, true}},
				{"dq", func(p program.View) program.Op {
					return AttentionBackwardDQMMA(p, d, doutDev, qkvDev, lse, b, tt, c, nh, nkv)
				}, [3]bool{true, false, false}},
			}
			for _, l := range launches {
				p := bf16Buffer(t, "dqkv", nq)
				run(t, l.op(p))
				checkWrittenParts(t, l.name, attnParts(downloadBF16(t, p, nq), sh), l.written)
			}
		})
	}
}

// TestAttentionMMAOps: the bf16 launches count the FLOPs the fp32 ones do,
// pass the arguments their PTX entries declare, and refuse what they
// cannot run (a head size without tiles, fp32 views).
func TestAttentionMMAOps(t *testing.T) {
	buf := func(name string, e program.Elem, n int) program.View {
		return (&program.Buffer{Name: name, Layer: -1, Elem: e, Elems: int64(n)}).All()
	}
	for _, cs := range []struct{ hs, NKV int }{{32, 5}, {64, 5}, {128, 5}, {64, 1}, {128, 1}} {
		hs, NKV := cs.hs, cs.NKV
		B, T, NH := 3, 301, 5
		C := hs * NH
		n, nq, nl := B*T*C, B*T*(NH+2*NKV)*hs, B*NH*T
		qkv, out, dout, dqkv := buf("qkv", program.BF16, nq), buf("out", program.BF16, n), buf("dout", program.BF16, n), buf("dqkv", program.BF16, nq)
		lse, d := buf("lse", program.F32, nl), buf("d", program.F32, nl)
		q32, o32, g32, dq32 := buf("qkv", program.F32, nq), buf("out", program.F32, n), buf("dout", program.F32, n), buf("dqkv", program.F32, nq)
		mma := append([]program.Op{AttentionForwardMMA(out, lse, qkv, B, T, C, NH, NKV)}, AttentionBackwardMMA(dqkv, d, dout, qkv, out, lse, B, T, C, NH, NKV)...)
		f32 := append([]program.Op{AttentionForward(o32, lse, q32, B, T, C, NH, NKV)}, AttentionBackward(dq32, d, g32, q32, o32, lse, B, T, C, NH, NKV)...)
		// The FLOPs are those of NH-head attention whatever NKV: every
		// query head does the same work.
		mha := append([]program.Op{AttentionForward(o32, lse, q32, B, T, C, NH, NH)}, AttentionBackward(dq32, d, g32, q32, o32, lse, B, T, C, NH, NH)...)
		for i := range mma {
			m, f := mma[i], f32[i]
			if m.FLOPs != f.FLOPs || m.MatmulFLOPs != f.MatmulFLOPs || f.FLOPs != mha[i].FLOPs {
				t.Errorf("hs %d NKV %d: %s counts %d FLOPs (%d matmul), %s %d (%d), MHA %d", hs, NKV, m.Name, m.FLOPs, m.MatmulFLOPs, f.Name, f.FLOPs, f.MatmulFLOPs, mha[i].FLOPs)
			}
			if g, w := m.Grid, f.Grid; i > 0 && g.Y != w.Y {
				t.Errorf("hs %d NKV %d: %s grid %v, fp32 %v", hs, NKV, m.Name, g, w)
			}
			if err := program.Validate(&m); err != nil {
				t.Errorf("hs %d: %v", hs, err)
			}
			params, ok := ptx.Params(m.Module, m.Name)
			if !ok || len(params) != len(m.Args) {
				t.Errorf("hs %d: %s has PTX parameters %v (%v), the launch passes %d", hs, m.Name, params, ok, len(m.Args))
			}
			block := program.D1(ptx.AttentionMMAThreads)
			if m.Name == "attention_backward_preprocess_bf16" {
				block = program.D1(ptx.AttentionMMAPreprocessBlock)
			}
			if m.Block != block || m.Module != "attention_mma" {
				t.Errorf("hs %d: %s in %s, block %v, want %v", hs, m.Name, m.Module, m.Block, block)
			}
		}
		// The traffic follows the GQA shapes: qkv rows of (NH+2·NKV)·hs.
		if got, want := mma[0].Bytes, int64(2*n+4*nl+2*nq); got != want {
			t.Errorf("hs %d NKV %d: forward moves %d bytes, want %d (out, lse, qkv)", hs, NKV, got, want)
		}
		if got, want := f32[2].Bytes, int64(4*nq+4*nl+4*n+4*nq+4*nl); got != want {
			t.Errorf("hs %d NKV %d: fp32 dkdv moves %d bytes, want %d (dqkv, d, dout, qkv, lse)", hs, NKV, got, want)
		}
		c := ptx.AttentionMMAConfigFor(hs)
		if g := mma[0].Grid; g != program.D3(ceilDiv(T, c.Fwd.R), NH, B) {
			t.Errorf("hs %d: forward grid %v", hs, g)
		}
		if g := mma[2].Grid; g != program.D3(ceilDiv(T, c.DKDV.R), NKV, B) {
			t.Errorf("hs %d NKV %d: dkdv grid %v, want one block per key tile and kv head", hs, NKV, g)
		}
		if g := mma[3].Grid; g != program.D3(ceilDiv(T, c.DQ.R), NH, B) {
			t.Errorf("hs %d NKV %d: dq grid %v", hs, NKV, g)
		}
		mustPanic := func(what string, f func()) {
			defer func() {
				if recover() == nil {
					t.Errorf("hs %d: %s did not panic", hs, what)
				}
			}()
			f()
		}
		mustPanic("fp32 qkv", func() { AttentionForwardMMA(out, lse, q32, B, T, C, NH, NKV) })
		mustPanic("bf16 lse", func() { AttentionForwardMMA(out, out, qkv, B, T, C, NH, NKV) })
		mustPanic("fp32 dqkv", func() { AttentionBackwardMMA(dq32, d, dout, qkv, out, lse, B, T, C, NH, NKV) })
		mustPanic("NKV not dividing NH", func() { AttentionForwardMMA(out, lse, qkv, B, T, C, NH, 2) })
		mustPanic("NKV 0", func() { AttentionForward(o32, lse, q32, B, T, C, NH, 0) })
	}
	for _, hs := range []int{16, 48, 96, 256} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("head size %d: AttentionForwardMMA did not panic", hs)
				}
			}()
			n := 2 * 3 * hs
			AttentionForwardMMA(buf("out", program.BF16, n), buf("lse", program.F32, 6), buf("qkv", program.BF16, 3*n), 1, 2, 3*hs, 3, 3)
		}()
	}
}

// BenchmarkAttentionMMA times the bf16 attention at the gpt2-124m layer
// (B=8, NH=12, T=1024, hs=64) with CUDA events around each repetition,
// enqueued back to back (so no host gap is timed), and reports the median
// of at least 30. TFLOP/s are counted as FlashAttention counts them:
// causal forward 4·B·NH·T²·hs/2, backward 2.5× that. The fp32 kernels of
// attention.cu run beside them for reference. Run with
//
//	kernels.test -test.run '^$' -test.bench AttentionMMA -test.benchtime 1x
func BenchmarkAttentionMMA(b *testing.B) {
	x := matmulBenchEnv(b)
	r := rand.New(rand.NewPCG(1, 2))
	B, T, C, NH := 8, 1024, 768, 12
	hs := C / NH
	n, nq, nl := B*T*C, B*T*3*C, B*NH*T
	qkvH, doutH := normal(r, nq, 1), normal(r, n, 1)
	qkv, _ := uploadBF16(b, "qkv", qkvH)
	dout, _ := uploadBF16(b, "dout", doutH)
	out, lse := bf16Buffer(b, "out", n), buffer(b, "lse", nl)
	d, dqkv := buffer(b, "d", nl), bf16Buffer(b, "dqkv", nq)
	fwd := []program.Op{AttentionForwardMMA(out, lse, qkv, B, T, C, NH, NH)}
	bwd := AttentionBackwardMMA(dqkv, d, dout, qkv, out, lse, B, T, C, NH, NH)
	reps := max(30, b.N)
	flops := 4 * float64(B*NH) * float64(T) * float64(T) * float64(hs) / 2
	tf := attnMMAMedian(b, x, reps, fwd)
	tb := attnMMAMedian(b, x, reps, bwd)
	tpre := attnMMAMedian(b, x, reps, bwd[:1])
	tkv := attnMMAMedian(b, x, reps, bwd[1:2])
	tq := attnMMAMedian(b, x, reps, bwd[2:3])

	q32, _ := upload(b, "qkv32", qkvH)
	g32, _ := upload(b, "dout32", doutH)
	o32, dq32 := buffer(b, "out32", n), buffer(b, "dqkv32", nq)
	tf32 := attnMMAMedian(b, x, 5, []program.Op{AttentionForward(o32, lse, q32, B, T, C, NH, NH)})
	tb32 := attnMMAMedian(b, x, 5, AttentionBackward(dq32, d, g32, q32, o32, lse, B, T, C, NH, NH))

	b.ReportMetric(flops/tf/1e12, "fwd-TFLOP/s")
	b.ReportMetric(2.5*flops/tb/1e12, "bwd-TFLOP/s")
	b.ReportMetric(tf*1e6, "fwd-us")
	b.ReportMetric(tb*1e6, "bwd-us")
	b.Logf("bf16 mma B=%d NH=%d T=%d hs=%d, median of %d: forward %.1f us (%.1f TFLOP/s); backward %.1f us (%.1f TFLOP/s) = preprocess %.1f + dkdv %.1f (%.1f TFLOP/s of its 4 products) + dq %.1f (%.1f TFLOP/s of its 3)",
		B, NH, T, hs, reps, tf*1e6, flops/tf/1e12, tb*1e6, 2.5*flops/tb/1e12, tpre*1e6, tkv*1e6, 2*flops/tkv/1e12, tq*1e6, 1.5*flops/tq/1e12)
	b.Logf("fp32 attention.cu, same shape, median of 5: forward %.1f us (%.1f TFLOP/s), backward %.1f us (%.1f TFLOP/s)",
		tf32*1e6, flops/tf32/1e12, tb32*1e6, 2.5*flops/tb32/1e12)
}

// attnMMAMedian returns the median seconds of reps repetitions of ops on
// the executor's stream. Each repetition is bracketed by events recorded
// back to back (event i before repetition i, event i+1 after it) and only
// the last is waited for, so the stream never idles on the host between
// repetitions. Three untimed repetitions first (JIT, caches, clocks).
func attnMMAMedian(b *testing.B, x *cuexec.Executor, reps int, ops []program.Op) float64 {
	b.Helper()
	s := x.Stream()
	syncAll(b)
	do := func() {
		for i := range ops {
			if err := x.Do(&ops[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	for range 3 {
		do()
	}
	ev := make([]cu.Event, reps+1)
	for i := range ev {
		e, err := cu.MakeEvent(cu.DefaultEvent)
		if err != nil {
			b.Fatal(err)
		}
		ev[i] = e
		defer cu.DestroyEvent(&ev[i])
	}
	b.ResetTimer()
	for i := range reps {
		if err := ev[i].Record(s); err != nil {
			b.Fatal(err)
		}
		do()
	}
	if err := ev[reps].Record(s); err != nil {
		b.Fatal(err)
	}
	if err := ev[reps].Synchronize(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	ts := make([]float64, reps)
	for i := range reps {
		ms, err := ev[i].Elapsed(ev[i+1])
		if err != nil {
			b.Fatal(err)
		}
		ts[i] = float64(ms) / 1e3
	}
	slices.Sort(ts)
	return ts[reps/2]
}
