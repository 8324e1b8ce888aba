package nsyscheck

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/plan"
	"github.com/gpubench/gpubench/internal/program"
)

// Report is the result of checking one export.
type Report struct {
	Path          string
	SchemaVersion string    // EXPORT_SCHEMA_VERSION of the export, if recorded
	NsysVersion   string    // EXPORT_PRODUCT_VERSION: the nsys that exported it, if recorded
	Plan          plan.Plan // the plan checked against
	Expected      int       // iterations expected; 0 or less: any number
	Iterations    int       // iteration ranges found

	// Ranges holds the measurements of every planned range found, per
	// iteration in order, each range before its children.
	Ranges []RangeStats
	// Launch sums up all launches made inside the iteration ranges.
	Launch LaunchStats
	// AllReduce measures a data-parallel run's all-reduces; nil without.
	AllReduce *AllReduceStats

	// Failures are the mismatches with the plan; empty when the run
	// followed it.
	Failures []string
	// Notes are remarks that are not failures.
	Notes []string

	noGPU bool
}

// RangeStats measures one NVTX range instance, such as iteration2/backward,
// including the ranges nested in it.
type RangeStats struct {
	Path       string // "iteration2/backward"
	Name       string // "backward"
	Depth      int    // 0 for an iteration
	Thread     int64  // globalTid
	Start, End int64  // the NVTX range on the CPU timeline, ns

	Kernels, Memsets, Memcpys int
	// KernelTime, MemsetTime and MemcpyTime sum the GPU durations of the
	// range's kernels, memsets and memcpys.
	KernelTime, MemsetTime, MemcpyTime time.Duration
	// GPUSpan runs from the first GPU operation's start to the last one's
	// end.
	GPUSpan time.Duration
	// IdleTotal and IdleMax are the gaps in which no GPU operation of the
	// range ran, between its first start and its last end.
	IdleTotal, IdleMax time.Duration
	Launch             LaunchStats
}

// CPUSpan is the duration of the NVTX range.
func (s RangeStats) CPUSpan() time.Duration { return time.Duration(s.End - s.Start) }

// LaunchStats measures launch overhead.
type LaunchStats struct {
	Count int
	// APIMean and APIMax are the durations of the launch API calls
	// (cuLaunchKernel, cuMemsetD32Async) on the CPU.
	APIMean, APIMax time.Duration
	// QueueMean and QueueMax are the delays from the start of a launch
	// call to the start of its operation on the GPU.
	QueueMean, QueueMax time.Duration
}

func launchStats(ls []Launch) LaunchStats {
	s := LaunchStats{Count: len(ls)}
	if len(ls) == 0 {
		return s
	}
	var api, queue int64
	for _, l := range ls {
		d, q := l.End-l.Start, l.QueueDelay()
		api += d
		queue += q
		s.APIMax = max(s.APIMax, time.Duration(d))
		s.QueueMax = max(s.QueueMax, time.Duration(q))
	}
	s.APIMean = time.Duration(api / int64(len(ls)))
	s.QueueMean = time.Duration(queue / int64(len(ls)))
	return s
}

// OK reports whether the run followed the plan.
func (r *Report) OK() bool { return len(r.Failures) == 0 }

// Err returns nil when the run followed the plan and a *MismatchError
// otherwise.
func (r *Report) Err() error {
	if r.OK() {
		return nil
	}
	return &MismatchError{Path: r.Path, Failures: append([]string(nil), r.Failures...)}
}

// MismatchError lists how a run departed from its plan.
type MismatchError struct {
	Path     string
	Failures []string
}

func (e *MismatchError) Error() string {
	if len(e.Failures) == 1 {
		return e.Path + ": " + e.Failures[0]
	}
	return fmt.Sprintf("%s: %d problems:\n\t%s", e.Path, len(e.Failures), strings.Join(e.Failures, "\n\t"))
}

// stats fills in the measurements of the report.
func (c *checker) stats() {
	var all []Launch
	var walk func(n *node, depth int) []Launch
	walk = func(n *node, depth int) []Launch {
		at := len(c.rep.Ranges)
		c.rep.Ranges = append(c.rep.Ranges, RangeStats{})
		ls := append(append([]Launch(nil), n.launches...), n.nccl...)
		for _, ch := range n.children {
			ls = append(ls, walk(ch, depth+1)...)
		}
		c.rep.Ranges[at] = rangeStats(n, depth, ls)
		return ls
	}
	for _, it := range c.iters {
		all = append(all, walk(it, 0)...)
	}
	c.rep.Launch = launchStats(all)
	c.rep.AllReduce = c.allReduceStats()
}

