package kernels

import (
	"fmt"
	"math"

	"gorgonia.org/cu"
)

// Matmul holds the kernels of ptx/matmul.cu: the linear layers'
// products and the bias gradient. See docs/matmul.md for the design.
//
// The three products are one SGEMM in three operand layouts. Each launch
// picks a tile shape (128×128, 128×64 or 64×64) so that small problems
// still give every SM work; the result is bitwise the same whatever the
// tile, since each output is the same k-ordered chain of FMAs.
type Matmul struct {
	forward        *kernel
	backwardInput  *kernel
	backwardWeight *kernel
	biasBackward   *kernel

	// sms is the device's multiprocessor count, for the tile choice.
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

// gemmTile is one of the block tiles the kernels implement. code is the
// kernel's tile argument (TILE_* in matmul.cu); every thread computes an
// 8×8 block of outputs, so a tile of bm×bn has bm·bn/64 threads.
type gemmTile struct {
	code, bm, bn int
	// cost is the relative issue cost per output: smaller tiles spend more
	// instructions a stage on loads (about 610, 645 and 680 instructions
	// per 512 FMAs in the SASS of the three tiles) and read more from L2.
	cost float64
}

func (t gemmTile) threads() int { return t.bm * t.bn / 64 }

func (t gemmTile) warps() int { return t.threads() / 32 }

func (t gemmTile) blocks(m, n int) int { return ceilDiv(m, t.bm) * ceilDiv(n, t.bn) }

func (t gemmTile) String() string { return fmt.Sprintf("%dx%d", t.bm, t.bn) }

var gemmTiles = [...]gemmTile{
	{code: 0, bm: 128, bn: 128, cost: 1},
	{code: 1, bm: 128, bn: 64, cost: 1.06},
	{code: 2, bm: 64, bn: 64, cost: 1.12},
}

// residentWarps is how many warps of a GEMM kernel fit on one SM: the
// kernels use 128 registers a thread (__launch_bounds__(256, 2)), so 512
// threads, whatever the tile.
const residentWarps = 16

// tile picks the tile with the least estimated time for an m×n output.
// Every tile gives the same number of threads (m·n/64), so the choice is
// about granularity: the busiest SM gets ceil(blocks/SMs) blocks, and runs
// them at a throughput that grows with its resident warps, modelled as
// w/(w+4) (a latency worth about 4 warps to hide). Big products get
// 128×128; products of only a few hundred 128×128 tiles, where whole tiles
// would leave SMs idle or doubly loaded, get smaller ones. The model is
// a guess to be tuned against measurements (BenchmarkMatmul*); any choice
// gives bitwise the same result.
func (x *Matmul) tile(m, n int) gemmTile {
	best, bestCost := gemmTiles[0], math.Inf(1)
	for _, t := range gemmTiles {
		perSM := ceilDiv(t.blocks(m, n), x.sms)
		w := float64(min(perSM, residentWarps/t.warps()) * t.warps())
		cost := float64(perSM*t.bm*t.bn) * t.cost * (w + 4) / w
		if cost < bestCost {
			best, bestCost = t, cost
		}
	}
	return best
}

// Forward computes out(n,oc) = inp(n,c)·w(oc,c)ᵀ + bias(oc). bias may be 0
// for none. out is overwritten; it must not overlap the inputs.
func (x *Matmul) Forward(s cu.Stream, out, inp, w, bias cu.DevicePtr, n, c, oc int) error {
	return x.forwardTile(s, out, inp, w, bias, n, c, oc, x.tile(n, oc))
}

func (x *Matmul) forwardTile(s cu.Stream, out, inp, w, bias cu.DevicePtr, n, c, oc int, t gemmTile) error {
	if n == 0 || oc == 0 {
		return nil
	}
	return x.forward.launch(s, grid1(t.blocks(n, oc)), grid1(t.threads()), 0,
		ptr(out), ptr(inp), ptr(w), ptr(bias), i32(n), i32(c), i32(oc), i32(t.code))
}

// BackwardInput computes dinp(n,c) = dout(n,oc)·w(oc,c), overwriting dinp.
func (x *Matmul) BackwardInput(s cu.Stream, dinp, dout, w cu.DevicePtr, n, c, oc int) error {
	return x.backwardInputTile(s, dinp, dout, w, n, c, oc, x.tile(n, c))
}

func (x *Matmul) backwardInputTile(s cu.Stream, dinp, dout, w cu.DevicePtr, n, c, oc int, t gemmTile) error {
	if n == 0 || c == 0 {
		return nil
	}
	return x.backwardInput.launch(s, grid1(t.blocks(n, c)), grid1(t.threads()), 0,
		ptr(dinp), ptr(dout), ptr(w), i32(n), i32(c), i32(oc), i32(t.code))
}

// BackwardWeight computes dw(oc,c) = dout(n,oc)ᵀ·inp(n,c), overwriting dw.
// The sum over the n rows runs inside one block per output tile, in row
// order, so the result is deterministic.
func (x *Matmul) BackwardWeight(s cu.Stream, dw, dout, inp cu.DevicePtr, n, c, oc int) error {
	return x.backwardWeightTile(s, dw, dout, inp, n, c, oc, x.tile(oc, c))
}

func (x *Matmul) backwardWeightTile(s cu.Stream, dw, dout, inp cu.DevicePtr, n, c, oc int, t gemmTile) error {
	if oc == 0 || c == 0 {
		return nil
	}
	return x.backwardWeight.launch(s, grid1(t.blocks(oc, c)), grid1(t.threads()), 0,
		ptr(dw), ptr(dout), ptr(inp), i32(n), i32(c), i32(oc), i32(t.code))
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
// (oc). All are overwritten. It is 2 launches, or 3 with the bias.
func (x *Matmul) Backward(s cu.Stream, dinp, dw, dbias, dout, inp, w cu.DevicePtr, n, c, oc int) error {
	if err := x.BackwardInput(s, dinp, dout, w, n, c, oc); err != nil {
		return err
	}
	if err := x.BackwardWeight(s, dw, dout, inp, n, c, oc); err != nil {
		return err
	}
	if dbias != 0 {
		return x.BiasBackward(s, dbias, dout, n, oc)
	}
	return nil
}
