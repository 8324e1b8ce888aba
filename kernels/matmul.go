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
// A product whose output has too few tiles for the GPU may also split its
// reduction over K into slices (split-K, see MatmulBackwardWeight; the
// forward and the input gradient split their K the same way), which
// changes the order of its sum but not its determinism. Both choices
// depend on the GPU's SM count, which the caller passes in.

// MatmulScratch is the products' split-K workspace: Partials, the slices'
// partial output tiles (floats), and Counters, one int32 arrival counter
// per output tile, which must be zero before the first launch (a memset in
// the program's setup) and which every launch leaves at zero. One
// workspace serves any number of products launched one after another on
// one stream, never two at once. Null views disable the split.
type MatmulScratch struct {
	Partials, Counters program.View
}

// MatmulScratchSize is a workspace in which each of a linear layer's
// three products (the forward out(n,oc) over c, the input gradient
// dinp(n,c) over oc, the weight gradient dw(oc,c) over the n rows) can take
// its preferred split on any GPU: partial floats and int32 counters, 0 when
// no product's K is long enough to split (gemmplan.ProductScratch, a bound
// that needs no device).
func MatmulScratchSize(n, c, oc int) (partialFloats, counterInts int) {
	for _, mnk := range [][3]int{{n, oc, c}, {n, c, oc}, {oc, c, n}} {
		f, k := gemmplan.ProductScratch(mnk[0], mnk[1], mnk[2])
		partialFloats, counterInts = max(partialFloats, f), max(counterInts, k)
	}
	return partialFloats, counterInts
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
	// without the shared rows' pad (--flaw=bank-conflicts): the same tile,
	// split and grid, the same bits.
	NoPad bool
}

// MatmulForwardNoPad is the entry of the forward without the pad.
const MatmulForwardNoPad = "matmul_forward_nopad"

// MatmulPlan is the tile and split of a product of an m×n output over k on
// sms SMs, within the workspace ws (gemmplan.Product; no split with a null
// ws).
func MatmulPlan(m, n, k, sms int, ws MatmulScratch) gemmplan.Split {
	return matmulPlan(m, n, k, sms, ws, gemmplan.Fastest)
}

func matmulPlan(m, n, k, sms int, ws MatmulScratch, ch gemmplan.Choice) gemmplan.Split {
	floats, counters := 0, 0
	if !ws.Partials.IsNull() && !ws.Counters.IsNull() {
		floats, counters = int(ws.Partials.Elems), int(ws.Counters.Elems)
	}
	return gemmplan.ProductWith(m, n, k, sms, floats, counters, ch)
}

// MatmulWeightPlan is the tile and split of dw(oc,c) over n rows on sms
// SMs, within the workspace ws (gemmplan.WeightGrad).
func MatmulWeightPlan(n, c, oc, sms int, ws MatmulScratch) gemmplan.Split {
	return MatmulPlan(oc, c, n, sms, ws)
}

// productOp is the launch of product entry of ptx/matmul.cu under plan p:
// its operands, then the workspace (a split plan needs one that holds it;
// program.Validate checks), the shape and the plan's arguments, on the grid
// (tiles, slices). Every product counts 2·n·c·oc FLOPs in its matmul.
func productOp(entry string, operands []program.Arg, ws MatmulScratch, n, c, oc int, p gemmplan.Split) program.Op {
	args := append(operands,
		program.InOut("partials", ws.Partials, int64(p.PartialFloats())), program.InOut("counters", ws.Counters, int64(p.Counters())),
		program.Int("N", n), program.Int("C", c), program.Int("OC", oc),
		program.Int("tile", p.Tile.Code), program.Int("splits", p.Slices), program.Int("slice_k", p.SliceK))
	op := kernel("matmul", entry, program.D2(max(p.Tiles, 1), p.Slices), program.D1(p.Tile.Threads()), args...)
	op.MatmulFLOPs = matmulFLOPs(n, c, oc)
	op.FLOPs = op.MatmulFLOPs
	return op
}

// MatmulForward computes out(n,oc) = inp(n,c)·w(oc,c)ᵀ + bias(oc) on sms
// SMs, unsplit (no workspace). bias may be a null view for none. out is
// overwritten; it must not overlap the inputs.
func MatmulForward(out, inp, w, bias program.View, n, c, oc, sms int) program.Op {
	return MatmulForwardWith(out, inp, w, bias, MatmulScratch{}, n, c, oc, sms, MatmulOptions{})
}

// MatmulForwardWith is MatmulForward within workspace ws (split-K when the
// output has too few tiles for the GPU and c is long enough; see
// MatmulBackwardWeight), under options o.
func MatmulForwardWith(out, inp, w, bias program.View, ws MatmulScratch, n, c, oc, sms int, o MatmulOptions) program.Op {
	op := MatmulForwardPlan(out, inp, w, bias, ws, n, c, oc, matmulPlan(n, oc, c, sms, ws, o.Choice))
	if o.NoPad {
		op.Name = MatmulForwardNoPad
	}
	return op
}

