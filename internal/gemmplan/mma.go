package gemmplan

import (
	"fmt"
	"math"
)

// The tensor-core GEMM of ptx/matmul_mma.cu (kernels.Matmul*MMA) has two
// block tiles, 128×256 (wide) and 128×192 (narrow), picked per launch
// (MMAPick, MMAWeightGrad); ptx/constants_mma_test.go holds these to the
// .cu's constants.
const (
	// MMABlockM is the block tile's rows (BM in matmul_mma.cu).
	MMABlockM = 128
	// MMABlockNWide and MMABlockNNarrow are its two widths (BN_WIDE,
	// BN_NARROW), the entries' bn argument.
	MMABlockNWide   = 256
	MMABlockNNarrow = 192
	// MMAThreads is a block's threads (THREADS): 8 warps, 2 along M × 4
	// along N, of 64 × bn/4 outputs.
	MMAThreads = 256
	// MMAStages is the cp.async pipeline's depth (STAGES).
	MMAStages = 4
	// MMARowBytes is a stage's K extent in bytes (ROW_BYTES): 64 bf16 or 32
	// fp32; MMARowStride is a row of it in shared memory (KC_STRIDE),
	// padded by 16 bytes.
	MMARowBytes  = 128
	MMARowStride = MMARowBytes + 16
	// MMAResidentBlocks is how many blocks fit on one SM: the entries'
	// __launch_bounds__(THREADS, 1), at up to 255 registers a thread and up
	// to 216 KB of shared memory a block.
	MMAResidentBlocks = 1
	// MMASliceAlign is the row granularity of a split weight gradient's
	// slices: a whole number of stages of either element type (64 bf16
	// rows, two 32-row TF32 stages).
	MMASliceAlign = 64
	// MMAMinSliceK is the fewest rows a slice gets: 4 bf16 stages, so that
	// the slice's partial store and the reduction stay small next to it.
	MMAMinSliceK = 256
)

// MMABlockNs are the block widths, in the order ties are broken.
var MMABlockNs = [...]int{MMABlockNWide, MMABlockNNarrow}

// MMASharedBytes is the dynamic shared memory of a GEMM launch with block
// width bn (SMEM_WIDE, SMEM_NARROW): MMAStages stages of MMABlockM + bn
// rows of MMARowStride bytes (216 KB wide, 180 KB narrow), above the 48 KB
// a launch gets without cuFuncSetAttribute (the executor opts in).
func MMASharedBytes(bn int) int { return MMASharedBytesAt(bn, MMAStages) }

// MMAStagesLow is the pipeline depth of the build for GPUs whose blocks
// get less shared memory than MMAStages needs (ptx/matmul_mma3.cu: 162 KB
// wide, fitting an A100's 163 KB).
const MMAStagesLow = 3

// MMASharedBytesAt is MMASharedBytes at a pipeline depth of stages.
func MMASharedBytesAt(bn, stages int) int { return stages * (MMABlockM + bn) * MMARowStride }

// MMAStagesFor is the deepest pipeline whose wide tile fits sharedOptIn
// bytes of shared memory a block (the device's opt-in limit): MMAStages,
// or MMAStagesLow, or 0 when neither fits. 0 bytes (not known: plan and
// check without a GPU) means MMAStages, the H100/H200's.
func MMAStagesFor(sharedOptIn int) int {
	if sharedOptIn == 0 {
		return MMAStages
	}
	for _, s := range []int{MMAStages, MMAStagesLow} {
		if MMASharedBytesAt(MMABlockNWide, s) <= sharedOptIn {
			return s
		}
	}
	return 0
}

// MMASplit is the plan of one tensor-core weight gradient dw(oc,c) over K =
// n rows: Tiles output tiles of MMABlockM×BN (the grid's x), Slices slices
// of SliceK rows (the grid's y; the last may be shorter). Slices = 1 is no
// split: one block per tile runs the whole reduction and writes dw, with
// no scratch.
type MMASplit struct {
	BN, Tiles, Slices, SliceK int
}

// PartialFloats is the scratch the split's partials need: one tile per
// (slice, tile), or 0 without a split.
func (p MMASplit) PartialFloats() int {
	if p.Slices <= 1 {
		return 0
	}
	return p.Slices * p.Tiles * MMABlockM * p.BN
}

// Counters is the tile counters the split needs, or 0 without a split.
func (p MMASplit) Counters() int {
	if p.Slices <= 1 {
		return 0
	}
	return p.Tiles
}

func (p MMASplit) String() string {
	return fmt.Sprintf("%dx%d×%d S=%d/%d", MMABlockM, p.BN, p.Tiles, p.Slices, p.SliceK)
}

// MMATiles is how many block tiles of width bn cover an m×n output.
func MMATiles(m, n, bn int) int { return ceilDiv(m, MMABlockM) * ceilDiv(n, bn) }

// MMASplitOf is the plan of dw(oc,c) over k rows with tiles of width bn in
// (at most) slices slices: the slice length is ⌈k/slices⌉ rounded up to
// MMASliceAlign rows, and Slices is then how many slices that length needs
// (never an empty one).
func MMASplitOf(oc, c, k, slices, bn int) MMASplit {
	p := MMASplit{BN: bn, Tiles: MMATiles(oc, c, bn), Slices: 1, SliceK: k}
	if slices > 1 && k > MMASliceAlign {
		p.SliceK = ceilDiv(ceilDiv(k, slices), MMASliceAlign) * MMASliceAlign
		p.Slices = ceilDiv(k, p.SliceK)
		if p.Slices == 1 {
			p.SliceK = k
		}
	}
	return p
}

