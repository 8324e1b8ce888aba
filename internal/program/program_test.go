package program

import (
	"strings"
	"testing"
)

func op(args ...Arg) Op {
	return Op{Kind: Kernel, Name: "k", Module: "m", Grid: D1(4), Block: D1(128), Args: args}
}

func TestValidate(t *testing.T) {
	var p Program
	b := p.Buffer("x", -1, F32, 100, Scratch)
	h := p.Buffer("h", -1, BF16, 7, Scratch) // an odd count: 14 bytes, not 32-bit words
	bad := []struct {
		op   Op
		want string
	}{
		{op(In("a", b.Slice("", 90, 20), 20)), "outside its buffer"},
		{op(Out("a", b.All(), 101)), "touches 101 elements"},
		{op(InOut("a", View{}, 8)), "a null pointer"},
		{Op{Kind: Kernel, Name: "k", Module: "m", Grid: D1(0), Block: D1(32)}, "grid"},
		{Op{Kind: Kernel, Name: "k", Module: "m", Grid: D3(1, 70000, 1), Block: D1(32)}, "grid"},
		{Op{Kind: Kernel, Name: "k", Module: "m", Grid: D1(1), Block: D1(2048)}, "block"},
		{Op{Kind: Kernel, Name: "k", Grid: D1(1), Block: D1(32)}, "must be named"},
		{Op{Kind: Memset, Name: MemsetD32}, "no target"},
		{Op{Kind: Memset, Name: MemsetD32, Dst: h.All()}, "need cuMemsetD16Async"},
		{Op{Kind: Memset, Name: MemsetD16, Dst: b.All()}, "need cuMemsetD32Async"},
		{Op{Kind: "teleport"}, "unknown operation kind"},
	}
	for _, c := range bad {
		if err := Validate(&c.op); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%v) = %v, want an error containing %q", &c.op, err, c.want)
		}
	}
	good := []Op{
		op(In("a", b.All(), 100), Out("b", View{}, 0), Int("n", 3), Float("f", 1)),
		{Kind: Memset, Name: MemsetD32, Dst: b.All()},
		{Kind: Memset, Name: MemsetD16, Dst: h.All()},
	}
	for _, o := range good {
		if err := Validate(&o); err != nil {
			t.Errorf("Validate(%v): %v", &o, err)
		}
	}
}

func TestRunAndRecorder(t *testing.T) {
	var p Program
	b := p.Buffer("x", -1, F32, 10, Scratch)
	unused := p.Buffer("unused", -1, F32, 10, Scratch)
	p.Iteration.Name = IterationTemplate
	p.Iteration.Nest(Forward).Add(op(Out("o", b.All(), 10)))
	var rec Recorder
	if err := Run(&p.Iteration, &rec); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range rec.Events {
		got = append(got, e.String())
	}
	want := "push iteration{i}|push forward|k<<<(4,1,1), (128,1,1), 0>>>(o=x)|pop|pop"
	if strings.Join(got, "|") != want || rec.Open() != 0 {
		t.Errorf("events %q, want %q", strings.Join(got, "|"), want)
	}
	if err := rec.Pop(); err == nil {
		t.Error("a pop of an empty stack passed")
	}
	if u := p.Used(); len(u) != 1 || u[0] != b {
		t.Errorf("Used() = %v, want only x (not %v)", u, unused)
	}
	// A bad op stops the run, closes the ranges and says where it was.
	p.Iteration.Child(Forward).Add(Op{Kind: Kernel, Name: "bad", Module: "m", Grid: D1(1), Block: D1(4096), Part: "layer", Layer: 2, Step: "fc"})
	rec = Recorder{}
	err := Run(&p.Iteration, &rec)
	if err == nil || !strings.Contains(err.Error(), "layer 2 / fc") || rec.Open() != 0 {
		t.Errorf("Run with a bad op: %v, %d ranges open", err, rec.Open())
	}
}

// TestCaptureAsGraph: a pass becomes one graph operation whose nodes are
// its operations, in order, with their FLOPs; Ops and Used still see the
// nodes; a range with a nested range cannot be captured.
func TestCaptureAsGraph(t *testing.T) {
	var p Program
	b := p.Buffer("x", -1, F32, 10, Scratch)
	r := &p.Iteration
	a, c := op(Out("o", b.All(), 10)), op(In("i", b.All(), 10))
	a.FLOPs, c.FLOPs = 3, 4
	r.Add(a, Op{Kind: Memset, Name: MemsetD32, Dst: b.All()}, c)
	if err := CaptureAsGraph(r); err != nil {
		t.Fatal(err)
	}
	if len(r.Items) != 1 || r.Items[0].Op.Kind != Graph || r.Items[0].Op.FLOPs != 7 || len(r.Items[0].Op.Body.Items) != 3 {
		t.Fatalf("captured %+v", r.Items)
	}
	if ops := r.Ops(); len(ops) != 3 || ops[1].Kind != Memset {
		t.Errorf("Ops() = %v, want the 3 nodes", ops)
	}
	if len(p.Used()) != 1 {
		t.Errorf("Used() = %v", p.Used())
	}
	if err := Validate(r.Items[0].Op); err != nil {
		t.Errorf("Validate(graph): %v", err)
	}
	r.Items[0].Op.Body.Add(Op{Kind: Sync, Name: "cuStreamSynchronize"})
	if err := Validate(r.Items[0].Op); err == nil || !strings.Contains(err.Error(), "cannot be a graph node") {
		t.Errorf("a sync inside a graph: %v", err)
	}
	nested := &Range{Name: "forward"}
	nested.Nest("layer0")
	if err := CaptureAsGraph(nested); err == nil || !strings.Contains(err.Error(), "nested range layer0") {
		t.Errorf("capturing a nested range: %v", err)
	}
}

