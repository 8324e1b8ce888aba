package ref

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Gradient checks compare an analytic gradient g with a finite-difference
// estimate g_fd of the same float64 function, using the relative error
//
//	rel(g_fd, g) = |g_fd - g| / max(|g_fd| + |g|, 1e-6)
//
// and require rel <= 1e-6. The 1e-6 floor only matters for gradients that are
// zero or nearly so: below it the check becomes the absolute one
// |g_fd - g| <= 1e-12, which is what finite differences can resolve there.
//
// g_fd is the sixth-order central difference with step h = 2^-6:
//
//	g_fd = (45 (f(x+h) - f(x-h)) - 9 (f(x+2h) - f(x-2h)) + (f(x+3h) - f(x-3h))) / (60 h)
//
// Its truncation error is h^6 |f^(7)| / 140 ≈ 1e-13 |f^(7)| and its rounding
// error about 1.8 ε |f| / h ≈ 3e-14 |f| (ε = 2^-52), so its absolute error
// is ~1e-13 for the O(1) functions below, and relative errors stay well
// under 1e-6 for every gradient larger than ~1e-7. (A plain two-point central
// difference with h ≈ 1e-5 has an absolute error of ~1e-10 and would fail
// the tolerance for gradients below ~1e-4, which the model has plenty of.)
// Differences are taken pairwise first, so a parameter the function does not
// depend on gets g_fd = 0 exactly.
const (
	gradTol  = 1e-6
	relFloor = 1e-6
	fdStep   = 1.0 / 64
)

func relErr(fd, an float64) float64 { return relErrFloor(fd, an, relFloor) }

func relErrFloor(fd, an, floor float64) float64 {
	return math.Abs(fd-an) / math.Max(math.Abs(fd)+math.Abs(an), floor)
}

// fdOpts are the finite-difference step and the relative-error floor.
type fdOpts struct{ h, floor float64 }

// defaultFD is the setting described above.
var defaultFD = fdOpts{h: fdStep, floor: relFloor}

// fdGrad returns the sixth-order central-difference derivative of f with
// respect to *x, restoring *x afterwards.
func fdGrad(f func() float64, x *float64, h float64) float64 {
	x0 := *x
	eval := func(k float64) float64 {
		*x = x0 + k*h
		return f()
	}
	d := 45*(eval(1)-eval(-1)) - 9*(eval(2)-eval(-2)) + (eval(3) - eval(-3))
	*x = x0
	return d / (60 * h)
}

// gradResult is the check of one element.
type gradResult struct {
	Tensor  string
	Index   int
	FD, An  float64
	RelErr  float64
	Checked bool
}

func (r gradResult) String() string {
	return fmt.Sprintf("%s[%d]: fd %.12g analytic %.12g rel err %.3g", r.Tensor, r.Index, r.FD, r.An, r.RelErr)
}

// checkElems compares an[i] with the finite difference of f with respect to
// x[i] for each i in idx, and returns all results.
func checkElems(name string, f func() float64, x, an []float64, idx []int, o fdOpts) []gradResult {
	out := make([]gradResult, 0, len(idx))
	for _, i := range idx {
		fd := fdGrad(f, &x[i], o.h)
		out = append(out, gradResult{Tensor: name, Index: i, FD: fd, An: an[i], RelErr: relErrFloor(fd, an[i], o.floor), Checked: true})
	}
	return out
}

// worst returns the result with the largest relative error.
func worst(rs []gradResult) gradResult {
	var w gradResult
	for _, r := range rs {
		if !w.Checked || r.RelErr > w.RelErr || math.IsNaN(r.RelErr) {
			w = r
		}
	}
	return w
}

// failures returns the results over the tolerance (NaN counts as failing).
func failures(rs []gradResult) []gradResult {
	var bad []gradResult
	for _, r := range rs {
		if !(r.RelErr <= gradTol) {
			bad = append(bad, r)
		}
	}
	return bad
}

// allIndices is 0..n-1.
func allIndices(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// sampleIndices returns k distinct indices in [lo, hi), or all of them if
// there are no more than k.
func sampleIndices(rng *rand.Rand, lo, hi, k int) []int {
	if hi-lo <= k {
		idx := allIndices(hi - lo)
		for i := range idx {
			idx[i] += lo
		}
		return idx
	}
	perm := rng.Perm(hi - lo)[:k]
	for i := range perm {
		perm[i] += lo
	}
	return perm
}

func randVec(rng *rand.Rand, n int, std, mean float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = mean + std*rng.NormFloat64()
	}
	return v
}

func nanVec(n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = math.NaN()
	}
	return v
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}
