// Package cuexec is the CUDA executor of gpubench's programs
// (internal/program): it allocates a program's buffers on a device,
// JIT-compiles the embedded PTX modules, and runs ranges of operations on
// the device's stream (and a second one for the operations a program puts
// there, ordered by events), each NVTX range pushed around its operations.
//
// An operation is prepared the first time it runs (its function looked up,
// its arguments resolved to device addresses and packed); after that a
// launch allocates nothing and converts no string. All calls must come
// from the goroutine, locked to its OS thread, that holds the device's
// context (gpu.Open does the locking).
package cuexec

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unsafe"

	"github.com/gpubench/gpubench/internal/cudart"
	"github.com/gpubench/gpubench/internal/cudrv"
	"github.com/gpubench/gpubench/internal/gpu"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/nvtx"
	"github.com/gpubench/gpubench/ptx"
	"gorgonia.org/cu"
)

// Executor runs programs on one device, on its stream (the compute
// stream, program.ComputeStream) and, for the operations a program puts
// there, a second stream (program.CopyStream).
type Executor struct {
	dev *gpu.Device
	s   cu.Stream
	// copyStream is the second stream, made (non-blocking, so that no
	// legacy-stream call serialises it) when the first operation on it
	// is prepared; events are the CUDA events of the program's EventOp
	// operations by name, made the same way. Both live until Close, so a
	// run makes them before its profiled iterations.
	copyStream    cu.Stream
	hasCopyStream bool
	events        map[string]*cu.Event

	// Comm runs the program's Collective operations: a data-parallel
	// step's all-reduces (nil: the executor refuses them).
	Comm Communicator

	// SyncEachLaunch makes every operation wait for the GPU to finish it
	// and report its fault, if any, under its own name. It serialises
	// host and device, so it is for debugging, never for timing.
	SyncEachLaunch bool

	modules   []cu.Module
	functions map[string]cu.Function // "module/entry"
	// unloadable are the embedded modules whose target this GPU cannot
	// run (an sm_80 tensor-core module on a Volta), by name.
	unloadable map[string]ptx.Target
	ptrs       map[*program.Buffer]cu.DevicePtr
	// cells hold the address of each dynamic buffer: one the program
	// allocates and frees itself (program.Alloc and Free operations), 0
	// while it is not allocated. A prepared operation on one keeps the
	// cell and reads the address at every launch, so it stays valid
	// across the buffer's reallocations (see resolve).
	cells map[*program.Buffer]*cu.DevicePtr
	// host are the host-side copies of the buffers that the program
	// uploads (Memcpy HostToDevice): what the copy reads, kept equal to
	// what Upload last wrote.
	host map[*program.Buffer]*hostMem
	// hostScratch is the host memory of the device-to-host copies.
	hostScratch []*hostMem
	prepared    map[*program.Op]*prepared
	// Domain is the NVTX domain of every range the executor pushes; nil
	// is the global domain (the template's). Set it before the first Push.
	Domain *nvtx.Domain
	ranges map[rangeKey]*nvtx.Attributes
	// graphsInFlight are the graph operations replayed since the last
	// Synchronize, to name them when it reports a fault.
	graphsInFlight []*program.Op
	// sharedSet is the dynamic shared memory each kernel was opted in to.
	sharedSet map[string]int
	strings   map[string]*nvtx.RegisteredString
	// counts are the launches of operations no longer prepared (freed
	// buffers forget their ops); live ones count in prepared.launches.
	counts map[string]int
}

// New loads every embedded PTX module that the device of the current
// context can run (see ptx.Target); a launch from one it cannot fails with
// the module's target and the device's compute capability.
func New(dev *gpu.Device) (*Executor, error) {
	x := &Executor{dev: dev, s: dev.Stream, functions: map[string]cu.Function{},
		ptrs: map[*program.Buffer]cu.DevicePtr{}, prepared: map[*program.Op]*prepared{},
		cells: map[*program.Buffer]*cu.DevicePtr{}, host: map[*program.Buffer]*hostMem{},
		ranges: map[rangeKey]*nvtx.Attributes{}, strings: map[string]*nvtx.RegisteredString{}, sharedSet: map[string]int{}, counts: map[string]int{}, unloadable: map[string]ptx.Target{},
		events: map[string]*cu.Event{}}
	for _, name := range ptx.Modules() {
		if t, ok := ptx.ModuleTarget(name); ok && !t.Runs(dev.Info.CCMajor, dev.Info.CCMinor) {
			x.unloadable[name] = t
			continue
		}
		if err := x.load(name); err != nil {
			x.Close()
			return nil, err
		}
	}
	return x, nil
}

// jitLogSize bounds the JIT's error log; PTX errors are a few lines each.
const jitLogSize = 16 << 10

