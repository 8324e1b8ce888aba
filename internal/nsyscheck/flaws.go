package nsyscheck

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/plan"
	"github.com/gpubench/gpubench/internal/program"
)

// The signatures of the planted flaws (gpubench check --flaw=NAME). The
// plan already holds a flaw's operations, so the ordinary comparison
// covers its kernels, memsets, memcpys and tracked calls range by range;
// a signature is what a learner must see in the timeline, checked in
// every iteration:
//
//   - sync-every-launch: every launch inside the passes is followed by a
//     synchronising call (syncCalls) before the next launch;
//   - alloc-per-iteration: the iteration allocates (cudaMalloc) and frees
//     (cudaFree) as many buffers as the flaw does;
//   - host-stall: a gap of at least 90% of config.HostStallTime with no
//     CUDA call between the iteration's start and its forward's;
//   - unfused: the forward launches each of the flaw's own kernels
//     (bias_add and the GELU chain's elem_mul, elem_axpby and
//     elem_tanh_scale) as many times as the plan's forward does;
//   - readback-per-layer: the forward copies device-to-host once per
//     layer, each copy followed by a synchronising call;
//   - pageable-upload (pinned-upload): before the forward, host-to-device
//     copies of the batch from pageable (pinned) memory;
//   - serial-copies: the backward copies device-to-host as often as the
//     plan does (each layer's gradients), every copy on the stream of the
//     backward's kernels and none overlapping a kernel;
//   - overlapped-copies: the same copies, every one on a stream other
//     than the kernels'. Whether they overlapped kernels depends on the
//     GPU and the kernels' lengths, so that is a note, never a failure.
//   - uncoalesced (bank-conflicts): the forward launches the flaw's kernel,
//     residual_forward_strided (matmul_forward_nopad), bf16 twin included,
//     at least as many times as the plan's forward does, where the clean
//     program launches residual_forward (matmul_forward);
//   - low-occupancy: the forward's fp32 products (the plan's matmul_*
//     launches there, in order) run with the plan's grids, those of the
//     largest tile, which for at least one of them is fewer blocks than
//     the plan's SM count (Plan.SMs, the GPU the plan was built for). The
//     grids come from the kernel table's gridX·gridY·gridZ; a clean
//     report fails because the clean plan's tiles give other (larger)
//     grids. The backward's unsplit weight gradients are the ordinary
//     comparison's (same kernels), not the signature's.
//
// A failure names the flaw, says "signature missing" and what the
// iteration showed instead.

// stallShare is the part of config.HostStallTime the host gap must reach.
const stallShare = 0.9

func (c *checker) signatures() {
	c.unplannedGaps()
	for _, f := range c.opts.Flaws {
		found := 0
		for _, it := range c.iters {
			if c.stopped {
				return
			}
			if msg := c.signature(f, it); msg != "" {
				c.fail("%s: signature missing in %s: %s", f, it.path, msg)
				continue
			}
			found++
		}
		if found == len(c.iters) && found > 0 {
			c.note("%s: the signature is in all %d iterations", f, found)
		}
		if f == config.OverlappedCopies {
			c.overlapNote()
		}
	}
}

// signature returns what iteration it lacks of flaw f's signature, or "".
func (c *checker) signature(f config.Flaw, it *node) string {
	switch f {
	case config.SyncEveryLaunch:
		return c.syncAfterEachLaunch(it)
	case config.AllocPerIteration:
		return c.allocsAndFrees(it)
	case config.HostStall:
		return c.hostGap(it)
	case config.Unfused:
		return c.unfusedLaunches(it)
	case config.ReadbackPerLayer:
		return c.readbacks(it)
	case config.PageableUpload:
		return c.uploads(it, MemPageable)
	case config.PinnedUpload:
		return c.uploads(it, MemPinned)
	case config.SerialCopies:
		return c.offloads(it, false)
	case config.OverlappedCopies:
		return c.offloads(it, true)
	case config.Uncoalesced:
		return c.kernelSwap(it, "residual_forward_strided", "residual_forward")
	case config.BankConflicts:
		return c.kernelSwap(it, "matmul_forward_nopad", "matmul_forward")
	case config.LowOccupancy:
		return c.smallGrids(it)
	}
	return "gpubench check knows no signature of this flaw"
}

