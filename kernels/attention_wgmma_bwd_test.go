//go:build gpu

package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
)

// The tests of ptx/attention_wgmma_bwd.cu, the Hopper attention backward:
// fresh random inputs at head size 64 against the float64 reference with
// the tolerance of the mma kernels (attnMMAGradTol, whose derivation holds
// for this arithmetic too: the same roundings of P and dS), and against
// AttentionBackwardMMA itself on the same out and lse (the wgmma
// forward's, as the program runs them). T runs from a single token
// through lengths that end inside, at and past the 64-row boxes and the
// 128-row units (37, 63, 65, 128, 129): tail query tiles whose rows past T
// are the next batch's (dkdv must mask them), key units whose second
// warpgroup is all past T, and GQA groups of 2, 3 and 4 whose query heads
// run through one ring (T = 200, 1000: the ring of 5 stages wraps many
// times a unit). Each shape runs at the planned grid and at grids of 1 and
// 5 blocks, each twice, into fresh poisoned outputs with a poisoned tail
// past dqkv, for the same bits every time. They need compute capability
// 9.0; on another GPU there is no such tier.

var attnWGMMABwdShapes = []attentionShape{
	{1, 1, 64, 1, 1},       // one token, one head
	{3, 1, 128, 2, 1},      // one token a batch, a group of 2
	{2, 37, 128, 2, 2},     // one box, a tail in it
	{3, 37, 256, 4, 2},     // groups of 2
	{2, 63, 128, 2, 2},     // the second warpgroup's rows all past T
	{2, 65, 256, 4, 2},     // one row in the second box
	{2, 128, 128, 2, 2},    // one whole unit
	{2, 129, 256, 4, 4},    // one row past a unit: a unit of one row
	{2, 200, 384, 6, 2},    // groups of 3
	{1, 1000, 256, 4, 1},   // a group of 4 through the ring, many laps
	{1, 1024, 768, 12, 12}, // the gpt2-124m layer at B = 1
}

// attnWGMMABwdPad is the poisoned tail after dqkv: more than a unit's rows,
// which a store of a row ≥ T of the last batch would reach.
const attnWGMMABwdPad = 160

// withBackwardGrid forces grid g (0: the planned one) on the two wgmma
// kernels of a backward, not on the preprocess.
func withBackwardGrid(ops []program.Op, g int) []program.Op {
	out := append([]program.Op(nil), ops...)
	for i := range out {
		if out[i].Module == attnWGMMABwdModule {
			out[i] = withGrid(out[i], g)
		}
	}
	return out
}

func TestAttentionWGMMABackward(t *testing.T) {
	env(t)
	requireHopper(t)
	r := rng(t)
	for _, sh := range attnWGMMABwdShapes {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		t.Run(attnMMAName(sh), func(t *testing.T) {
			env(t)
			hs := c / nh
			n, nq, nl := b*tt*c, b*tt*sh.qkvW(), b*nh*tt
			qkvDev, qkv := uploadBF16(t, "qkv", normal(r, nq, 1))
			doutDev, dout := uploadBF16(t, "dout", normal(r, n, 1))
			out, lse := bf16Buffer(t, "out", n), buffer(t, "lse", nl)
			run(t, AttentionForwardWGMMA(out, lse, qkvDev, b, tt, c, nh, nkv, sms()))

			want := make([]float64, nq)
			ref.GQAttentionBackward(want, dout, qkv, b, tt, nh, nkv, hs)
			wantParts := attnParts(want, sh)

			// The mma backward on the same inputs.
			dm, dqkvM := buffer(t, "d", nl), bf16Buffer(t, "dqkv", nq)
			run(t, AttentionBackwardMMA(dqkvM, dm, doutDev, qkvDev, out, lse, b, tt, c, nh, nkv)...)
			mmaParts := attnParts(downloadBF16(t, dqkvM, nq), sh)

			var first []float64
			for _, g := range wgmmaAttnGrids {
				for rep := range 2 {
					what := fmt.Sprintf("grid %d run %d", g, rep)
					all := bf16Buffer(t, "dqkv", nq+attnWGMMABwdPad*sh.qkvW())
					dqkv, d := all.Buf.Slice("dqkv", 0, int64(nq)), buffer(t, "d", nl)
					if !AttentionBackwardWGMMAFits(dqkv, d, doutDev, qkvDev, out, lse, c, nh) {
						t.Fatalf("%v does not fit the Hopper attention backward: fix the test's shapes", sh)
					}
					run(t, withBackwardGrid(AttentionBackwardWGMMA(dqkv, d, doutDev, qkvDev, out, lse, b, tt, c, nh, nkv, sms()), g)...)
					got := downloadBF16(t, all, nq+attnWGMMABwdPad*sh.qkvW())
					attnWGMMAPoisoned(t, what+" dqkv past the tensor", got[nq:])
					got = got[:nq]
					if first == nil {
						// Each part separately, so a wrong or unwritten part
						// is not hidden by the others' norm (poison is NaN).
						gotParts := attnParts(got, sh)
						for p, name := range []string{"dq", "dk", "dv"} {
							checkClose(t, "attention wgmma "+name, gotParts[p], wantParts[p], attnMMAGradTol)
							checkClose(t, "attention wgmma "+name+" against mma", gotParts[p], mmaParts[p], attnMMAGradTol)
						}
						first = got
						continue
					}
					sameBits(t, "attention wgmma dqkv "+what, got, first)
				}
			}
		})
	}
}

