// Package gemmplan is the launch geometry of the SGEMM in ptx/matmul.cu:
// which block tile a product runs with and, for the weight gradient, into
// how many slices its reduction over the N rows is split (split-K). It is
// pure arithmetic, without cu, so that internal/memplan can size the
// split-K scratch before a GPU is open; kernels/matmul.go launches what it
// plans.
//
// The plan minimises a cost model in SM cycles, per tile and slice count:
//
//	loop  = max(perSM · warps · 600·cost · stages · (w+4)/(4w),
//	            rounds · stages · 1500)                   (a stage's global loads, unhidden)
//	      + rounds · 800                                  (first stage's loads)
//	split = rounds · 1500                                 (partial store, fence, counter)
//	      + max(8·⌈S/8⌉ · 400, S·tileBytes / 64)          (the last block's reduction)
//	      + 2 · S · tiles · tileBytes / (20 · SMs)        (the partials' L2 traffic)
//
// where perSM = ⌈blocks/SMs⌉, a block's warps = tile/2048, w is the warps
// resident on the busiest SM (at most 16: 128 registers a thread), rounds =
// ⌈perSM/resident blocks⌉, a warp issues ~600 instructions per K stage of 8
// (times the tile's cost) and the SM issues 4 a cycle at w/(w+4)
// efficiency. A stage is Tile.Depth k (8, or 32 for the fine tile); when
// the SM has too few warps to cover a stage's global loads with the
// previous stage's FMAs (the tiny model's products: one block an SM), the
// stage costs its wait instead, ~1500 cycles (fitted to the H200's tiny
// products, BenchmarkMatmulPlanSweep in docs/matmul.md). Without a split (S
// = 1) this reproduces version 1's measured H200 throughputs within ~15%
// (docs/matmul.md); the split's constants are estimates to tune against
// BenchmarkMatmulBackwardWeight.
package gemmplan

import (
	"fmt"
	"math"
)

// BK is the K depth of one shared-memory stage of the kernels (BK in
// matmul.cu); a slice of a split reduction is a whole number of stages.
const BK = 8

// Tile is one of the block tiles the kernels implement. Code is the
// kernel's tile argument (TILE_* in matmul.cu); every thread computes a
// Micro×Micro block of outputs (8×8 in gemm, 4×4 in gemm_fine), so a BM×BN
// tile has BM·BN/Micro² threads, and a shared stage is Depth k deep.
type Tile struct {
	Code, BM, BN int
	Micro, Depth int
	// Cost is the relative issue cost per output: smaller tiles spend more
	// instructions a stage on loads (about 610, 645 and 680 instructions
	// per 512 FMAs in the SASS of gemm's three tiles) and read more from
	// L2; the fine tile's 4×4 outputs read two float4 a k for 16 FMAs
	// rather than four for 64.
	Cost float64
}

// Tiles are the tiles of matmul.cu, largest first. The fine tile
// (TILE_64x64_FINE) is the 64×64 tile with four times the threads and a
// stage four times deeper: for products of a few dozen tiles, where one
// block an SM would otherwise wait on global memory every 8 k.
var Tiles = [...]Tile{
	{Code: 0, BM: 128, BN: 128, Micro: 8, Depth: BK, Cost: 1},
	{Code: 1, BM: 128, BN: 64, Micro: 8, Depth: BK, Cost: 1.06},
	{Code: 2, BM: 64, BN: 64, Micro: 8, Depth: BK, Cost: 1.12},
	{Code: 3, BM: 64, BN: 64, Micro: 4, Depth: FineBK, Cost: 1.25},
}

// FineBK is the fine tile's stage depth (FINE_BK in matmul.cu).
const FineBK = 32

// Threads is the tile's block size.
func (t Tile) Threads() int { return t.BM * t.BN / (t.Micro * t.Micro) }

// Warps is the tile's warps a block.
func (t Tile) Warps() int { return t.Threads() / 32 }

// Blocks is how many tiles cover an m×n output.
func (t Tile) Blocks(m, n int) int { return ceilDiv(m, t.BM) * ceilDiv(n, t.BN) }

func (t Tile) String() string {
	if t.Micro != 8 {
		return fmt.Sprintf("%dx%d/%d", t.BM, t.BN, t.Micro)
	}
	return fmt.Sprintf("%dx%d", t.BM, t.BN)
}

// ResidentWarps is how many warps of a GEMM kernel fit on one SM: the
// kernels use 128 registers a thread (__launch_bounds__(256, 2)), so 512
// threads, whatever the tile.
const ResidentWarps = 16

