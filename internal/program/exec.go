package program

import (
	"fmt"
	"strings"

	"github.com/gpubench/gpubench/ptx"
)

// Launcher is what an executor implements: the three things a program asks
// of a GPU stream. Run walks a range through it.
type Launcher interface {
	// Push opens the NVTX range of r (its name, kind and layer; not its
	// items), Pop closes the innermost one.
	Push(r *Range) error
	Pop() error
	// Do enqueues one operation.
	Do(op *Op) error
}

// Run walks r through l: Push(r), its items in order (nested ranges
// recursively), Pop. It stops at the first error, closing the ranges it
// opened, and says where the error happened.
func Run(r *Range, l Launcher) error {
	if err := l.Push(r); err != nil {
		return fmt.Errorf("push range %s: %w", r.Name, err)
	}
	err := RunItems(r, l)
	if perr := l.Pop(); perr != nil && err == nil {
		err = fmt.Errorf("pop range %s: %w", r.Name, perr)
	}
	return err
}

// RunItems runs r's items through l without opening r itself (the run
// loop opens the iteration range, whose name carries its index).
func RunItems(r *Range, l Launcher) error {
	for _, it := range r.Items {
		if it.Range != nil {
			if err := Run(it.Range, l); err != nil {
				return err
			}
			continue
		}
		if err := l.Do(it.Op); err != nil {
			return fmt.Errorf("%s: %w", it.Op.Where(), err)
		}
	}
	return nil
}

// Event is one call a Recorder saw.
type Event struct {
	Push string // the range opened, or ""
	Pop  bool
	Op   *Op
}

func (e Event) String() string {
	switch {
	case e.Push != "":
		return "push " + e.Push
	case e.Pop:
		return "pop"
	}
	return e.Op.String()
}

// Recorder is an executor that needs no GPU: it records every call in
// order, and checks each operation as the CUDA executor would need it to
// be (see Validate) and the NVTX stack's balance.
type Recorder struct {
	Events []Event
	depth  int
	// Live, when not nil, tracks which buffers are allocated: Do refuses
	// an operation on a buffer not live, an Alloc of a live one and a
	// Free of one that is not. Track sets it up for a program.
	Live map[*Buffer]bool
}

// Track makes r check buffer lifetimes for program p: its static buffers
// live (as an executor allocates them), its dynamic ones not yet.
func (r *Recorder) Track(p *Program) {
	r.Live = map[*Buffer]bool{}
	for _, b := range p.Static() {
		r.Live[b] = true
	}
}

