package kernels

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/gemmplan"
	"gorgonia.org/cu"
)

// Matmul holds the kernels of ptx/matmul.cu: the linear layers'
// products and the bias gradient. See docs/matmul.md for the design.
//
// The three products are one SGEMM in three operand layouts. Each launch
// picks a tile shape (128×128, 128×64 or 64×64) so that small problems
// still give every SM work; the result is bitwise the same whatever the
// tile, since each output is the same k-ordered chain of FMAs. The weight
// gradient may also split its reduction over the N rows into slices
// (split-K, see BackwardWeight), which changes the order of its sum but
// not its determinism.
type Matmul struct {
	forward        *kernel
	backwardInput  *kernel
	backwardWeight *kernel
	biasBackward   *kernel

	// sms is the device's multiprocessor count, for the tile and split
	// choice.
	sms int
}

func (x *Matmul) load(l *loader) {
	x.forward = l.kernel("matmul", "matmul_forward")
	x.backwardInput = l.kernel("matmul", "matmul_backward_input")
	x.backwardWeight = l.kernel("matmul", "matmul_backward_weight")
	x.biasBackward = l.kernel("matmul", "bias_backward")
	x.sms = defaultSMs
	if dev, err := cu.CurrentDevice(); err == nil {
		if n, err := dev.Attribute(cu.MultiprocessorCount); err == nil && n > 0 {
			x.sms = n
		}
	}
}

// defaultSMs is the H100 SXM's multiprocessor count, used if the driver
// cannot say.
const defaultSMs = 132

// SMs is the multiprocessor count the launchers plan for.
func (x *Matmul) SMs() int { return x.sms }

// gemmTile is one of the block tiles the kernels implement (see
// internal/gemmplan, which holds the tile table and the cost model).
type gemmTile = gemmplan.Tile

// tile picks the tile for an m×n output over k (internal/gemmplan.Pick):
// any choice gives bitwise the same result.
func (x *Matmul) tile(m, n, k int) gemmTile { return gemmplan.Pick(m, n, k, x.sms) }

// MatmulScratch is the weight gradient's split-K workspace: Partials holds
// PartialFloats float32s, the slices' partial output tiles; Counters holds
// CounterInts int32s, one arrival counter per output tile, which must be
// zero before the first launch (cuMemsetD32 once, at allocation) and which
// every launch leaves at zero. One workspace serves any number of weight
// gradients launched one after another on one stream, never two at once.
// The zero MatmulScratch disables the split.
type MatmulScratch struct {
	Partials, Counters         cu.DevicePtr
	PartialFloats, CounterInts int
}

// MatmulScratchSize is a workspace in which the weight gradient dw(oc,c) =
// dout(n,oc)ᵀ·inp(n,c) can take its preferred split on any GPU: partial
// floats and int32 counters, both 0 when n is too short to split
// (gemmplan.WeightGradScratch: a bound that needs no device, so that
// internal/memplan can count it). A workspace of the largest sizes of
// several products serves them all. A smaller one only limits the split.
func MatmulScratchSize(n, c, oc int) (partialFloats, counterInts int) {
	return gemmplan.WeightGradScratch(n, c, oc)
}

// Forward computes out(n,oc) = inp(n,c)·w(oc,c)ᵀ + bias(oc). bias may be 0
// for none. out is overwritten; it must not overlap the inputs.
func (x *Matmul) Forward(s cu.Stream, out, inp, w, bias cu.DevicePtr, n, c, oc int) error {
	return x.forwardTile(s, out, inp, w, bias, n, c, oc, x.tile(n, oc, c))
}

func (x *Matmul) forwardTile(s cu.Stream, out, inp, w, bias cu.DevicePtr, n, c, oc int, t gemmTile) error {
	if n == 0 || oc == 0 {
		return nil
	}
	return x.forward.launch(s, grid1(t.Blocks(n, oc)), grid1(t.Threads()), 0,
		ptr(out), ptr(inp), ptr(w), ptr(bias), i32(n), i32(c), i32(oc), i32(t.Code))
}

// BackwardInput computes dinp(n,c) = dout(n,oc)·w(oc,c), overwriting dinp.
func (x *Matmul) BackwardInput(s cu.Stream, dinp, dout, w cu.DevicePtr, n, c, oc int) error {
	return x.backwardInputTile(s, dinp, dout, w, n, c, oc, x.tile(n, c, oc))
}