const (
	// MinSliceK is the fewest rows a slice of a split reduction gets: 8
	// stages, so that a slice's fixed costs (its first loads, its partial
	// store and counter) stay below about a third of its loop.
	MinSliceK = 64
	// MaxSlices bounds S: the last block of a tile reads all S partials.
	MaxSlices = 16
	// MaxPartialFloats bounds one split's partials (32 MiB), so that they
	// stay in L2 (40–60 MB on A100/H100/H200) between their store and the
	// reduction.
	MaxPartialFloats = 8 << 20
)

// The cost model's constants, in SM cycles (see the package comment).
const (
	stageIssue    = 600  // instructions a warp issues per K stage (× Tile.Cost)
	stageWait     = 1500 // a stage's wait on its global loads, when too few warps hide it
	fillCycles    = 800  // a block's first global loads, per round of resident blocks
	syncCycles    = 1500 // partial store, __threadfence, counter atomic, barrier
	l2Latency     = 400  // a round of dependent L2 reads in the reduction
	smL2Bytes     = 64   // bytes a cycle one SM reads from L2
	gpuL2BytesPSM = 20   // bytes a cycle of L2 bandwidth per SM, whole GPU
)

// Split is the plan of one weight gradient: its tile and how its reduction
// over K = N rows is split. Slices = 1 is no split: one block per tile runs
// the whole reduction and writes dW directly, with no scratch.
type Split struct {
	Tile   Tile
	Tiles  int // output tiles: the grid's x
	Slices int // S: the grid's y
	SliceK int // rows per slice, a multiple of BK (the last slice may be shorter); K when S = 1
}

// PartialFloats is the scratch the split's partials need: one tile per
// (slice, tile), or 0 without a split.
func (p Split) PartialFloats() int {
	if p.Slices <= 1 {
		return 0
	}
	return p.Slices * p.Tiles * p.Tile.BM * p.Tile.BN
}

// Counters is the per-tile counters the split needs, or 0 without a split.
func (p Split) Counters() int {
	if p.Slices <= 1 {
		return 0
	}
	return p.Tiles
}

func (p Split) String() string {
	return fmt.Sprintf("%s×%d S=%d/%d", p.Tile, p.Tiles, p.Slices, p.SliceK)
}

// SplitOf is the plan of an m×n output over k with tile t in (at most)
// slices slices: the slice length is ⌈k/slices⌉ rounded up to whole stages,
// and Slices is then how many slices that length needs (never an empty
// slice). The slice boundaries do not depend on the tile, so every tile
// gives the same bits for the same Slices.
func SplitOf(t Tile, m, n, k, slices int) Split {
	p := Split{Tile: t, Tiles: t.Blocks(m, n), Slices: 1, SliceK: k}
	if slices > 1 && k > BK {
		p.SliceK = ceilDiv(ceilDiv(k, slices), BK) * BK
		p.Slices = ceilDiv(k, p.SliceK)
		if p.Slices == 1 {
			p.SliceK = k
		}
	}
	return p
}

// cycles is the cost model's estimate for plan p over k on sms SMs.
func (p Split) cycles(k, sms int) float64 {
	t := p.Tile
	blocks := p.Tiles * p.Slices
	perSM := ceilDiv(blocks, sms)
	resident := ResidentWarps / t.Warps()
	rounds := ceilDiv(perSM, resident)
	w := float64(min(perSM, resident) * t.Warps())
	stages := float64(ceilDiv(max(p.SliceK, 1), t.Depth))
	issue := float64(perSM*t.Warps()) * stageIssue * t.Cost * stages * (w + 4) / (4 * w)
	c := math.Max(issue, float64(rounds)*stages*stageWait) + float64(rounds)*fillCycles
	if p.Slices > 1 {
		tileBytes := float64(4 * t.BM * t.BN)
		s := float64(p.Slices)
		c += float64(rounds) * syncCycles
		c += math.Max(float64(8*ceilDiv(p.Slices, 8))*l2Latency, s*tileBytes/smL2Bytes)
		c += 2 * float64(blocks) * tileBytes / float64(gpuL2BytesPSM*sms)
	}
	return c
}

// Pick is the tile with the least estimated time for an m×n output over k
// without a split (the forward and the input gradient). Every tile gives
// the same number of threads (m·n/64), so the choice is about granularity:
// products of only a few hundred 128×128 tiles, where whole tiles would
// leave SMs idle or doubly loaded, get smaller ones. Any choice gives
// bitwise the same result.
func Pick(m, n, k, sms int) Tile {
	best, bestCost := Tiles[0], math.Inf(1)
	for _, t := range Tiles {
		if c := SplitOf(t, m, n, k, 1).cycles(k, max(sms, 1)); c < bestCost {
			best, bestCost = t, c
		}
	}
	return best
}

