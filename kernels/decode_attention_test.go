//go:build gpu

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gpubench/gpubench/internal/bf16"
	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
	"gorgonia.org/cu"
)

// decodeShapes: batch 1 and 3, multi-head and groups of 2, 3, 4, 5 and 8
// (5 and 8 take two blocks a split: DecodeHeads = 4), head sizes from 16 to
// 128 (80: no power of two; 16 and 32 leave lanes of a row idle), and
// llama3-8b's heads at a 600-position cache.
var decodeShapes = []decodeShape{
	{1, 4, 4, 64, 300},
	{3, 8, 2, 128, 520},
	{3, 8, 1, 32, 300},
	{1, 12, 4, 128, 1030},
	{2, 6, 6, 80, 129},
	{2, 5, 1, 16, 70},
	{3, 32, 8, 128, 600},
}

// Tolerances. f32: each output is a convex combination of v rows with
// weights from f32 exponentials of f32 dot products, and the combine's
// rescaling adds a few roundings: relative errors of a few 1e-7; 1e-5
// catches a wrong, missing or extra position (each moves the output by
// O(1/pos)) or a stale split. bf16: the inputs are exact bf16 and the
// arithmetic f32, so the output's one rounding dominates: bf16Tol.
const decodeF32Tol = 1e-5

