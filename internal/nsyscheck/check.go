package nsyscheck

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/plan"
	"github.com/gpubench/gpubench/internal/program"
)

// NoNVTXMessage is the failure reported for a capture without NVTX ranges.
const NoNVTXMessage = "no NVTX ranges found: was the capture made with --capture-range=cudaProfilerApi and -t nvtx?"

// maxOutside caps the messages about single GPU operations outside the
// iteration ranges; the rest are counted in one line.
const maxOutside = 10

// maxFailures bounds the problems reported: past it the check stops, so
// that a report far from the plan (or made to be) costs no more time than
// one close to it, and the report stays readable.
const maxFailures = 100

// Check loads the export at path and checks it against p for a run of iters
// iterations (iters < 1: any number, still numbered from 0).
//
// It returns an error and no report when the file cannot be read as an
// Nsight Systems export. When the file was read but does not match the plan
// it returns the report and a *MismatchError listing every problem found;
// a run that matches returns the report and nil.
func Check(path string, p plan.Plan, iters int) (*Report, error) {
	t, err := Load(path)
	if err != nil {
		return nil, err
	}
	return CheckTrace(t, p, iters)
}

// CheckWindows is Check for a run with profiler windows (config.Run.
// Windows): the report must hold exactly the iterations of one of them,
// numbered as in the run (a report of nsys --capture-range-end=repeat:N
// holds one window of several).
func CheckWindows(path string, p plan.Plan, windows []config.Window) (*Report, error) {
	t, err := Load(path)
	if err != nil {
		return nil, err
	}
	return checkTrace(t, p, windows, Options{})
}

// CheckTrace checks a loaded trace; see Check.
func CheckTrace(t *Trace, p plan.Plan, iters int) (*Report, error) {
	var ws []config.Window
	if iters > 0 {
		ws = []config.Window{{First: 0, Last: iters - 1}}
	}
	return checkTrace(t, p, ws, Options{})
}

// CheckRun checks the export at path against plan p of run r: its
// iterations or profiler windows, its --sync-launches, and the signature
// of each of its flaws (--flaw).
func CheckRun(path string, p plan.Plan, r config.Run) (*Report, error) {
	t, err := Load(path)
	if err != nil {
		return nil, err
	}
	ws := []config.Window{{First: 0, Last: r.Iters - 1}}
	if r.ProfileIters != nil || r.ProfileWindows > 0 {
		ws = r.Windows()
	}
	return checkTrace(t, p, ws, Options{SyncLaunches: r.SyncLaunches, Flaws: r.Flaws})
}

func checkTrace(t *Trace, p plan.Plan, windows []config.Window, opts Options) (*Report, error) {
	iters := 0
	if len(windows) > 0 {
		iters = windows[0].Len()
	}
	c := &checker{
		t:       t,
		p:       p,
		claimed: make([]bool, len(t.Ranges)),
		rep: &Report{
			Path:          t.Path,
			SchemaVersion: t.SchemaVersion,
			NsysVersion:   t.NsysVersion,
			Plan:          p,
			Expected:      iters,
		},
	}
	c.index()
	c.windows, c.opts = windows, opts
	c.run(iters)
	return c.rep, c.rep.Err()
}

// node is a range of the plan as found in the trace.
type node struct {
	path     string
	plan     *plan.Range
	r        Range
	children []*node
	// launches were made directly inside the range, not in a child, and
	// calls are the API calls there that a flaw can plant (trackedCalls).
	launches []Launch
	calls    []APICall
	// nccl are the NCCL kernels of an all-reduce range (allreduce.go),
	// taken out of launches.
	nccl []Launch
	// incomplete nodes lack a planned child range, so their launches
	// cannot be attributed as the plan expects and are not counted.
	incomplete bool
}

