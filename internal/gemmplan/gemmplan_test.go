package gemmplan

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestPick pins the unsplit tile choice on a 132-SM GPU (H100/H200) for
// some of the presets' products (docs/matmul.md, "Tile choice"): the
// version 1 model, whose choices the cycle model keeps.
func TestPick(t *testing.T) {
	for _, tc := range []struct {
		m, n, k int
		want    string
	}{
		{8192, 2304, 768, "128x128"}, // gpt2-124m qkv forward
		{8192, 768, 768, "128x128"},  // gpt2-124m attproj forward
		{8192, 768, 3072, "128x128"}, // gpt2-124m input gradients of fc
		{50257, 768, 8192, "128x128"},
		{3072, 768, 8192, "64x64/4"}, // gpt2-124m fc weight gradient unsplit: 144 big tiles
		{768, 768, 8192, "64x64/4"},  // gpt2-124m attproj weight gradient unsplit
		{2048, 1536, 512, "128x64"},  // small qkv forward
		{512, 512, 2048, "64x64/4"},  // small attproj weight gradient
		{2048, 8192, 512, "128x128"}, // small lm head forward
		{512, 128, 128, "64x64/4"},   // tiny attproj forward: 16 tiles, one block an SM
		{1, 1, 1, "128x64"},          // every tile is one block waiting on one stage: the first of the ties
	} {
		if got := Pick(tc.m, tc.n, tc.k, 132).String(); got != tc.want {
			t.Errorf("Pick(%d, %d, %d) = %s, want %s", tc.m, tc.n, tc.k, got, tc.want)
		}
	}
}

// TestWeightGradPresets pins the weight gradients' plans on a 132-SM GPU:
// the tiny model splits every one 8 ways (K = 512 into slices of 64 rows)
// on the fine tile, small splits all but the lm head, gpt2-124m its four
// layer products.
// The constants are estimates (docs/matmul.md): retune them with the
// benchmarks and update this table with them.
func TestWeightGradPresets(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n, c, oc  int
		tile      string
		s, sliceK int
	}{
		{"tiny qkv", 512, 128, 384, "64x64/4", 8, 64},
		{"tiny attproj", 512, 128, 128, "64x64/4", 8, 64},
		{"tiny fc", 512, 128, 512, "64x64/4", 8, 64},
		{"tiny fcproj", 512, 512, 128, "64x64/4", 8, 64},
		{"small qkv", 2048, 512, 1536, "128x128", 5, 416},
		{"small attproj", 2048, 512, 512, "64x64/4", 4, 512},
		{"small fc", 2048, 512, 2048, "128x128", 4, 512},
		{"small lm head", 2048, 512, 8192, "128x128", 1, 2048},
		{"gpt2-124m qkv", 8192, 768, 2304, "128x64", 3, 2736},
		{"gpt2-124m attproj", 8192, 768, 768, "128x128", 11, 752},
		{"gpt2-124m fc", 8192, 768, 3072, "128x64", 3, 2736},
		{"gpt2-124m lm head", 8192, 768, 50257, "128x128", 1, 8192},
	} {
		p := WeightGrad(tc.n, tc.c, tc.oc, 132, math.MaxInt, math.MaxInt)
		if p.Tile.String() != tc.tile || p.Slices != tc.s || p.SliceK != tc.sliceK {
			t.Errorf("%s: plan %v, want %s S=%d/%d", tc.name, p, tc.tile, tc.s, tc.sliceK)
		}
	}
}