// TestAttentionWGMMABackwardParts: the dkdv kernel writes exactly the k
// and v parts and the dq kernel exactly the q part: each launched alone on
// a poisoned dqkv leaves the other part(s) NaN.
func TestAttentionWGMMABackwardParts(t *testing.T) {
	env(t)
	requireHopper(t)
	r := rng(t)
	for _, sh := range []attentionShape{{2, 37, 128, 2, 2}, {2, 70, 256, 4, 2}, {1, 129, 512, 8, 2}} {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		t.Run(attnMMAName(sh), func(t *testing.T) {
			env(t)
			n, nq, nl := b*tt*c, b*tt*sh.qkvW(), b*nh*tt
			qkvDev, _ := uploadBF16(t, "qkv", normal(r, nq, 1))
			doutDev, _ := uploadBF16(t, "dout", normal(r, n, 1))
			out, lse, d := bf16Buffer(t, "out", n), buffer(t, "lse", nl), buffer(t, "d", nl)
			run(t, AttentionForwardWGMMA(out, lse, qkvDev, b, tt, c, nh, nkv, sms()),
				AttentionBackwardPreprocessMMA(d, doutDev, out, b, tt, c, nh))
			launches := []struct {
				name    string
				op      func(dqkv program.View) program.Op
				written [3]bool
			}{
				{"dkdv", func(p program.View) program.Op {
					return AttentionBackwardDKDVWGMMA(p, d, doutDev, qkvDev, lse, b, tt, c, nh, nkv, sms())
				}, [3]bool{false, true, true}},
				{"dq", func(p program.View) program.Op {
					return AttentionBackwardDQWGMMA(p, d, doutDev, qkvDev, lse, b, tt, c, nh, nkv, sms())
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

// BenchmarkAttentionWGMMABackward times the Hopper attention backward at
// the gpt2-124m layer (B=8, NH=12, T=1024, hs=64), beside the mma.sync
// backward on the same inputs, with attnMMAMedian (CUDA events, at least
// 30 repetitions back to back, the median): the whole backward (the
// shared preprocess, dK and dV, dQ) and each kernel. TFLOP/s of the whole
// are FlashAttention's count, as BenchmarkAttentionMMA's: 2.5× the causal
// forward's 4·B·NH·T²·hs/2; of a kernel, its MatmulFLOPs (kernels/
// attention.go's attentionWork). One line is printed for the device
// scripts. Run with
//
//	kernels.test -test.run '^$' -test.bench AttentionWGMMABackward -test.benchtime 1x
func BenchmarkAttentionWGMMABackward(b *testing.B) {
	x := matmulBenchEnv(b)
	requireHopper(b)
	r := rand.New(rand.NewPCG(7, 8))
	B, T, C, NH := 8, 1024, 768, 12
	hs := C / NH
	n, nq, nl := B*T*C, B*T*3*C, B*NH*T
	qkv, _ := uploadBF16(b, "qkv", normal(r, nq, 1))
	dout, _ := uploadBF16(b, "dout", normal(r, n, 1))
	out, lse := bf16Buffer(b, "out", n), buffer(b, "lse", nl)
	d, dqkv := buffer(b, "d", nl), bf16Buffer(b, "dqkv", nq)
	run(b, AttentionForwardWGMMA(out, lse, qkv, B, T, C, NH, NH, sms()))
	wg := AttentionBackwardWGMMA(dqkv, d, dout, qkv, out, lse, B, T, C, NH, NH, sms())
	mma := AttentionBackwardMMA(dqkv, d, dout, qkv, out, lse, B, T, C, NH, NH)
	reps := max(30, b.N)
	flops := 2.5 * 4 * float64(B*NH) * float64(T) * float64(T) * float64(hs) / 2
	tw := attnMMAMedian(b, x, reps, wg)
	tm := attnMMAMedian(b, x, reps, mma)
	tpre := attnMMAMedian(b, x, reps, wg[:1])
	twkv := attnMMAMedian(b, x, reps, wg[1:2])
	twq := attnMMAMedian(b, x, reps, wg[2:3])
	tmkv := attnMMAMedian(b, x, reps, mma[1:2])
	tmq := attnMMAMedian(b, x, reps, mma[2:3])
	tf := func(op program.Op, s float64) float64 { return float64(op.MatmulFLOPs) / s / 1e12 }
	b.ReportMetric(flops/tw/1e12, "TFLOP/s")
	b.ReportMetric(tw*1e6, "us")
	b.ReportMetric(flops/tm/1e12, "mma-TFLOP/s")
	b.ReportMetric(tm*1e6, "mma-us")
	fmt.Printf("ATTN backward B=%d NH=%d T=%d hs=%d, median of %d: wgmma %.1f us %.1f TFLOP/s (preprocess %.1f + dkdv %.1f us %.1f TFLOP/s, grid %d + dq %.1f us %.1f TFLOP/s, grid %d); mma %.1f us %.1f TFLOP/s (dkdv %.1f us %.1f + dq %.1f us %.1f); %.2fx\n",
		B, NH, T, hs, reps, tw*1e6, flops/tw/1e12, tpre*1e6, twkv*1e6, tf(wg[1], twkv), wg[1].Grid.X, twq*1e6, tf(wg[2], twq), wg[2].Grid.X,
		tm*1e6, flops/tm/1e12, tmkv*1e6, tf(mma[1], tmkv), tmq*1e6, tf(mma[2], tmq), tm/tw)
}