type checker struct {
	t       *Trace
	p       plan.Plan
	rep     *Report
	claimed []bool // per t.Ranges index: matched or already reported
	iters   []*node
	// byThread lists the t.Ranges indices of each thread by start, the
	// enclosing range first (then by index), so that the ranges inside
	// one are found by binary search; itersByThread does the same for
	// the matched iterations.
	byThread      map[int64][]int
	itersByThread map[int64][]*node
	// iterEnds[thread][k] is the latest end of itersByThread[thread][:k+1].
	iterEnds map[int64][]int64
	// stopped: maxFailures problems were found and the check stopped.
	stopped bool
	// graphNoted: the note about whole-graph records was made.
	graphNoted bool
	// windows are the run's profiler windows; the capture holds one.
	windows []config.Window
	// opts are the run's settings that change what the capture shows.
	opts Options
}

// Options are what a check needs to know of the run beyond its plan.
type Options struct {
	// SyncLaunches: the run synchronised after every launch
	// (--sync-launches), so cuStreamSynchronize calls are not counted.
	SyncLaunches bool
	// Flaws are the planted flaws whose signatures the capture must show
	// (gpubench check --flaw): see flaws.go.
	Flaws []config.Flaw
}

func (c *checker) fail(format string, args ...any) {
	switch {
	case c.stopped:
	case len(c.rep.Failures) == maxFailures:
		c.stopped = true
		c.rep.Failures = append(c.rep.Failures, fmt.Sprintf("more than %d problems: the check stopped here", maxFailures))
	default:
		c.rep.Failures = append(c.rep.Failures, fmt.Sprintf(format, args...))
	}
}

// index fills byThread.
func (c *checker) index() {
	rs := c.t.Ranges
	c.byThread = map[int64][]int{}
	for i, r := range rs {
		c.byThread[r.Thread] = append(c.byThread[r.Thread], i)
	}
	for _, list := range c.byThread {
		sort.SliceStable(list, func(a, b int) bool {
			ra, rb := rs[list[a]], rs[list[b]]
			if ra.Start != rb.Start {
				return ra.Start < rb.Start
			}
			return ra.End > rb.End
		})
	}
}

func (c *checker) note(format string, args ...any) {
	c.rep.Notes = append(c.rep.Notes, fmt.Sprintf(format, args...))
}

func (c *checker) run(iters int) {
	t := c.t
	if t.OpenRanges > 0 {
		if t.OpenRanges == 1 {
			c.note("1 NVTX range was still open when the capture stopped, not checked")
		} else {
			c.note("%d NVTX ranges were still open when the capture stopped, not checked", t.OpenRanges)
		}
	}
	if len(t.Ranges) == 0 {
		c.fail("%s", NoNVTXMessage)
		return
	}
	c.iterations(iters)
	if c.stopped {
		return
	}
	if len(c.iters) == 0 {
		if n := len(t.Launches) + len(t.Unlaunched); n > 0 {
			c.fail("all %d GPU operations lie outside every iteration range", n)
		}
		return
	}
	c.orphans()
	c.attribute()
	for _, it := range c.iters {
		if c.stopped {
			return
		}
		c.compare(it)
	}
	c.signatures()
	c.stats()
}

