package nsyscheck

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/plan"
	"github.com/gpubench/gpubench/internal/program"
)

// A data-parallel run (--gpus) all-reduces its gradients inside ranges
// "allreduce rank{r} bucket{b}" of the backward (program.AllReduceName).
// NCCL does its part there: it opens NVTX ranges of its own around its
// calls (ncclGroupStart, ncclAllReduce, ncclGroupEnd, in NCCL 2.28) and
// launches its kernels (ncclDevKernel_* for a collective over several
// ranks, oneRankReduce for a world of one). Neither is in the plan, whose
// operations are gpubench's calls; the check accepts them there, and only
// there, and requires of each bucket at least one NCCL kernel and no more
// than its ncclAllReduce calls.

// isAllReduceRange reports whether a planned range is a bucket's
// all-reduce.
func isAllReduceRange(name string) bool { return strings.HasPrefix(name, program.AllReduce+" rank") }

// isNCCLRange reports whether an NVTX range is one NCCL opens itself.
func isNCCLRange(name string) bool { return strings.HasPrefix(name, "nccl") }

// IsNCCLKernel reports whether a kernel is NCCL's.
func IsNCCLKernel(name string) bool {
	return strings.HasPrefix(name, "ncclDevKernel") || strings.HasPrefix(name, "ncclKernel") || name == "oneRankReduce"
}

// RankOf is the rank in the name of an all-reduce range, or -1.
func RankOf(rangeName string) int {
	rest, ok := strings.CutPrefix(rangeName, program.AllReduce+" rank")
	if !ok {
		return -1
	}
	num, _, _ := strings.Cut(rest, " ")
	r, err := strconv.Atoi(num)
	if err != nil {
		return -1
	}
	return r
}

// takeNCCL moves an all-reduce node's NCCL kernels out of its launches
// (which are then compared with the plan as any range's) and checks their
// number.
func (c *checker) takeNCCL(n *node) {
	if !isAllReduceRange(n.plan.Name) {
		return
	}
	var rest []Launch
	for _, l := range n.launches {
		if l.Op.Kind == plan.Kernel && IsNCCLKernel(l.Op.Name) {
			n.nccl = append(n.nccl, l)
		} else {
			rest = append(rest, l)
		}
	}
	n.launches = rest
	calls := 0
	for _, l := range n.plan.Ops {
		if l.Name == program.NCCLAllReduce {
			calls++
		}
	}
	if len(n.nccl) == 0 || len(n.nccl) > calls {
		c.fail("%s: %s of NCCL launched, want 1 to %d (one a group at least, one an %s call at most)",
			n.path, plural(len(n.nccl), "kernel"), calls, program.NCCLAllReduce)
	}
}

// AllReduceStats measures a data-parallel capture's all-reduces.
type AllReduceStats struct {
	// Kernels and Time are NCCL's kernels inside the all-reduce ranges and
	// their GPU time, all iterations together.
	Kernels int
	Time    time.Duration
	// Hidden is the part of Time during which another kernel of the
	// process ran (the backward's): the all-reduce that overlap hides.
	Hidden time.Duration
	// Steps is the iterations' GPU time, from each one's first operation
	// to its last; Visible = Time − Hidden, and VisibleShare = Visible /
	// Steps, the "all-reduce visible outside the backward".
	Steps time.Duration
}

// HiddenShare is the share of the all-reduce's time hidden behind other
// kernels.
func (s AllReduceStats) HiddenShare() float64 {
	if s.Time == 0 {
		return 0
	}
	return float64(s.Hidden) / float64(s.Time)
}

// VisibleShare is the all-reduce time not hidden, as a share of the steps.
func (s AllReduceStats) VisibleShare() float64 {
	if s.Steps == 0 {
		return 0
	}
	return float64(s.Time-s.Hidden) / float64(s.Steps)
}

// allReduceStats measures the all-reduce of every iteration: nil when the
// capture has no all-reduce range.
func (c *checker) allReduceStats() *AllReduceStats {
	var s AllReduceStats
	found := false
	for _, it := range c.iters {
		var nccl, others []GPUOp
		var walk func(n *node)
		walk = func(n *node) {
			if isAllReduceRange(n.plan.Name) {
				found = true
			}
			for _, l := range n.nccl {
				nccl = append(nccl, l.Op)
			}
			for _, l := range n.launches {
				others = append(others, l.Op)
			}
			for _, ch := range n.children {
				walk(ch)
			}
		}
		walk(it)
		all := append(append([]GPUOp(nil), nccl...), others...)
		if len(all) == 0 {
			continue
		}
		first, last := all[0].Start, all[0].End
		for _, op := range all {
			first, last = min(first, op.Start), max(last, op.End)
		}
		s.Steps += time.Duration(last - first)
		busy := union(others)
		for _, op := range nccl {
			s.Kernels++
			s.Time += time.Duration(op.Duration())
			s.Hidden += time.Duration(overlap(op.Start, op.End, busy))
		}
	}
	if !found {
		return nil
	}
	return &s
}

