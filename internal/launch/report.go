package launch

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gpubench/gpubench/internal/stats"
)

// RankStats is one rank's step times.
type RankStats struct {
	Rank, Device int
	Step         stats.Summary // ms
	LastLoss     float64
	Partial      bool
	AllReduce    string
}

// Summary is a data-parallel run's report: each rank's step times, the
// slowest rank (a data-parallel step is as slow as its slowest rank: every
// rank waits for it in the all-reduce) and, against a single-GPU run of
// the same per-GPU batch, the scaling efficiency.
type Summary struct {
	Ranks   []RankStats
	Slowest int // index into Ranks
	// Baseline is the single-GPU run's median step (ms), 0 when none was
	// asked for; Efficiency is Baseline over the slowest rank's median:
	// with --batch-size per GPU the ideal step time does not change with
	// the number of GPUs, so 1 is perfect scaling.
	Baseline, Efficiency float64
}

// Summarize reads the ranks' results. A rank that completed no iteration
// is an error: there is nothing to summarise for it.
func Summarize(rs []Result, baseline *Result) (Summary, error) {
	var s Summary
	for _, r := range rs {
		st, err := stats.Summarize(r.StepMs)
		if err != nil {
			return s, fmt.Errorf("rank %d: step times: %w", r.Rank, err)
		}
		rk := RankStats{Rank: r.Rank, Device: r.Device, Step: st, Partial: r.Partial, AllReduce: r.AllReduce}
		if n := len(r.Losses); n > 0 {
			rk.LastLoss = r.Losses[n-1]
		}
		s.Ranks = append(s.Ranks, rk)
		if st.Median > s.Ranks[s.Slowest].Step.Median {
			s.Slowest = len(s.Ranks) - 1
		}
	}
	if len(s.Ranks) == 0 {
		return s, fmt.Errorf("no rank reported a step")
	}
	if baseline != nil {
		b, err := stats.Summarize(baseline.StepMs)
		if err != nil {
			return s, fmt.Errorf("the --gpus=1 baseline: step times: %w", err)
		}
		s.Baseline = b.Median
		s.Efficiency = b.Median / s.Ranks[s.Slowest].Step.Median
	}
	return s, nil
}

// Write prints the summary as a table.
func (s Summary) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "\ndata-parallel over %d GPUs (step: CUDA events on each rank's compute stream, ms)\n", len(s.Ranks))
	fmt.Fprintf(&b, "%-5s %-6s %6s %10s %10s %10s %10s  %s\n", "rank", "device", "iters", "median", "mean", "min", "max", "last loss")
	for _, r := range s.Ranks {
		note := ""
		if r.Partial {
			note = " (partial)"
		}
		if r.AllReduce == "none" {
			note += " (no NCCL: the plain step)"
		}
		// The loss as the float32 it is, every digit that tells it apart.
		loss := strconv.FormatFloat(float64(float32(r.LastLoss)), 'g', -1, 32)
		fmt.Fprintf(&b, "%-5d %-6d %6d %10.3f %10.3f %10.3f %10.3f  %s%s\n", r.Rank, r.Device, r.Step.N, r.Step.Median, r.Step.Mean, r.Step.Min, r.Step.Max, loss, note)
	}
	sl := s.Ranks[s.Slowest]
	fmt.Fprintf(&b, "slowest rank: %d (median step %.3f ms)\n", sl.Rank, sl.Step.Median)
	if s.Baseline > 0 {
		fmt.Fprintf(&b, "scaling efficiency vs --gpus=1: %.1f%% (median step %.3f ms on one GPU, %.3f ms on the slowest of %d)\n",
			100*s.Efficiency, s.Baseline, sl.Step.Median, len(s.Ranks))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// VisibleGPUs counts the GPUs a child could open without touching the
// driver: the NVIDIA driver's /proc entries, narrowed by
// CUDA_VISIBLE_DEVICES when set. ok is false when it cannot tell (no
// NVIDIA driver's /proc here): the children will then find out.
func VisibleGPUs() (n int, ok bool) {
	entries, err := os.ReadDir(filepath.Join(procGPUs))
	if err != nil {
		return 0, false
	}
	n = len(entries)
	if v, set := os.LookupEnv("CUDA_VISIBLE_DEVICES"); set {
		n = min(n, visibleListLen(v))
	}
	return n, true
}

var procGPUs = "/proc/driver/nvidia/gpus"

// visibleListLen is how many devices CUDA_VISIBLE_DEVICES names: its
// comma-separated entries up to the first empty one (CUDA ignores the
// rest after an invalid entry; an empty value hides every GPU).
func visibleListLen(v string) int {
	n := 0
	for _, e := range strings.Split(v, ",") {
		if strings.TrimSpace(e) == "" {
			break
		}
		n++
	}
	return n
}
