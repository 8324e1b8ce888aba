package gemmplan

import (
	"fmt"
	"math"
)

// The tensor-core GEMM of ptx/matmul_mma.cu (kernels.Matmul*MMA) has one
// block tile; ptx/constants_mma_test.go holds these to the .cu's constants.
const (
	// MMABlockM and MMABlockN are the block tile (BM, BN in matmul_mma.cu).
	MMABlockM = 128
	MMABlockN = 128
	// MMAThreads is a block's threads (THREADS): 4 warps of 64×64 outputs.
	MMAThreads = 128
	// MMAStages is the cp.async pipeline's depth (STAGES).
	MMAStages = 3
	// MMAStageBytes is one stage of both operands: BM rows of 64 bytes of
	// K each (2·TILE_BYTES), so 32 bf16 or 16 fp32 of K a stage.
	MMAStageBytes = 2 * MMABlockM * 64
	// MMASharedBytes is the dynamic shared memory of every GEMM entry
	// (SMEM_BYTES): 48 KB, the most a launch may ask for without
	// cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES).
	MMASharedBytes = MMAStages * MMAStageBytes
	// MMAResidentBlocks is how many blocks fit on one SM: the entries'
	// __launch_bounds__(THREADS, 2), at up to 255 registers a thread.
	MMAResidentBlocks = 2
	// MMASliceAlign is the row granularity of a split weight gradient's
	// slices: a whole number of stages of either element type (32 bf16
	// rows, two 16-row TF32 stages).
	MMASliceAlign = 32
	// MMAMinSliceK is the fewest rows a slice gets: 8 bf16 stages, so that
	// the slice's partial store and the reduction stay small next to it.
	MMAMinSliceK = 256
)

// MMASplit is the plan of one tensor-core weight gradient dw(oc,c) over K =
// n rows: Tiles output tiles (the grid's x), Slices slices of SliceK rows
// (the grid's y; the last may be shorter). Slices = 1 is no split: one
// block per tile runs the whole reduction and writes dw, with no scratch.
type MMASplit struct {
	Tiles, Slices, SliceK int
}

// PartialFloats is the scratch the split's partials need: one 128×128
// tile per (slice, tile), or 0 without a split.
func (p MMASplit) PartialFloats() int {
	if p.Slices <= 1 {
		return 0
	}
	return p.Slices * p.Tiles * MMABlockM * MMABlockN
}

// Counters is the tile counters the split needs, or 0 without a split.
func (p MMASplit) Counters() int {
	if p.Slices <= 1 {
		return 0
	}
	return p.Tiles
}

func (p MMASplit) String() string {
	return fmt.Sprintf("%dx%d×%d S=%d/%d", MMABlockM, MMABlockN, p.Tiles, p.Slices, p.SliceK)
}

// MMATiles is how many block tiles cover an m×n output.
func MMATiles(m, n int) int { return ceilDiv(m, MMABlockM) * ceilDiv(n, MMABlockN) }

// MMASplitOf is the plan of dw(oc,c) over k rows in (at most) slices
// slices: the slice length is ⌈k/slices⌉ rounded up to MMASliceAlign rows,
// and Slices is then how many slices that length needs (never an empty
// one).
func MMASplitOf(oc, c, k, slices int) MMASplit {
	p := MMASplit{Tiles: MMATiles(oc, c), Slices: 1, SliceK: k}
	if slices > 1 && k > MMASliceAlign {
		p.SliceK = ceilDiv(ceilDiv(k, slices), MMASliceAlign) * MMASliceAlign
		p.Slices = ceilDiv(k, p.SliceK)
		if p.Slices == 1 {
			p.SliceK = k
		}
	}
	return p
}

// The MMA cost model's constants, in SM cycles (estimates for an H100/H200
// at ~60% of the mma.sync peak; see mmaCycles).
const (
	mmaPairRowCycles = 41   // one K row of two co-resident 128×128 blocks
	mmaAloneFactor   = 0.75 // a block alone on its SM takes 0.75 of a pair's time
	mmaPartialCycles = 1000 // one SM moving one 64 KB partial tile to or from L2
	mmaSyncCycles    = 500  // fence, counter atomic, barriers
	mmaL2BytesPerCyc = 2700 // the whole GPU's L2 bandwidth
)

// mmaCycles estimates plan p on sms SMs: the busiest SM's blocks run two at
// a time (a lone last one at mmaAloneFactor of a pair's time) over SliceK
// rows; a split adds each block's partial store, the reducer's S partial
// reads and the partials' L2 traffic.
func (p MMASplit) mmaCycles(sms int) float64 {
	perSM := ceilDiv(p.Tiles*p.Slices, sms)
	pairs, alone := perSM/MMAResidentBlocks, perSM%MMAResidentBlocks
	c := float64(p.SliceK) * mmaPairRowCycles * (float64(pairs) + mmaAloneFactor*float64(alone))
	if p.Slices > 1 {
		s := float64(p.Slices)
		c += (s+1)*mmaPartialCycles + mmaSyncCycles
		c += 2 * s * float64(p.Tiles) * 4 * MMABlockM * MMABlockN / mmaL2BytesPerCyc
	}
	return c
}

// MMAWeightGrad plans dw(oc,c) = dout(n,oc)ᵀ·inp(n,c) on sms SMs within a
// scratch of maxFloats partial floats and maxCounters counters: the slice
// count (1 ≤ S ≤ MaxSlices, slices of at least MMAMinSliceK rows) of least
// estimated time. With too little scratch for any split, S = 1.
func MMAWeightGrad(n, c, oc, sms, maxFloats, maxCounters int) MMASplit {
	sms = max(sms, 1)
	maxFloats = min(maxFloats, MaxPartialFloats)
	best := MMASplitOf(oc, c, n, 1)
	bestCost := best.mmaCycles(sms)
	for s := 2; s <= min(MaxSlices, n/MMAMinSliceK); s++ {
		p := MMASplitOf(oc, c, n, s)
		if p.Slices != s || p.PartialFloats() > maxFloats || p.Counters() > maxCounters {
			continue
		}
		if cost := p.mmaCycles(sms); cost < bestCost-1e-9*math.Abs(bestCost) {
			best, bestCost = p, cost
		}
	}
	return best
}

// MMAWeightGradScratch is a workspace, in partial floats and int32
// counters, that holds MMAWeightGrad's plan for dw(oc,c) over n rows on any
// number of SMs (a bound that needs no device, growing with n): at most
// min(MaxSlices, n/MMAMinSliceK) slices of the output's tiles, capped at
// MaxPartialFloats, and one counter per tile. Both are 0 when n is too
// short to split.
func MMAWeightGradScratch(n, c, oc int) (floats, counters int) {
	s := min(MaxSlices, n/MMAMinSliceK)
	if s < 2 || c <= 0 || oc <= 0 {
		return 0, 0
	}
	tiles := MMATiles(oc, c)
	return min(MaxPartialFloats, s*tiles*MMABlockM*MMABlockN), tiles
}
