package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Window is a span of measured iterations, First..Last inclusive, inside
// one cuProfilerStart/cuProfilerStop pair (and one NVTX range called
// ProfileRange, for nsys -c nvtx -p profile).
type Window struct{ First, Last int }

// Len is the number of iterations in w.
func (w Window) Len() int { return w.Last - w.First + 1 }

func (w Window) String() string {
	if w.First == w.Last {
		return strconv.Itoa(w.First)
	}
	return fmt.Sprintf("%d-%d", w.First, w.Last)
}

// ProfileRange is the NVTX range around each profiler window.
const ProfileRange = "profile"

// Windows are the profiler windows of the run, in order: none without
// --profile; one over every measured iteration with --profile alone; the
// iterations of --profile-iters; or --profile-windows' N consecutive spans,
// as even as the iteration count allows (the first ones one longer).
func (r Run) Windows() []Window {
	switch {
	case r.ProfileIters != nil:
		return []Window{*r.ProfileIters}
	case r.ProfileWindows > 0:
		return SplitWindows(r.Iters, r.ProfileWindows)
	case r.Profile:
		return []Window{{0, r.Iters - 1}}
	}
	return nil
}

// SplitWindows splits iterations 0..iters-1 into n consecutive windows.
func SplitWindows(iters, n int) []Window {
	ws := make([]Window, 0, n)
	first := 0
	for k := 0; k < n; k++ {
		size := iters / n
		if k < iters%n {
			size++
		}
		ws = append(ws, Window{first, first + size - 1})
		first += size
	}
	return ws
}

// parseWindow reads --profile-iters: "A-B" or "A", 0 ≤ A ≤ B < iters.
func parseWindow(s string, iters int) (Window, error) {
	bad := func(why string) (Window, error) {
		return Window{}, fmt.Errorf("--profile-iters: %q %s (allowed: A-B or A with 0 ≤ A ≤ B < --iters = %d)", s, why, iters)
	}
	a, b, ranged := strings.Cut(s, "-")
	first, err := strconv.Atoi(a)
	if err != nil {
		return bad("is not a number or a range")
	}
	last := first
	if ranged {
		if last, err = strconv.Atoi(b); err != nil {
			return bad("is not a range")
		}
	}
	switch {
	case first < 0:
		return bad("starts below 0")
	case last < first:
		return bad("ends before it starts")
	case last >= iters:
		return bad("reaches past the last measured iteration")
	}
	return Window{first, last}, nil
}
