package kernels

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernel of ptx/gemv.cu: the linear layers of a decode step, whose few
// rows (the batch, at most MatvecMaxRows) make the product a stream of
// the weight. out, inp, w and residual are all f32 (module gemv, FMA) or
// all bf16 (module gemv_bf16, mma.sync, sm_80), with fp32 accumulation in
// both (elem.go's storage dispatch).

// MatvecMaxRows is the most rows MatvecForward multiplies in one launch.
const MatvecMaxRows = ptx.GemvMaxRows

// MatvecPlan is how one matvec_forward launch deals out its work. A warp
// tile is ptx.GemvTile output columns over one of WK slices of C; a block
// is ptx.GemvWarps/WK column tiles × WK slices (WK ∈ {1, 2, 4, 8}), and
// with WK = 1 each warp runs NT tiles in turn. Blocks is the grid.
type MatvecPlan struct{ WK, NT, Blocks int }

func (p MatvecPlan) String() string {
	return fmt.Sprintf("wk=%d nt=%d blocks=%d", p.WK, p.NT, p.Blocks)
}

// matvecPlan is the plan of (wk, nt) for OC output columns.
func matvecPlan(OC, wk, nt int) MatvecPlan {
	tiles := ceilDiv(OC, ptx.GemvTile)
	return MatvecPlan{WK: wk, NT: nt, Blocks: ceilDiv(tiles, ptx.GemvWarps/wk*nt)}
}

// MatvecPlans lists the plans matvec_forward can run for (C, OC), from the
// finest split of C to the coarsest: WK = 8, 4, 2 (each only where C has
// that many steps of ptx.GemvStep columns), then WK = 1 with NT = 1, 2, …
// up to one block. Any of them computes the product; the order of the sums
// (so the last bits) depends on WK.
func MatvecPlans(C, OC int) []MatvecPlan {
	steps := ceilDiv(C, ptx.GemvStep)
	var plans []MatvecPlan
	for wk := ptx.GemvWarps; wk > 1; wk /= 2 {
		if wk <= steps {
			plans = append(plans, matvecPlan(OC, wk, 1))
		}
	}
	for nt := 1; ; nt++ {
		p := matvecPlan(OC, 1, nt)
		plans = append(plans, p)
		if p.Blocks == 1 {
			return plans
		}
	}
}

// MatvecWaves is how many waves of blocks (SMs × ptx.GemvMinBlocks
// each) MatvecPlanFor lets a launch of storage e run to: the launcher's
// choice, from the H200's measurements of every plan at LLaMA's decode
// shapes (BenchmarkMatvec, docs in MatvecPlanFor).
func MatvecWaves(e program.Elem) int {
	if e == program.BF16 {
		return 16
	}
	return 4
}

// MatvecPlanFor is the plan MatvecForward runs for storage e on SMs
// multiprocessors: the finest split of C whose grid is at most
// MatvecWaves(e) waves, else WK = 1 with the fewest tiles a warp that
// fit. A warp holds only a few KB of w in flight, so HBM is streamed
// fastest when every block slot of every SM is busy to the end: many
// short blocks, whose last wave is a short tail. One wave of large blocks
// leaves slots empty (LLaMA-2's w13 as 172 blocks: 69% of the copy
// bandwidth in fp32, 78% as 688). The fp32 blocks, with twice the bytes
// and the FMA work of a bf16 block of the same columns, pay for their
// start past ~4 waves (74% at 5 waves); the bf16 ones gain to 15 waves
// (LLaMA-3's head: 90% at 4 waves, 96% at 15). Small OC (4096 columns:
// 256 tiles) splits C 8 ways to fill the GPU.
func MatvecPlanFor(e program.Elem, C, OC, SMs int) MatvecPlan {
	limit := max(SMs, 1) * ptx.GemvMinBlocks * MatvecWaves(e)
	steps := ceilDiv(C, ptx.GemvStep)
	for wk := ptx.GemvWarps; wk > 1; wk /= 2 {
		if p := matvecPlan(OC, wk, 1); wk <= steps && p.Blocks <= limit {
			return p
		}
	}
	tiles := ceilDiv(OC, ptx.GemvTile)
	return matvecPlan(OC, 1, max(ceilDiv(tiles, ptx.GemvWarps*limit), 1))
}

// MatvecForward computes out = inp·wᵀ (+ residual) for M ≤ MatvecMaxRows
// rows: out (M rows of stride ld ≥ OC; columns OC..ld-1 are left alone)
// from inp (M,C) and w (OC,C). residual has out's layout and may be a
// null view for none, a separate tensor, or out itself (out += inp·wᵀ, as
// the residual stream runs it). No bias. SMs picks the split of the work
// (MatvecPlanFor). It panics when M is over MatvecMaxRows, a dimension is
// not positive, or the views mix element types.
func MatvecForward(out, inp, w, residual program.View, M, C, OC, ld, SMs int) program.Op {
	s := storage("matvec_forward", out, inp, w, residual)
	return matvecForward(out, inp, w, residual, M, C, OC, ld, MatvecPlanFor(s, C, OC, SMs))
}

// matvecForward is MatvecForward with plan p.
func matvecForward(out, inp, w, residual program.View, M, C, OC, ld int, p MatvecPlan) program.Op {
	s := storage("matvec_forward", out, inp, w, residual)
	if M > MatvecMaxRows || M < 1 || C < 1 || OC < 1 {
		panic(fmt.Sprintf("kernels: matvec_forward of %d rows, C=%d, OC=%d: want 1..%d rows and positive C and OC", M, C, OC, MatvecMaxRows))
	}
	if p.NT > 1 && p.WK != 1 {
		panic(fmt.Sprintf("kernels: matvec_forward plan %v: several tiles a warp need wk = 1", p))
	}
	touch := strided(M, OC, ld)
	res := int64(0)
	if !residual.IsNull() {
		res = touch
	}
	op := stored(s, "gemv", "matvec_forward", program.D1(p.Blocks), program.D1(ptx.GemvThreads),
		program.Out("out", out, touch), program.In("inp", inp, int64(M)*int64(C)), program.In("w", w, int64(OC)*int64(C)),
		program.In("residual", residual, res),
		program.Int("M", M), program.Int("C", C), program.Int("OC", OC), program.Int("ld", ld),
		program.Int("wk", p.WK), program.Int("nt", p.NT))
	op.MatmulFLOPs = matmulFLOPs(M, C, OC)
	op.FLOPs = op.MatmulFLOPs
	if !residual.IsNull() {
		op.FLOPs += int64(M) * int64(OC) * ResidualFwdFLOPs
	}
	return op
}
