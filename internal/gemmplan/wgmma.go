package gemmplan

import "math"

// The Hopper tier's GEMM (ptx/matmul_wgmma.cu): the tile, the warpgroups
// and the ring of stages. ptx/constants_wgmma_test.go checks them against
// the .cu. The tile's height is MMABlockM, so MMATiles, MMASplit and
// MMASplitOf describe its grids and splits too.
const (
	// WGMMABlockNWide and WGMMABlockNNarrow are the tile widths.
	WGMMABlockNWide   = 256
	WGMMABlockNNarrow = 128
	// WGMMAThreads is a block: a producer warpgroup and two consumers.
	WGMMAThreads = 384
	// WGMMABlockK is a stage's K: 64 bf16, one 128-byte swizzle row.
	WGMMABlockK = 64
	// WGMMABlockKTF32 is the tf32 entries' stage: 32 fp32, the same
	// 128-byte row.
	WGMMABlockKTF32 = 32
	// WGMMASharedLimit is the shared memory an H100/H200 block may opt in
	// to; the ring takes the stages that fit beside the staged C tile: 3
	// wide, 6 narrow.
	WGMMASharedLimit = 227 * 1024
)

// The tf32 entries' transpose (matmul_transpose_tf32): a tile of
// TransposeTile² fp32 a block of TransposeTile × TransposeRows threads.
const (
	TransposeTile = 32
	TransposeRows = 8
)

// WGMMABlockNs are the widths the planner chooses from, widest first.
var WGMMABlockNs = [...]int{WGMMABlockNWide, WGMMABlockNNarrow}

// WGMMAStages is the ring's depth at width bn.
func WGMMAStages(bn int) int {
	return (WGMMASharedLimit - 2048 - wgmmaOutBytes(bn)) / wgmmaStageBytes(bn)
}

func wgmmaStageBytes(bn int) int { return (MMABlockM + bn) * WGMMABlockK * 2 }

// wgmmaOutBytes is the C tile staged for the TMA stores, in bf16.
func wgmmaOutBytes(bn int) int { return MMABlockM * bn * 2 }

// WGMMAStagesTF32 is the ring's depth of the tf32 entries at width bn:
// the same stage bytes, and no staged C tile (their fp32 C goes out from
// the registers): 4 wide, 7 narrow.
func WGMMAStagesTF32(bn int) int {
	return (WGMMASharedLimit - 2048) / wgmmaStageBytes(bn)
}

// WGMMASharedBytesTF32 is WGMMASharedBytes for the tf32 entries
// (SMEM_WIDE_TF32, SMEM_NARROW_TF32).
func WGMMASharedBytesTF32(bn int) int {
	s := WGMMAStagesTF32(bn)
	return 1024 + s*wgmmaStageBytes(bn) + 2*s*8 + 16
}

// WGMMASharedBytes is the dynamic shared memory of a block of width bn:
// 1024 bytes to align the ring to the swizzle's period, the ring, the
// staged C tile, a full and an empty mbarrier a stage, and the split's
// flag (SMEM_WIDE, SMEM_NARROW).
func WGMMASharedBytes(bn int) int {
	s := WGMMAStages(bn)
	return 1024 + s*wgmmaStageBytes(bn) + wgmmaOutBytes(bn) + 2*s*8 + 16
}

// The Hopper tier's cost model, in SM cycles at 1.98 GHz: a K row of a
// 128×bn tile at ~2300 FLOP/cycle an SM (600 TFLOP/s on 132 SMs, about 3/4
// of cuBLAS's 786), and a tile's fill and epilogue. A prediction, not yet
// fitted to measurements; the split's costs are the mma tier's.
const (
	wgmmaFLOPPerCycle = 2300.0
	wgmmaTileCycles   = 2000
)

// wgmmaCycles estimates plan p on sms SMs (see MMASplit.mmaCycles): the
// busiest SM's units one after another.
func (p MMASplit) wgmmaCycles(sms int) float64 {
	row := 2 * MMABlockM * float64(p.BN) / wgmmaFLOPPerCycle
	c := float64(ceilDiv(p.Tiles*p.Slices, max(sms, 1))) * (float64(p.SliceK)*row + wgmmaTileCycles)
	if p.Slices > 1 {
		s := float64(p.Slices)
		frac := float64(p.BN) / MMABlockNWide
		c += (s+1)*mmaPartialCycles*frac + mmaSyncCycles
		c += 2 * s * float64(p.Tiles) * 4 * MMABlockM * float64(p.BN) / mmaL2BytesPerCyc
	}
	return c
}

// WGMMAPlan plans the Hopper tier's product of an m×n output over k on
// sms SMs, within a workspace of maxFloats partial floats and maxCounters
// counters: the width and the slice count (1 ≤ S ≤ MaxSlices, slices of
// at least MMAMinSliceK rows) of least estimated time; the wide tile and
// fewer slices on a tie. With no workspace S = 1, whose result does not
// depend on the width (every sum runs over k in the same order).
func WGMMAPlan(m, n, k, sms, maxFloats, maxCounters int) MMASplit {
	sms = max(sms, 1)
	maxFloats = min(maxFloats, MaxPartialFloats)
	best := MMASplitOf(m, n, k, 1, WGMMABlockNs[0])
	bestCost := best.wgmmaCycles(sms)
	for _, bn := range WGMMABlockNs {
		for s := 1; s <= max(1, min(MaxSlices, k/MMAMinSliceK)); s++ {
			p := MMASplitOf(m, n, k, s, bn)
			if p.Slices != s || p.PartialFloats() > maxFloats || p.Counters() > maxCounters {
				continue
			}
			if cost := p.wgmmaCycles(sms); cost < bestCost-1e-9*math.Abs(bestCost) {
				best, bestCost = p, cost
			}
		}
	}
	return best
}

// WGMMAScratch is a workspace, in partial floats and int32 counters, that
// holds WGMMAPlan's plan of an m×n output over k on any number of SMs: S ≤
// min(MaxSlices, k/MMAMinSliceK) slices of either width's tiles (at most
// MaxPartialFloats floats) and a counter per tile of the narrower width.
// Both 0 when k is too short to split. A bound that needs no device, as
// MMAWeightGradScratch is the mma tier's: the mma tier's workspace has a
// counter per 128×192 tile, too few for the Hopper tier's 128×128 plans
// (attproj's weight gradient then fell back to 128×256 tiles in 7 slices:
// 32.9 µs on an H200 against 23.8 for 128×128 in 3).
func WGMMAScratch(m, n, k int) (floats, counters int) {
	s := min(MaxSlices, k/MMAMinSliceK)
	if s < 2 || m <= 0 || n <= 0 {
		return 0, 0
	}
	for _, bn := range WGMMABlockNs {
		tiles := MMATiles(m, n, bn)
		floats = max(floats, min(MaxPartialFloats, s*tiles*MMABlockM*bn))
		counters = max(counters, tiles)
	}
	return floats, counters
}

// WGMMAResident is the Hopper GEMM's blocks an SM (its shared memory and
// registers allow one).
const WGMMAResident = 1

// WGMMAGrid is the persistent grid of plan p on sms SMs: a block an SM, or
// one a unit (tile × slice) where there are fewer.
func WGMMAGrid(p MMASplit, sms int) int {
	return max(1, min(p.Tiles*max(p.Slices, 1), WGMMAResident*max(sms, 1)))
}