// iterations checks rule (a) and matches the range tree of each iteration
// (rule b).
func (c *checker) iterations(want int) {
	var idx []int
	for i, r := range c.t.Ranges {
		if _, ok := plan.ParseIterationName(r.Name); ok {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return c.t.Ranges[idx[a]].Start < c.t.Ranges[idx[b]].Start })
	c.rep.Iterations = len(idx)
	first := 0
	if len(c.windows) > 1 || (len(c.windows) == 1 && c.windows[0].First != 0) {
		// The capture holds one window: the one its first iteration opens.
		found := -1
		if len(idx) > 0 {
			found, _ = plan.ParseIterationName(c.t.Ranges[idx[0]].Name)
		}
		var starts []string
		var w *config.Window
		for k := range c.windows {
			starts = append(starts, plan.IterationName(c.windows[k].First))
			if c.windows[k].First == found {
				w = &c.windows[k]
			}
		}
		if w == nil {
			if len(idx) > 0 {
				c.fail("capture starts at %s; the run's profiler windows start at %s", c.t.Ranges[idx[0]].Name, strings.Join(starts, ", "))
			}
			w = &c.windows[0]
		}
		first, want = w.First, w.Len()
		c.rep.Expected = want
	}
	if (want > 0 && len(idx) != want) || len(idx) == 0 {
		msg := fmt.Sprintf("capture holds %d iteration ranges, expected %d", len(idx), want)
		if want <= 0 {
			msg = "capture holds no iteration ranges, expected at least 1"
		}
		if len(idx) == 0 {
			msg += fmt.Sprintf(" (NVTX ranges found: %s)", c.rangeNames())
		}
		c.fail("%s", msg)
	}
	misnamed := 0
	// The iteration that ends last so far, per thread.
	last := map[int64]int{}
	c.itersByThread, c.iterEnds = map[int64][]*node{}, map[int64][]int64{}
	for k, i := range idx {
		if c.stopped {
			return
		}
		r := c.t.Ranges[i]
		if wantName := plan.IterationName(first + k); r.Name != wantName {
			if misnamed++; misnamed <= 3 {
				c.fail("iteration range %d of %d (at %s) is named %s, expected %s: the run numbers its measured iterations from 0, and the capture window starts at %s",
					k+1, len(idx), ms(r.Start), r.Name, wantName, plan.IterationName(first))
			}
		}
		if j, ok := last[r.Thread]; ok {
			prev := c.t.Ranges[j]
			if r.Start < prev.End {
				c.fail("%s starts at %s, before %s ends at %s: iteration ranges must not overlap", r.Name, ms(r.Start), prev.Name, ms(prev.End))
			}
			if r.End > prev.End {
				last[r.Thread] = i
			}
		} else {
			last[r.Thread] = i
		}
		c.claimed[i] = true
		n := c.match(i, &c.p.Iteration, r.Name)
		c.iters = append(c.iters, n)
		ends := c.iterEnds[r.Thread]
		end := r.End
		if len(ends) > 0 {
			end = max(end, ends[len(ends)-1])
		}
		c.itersByThread[r.Thread] = append(c.itersByThread[r.Thread], n)
		c.iterEnds[r.Thread] = append(ends, end)
	}
	if misnamed > 3 {
		c.fail("%d more iteration ranges are misnumbered", misnamed-3)
	}
}

// rangeNames lists the distinct NVTX range names, for messages.
func (c *checker) rangeNames() string {
	seen := map[string]bool{}
	var names []string
	for _, r := range c.t.Ranges {
		if !seen[r.Name] {
			seen[r.Name] = true
			names = append(names, fmt.Sprintf("%q", r.Name))
		}
	}
	if len(names) > 8 {
		names = append(names[:8], "...")
	}
	return strings.Join(names, ", ")
}

// inside lists the ranges on parent's thread nested in its span, in the
// order of byThread.
func (c *checker) inside(parent int) []int {
	p := c.t.Ranges[parent]
	list := c.byThread[p.Thread]
	from := sort.Search(len(list), func(k int) bool { return c.t.Ranges[list[k]].Start >= p.Start })
	var out []int
	for _, i := range list[from:] {
		r := c.t.Ranges[i]
		if r.Start > p.End {
			break
		}
		if i != parent && r.End <= p.End {
			out = append(out, i)
		}
	}
	return out
}

// directChildren keeps the ranges of in (in the order of byThread) that
// no other range of in encloses; of two with the same span, the first
// encloses the second. In that order a range can only be enclosed by one
// before it, which does so when it ends no earlier.
func (c *checker) directChildren(in []int) []int {
	var out []int
	var end int64
	for k, i := range in {
		if r := c.t.Ranges[i]; k == 0 || r.End > end {
			out = append(out, i)
			end = r.End
		}
	}
	return out
}

