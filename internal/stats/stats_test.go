package stats

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want Summary
	}{
		{"n=1", []float64{3.5}, Summary{N: 1, Median: 3.5, Mean: 3.5, Min: 3.5, Max: 3.5, P90: 3.5, Std: 0}},
		// numpy: percentile([1,2],90) = 1.9; std(ddof=1) = 0.7071...
		{"n=2", []float64{2, 1}, Summary{N: 2, Median: 1.5, Mean: 1.5, Min: 1, Max: 2, P90: 1.9, Std: math.Sqrt(0.5)}},
		// odd n, unsorted: sorted 1..5; p90 rank 3.6 → 4.6; var = 10/4.
		{"odd unsorted", []float64{5, 1, 4, 2, 3}, Summary{N: 5, Median: 3, Mean: 3, Min: 1, Max: 5, P90: 4.6, Std: math.Sqrt(2.5)}},
		// even n: median is the mean of the middle pair; p90 rank 0.9*5=4.5 → 5+0.5*(100-5)=52.5.
		{"even with outlier", []float64{100, 1, 2, 3, 4, 5}, Summary{N: 6, Median: 3.5, Mean: 115.0 / 6, Min: 1, Max: 100, P90: 52.5,
			Std: math.Sqrt((sq(100-115.0/6) + sq(1-115.0/6) + sq(2-115.0/6) + sq(3-115.0/6) + sq(4-115.0/6) + sq(5-115.0/6)) / 5)}},
		{"constant", []float64{7, 7, 7, 7}, Summary{N: 4, Median: 7, Mean: 7, Min: 7, Max: 7, P90: 7, Std: 0}},
		{"negative", []float64{-1, -3, -2}, Summary{N: 3, Median: -2, Mean: -2, Min: -3, Max: -1, P90: -1.2, Std: 1}},
		// 10 values 1..10: p90 rank 8.1 → 9.1 (numpy).
		{"ten", []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, Summary{N: 10, Median: 5.5, Mean: 5.5, Min: 1, Max: 10, P90: 9.1, Std: math.Sqrt(82.5 / 9)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			got, err := Summarize(in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(in, tc.in) {
				t.Errorf("input mutated: %v, was %v", in, tc.in)
			}
			if got.N != tc.want.N || !near(got.Median, tc.want.Median) || !near(got.Mean, tc.want.Mean) ||
				!near(got.Min, tc.want.Min) || !near(got.Max, tc.want.Max) || !near(got.P90, tc.want.P90) ||
				!near(got.Std, tc.want.Std) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func sq(x float64) float64 { return x * x }

func TestSummarizeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want error
	}{
		{"nil", nil, ErrEmpty},
		{"empty", []float64{}, ErrEmpty},
		{"NaN", []float64{1, math.NaN(), 2}, ErrNotFinite},
		{"+Inf", []float64{math.Inf(1)}, ErrNotFinite},
		{"-Inf", []float64{1, math.Inf(-1)}, ErrNotFinite},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Summarize(tc.in); !errors.Is(err, tc.want) {
				t.Errorf("Summarize(%v) error = %v, want %v", tc.in, err, tc.want)
			}
			if _, err := Percentile(tc.in, 50); !errors.Is(err, tc.want) {
				t.Errorf("Percentile(%v) error = %v, want %v", tc.in, err, tc.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{15, 20, 35, 40, 50}
	tests := []struct {
		p, want float64
	}{
		{0, 15}, {100, 50}, {50, 35}, {25, 20}, {40, 29}, {90, 46}, {99, 49.6},
	}
	for _, tc := range tests {
		got, err := Percentile(xs, tc.p)
		if err != nil {
			t.Fatal(err)
		}
		if !near(got, tc.want) {
			t.Errorf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	for _, p := range []float64{-1, 100.5, math.NaN()} {
		if _, err := Percentile(xs, p); err == nil {
			t.Errorf("Percentile(p=%v) gave no error", p)
		}
	}
}