// decodePositions are the positions tested for a cache of maxT: the first,
// the second, a 64-row boundary, one past several splits, and the last.
func decodePositions(maxT int) []int {
	var ps []int
	for _, p := range []int{0, 1, 63, 200, maxT - 1} {
		if p < maxT && !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	return ps
}

// decodeCase holds one decode step's device tensors and what the reference
// needs: the queries (B, NH·hs) and the caches as the GPU sees them.
type decodeCase struct {
	s                 decodeShape
	pos               int
	e                 program.Elem
	qkv, kc, vc       program.View
	q, kcHost, vcHost []float64
}

// newDecodeCase uploads random qkv rows and caches whose positions past pos
// are NaN: a kernel that reads one poisons its output.
func newDecodeCase(t *testing.T, r *rand.Rand, s decodeShape, pos int, e program.Elem) *decodeCase {
	t.Helper()
	W, KV := (s.nh+2*s.nkv)*s.hs, s.nkv*s.hs
	up := upload
	if e == program.BF16 {
		up = uploadBF16
	}
	qkv, qkvH := up(t, "qkv", normal(r, s.b*W, 1))
	cache := func() []float64 {
		c := normal(r, s.b*s.maxT*KV, 1)
		for b := range s.b {
			for p := pos + 1; p < s.maxT; p++ {
				for i := range KV {
					c[(b*s.maxT+p)*KV+i] = math.NaN()
				}
			}
		}
		return c
	}
	kc, kcH := up(t, "kcache", cache())
	vc, vcH := up(t, "vcache", cache())
	q := make([]float64, 0, s.b*s.nh*s.hs)
	for b := range s.b {
		q = append(q, qkvH[b*W:b*W+s.nh*s.hs]...)
	}
	return &decodeCase{s, pos, e, qkv, kc, vc, q, kcH, vcH}
}

// run launches the decode attention into fresh poisoned out and scratch
// (splits 0: the launcher's own choice) and returns out.
func (c *decodeCase) run(t *testing.T, splits int) []float64 {
	t.Helper()
	s := c.s
	n := s.b * s.nh * s.hs
	var out program.View
	if c.e == program.BF16 {
		out = bf16Buffer(t, "out", n)
	} else {
		out = buffer(t, "out", n)
	}
	var ops []program.Op
	if splits == 0 {
		scratch := buffer(t, "scratch", DecodeAttentionScratchSize(s.b, s.nh, s.hs, s.maxT, sms()))
		ops = DecodeAttention(out, c.qkv, c.kc, c.vc, scratch, s.b, c.pos, s.nh, s.nkv, s.hs, s.maxT, sms())
	} else {
		scratch := buffer(t, "scratch", decodeScratch(s.b, s.nh, s.hs, splits))
		ops = decodeAttention(out, c.qkv, c.kc, c.vc, scratch, s.b, c.pos, s.nh, s.nkv, s.hs, s.maxT, splits)
	}
	run(t, ops...)
	if c.e == program.BF16 {
		return downloadBF16(t, out, n)
	}
	return download(t, out, n)
}

func (c *decodeCase) want() []float64 {
	s := c.s
	w := make([]float64, s.b*s.nh*s.hs)
	ref.DecodeAttentionForward(w, c.q, c.kcHost, c.vcHost, s.b, s.maxT, c.pos, s.nh, s.nkv, s.hs)
	return w
}

// TestDecodeAttention: f32 and bf16 against the float64 reference at every
// shape and position, with the launcher's split count and with 1, 3 and 7
// splits (one split is the plain kernel; 7 leaves a short last split);
// twice into fresh poisoned buffers for determinism.
func TestDecodeAttention(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range []program.Elem{program.F32, program.BF16} {
		tol := decodeF32Tol
		if e == program.BF16 {
			tol = bf16Tol
		}
		for _, s := range decodeShapes {
			for _, pos := range decodePositions(s.maxT) {
				t.Run(fmt.Sprintf("%s_%v_pos%d", e, s, pos), func(t *testing.T) {
					env(t)
					c := newDecodeCase(t, r, s, pos, e)
					want := c.want()
					got := c.run(t, 0)
					checkClose(t, "decode attention", got, want, tol)
					sameBits(t, "decode attention", c.run(t, 0), got)
					for _, splits := range []int{1, 3, 7} {
						checkClose(t, fmt.Sprintf("decode attention, %d splits", splits), c.run(t, splits), want, tol)
					}
				})
			}
		}
	}
}

// BenchmarkDecodeAttention times the bf16 decode attention at the LLaMA
// decode shapes, batch 8, MaxT 4096: llama2-7b (NH = NKV = 32) and
// llama3-8b (NH 32, NKV 8), hs 128, at pos 511 and 4095, with the
// launcher's split count and a sweep of others; f32 at the launcher's
// count for reference. Every repetition starts with L2 flushed, outside
// the timed events, as a layer's cache is not in L2 when its decode step
// runs: by a decode step over 268 MB of other caches, which reads them (a
// memset would leave L2 full of dirty lines, whose write-back then lands
// in the timed kernel: up to 2x at pos 511). Reports the median µs (split + combine) and the
// cache bytes read over that time against the H200's 4.26 TB/s. Run with
//
//	kernels.test -test.run '^$' -test.bench DecodeAttention -test.benchtime 1x
func BenchmarkDecodeAttention(b *testing.B) {
	x := matmulBenchEnv(b)
	const B, maxT, hs, peak = 8, 4096, 128, 4.26e12
	r := rand.New(rand.NewPCG(1, 2))
	fs := decodeShape{B, 32, 8, hs, maxT}
	fkv := fs.b * maxT * fs.nkv * fs.hs
	flush := decodeAttention(alloc(b, "flush out", program.BF16, fs.b*fs.nh*fs.hs).All(),
		decodeBenchBuffer(b, r, "flush qkv", program.BF16, fs.b*(fs.nh+2*fs.nkv)*fs.hs),
		decodeBenchBuffer(b, r, "flush kcache", program.BF16, fkv), decodeBenchBuffer(b, r, "flush vcache", program.BF16, fkv),
		alloc(b, "flush scratch", program.F32, decodeScratch(fs.b, fs.nh, fs.hs, 64)).All(), fs.b, maxT-1, fs.nh, fs.nkv, fs.hs, maxT, 8)
	for _, e := range []program.Elem{program.BF16, program.F32} {
		for _, s := range []decodeShape{{B, 32, 32, hs, maxT}, {B, 32, 8, hs, maxT}} {
			W, KV := (s.nh+2*s.nkv)*s.hs, s.nkv*s.hs
			qkv := decodeBenchBuffer(b, r, "qkv", e, s.b*W)
			kc := decodeBenchBuffer(b, r, "kcache", e, s.b*maxT*KV)
			vc := decodeBenchBuffer(b, r, "vcache", e, s.b*maxT*KV)
			out := alloc(b, "out", e, s.b*s.nh*s.hs).All()
			scratch := alloc(b, "scratch", program.F32, decodeScratch(s.b, s.nh, s.hs, 512)).All()
			for _, pos := range []int{511, 4095} {
				L := pos + 1
				auto := decodeSplits(L, decodeBlocksPerSplit(s.b, s.nh, s.nkv), testDev.Info.SMs)
				sweep := []int{auto}
				if e == program.BF16 {
					for _, sp := range []int{1, 2, 3, 4, 6, 8, 12, 16, 32} {
						if c := ceilDiv(L, sp); c <= decodeMaxChunk && c >= 16 && sp != auto {
							sweep = append(sweep, sp)
						}
					}
				}
				bytes := float64(2*s.b*L*KV) * float64(e.Size())
				for _, sp := range sweep {
					ops := decodeAttention(out, qkv, kc, vc, scratch, s.b, pos, s.nh, s.nkv, s.hs, maxT, sp)
					ts := decodeMedian(b, x, 20, flush, ops)
					tag := ""
					if sp == auto {
						tag = " (launcher's choice)"
					}
					b.Logf("%s B=%d NH=%d NKV=%d hs=%d pos=%d: %d splits (grid %v): %.2f us (split %.2f, combine %.2f), %.1f MB of cache, %.0f GB/s = %.1f%% of 4.26 TB/s%s",
						e, s.b, s.nh, s.nkv, s.hs, pos, ops[1].Args[len(ops[1].Args)-1].Int, ops[0].Grid, ts[0]*1e6, ts[1]*1e6, ts[2]*1e6,
						bytes/1e6, bytes/ts[0]/1e9, 100*bytes/ts[0]/peak, tag)
					if sp == auto && e == program.BF16 {
						b.ReportMetric(ts[0]*1e6, fmt.Sprintf("us-NKV%d-pos%d", s.nkv, pos))
					}
				}
			}
		}
	}
}

// decodeBenchBuffer is n elements of e from a repeated random pattern (the
// values do not change the time; drawing hundreds of millions would).
func decodeBenchBuffer(b *testing.B, r *rand.Rand, name string, e program.Elem, n int) program.View {
	b.Helper()
	v := alloc(b, name, e, n).All()
	const period = 4099
	pat := normal(r, period, 1)
	var err error
	if e == program.BF16 {
		h := make([]uint16, n)
		for i := range h {
			h[i] = bf16.FromFloat32(float32(pat[i%period]))
		}
		err = cuexec.Upload(testExec, v, h)
	} else {
		f := make([]float32, n)
		for i := range f {
			f[i] = float32(pat[i%period])
		}
		err = cuexec.Upload(testExec, v, f)
	}
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// decodeMedian returns the median seconds of reps repetitions of ops (all
// of them, then ops[0] alone, then the rest), each after pre (not timed),
// with CUDA events around each repetition on the executor's stream.
func decodeMedian(b *testing.B, x *cuexec.Executor, reps int, pre, ops []program.Op) [3]float64 {
	b.Helper()
	s := x.Stream()
	syncAll(b)
	do := func(ops []program.Op) {
		for i := range ops {
			if err := x.Do(&ops[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	var res [3]float64
	for k, part := range [][]program.Op{ops, ops[:1], ops[1:]} {
		do(ops) // warm: JIT, the first launch's preparation
		ev := make([]cu.Event, 2*reps)
		for i := range ev {
			e, err := cu.MakeEvent(cu.DefaultEvent)
			if err != nil {
				b.Fatal(err)
			}
			ev[i] = e
		}
		for i := range reps {
			do(pre)
			if err := ev[2*i].Record(s); err != nil {
				b.Fatal(err)
			}
			do(part)
			if err := ev[2*i+1].Record(s); err != nil {
				b.Fatal(err)
			}
		}
		if err := ev[2*reps-1].Synchronize(); err != nil {
			b.Fatal(err)
		}
		ts := make([]float64, reps)
		for i := range reps {
			ms, err := ev[2*i].Elapsed(ev[2*i+1])
			if err != nil {
				b.Fatal(err)
			}
			ts[i] = float64(ms) / 1e3
		}
		for i := range ev {
			cu.DestroyEvent(&ev[i])
		}
		slices.Sort(ts)
		res[k] = ts[reps/2]
	}
	return res
}