// match builds the node of range ri, which plays planned range pr, and
// checks its child ranges against the plan.
func (c *checker) match(ri int, pr *plan.Range, path string) *node {
	r := c.t.Ranges[ri]
	n := &node{path: path, plan: pr, r: r}
	in := c.inside(ri)
	direct := c.directChildren(in)
	planned := map[string]bool{}
	// Siblings of the same name (one range per operation, --nvtx=op, can
	// repeat a kernel's name) pair up in order: the plan's j-th child
	// called X with the report's j-th direct child called X.
	wantNamed, seenNamed := map[string]int{}, map[string]int{}
	for k := range pr.Children {
		wantNamed[pr.Children[k].Name]++
	}
	var prev *node
	for k := range pr.Children {
		if c.stopped {
			return n
		}
		pc := &pr.Children[k]
		planned[pc.Name] = true
		var named []int
		for _, i := range direct {
			if c.t.Ranges[i].Name == pc.Name {
				named = append(named, i)
			}
		}
		j := seenNamed[pc.Name]
		seenNamed[pc.Name]++
		if len(named) <= j {
			if j == 0 {
				n.incomplete = true
				c.diagnoseMissing(ri, in, pc.Name, path)
			} else if j == len(named) {
				n.incomplete = true
				c.fail("%s holds %d %s ranges, plan says %d", path, len(named), pc.Name, wantNamed[pc.Name])
			}
			continue
		}
		if j == 0 && len(named) > wantNamed[pc.Name] {
			c.fail("%s holds %d %s ranges, plan says %d", path, len(named), pc.Name, wantNamed[pc.Name])
		}
		if j == 0 {
			for _, i := range named {
				c.claimed[i] = true
			}
		}
		childPath := path + "/" + pc.Name
		if wantNamed[pc.Name] > 1 {
			childPath = fmt.Sprintf("%s/%s[%d]", path, pc.Name, j)
		}
		child := c.match(named[j], pc, childPath)
		n.children = append(n.children, child)
		if prev != nil && child.r.Start < prev.r.End {
			if child.r.End <= prev.r.Start {
				c.fail("%s: %s runs before %s; the plan runs %s, then %s", path, pc.Name, prev.plan.Name, prev.plan.Name, pc.Name)
			} else {
				c.fail("%s: %s starts at %s, before %s ends at %s", path, pc.Name, ms(child.r.Start), prev.plan.Name, ms(prev.r.End))
			}
		}
		prev = child
	}
	for _, i := range direct {
		if name := c.t.Ranges[i].Name; !planned[name] && !c.claimed[i] {
			c.claimed[i] = true
			if isAllReduceRange(pr.Name) && isNCCLRange(name) {
				continue // NCCL's own (allreduce.go)
			}
			c.fail("%s: unexpected NVTX range %q inside it at %s (not in the plan for mode %s)", path, name, ms(c.t.Ranges[i].Start), c.p.Mode)
		}
	}
	return n
}

// diagnoseMissing explains why parent ri has no child range called name.
func (c *checker) diagnoseMissing(ri int, in []int, name, path string) {
	if c.stopped {
		return
	}
	p := c.t.Ranges[ri]
	for _, i := range in {
		if r := c.t.Ranges[i]; r.Name == name && !c.claimed[i] {
			c.claimed[i] = true
			c.fail("%s: range %s at %s is nested in another range, not directly inside %s", path, name, ms(r.Start), p.Name)
			return
		}
	}
	for i, r := range c.t.Ranges {
		if r.Name != name || c.claimed[i] || r.End < p.Start || r.Start > p.End {
			continue
		}
		c.claimed[i] = true
		if r.Thread != p.Thread {
			c.fail("%s: range %s is on thread %s, not on the iteration's thread %s", path, name, c.t.ThreadLabel(r.Thread), c.t.ThreadLabel(p.Thread))
		} else {
			c.fail("%s: range %s [%s – %s] is not nested inside %s [%s – %s]", path, name, ms(r.Start), ms(r.End), p.Name, ms(p.Start), ms(p.End))
		}
		return
	}
	c.fail("%s: no %s range inside it", path, name)
}

