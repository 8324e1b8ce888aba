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
		{8192, 768, 2304, "128x128×108 S=2/4096"},   // gpt2-124m qkv
		{8192, 768, 768, "128x128×36 S=7/1184"},     // attproj
		{8192, 768, 3072, "128x128×144 S=3/2752"},   // fc
		{8192, 3072, 768, "128x128×144 S=3/2752"},   // fcproj
		{8192, 768, 50257, "128x128×2358 S=1/8192"}, // lm head
		{2048, 512, 512, "128x128×16 S=6/352"},      // small attproj
		{512, 128, 384, "128x128×3 S=2/256"},        // tiny qkv
		{37, 100, 1003, "128x128×8 S=1/37"},
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
	if f, k := MMAWeightGradScratch(255, 768, 768); f != 0 || k != 0 {
		t.Errorf("a 255-row reduction gets scratch %d/%d, want none", f, k)
	}
}