// The MMA cost model's constants, in SM cycles at 1.98 GHz, fitted to the
// H200 (docs/matmul.md, "Tensor cores, version 2"): one block an SM; see
// mmaCycles.
const (
	mmaRowCyclesWide   = 55.0 // one K row of a 128×256 tile: 2·128·256 FLOP at ~1190 FLOP/cycle (fc forward)
	mmaRowCyclesNarrow = 42.0 // 128×192: 3/4 of the FLOPs at the same rate (qkv forward, 6 waves)
	mmaTileCycles      = 3000 // a tile's pipeline fill and epilogue
	mmaPartialCycles   = 2000 // one SM moving one 128 KB partial tile to or from L2
	mmaSyncCycles      = 500  // fence, counter atomic, barriers
	mmaL2BytesPerCyc   = 2700 // the whole GPU's L2 bandwidth
)

func mmaRowCycles(bn int) float64 {
	if bn == MMABlockNNarrow {
		return mmaRowCyclesNarrow
	}
	return mmaRowCyclesWide
}

// mmaCycles estimates tiles tiles of width bn over k rows each on sms SMs,
// one block an SM at a time.
func mmaCycles(tiles, bn, k, sms int) float64 {
	return float64(ceilDiv(tiles, max(sms, 1))) * (float64(k)*mmaRowCycles(bn) + mmaTileCycles)
}

// MMAPick is the block width for an m×n output over k (the forward:
// n·c·oc is (n, oc, c); the input gradient (n, c, oc)) on sms SMs: the
// width of least estimated time, the wide one on a tie. The result does
// not depend on it: every output's sum runs over k in the same order
// whatever the tile.
func MMAPick(m, n, k, sms int) int {
	best := MMABlockNs[0]
	bestCost := mmaCycles(MMATiles(m, n, best), best, k, sms)
	for _, bn := range MMABlockNs[1:] {
		if c := mmaCycles(MMATiles(m, n, bn), bn, k, sms); c < bestCost-1e-9*bestCost {
			best, bestCost = bn, c
		}
	}
	return best
}

// mmaCycles estimates plan p on sms SMs: the busiest SM's blocks one after
// another over SliceK rows; a split adds each block's partial store, the
// reducer's S partial reads and the partials' L2 traffic.
func (p MMASplit) mmaCycles(sms int) float64 {
	c := mmaCycles(p.Tiles*p.Slices, p.BN, p.SliceK, sms)
	if p.Slices > 1 {
		s := float64(p.Slices)
		frac := float64(p.BN) / MMABlockNWide // of a 128×256 partial
		c += (s+1)*mmaPartialCycles*frac + mmaSyncCycles
		c += 2 * s * float64(p.Tiles) * 4 * MMABlockM * float64(p.BN) / mmaL2BytesPerCyc
	}
	return c
}

// MMAWeightGrad plans dw(oc,c) = dout(n,oc)ᵀ·inp(n,c) on sms SMs within a
// scratch of maxFloats partial floats and maxCounters counters: the block
// width and the slice count (1 ≤ S ≤ MaxSlices, slices of at least
// MMAMinSliceK rows) of least estimated time. With too little scratch for
// any split, S = 1.
func MMAWeightGrad(n, c, oc, sms, maxFloats, maxCounters int) MMASplit {
	sms = max(sms, 1)
	maxFloats = min(maxFloats, MaxPartialFloats)
	best := MMASplitOf(oc, c, n, 1, MMABlockNs[0])
	bestCost := best.mmaCycles(sms)
	for _, bn := range MMABlockNs {
		for s := 1; s <= max(1, min(MaxSlices, n/MMAMinSliceK)); s++ {
			p := MMASplitOf(oc, c, n, s, bn)
			if p.Slices != s || p.PartialFloats() > maxFloats || p.Counters() > maxCounters {
				continue
			}
			if cost := p.mmaCycles(sms); cost < bestCost-1e-9*math.Abs(bestCost) {
				best, bestCost = p, cost
			}
		}
	}
	return best
}

// MMAWeightGradScratch is a workspace, in partial floats and int32
// counters, that holds MMAWeightGrad's plan for dw(oc,c) over n rows on any
// number of SMs (a bound that needs no device, growing with n): at most
// min(MaxSlices, n/MMAMinSliceK) slices of the output's tiles of either
// width, capped at MaxPartialFloats, and one counter per tile. Both are 0
// when n is too short to split.
func MMAWeightGradScratch(n, c, oc int) (floats, counters int) {
	s := min(MaxSlices, n/MMAMinSliceK)
	if s < 2 || c <= 0 || oc <= 0 {
		return 0, 0
	}
	for _, bn := range MMABlockNs {
		tiles := MMATiles(oc, c, bn)
		floats = max(floats, min(MaxPartialFloats, s*tiles*MMABlockM*bn))
		counters = max(counters, tiles)
	}
	return floats, counters
}
