//go:build gpu

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/bf16"
	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/program"
	"gorgonia.org/cu"
)

// The tests of ptx/gemv.cu against a float64 reference on the inputs as
// the GPU holds them: odd shapes (C not a multiple of a step or of the
// 16-byte vector, OC not a multiple of a tile), every M bucket of the
// kernel, every plan, unaligned bases (the element-load path), a padded
// out whose columns past OC are NaN and must stay NaN, and the residual
// null, separate and in place.

// matvecTols are the errors a launch of storage e may make: per output,
// out·|want| (bf16's one rounding of the output) + sum·Σ|x·w| (fp32
// accumulation, some 100 ulps of the sum of the terms' magnitudes: a
// missing or doubled term is far above it); per row, row × the norm of
// the terms.
func matvecTols(e program.Elem) (out, sum, row float64) {
	if e == program.BF16 {
		return 1.0 / 256, 1e-5, 1e-2
	}
	return 1e-6, 1e-5, 1e-5
}

type matvecMode int

const (
	matvecNoResidual matvecMode = iota
	matvecSeparate
	matvecInPlace
)

func (m matvecMode) String() string { return [...]string{"none", "separate", "inplace"}[m] }

// matvecCase is one launch to check: shape, residual, a plan (nil: the
// launcher's), unaligned inp and w (one element past an aligned base), and
// cols, the output columns to check (nil: all).
type matvecCase struct {
	M, C, OC, ld int
	mode         matvecMode
	plan         *MatvecPlan
	unaligned    bool
	cols         []int
}

func (c matvecCase) String() string {
	s := fmt.Sprintf("M=%d C=%d OC=%d ld=%d residual=%s", c.M, c.C, c.OC, c.ld, c.mode)
	if c.plan != nil {
		s += " " + c.plan.String()
	}
	if c.unaligned {
		s += " unaligned"
	}
	return s
}

// uploadAt uploads v (as e), at one element past the buffer's start when
// shift: the view of v and the values as the GPU holds them.
func uploadAt(t *testing.T, e program.Elem, name string, v []float64, shift bool) (program.View, []float64) {
	t.Helper()
	if !shift {
		return uploadOf(t, e, name, v)
	}
	p, seen := uploadOf(t, e, name, append([]float64{0}, v...))
	return p.At(1), seen[1:]
}