// MatmulForwardTile is MatmulForward with the tile given, unsplit.
func MatmulForwardTile(out, inp, w, bias program.View, n, c, oc int, t gemmplan.Tile) program.Op {
	return MatmulForwardPlan(out, inp, w, bias, MatmulScratch{}, n, c, oc, gemmplan.SplitOf(t, n, oc, c, 1))
}

// MatmulForwardPlan is MatmulForward with the plan given (a split adds the
// bias once, after the slices' sum).
func MatmulForwardPlan(out, inp, w, bias program.View, ws MatmulScratch, n, c, oc int, p gemmplan.Split) program.Op {
	bt := int64(oc)
	if bias.IsNull() {
		bt = 0
	}
	op := productOp("matmul_forward", []program.Arg{program.Out("out", out, int64(n*oc)), program.In("inp", inp, int64(n*c)),
		program.In("w", w, int64(oc*c)), program.In("bias", bias, bt)}, ws, n, c, oc, p)
	if bt > 0 {
		op.FLOPs += int64(n) * bt
	}
	return op
}

// MatmulBackwardInput computes dinp(n,c) = dout(n,oc)·w(oc,c), overwriting
// dinp, unsplit (no workspace).
func MatmulBackwardInput(dinp, dout, w program.View, n, c, oc, sms int) program.Op {
	return MatmulBackwardInputPlan(dinp, dout, w, MatmulScratch{}, n, c, oc, MatmulPlan(n, c, oc, sms, MatmulScratch{}))
}

// MatmulBackwardInputTile is MatmulBackwardInput with the tile given,
// unsplit.
func MatmulBackwardInputTile(dinp, dout, w program.View, n, c, oc int, t gemmplan.Tile) program.Op {
	return MatmulBackwardInputPlan(dinp, dout, w, MatmulScratch{}, n, c, oc, gemmplan.SplitOf(t, n, c, oc, 1))
}

// MatmulBackwardInputPlan is MatmulBackwardInput with the plan given.
func MatmulBackwardInputPlan(dinp, dout, w program.View, ws MatmulScratch, n, c, oc int, p gemmplan.Split) program.Op {
	return productOp("matmul_backward_input", []program.Arg{program.Out("dinp", dinp, int64(n*c)), program.In("dout", dout, int64(n*oc)),
		program.In("w", w, int64(oc*c))}, ws, n, c, oc, p)
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
// The forward and the input gradient split their K the same way.
func MatmulBackwardWeight(dw, dout, inp program.View, ws MatmulScratch, n, c, oc, sms int) program.Op {
	return MatmulBackwardWeightPlan(dw, dout, inp, ws, n, c, oc, MatmulWeightPlan(n, c, oc, sms, ws))
}

// MatmulBackwardWeightPlan is MatmulBackwardWeight with the plan given;
// a split plan needs a workspace that holds it (program.Validate checks).
func MatmulBackwardWeightPlan(dw, dout, inp program.View, ws MatmulScratch, n, c, oc int, p gemmplan.Split) program.Op {
	return productOp("matmul_backward_weight", []program.Arg{program.Out("dw", dw, int64(oc*c)), program.In("dout", dout, int64(n*oc)),
		program.In("inp", inp, int64(n*c))}, ws, n, c, oc, p)
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
// (oc). All are overwritten. ws is the products' split-K workspace (see
// MatmulBackwardWeight). Two launches, or three with the bias.
func MatmulBackward(dinp, dw, dbias, dout, inp, w program.View, ws MatmulScratch, n, c, oc, sms int) []program.Op {
	return MatmulBackwardWith(dinp, dw, dbias, dout, inp, w, ws, n, c, oc, sms, MatmulOptions{})
}

// MatmulBackwardWith is MatmulBackward under options o (whose NoPad is the
// forward's only: the backward has no unpadded entry).
func MatmulBackwardWith(dinp, dw, dbias, dout, inp, w program.View, ws MatmulScratch, n, c, oc, sms int, o MatmulOptions) []program.Op {
	ops := []program.Op{
		MatmulBackwardInputPlan(dinp, dout, w, ws, n, c, oc, matmulPlan(n, c, oc, sms, ws, o.Choice)),
		MatmulBackwardWeightPlan(dw, dout, inp, ws, n, c, oc, matmulPlan(oc, c, n, sms, ws, o.Choice)),
	}
	if !dbias.IsNull() {
		ops = append(ops, BiasBackward(dbias, dout, n, oc))
	}
	return ops
}