// orphans reports planned ranges found outside every iteration.
func (c *checker) orphans() {
	names := map[string]bool{}
	var walk func(r *plan.Range)
	walk = func(r *plan.Range) {
		for i := range r.Children {
			names[r.Children[i].Name] = true
			walk(&r.Children[i])
		}
	}
	walk(&c.p.Iteration)
	for i, r := range c.t.Ranges {
		if names[r.Name] && !c.claimed[i] {
			c.claimed[i] = true
			c.fail("range %s at %s lies outside every iteration range", r.Name, ms(r.Start))
		}
	}
}

// attribute assigns each launch to the deepest matched range that holds
// its API call on the same thread, and reports the rest (rule d).
func (c *checker) attribute() {
	t := c.t
	outside := 0
	report := func(msg string) {
		if outside++; outside <= maxOutside {
			c.fail("%s", msg)
		}
	}
	for _, l := range t.Launches {
		n := c.owner(l)
		if n == nil && l.Op.Kind == program.Memcpy {
			continue // the run loop's copies between iterations: inputs, the loss
		}
		if n == nil && outside >= maxOutside {
			outside++
			continue
		}
		if n == nil {
			msg := fmt.Sprintf("%s at %s lies outside every iteration range", l.Op.Describe(), ms(l.Op.Start))
			for _, it := range c.iters {
				if it.r.Thread != l.Thread && it.r.Contains(l.Start) {
					msg += fmt.Sprintf(" (its %s call ran on thread %s during %s, which is on thread %s)",
						apiName(l.API), t.ThreadLabel(l.Thread), it.path, t.ThreadLabel(it.r.Thread))
					break
				}
			}
			report(msg)
			continue
		}
		n.launches = append(n.launches, l)
	}
	if len(t.Unlaunched) > 0 {
		if !t.APITable {
			c.fail("no CUDA API calls found (the export has no %s table): was the capture made with -t cuda? Without launch calls %d GPU operations cannot be placed in ranges",
				tableRuntime, len(t.Unlaunched))
		} else {
			for _, op := range t.Unlaunched {
				if op.Kind == program.Memcpy {
					continue
				}
				if outside >= maxOutside {
					outside++
					continue
				}
				report(fmt.Sprintf("%s at %s has no CUDA API launch record (correlationId %d), so it cannot be placed in any range",
					op.Describe(), ms(op.Start), op.CorrelationID))
			}
		}
	}
	if outside > maxOutside {
		c.fail("... and %d more GPU operations outside every iteration range", outside-maxOutside)
	}
	for _, a := range t.Calls {
		if !trackedCalls[a.Name] {
			continue
		}
		if n := c.ownerAt(a.Thread, a.Start); n != nil {
			n.calls = append(n.calls, a)
		}
	}
}

// trackedCalls are the API calls a range is checked for, beyond its
// launches: those the program's synchronisations, allocations, frees and
// events make, and the other ways to synchronise.
var trackedCalls = map[string]bool{
	program.StreamSynchronize: true, "cuCtxSynchronize": true, "cudaStreamSynchronize": true, "cudaDeviceSynchronize": true,
	program.MemAlloc: true, program.MemFree: true, "cudaMalloc": true, "cudaFree": true,
	program.EventRecord: true, program.StreamWaitEvent: true,
}

// syncCalls are the tracked calls that wait for the GPU.
var syncCalls = map[string]bool{
	program.StreamSynchronize: true, "cuCtxSynchronize": true, "cudaStreamSynchronize": true, "cudaDeviceSynchronize": true,
}

func apiName(s string) string {
	if s == "" {
		return "launch"
	}
	return s
}

// owner finds the range a launch was made in: the first iteration on its
// thread that holds the launch call's start, then the deepest matched
// range inside it that does.
func (c *checker) owner(l Launch) *node { return c.ownerAt(l.Thread, l.Start) }