func (x *Executor) load(name string) error {
	src, err := ptx.Module(name)
	if err != nil {
		return err
	}
	// The error log buffer makes a JIT failure print the JIT's own message
	// (the PTX line and what it did not accept), not only a result code.
	errLog := &cu.JITErrorLogBuffer{Buffer: make([]byte, jitLogSize)}
	m, err := cu.LoadDataEx(src, errLog)
	if err != nil {
		msg := cString(errLog.Buffer)
		if msg == "" {
			msg = "(the JIT left no log)"
		}
		return fmt.Errorf("JIT-compile PTX module %s.ptx: %w\n%s", name, err, msg)
	}
	x.modules = append(x.modules, m)
	for _, entry := range ptx.Entries(name) {
		fn, err := m.Function(entry)
		if err != nil {
			return fmt.Errorf("kernel %s in %s.ptx: %w", entry, name, err)
		}
		x.functions[name+"/"+entry] = fn
	}
	return nil
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// hostMem is host memory the executor allocated for copies.
type hostMem struct {
	p      unsafe.Pointer
	bytes  int64
	pinned bool
}

// Communicator is a rank's NCCL communicator as the executor calls it:
// package nccl's calls, bound to one communicator, with the program's
// element types. Streams and device pointers are raw handles.
type Communicator interface {
	GroupStart() error
	GroupEnd() error
	// AllReduceAvg averages count elements of type e at ptr, in place,
	// over every rank, enqueued on stream (a CUstream).
	AllReduceAvg(ptr uintptr, count int64, e program.Elem, stream uintptr) error
}

func (x *Executor) hostAlloc(bytes int64, pinned bool) (*hostMem, error) {
	p, err := cudrv.HostAlloc(bytes, pinned)
	if err != nil {
		return nil, err
	}
	return &hostMem{p: p, bytes: bytes, pinned: pinned}, nil
}

// Close frees every buffer the executor allocated, its second stream and
// events, and unloads the modules. The copy stream's work is waited for
// first: a copy in flight must not land in freed host memory.
func (x *Executor) Close() {
	if x.hasCopyStream {
		_ = x.copyStream.Synchronize()
	}
	x.FreeAll()
	for b, h := range x.host {
		cudrv.HostFree(h.p, h.pinned)
		delete(x.host, b)
	}
	for _, h := range x.hostScratch {
		cudrv.HostFree(h.p, h.pinned)
	}
	x.hostScratch = nil
	for name, ev := range x.events {
		_ = cu.DestroyEvent(ev)
		delete(x.events, name)
	}
	if x.hasCopyStream {
		_ = x.copyStream.Destroy()
		x.hasCopyStream = false
	}
	for _, m := range x.modules {
		m.Unload()
	}
	x.modules = nil
	x.ranges, x.strings = map[rangeKey]*nvtx.Attributes{}, map[string]*nvtx.RegisteredString{}
}

// Alloc allocates the buffers (each once; a buffer already allocated is
// left alone). On an error, the buffers of this call are freed again.
func (x *Executor) Alloc(bufs ...*program.Buffer) error {
	var made []*program.Buffer
	for _, b := range bufs {
		if _, ok := x.ptrs[b]; ok {
			continue
		}
		p, err := x.dev.Alloc(b.Bytes())
		if err != nil {
			x.Free(made...)
			return fmt.Errorf("allocate %s (%d B): %w", b, b.Bytes(), err)
		}
		x.ptrs[b] = p
		made = append(made, b)
	}
	return nil
}

// Free frees the buffers, and forgets every operation prepared with them
// (a Compiled range that uses them must not run again).
func (x *Executor) Free(bufs ...*program.Buffer) {
	freed := map[*program.Buffer]bool{}
	for _, b := range bufs {
		if p, ok := x.ptrs[b]; ok {
			x.dev.Free(p)
			delete(x.ptrs, b)
			freed[b] = true
		}
		if c := x.cells[b]; c != nil {
			*c = 0
			freed[b] = true
		}
		if h := x.host[b]; h != nil {
			cudrv.HostFree(h.p, h.pinned)
			delete(x.host, b)
		}
	}
	var uses func(op *program.Op) bool
	uses = func(op *program.Op) bool {
		if !op.Dst.IsNull() && freed[op.Dst.Buf] {
			return true
		}
		for _, a := range op.Args {
			if a.Kind == program.Ptr && !a.View.IsNull() && freed[a.View.Buf] {
				return true
			}
		}
		if op.Kind == program.Graph {
			for _, n := range op.Body.Ops() {
				if uses(n) {
					return true
				}
			}
		}
		return false
	}
	x.forget(uses)
}

// FreeAll frees every buffer the executor allocated.
func (x *Executor) FreeAll() {
	for b, p := range x.ptrs {
		x.dev.Free(p)
		delete(x.ptrs, b)
	}
	for _, c := range x.cells {
		*c = 0
	}
	x.forget(func(*program.Op) bool { return true })
}

// Ptr is the device address of view v, or 0 for a null view or a buffer
// not allocated here.
func (x *Executor) Ptr(v program.View) cu.DevicePtr {
	if v.IsNull() {
		return 0
	}
	p, ok := x.ptrs[v.Buf]
	if !ok {
		return 0
	}
	return p + cu.DevicePtr(v.Offset*v.Buf.Elem.Size())
}

// Stream is the stream operations run on.
func (x *Executor) Stream() cu.Stream { return x.s }

// stream returns the stream operation op is enqueued on, making the copy
// stream on first use.
func (x *Executor) stream(op *program.Op) (*cu.Stream, error) {
	if op.Stream == program.ComputeStream {
		return &x.s, nil
	}
	if !x.hasCopyStream {
		s, err := cu.MakeStream(cu.NonBlocking)
		if err != nil {
			return nil, fmt.Errorf("%s: make the copy stream: %w", op.Name, cudrv.Explain(err))
		}
		x.copyStream, x.hasCopyStream = s, true
	}
	return &x.copyStream, nil
}

// HostCopy returns the host memory that device-to-host copy op (a
// Memcpy DeviceToHost operation already prepared, by running or compiling
// it) wrote, valid until Close: what a program offloaded, for tests. Wait
// for the copy first.
func (x *Executor) HostCopy(op *program.Op) ([]byte, bool) {
	p := x.prepared[op]
	if p == nil || p.host == nil || op.Kind != program.Memcpy || op.Dir != program.DeviceToHost {
		return nil, false
	}
	return unsafe.Slice((*byte)(p.host.p), p.host.bytes), true
}

// Synchronize waits for the stream's work. A fault that surfaces here
// comes from an operation enqueued since the last wait; when graphs were
// replayed since then, the error names them and their kernels, since the
// driver reports no node (a graph's kernel is named only by running the
// same range without --graph and with --sync-launches).
func (x *Executor) Synchronize() error {
	graphs := x.graphsInFlight
	x.graphsInFlight = x.graphsInFlight[:0]
	err := cudrv.Explain(x.s.Synchronize())
	if err == nil || len(graphs) == 0 {
		return err
	}
	var names []string
	seen := map[*program.Op]bool{}
	for _, g := range graphs {
		if seen[g] {
			continue
		}
		seen[g] = true
		var kernels []string
		for _, n := range g.Body.Ops() {
			kernels = append(kernels, n.Name)
		}
		if len(kernels) > 6 {
			kernels = append(kernels[:6], fmt.Sprintf("... %d in all", len(g.Body.Ops())))
		}
		names = append(names, fmt.Sprintf("graph %s (%s)", g.Part, strings.Join(kernels, ", ")))
	}
	return &GraphFault{Graphs: names, Err: err}
}

// GraphFault is a fault reported after graph replays: the graphs that ran
// since the last wait, one of which (or an operation after them) faulted.
type GraphFault struct {
	Graphs []string
	Err    error
}

func (e *GraphFault) Error() string {
	return fmt.Sprintf("%v, in %s (CUDA names no node of a graph: run the range without --graph and with --sync-launches to name the kernel)",
		e.Err, strings.Join(e.Graphs, " or "))
}

func (e *GraphFault) Unwrap() error { return e.Err }

// Run runs range r: its NVTX range around its operations and children.
func (x *Executor) Run(r *program.Range) error { return program.Run(r, x) }

// Setup runs a program's setup operations, outside every range.
func (x *Executor) Setup(p *program.Program) error {
	for i := range p.Setup {
		if err := x.Do(&p.Setup[i]); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	}
	return nil
}

// Push opens the NVTX range of r in the executor's domain; its attributes
// are made once per name and layer.
func (x *Executor) Push(r *program.Range) error {
	a, err := x.attributes(r)
	if err != nil {
		return err
	}
	x.Domain.Push(a)
	return nil
}

// rangeKey identifies the attributes of a range: its name and its layer
// (the payload), so "attention" of layer 3 and of layer 4 differ.
type rangeKey struct {
	name  string
	layer int
}

// attributes returns the NVTX attributes of range r, made on first use: its
// name registered with the domain, the colour and category of its kind
// (and, for an operation's range, of the operation's kernel family), and
// its layer as the payload.
func (x *Executor) attributes(r *program.Range) (*nvtx.Attributes, error) {
	key := rangeKey{r.Name, r.Layer}
	if a, ok := x.ranges[key]; ok {
		return a, nil
	}
	s, err := x.Register(r.Name)
	if err != nil {
		return nil, err
	}
	class := RangeClassOf(r)
	a := &nvtx.Attributes{Message: s, Color: class.Color, Category: class.Category}
	if r.Layer >= 0 {
		a.Payload = nvtx.Int64(int64(r.Layer))
	}
	x.ranges[key] = a
	return a, nil
}

// Register registers an NVTX string with the executor's domain, once: nsys
// matches only registered strings for -c nvtx -p NAME@DOMAIN (with its
// default NSYS_NVTX_PROFILER_REGISTER_ONLY=1). NVTX cannot unregister a
// string, so the executor keeps every one for its lifetime.
func (x *Executor) Register(name string) (*nvtx.RegisteredString, error) {
	if s, ok := x.strings[name]; ok {
		return s, nil
	}
	s, err := x.Domain.RegisterString(name)
	if err != nil {
		return nil, err
	}
	x.strings[name] = s
	return s, nil
}

// Pop closes the innermost NVTX range of the executor's domain.
func (x *Executor) Pop() error {
	x.Domain.Pop()
	return nil
}

// LaunchCounts returns how often each kernel was launched (by PTX entry
// name) and each other operation run (by driver call), since New or the
// last ResetCounts.
func (x *Executor) LaunchCounts() map[string]int {
	out := make(map[string]int, len(x.counts))
	for k, v := range x.counts {
		out[k] = v
	}
	for op, p := range x.prepared {
		if p.launches > 0 {
			out[op.Name] += p.launches
			for _, n := range p.names { // a graph's replays launch its nodes
				out[n] += p.launches
			}
		}
	}
	return out
}

// ResetCounts sets every launch count to zero.
func (x *Executor) ResetCounts() {
	clear(x.counts)
	for _, p := range x.prepared {
		p.launches = 0
	}
}

// forget drops the prepared operations that drop says to, keeping their
// launch counts.
func (x *Executor) forget(drop func(*program.Op) bool) {
	for op, p := range x.prepared {
		if !drop(op) {
			continue
		}
		if p.launches > 0 {
			x.counts[op.Name] += p.launches
			for _, n := range p.names {
				x.counts[n] += p.launches
			}
		}
		p.exec.Destroy()
		delete(x.prepared, op)
	}
}

// arg is one kernel parameter in 8-byte storage. cu's Launch copies 8 bytes
// from every parameter pointer, so 4-byte scalars live in the low half (the
// driver reads only the size the PTX declares; x86-64 and arm64 are little
// endian).
type arg uint64

// maxParams bounds the parameters of any gpubench kernel.
const maxParams = 16

// fixup is a kernel argument that points into a dynamic buffer: slot gets
// the cell's address plus off at every launch.
type fixup struct {
	slot  int
	cell  *cu.DevicePtr
	off   cu.DevicePtr
	param string
	buf   *program.Buffer
	// A tensor-map argument is encoded again whenever its address moves
	// (last is the address it was encoded for).
	tmap *cudrv.TensorMap
	spec *program.TensorMap
	last cu.DevicePtr
}

// prepared is an operation ready to launch: its function and its packed
// arguments.
type prepared struct {
	fn    cu.Function
	slots [maxParams]arg
	ptrs  [maxParams]unsafe.Pointer // ptrs[i] = &slots[i], or a tensor map
	sizes [maxParams]int            // the bytes at ptrs[i]: 8, or a tensor map's 128
	n     int
	dst   cu.DevicePtr // memset or copy target, or
	// dstCell is a dynamic target's address (dst is then its offset), and
	// fixups the dynamic pointer arguments: see resolve.
	dstCell *cu.DevicePtr
	fixups  []fixup
	// host is a copy's host memory; cell an allocation's or free's buffer.
	host *hostMem
	cell *cu.DevicePtr
	// stream is the stream the operation is enqueued on; event an event
	// operation's event.
	stream *cu.Stream
	event  *cu.Event

	// A graph operation's instantiated graph and prepared nodes.
	exec  cudrv.GraphExec
	nodes []*prepared
	names []string

	launches int
}

func (x *Executor) prepare(op *program.Op) (*prepared, error) {
	if p, ok := x.prepared[op]; ok {
		return p, nil
	}
	if err := program.Validate(op); err != nil {
		return nil, err
	}
	p := &prepared{}
	var err error
	if p.stream, err = x.stream(op); err != nil {
		return nil, err
	}
	switch op.Kind {
	case program.Kernel:
		fn, ok := x.functions[op.Module+"/"+op.Name]
		if t, skipped := x.unloadable[op.Module]; !ok && skipped {
			i := x.dev.Info
			return nil, fmt.Errorf("kernel %s: module %s.ptx targets %s, which this GPU (compute capability %d.%d) cannot run",
				op.Name, op.Module, t, i.CCMajor, i.CCMinor)
		}
		if !ok {
			return nil, fmt.Errorf("kernel %s: no such entry in %s.ptx", op.Name, op.Module)
		}
		if len(op.Args) > maxParams {
			return nil, fmt.Errorf("kernel %s: %d arguments, at most %d", op.Name, len(op.Args), maxParams)
		}
		if err := x.allowShared(op, fn); err != nil {
			return nil, err
		}
		p.fn, p.n = fn, len(op.Args)
		for i, a := range op.Args {
			p.sizes[i] = int(unsafe.Sizeof(arg(0)))
			if a.Map != nil {
				p.sizes[i] = int(unsafe.Sizeof(cudrv.TensorMap{}))
			}
			switch a.Kind {
			case program.Ptr:
				var tm *cudrv.TensorMap
				if a.Map != nil {
					// The kernel takes the map's 128 bytes by value.
					tm = new(cudrv.TensorMap)
				}
				if c := x.cells[a.View.Buf]; c != nil && !a.View.IsNull() {
					off := cu.DevicePtr(a.View.Offset * a.View.Buf.Elem.Size())
					p.fixups = append(p.fixups, fixup{slot: i, cell: c, off: off, param: a.Param, buf: a.View.Buf, tmap: tm, spec: a.Map})
					p.ptrs[i] = unsafe.Pointer(&p.slots[i])
					if tm != nil {
						p.ptrs[i] = unsafe.Pointer(tm)
					}
					continue
				}
				ptr := x.Ptr(a.View)
				if ptr == 0 && !a.View.IsNull() {
					return nil, fmt.Errorf("kernel %s argument %s: buffer %s is not allocated", op.Name, a.Param, a.View.Buf)
				}
				if tm != nil {
					if err := encodeMap(tm, a.View.Buf.Elem, ptr, *a.Map); err != nil {
						return nil, fmt.Errorf("kernel %s argument %s: %w", op.Name, a.Param, err)
					}
					p.ptrs[i] = unsafe.Pointer(tm)
					continue
				}
				p.slots[i] = arg(ptr)
			case program.I32Arg:
				p.slots[i] = arg(uint32(a.Int))
			case program.F32Arg:
				p.slots[i] = arg(math.Float32bits(a.Float))
			}
			p.ptrs[i] = unsafe.Pointer(&p.slots[i])
		}
	case program.Memset, program.Memcpy:
		if err := x.prepareTarget(op, p); err != nil {
			return nil, err
		}
		if op.Kind == program.Memcpy {
			if err := x.prepareHost(op, p); err != nil {
				return nil, err
			}
		}
	case program.Collective:
		if x.Comm == nil {
			return nil, fmt.Errorf("%s: the program all-reduces, and this executor has no NCCL communicator (--gpus)", op.Name)
		}
		if op.Name == program.NCCLAllReduce {
			if err := x.prepareTarget(op, p); err != nil {
				return nil, err
			}
		}
	case program.Alloc, program.Free:
		b := op.Dst.Buf
		c := x.cells[b]
		if c == nil {
			if op.Kind == program.Free {
				return nil, fmt.Errorf("%s %s: the program frees a buffer it did not allocate", op.Name, b)
			}
			if _, ok := x.ptrs[b]; ok {
				return nil, fmt.Errorf("%s %s: the buffer is allocated already; the program allocates it itself (allocate program.Static() only)", op.Name, b)
			}
			c = new(cu.DevicePtr)
			x.cells[b] = c
		}
		p.cell = c
	case program.Sync, program.Host:
	case program.EventOp:
		ev := x.events[op.Event]
		if ev == nil {
			// Timing is off: the events only order the streams.
			e, err := cu.MakeEvent(cu.DisableTiming)
			if err != nil {
				return nil, fmt.Errorf("%s: make event %q: %w", op.Name, op.Event, cudrv.Explain(err))
			}
			ev = &e
			x.events[op.Event] = ev
		}
		p.event = ev
	case program.Graph:
		if err := x.capture(op, p); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%s %s: the CUDA executor does not run this kind of operation yet", op.Kind, op.Name)
	}
	x.prepared[op] = p
	return p, nil
}

// prepareTarget resolves a memset's or copy's device memory: its address,
// or for a dynamic buffer its cell and offset.
func (x *Executor) prepareTarget(op *program.Op, p *prepared) error {
	if c := x.cells[op.Dst.Buf]; c != nil {
		p.dstCell, p.dst = c, cu.DevicePtr(op.Dst.Offset*op.Dst.Buf.Elem.Size())
		return nil
	}
	if p.dst = x.Ptr(op.Dst); p.dst == 0 {
		return fmt.Errorf("%s: buffer %s is not allocated", op.Name, op.Dst.Buf)
	}
	return nil
}

// prepareHost finds a copy's host memory: for an upload, the buffer's
// host copy (made on first use from what the device holds, and kept equal
// to what Upload writes), for a download scratch memory of the op's own.
func (x *Executor) prepareHost(op *program.Op, p *prepared) error {
	pinned, n := op.Host == program.Pinned, op.Dst.Bytes()
	if op.Dir == program.DeviceToHost {
		h, err := x.hostAlloc(n, pinned)
		if err != nil {
			return fmt.Errorf("%s: %w", op.Name, err)
		}
		x.hostScratch = append(x.hostScratch, h)
		p.host = h
		return nil
	}
	if op.Dst.Offset != 0 || op.Dst.Elems != op.Dst.Buf.Elems {
		return fmt.Errorf("%s: uploads whole buffers, not %s", op.Name, op.Dst)
	}
	h := x.host[op.Dst.Buf]
	if h != nil && h.pinned != pinned {
		return fmt.Errorf("%s: %s is uploaded from both pinned and pageable memory", op.Name, op.Dst.Buf)
	}
	if h == nil {
		var err error
		if h, err = x.hostAlloc(n, pinned); err != nil {
			return fmt.Errorf("%s: %w", op.Name, err)
		}
		x.host[op.Dst.Buf] = h
		if d := x.Ptr(op.Dst); d != 0 {
			if err := cudrv.Explain(x.s.Synchronize()); err != nil {
				return err
			}
			if err := cu.MemcpyDtoH(h.p, d, n); err != nil {
				return fmt.Errorf("%s: read the batch's host copy: %w", op.Name, cudrv.Explain(err))
			}
		}
	}
	p.host = h
	return nil
}

// resolve writes the current addresses of p's dynamic buffers into its
// arguments and target; an operation on a dynamic buffer that is not
// allocated now fails, naming the buffer.
func resolve(op *program.Op, p *prepared) (cu.DevicePtr, error) {
	for i := range p.fixups {
		f := &p.fixups[i]
		if *f.cell == 0 {
			return 0, fmt.Errorf("argument %s: buffer %s is not allocated now (the program frees it before this operation, or allocates it after)", f.param, f.buf)
		}
		if f.tmap != nil {
			if ptr := *f.cell + f.off; ptr != f.last {
				if err := encodeMap(f.tmap, f.buf.Elem, ptr, *f.spec); err != nil {
					return 0, fmt.Errorf("argument %s: %w", f.param, err)
				}
				f.last = ptr
			}
			continue
		}
		p.slots[f.slot] = arg(*f.cell + f.off)
	}
	if p.dstCell == nil {
		return p.dst, nil
	}
	if *p.dstCell == 0 {
		return 0, fmt.Errorf("buffer %s is not allocated now (the program frees it before this operation, or allocates it after)", op.Dst.Buf)
	}
	return *p.dstCell + p.dst, nil
}

// encodeMap encodes a TMA tensor map of shape m over the elements at ptr.
func encodeMap(tm *cudrv.TensorMap, e program.Elem, ptr cu.DevicePtr, m program.TensorMap) error {
	dtype := cudrv.TensorMapBF16
	if e == program.F32 {
		dtype = cudrv.TensorMapF32
	}
	return cudrv.EncodeTensorMap2D(tm, dtype, uint64(ptr), uint64(m.Inner), uint64(m.Outer),
		uint64(m.Stride*e.Size()), m.BoxInner, m.BoxOuter)
}

// capture records a graph operation's nodes: it runs them on the stream
// in capture mode, so that nothing executes, and instantiates the graph.
// On a failure it ends the capture, frees what it made and names the node
// that failed.
func (x *Executor) capture(op *program.Op, p *prepared) error {
	if x.SyncEachLaunch {
		return fmt.Errorf("graph %s: a graph cannot be captured while every launch synchronises (--sync-launches)", op.Part)
	}
	for _, it := range op.Body.Items {
		n, err := x.prepare(it.Op)
		if err != nil {
			return fmt.Errorf("graph %s, node %s: %w", op.Part, it.Op.Where(), err)
		}
		if len(n.fixups) > 0 || n.dstCell != nil {
			return fmt.Errorf("graph %s, node %s: uses a buffer the program allocates per iteration, whose address a graph cannot follow", op.Part, it.Op.Where())
		}
		p.nodes, p.names = append(p.nodes, n), append(p.names, it.Op.Name)
	}
	s := cudrv.StreamOf(unsafe.Pointer(&x.s))
	if err := cudrv.BeginCapture(s); err != nil {
		return fmt.Errorf("graph %s: %w", op.Part, err)
	}
	var failed error
	for i, it := range op.Body.Items {
		if err := x.launch(it.Op, p.nodes[i]); err != nil {
			failed = fmt.Errorf("graph %s: capturing node %s: %w", op.Part, it.Op.Where(), err)
			break
		}
		p.nodes[i].launches-- // captured, not run
	}
	g, err := cudrv.EndCapture(s)
	if failed == nil && err != nil {
		failed = fmt.Errorf("graph %s: %w", op.Part, err)
	}
	if failed == nil {
		if n, nerr := g.Nodes(); nerr != nil || n != len(op.Body.Items) {
			failed = fmt.Errorf("graph %s: captured %d nodes, the program has %d (%v)", op.Part, n, len(op.Body.Items), nerr)
		}
	}
	if failed == nil {
		p.exec, failed = cudrv.Instantiate(g)
		if failed != nil {
			failed = fmt.Errorf("graph %s: %w", op.Part, failed)
		}
	}
	g.Destroy() // the executable graph keeps what it needs
	return failed
}

// LaunchError is a failed operation, with what was launched and how.
type LaunchError struct {
	Kernel      string
	Grid, Block string
	SharedBytes int
	Err         error
}

func (e *LaunchError) Error() string {
	if e.Grid == "" {
		return fmt.Sprintf("%s: %v", e.Kernel, e.Err)
	}
	return fmt.Sprintf("kernel %s (grid %s, block %s, %d B shared): %v", e.Kernel, e.Grid, e.Block, e.SharedBytes, e.Err)
}

func (e *LaunchError) Unwrap() error { return e.Err }

// Do enqueues one operation on the stream.
func (x *Executor) Do(op *program.Op) error {
	p, err := x.prepare(op)
	if err != nil {
		return err
	}
	return x.launch(op, p)
}

func (x *Executor) launch(op *program.Op, p *prepared) error {
	dst, err := resolve(op, p)
	if err != nil {
		return &LaunchError{Kernel: op.Name, Err: err}
	}
	s := *p.stream
	switch op.Kind {
	case program.Kernel:
		g, b := op.Grid, op.Block
		err = cudrv.Launch(unsafe.Pointer(&p.fn), g.X, g.Y, g.Z, b.X, b.Y, b.Z, op.SharedBytes, cudrv.StreamOf(unsafe.Pointer(&s)),
			p.ptrs[:p.n], p.sizes[:p.n])
	case program.Memset:
		if op.Name == program.MemsetD16 {
			err = cu.MemsetD16Async(dst, uint16(op.Value), int64(op.Dst.Elems), s)
		} else {
			err = cu.MemsetD32Async(dst, uint(op.Value), int64(op.Dst.Elems), s)
		}
	case program.Memcpy:
		n := op.Dst.Bytes()
		dir := cudart.HostToDevice
		if op.Dir == program.DeviceToHost {
			dir = cudart.DeviceToHost
		}
		switch op.Name {
		case program.MemcpyHtoD:
			err = cu.MemcpyHtoD(dst, p.host.p, n)
		case program.MemcpyHtoDAsync:
			err = cu.MemcpyHtoDAsync(dst, p.host.p, n, s)
		case program.MemcpyDtoHAsync:
			err = cu.MemcpyDtoHAsync(p.host.p, dst, n, s)
		case program.RuntimeMemcpy:
			err = cudart.Memcpy(uintptr(dst), p.host.p, n, dir)
		case program.RuntimeMemcpyAsync:
			err = cudart.MemcpyAsync(uintptr(dst), p.host.p, n, dir, unsafe.Pointer(p.stream))
		}
	case program.Alloc:
		if *p.cell != 0 {
			err = fmt.Errorf("buffer %s is allocated already (the program allocates it twice without a free)", op.Dst.Buf)
			break
		}
		var d cu.DevicePtr
		if d, err = x.dev.AllocWith(op.Dst.Buf.Bytes(), op.Name == program.RuntimeMalloc); err == nil {
			*p.cell = d
			x.ptrs[op.Dst.Buf] = d
		}
	case program.Free:
		if *p.cell == 0 {
			err = fmt.Errorf("buffer %s is not allocated (the program frees it twice)", op.Dst.Buf)
			break
		}
		err = x.dev.FreeWith(*p.cell, op.Name == program.RuntimeFree)
		*p.cell = 0
		delete(x.ptrs, op.Dst.Buf)
	case program.Host:
		op.Func()
	case program.Sync:
		switch op.Name {
		case program.DeviceSynchronize:
			err = cudart.DeviceSynchronize()
		case program.RuntimeStreamSynchronize:
			err = cudart.StreamSynchronize(unsafe.Pointer(p.stream))
		default:
			err = s.Synchronize()
		}
	case program.Collective:
		switch op.Name {
		case program.NCCLGroupStart:
			err = x.Comm.GroupStart()
		case program.NCCLGroupEnd:
			err = x.Comm.GroupEnd()
		default:
			// A cu.Stream holds its CUstream first (see cudrv.StreamOf).
			err = x.Comm.AllReduceAvg(uintptr(dst), op.Dst.Elems, op.Dst.Buf.Elem, *(*uintptr)(unsafe.Pointer(p.stream)))
		}
	case program.EventOp:
		if op.Name == program.EventRecord {
			err = cudart.EventRecord(unsafe.Pointer(p.event), unsafe.Pointer(p.stream))
		} else {
			err = cudart.StreamWaitEvent(unsafe.Pointer(p.stream), unsafe.Pointer(p.event))
		}
	case program.Graph:
		err = p.exec.Launch(cudrv.StreamOf(unsafe.Pointer(&x.s)))
		if err == nil {
			x.graphsInFlight = append(x.graphsInFlight, op)
		}
	}
	if err == nil && x.SyncEachLaunch {
		err = p.stream.Synchronize()
	}
	if err != nil {
		le := &LaunchError{Kernel: op.Name, Err: cudrv.Explain(err)}
		if op.Kind == program.Kernel {
			le.Grid, le.Block, le.SharedBytes = op.Grid.String(), op.Block.String(), op.SharedBytes
		}
		return le
	}
	p.launches++
	return nil
}

// Compiled is a range made ready to run: the executor's calls in the
// order program.Run makes them, each operation prepared and each NVTX
// range's attributes made, so that running it looks nothing up.
type Compiled struct {
	x     *Executor
	steps []step
}

type step struct {
	push *nvtx.Attributes // open this range, or
	pop  bool             // close the innermost, or
	op   *program.Op      // run this operation
	p    *prepared
}

// compiler is the Launcher that records a range's calls for Compile.
type compiler struct{ c *Compiled }

func (k compiler) Push(r *program.Range) error {
	a, err := k.c.x.attributes(r)
	if err != nil {
		return err
	}
	k.c.steps = append(k.c.steps, step{push: a})
	return nil
}

func (k compiler) Pop() error {
	k.c.steps = append(k.c.steps, step{pop: true})
	return nil
}

func (k compiler) Do(op *program.Op) error {
	p, err := k.c.x.prepare(op)
	if err != nil {
		return err
	}
	k.c.steps = append(k.c.steps, step{op: op, p: p})
	return nil
}

// Compile prepares range r: the same walk as Run (program.Run), done once.
// The buffers r uses must be allocated, and stay so while it is used.
func (x *Executor) Compile(r *program.Range) (*Compiled, error) {
	c := &Compiled{x: x}
	if err := program.Run(r, compiler{c}); err != nil {
		return nil, err
	}
	return c, nil
}

// CompileOps prepares operations that run outside any range of their own
// (the iteration's own operations, between its push and the forward's).
func (x *Executor) CompileOps(ops []*program.Op) (*Compiled, error) {
	c := &Compiled{x: x}
	k := compiler{c}
	for _, op := range ops {
		if err := k.Do(op); err != nil {
			return nil, fmt.Errorf("%s: %w", op.Where(), err)
		}
	}
	return c, nil
}

// Run enqueues the compiled range. On an error it closes the ranges it
// opened and says where in the model the failing operation sits.
func (c *Compiled) Run() error {
	depth := 0
	for _, s := range c.steps {
		switch {
		case s.push != nil:
			c.x.Domain.Push(s.push)
			depth++
		case s.pop:
			c.x.Domain.Pop()
			depth--
		default:
			if err := c.x.launch(s.op, s.p); err != nil {
				for ; depth > 0; depth-- {
					c.x.Domain.Pop()
				}
				return fmt.Errorf("%s: %w", s.op.Where(), err)
			}
		}
	}
	return nil
}

// ErrNotAllocated is returned by Upload and Download for a buffer the
// executor did not allocate.
var ErrNotAllocated = errors.New("buffer not allocated")

// Upload copies src into view v (synchronously).
func Upload[T float32 | int32 | uint16](x *Executor, v program.View, src []T) error {
	p := x.Ptr(v)
	if p == 0 {
		return fmt.Errorf("upload to %s: %w", v, ErrNotAllocated)
	}
	if err := sameSize[T](v); err != nil {
		return fmt.Errorf("upload to %s: %w", v, err)
	}
	if int64(len(src)) > v.Elems {
		return fmt.Errorf("upload %d elements to %s, which holds %d", len(src), v, v.Elems)
	}
	if h := x.host[v.Buf]; h != nil && len(src) > 0 {
		// The program uploads this buffer itself from its host copy, which
		// must hold what was last written (after any copy in flight).
		if err := cudrv.Explain(x.s.Synchronize()); err != nil {
			return err
		}
		n := int64(len(src)) * int64(unsafe.Sizeof(src[0]))
		off := v.Offset * v.Buf.Elem.Size()
		copy(unsafe.Slice((*byte)(h.p), h.bytes)[off:off+n], unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), n))
	}
	return gpu.Upload(p, src)
}

