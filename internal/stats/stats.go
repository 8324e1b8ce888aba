// Package stats computes summary statistics of a timing sample.
//
// Definitions (all on the sample as given, no outlier removal):
//
//   - Median is the 50th percentile and P90 the 90th, both by linear
//     interpolation between closest ranks, which is numpy.percentile's default
//     ("linear") method: sort the n values ascending as x[0..n-1], take the
//     fractional rank h = (n-1)·p/100, and return
//     x[⌊h⌋] + (h-⌊h⌋)·(x[⌊h⌋+1]-x[⌊h⌋]). For n=1 every percentile is the value;
//     for even n the median is the mean of the two middle values.
//   - Std is the sample standard deviation with Bessel's correction (divide
//     by n-1); it is 0 for n=1.
//   - An empty sample, or one holding NaN or ±Inf, is an error: a timing
//     sample never legitimately holds those, so they mean a bug upstream.
//
// The input slice is never modified.
package stats

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrEmpty is returned for a sample with no values.
var ErrEmpty = errors.New("stats: empty sample")

// ErrNotFinite is returned (wrapped) for a sample holding NaN or ±Inf.
var ErrNotFinite = errors.New("stats: sample holds a value that is not finite")

// Summary describes a sample. The JSON names are part of gpubench's output
// format.
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Mean   float64 `json:"mean"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	P90    float64 `json:"p90"`
	Std    float64 `json:"std"`
}

// Summarize returns the summary of xs. It returns ErrEmpty for an empty
// sample and an error wrapping ErrNotFinite if any value is NaN or ±Inf.
func Summarize(xs []float64) (Summary, error) {
	sorted, err := sortedCopy(xs)
	if err != nil {
		return Summary{}, err
	}
	n := len(sorted)
	var sum float64
	for _, x := range sorted {
		sum += x
	}
	mean := sum / float64(n)
	var ss float64
	for _, x := range sorted {
		d := x - mean
		ss += d * d
	}
	std := 0.0
	if n > 1 {
		std = math.Sqrt(ss / float64(n-1))
	}
	return Summary{
		N:      n,
		Median: percentileSorted(sorted, 50),
		Mean:   mean,
		Min:    sorted[0],
		Max:    sorted[n-1],
		P90:    percentileSorted(sorted, 90),
		Std:    std,
	}, nil
}

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of xs by linear
// interpolation between closest ranks (numpy's default). Errors are as for
// Summarize, plus one for p outside [0, 100].
func Percentile(xs []float64, p float64) (float64, error) {
	if !(p >= 0 && p <= 100) {
		return 0, fmt.Errorf("stats: percentile %v is outside [0, 100]", p)
	}
	sorted, err := sortedCopy(xs)
	if err != nil {
		return 0, err
	}
	return percentileSorted(sorted, p), nil
}

func sortedCopy(xs []float64) ([]float64, error) {
	if len(xs) == 0 {
		return nil, ErrEmpty
	}
	for i, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%w: value %v at index %d", ErrNotFinite, x, i)
		}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s, nil
}

// percentileSorted assumes s is sorted, non-empty and finite.
func percentileSorted(s []float64, p float64) float64 {
	h := float64(len(s)-1) * p / 100
	lo := int(math.Floor(h))
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	frac := h - float64(lo)
	return s[lo] + frac*(s[lo+1]-s[lo])
}