func (x *Matmul) backwardInputTile(s cu.Stream, dinp, dout, w cu.DevicePtr, n, c, oc int, t gemmTile) error {
	if n == 0 || c == 0 {
		return nil
	}
	return x.backwardInput.launch(s, grid1(t.Blocks(n, c)), grid1(t.Threads()), 0,
		ptr(dinp), ptr(dout), ptr(w), i32(n), i32(c), i32(oc), i32(t.Code))
}

// weightPlan is the tile and split of dw(oc,c) over n rows on this GPU,
// within the workspace ws (gemmplan.WeightGrad).
func (x *Matmul) weightPlan(n, c, oc int, ws MatmulScratch) gemmplan.Split {
	floats, counters := ws.PartialFloats, ws.CounterInts
	if ws.Partials == 0 || ws.Counters == 0 {
		floats, counters = 0, 0
	}
	return gemmplan.WeightGrad(n, c, oc, x.sms, floats, counters)
}

// BackwardWeight computes dw(oc,c) = dout(n,oc)ᵀ·inp(n,c), overwriting dw,
// in one launch.
//
// When the output has too few tiles to fill the GPU, the reduction over
// the n rows is split into S slices (grid tiles × S): each block sums its
// slice into a partial tile in ws, and the last block to finish a tile
// adds the S partials in slice order 0..S−1 and writes dw. The order of
// every sum is fixed by (n, c, oc) and the SM count, so the result is
// deterministic; it differs in the last bits from the unsplit sum, and so
// between GPUs whose SM counts give different plans. Without a split (or
// with a zero ws) one block per tile runs the whole reduction in row order.
func (x *Matmul) BackwardWeight(s cu.Stream, dw, dout, inp cu.DevicePtr, ws MatmulScratch, n, c, oc int) error {
	return x.backwardWeightPlan(s, dw, dout, inp, ws, n, c, oc, x.weightPlan(n, c, oc, ws))
}

func (x *Matmul) backwardWeightPlan(s cu.Stream, dw, dout, inp cu.DevicePtr, ws MatmulScratch, n, c, oc int, p gemmplan.Split) error {
	if oc == 0 || c == 0 {
		return nil
	}
	if p.Slices > 1 && (ws.Partials == 0 || ws.Counters == 0 ||
		p.PartialFloats() > ws.PartialFloats || p.Counters() > ws.CounterInts) {
		return fmt.Errorf("matmul_backward_weight: split %v needs %d partial floats and %d counters, the workspace has %d and %d",
			p, p.PartialFloats(), p.Counters(), ws.PartialFloats, ws.CounterInts)
	}
	return x.backwardWeight.launch(s, grid2(p.Tiles, p.Slices), grid1(p.Tile.Threads()), 0,
		ptr(dw), ptr(dout), ptr(inp), ptr(ws.Partials), ptr(ws.Counters),
		i32(n), i32(c), i32(oc), i32(p.Tile.Code), i32(p.Slices), i32(p.SliceK))
}

// BiasBackward computes dbias(oc) = Σ_n dout(n,oc), overwriting dbias, in a
// fixed order (deterministic). One block of 32×32 threads per 32 columns.
func (x *Matmul) BiasBackward(s cu.Stream, dbias, dout cu.DevicePtr, n, oc int) error {
	if oc == 0 {
		return nil
	}
	return x.biasBackward.launch(s, grid1(ceilDiv(oc, 32)), grid2(32, 32), 0,
		ptr(dbias), ptr(dout), i32(n), i32(oc))
}

// Backward runs the linear layer's backward pass: dinp = dout·w (n,c),
// dw = doutᵀ·inp (oc,c) and, when dbias is not 0, dbias = colsum(dout)
// (oc). All are overwritten. ws is the weight gradient's split-K workspace
// (see BackwardWeight). It is 2 launches, or 3 with the bias.
func (x *Matmul) Backward(s cu.Stream, dinp, dw, dbias, dout, inp, w cu.DevicePtr, ws MatmulScratch, n, c, oc int) error {
	if err := x.BackwardInput(s, dinp, dout, w, n, c, oc); err != nil {
		return err
	}
	if err := x.BackwardWeight(s, dw, dout, inp, ws, n, c, oc); err != nil {
		return err
	}
	if dbias != 0 {
		return x.BiasBackward(s, dbias, dout, n, oc)
	}
	return nil
}
