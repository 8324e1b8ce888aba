package kernels

import (
	"github.com/gpubench/gpubench/internal/gemmplan"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/matmul.cu: the linear layers' products and the bias
// gradient. See docs/matmul.md for the design.
//
// The three products are one SGEMM in three operand layouts. Each launch
// picks a tile shape (128×128, 128×64 or 64×64, internal/gemmplan) so that
// small problems still give every SM work; the result is bitwise the same
// whatever the tile, since each output is the same k-ordered chain of FMAs.
// The weight gradient may also split its reduction over the N rows into
// slices (split-K, see MatmulBackwardWeight), which changes the order of
// its sum but not its determinism. Both choices depend on the GPU's SM
// count, which the caller passes in.

// MatmulScratch is the weight gradient's split-K workspace: Partials, the
// slices' partial output tiles (floats), and Counters, one int32 arrival
// counter per output tile, which must be zero before the first launch (a
// memset in the program's setup) and which every launch leaves at zero. One
// workspace serves any number of weight gradients launched one after
// another on one stream, never two at once. Null views disable the split.
type MatmulScratch struct {
	Partials, Counters program.View
}

// MatmulScratchSize is a workspace in which the weight gradient
// dw(oc,c) = dout(n,oc)ᵀ·inp(n,c) can take its preferred split on any GPU:
// partial floats and int32 counters, both 0 when n is too short to split
// (gemmplan.WeightGradScratch, a bound that needs no device).
func MatmulScratchSize(n, c, oc int) (partialFloats, counterInts int) {
	return gemmplan.WeightGradScratch(n, c, oc)
}

func matmulFLOPs(n, c, oc int) int64 { return 2 * int64(n) * int64(c) * int64(oc) }

// MatmulOptions choose how the fp32 products launch; the zero value is
// the clean step's: the cost model's tiles and splits, padded shared rows.
// A planted flaw (model/flaws.go) sets one; none changes which products
// run or their operands.
type MatmulOptions struct {
	// Choice is how gemmplan picks tiles and splits: gemmplan.Largest for
	// --flaw=low-occupancy.
	Choice gemmplan.Choice
	// NoPad launches the forward as matmul_forward_nopad, the same GEMM
	// without the shared rows' pad (--flaw=bank-conflicts): the same tile
	// and grid, the same bits.
	NoPad bool
}

// MatmulForwardNoPad is the entry of the forward without the pad.
const MatmulForwardNoPad = "matmul_forward_nopad"

// MatmulForward computes out(n,oc) = inp(n,c)·w(oc,c)ᵀ + bias(oc) on sms
// SMs. bias may be a null view for none. out is overwritten; it must not
// overlap the inputs.
func MatmulForward(out, inp, w, bias program.View, n, c, oc, sms int) program.Op {
	return MatmulForwardWith(out, inp, w, bias, n, c, oc, sms, MatmulOptions{})
}

// MatmulForwardWith is MatmulForward under options o.
func MatmulForwardWith(out, inp, w, bias program.View, n, c, oc, sms int, o MatmulOptions) program.Op {
	op := MatmulForwardTile(out, inp, w, bias, n, c, oc, gemmplan.PickWith(n, oc, c, sms, o.Choice))
	if o.NoPad {
		op.Name = MatmulForwardNoPad
	}
	return op
}

// MatmulForwardTile is MatmulForward with the tile given.
func MatmulForwardTile(out, inp, w, bias program.View, n, c, oc int, t gemmplan.Tile) program.Op {
	bt := int64(oc)
	if bias.IsNull() {
		bt = 0
	}
	op := kernel("matmul", "matmul_forward", program.D1(max(t.Blocks(n, oc), 1)), program.D1(t.Threads()),
		program.Out("out", out, int64(n*oc)), program.In("inp", inp, int64(n*c)), program.In("w", w, int64(oc*c)),
		program.In("bias", bias, bt), program.Int("N", n), program.Int("C", c), program.Int("OC", oc), program.Int("tile", t.Code))
	op.MatmulFLOPs = matmulFLOPs(n, c, oc)
	op.FLOPs = op.MatmulFLOPs
	if bt > 0 {
		op.FLOPs += int64(n) * bt
	}
	return op
}

// MatmulBackwardInput computes dinp(n,c) = dout(n,oc)·w(oc,c), overwriting
// dinp.
func MatmulBackwardInput(dinp, dout, w program.View, n, c, oc, sms int) program.Op {
	return MatmulBackwardInputTile(dinp, dout, w, n, c, oc, gemmplan.Pick(n, c, oc, sms))
}

// MatmulBackwardInputTile is MatmulBackwardInput with the tile given.
func MatmulBackwardInputTile(dinp, dout, w program.View, n, c, oc int, t gemmplan.Tile) program.Op {
	op := kernel("matmul", "matmul_backward_input", program.D1(max(t.Blocks(n, c), 1)), program.D1(t.Threads()),
		program.Out("dinp", dinp, int64(n*c)), program.In("dout", dout, int64(n*oc)), program.In("w", w, int64(oc*c)),
		program.Int("N", n), program.Int("C", c), program.Int("OC", oc), program.Int("tile", t.Code))
	op.MatmulFLOPs = matmulFLOPs(n, c, oc)
	op.FLOPs = op.MatmulFLOPs
	return op
}

// MatmulWeightPlan is the tile and split of dw(oc,c) over n rows on sms
// SMs, within the workspace ws (gemmplan.WeightGrad).
func MatmulWeightPlan(n, c, oc, sms int, ws MatmulScratch) gemmplan.Split {
	return matmulWeightPlan(n, c, oc, sms, ws, gemmplan.Fastest)
}

func matmulWeightPlan(n, c, oc, sms int, ws MatmulScratch, ch gemmplan.Choice) gemmplan.Split {
	floats, counters := 0, 0
	if !ws.Partials.IsNull() && !ws.Counters.IsNull() {
		floats, counters = int(ws.Partials.Elems), int(ws.Counters.Elems)
	}
	return gemmplan.WeightGradWith(n, c, oc, sms, floats, counters, ch)
}

// MatmulBackwardWeight computes dw(oc,c) = dout(n,oc)ᵀ·inp(n,c),
// overwriting dw, in one launch.
//
// When the output has too few tiles to fill the GPU, the reduction over
// the n rows is split into S slices (grid tiles × S): each block sums its
// slice into a partial tile in ws, and the last block to finish a tile
// adds the S partials in slice order 0..S−1 and writes dw. The order of
// every sum is fixed by (n, c, oc) and the SM count, so the result is
// deterministic; it differs in the last bits from the unsplit sum, and so
// between GPUs whose SM counts give different plans. Without a split (or
// with a null ws) one block per tile runs the whole reduction in row order.
func MatmulBackwardWeight(dw, dout, inp program.View, ws MatmulScratch, n, c, oc, sms int) program.Op {
	return MatmulBackwardWeightPlan(dw, dout, inp, ws, n, c, oc, MatmulWeightPlan(n, c, oc, sms, ws))
}

// MatmulBackwardWeightPlan is MatmulBackwardWeight with the plan given;
// a split plan needs a workspace that holds it (program.Validate checks).
func MatmulBackwardWeightPlan(dw, dout, inp program.View, ws MatmulScratch, n, c, oc int, p gemmplan.Split) program.Op {
	op := kernel("matmul", "matmul_backward_weight", program.D2(max(p.Tiles, 1), p.Slices), program.D1(p.Tile.Threads()),
		program.Out("dw", dw, int64(oc*c)), program.In("dout", dout, int64(n*oc)), program.In("inp", inp, int64(n*c)),
		program.InOut("partials", ws.Partials, int64(p.PartialFloats())), program.InOut("counters", ws.Counters, int64(p.Counters())),
		program.Int("N", n), program.Int("C", c), program.Int("OC", oc),
		program.Int("tile", p.Tile.Code), program.Int("splits", p.Slices), program.Int("slice_k", p.SliceK))
	op.MatmulFLOPs = matmulFLOPs(n, c, oc)
	op.FLOPs = op.MatmulFLOPs
	return op
}

// BiasBackward computes dbias(oc) = Σ_n dout(n,oc), overwriting dbias, in a
// fixed order (deterministic). One block of 32×32 threads per 32 columns.
func BiasBackward(dbias, dout program.View, n, oc int) program.Op {
	op := kernel("matmul", "bias_backward", program.D1(max(ceilDiv(oc, ptx.BiasBackwardCols), 1)), program.D2(ptx.BiasBackwardCols, ptx.BiasBackwardRows),
		program.Out("dbias", dbias, int64(oc)), program.In("dout", dout, int64(n*oc)), program.Int("N", n), program.Int("OC", oc))
	op.FLOPs = int64(n) * int64(oc)
	return op
}

// MatmulBackward is the linear layer's backward pass: dinp = dout·w (n,c),
// dw = doutᵀ·inp (oc,c) and, when dbias is not null, dbias = colsum(dout)
// (oc). All are overwritten. ws is the weight gradient's split-K workspace
// (see MatmulBackwardWeight). Two launches, or three with the bias.
func MatmulBackward(dinp, dw, dbias, dout, inp, w program.View, ws MatmulScratch, n, c, oc, sms int) []program.Op {
	return MatmulBackwardWith(dinp, dw, dbias, dout, inp, w, ws, n, c, oc, sms, MatmulOptions{})
}

// MatmulBackwardWith is MatmulBackward under options o (whose NoPad is the
// forward's only: the backward has no unpadded entry).
func MatmulBackwardWith(dinp, dw, dbias, dout, inp, w program.View, ws MatmulScratch, n, c, oc, sms int, o MatmulOptions) []program.Op {
	ops := []program.Op{
		MatmulBackwardInputTile(dinp, dout, w, n, c, oc, gemmplan.PickWith(n, c, oc, sms, o.Choice)),
		MatmulBackwardWeightPlan(dw, dout, inp, ws, n, c, oc, matmulWeightPlan(n, c, oc, sms, ws, o.Choice)),
	}
	if !dbias.IsNull() {
		ops = append(ops, BiasBackward(dbias, dout, n, oc))
	}
	return ops
}
