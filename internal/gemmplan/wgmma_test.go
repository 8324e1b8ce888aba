package gemmplan

import "testing"

// TestWGMMAScratchHoldsThePlan: within WGMMAScratch's workspace the Hopper
// tier's plan is the one it would take with unlimited room, on any SM
// count, for GPT-2's and small's products (each of the three of a layer)
// and odd shapes; and the bound is 0 when k is too short to split.
func TestWGMMAScratchHoldsThePlan(t *testing.T) {
	const unlimited = 1 << 30
	var shapes [][3]int
	for _, l := range [][3]int{{8192, 768, 2304}, {8192, 768, 768}, {8192, 768, 3072}, {8192, 3072, 768}, {2048, 512, 1536}, {2048, 2048, 512}, {37, 100, 1003}, {1100, 64, 200}} {
		n, c, oc := l[0], l[1], l[2]
		shapes = append(shapes, [3]int{n, oc, c}, [3]int{n, c, oc}, [3]int{oc, c, n})
	}
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		floats, counters := WGMMAScratch(m, n, k)
		for _, sms := range []int{1, 8, 78, 108, 114, 132, 144} {
			free := WGMMAPlan(m, n, k, sms, unlimited, unlimited)
			if got := WGMMAPlan(m, n, k, sms, floats, counters); got != free {
				t.Errorf("%d×%d over %d on %d SMs: within WGMMAScratch (%d floats, %d counters) the plan is %v, with unlimited room %v",
					m, n, k, sms, floats, counters, got, free)
			}
		}
	}
	if f, c := WGMMAScratch(8192, 768, 2*MMAMinSliceK-1); f != 0 || c != 0 {
		t.Errorf("k too short to split: scratch %d floats, %d counters, want 0", f, c)
	}
}
