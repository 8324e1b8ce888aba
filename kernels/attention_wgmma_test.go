//go:build gpu

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
	"github.com/gpubench/gpubench/ptx"
)

// The tests of ptx/attention_wgmma.cu, the Hopper attention forward: fresh
// random inputs at head size 64 against the float64 reference with the
// tolerances of the mma kernel (attnMMAOutTol, attnMMALseTol, whose
// derivation holds for this kernel's arithmetic too), and against
// AttentionForwardMMA itself. T runs from a single token through lengths
// that end one short of, at, and one past a 128-row tile (63, 65, 127,
// 129), so query tiles cross the end of their batch (the next batch's rows
// read as queries and keys must be masked or dropped) and tails fall in
// either consumer warpgroup's half; T = 1000 streams 8 key tiles through
// the 3-stage ring. B > 1 everywhere but the longest, NKV = NH and groups
// of 2, 3 and 4. Each shape runs at the planned grid and at grids of 1 and
// 5 blocks (the persistent ring and barriers running on across units),
// each into fresh poisoned outputs with a poisoned tail past them (a row
// ≥ T of the last batch stored would land there), for the same bits.
// They need compute capability 9.0; on another GPU there is no such tier.

var attnWGMMAShapes = []attentionShape{
	{1, 1, 64, 1, 1},       // one token, one head
	{2, 1, 128, 2, 1},      // one token a batch, a group of 2
	{2, 63, 128, 2, 2},     // the second warpgroup's rows all past T
	{2, 65, 256, 4, 2},     // one row in the second warpgroup's half
	{3, 127, 128, 2, 1},    // one short of a tile
	{2, 128, 128, 2, 2},    // one whole tile
	{2, 129, 256, 4, 4},    // one row past a tile: a unit of one row
	{2, 200, 384, 6, 2},    // groups of 3
	{3, 256, 512, 8, 2},    // whole tiles, groups of 4
	{1, 1000, 256, 4, 2},   // 8 key tiles: the ring wrapped
	{1, 1024, 768, 12, 12}, // the gpt2-124m layer at B = 1
}

// wgmmaAttnGrids are the grids forced besides the planned one (0).
var wgmmaAttnGrids = []int{0, 1, 5}

// requireHopper skips on anything but compute capability 9.0.
func requireHopper(t testing.TB) {
	t.Helper()
	if i := testDev.Info; i.CCMajor != 9 || i.CCMinor != 0 {
		t.Skipf("%s is compute capability %d.%d: the Hopper tier (sm_90a) runs on 9.0 only", i.Name, i.CCMajor, i.CCMinor)
	}
}

// attnWGMMAPad is the poisoned tail after out and lse: more than a query
// tile's rows of out (and of lse's last head), which a store of a row ≥ T
// of the last batch would reach.
const attnWGMMAPad = 160

