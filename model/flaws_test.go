package model

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/gemmplan"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/kernels"
)

// planted reports whether op is of a kind only a flaw plants: the clean
// program launches kernels and memsets, and graphs of them, only.
func planted(op *program.Op) bool {
	switch op.Kind {
	case program.Sync, program.Host, program.Alloc, program.Free, program.Memcpy, program.EventOp:
		return true
	}
	return false
}

// trace is a program's iteration as the Recorder saw it, one line per
// event, with every planted operation left out, and every range that held
// nothing else: what a flawed program must share with the clean one.
func trace(t *testing.T, m *Step, iters int) (clean []string, all []program.Event) {
	t.Helper()
	var rec program.Recorder
	rec.Track(m.Program)
	for i := range m.Setup {
		if err := rec.Do(&m.Setup[i]); err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
	setup := len(rec.Events)
	for range iters {
		if err := program.Run(&m.Iteration, &rec); err != nil {
			t.Fatal(err)
		}
	}
	if rec.Open() != 0 {
		t.Fatalf("%d ranges left open", rec.Open())
	}
	var out []string
	for _, e := range rec.Events[setup:] {
		switch {
		case e.Op != nil && planted(e.Op):
			continue
		case e.Pop && len(out) > 0 && strings.HasPrefix(out[len(out)-1], "push "):
			out = out[:len(out)-1] // a range that held only planted ops
			continue
		case e.Op != nil:
			out = append(out, e.Op.Where()+" "+e.String())
		default:
			out = append(out, e.String())
		}
	}
	return out, rec.Events[setup:]
}

type flawCase struct {
	mode  config.Mode
	dtype config.DType
	nvtx  config.NVTXDepth
	graph bool
}

func flawCases() []flawCase {
	var out []flawCase
	for _, mode := range modes {
		for _, dt := range []config.DType{config.FP32, config.TF32, config.BF16} {
			for _, depth := range []config.NVTXDepth{config.NVTXIteration, config.NVTXLayer, config.NVTXOp} {
				out = append(out, flawCase{mode, dt, depth, false})
			}
			out = append(out, flawCase{mode, dt, config.NVTXIteration, true})
		}
	}
	return out
}

// TestFlawsPlantOnlyTheirOps: each flaw's program, in every mode, dtype
// and NVTX depth (and with --graph where config allows it), runs through
// the Recorder with buffer lifetimes tracked over two iterations, and is
// the clean program plus exactly the planted operations.
func TestFlawsPlantOnlyTheirOps(t *testing.T) {
	d := config.Dims{V: 1000, MaxT: 40, T: 37, L: 3, NH: 3, C: 96, B: 3}
	for _, c := range flawCases() {
		base := Program(d, c.mode, Options{DType: c.dtype, NVTX: c.nvtx, Graph: c.graph})
		want, _ := trace(t, base, 2)
		for _, f := range config.Flaws {
			name := fmt.Sprintf("%s/%s/%s/graph=%v/%s", c.mode, c.dtype, c.nvtx, c.graph, f.Name)
			args := []string{"--mode=" + string(c.mode), "--dtype=" + string(c.dtype), "--nvtx=" + string(c.nvtx), "--flaw=" + string(f.Name)}
			if c.graph {
				args = append(args, "--graph")
			}
			if _, err := config.ParseRun(args); err != nil {
				continue // refused with its reason: config's tests
			}
			if f.Name == config.Unfused {
				continue // it changes the forward's kernels: TestUnfused
			}
			t.Run(name, func(t *testing.T) {
				m := Program(d, c.mode, Options{DType: c.dtype, NVTX: c.nvtx, Graph: c.graph, Flaws: []config.Flaw{f.Name}})
				if kernelFlaw(f.Name) {
					// It changes the launches of operations, not the
					// operations: compared op by op (TestKernelFlaws).
					trace(t, m, 2) // lifetimes hold over two iterations
					checkKernelFlaw(t, base, m, []config.Flaw{f.Name})
					return
				}
				got, events := trace(t, m, 2)
				// The same buffers: the memory plan (which sums the clean
				// program's) stays the flawed run's peak.
				if bytesOf(m.Used()) != bytesOf(base.Used()) || len(m.Used()) != len(base.Used()) {
					t.Errorf("buffers %d (%d B), clean %d (%d B)", len(m.Used()), bytesOf(m.Used()), len(base.Used()), bytesOf(base.Used()))
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("without its planted operations the program differs from the clean one (%d events, want %d)", len(got), len(want))
				}
				checkPlanted(t, m, f.Name, events)
			})
		}
	}
}

// checkPlanted checks the planted operations of one iteration of m
// (the first of events), flaw by flaw.
func checkPlanted(t *testing.T, m *Step, f config.Flaw, events []program.Event) {
	t.Helper()
	var ops []*program.Op
	for _, e := range events {
		if e.Op != nil {
			ops = append(ops, e.Op)
		}
	}
	ops = ops[:len(ops)/2] // one iteration
	count := map[program.OpKind]int{}
	for _, op := range ops {
		if planted(op) {
			count[op.Kind]++
		}
	}
	launches := 0
	for _, op := range m.Iteration.Ops() {
		if op.Kind == program.Kernel || op.Kind == program.Memset {
			launches++
		}
	}
	fwd := m.Forward().Ops()
	only := func(want map[program.OpKind]int) {
		t.Helper()
		if !reflect.DeepEqual(count, want) {
			t.Errorf("planted %v, want %v", count, want)
		}
	}
	switch f {
	case config.SyncEveryLaunch:
		only(map[program.OpKind]int{program.Sync: launches})
		for i, op := range ops {
			if (op.Kind == program.Kernel || op.Kind == program.Memset) && (i+1 == len(ops) || ops[i+1].Kind != program.Sync) {
				t.Fatalf("%s at %s is not followed by a sync", op.Name, op.Where())
			}
		}
	case config.AllocPerIteration:
		n := len(m.perIteration())
		only(map[program.OpKind]int{program.Alloc: n, program.Free: n})
		for i := range n {
			if fwd[i].Kind != program.Alloc {
				t.Fatalf("forward op %d is %s, want the allocations first", i, fwd[i])
			}
		}
		last := ops[len(ops)-n:]
		for _, op := range last {
			if op.Kind != program.Free {
				t.Fatalf("%s among the iteration's last ops, want only frees", op)
			}
		}
		if len(m.Dynamic()) != n || len(m.Static())+n != len(m.Used()) {
			t.Errorf("%d dynamic buffers of %d used, want %d", len(m.Dynamic()), len(m.Used()), n)
		}
		for _, b := range m.Dynamic() {
			if b == m.Loss || b.Group != program.Activations {
				t.Errorf("%s (%s) is allocated per iteration", b, b.Group)
			}
		}
	case config.HostStall:
		only(map[program.OpKind]int{program.Host: 1})
		if ops[0].Kind != program.Host || ops[0].Name != "dataLoaderStall" || ops[0].Func == nil {
			t.Errorf("first op %s, want the host stall", ops[0])
		}
	case config.ReadbackPerLayer:
		L := m.Dims.L
		only(map[program.OpKind]int{program.Memcpy: L, program.Sync: L})
		n := 0
		for i, op := range fwd {
			if op.Kind != program.Memcpy {
				continue
			}
			if op.Dir != program.DeviceToHost || op.Bytes != m.Elem.Size() || op.Layer != n || fwd[i+1].Kind != program.Sync ||
				fwd[i-1].Step != "residual2" {
				t.Errorf("readback %s at %s (%d B) then %s", op, op.Where(), op.Bytes, fwd[i+1])
			}
			n++
		}
	case config.PageableUpload, config.PinnedUpload:
		only(map[program.OpKind]int{program.Memcpy: 2})
		host := program.Pageable
		if f == config.PinnedUpload {
			host = program.Pinned
		}
		direct := m.Iteration.Direct()
		if len(direct) != 2 || direct[0].Dst.Buf != m.Tokens || direct[1].Dst.Buf != m.Targets {
			t.Fatalf("the iteration's own ops are %v, want the tokens' and targets' uploads", direct)
		}
		for _, op := range direct {
			if op.Dir != program.HostToDevice || op.Host != host || op.Bytes != op.Dst.Buf.Bytes() {
				t.Errorf("upload %s", op)
			}
		}
	case config.SerialCopies, config.OverlappedCopies:
		checkOffload(t, m, f, ops)
	default:
		t.Fatalf("no test for flaw %s", f)
	}
}

// checkOffload checks serial-copies' and overlapped-copies' operations in
// one iteration's ops: after each layer's backward, one pinned
// device-to-host cudaMemcpyAsync of each of its parameter gradients, on
// the compute stream (serial) or after an event on the copy stream
// (overlapped, whose backward ends waiting for the last copy).
func checkOffload(t *testing.T, m *Step, f config.Flaw, ops []*program.Op) {
	t.Helper()
	L, k := m.Dims.L, len(m.layerGrads(0))
	if k != 12 {
		t.Errorf("%d gradient tensors a GPT-2 layer, want 12", k)
	}
	overlapped := f == config.OverlappedCopies
	want := map[program.OpKind]int{program.Memcpy: L * k}
	stream := program.ComputeStream
	if overlapped {
		want[program.EventOp], stream = 2*L+2, program.CopyStream
	}
	count := map[program.OpKind]int{}
	for _, op := range m.Backward().Ops() {
		if planted(op) {
			count[op.Kind]++
		}
	}
	if !reflect.DeepEqual(count, want) {
		t.Errorf("the backward plants %v, want %v (and the forward nothing)", count, want)
	}
	bwd := m.Backward().Ops()
	isEvent := func(op *program.Op, call, ev string, s int) bool {
		return op.Kind == program.EventOp && op.Name == call && op.Event == ev && op.Stream == s
	}
	for i := 0; i < len(bwd); i++ {
		op := bwd[i]
		if !planted(op) || op.Step == "join copies" { // the join: below
			continue
		}
		l := op.Layer
		// The layer's backward has just ended: its last kernel is ln1's.
		if prev := bwd[i-1]; prev.Kind != program.Kernel || prev.Layer != l || prev.Step != "ln1" {
			t.Fatalf("layer %d's offload follows %s at %s, want the layer's ln1 backward", l, prev, prev.Where())
		}
		if overlapped {
			if !isEvent(bwd[i], program.EventRecord, gradsReady, program.ComputeStream) ||
				!isEvent(bwd[i+1], program.StreamWaitEvent, gradsReady, program.CopyStream) {
				t.Fatalf("layer %d's offload starts %s, %s; want the compute stream's record and the copy stream's wait", l, bwd[i], bwd[i+1])
			}
			i += 2
		}
		for j, g := range m.layerGrads(l) {
			c := bwd[i+j]
			if c.Kind != program.Memcpy || c.Name != program.RuntimeMemcpyAsync || c.Dir != program.DeviceToHost || c.Host != program.Pinned ||
				c.Stream != stream || c.Dst != g || c.Bytes != g.Bytes() || c.Layer != l || c.Step != "offload grads" {
				t.Fatalf("layer %d copy %d is %s at %s, want %s to pinned memory on stream %d", l, j, c, c.Where(), g, stream)
			}
		}
		i += k - 1
		if overlapped && l == 0 {
			i++
			if !isEvent(bwd[i], program.EventRecord, copiesDone, program.CopyStream) {
				t.Fatalf("after the last layer's copies %s, want the copy stream's record", bwd[i])
			}
		}
	}
	last := bwd[len(bwd)-1]
	if joined := isEvent(last, program.StreamWaitEvent, copiesDone, program.ComputeStream); joined != overlapped {
		t.Errorf("the backward ends with %s", last)
	}
	if msg := streamRaces(ops); msg != "" {
		t.Errorf("%s", msg)
	}
}

// access is one operation's read or write of a buffer's elements [lo, hi)
// on a stream, at that stream's clock.
type access struct {
	op     *program.Op
	buf    *program.Buffer
	lo, hi int64
	write  bool
	stream int
	clock  int
}

func accesses(op *program.Op) []access {
	var out []access
	add := func(v program.View, w bool) {
		if !v.IsNull() {
			out = append(out, access{op: op, buf: v.Buf, lo: v.Offset, hi: v.Offset + v.Elems, write: w, stream: op.Stream})
		}
	}
	switch op.Kind {
	case program.Kernel:
		for _, a := range op.Args {
			if a.Kind == program.Ptr {
				add(a.View, a.Access != program.Read)
			}
		}
	case program.Memset:
		add(op.Dst, true)
	case program.Memcpy:
		add(op.Dst, op.Dir == program.HostToDevice)
	}
	return out
}

// streamRaces replays ops, in the order the host issues them, on one
// vector clock per stream, as CUDA orders them: a stream's operations in
// turn, a wait after the event's last record, a device synchronisation
// (and cudaFree, cudaMalloc) after everything so far. It returns the first
// two accesses to the same elements, one of them a write, on two streams
// that nothing orders, or "".
func streamRaces(ops []*program.Op) string {
	var vc [program.Streams][program.Streams]int // vc[s][u]: stream s's next op comes after u's first vc[s][u] ops
	events := map[string][program.Streams]int{}
	var seen [program.Streams][]access
	joinAll := func() {
		var all [program.Streams]int
		for s := range vc {
			for u := range vc[s] {
				all[u] = max(all[u], vc[s][u])
			}
		}
		for s := range vc {
			vc[s] = all
		}
	}
	for _, op := range ops {
		s := op.Stream
		switch {
		case op.Kind == program.EventOp && op.Name == program.EventRecord:
			events[op.Event] = vc[s]
			continue
		case op.Kind == program.EventOp:
			ev := events[op.Event]
			for u := range ev {
				vc[s][u] = max(vc[s][u], ev[u])
			}
			continue
		case op.Kind == program.Sync && op.Name == program.DeviceSynchronize, op.Kind == program.Alloc, op.Kind == program.Free:
			joinAll()
			continue
		case op.Kind == program.Sync:
			// The host waits for stream s: what it issues next, on any
			// stream, comes after s's work.
			for u := range vc {
				vc[u][s] = max(vc[u][s], vc[s][s])
			}
			continue
		}
		vc[s][s]++
		for _, a := range accesses(op) {
			a.clock = vc[s][s]
			for u := range seen {
				if u == s {
					continue
				}
				for _, b := range seen[u] {
					if b.buf == a.buf && b.lo < a.hi && a.lo < b.hi && (a.write || b.write) && vc[s][u] < b.clock {
						return fmt.Sprintf("race on %s: %s at %s (stream %d) and %s at %s (stream %d), unordered",
							a.buf, b.op, b.op.Where(), u, a.op, a.op.Where(), s)
					}
				}
			}
			seen[s] = append(seen[s], a)
		}
	}
	return ""
}

// dropOps removes the operations drop picks from r and its children.
func dropOps(r *program.Range, drop func(*program.Op) bool) {
	items := r.Items[:0]
	for _, it := range r.Items {
		if it.Range != nil {
			dropOps(it.Range, drop)
		}
		if it.Op == nil || !drop(it.Op) {
			items = append(items, it)
		}
	}
	r.Items = items
}

// TestOverlappedCopiesOrdered: over two iterations issued back to back,
// overlapped-copies' events order every copy after the kernels that wrote
// its gradients and before the next iteration's kernels that overwrite
// them, in GPT-2 and LLaMA, alone and with the flaws that compose with it;
// without either wait the race is found.
func TestOverlappedCopiesOrdered(t *testing.T) {
	gpt := config.Dims{V: 1000, MaxT: 40, T: 37, L: 3, NH: 3, C: 96, B: 3}
	p, err := config.LookupPreset("llama-tiny")
	if err != nil {
		t.Fatal(err)
	}
	llama := p.Dims(2)
	others := []config.Flaw{config.SyncEveryLaunch, config.AllocPerIteration, config.HostStall, config.ReadbackPerLayer, config.PageableUpload}
	for _, d := range []config.Dims{gpt, llama} {
		for _, f := range []config.Flaw{config.SerialCopies, config.OverlappedCopies} {
			for _, fs := range [][]config.Flaw{{f}, append([]config.Flaw{f}, others...)} {
				m := Program(d, config.Train, Options{Flaws: fs})
				_, events := trace(t, m, 2)
				var ops []*program.Op
				copies := 0
				for _, e := range events {
					if e.Op != nil {
						ops = append(ops, e.Op)
						if e.Op.Kind == program.Memcpy && e.Op.Step == "offload grads" {
							copies++
						}
					}
				}
				if want := 2 * d.L * len(m.layerGrads(0)); copies != want {
					t.Errorf("%s %v: %d offload copies in 2 iterations, want %d", d.Arch, fs, copies, want)
				}
				if msg := streamRaces(ops); msg != "" {
					t.Errorf("%s %v: %s", d.Arch, fs, msg)
				}
			}
		}
		for _, ev := range []string{gradsReady, copiesDone} {
			m := Program(d, config.Train, Options{Flaws: []config.Flaw{config.OverlappedCopies}})
			dropOps(&m.Iteration, func(op *program.Op) bool { return op.Name == program.StreamWaitEvent && op.Event == ev })
			_, events := trace(t, m, 2)
			var ops []*program.Op
			for _, e := range events {
				if e.Op != nil {
					ops = append(ops, e.Op)
				}
			}
			if msg := streamRaces(ops); !strings.Contains(msg, "race on grads") {
				t.Errorf("%s without the wait for %q: %q, want a race on the gradients", d.Arch, ev, msg)
			}
		}
	}
}

// TestFlawsCompose: all the flaws that can run together plant the sum of
// their operations, and the lifetimes still hold.
func TestFlawsCompose(t *testing.T) {
	d := config.Dims{V: 1000, MaxT: 40, T: 37, L: 3, NH: 3, C: 96, B: 3}
	all := []config.Flaw{config.SyncEveryLaunch, config.AllocPerIteration, config.HostStall, config.ReadbackPerLayer, config.PageableUpload}
	for _, mode := range modes {
		for _, depth := range []config.NVTXDepth{config.NVTXIteration, config.NVTXLayer, config.NVTXOp} {
			base := Program(d, mode, Options{NVTX: depth})
			want, _ := trace(t, base, 1)
			m := Program(d, mode, Options{NVTX: depth, Flaws: all})
			got, events := trace(t, m, 3)
			if !reflect.DeepEqual(got[:len(want)], want) {
				t.Errorf("%s %s: all flaws together change the clean program's operations", mode, depth)
			}
			n := 0
			for _, e := range events {
				if e.Op != nil && planted(e.Op) {
					n++
				}
			}
			L, kernels := d.L, 0
			for _, op := range base.Iteration.Ops() {
				if op.Kind == program.Kernel || op.Kind == program.Memset {
					kernels++
				}
			}
			if want := 3 * (kernels + 2*len(m.perIteration()) + 1 + 2*L + 2); n != want {
				t.Errorf("%s %s: %d planted ops in 3 iterations, want %d", mode, depth, n, want)
			}
		}
	}
}

// TestRecorderTracksLifetimes: the Recorder refuses a use after free, a
// double allocation and a free of what is not allocated.
func TestRecorderTracksLifetimes(t *testing.T) {
	d := config.Dims{V: 50, MaxT: 8, T: 4, L: 1, NH: 1, C: 4, B: 1}
	m := Program(d, config.Infer, Options{Flaws: []config.Flaw{config.AllocPerIteration}})
	fwd := m.Forward()
	var rec program.Recorder
	rec.Track(m.Program)
	// Skip the allocations: the first kernel uses an unallocated buffer.
	var first *program.Op
	for _, op := range fwd.Ops() {
		if op.Kind == program.Kernel {
			first = op
			break
		}
	}
	if err := rec.Do(first); err == nil || !strings.Contains(err.Error(), "not allocated") {
		t.Errorf("kernel on unallocated buffers: %v", err)
	}
	alloc := fwd.Ops()[0]
	if err := rec.Do(alloc); err != nil {
		t.Fatal(err)
	}
	if err := rec.Do(alloc); err == nil || !strings.Contains(err.Error(), "already allocated") {
		t.Errorf("double allocation: %v", err)
	}
	free := program.Op{Kind: program.Free, Name: program.MemFree, Dst: m.Logits.All()}
	if err := rec.Do(&free); err == nil || !strings.Contains(err.Error(), "not allocated") {
		t.Errorf("free of an unallocated buffer: %v", err)
	}
}

func bytesOf(bs []*program.Buffer) int64 {
	var n int64
	for _, b := range bs {
		n += b.Bytes()
	}
	return n
}

// unfusedGELU are the kernels of kernels.GELUChain, in launch order.
var unfusedGELU = []string{"elem_mul", "elem_mul", "elem_axpby", "elem_tanh_scale", "elem_mul", "elem_axpby"}

// kernelName is op's entry without the _bf16 suffix of a bf16 step.
func kernelName(op *program.Op) string { return strings.TrimSuffix(op.Name, "_bf16") }

// ptrArg is op's pointer argument param (a null view when it has none).
func ptrArg(op *program.Op, param string) program.View {
	for _, a := range op.Args {
		if a.Param == param && a.Kind == program.Ptr {
			return a.View
		}
	}
	return program.View{}
}

// TestUnfused: in every mode, dtype, NVTX depth and with --graph, the
// unfused program is the clean one with, in each layer's forward, every
// biased product launched without its bias and followed by a bias_add over
// its output, and gelu_forward replaced by the GELU chain from fch into
// fch_gelu through gelu_tmp; everything else (the backward, the head, the
// embedding, the residual adds) unchanged. Its buffers are the clean ones
// and gelu_tmp, its FLOPs the clean ones and the chain's extra.
func TestUnfused(t *testing.T) {
	d := config.Dims{V: 1000, MaxT: 40, T: 37, L: 3, NH: 3, C: 96, B: 3}
	N, C := int64(d.Rows()), int64(d.C)
	for _, c := range flawCases() {
		name := fmt.Sprintf("%s/%s/%s/graph=%v", c.mode, c.dtype, c.nvtx, c.graph)
		t.Run(name, func(t *testing.T) {
			o := Options{DType: c.dtype, NVTX: c.nvtx, Graph: c.graph}
			base := Program(d, c.mode, o)
			o.Flaws = []config.Flaw{config.Unfused}
			m := Program(d, c.mode, o)
			trace(t, m, 2) // the Recorder validates every launch and lifetime

			// Buffers: the clean ones, then gelu_tmp.
			used, clean := m.Used(), base.Used()
			tmp := m.Find("gelu_tmp", -1)
			if tmp == nil || tmp.Elems != N*4*C || tmp.Elem != m.Elem || tmp.Group != program.Activations {
				t.Fatalf("gelu_tmp is %v, want (N,4C) %s activations", tmp, m.Elem)
			}
			if len(used) != len(clean)+1 || bytesOf(used) != bytesOf(clean)+tmp.Bytes() {
				t.Errorf("buffers %d (%d B), want the clean %d (%d B) and gelu_tmp (%d B)", len(used), bytesOf(used), len(clean), bytesOf(clean), tmp.Bytes())
			}
			if base.Find("gelu_tmp", -1) != nil {
				t.Error("the clean program declares gelu_tmp")
			}

			// The backward is the clean one.
			if c.mode == config.Train {
				got, want := m.Backward().Ops(), base.Backward().Ops()
				if len(got) != len(want) {
					t.Fatalf("backward: %d ops, clean %d", len(got), len(want))
				}
				for i := range got {
					if got[i].Where()+" "+got[i].String() != want[i].Where()+" "+want[i].String() {
						t.Fatalf("backward op %d: %s %s, clean %s %s", i, got[i].Where(), got[i], want[i].Where(), want[i])
					}
				}
			}

			// The forward, op by op against the clean one.
			got, want := m.Forward().Ops(), base.Forward().Ops()
			k, biasAdds, chains := 0, 0, 0
			next := func() *program.Op {
				t.Helper()
				if k == len(got) {
					t.Fatalf("the unfused forward ends early")
				}
				k++
				return got[k-1]
			}
			var fwdFLOPs, cleanFLOPs, matmul, cleanMatmul int64
			for _, op := range got {
				fwdFLOPs, matmul = fwdFLOPs+op.FLOPs, matmul+op.MatmulFLOPs
			}
			for _, w := range want {
				cleanFLOPs, cleanMatmul = cleanFLOPs+w.FLOPs, cleanMatmul+w.MatmulFLOPs
				g := next()
				if g.Where() != w.Where() {
					t.Fatalf("op %d at %s, clean at %s", k-1, g.Where(), w.Where())
				}
				switch {
				case strings.HasPrefix(w.Name, "matmul_forward") && !ptrArg(w, "bias").IsNull():
					if g.Name != w.Name || g.Grid != w.Grid || g.Block != w.Block || !ptrArg(g, "bias").IsNull() ||
						!sameView(ptrArg(g, "out"), ptrArg(w, "out")) || g.MatmulFLOPs != w.MatmulFLOPs {
						t.Fatalf("%s: %s, want the clean %s without its bias", w.Where(), g, w)
					}
					b := next()
					if kernelName(b) != "bias_add" || !sameView(ptrArg(b, "out"), ptrArg(w, "out")) || !sameView(ptrArg(b, "bias"), ptrArg(w, "bias")) ||
						b.Layer != w.Layer || b.Step != w.Step {
						t.Fatalf("%s: after the product %s, want bias_add of its bias over its output", w.Where(), b)
					}
					if g.FLOPs+b.FLOPs != w.FLOPs {
						t.Errorf("%s: product and bias_add count %d FLOPs, the fused product %d", w.Where(), g.FLOPs+b.FLOPs, w.FLOPs)
					}
					biasAdds++
				case kernelName(w) == "gelu_forward":
					chain := []*program.Op{g}
					for range len(unfusedGELU) - 1 {
						chain = append(chain, next())
					}
					for i, op := range chain {
						if kernelName(op) != unfusedGELU[i] || op.Step != "gelu" {
							t.Fatalf("%s: GELU chain op %d is %s, want %s", w.Where(), i, op, unfusedGELU[i])
						}
						// It reads fch (the first only fch) and gelu_tmp.
						for _, a := range op.Args {
							if a.Kind != program.Ptr || a.Access != program.Read {
								continue
							}
							if fch := sameView(a.View, ptrArg(w, "inp")); !fch && (i == 0 || !sameView(a.View, tmp.All())) {
								t.Fatalf("%s: %s reads %s", w.Where(), op, a.View)
							}
						}
						if out := ptrArg(op, "out"); i < len(chain)-1 && !sameView(out, tmp.All()) || i == len(chain)-1 && !sameView(out, ptrArg(w, "out")) {
							t.Fatalf("%s: %s writes %s", w.Where(), op, out)
						}
					}
					chains++
				default:
					if g.String() != w.String() {
						t.Fatalf("%s: %s, clean %s", w.Where(), g, w)
					}
				}
			}
			if k != len(got) {
				t.Fatalf("the unfused forward has %d ops past the clean one's", len(got)-k)
			}
			if biasAdds != 4*d.L || chains != d.L {
				t.Errorf("%d bias_adds and %d GELU chains, want 4 and 1 per layer", biasAdds, chains)
			}
			if len(got) != len(want)+9*d.L {
				t.Errorf("forward: %d ops, want the clean %d and 9 per layer", len(got), len(want))
			}
			// The chain's FLOPs: 11 an element (kernels' constants) where
			// gelu_forward counts 9; the matmuls' unchanged.
			chainFLOPs := int64(3*kernels.ElemMulFLOPs + 2*kernels.ElemAxpbyFLOPs + kernels.TanhScaleFLOPs)
			if extra := int64(d.L) * N * 4 * C * (chainFLOPs - kernels.GELUFwdFLOPs); fwdFLOPs != cleanFLOPs+extra || matmul != cleanMatmul {
				t.Errorf("forward FLOPs %d (matmul %d), want the clean %d (%d) and the GELU chain's %d", fwdFLOPs, matmul, cleanFLOPs, cleanMatmul, extra)
			}
		})
	}
}

// TestUnfusedComposes: unfused with every other flaw that runs in the same
// program plants their operations around its kernels.
func TestUnfusedComposes(t *testing.T) {
	d := config.Dims{V: 1000, MaxT: 40, T: 37, L: 3, NH: 3, C: 96, B: 3}
	for _, mode := range modes {
		alone := Program(d, mode, Options{Flaws: []config.Flaw{config.Unfused}})
		fs := []config.Flaw{config.SyncEveryLaunch, config.AllocPerIteration, config.HostStall, config.Unfused, config.ReadbackPerLayer, config.PageableUpload}
		m := Program(d, mode, Options{Flaws: fs})
		want, _ := trace(t, alone, 1)
		got, _ := trace(t, m, 2)
		if !reflect.DeepEqual(got[:len(want)], want) {
			t.Errorf("%s: the other flaws change unfused's operations", mode)
		}
		if !slices.Contains(m.perIteration(), m.Find("gelu_tmp", -1)) {
			t.Errorf("%s: alloc-per-iteration does not allocate gelu_tmp each iteration", mode)
		}
	}
}

// kernelFlaw says whether f is one of the kernel flaws, which change
// launches and plant no operation.
func kernelFlaw(f config.Flaw) bool {
	return f == config.LowOccupancy || f == config.Uncoalesced || f == config.BankConflicts
}

// checkKernelFlaw compares program m, built with the kernel flaws fs, with
// the clean program base operation by operation, setup included: the same
// operations in the same places, each launching what the clean one does
// but for exactly the flaws' changes, rebuilt here from the clean launch's
// own arguments through the same launchers: residual_forward becomes
// residual_forward_strided (uncoalesced); the fp32 products plan with
// gemmplan.Largest (low-occupancy); matmul_forward becomes
// matmul_forward_nopad with its tile (bank-conflicts).
func checkKernelFlaw(t *testing.T, base, m *Step, fs []config.Flaw) {
	t.Helper()
	if len(m.Setup) != len(base.Setup) {
		t.Fatalf("setup has %d operations, clean %d", len(m.Setup), len(base.Setup))
	}
	for i := range m.Setup {
		if !sameLaunch(m.Setup[i], base.Setup[i]) {
			t.Errorf("setup op %d: %s, clean %s", i, &m.Setup[i], &base.Setup[i])
		}
	}
	got, want := m.Iteration.Ops(), base.Iteration.Ops()
	if len(got) != len(want) {
		t.Fatalf("%d operations, clean %d", len(got), len(want))
	}
	has := func(f config.Flaw) bool { return config.HasFlaw(fs, f) }
	changed := map[string]int{}
	for i := range got {
		g, w := *got[i], *want[i]
		if g.Where() != w.Where() || g.Kind != w.Kind {
			t.Fatalf("op %d at %s (%s), clean at %s (%s)", i, g.Where(), g.Kind, w.Where(), w.Kind)
		}
		exp := w
		v := func(name string) program.View { return argOf(w, name).View }
		n := func(name string) int { return int(argOf(w, name).Int) }
		big := gemmplan.Tiles[0]
		ws := func() kernels.MatmulScratch {
			return kernels.MatmulScratch{Partials: argOf(w, "partials").View, Counters: argOf(w, "counters").View}
		}
		// The clean launch's own plan, from its arguments.
		cleanPlan := func(m, nn int) gemmplan.Split {
			tl := tileOf(t, n("tile"))
			return gemmplan.Split{Tile: tl, Tiles: tl.Blocks(m, nn), Slices: n("splits"), SliceK: n("slice_k")}
		}
		switch {
		case has(config.Uncoalesced) && (w.Name == "residual_forward" || w.Name == "residual_forward_bf16"):
			exp = kernels.ResidualForwardStrided(v("out"), v("a"), v("b"), n("n"))
		case w.Name == "matmul_forward" && (has(config.LowOccupancy) || has(config.BankConflicts)):
			p := cleanPlan(n("N"), n("OC"))
			if has(config.LowOccupancy) {
				p = gemmplan.SplitOf(big, n("N"), n("OC"), n("C"), 1)
			}
			exp = kernels.MatmulForwardPlan(v("out"), v("inp"), v("w"), v("bias"), ws(), n("N"), n("C"), n("OC"), p)
			if has(config.BankConflicts) {
				exp.Name = kernels.MatmulForwardNoPad
			}
		case w.Name == "matmul_backward_input" && has(config.LowOccupancy):
			exp = kernels.MatmulBackwardInputPlan(v("dinp"), v("dout"), v("w"), ws(), n("N"), n("C"), n("OC"),
				gemmplan.SplitOf(big, n("N"), n("C"), n("OC"), 1))
		case w.Name == "matmul_backward_weight" && has(config.LowOccupancy):
			exp = kernels.MatmulBackwardWeightPlan(v("dw"), v("dout"), v("inp"), ws(), n("N"), n("C"), n("OC"),
				gemmplan.SplitOf(big, n("OC"), n("C"), n("N"), 1))
		}
		if !sameLaunch(g, exp) {
			t.Errorf("op %d at %s: %s, want %s (clean %s)", i, g.Where(), &g, &exp, &w)
		}
		if !sameLaunch(g, w) {
			changed[w.Name+" → "+g.Name]++
		}
	}
	// Every flaw changed something, and only what it owns.
	for _, f := range fs {
		n := 0
		for k, c := range changed {
			switch f {
			case config.Uncoalesced:
				if strings.HasPrefix(k, "residual_forward") {
					n += c
				}
			case config.BankConflicts:
				if strings.HasSuffix(k, "matmul_forward_nopad") {
					n += c
				}
			case config.LowOccupancy:
				if strings.HasPrefix(k, "matmul_") {
					n += c
				}
			}
		}
		if n == 0 {
			t.Errorf("%s changed no launch (%v)", f, changed)
		}
	}
}

func argOf(op program.Op, name string) program.Arg {
	for _, a := range op.Args {
		if a.Param == name {
			return a
		}
	}
	panic(fmt.Sprintf("%s has no argument %s", op.Name, name))
}

func tileOf(t *testing.T, code int) gemmplan.Tile {
	for _, tl := range gemmplan.Tiles {
		if tl.Code == code {
			return tl
		}
	}
	t.Fatalf("no tile of code %d", code)
	return gemmplan.Tile{}
}

// sameLaunch compares what two operations launch: kind, module, entry,
// shape, arguments and counts (not their place, which the caller checks).
func sameLaunch(a, b program.Op) bool {
	if a.Kind != b.Kind || a.Module != b.Module || a.Name != b.Name || a.Grid != b.Grid || a.Block != b.Block ||
		a.SharedBytes != b.SharedBytes || a.FLOPs != b.FLOPs || a.Bytes != b.Bytes || len(a.Args) != len(b.Args) || !sameView(a.Dst, b.Dst) {
		return false
	}
	for i := range a.Args {
		x, y := a.Args[i], b.Args[i]
		if x.Param != y.Param || x.Kind != y.Kind || !sameView(x.View, y.View) || x.Touch != y.Touch || x.Int != y.Int || x.Float != y.Float {
			return false
		}
	}
	return true
}

// sameView compares views of two programs' buffers (each program has its
// own): the same buffer by name and layer, the same elements.
func sameView(a, b program.View) bool {
	if a.IsNull() || b.IsNull() {
		return a.IsNull() == b.IsNull()
	}
	return a.String() == b.String() && a.Buf.Name == b.Buf.Name && a.Buf.Layer == b.Buf.Layer && a.Buf.Elem == b.Buf.Elem &&
		a.Offset == b.Offset && a.Elems == b.Elems
}

// TestKernelFlaws: the kernel flaws, alone and together, in both modes
// and both architectures' fp32 programs (and uncoalesced with bf16), on
// the tiny preset where the grids matter: each launches exactly its
// change (checkKernelFlaw), with and without --graph. On the tiny model
// at DefaultSMs, low-occupancy gives every forward product fewer blocks
// than SMs and fewer than the clean plan's grid (which is what check's
// signature holds a report to).
func TestKernelFlaws(t *testing.T) {
	for _, preset := range []string{"tiny", "llama-tiny"} {
		p, err := config.LookupPreset(preset)
		if err != nil {
			t.Fatal(err)
		}
		d := p.Dims(config.DefaultBatch)
		for _, mode := range []config.Mode{config.Train, config.Infer} {
			for _, c := range []struct {
				dt config.DType
				fs []config.Flaw
			}{
				{config.FP32, []config.Flaw{config.LowOccupancy}},
				{config.FP32, []config.Flaw{config.Uncoalesced}},
				{config.FP32, []config.Flaw{config.BankConflicts}},
				{config.FP32, []config.Flaw{config.LowOccupancy, config.Uncoalesced, config.BankConflicts}},
				{config.BF16, []config.Flaw{config.Uncoalesced}},
				{config.TF32, []config.Flaw{config.Uncoalesced}},
			} {
				t.Run(fmt.Sprintf("%s/%s/%s/%s", preset, mode, c.dt, config.FlawList(c.fs)), func(t *testing.T) {
					for _, graph := range []bool{false, true} {
						base := Program(d, mode, Options{DType: c.dt, Graph: graph})
						m := Program(d, mode, Options{DType: c.dt, Graph: graph, Flaws: c.fs})
						checkKernelFlaw(t, base, m, c.fs)
					}
				})
			}
		}
	}
	// What the lesson shows on the tiny model at 132 SMs: under
	// low-occupancy every forward product has fewer blocks than SMs and
	// fewer than the clean plan's (16 to 96 of them).
	p, _ := config.LookupPreset("tiny")
	d := p.Dims(config.DefaultBatch)
	base := Program(d, config.Train, Options{})
	m := Program(d, config.Train, Options{Flaws: []config.Flaw{config.LowOccupancy}})
	cf, lf := base.Forward().Ops(), m.Forward().Ops()
	products := 0
	for i := range lf {
		if lf[i].Name != "matmul_forward" {
			continue
		}
		products++
		lb, cb := lf[i].Grid.X*lf[i].Grid.Y*lf[i].Grid.Z, cf[i].Grid.X*cf[i].Grid.Y*cf[i].Grid.Z
		if lb >= DefaultSMs || lb >= cb {
			t.Errorf("%s: %d blocks under low-occupancy, %d clean, on %d SMs", lf[i].Where(), lb, cb, DefaultSMs)
		}
	}
	if products != 4*d.L+1 {
		t.Errorf("%d forward products, want %d", products, 4*d.L+1)
	}
}