// Download copies view v into dst (synchronously, after the stream's work).
func Download[T float32 | int32 | uint16](x *Executor, dst []T, v program.View) error {
	p := x.Ptr(v)
	if p == 0 {
		return fmt.Errorf("download from %s: %w", v, ErrNotAllocated)
	}
	if err := sameSize[T](v); err != nil {
		return fmt.Errorf("download from %s: %w", v, err)
	}
	if int64(len(dst)) > v.Elems {
		return fmt.Errorf("download %d elements from %s, which holds %d", len(dst), v, v.Elems)
	}
	if err := cudrv.Explain(x.s.Synchronize()); err != nil {
		return err
	}
	return gpu.Download(dst, p)
}

// sameSize refuses a host element type whose size is not that of the
// view's elements (float32 host data for a bf16 buffer, say).
func sameSize[T float32 | int32 | uint16](v program.View) error {
	var zero T
	if int64(unsafe.Sizeof(zero)) != v.Buf.Elem.Size() {
		return fmt.Errorf("host elements of %d bytes for %s elements of %d", unsafe.Sizeof(zero), v.Buf.Elem, v.Buf.Elem.Size())
	}
	return nil
}

// allowShared opts kernel fn in to op's dynamic shared memory when it is
// above the default 48 KB (once per kernel, at the largest size asked), or
// refuses it when the device allows less.
func (x *Executor) allowShared(op *program.Op, fn cu.Function) error {
	if op.SharedBytes <= program.DefaultDynamicShared {
		return nil
	}
	if limit := x.dev.Info.SharedOptIn; op.SharedBytes > limit {
		return fmt.Errorf("kernel %s: %d B of dynamic shared memory, this GPU allows %d", op.Name, op.SharedBytes, limit)
	}
	key := op.Module + "/" + op.Name
	if x.sharedSet[key] >= op.SharedBytes {
		return nil
	}
	if err := cudrv.SetMaxDynamicShared(unsafe.Pointer(&fn), op.SharedBytes); err != nil {
		return fmt.Errorf("kernel %s: %w", op.Name, err)
	}
	x.sharedSet[key] = op.SharedBytes
	return nil
}