func TestAttentionWGMMAForward(t *testing.T) {
	env(t)
	requireHopper(t)
	r := rng(t)
	for _, sh := range attnWGMMAShapes {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		t.Run(attnMMAName(sh), func(t *testing.T) {
			env(t)
			n, nl := b*tt*c, b*nh*tt
			qkvDev, qkv := uploadBF16(t, "qkv", normal(r, b*tt*sh.qkvW(), 1))
			outs, lses := attnWGMMAPad*c, attnWGMMAPad
			wantOut, wantLse := make([]float64, n), make([]float64, nl)
			ref.GQAttentionForward(wantOut, wantLse, qkv, b, tt, nh, nkv, c/nh)

			// The mma kernel on the same inputs.
			mmaOut, mmaLse := bf16Buffer(t, "out", n), buffer(t, "lse", nl)
			run(t, AttentionForwardMMA(mmaOut, mmaLse, qkvDev, b, tt, c, nh, nkv))
			mOut, mLse := downloadBF16(t, mmaOut, n), download(t, mmaLse, nl)

			var firstOut, firstLse []float64
			for _, g := range wgmmaAttnGrids {
				for rep := range 2 {
					what := fmt.Sprintf("grid %d run %d", g, rep)
					outBuf, lseBuf := bf16Buffer(t, "out", n+outs), buffer(t, "lse", nl+lses)
					out, lse := outBuf.Buf.Slice("out", 0, int64(n)), lseBuf.Buf.Slice("lse", 0, int64(nl))
					if !AttentionWGMMAFits(out, lse, qkvDev, c, nh) {
						t.Fatalf("%v does not fit the Hopper attention: fix the test's shapes", sh)
					}
					run(t, withGrid(AttentionForwardWGMMA(out, lse, qkvDev, b, tt, c, nh, nkv, sms()), g))
					allOut, allLse := downloadBF16(t, outBuf, n+outs), download(t, lseBuf, nl+lses)
					gotOut, gotLse := allOut[:n], allLse[:nl]
					attnWGMMAPoisoned(t, what+" out past the tensor", allOut[n:])
					attnWGMMAPoisoned(t, what+" lse past the tensor", allLse[nl:])
					if firstOut == nil {
						checkClose(t, "attention wgmma out", gotOut, wantOut, attnMMAOutTol)
						checkClose(t, "attention wgmma lse", gotLse, wantLse, attnMMALseTol)
						checkClose(t, "attention wgmma out against mma", gotOut, mOut, attnMMAOutTol)
						checkClose(t, "attention wgmma lse against mma", gotLse, mLse, 1e-3)
						firstOut, firstLse = gotOut, gotLse
						continue
					}
					// One unit's sums are in a fixed order whichever block
					// runs it: the same bits at every grid and every run.
					sameBits(t, "attention wgmma out "+what, gotOut, firstOut)
					sameBits(t, "attention wgmma lse "+what, gotLse, firstLse)
				}
			}
		})
	}
}

// attnWGMMAPoisoned fails unless every element of tail is still the NaN
// the buffer was poisoned with.
func attnWGMMAPoisoned(t *testing.T, what string, tail []float64) {
	t.Helper()
	for i, v := range tail {
		if !math.IsNaN(v) {
			t.Fatalf("%s: element %d written (%g)", what, i, v)
		}
	}
}

// BenchmarkAttentionWGMMA times the Hopper attention forward at the
// gpt2-124m layer (B=8, NH=12, T=1024, hs=64), beside the mma.sync forward
// on the same inputs, with attnMMAMedian (CUDA events, at least 30
// repetitions back to back, the median). TFLOP/s are the launch's
// MatmulFLOPs (kernels/attention.go's attentionWork: 4·hs per live score,
// the causal triangle with its diagonal) over the median time. One line is
// printed for scripts/wgmma-check.sh. Run with
//
//	kernels.test -test.run '^$' -test.bench AttentionWGMMA -test.benchtime 1x
func BenchmarkAttentionWGMMA(b *testing.B) {
	x := matmulBenchEnv(b)
	requireHopper(b)
	r := rand.New(rand.NewPCG(5, 6))
	B, T, C, NH := 8, 1024, 768, 12
	hs := C / NH
	n, nq, nl := B*T*C, B*T*3*C, B*NH*T
	qkv, _ := uploadBF16(b, "qkv", normal(r, nq, 1))
	out, lse := bf16Buffer(b, "out", n), buffer(b, "lse", nl)
	wg := AttentionForwardWGMMA(out, lse, qkv, B, T, C, NH, NH, sms())
	mma := AttentionForwardMMA(out, lse, qkv, B, T, C, NH, NH)
	reps := max(30, b.N)
	tw := attnMMAMedian(b, x, reps, []program.Op{wg})
	tm := attnMMAMedian(b, x, reps, []program.Op{mma})
	flops := float64(wg.MatmulFLOPs)
	b.ReportMetric(flops/tw/1e12, "TFLOP/s")
	b.ReportMetric(tw*1e6, "us")
	b.ReportMetric(flops/tm/1e12, "mma-TFLOP/s")
	b.ReportMetric(tm*1e6, "mma-us")
	fmt.Printf("ATTN forward B=%d NH=%d T=%d hs=%d, median of %d: wgmma %.1f us %.1f TFLOP/s (grid %d, %d units of %d rows); mma %.1f us %.1f TFLOP/s; %.2fx\n",
		B, NH, T, hs, reps, tw*1e6, flops/tw/1e12, wg.Grid.X, ceilDiv(T, ptx.AttentionWGMMARows)*NH*B, ptx.AttentionWGMMARows,
		tm*1e6, flops/tm/1e12, tm/tw)
}