// TestValidateStreams: asynchronous copies and events may go on the copy
// stream; what runs on no stream, synchronous copies, unknown streams and
// nameless events are refused, and String names a stream that is not the
// compute stream.
func TestValidateStreams(t *testing.T) {
	var p Program
	b := p.Buffer("x", -1, F32, 100, Grads)
	copyOn := func(name string, s int) *Op {
		return &Op{Kind: Memcpy, Name: name, Dst: b.All(), Dir: DeviceToHost, Host: Pinned, Stream: s}
	}
	ok := []*Op{
		copyOn(RuntimeMemcpyAsync, CopyStream),
		{Kind: EventOp, Name: EventRecord, Event: "e", Stream: CopyStream},
		{Kind: EventOp, Name: StreamWaitEvent, Event: "e"},
		{Kind: Sync, Name: RuntimeStreamSynchronize, Stream: CopyStream},
	}
	for _, o := range ok {
		if err := Validate(o); err != nil {
			t.Errorf("%s: %v", o, err)
		}
	}
	bad := map[*Op]string{
		copyOn(RuntimeMemcpy, CopyStream):                               "synchronous",
		copyOn(RuntimeMemcpyAsync, 2):                                   "streams 0..1",
		{Kind: Alloc, Name: RuntimeMalloc, Dst: b.All(), Stream: 1}:     "runs on no stream",
		{Kind: Sync, Name: DeviceSynchronize, Stream: 1}:                "runs on no stream",
		{Kind: EventOp, Name: EventRecord}:                              "names no event",
		{Kind: EventOp, Name: "cuEventRecord", Event: "e"}:              "cudaEventRecord or cudaStreamWaitEvent",
		{Kind: Host, Name: "f", Func: func() {}, Stream: CopyStream}:    "runs on no stream",
		{Kind: Graph, Name: GraphLaunch, Stream: CopyStream, Body: nil}: "runs on no stream",
	}
	for o, want := range bad {
		if err := Validate(o); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", o.Name, err, want)
		}
	}
	if s := copyOn(RuntimeMemcpyAsync, CopyStream).String(); !strings.HasSuffix(s, " on stream 1") {
		t.Errorf("String: %q", s)
	}
	// A graph is captured from the compute stream alone.
	g := Op{Kind: Graph, Name: GraphLaunch, Body: &Range{Name: "r"}}
	n := op()
	n.Stream = CopyStream
	g.Body.Add(n)
	if err := Validate(&g); err == nil || !strings.Contains(err.Error(), "compute stream alone") {
		t.Errorf("graph with a copy-stream node: %v", err)
	}
}

// TestValidateCollectives: an all-reduce needs a view inside its buffer on
// the comm stream; the group calls are host calls.
func TestValidateCollectives(t *testing.T) {
	var p Program
	g := p.Buffer("grads", -1, F32, 100, Grads)
	for _, c := range []struct {
		name string
		op   Op
		ok   bool
	}{
		{"all-reduce", Op{Kind: Collective, Name: NCCLAllReduce, Dst: g.Slice("a", 10, 90), Stream: CommStream}, true},
		{"group start", Op{Kind: Collective, Name: NCCLGroupStart}, true},
		{"group end", Op{Kind: Collective, Name: NCCLGroupEnd}, true},
		{"all-reduce on the compute stream", Op{Kind: Collective, Name: NCCLAllReduce, Dst: g.All()}, false},
		{"all-reduce of nothing", Op{Kind: Collective, Name: NCCLAllReduce, Stream: CommStream}, false},
		{"all-reduce past its buffer", Op{Kind: Collective, Name: NCCLAllReduce, Dst: g.Slice("a", 50, 51), Stream: CommStream}, false},
		{"group on a stream", Op{Kind: Collective, Name: NCCLGroupEnd, Stream: CommStream}, false},
		{"another call", Op{Kind: Collective, Name: "ncclBroadcast", Dst: g.All(), Stream: CommStream}, false},
	} {
		if err := Validate(&c.op); (err == nil) != c.ok {
			t.Errorf("%s: Validate = %v, want ok %v", c.name, err, c.ok)
		}
	}
	if got := AllReduceName(3, 7); got != "allreduce rank3 bucket7" {
		t.Errorf("AllReduceName(3, 7) = %q", got)
	}
}