func rangeStats(n *node, depth int, ls []Launch) RangeStats {
	s := RangeStats{
		Path: n.path, Name: n.r.Name, Depth: depth, Thread: n.r.Thread,
		Start: n.r.Start, End: n.r.End,
		Launch: launchStats(ls),
	}
	ops := make([]GPUOp, len(ls))
	for i, l := range ls {
		ops[i] = l.Op
		switch l.Op.Kind {
		case plan.Memset:
			s.Memsets++
			s.MemsetTime += time.Duration(l.Op.Duration())
		case program.Memcpy:
			s.Memcpys++
			s.MemcpyTime += time.Duration(l.Op.Duration())
		default:
			s.Kernels++
			s.KernelTime += time.Duration(l.Op.Duration())
		}
	}
	if len(ops) == 0 {
		return s
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].Start < ops[j].Start })
	first, busyUntil := ops[0].Start, ops[0].End
	for _, op := range ops[1:] {
		if gap := op.Start - busyUntil; gap > 0 {
			s.IdleTotal += time.Duration(gap)
			s.IdleMax = max(s.IdleMax, time.Duration(gap))
		}
		busyUntil = max(busyUntil, op.End)
	}
	s.GPUSpan = time.Duration(busyUntil - first)
	return s
}

// WriteText writes a readable summary: the verdict, every failure, and a
// table of the measurements per range.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "gpubench check: %s", r.Path)
	switch {
	case r.NsysVersion != "" && r.SchemaVersion != "":
		fmt.Fprintf(bw, " (nsys %s, export schema %s)", r.NsysVersion, r.SchemaVersion)
	case r.SchemaVersion != "":
		fmt.Fprintf(bw, " (export schema %s)", r.SchemaVersion)
	case r.NsysVersion != "":
		fmt.Fprintf(bw, " (nsys %s)", r.NsysVersion)
	}
	fmt.Fprintln(bw)
	p := r.Plan
	fmt.Fprintf(bw, "plan: mode %s, %s; per iteration %s, %s in %d NVTX ranges\n",
		p.Mode, p.Dims, plural(p.PerIteration.Kernels, "kernel"), plural(p.PerIteration.Memsets, "memset"), p.Ranges)
	if len(p.Flaws) > 0 {
		fmt.Fprintf(bw, "flaws planted: %s\n", config.FlawList(p.Flaws))
	}
	expected := "any number expected"
	if r.Expected > 0 {
		expected = fmt.Sprintf("%d expected", r.Expected)
	}
	fmt.Fprintf(bw, "iteration ranges: %d found, %s\n", r.Iterations, expected)
	if r.OK() {
		fmt.Fprintf(bw, "result: OK, the capture follows the plan (%d launches inside the iteration ranges, none outside)\n", r.Launch.Count)
	} else {
		fmt.Fprintf(bw, "result: FAILED, %s:\n", plural(len(r.Failures), "problem"))
		for _, f := range r.Failures {
			fmt.Fprintf(bw, "  - %s\n", f)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(bw, "note: %s\n", n)
	}
	if len(r.Ranges) > 0 {
		fmt.Fprintln(bw)
		fmt.Fprintln(bw, "per range (GPU times sum the range's operations; idle = gaps between them on the GPU;")
		fmt.Fprintln(bw, "API = duration of the launch calls; queue = GPU start minus launch call start):")
		rows := [][]string{{"range", "launches", "CPU span", "GPU time", "GPU span", "idle", "idle max", "API mean", "API max", "queue mean"}}
		for _, s := range r.Ranges {
			rows = append(rows, []string{strings.Repeat("  ", s.Depth) + s.Name, fmt.Sprint(s.Launch.Count),
				dur(s.CPUSpan()), dur(s.KernelTime + s.MemsetTime + s.MemcpyTime), dur(s.GPUSpan), dur(s.IdleTotal), dur(s.IdleMax),
				dur(s.Launch.APIMean), dur(s.Launch.APIMax), dur(s.Launch.QueueMean)})
		}
		writeTable(bw, rows)
		l := r.Launch
		fmt.Fprintf(bw, "all iterations: %d launches; launch call mean %s, max %s; queue delay mean %s, max %s\n",
			l.Count, dur(l.APIMean), dur(l.APIMax), dur(l.QueueMean), dur(l.QueueMax))
		if r.AllReduce != nil {
			fmt.Fprintf(bw, "all-reduce: %s\n", r.AllReduce)
		}
	}
	return bw.Flush()
}

// writeTable writes rows as columns, the first aligned left and the others
// right.
func writeTable(w io.Writer, rows [][]string) {
	var width []int
	for _, row := range rows {
		for i, cell := range row {
			if i == len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len(cell))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, cell := range row {
			if i == 0 {
				fmt.Fprintf(&b, "%-*s", width[i], cell)
			} else {
				fmt.Fprintf(&b, "  %*s", width[i], cell)
			}
		}
		fmt.Fprintln(w, b.String())
	}
}

// dur formats a duration with a unit that suits its size.
func dur(d time.Duration) string {
	switch a := max(d, -d); {
	case a < time.Microsecond:
		return fmt.Sprintf("%d ns", d.Nanoseconds())
	case a < time.Millisecond:
		return fmt.Sprintf("%.1f us", float64(d)/1e3)
	default:
		return fmt.Sprintf("%.3f ms", float64(d)/1e6)
	}
}