type span struct{ start, end int64 }

// union is the time covered by ops, as disjoint spans in order.
func union(ops []GPUOp) []span {
	ss := make([]span, 0, len(ops))
	for _, op := range ops {
		ss = append(ss, span{op.Start, op.End})
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].start < ss[j].start })
	var out []span
	for _, s := range ss {
		if n := len(out); n > 0 && s.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, s.end)
			continue
		}
		out = append(out, s)
	}
	return out
}

// overlap is how much of [start, end] the disjoint spans cover.
func overlap(start, end int64, busy []span) int64 {
	var n int64
	for _, b := range busy {
		if lo, hi := max(start, b.start), min(end, b.end); hi > lo {
			n += hi - lo
		}
	}
	return n
}

func (s *AllReduceStats) String() string {
	return fmt.Sprintf("%s of NCCL, %s of GPU time: %.1f%% hidden behind the process's other kernels; %s visible, %.2f%% of the steps' GPU time (%s)",
		plural(s.Kernels, "kernel"), dur(s.Time), 100*s.HiddenShare(), dur(s.Time-s.Hidden), 100*s.VisibleShare(), dur(s.Steps))
}

// OfProcess is the part of t that process pid recorded: its threads'
// ranges, calls and launches, and the GPU operations it owns.
func (t *Trace) OfProcess(pid int64) *Trace {
	out := *t
	out.Ranges, out.Launches, out.Unlaunched, out.Calls = nil, nil, nil, nil
	for _, r := range t.Ranges {
		if PID(r.Thread) == pid {
			out.Ranges = append(out.Ranges, r)
		}
	}
	for _, l := range t.Launches {
		if PID(l.Thread) == pid {
			out.Launches = append(out.Launches, l)
		}
	}
	for _, op := range t.Unlaunched {
		if op.GlobalPid == 0 || PID(op.GlobalPid) == pid {
			out.Unlaunched = append(out.Unlaunched, op)
		}
	}
	for _, a := range t.Calls {
		if PID(a.Thread) == pid {
			out.Calls = append(out.Calls, a)
		}
	}
	return &out
}

// RankReport is one process of a data-parallel capture, checked against
// the plan of the rank its all-reduce ranges name.
type RankReport struct {
	Rank int
	PID  int64
	*Report
}

// CheckRanks checks a capture of a data-parallel run (gpubench --gpus=N
// under nsys -s process-tree, one process per rank): each process that
// opened iteration ranges against plans[r], r being the rank in its
// all-reduce ranges' names, and that every rank is there exactly once.
// The parent process, which opens no range, is not checked.
func CheckRanks(path string, plans []plan.Plan, r config.Run) ([]RankReport, error) {
	t, err := Load(path)
	if err != nil {
		return nil, err
	}
	ws := []config.Window{{First: 0, Last: r.Iters - 1}}
	if r.ProfileIters != nil || r.ProfileWindows > 0 {
		ws = r.Windows()
	}
	return checkRanks(t, plans, ws, Options{SyncLaunches: r.SyncLaunches})
}

func checkRanks(t *Trace, plans []plan.Plan, ws []config.Window, opts Options) ([]RankReport, error) {
	var pids []int64
	seen := map[int64]bool{}
	for _, rg := range t.Ranges {
		if _, ok := plan.ParseIterationName(rg.Name); ok && !seen[PID(rg.Thread)] {
			seen[PID(rg.Thread)] = true
			pids = append(pids, PID(rg.Thread))
		}
	}
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	var out []RankReport
	var problems []string
	byRank := map[int]int64{}
	for _, pid := range pids {
		sub := t.OfProcess(pid)
		rank := -1
		for _, rg := range sub.Ranges {
			if rank = RankOf(rg.Name); rank >= 0 {
				break
			}
		}
		switch {
		case rank < 0:
			problems = append(problems, fmt.Sprintf("pid %d: no %q range names its rank (was it run with --gpus?)", pid, program.AllReduceName(0, 0)))
			continue
		case rank >= len(plans):
			problems = append(problems, fmt.Sprintf("pid %d: rank %d, the run has ranks 0..%d", pid, rank, len(plans)-1))
			continue
		}
		if other, dup := byRank[rank]; dup {
			problems = append(problems, fmt.Sprintf("pids %d and %d both say they are rank %d", other, pid, rank))
			continue
		}
		byRank[rank] = pid
		rep, err := checkTrace(sub, plans[rank], ws, opts)
		if err != nil {
			problems = append(problems, fmt.Sprintf("rank %d (pid %d): %s", rank, pid, plural(len(rep.Failures), "problem")))
		}
		out = append(out, RankReport{Rank: rank, PID: pid, Report: rep})
	}
	for r := range plans {
		if _, ok := byRank[r]; !ok {
			problems = append(problems, fmt.Sprintf("rank %d: no process of the capture is rank %d", r, r))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rank < out[j].Rank })
	if len(problems) > 0 {
		return out, &MismatchError{Path: t.Path, Failures: problems}
	}
	return out, nil
}