// testMatvec runs c twice (fresh outputs; in place, a fresh copy of the
// residual) and checks the first run against the reference, the padding
// and the second run's bits.
func testMatvec(t *testing.T, r *rand.Rand, e program.Elem, c matvecCase) {
	t.Helper()
	M, C, OC, ld := c.M, c.C, c.OC, c.ld
	inpD, inp := uploadAt(t, e, "inp", normal(r, M*C, 1), c.unaligned)
	wD, w := uploadAt(t, e, "w", normal(r, OC*C, 1), c.unaligned)
	res := normal(r, M*ld, 1)
	for m := 0; m < M; m++ {
		for j := OC; j < ld; j++ {
			res[m*ld+j] = math.NaN() // never read, so never in out
		}
	}
	var resSeen []float64
	runOnce := func() []float64 {
		var out, resD program.View
		switch c.mode {
		case matvecNoResidual:
			out = bufferOf(t, e, "out", M*ld)
		case matvecSeparate:
			out = bufferOf(t, e, "out", M*ld)
			resD, resSeen = uploadOf(t, e, "residual", res)
		case matvecInPlace:
			out, resSeen = uploadOf(t, e, "out", res)
			resD = out
		}
		var op program.Op
		if c.plan != nil {
			op = matvecForward(out, inpD, wD, resD, M, C, OC, ld, *c.plan)
		} else {
			op = MatvecForward(out, inpD, wD, resD, M, C, OC, ld, sms())
		}
		matchesPTX(t, op)
		run(t, op)
		return downloadOf(t, e, out, M*ld)
	}
	got := runOnce()
	sameBits(t, c.String()+" rerun", runOnce(), got)

	cols := c.cols
	if cols == nil {
		cols = make([]int, OC)
		for j := range cols {
			cols[j] = j
		}
	}
	tolOut, tolSum, tolRow := matvecTols(e)
	for m := 0; m < M; m++ {
		var errSq, normSq float64
		for _, j := range cols {
			want, abs, sq := 0.0, 0.0, 0.0
			for k := 0; k < C; k++ {
				p := inp[m*C+k] * w[j*C+k]
				want += p
				abs += math.Abs(p)
				sq += p * p
			}
			if c.mode != matvecNoResidual {
				rv := resSeen[m*ld+j]
				want += rv
				abs += math.Abs(rv)
				sq += rv * rv
			}
			g := got[m*ld+j]
			if d := math.Abs(g - want); !(d <= tolOut*math.Abs(want)+tolSum*abs) {
				t.Fatalf("%s %s: out[%d][%d] = %g, want %g (error %.3g, allowed %.3g)", e, c, m, j, g, want, d, tolOut*math.Abs(want)+tolSum*abs)
			}
			errSq += (g - want) * (g - want)
			normSq += sq
		}
		if rel := math.Sqrt(errSq / normSq); !(rel <= tolRow) {
			t.Fatalf("%s %s: row %d: relative error %.3g, allowed %.3g", e, c, m, rel, tolRow)
		}
	}
	for m := 0; m < M; m++ {
		for j := OC; j < ld; j++ {
			if !math.IsNaN(got[m*ld+j]) {
				t.Fatalf("%s %s: padding out[%d][%d] was written: %g", e, c, m, j, got[m*ld+j])
			}
		}
	}
}

// TestMatvec: every M bucket (fp32 4/8/16 rows of registers, bf16 one or
// two n8 tiles) × odd C and OC, each residual mode with a dense and a
// padded out, on the launcher's plan.
func TestMatvec(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range storages {
		n := 0
		for _, M := range []int{1, 3, 8, 16} {
			for _, C := range []int{64, 100, 352, 4096} {
				for _, OC := range []int{1, 7, 130, 4096} {
					ld := OC
					if n/3%2 == 1 {
						ld = OC + 5
					}
					testMatvec(t, r, e, matvecCase{M: M, C: C, OC: OC, ld: ld, mode: matvecMode(n % 3)})
					n++
				}
			}
		}
	}
}

// TestMatvecPlansRun runs every plan of MatvecPlans (every split of C,
// several tiles a warp) on shapes with partial tiles and partial steps.
func TestMatvecPlansRun(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range storages {
		for _, c := range []matvecCase{
			{M: 5, C: 1000, OC: 1000, ld: 1003, mode: matvecInPlace},
			{M: 16, C: 4096, OC: 300, ld: 300, mode: matvecSeparate},
			{M: 9, C: 200, OC: 2049, ld: 2049, mode: matvecNoResidual},
		} {
			for _, p := range MatvecPlans(c.C, c.OC) {
				c.plan = &p
				testMatvec(t, r, e, c)
			}
		}
	}
}

// TestMatvecUnaligned: inp and w one element past an aligned base take the
// element loads whatever C is.
func TestMatvecUnaligned(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range storages {
		for _, c := range []matvecCase{
			{M: 8, C: 4096, OC: 130, ld: 130, mode: matvecInPlace},
			{M: 12, C: 352, OC: 77, ld: 80, mode: matvecSeparate},
			{M: 2, C: 100, OC: 4096, ld: 4096, mode: matvecNoResidual},
		} {
			c.unaligned = true
			testMatvec(t, r, e, c)
		}
	}
}