// subtree lists the launches and tracked calls of n and its children, each
// by start.
func subtree(n *node) ([]Launch, []APICall) {
	ls, cs := append([]Launch(nil), n.launches...), append([]APICall(nil), n.calls...)
	for _, ch := range n.children {
		l, c := subtree(ch)
		ls, cs = append(ls, l...), append(cs, c...)
	}
	sort.SliceStable(ls, func(i, j int) bool { return ls[i].Start < ls[j].Start })
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Start < cs[j].Start })
	return ls, cs
}

// syncedAfter reports whether a synchronising call on l's thread starts
// after l's call and before next (the next launch call's start; 0: none).
func syncedAfter(l Launch, next int64, calls []APICall) bool {
	i := sort.Search(len(calls), func(k int) bool { return calls[k].Start >= l.End })
	for ; i < len(calls) && (next == 0 || calls[i].Start < next); i++ {
		if calls[i].Thread == l.Thread && syncCalls[calls[i].Name] {
			return true
		}
	}
	return false
}

func (c *checker) syncAfterEachLaunch(it *node) string {
	ls, calls := subtree(it)
	var launches []Launch
	for _, l := range ls {
		if l.Op.Kind == plan.Kernel || l.Op.Kind == plan.Memset {
			launches = append(launches, l)
		}
	}
	if len(launches) == 0 {
		return "no kernel or memset launches inside it"
	}
	missing, first := 0, ""
	for k, l := range launches {
		next := int64(0)
		if k+1 < len(launches) {
			next = launches[k+1].Start
		}
		if !syncedAfter(l, next, calls) {
			if missing++; missing == 1 {
				first = fmt.Sprintf("%s at %s", l.Op.Describe(), ms(l.Start))
			}
		}
	}
	if missing == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d launches are not followed by a synchronising call (%s) before the next launch, the first %s",
		missing, len(launches), syncNames(), first)
}