// Choice is how a plan picks among the tiles and slice counts.
type Choice int

const (
	// Fastest is the cost model's least estimated time (Pick, WeightGrad).
	Fastest Choice = iota
	// Largest is the largest tile and no split-K, whatever the shape: the
	// plan of --flaw=low-occupancy, which on a small product launches
	// fewer blocks than the GPU has SMs (256 threads each) and leaves a
	// long weight-gradient reduction to one block per tile. The bits of
	// the forward and the input gradient do not change (any tile gives
	// the same); those of a weight gradient the cost model splits do.
	Largest
)

func (c Choice) String() string {
	if c == Largest {
		return "largest tile, no split-K"
	}
	return "fastest"
}

// PickWith is Pick under choice c: Tiles[0] for Largest.
func PickWith(m, n, k, sms int, c Choice) Tile {
	if c == Largest {
		return Tiles[0]
	}
	return Pick(m, n, k, sms)
}

// WeightGradWith is WeightGrad under choice c: Tiles[0] without a split
// for Largest, which needs no scratch.
func WeightGradWith(n, c, oc, sms, maxFloats, maxCounters int, ch Choice) Split {
	return ProductWith(oc, c, n, sms, maxFloats, maxCounters, ch)
}

// WeightGrad plans dw(oc,c) = dout(n,oc)ᵀ·inp(n,c), a GEMM of an oc×c
// output over K = n rows: Product(oc, c, n, ...).
func WeightGrad(n, c, oc, sms, maxFloats, maxCounters int) Split {
	return Product(oc, c, n, sms, maxFloats, maxCounters)
}

// ProductWith is Product under choice c: Tiles[0] without a split for
// Largest, which needs no scratch.
func ProductWith(m, n, k, sms, maxFloats, maxCounters int, ch Choice) Split {
	if ch == Largest {
		return SplitOf(Tiles[0], m, n, k, 1)
	}
	return Product(m, n, k, sms, maxFloats, maxCounters)
}

// Product plans any of the three products as a GEMM of an m×n output over
// k (the forward: n rows × oc over c; the input gradient: n × c over oc;
// the weight gradient: oc × c over the n rows) on sms SMs, within a
// scratch of maxFloats partial floats and maxCounters counters: the tile
// and slice count S (1 ≤ S ≤ MaxSlices, slices of at least MinSliceK) of
// least estimated time. With too little scratch for any split, S = 1, which
// is Pick's tile.
func Product(m, n, k, sms, maxFloats, maxCounters int) Split {
	sms = max(sms, 1)
	maxFloats = min(maxFloats, MaxPartialFloats)
	var best Split
	bestCost := math.Inf(1)
	for _, t := range Tiles {
		for s := 1; s <= min(MaxSlices, k/MinSliceK) || s == 1; s++ {
			p := SplitOf(t, m, n, k, s)
			if p.Slices != s {
				continue // the same split as a smaller s
			}
			if p.PartialFloats() > maxFloats || p.Counters() > maxCounters {
				continue
			}
			if cost := p.cycles(k, sms); cost < bestCost {
				best, bestCost = p, cost
			}
		}
	}
	return best
}

// WeightGradScratch is a workspace, in partial floats and int32 counters,
// that holds WeightGrad's plan for dw(oc,c) over n rows on any number of
// SMs: a bound, not the plan's own need, so that it can be sized before a
// GPU is open (internal/memplan) and grows with n (memplan's search for
// the largest batch wants the memory to grow with the batch). A plan has
// S ≤ min(MaxSlices, n/MinSliceK) slices of at most the output padded to
// 128×128 tiles, and at most MaxPartialFloats floats; it has a counter per
// tile, at most the 64×64 tiles of the output, and at most one per two
// 64×64 partials. Both are 0 when n is too short to split.
func WeightGradScratch(n, c, oc int) (floats, counters int) {
	return ProductScratch(oc, c, n)
}

// ProductScratch is WeightGradScratch for any product: a workspace that
// holds Product's plan of an m×n output over k on any number of SMs.
func ProductScratch(m, n, k int) (floats, counters int) {
	s := min(MaxSlices, k/MinSliceK)
	if s < 2 || m <= 0 || n <= 0 {
		return 0, 0
	}
	padded := ceilDiv(m, 128) * 128 * ceilDiv(n, 128) * 128
	floats = min(MaxPartialFloats, s*padded)
	counters = min(ceilDiv(m, 64)*ceilDiv(n, 64), floats/(2*64*64))
	return floats, counters
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