// TestMatvecDecode checks the decode shapes (batch 8) at their full size,
// on a sample of output columns (the head's reference would be billions
// of multiply-adds), all but LLaMA-3's head, whose half a billion weights
// would take the host longer to draw than the test is worth: its plan (4
// tiles a warp) runs in TestMatvecPlansRun.
func TestMatvecDecode(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range storages {
		for _, s := range matvecDecodeShapes {
			if s.name == "head3" {
				continue
			}
			var cols []int
			for j := 0; j < s.OC; j += 1 + r.IntN(97) {
				cols = append(cols, j)
			}
			cols = append(cols, s.OC-1)
			mode := matvecNoResidual
			if s.residual {
				mode = matvecInPlace
			}
			testMatvec(t, r, e, matvecCase{M: s.M, C: s.C, OC: s.OC, ld: s.ld, mode: mode, cols: cols})
		}
	}
}

// matvecBenchFill fills v with a random N(0,1) pattern of 4M elements,
// repeated (random enough, cheap for the llama3 head's half a billion).
func matvecBenchFill(b *testing.B, r *rand.Rand, v program.View) {
	b.Helper()
	const pattern = 1 << 22
	n := int(v.Elems)
	f := make([]float32, min(n, pattern))
	for i := range f {
		f[i] = float32(r.NormFloat64())
	}
	h := make([]uint16, len(f))
	for i := range h {
		h[i] = bf16.FromFloat32(f[i])
	}
	for off := 0; off < n; off += pattern {
		part := v.Buf.Slice("", v.Offset+int64(off), int64(min(pattern, n-off)))
		var err error
		if v.Buf.Elem == program.BF16 {
			err = cuexec.Upload(testExec, part, h[:part.Elems])
		} else {
			err = cuexec.Upload(testExec, part, f[:part.Elems])
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// matvecBatches is how many timed batches the median of matvecBenchSeconds
// is over; matvecBatchLaunches the launches of a batch.
const (
	matvecBatches       = 5
	matvecBatchLaunches = 24
)

// matvecBenchSeconds times ops launched back to back, cycling through them
// (they read distinct weight copies, which together overflow L2, so every
// launch reads HBM): the median over matvecBatches batches of the time a
// launch, on the stream (each launch its own cuLaunchKernel, the gaps
// between kernels included) and as nodes of one CUDA graph (as a decode
// step replays them; graph is 0 where the graph could not be made, with
// the reason logged).
func matvecBenchSeconds(b *testing.B, x *cuexec.Executor, ops []program.Op) (stream, graph float64) {
	b.Helper()
	s := x.Stream()
	syncAll(b)
	for i := range len(ops) {
		if err := x.Do(&ops[i]); err != nil {
			b.Fatal(err)
		}
	}
	median := func(launch func() error) float64 {
		ts := make([]float64, matvecBatches)
		for k := range ts {
			start, _ := cu.MakeEvent(cu.DefaultEvent)
			stop, _ := cu.MakeEvent(cu.DefaultEvent)
			if err := start.Record(s); err != nil {
				b.Fatal(err)
			}
			if err := launch(); err != nil {
				b.Fatal(err)
			}
			if err := stop.Record(s); err != nil {
				b.Fatal(err)
			}
			if err := stop.Synchronize(); err != nil {
				b.Fatal(err)
			}
			ms, err := start.Elapsed(stop)
			if err != nil {
				b.Fatal(err)
			}
			cu.DestroyEvent(&start)
			cu.DestroyEvent(&stop)
			ts[k] = float64(ms) / 1e3 / matvecBatchLaunches
		}
		sort.Float64s(ts)
		return ts[len(ts)/2]
	}
	stream = median(func() error {
		for i := range matvecBatchLaunches {
			if err := x.Do(&ops[i%len(ops)]); err != nil {
				return err
			}
		}
		return nil
	})
	r := &program.Range{Name: "matvec bench"}
	for i := range matvecBatchLaunches {
		r.Add(ops[i%len(ops)])
	}
	if err := program.CaptureAsGraph(r); err != nil {
		b.Logf("no graph: %v", err)
		return stream, 0
	}
	g := r.Items[0].Op
	if err := x.Do(g); err != nil { // captures, then replays once
		b.Logf("no graph: %v", err)
		return stream, 0
	}
	graph = median(func() error { return x.Do(g) })
	if err := x.Synchronize(); err != nil {
		b.Fatal(err)
	}
	return stream, graph
}

// matvecHBM is the H200's measured device-to-device copy bandwidth, the
// yardstick of the weight stream.
const matvecHBM = 4.26e12

// BenchmarkMatvec times each decode shape (batch 8) in fp32 and bf16 on
// the launcher's plan and on its neighbours in MatvecPlans, and prints the
// weight bandwidth (weight bytes / time a launch) and its share of
// matvecHBM, launched on the stream and replayed in a graph; the first
// line is the floor, a launch that reads almost nothing. Run it once:
// kernels.test -test.run '^$' -test.bench Matvec -test.benchtime 1x
func BenchmarkMatvec(b *testing.B) {
	x := matmulBenchEnv(b)
	r := rand.New(rand.NewPCG(1, 2))
	var lines []string
	type shape struct {
		name      string
		M, C, OC  int
		ld        int
		residual  bool
		neighbors int // plans on each side of the launcher's to time too
	}
	shapes := []shape{{"floor", 8, 64, 16, 16, false, 0}}
	for _, sh := range matvecDecodeShapes {
		shapes = append(shapes, shape{sh.name, sh.M, sh.C, sh.OC, sh.ld, sh.residual, 2})
	}
	shapes = append(shapes, shape{"wqkv", 1, 4096, 12288, 12288, false, 0}, shape{"wqkv", 16, 4096, 12288, 12288, false, 0})
	for _, e := range storages {
		for _, sh := range shapes {
			M, C, OC, ld := sh.M, sh.C, sh.OC, sh.ld
			wBytes := int64(OC) * int64(C) * e.Size()
			copies := int(min(16, max(1, (512<<20+wBytes-1)/wBytes))) // 512 MB: ten times L2
			ws := make([]program.View, copies)
			for i := range ws {
				ws[i] = alloc(b, "w", e, OC*C).All()
				matvecBenchFill(b, r, ws[i])
			}
			inp := alloc(b, "inp", e, M*C).All()
			matvecBenchFill(b, r, inp)
			out := alloc(b, "out", e, M*ld).All()
			matvecBenchFill(b, r, out)
			res := program.View{}
			if sh.residual {
				res = out
			}
			chosen := MatvecPlanFor(e, C, OC, sms())
			plans := MatvecPlans(C, OC)
			at := slices.Index(plans, chosen)
			plans = plans[max(at-sh.neighbors, 0):min(at+sh.neighbors+1, len(plans))]
			for _, p := range plans {
				ops := make([]program.Op, copies)
				for i := range ops {
					ops[i] = matvecForward(out, inp, ws[i], res, M, C, OC, ld, p)
				}
				name := fmt.Sprintf("%s/%s_M%d/%s", e, sh.name, M, strings.ReplaceAll(p.String(), " ", "_"))
				b.Run(name, func(b *testing.B) {
					env(b)
					stream, graph := matvecBenchSeconds(b, x, ops)
					bw, gbw := float64(wBytes)/stream, float64(wBytes)/graph
					b.ReportMetric(bw/1e9, "GB/s")
					mark := ""
					if p == chosen {
						mark = "  <- MatvecPlanFor"
					}
					lines = append(lines, fmt.Sprintf("MATVEC %-4s %-5s M=%-2d C=%-5d OC=%-6d %-20s stream %6.1f us %5.1f%%  graph %6.1f us %5.1f%%%s",
						e, sh.name, M, C, OC, p, stream*1e6, 100*bw/matvecHBM, graph*1e6, 100*gbw/matvecHBM, mark))
				})
			}
			for _, w := range ws {
				testExec.Free(w.Buf)
			}
			testExec.Free(inp.Buf, out.Buf)
		}
	}
	fmt.Println(strings.Join(lines, "\n"))
}
