package gemmplan

import "testing"

// TestMMAWeightGradPlans pins the tensor-core weight gradient's plans on a
// 132-SM GPU (H100/H200) for the presets' products, in the workspace
// MMAWeightGradScratch sizes.
func TestMMAWeightGradPlans(t *testing.T) {
	for _, tc := range []struct {
		n, c, oc int
		want     string
	}{
		{8192, 768, 2304, "128x256×54 S=2/4096"},    // gpt2-124m qkv
		{8192, 768, 768, "128x192×24 S=5/1664"},     // attproj
		{8192, 768, 3072, "128x256×72 S=3/2752"},    // fc
		{8192, 3072, 768, "128x256×72 S=3/2752"},    // fcproj
		{8192, 768, 50257, "128x256×1179 S=1/8192"}, // lm head
		{2048, 512, 512, "128x192×12 S=8/256"},      // small attproj
		{512, 128, 384, "128x192×3 S=2/256"},        // tiny qkv
		{37, 100, 1003, "128x192×8 S=1/37"},
	} {
		f, k := MMAWeightGradScratch(tc.n, tc.c, tc.oc)
		p := MMAWeightGrad(tc.n, tc.c, tc.oc, 132, f, k)
		if got := p.String(); got != tc.want {
			t.Errorf("MMAWeightGrad(%d, %d, %d) = %s, want %s", tc.n, tc.c, tc.oc, got, tc.want)
		}
		if p.PartialFloats() > f || p.Counters() > k {
			t.Errorf("MMAWeightGrad(%d, %d, %d) = %s needs %d floats and %d counters, the bound is %d and %d",
				tc.n, tc.c, tc.oc, p, p.PartialFloats(), p.Counters(), f, k)
		}
	}
}

// TestMMAScratchBounds: on any SM count the plan fits the bound, slices
// are whole multiples of MMASliceAlign and cover the rows exactly, and no
// workspace means no split.
func TestMMAScratchBounds(t *testing.T) {
	for _, sh := range [][3]int{{8192, 768, 768}, {8192, 768, 2304}, {2048, 512, 8192}, {512, 128, 128}, {4099, 64, 96}, {100000, 64, 64}} {
		n, c, oc := sh[0], sh[1], sh[2]
		f, k := MMAWeightGradScratch(n, c, oc)
		for _, sms := range []int{1, 8, 46, 84, 108, 132, 144, 1000} {
			p := MMAWeightGrad(n, c, oc, sms, f, k)
			if p.PartialFloats() > f || p.Counters() > k {
				t.Errorf("%v on %d SMs: %s outgrows the bound %d/%d", sh, sms, p, f, k)
			}
			if p.Slices > 1 && (p.SliceK%MMASliceAlign != 0 || (p.Slices-1)*p.SliceK >= n || p.Slices*p.SliceK < n) {
				t.Errorf("%v on %d SMs: %s does not tile %d rows", sh, sms, p, n)
			}
			if q := MMAWeightGrad(n, c, oc, sms, 0, 0); q.Slices != 1 {
				t.Errorf("%v on %d SMs without a workspace: %s", sh, sms, q)
			}
		}
	}
	// The tile widths the forward and input gradient get on 132 SMs for
	// gpt2-124m (n = 8192), as measured fastest on the H200: narrow where
	// wide tiles would leave the last wave part empty (768 columns: 192
	// wide tiles, 1.45 waves; 2304: 4.4 waves), wide at 3072 (5.8 waves).
	for _, tc := range []struct{ m, n, k, want int }{
		{8192, 2304, 768, MMABlockNNarrow}, {8192, 3072, 768, MMABlockNWide}, {8192, 768, 768, MMABlockNNarrow},
		{8192, 768, 3072, MMABlockNNarrow}, {8192, 8192, 8192, MMABlockNWide},
	} {
		if got := MMAPick(tc.m, tc.n, tc.k, 132); got != tc.want {
			t.Errorf("MMAPick(%d, %d, %d, 132) = %d, want %d", tc.m, tc.n, tc.k, got, tc.want)
		}
	}
	if f, k := MMAWeightGradScratch(255, 768, 768); f != 0 || k != 0 {
		t.Errorf("a 255-row reduction gets scratch %d/%d, want none", f, k)
	}
}

// TestMMAStagesFor: an H200 (227 KB a block) gets 4 stages, an A100
// (163 KB) 3, a GPU of 99 KB none; unknown means the H200's.
func TestMMAStagesFor(t *testing.T) {
	cases := []struct{ optIn, want int }{{0, 4}, {227 << 10, 4}, {216 << 10, 4}, {163 << 10, 3}, {99 << 10, 0}}
	for _, c := range cases {
		if got := MMAStagesFor(c.optIn); got != c.want {
			t.Errorf("MMAStagesFor(%d) = %d, want %d", c.optIn, got, c.want)
		}
		if s := MMAStagesFor(c.optIn); s > 0 && c.optIn > 0 && MMASharedBytesAt(MMABlockNWide, s) > c.optIn {
			t.Errorf("%d stages need %d B, more than %d", s, MMASharedBytesAt(MMABlockNWide, s), c.optIn)
		}
	}
	if MMASharedBytes(MMABlockNWide) != MMASharedBytesAt(MMABlockNWide, MMAStages) {
		t.Error("MMASharedBytes is not MMASharedBytesAt at MMAStages")
	}
}