// ownerAt finds the deepest matched range on thread that holds time at.
func (c *checker) ownerAt(thread, at int64) *node {
	l := struct{ Thread, Start int64 }{thread, at}
	its, ends := c.itersByThread[l.Thread], c.iterEnds[l.Thread]
	// From the last iteration that starts no later than the call back to
	// the first, for as long as one of them ends no earlier than it: when
	// iterations do not overlap, one step.
	var it *node
	for k := sort.Search(len(its), func(k int) bool { return its[k].r.Start > l.Start }) - 1; k >= 0 && ends[k] >= l.Start; k-- {
		if its[k].r.End >= l.Start {
			it = its[k]
		}
	}
	if it == nil {
		return nil
	}
	n := it
descend:
	for {
		for _, ch := range n.children {
			if ch.r.Thread == l.Thread && ch.r.Contains(l.Start) {
				n = ch
				continue descend
			}
		}
		return n
	}
}

// compare checks the launches of n and its children against the plan
// (rule c).
func (c *checker) compare(n *node) {
	c.compareRange(n)
	for _, ch := range n.children {
		c.compare(ch)
	}
}

func (c *checker) compareRange(n *node) {
	if n.incomplete {
		return
	}
	c.takeNCCL(n)
	t := c.t
	if !t.hasGPUWork() {
		if !c.rep.noGPU {
			c.rep.noGPU = true
			c.fail("no GPU kernels found in the capture: was it made with -t cuda?")
		}
		return
	}
	c.compareCalls(n)
	want := c.expected(n.plan)
	wantKernels, wantMemsets, wantGraphs, wantMemcpys := map[string]int{}, 0, 0, 0
	var kernelOrder []string
	for _, l := range want {
		switch l.Kind {
		case plan.Kernel:
			if wantKernels[l.Name] == 0 {
				kernelOrder = append(kernelOrder, l.Name)
			}
			wantKernels[l.Name]++
		case plan.Memset:
			wantMemsets++
		case plan.Graph:
			wantGraphs++
		case program.Memcpy:
			wantMemcpys++
		}
	}
	got := map[string]int{}
	memsets, graphs, memcpys := 0, 0, 0
	for _, l := range n.launches {
		switch l.Op.Kind {
		case plan.Memset:
			memsets++
		case plan.Graph:
			graphs++
		case program.Memcpy:
			memcpys++
		default:
			got[l.Op.Name]++
		}
	}
	ok := true
	for _, name := range kernelOrder {
		if got[name] != wantKernels[name] {
			ok = false
			c.fail("%s: kernel %s launched %s, plan says %d", n.path, name, times(got[name]), wantKernels[name])
		}
		delete(got, name)
	}
	extra := make([]string, 0, len(got))
	for name := range got {
		extra = append(extra, name)
	}
	sort.Strings(extra)
	for _, name := range extra {
		ok = false
		msg := fmt.Sprintf("%s: kernel %s launched %s, plan says 0", n.path, name, times(got[name]))
		if t.GraphTable && wantGraphs > 0 {
			msg += " (the plan's kernels of this range run inside a graph, which this capture traced as one launch)"
		}
		c.fail("%s", msg)
	}
	// The exporter creates CUPTI_ACTIVITY_KIND_MEMSET only when there are
	// memsets, so a missing table counts as none.
	if memsets != wantMemsets {
		ok = false
		msg := fmt.Sprintf("%s: %s launched, plan says %d", n.path, plural(memsets, "memset"), wantMemsets)
		if !t.MemsetTable {
			msg += fmt.Sprintf(" (the export has no %s table: no memset was captured)", tableMemset)
		}
		c.fail("%s", msg)
	}
	if graphs != wantGraphs {
		ok = false
		c.fail("%s: %s, plan says %d", n.path, plural(graphs, "graph launch"), wantGraphs)
	}
	if memcpys != wantMemcpys {
		ok = false
		msg := fmt.Sprintf("%s: %s, plan says %d", n.path, plural(memcpys, "memcpy"), wantMemcpys)
		if !t.MemcpyTable {
			msg += fmt.Sprintf(" (the export has no %s table: no memcpy was captured)", tableMemcpy)
		}
		c.fail("%s", msg)
	}
	if ok {
		c.order(n)
	}
}