// TestWeightGradScratch pins the models' workspaces (the largest bound of
// their five linear layers), which memplan counts and the model allocates,
// and checks that on a 132-SM GPU they do not limit any layer's plan.
func TestWeightGradScratch(t *testing.T) {
	for _, tc := range []struct {
		name             string
		n, c, v          int
		floats, counters int
	}{
		{"tiny", 512, 128, 512, 524288, 16},                // 8 slices × 512×128 (fc, fcproj, lm head); 8×2 tiles
		{"small", 2048, 512, 8192, MaxPartialFloats, 1024}, // 16 × 2048×512 capped; lm head's 128×8 tiles
		{"gpt2-124m", 8192, 768, 50257, MaxPartialFloats, 1024},
	} {
		layers := [][2]int{{tc.c, 3 * tc.c}, {tc.c, tc.c}, {tc.c, 4 * tc.c}, {4 * tc.c, tc.c}, {tc.c, tc.v}}
		var floats, counters int
		for _, l := range layers {
			f, c := WeightGradScratch(tc.n, l[0], l[1])
			floats, counters = max(floats, f), max(counters, c)
		}
		if floats != tc.floats || counters != tc.counters {
			t.Errorf("%s: scratch %d floats, %d counters; want %d, %d", tc.name, floats, counters, tc.floats, tc.counters)
		}
		for _, l := range layers {
			free := WeightGrad(tc.n, l[0], l[1], 132, math.MaxInt, math.MaxInt)
			if got := WeightGrad(tc.n, l[0], l[1], 132, floats, counters); got != free {
				t.Errorf("%s %v: plan %v in the workspace, %v without limit", tc.name, l, got, free)
			}
		}
	}
}

// TestWeightGradScratchGrows: the bound never shrinks as n grows (memplan's
// largest-batch search assumes memory grows with the batch).
func TestWeightGradScratchGrows(t *testing.T) {
	for _, sh := range [][2]int{{64, 96}, {128, 384}, {768, 768}, {3072, 768}, {768, 50257}, {1, 1}} {
		pf, pc := 0, 0
		for n := 0; n <= 20000; n++ {
			f, c := WeightGradScratch(n, sh[0], sh[1])
			if f < pf || c < pc {
				t.Fatalf("c %d oc %d: n %d gives %d/%d, n-1 gave %d/%d", sh[0], sh[1], n, f, c, pf, pc)
			}
			pf, pc = f, c
		}
	}
}

// TestWeightGradInvariants checks every plan over random shapes, SM counts
// and workspaces: the slices cover K exactly with none empty, whole stages
// and at least MinSliceK rows, and the plan fits both the workspace it was
// given and WeightGradScratch's bound.
func TestWeightGradInvariants(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	dims := []int{1, 3, 8, 37, 64, 96, 100, 111, 128, 129, 512, 768, 1003, 2048, 3072, 4099, 8192, 50257}
	for range 20000 {
		n, c, oc := dims[r.IntN(len(dims))], dims[r.IntN(len(dims))], dims[r.IntN(len(dims))]
		sms := []int{1, 8, 46, 80, 108, 114, 132, 148, 170}[r.IntN(9)]
		floats, counters := math.MaxInt, math.MaxInt
		switch r.IntN(3) {
		case 0:
			floats, counters = 0, 0
		case 1:
			floats, counters = r.IntN(1<<22), r.IntN(300)
		}
		p := WeightGrad(n, c, oc, sms, floats, counters)
		if p.Tiles != p.Tile.Blocks(oc, c) {
			t.Fatalf("n %d c %d oc %d: tiles %d, want %d", n, c, oc, p.Tiles, p.Tile.Blocks(oc, c))
		}
		if p.Slices == 1 {
			if p.SliceK != n || p.PartialFloats() != 0 || p.Counters() != 0 {
				t.Fatalf("n %d c %d oc %d: unsplit plan %v", n, c, oc, p)
			}
			continue
		}
		if p.Slices > MaxSlices || p.SliceK%BK != 0 || p.SliceK < MinSliceK ||
			(p.Slices-1)*p.SliceK >= n || p.Slices*p.SliceK < n {
			t.Fatalf("n %d c %d oc %d sms %d: plan %v", n, c, oc, sms, p)
		}
		if p.PartialFloats() > min(floats, MaxPartialFloats) || p.Counters() > counters {
			t.Fatalf("n %d c %d oc %d: plan %v needs %d floats %d counters, has %d %d",
				n, c, oc, p, p.PartialFloats(), p.Counters(), floats, counters)
		}
		if p.PartialFloats() != p.Slices*p.Tiles*p.Tile.BM*p.Tile.BN {
			t.Fatalf("plan %v: %d partial floats", p, p.PartialFloats())
		}
		if bf, bc := WeightGradScratch(n, c, oc); p.PartialFloats() > bf || p.Counters() > bc {
			t.Fatalf("n %d c %d oc %d sms %d: plan %v needs %d floats %d counters, over the bound %d %d",
				n, c, oc, sms, p, p.PartialFloats(), p.Counters(), bf, bc)
		}
	}
}