// lifetime applies op to r.Live, or says why it cannot run.
func (r *Recorder) lifetime(op *Op) error {
	if r.Live == nil {
		return nil
	}
	switch op.Kind {
	case Alloc:
		if r.Live[op.Dst.Buf] {
			return fmt.Errorf("%s %s: already allocated", op.Name, op.Dst.Buf)
		}
		r.Live[op.Dst.Buf] = true
		return nil
	case Free:
		if !r.Live[op.Dst.Buf] {
			return fmt.Errorf("%s %s: not allocated", op.Name, op.Dst.Buf)
		}
		delete(r.Live, op.Dst.Buf)
		return nil
	}
	var check func(op *Op) error
	check = func(op *Op) error {
		if !op.Dst.IsNull() && !r.Live[op.Dst.Buf] {
			return fmt.Errorf("%s: buffer %s is not allocated", op.Name, op.Dst.Buf)
		}
		for _, a := range op.Args {
			if a.Kind == Ptr && !a.View.IsNull() && !r.Live[a.View.Buf] {
				return fmt.Errorf("%s argument %s: buffer %s is not allocated", op.Name, a.Param, a.View.Buf)
			}
		}
		if op.Kind == Graph {
			for _, n := range op.Body.Ops() {
				if err := check(n); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return check(op)
}

// Push records an NVTX push.
func (r *Recorder) Push(rg *Range) error {
	r.depth++
	r.Events = append(r.Events, Event{Push: rg.Name})
	return nil
}

// Pop records an NVTX pop; popping an empty stack is an error.
func (r *Recorder) Pop() error {
	if r.depth == 0 {
		return fmt.Errorf("pop with no open range")
	}
	r.depth--
	r.Events = append(r.Events, Event{Pop: true})
	return nil
}

// Do validates and records op.
func (r *Recorder) Do(op *Op) error {
	if err := Validate(op); err != nil {
		return err
	}
	if err := r.lifetime(op); err != nil {
		return err
	}
	r.Events = append(r.Events, Event{Op: op})
	return nil
}

// Open is the number of ranges pushed and not popped.
func (r *Recorder) Open() int { return r.depth }

// Validate checks what can be checked of an operation without a GPU: a
// kernel has a name, a module and a grid and block within CUDA's limits,
// and every pointer argument, and a memset's target, lies inside its
// buffer.
func Validate(op *Op) error {
	if err := validateStream(op); err != nil {
		return err
	}
	switch op.Kind {
	case Kernel:
		if op.Name == "" || op.Module == "" {
			return fmt.Errorf("kernel %q in module %q: both must be named", op.Name, op.Module)
		}
		if err := checkShape(op); err != nil {
			return fmt.Errorf("kernel %s: %w", op.Name, err)
		}
		for _, a := range op.Args {
			if a.Kind == Ptr && a.View.IsNull() && a.Touch > 0 {
				return fmt.Errorf("kernel %s argument %s: a null pointer, through which the kernel touches %d elements", op.Name, a.Param, a.Touch)
			}
			if a.Kind != Ptr || a.View.IsNull() {
				continue
			}
			if err := inside(a.View); err != nil {
				return fmt.Errorf("kernel %s argument %s: %w", op.Name, a.Param, err)
			}
			if a.Touch > a.View.Elems {
				return fmt.Errorf("kernel %s argument %s: the kernel touches %d elements, the view %s holds %d",
					op.Name, a.Param, a.Touch, a.View, a.View.Elems)
			}
			if a.Map != nil {
				if err := validateMap(a.View, *a.Map); err != nil {
					return fmt.Errorf("kernel %s argument %s: %w", op.Name, a.Param, err)
				}
			}
		}
	case Memset, Memcpy, Alloc, Free:
		if op.Dst.IsNull() {
			return fmt.Errorf("%s %s has no target", op.Kind, op.Name)
		}
		if op.Kind == Memset && op.Name != MemsetCall(op.Dst.Buf.Elem) {
			return fmt.Errorf("%s on %s: its %s elements need %s", op.Name, op.Dst, op.Dst.Buf.Elem, MemsetCall(op.Dst.Buf.Elem))
		}
		if err := inside(op.Dst); err != nil {
			return fmt.Errorf("%s %s: %w", op.Kind, op.Name, err)
		}
		if err := validateMemory(op); err != nil {
			return err
		}
	case Graph:
		if op.Body == nil || len(op.Body.Items) == 0 {
			return fmt.Errorf("graph %s has no nodes", op.Name)
		}
		for _, it := range op.Body.Items {
			if it.Range != nil {
				return fmt.Errorf("graph %s holds the NVTX range %s, which a graph cannot replay", op.Name, it.Range.Name)
			}
			if it.Op.Kind != Kernel && it.Op.Kind != Memset {
				return fmt.Errorf("graph %s: a %s cannot be a graph node here", op.Name, it.Op.Kind)
			}
			if it.Op.Stream != ComputeStream {
				return fmt.Errorf("graph %s: node %s is on stream %d; a graph is captured from the compute stream alone", op.Name, it.Op.Name, it.Op.Stream)
			}
			if err := Validate(it.Op); err != nil {
				return fmt.Errorf("graph node %s: %w", it.Op.Where(), err)
			}
		}
	case Sync:
		switch op.Name {
		case StreamSynchronize, RuntimeStreamSynchronize, DeviceSynchronize:
		default:
			return fmt.Errorf("sync %s: the executor synchronises with %s, %s or %s", op.Name, StreamSynchronize, RuntimeStreamSynchronize, DeviceSynchronize)
		}
	case EventOp:
		if op.Name != EventRecord && op.Name != StreamWaitEvent {
			return fmt.Errorf("event %s: the executor calls %s or %s", op.Name, EventRecord, StreamWaitEvent)
		}
		if op.Event == "" {
			return fmt.Errorf("%s: names no event", op.Name)
		}
	case Collective:
		switch op.Name {
		case NCCLGroupStart, NCCLGroupEnd:
			if op.Stream != ComputeStream || !op.Dst.IsNull() {
				return fmt.Errorf("%s is a host call: it takes no stream and no buffer", op.Name)
			}
		case NCCLAllReduce:
			if op.Dst.IsNull() {
				return fmt.Errorf("%s has no gradients to reduce", op.Name)
			}
			if op.Stream != CommStream {
				return fmt.Errorf("%s on %s: the all-reduces run on stream %d, not %d", op.Name, op.Dst, CommStream, op.Stream)
			}
			if err := inside(op.Dst); err != nil {
				return fmt.Errorf("%s: %w", op.Name, err)
			}
		default:
			return fmt.Errorf("collective %s: the executor calls %s, %s or %s", op.Name, NCCLGroupStart, NCCLAllReduce, NCCLGroupEnd)
		}
	case Host:
		if op.Func == nil || op.Name == "" {
			return fmt.Errorf("host operation %q: needs a name and a function to run", op.Name)
		}
	default:
		return fmt.Errorf("unknown operation kind %q", op.Kind)
	}
	return nil
}

// validateStream checks an operation's stream: one the executor has, and
// the compute stream for what runs on no stream (host work, allocations,
// frees, graphs, the device-wide synchronisation) and for the synchronous
// copies, which the runtime orders with the legacy default stream.
func validateStream(op *Op) error {
	if op.Stream < 0 || op.Stream >= Streams {
		return fmt.Errorf("%s %s: stream %d, the executor has streams 0..%d", op.Kind, op.Name, op.Stream, Streams-1)
	}
	if op.Stream == ComputeStream {
		return nil
	}
	switch {
	case op.Kind == Host, op.Kind == Alloc, op.Kind == Free, op.Kind == Graph, op.Name == DeviceSynchronize:
		return fmt.Errorf("%s %s runs on no stream: it cannot be put on stream %d", op.Kind, op.Name, op.Stream)
	case op.Name == RuntimeMemcpy || op.Name == MemcpyHtoD:
		return fmt.Errorf("memcpy %s is synchronous: only an asynchronous copy can run on stream %d", op.Name, op.Stream)
	}
	return nil
}

// validateMemory checks what a copy, allocation or free needs beyond its
// target: a whole buffer to allocate or free, and a copy's direction, host
// memory and driver call in agreement.
func validateMemory(op *Op) error {
	switch op.Kind {
	case Alloc, Free:
		driver, runtime := MemAlloc, RuntimeMalloc
		if op.Kind == Free {
			driver, runtime = MemFree, RuntimeFree
		}
		if op.Name != driver && op.Name != runtime {
			return fmt.Errorf("%s %s: the executor calls %s or %s", op.Kind, op.Name, driver, runtime)
		}
		if op.Dst.Offset != 0 || op.Dst.Elems != op.Dst.Buf.Elems {
			return fmt.Errorf("%s %s: %s is not a whole buffer", op.Kind, op.Name, op.Dst)
		}
	case Memcpy:
		var driver string
		switch {
		case op.Dir == HostToDevice && op.Host == Pageable:
			driver = MemcpyHtoD
		case op.Dir == HostToDevice && op.Host == Pinned:
			driver = MemcpyHtoDAsync
		case op.Dir == DeviceToHost && (op.Host == Pageable || op.Host == Pinned):
			driver = MemcpyDtoHAsync
		default:
			return fmt.Errorf("memcpy %s: direction %q and host memory %q (want %s or %s, %s or %s)", op.Name, op.Dir, op.Host,
				HostToDevice, DeviceToHost, Pageable, Pinned)
		}
		// The runtime's two copies take either direction and either kind
		// of host memory; the driver has one call for each.
		if op.Name != driver && op.Name != RuntimeMemcpy && op.Name != RuntimeMemcpyAsync {
			return fmt.Errorf("memcpy %s %s from %s memory: the executor calls %s, %s or %s", op.Name, op.Dir, op.Host, driver, RuntimeMemcpy, RuntimeMemcpyAsync)
		}
	}
	return nil
}

func inside(v View) error {
	if v.Offset < 0 || v.Elems < 0 || v.Offset+v.Elems > v.Buf.Elems {
		return fmt.Errorf("view %s lies outside its buffer of %d elements", v, v.Buf.Elems)
	}
	return nil
}

// CUDA's launch limits beyond those in package ptx (the same on every GPU
// gpubench supports): a block's z, and dynamic shared memory with an
// opt-in, at most Hopper's 227 KB (a GPU with less refuses the launch in
// the executor, which knows the device).
const (
	maxBlockZ    = 64
	maxDynamicSM = 227 << 10
)

// DefaultDynamicShared is the dynamic shared memory a kernel may use with
// no opt-in; above it the executor sets the kernel's attribute first.
const DefaultDynamicShared = 48 << 10

func checkShape(op *Op) error {
	g, b := op.Grid, op.Block
	var bad []string
	if g.X < 1 || g.Y < 1 || g.Z < 1 || g.X > ptx.MaxGridX || g.Y > ptx.MaxGridYZ || g.Z > ptx.MaxGridYZ {
		bad = append(bad, fmt.Sprintf("grid %v outside 1..(%d,%d,%d)", g, ptx.MaxGridX, ptx.MaxGridYZ, ptx.MaxGridYZ))
	}
	if b.X < 1 || b.Y < 1 || b.Z < 1 || b.Z > maxBlockZ || b.Count() > ptx.MaxBlockThreads {
		bad = append(bad, fmt.Sprintf("block %v outside 1..%d threads", b, ptx.MaxBlockThreads))
	}
	if op.SharedBytes < 0 || op.SharedBytes > maxDynamicSM {
		bad = append(bad, fmt.Sprintf("%d B of dynamic shared memory", op.SharedBytes))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return nil
}

// validateMap checks a tensor map against TMA's rules and the view: a
// 16-byte-aligned start (buffers start 256-byte aligned), a row stride of
// a multiple of 16 bytes, no longer than the rows, boxes of 1 to 256
// elements each way and at most 128 bytes along the rows (the swizzle's
// span), and every element inside the view.
func validateMap(v View, m TensorMap) error {
	size := v.Buf.Elem.Size()
	switch {
	case v.Buf.Elem != BF16 && v.Buf.Elem != F32:
		return fmt.Errorf("a TMA tensor map over %s elements: want bf16 or f32", v.Buf.Elem)
	case m.Inner <= 0 || m.Outer <= 0:
		return fmt.Errorf("TMA tensor map %v: empty", m)
	case (v.Offset*size)%16 != 0:
		return fmt.Errorf("TMA tensor map over %s: its start, %d bytes into the buffer, is not 16-byte aligned", v, v.Offset*size)
	case (m.Stride*size)%16 != 0 || m.Stride < m.Inner:
		return fmt.Errorf("TMA tensor map %v: the row stride must be at least the row and a multiple of 16 bytes", m)
	case m.BoxInner < 1 || m.BoxOuter < 1 || m.BoxInner > 256 || m.BoxOuter > 256 || int64(m.BoxInner)*size > 128:
		return fmt.Errorf("TMA tensor map %v: boxes are 1..256 elements each way and at most 128 bytes along a row", m)
	case (m.Outer-1)*m.Stride+m.Inner > v.Elems:
		return fmt.Errorf("TMA tensor map %v reaches %d elements; the view %s holds %d", m, (m.Outer-1)*m.Stride+m.Inner, v, v.Elems)
	}
	return nil
}