// expected is the sequence of GPU operations a range must show in this
// capture: with whole-graph records (nsys's default --cuda-graph-trace=graph)
// each graph launch is one operation; otherwise a graph's nodes appear as
// kernels and memsets of their own (--cuda-graph-trace=node), as without
// graphs.
func (c *checker) expected(r *plan.Range) []plan.Launch {
	if c.t.GraphTable {
		if r.GraphLaunches() > 0 && !c.graphNoted {
			c.graphNoted = true
			c.note("the capture traced each CUDA graph as one launch (nsys's default); profile with --cuda-graph-trace=node to see, and check, the kernels inside")
		}
		return gpuWork(r.Ops)
	}
	return gpuWork(r.Launches())
}

// gpuWork keeps the operations a profiler lists as GPU work: not the
// synchronisations, allocations, frees and host work, which are calls
// (compareCalls) or nothing the CUDA trace shows.
func gpuWork(ls []plan.Launch) []plan.Launch {
	out := make([]plan.Launch, 0, len(ls))
	for _, l := range ls {
		if plan.GPUWork(l.Kind) {
			out = append(out, l)
		}
	}
	return out
}

// compareCalls checks the tracked API calls made directly inside n
// against the plan's synchronisations, allocations and frees there.
func (c *checker) compareCalls(n *node) {
	want := map[string]int{}
	for _, l := range n.plan.Launches() {
		switch l.Kind {
		case program.Sync, program.Alloc, program.Free, program.EventOp:
			want[l.Name]++
		}
	}
	got := map[string]int{}
	for _, a := range n.calls {
		got[a.Name]++
	}
	names := make([]string, 0, len(trackedCalls))
	for name := range trackedCalls {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if c.opts.SyncLaunches && syncCalls[name] {
			continue // --sync-launches: one after every launch
		}
		if got[name] != want[name] {
			c.fail("%s: %s called %s, plan says %d", n.path, name, times(got[name]), want[name])
		}
	}
}

// order compares the launch sequence of n with the plan's.
func (c *checker) order(n *node) {
	want, got := c.expected(n.plan), n.launches
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		// A memset is known by its size: the plan's target buffer.
		if g.Op.Kind == w.Kind && ((g.Op.Kind == plan.Memset && g.Op.Bytes == w.Bytes) ||
			(g.Op.Kind == program.Memcpy && g.Op.Bytes == w.Bytes && g.Op.CopyKind == copyKind(w.Dir)) ||
			(g.Op.Kind == plan.Kernel && g.Op.Name == w.Name) || g.Op.Kind == plan.Graph) {
			continue
		}
		wantDesc := "kernel " + w.Name
		switch w.Kind {
		case plan.Memset:
			wantDesc = fmt.Sprintf("a memset of %d bytes (%s %s)", w.Bytes, w.Name, w.Target)
		case plan.Graph:
			wantDesc = fmt.Sprintf("a graph launch of %d nodes", len(w.Nodes))
		case program.Memcpy:
			wantDesc = fmt.Sprintf("a %s memcpy of %d bytes (%s %s)", w.Dir, w.Bytes, w.Name, w.Target)
		}
		c.fail("%s: launch %d is %s, plan says %s at %s", n.path, i+1, g.Op.Describe(), wantDesc, w.Where())
		return
	}
}

// copyKind is the export's copyKind of a planned copy's direction.
func copyKind(d program.CopyDir) int64 {
	if d == program.HostToDevice {
		return CopyHtoD
	}
	return CopyDtoH
}

func times(n int) string {
	if n == 1 {
		return "1 time"
	}
	return fmt.Sprintf("%d times", n)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// ms formats a report timestamp or a duration in nanoseconds as
// milliseconds.
func ms(ns int64) string { return fmt.Sprintf("%.3f ms", float64(ns)/1e6) }