func syncNames() string {
	var names []string
	for n := range syncCalls {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func (c *checker) allocsAndFrees(it *node) string {
	want := 0
	for _, l := range planOps(&c.p.Iteration) {
		if l.Kind == program.Alloc {
			want++
		}
	}
	if want == 0 {
		return "the plan allocates nothing per iteration (check with the run's --flaw)"
	}
	_, calls := subtree(it)
	allocs, frees := 0, 0
	for _, a := range calls {
		switch a.Name {
		case program.MemAlloc, "cudaMalloc":
			allocs++
		case program.MemFree, "cudaFree":
			frees++
		}
	}
	if allocs >= want && frees >= want {
		return ""
	}
	return fmt.Sprintf("%s and %s inside it, the flaw makes %d of each", plural(allocs, "cudaMalloc call"), plural(frees, "cudaFree call"), want)
}

// planOps lists every operation of a planned range and its children.
func planOps(r *plan.Range) []plan.Launch {
	out := r.Launches()
	for i := range r.Children {
		out = append(out, planOps(&r.Children[i])...)
	}
	return out
}

// unplannedGaps notes host gaps before the forward that the plan has no
// host work for: the trace of a host-stall checked without --flaw, or of a
// slow data loader of the user's own. A gap is timing, so it is a note,
// never a failure.
func (c *checker) unplannedGaps() {
	for _, l := range c.p.Iteration.Launches() {
		if l.Kind == program.Host {
			return
		}
	}
	for _, it := range c.iters {
		if g, ok := c.gapBeforeForward(it); ok && time.Duration(g) >= config.HostStallTime/2 {
			c.note("%s: %s without CUDA calls before the forward, where the plan has no host work (a stalled data loader? check --flaw=host-stall)", it.path, ms(g))
			return
		}
	}
}

// gapBeforeForward is the longest time between the iteration's start and
// its forward's in which its thread made no CUDA call.
func (c *checker) gapBeforeForward(it *node) (int64, bool) {
	fwd := child(it, plan.Forward)
	if fwd == nil {
		return 0, false
	}
	// Every API call on the iteration's thread between its start and the
	// forward's, tracked or not.
	var busy [][2]int64
	for _, a := range c.t.Calls {
		if a.Thread == it.r.Thread && a.End > it.r.Start && a.Start < fwd.r.Start {
			busy = append(busy, [2]int64{a.Start, a.End})
		}
	}
	longest, from := int64(0), it.r.Start
	for _, b := range busy {
		longest = max(longest, b[0]-from)
		from = max(from, b[1])
	}
	return max(longest, fwd.r.Start-from), true
}

func (c *checker) hostGap(it *node) string {
	longest, ok := c.gapBeforeForward(it)
	if !ok {
		return "no forward range to measure the gap before"
	}
	want := time.Duration(stallShare * float64(config.HostStallTime))
	if time.Duration(longest) >= want {
		return ""
	}
	return fmt.Sprintf("the longest gap without CUDA calls before the forward is %s, the data loader stalls %v (at least %v expected)",
		ms(longest), config.HostStallTime, want)
}

func child(n *node, name string) *node {
	for _, ch := range n.children {
		if ch.plan.Name == name {
			return ch
		}
	}
	return nil
}

func (c *checker) readbacks(it *node) string {
	fwd := child(it, plan.Forward)
	if fwd == nil {
		return "no forward range"
	}
	want := c.p.Dims.L
	ls, calls := subtree(fwd)
	var copies []Launch
	for _, l := range ls {
		if l.Op.Kind == program.Memcpy && l.Op.CopyKind == CopyDtoH {
			copies = append(copies, l)
		}
	}
	waited := 0
	for k, l := range copies {
		next := int64(0)
		if k+1 < len(copies) {
			next = copies[k+1].Start
		}
		if syncedAfter(l, next, calls) {
			waited++
		}
	}
	if len(copies) >= want && waited >= want {
		return ""
	}
	return fmt.Sprintf("the forward copies device-to-host %s, %d of them waited for, the flaw makes one per layer (%d), each waited for",
		times(len(copies)), waited, want)
}

func (c *checker) uploads(it *node, kind int64) string {
	want := 0
	for _, l := range c.p.Iteration.Launches() {
		if l.Kind == program.Memcpy && l.Dir == program.HostToDevice {
			want++
		}
	}
	if want == 0 {
		return "the plan uploads nothing per iteration (check with the run's --flaw)"
	}
	got, other := 0, 0
	for _, l := range it.launches {
		if l.Op.Kind != program.Memcpy || l.Op.CopyKind != CopyHtoD {
			continue
		}
		if l.Op.SrcKind == kind {
			got++
		} else {
			other++
		}
	}
	if got >= want {
		return ""
	}
	msg := fmt.Sprintf("%d host-to-device memcpys from %s memory before the forward, the flaw makes %d", got, memoryKind(kind), want)
	if other > 0 {
		msg += fmt.Sprintf(" (%d from other host memory)", other)
	}
	return msg
}

// backwardCopies are iteration it's device-to-host copies and kernels in
// its backward, the stream most of those kernels ran on, and how many
// device-to-host copies the plan's backward makes.
func (c *checker) backwardCopies(it *node) (copies, kernels []Launch, stream int64, want int, ok bool) {
	bwd := child(it, plan.Backward)
	if bwd == nil {
		return nil, nil, 0, 0, false
	}
	for _, l := range planOps(bwd.plan) {
		if l.Kind == program.Memcpy && l.Dir == program.DeviceToHost {
			want++
		}
	}
	ls, _ := subtree(bwd)
	byStream := map[int64]int{}
	for _, l := range ls {
		switch {
		case l.Op.Kind == program.Memcpy && l.Op.CopyKind == CopyDtoH:
			copies = append(copies, l)
		case l.Op.Kind == plan.Kernel:
			kernels = append(kernels, l)
			byStream[l.Op.Stream]++
		}
	}
	for s, n := range byStream {
		if n > byStream[stream] || (n == byStream[stream] && s < stream) {
			stream = s
		}
	}
	return copies, kernels, stream, want, true
}

// overlapping counts the copies whose GPU time intersects some kernel's.
func overlapping(copies, kernels []Launch) int {
	ks := append([]Launch(nil), kernels...)
	sort.Slice(ks, func(i, j int) bool { return ks[i].Op.Start < ks[j].Op.Start })
	n := 0
	for _, cp := range copies {
		// The kernels that start before the copy ends; one of them
		// overlaps it if it ends after the copy starts.
		end := sort.Search(len(ks), func(k int) bool { return ks[k].Op.Start >= cp.Op.End })
		for _, k := range ks[:end] {
			if k.Op.End > cp.Op.Start {
				n++
				break
			}
		}
	}
	return n
}

// offloads checks serial-copies' (overlapped-copies') signature in it.
func (c *checker) offloads(it *node, overlapped bool) string {
	copies, kernels, stream, want, ok := c.backwardCopies(it)
	if !ok {
		return "no backward range"
	}
	if want == 0 {
		return "the plan copies nothing device-to-host in the backward (check with the run's --flaw)"
	}
	if len(kernels) == 0 {
		return "no kernels in the backward"
	}
	same := 0
	for _, cp := range copies {
		if cp.Op.Stream == stream {
			same++
		}
	}
	over := overlapping(copies, kernels)
	if !overlapped && len(copies) >= want && same == len(copies) && over == 0 {
		return ""
	}
	if overlapped && len(copies) >= want && same == 0 {
		return ""
	}
	msg := fmt.Sprintf("the backward copies device-to-host %s, the flaw makes %d (each layer's gradients); %d of them on the kernels' stream %d, %d on other streams",
		times(len(copies)), want, same, stream, len(copies)-same)
	if !overlapped {
		msg += fmt.Sprintf(", %d overlapping a kernel", over)
	}
	return msg
}

// overlapNote says how many of overlapped-copies' copies ran under a
// kernel, over all iterations: the point of the fix, which the GPU may or
// may not deliver (a copy shorter than the gap it lands in overlaps
// nothing).
func (c *checker) overlapNote() {
	all, over := 0, 0
	for _, it := range c.iters {
		copies, kernels, stream, _, ok := c.backwardCopies(it)
		if !ok {
			continue
		}
		var other []Launch
		for _, cp := range copies {
			if cp.Op.Stream != stream {
				other = append(other, cp)
			}
		}
		all += len(other)
		over += overlapping(other, kernels)
	}
	if all > 0 {
		c.note("%s: %d of %d device-to-host copies on the second stream overlapped a backward kernel", config.OverlappedCopies, over, all)
	}
}

// unfusedKernels are the kernels only the unfused flaw launches
// (kernels/unfused.go), by their fp32 names; a bf16 step's end in _bf16.
var unfusedKernels = []string{"bias_add", "elem_mul", "elem_axpby", "elem_tanh_scale"}

// unfusedKernel is the fp32 name of kernel name when it is one of
// unfusedKernels.
func unfusedKernel(name string) (string, bool) {
	base := strings.TrimSuffix(name, "_bf16")
	return base, slices.Contains(unfusedKernels, base)
}

// unfusedLaunches compares the forward's launches of each of unfused's
// kernels with the plan's forward: the counts come from the program, so
// they follow the model's layers (4 bias_adds and a GELU chain of 6 a
// layer).
func (c *checker) unfusedLaunches(it *node) string {
	fwd := child(it, plan.Forward)
	if fwd == nil {
		return "no forward range"
	}
	want, graphs := map[string]int{}, 0
	for _, l := range planOps(fwd.plan) {
		if k, ok := unfusedKernel(l.Name); ok && l.Kind == plan.Kernel {
			want[k]++
		}
	}
	var walk func(r *plan.Range)
	walk = func(r *plan.Range) {
		graphs += r.GraphLaunches()
		for i := range r.Children {
			walk(&r.Children[i])
		}
	}
	walk(fwd.plan)
	if len(want) == 0 {
		return "the plan's forward launches none of the flaw's kernels (check with the run's --flaw)"
	}
	if c.t.GraphTable && graphs > 0 {
		return "the capture traced the forward's graph as one launch, which hides the kernels inside (profile with --cuda-graph-trace=node)"
	}
	ls, _ := subtree(fwd)
	got := map[string]int{}
	for _, l := range ls {
		if k, ok := unfusedKernel(l.Op.Name); ok && l.Op.Kind == plan.Kernel {
			got[k]++
		}
	}
	var short []string
	for _, k := range unfusedKernels {
		if got[k] < want[k] {
			short = append(short, fmt.Sprintf("%s %s (the flaw launches it %d times)", k, times(got[k]), want[k]))
		}
	}
	if len(short) == 0 {
		return ""
	}
	return "the forward launches " + strings.Join(short, ", ")
}

// isEntry says whether kernel name is entry or its bf16 twin.
func isEntry(name, entry string) bool { return name == entry || name == entry+"_bf16" }

// graphHint is what to add to a kernel signature's failure when the
// capture traced whole graphs, whose kernels it cannot see.
func (c *checker) graphHint() string {
	if c.t.GraphTable && c.p.Iteration.Inclusive.Graphs > 0 {
		return " (the capture traced each CUDA graph as one launch; profile with --cuda-graph-trace=node)"
	}
	return ""
}

// kernelSwap is the signature of a flaw that launches kernel flawed where
// the clean program launches clean: the forward of it launches flawed at
// least as often as the plan's forward does.
func (c *checker) kernelSwap(it *node, flawed, clean string) string {
	fwd := child(it, plan.Forward)
	if fwd == nil {
		return "no forward range"
	}
	want := 0
	for _, l := range planOps(fwd.plan) {
		if l.Kind == plan.Kernel && isEntry(l.Name, flawed) {
			want++
		}
	}
	if want == 0 {
		return fmt.Sprintf("the plan's forward launches no %s (check with the run's --flaw)", flawed)
	}
	ls, _ := subtree(fwd)
	got, cleanGot := 0, 0
	for _, l := range ls {
		switch {
		case l.Op.Kind != plan.Kernel:
		case isEntry(l.Op.Name, flawed):
			got++
		case isEntry(l.Op.Name, clean):
			cleanGot++
		}
	}
	if got >= want {
		return ""
	}
	return fmt.Sprintf("the forward launches %s %s and %s %s, the flaw launches %s %d times where the clean program launches %s%s",
		flawed, times(got), clean, times(cleanGot), flawed, want, clean, c.graphHint())
}

// smallGrids is low-occupancy's signature (see the file's comment).
func (c *checker) smallGrids(it *node) string {
	if !c.t.KernelGrids {
		return fmt.Sprintf("the export's %s has no gridX, gridY and gridZ columns to read the grids from", tableKernel)
	}
	fwd := child(it, plan.Forward)
	if fwd == nil {
		return "no forward range"
	}
	var want []plan.Launch
	names := map[string]bool{}
	small := 0
	for _, l := range planOps(fwd.plan) {
		if l.Kind == plan.Kernel && strings.HasPrefix(l.Name, "matmul_") {
			want = append(want, l)
			names[l.Name] = true
			if blocks(l.Grid) < int64(c.p.SMs) {
				small++
			}
		}
	}
	if small == 0 {
		return fmt.Sprintf("the plan's forward has no fp32 product of fewer blocks than its %d SMs (check with the run's --flaw, on a smaller model)", c.p.SMs)
	}
	ls, _ := subtree(fwd)
	var got []Launch
	for _, l := range ls {
		if l.Op.Kind == plan.Kernel && names[l.Op.Name] {
			got = append(got, l)
		}
	}
	if len(got) < len(want) {
		return fmt.Sprintf("the forward launches %d fp32 products (%s), the plan %d%s", len(got), strings.Join(sortedKeys(names), ", "), len(want), c.graphHint())
	}
	for i, w := range want {
		g := got[i].Op
		if g.Name == w.Name && g.Grid == w.Grid {
			continue
		}
		return fmt.Sprintf("its products run other grids than the flaw's largest tile: %s at %s ran grid %s (%d blocks), the flaw's is %s (%d blocks; %d of the forward's %d products have fewer blocks than the %d SMs)",
			g.Name, w.Where(), dim3(g.Grid), g.Blocks(), dim3(w.Grid), blocks(w.Grid), small, len(want), c.p.SMs)
	}
	return ""
}

func blocks(d program.Dim3) int64 { return int64(d.X) * int64(d.Y) * int64(d.Z) }

func dim3(d program.Dim3) string { return fmt.Sprintf("(%d,%d,%d)", d.X, d.Y, d.Z) }

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