// TestSplitOfTileIndependent: for a given slice count the slice boundaries
// do not depend on the tile, which is what makes every tile give the same
// bits at a fixed S (kernels' TestMatmulSplitTiles).
func TestSplitOfTileIndependent(t *testing.T) {
	for _, k := range []int{1, 7, 8, 9, 64, 111, 512, 1000, 4099} {
		for s := 1; s <= 20; s++ {
			first := SplitOf(Tiles[0], 100, 100, k, s)
			for _, tl := range Tiles[1:] {
				p := SplitOf(tl, 100, 100, k, s)
				if p.Slices != first.Slices || p.SliceK != first.SliceK {
					t.Fatalf("k %d s %d: %v vs %v", k, s, p, first)
				}
			}
			if first.Slices > max(s, 1) || (first.Slices > 1 && ((first.Slices-1)*first.SliceK >= k || first.Slices*first.SliceK < k)) {
				t.Fatalf("k %d s %d: %v", k, s, first)
			}
		}
	}
}

// TestLargestChoice: --flaw=low-occupancy's plans are the largest tile and
// no split for every shape, so a small product gets fewer blocks than the
// SMs where the cost model's fill them; the Fastest choice is Pick's and
// WeightGrad's.
func TestLargestChoice(t *testing.T) {
	for _, sh := range [][3]int{{512, 384, 128}, {512, 128, 128}, {512, 512, 128}, {4096, 768, 768}, {1, 1, 1}, {8192, 50257, 768}} {
		m, n, k := sh[0], sh[1], sh[2]
		for _, sms := range []int{1, 80, 132} {
			if got := PickWith(m, n, k, sms, Fastest); got != Pick(m, n, k, sms) {
				t.Errorf("%v sms %d: Fastest picks %v, Pick %v", sh, sms, got, Pick(m, n, k, sms))
			}
			if got := PickWith(m, n, k, sms, Largest); got != Tiles[0] {
				t.Errorf("%v sms %d: Largest picks %v", sh, sms, got)
			}
			f, c := WeightGradScratch(k, n, m)
			if got, want := WeightGradWith(k, n, m, sms, f, c, Fastest), WeightGrad(k, n, m, sms, f, c); got != want {
				t.Errorf("%v sms %d: Fastest plans %v, WeightGrad %v", sh, sms, got, want)
			}
			p := WeightGradWith(k, n, m, sms, f, c, Largest)
			if p.Tile != Tiles[0] || p.Slices != 1 || p.SliceK != k || p.PartialFloats() != 0 || p.Tiles != Tiles[0].Blocks(m, n) {
				t.Errorf("%v sms %d: Largest plans %v", sh, sms, p)
			}
		}
	}
	// The tiny model's qkv (512 rows, 384 outputs): 12 blocks of 256
	// threads on 132 SMs, where the cost model's tile gives at least 48.
	if l, f := Tiles[0].Blocks(512, 384), Pick(512, 384, 128, 132).Blocks(512, 384); l != 12 || f < 48 {
		t.Errorf("tiny qkv: %d blocks largest, %d fastest", l, f)
	}
	// The tiny model's fc weight gradient (dw 512×128 over 512 rows) is
	// split by the cost model, not by Largest.
	if fl, c := WeightGradScratch(512, 128, 512); WeightGrad(512, 128, 512, 132, fl, c).Slices == 1 {
		t.Errorf("tiny fc's weight gradient is not split by the cost model")
	}
}
