// Package program is the one description of a gpubench step: a tree of NVTX
// ranges whose leaves are GPU operations (kernel launches, memsets, copies,
// synchronisations, allocations, host work), over a table of named device
// buffers.
//
// A model builds its program from its dimensions, mode and options
// (model.Program); everything else reads that value:
//
//   - executors run it: the CUDA executor (internal/cuexec) launches each
//     operation on the GPU, the Recorder here replays it without one;
//   - `gpubench plan` prints it without pointers (internal/plan);
//   - the memory plan sums its buffers (internal/memplan);
//   - the FLOP count sums its operations' annotations (internal/flops);
//   - `gpubench check` compares an Nsight Systems report with it.
//
// So a new mode, dtype or planted flaw is a change to the program or a new
// executor, never a second list to keep in sync. The package imports
// nothing that touches CUDA, so all of it is tested on CI.
package program

import (
	"fmt"
	"strconv"
	"strings"
)

// NVTX range names of the step. The iteration range's name carries the
// iteration index in a run: "iteration0", "iteration1", ...; the program
// calls it IterationTemplate.
const (
	IterationPrefix   = "iteration"
	IterationTemplate = "iteration{i}"
	Forward           = "forward"
	Backward          = "backward"
	// Generate mode's passes: the prefill, then decode0, decode1, ...
	Prefill      = "prefill"
	DecodePrefix = "decode"
)

// DecodeName is the NVTX name of generate mode's decode step j, e.g.
// "decode3".
func DecodeName(j int) string { return DecodePrefix + strconv.Itoa(j) }

// IterationName is the NVTX name of iteration i, e.g. "iteration3".
func IterationName(i int) string { return IterationPrefix + strconv.Itoa(i) }

// Elem is the element type of a buffer.
type Elem string

// The element types.
const (
	F32  Elem = "f32"
	I32  Elem = "i32"
	BF16 Elem = "bf16" // bfloat16, held as its 16 bits (internal/bf16)
)

// Size is the element's size in bytes.
func (e Elem) Size() int64 {
	switch e {
	case F32, I32:
		return 4
	case BF16:
		return 2
	}
	panic(fmt.Sprintf("program: unknown element type %q", string(e)))
}

// Group says what a buffer is for, for the memory plan.
type Group string

// The groups of buffers.
const (
	Params      Group = "params"
	Grads       Group = "grads"
	Activations Group = "activations"
	Inputs      Group = "inputs"
	Scratch     Group = "scratch"
	// KVCache is generate mode's keys and values of every position so
	// far, per layer: what a decode step reads besides the weights.
	KVCache Group = "kv_cache"
)

// Buffer is one device allocation of the program.
type Buffer struct {
	// Name says what the buffer holds; a per-layer buffer has one Buffer
	// per layer, all with the same Name and their own Layer.
	Name  string `json:"name"`
	Layer int    `json:"layer"` // -1 unless one of a per-layer set
	Elem  Elem   `json:"elem"`
	Elems int64  `json:"elems"`
	Group Group  `json:"group"`
	// State buffers hold values that must survive from one launch to the
	// next (the split-K tile counters): a test that poisons the outputs
	// leaves them alone.
	State bool `json:"state,omitempty"`
}

// Bytes is the buffer's size.
func (b *Buffer) Bytes() int64 { return b.Elems * b.Elem.Size() }

func (b *Buffer) String() string {
	if b.Layer >= 0 {
		return fmt.Sprintf("%s[%d]", b.Name, b.Layer)
	}
	return b.Name
}

// All is a view of the whole buffer.
func (b *Buffer) All() View { return View{Buf: b, Elems: b.Elems} }

// Slice is a view of elems elements from off, named label (a tensor inside
// a flat buffer, such as one layer's qkv weight inside the parameters).
func (b *Buffer) Slice(label string, off, elems int64) View {
	return View{Buf: b, Label: label, Offset: off, Elems: elems}
}

// View is a range of a buffer's elements that an operation reads or writes.
// The zero View is a null pointer (an optional argument left out).
type View struct {
	Buf    *Buffer
	Label  string // the tensor's name inside Buf, or ""
	Offset int64  // elements
	Elems  int64
}

// IsNull reports whether v is the null pointer.
func (v View) IsNull() bool { return v.Buf == nil }

// Bytes is the view's size.
func (v View) Bytes() int64 {
	if v.Buf == nil {
		return 0
	}
	return v.Elems * v.Buf.Elem.Size()
}

// At returns the view moved on by off elements, for tests of unaligned
// addresses.
func (v View) At(off int64) View {
	v.Offset += off
	v.Elems -= off
	return v
}

func (v View) String() string {
	if v.Buf == nil {
		return "null"
	}
	s := v.Buf.String()
	if v.Label != "" {
		s += "." + v.Label
	}
	if v.Offset != 0 || v.Elems != v.Buf.Elems {
		s += fmt.Sprintf("[%d:%d]", v.Offset, v.Offset+v.Elems)
	}
	return s
}

// ArgKind is how a kernel parameter is passed.
type ArgKind string

// The kinds of kernel argument, as the PTX declares them.
const (
	Ptr    ArgKind = "ptr" // .u64 device address
	I32Arg ArgKind = "i32" // .u32/.s32
	F32Arg ArgKind = "f32" // .f32
)

// Access says whether a kernel reads or writes a pointer argument.
type Access string

// The accesses.
const (
	Read      Access = "in"
	Write     Access = "out"
	ReadWrite Access = "inout"
)

// Arg is one kernel argument.
type Arg struct {
	Param  string  `json:"param"` // the kernel parameter's name in the .cu source
	Kind   ArgKind `json:"kind"`
	View   View    `json:"-"`
	Access Access  `json:"access,omitempty"`
	// Touch is how many elements from the view's start the kernel may
	// access; Validate checks the view holds them.
	Touch int64   `json:"touch,omitempty"`
	Int   int32   `json:"int,omitempty"`
	Float float32 `json:"float,omitempty"`
	// Map, on a pointer argument, passes the view as a TMA tensor map
	// (a 128-byte CUtensorMap by value, ptx.TensorMapParam) instead of its
	// address: the executor encodes it from the view's address when it
	// prepares the launch, and again whenever the buffer moves.
	Map *TensorMap `json:"tensor_map,omitempty"`
}

// TensorMap is the shape of a 2-D TMA tensor map over a view of bf16 or
// f32 elements: Outer rows of Inner contiguous elements, Stride elements
// apart, read in boxes of BoxInner × BoxOuter elements with the 128-byte
// swizzle, elements out of bounds read as zeros. TMA needs the view's
// address and Stride·size to be multiples of 16 bytes, and BoxInner·size
// to be at most 128 (the swizzle's span); Validate checks.
type TensorMap struct {
	Inner    int64 `json:"inner"`
	Outer    int64 `json:"outer"`
	Stride   int64 `json:"stride"`
	BoxInner int   `json:"box_inner"`
	BoxOuter int   `json:"box_outer"`
}

// String is the map as plan shows it: "64x128 boxes of 768x8192 (stride 768)".
func (m TensorMap) String() string {
	return fmt.Sprintf("%dx%d boxes of %dx%d (stride %d)", m.BoxInner, m.BoxOuter, m.Inner, m.Outer, m.Stride)
}

// InMap is a pointer argument read through a TMA tensor map of shape m
// (see Arg.Map); touch is as for In.
func InMap(param string, v View, touch int64, m TensorMap) Arg {
	a := In(param, v, touch)
	a.Map = &m
	return a
}

// OutMap is a pointer argument written through a TMA tensor map of shape
// m (see Arg.Map); touch is as for Out.
func OutMap(param string, v View, touch int64, m TensorMap) Arg {
	a := Out(param, v, touch)
	a.Map = &m
	return a
}

func (a Arg) String() string {
	switch a.Kind {
	case Ptr:
		if a.Map != nil {
			return a.Param + "=" + a.View.String() + " as TMA " + a.Map.String()
		}
		return a.Param + "=" + a.View.String()
	case I32Arg:
		return fmt.Sprintf("%s=%d", a.Param, a.Int)
	default:
		return fmt.Sprintf("%s=%g", a.Param, a.Float)
	}
}

// In, Out and InOut are pointer arguments through which the kernel reads,
// writes, or both, touch elements of v; Int and Float are scalars.
func In(param string, v View, touch int64) Arg {
	return Arg{Param: param, Kind: Ptr, View: v, Access: Read, Touch: touch}
}

// Out is a pointer argument the kernel writes; see In.
func Out(param string, v View, touch int64) Arg {
	return Arg{Param: param, Kind: Ptr, View: v, Access: Write, Touch: touch}
}

// InOut is a pointer argument the kernel reads and writes; see In.
func InOut(param string, v View, touch int64) Arg {
	return Arg{Param: param, Kind: Ptr, View: v, Access: ReadWrite, Touch: touch}
}

// Int is an int argument.
func Int(param string, v int) Arg { return Arg{Param: param, Kind: I32Arg, Int: int32(v)} }

// Float is a float argument.
func Float(param string, v float32) Arg { return Arg{Param: param, Kind: F32Arg, Float: v} }

// Bytes is what the kernel moves through a pointer argument: touch
// elements once, twice if it reads and writes them.
func (a Arg) Bytes() int64 {
	if a.Kind != Ptr || a.View.IsNull() {
		return 0
	}
	n := a.Touch * a.View.Buf.Elem.Size()
	if a.Access == ReadWrite {
		n *= 2
	}
	return n
}

// Dim3 is a grid or block shape.
type Dim3 struct{ X, Y, Z int }

// D1, D2 and D3 are shapes of one, two and three dimensions.
func D1(x int) Dim3       { return Dim3{x, 1, 1} }
func D2(x, y int) Dim3    { return Dim3{x, y, 1} }
func D3(x, y, z int) Dim3 { return Dim3{x, y, z} }

func (d Dim3) String() string { return fmt.Sprintf("(%d,%d,%d)", d.X, d.Y, d.Z) }

// Count is X·Y·Z.
func (d Dim3) Count() int { return d.X * d.Y * d.Z }

// OpKind is what an operation does.
type OpKind string

// The kinds of operation. Profilers list kernels and memsets in different
// tables; copies, synchronisations, allocations and host work are API calls.
const (
	Kernel OpKind = "kernel"
	Memset OpKind = "memset"
	Memcpy OpKind = "memcpy"
	Sync   OpKind = "sync"
	Alloc  OpKind = "alloc"
	Free   OpKind = "free"
	Host   OpKind = "host"
	// Graph launches a CUDA graph: its Body, captured once from a stream
	// that ran Body's operations, replayed with one cuGraphLaunch.
	Graph OpKind = "graph"
	// EventOp records a CUDA event on the operation's stream, or makes
	// the operation's stream wait for the event's last record: how work
	// on two streams is ordered without stopping the host.
	EventOp OpKind = "event"
	// Collective is an NCCL call of a data-parallel step (--gpus): a
	// group's start or end, on the host, or the all-reduce of one slice of
	// the gradients, enqueued on CommStream (see AllReduce).
	Collective OpKind = "collective"
)

// The NCCL calls of Collective operations. An ncclAllReduce of the program
// averages (ncclAvg) its view, in place, over every rank, in the view's
// element type; the calls of one bucket of layers are grouped between
// ncclGroupStart and ncclGroupEnd, so that NCCL launches them together.
const (
	NCCLGroupStart = "ncclGroupStart"
	NCCLAllReduce  = "ncclAllReduce"
	NCCLGroupEnd   = "ncclGroupEnd"
)

// The streams an operation can be enqueued on (Op.Stream). Every
// operation of a clean step runs on the compute stream; a second stream
// is what lets a copy overlap the kernels (overlapped-copies).
const (
	ComputeStream = 0
	CopyStream    = 1
	// CommStream is the stream of the gradients' all-reduces: the
	// executor's second stream, as in a data-parallel training loop that
	// gives NCCL a stream of its own so that the all-reduce of one bucket
	// runs under the backward kernels of the next.
	CommStream = CopyStream
	// Streams is the number of streams an executor provides.
	Streams = 2
)

// The runtime calls of EventOp operations: cudaEventRecord(event, stream)
// and cudaStreamWaitEvent(stream, event), as users' programs order two
// streams.
const (
	EventRecord     = "cudaEventRecord"
	StreamWaitEvent = "cudaStreamWaitEvent"
)

// GraphLaunch is the driver call that replays a graph.
const GraphLaunch = "cuGraphLaunch"

// HostMemory is the kind of host memory a copy uses.
type HostMemory string

// The kinds of host memory.
const (
	Pageable HostMemory = "pageable"
	Pinned   HostMemory = "pinned"
)

// The driver calls of the operations other than kernels and memsets.
const (
	// StreamSynchronize waits for the stream's work (a Sync operation).
	StreamSynchronize = "cuStreamSynchronize"
	// MemAlloc and MemFree allocate and free a device buffer (Alloc and
	// Free operations); cuMemFree waits for the device's work first.
	MemAlloc = "cuMemAlloc_v2"
	MemFree  = "cuMemFree_v2"
	// MemcpyHtoD is a synchronous host-to-device copy, MemcpyHtoDAsync
	// one enqueued on the stream; MemcpyDtoHAsync copies device memory to
	// the host on the stream.
	MemcpyHtoD      = "cuMemcpyHtoD_v2"
	MemcpyHtoDAsync = "cuMemcpyHtoDAsync_v2"
	MemcpyDtoHAsync = "cuMemcpyDtoHAsync_v2"
)

// The runtime API calls of the same operations: what users' own programs
// (and PyTorch) call, and the names Nsight Systems' expert rules look for
// (nsys analyze's cuda_api_sync, cuda_memcpy_sync, cuda_memcpy_async). The
// planted flaws make these; the executor runs them through the statically
// linked runtime (internal/cudart), on the same context and stream.
const (
	// DeviceSynchronize waits for all of the device's work.
	DeviceSynchronize = "cudaDeviceSynchronize"
	// RuntimeStreamSynchronize waits for the stream's work.
	RuntimeStreamSynchronize = "cudaStreamSynchronize"
	// RuntimeMemcpy is a synchronous copy in either direction,
	// RuntimeMemcpyAsync one enqueued on the stream (which blocks the
	// host anyway when the host memory is pageable).
	RuntimeMemcpy      = "cudaMemcpy"
	RuntimeMemcpyAsync = "cudaMemcpyAsync"
	// RuntimeMalloc and RuntimeFree allocate and free a device buffer;
	// cudaFree waits for the device's work first.
	RuntimeMalloc = "cudaMalloc"
	RuntimeFree   = "cudaFree"
)

// CopyDir is the direction of a Memcpy operation.
type CopyDir string

// The directions of a copy.
const (
	HostToDevice CopyDir = "htod"
	DeviceToHost CopyDir = "dtoh"
)

// MemsetD32 is the driver call of a memset of 32-bit words on the stream.
const MemsetD32 = "cuMemsetD32Async"

// MemsetD16 is the driver call of a memset of 16-bit words (bf16 buffers).
const MemsetD16 = "cuMemsetD16Async"

// MemsetCall is the memset driver call for buffers of element e.
func MemsetCall(e Elem) string {
	if e.Size() == 2 {
		return MemsetD16
	}
	return MemsetD32
}

// Op is one operation.
type Op struct {
	Kind OpKind `json:"kind"`
	// Name is the PTX entry point of a kernel (as Nsight Systems reports
	// it, CUPTI_ACTIVITY_KIND_KERNEL.shortName), or the driver call of
	// any other operation (cuMemsetD32Async, ...).
	Name string `json:"name"`
	// Module is the PTX module (ptx/<Module>.ptx) that holds a kernel.
	Module      string `json:"module,omitempty"`
	Grid        Dim3   `json:"grid"`
	Block       Dim3   `json:"block"`
	SharedBytes int    `json:"shared_bytes"`
	Args        []Arg  `json:"args,omitempty"`

	// Dst is the device memory a memset writes, a copy writes or reads
	// (Dir says which), or an allocation makes or a free releases (the
	// whole buffer); Value is a memset's 32-bit word. Host is the kind
	// of host memory on a copy's other side, which the executor owns.
	Dst   View       `json:"-"`
	Value uint32     `json:"value,omitempty"`
	Host  HostMemory `json:"host,omitempty"`
	Dir   CopyDir    `json:"dir,omitempty"`

	// Stream is the stream the operation is enqueued on: ComputeStream
	// (0, every operation of a clean step) or CopyStream. Event names the
	// CUDA event an EventOp operation records or waits for; the executor
	// makes one event per name.
	Stream int    `json:"stream,omitempty"`
	Event  string `json:"event,omitempty"`

	// Func is what a host operation runs on the CPU, in the executor's
	// thread; Name names it (the Go function a CPU sampler shows).
	Func func() `json:"-"`

	// Body is what a graph operation replays: operations only, no NVTX
	// ranges (a graph does not replay host calls).
	Body *Range `json:"-"`

	// FLOPs counts the floating-point operations the algorithm needs (2
	// per multiply-add), of which MatmulFLOPs are matrix products; Bytes
	// is the least device memory it must move (each pointer argument read
	// or written once). See internal/flops.
	FLOPs       int64 `json:"flops"`
	MatmulFLOPs int64 `json:"matmul_flops"`
	Bytes       int64 `json:"bytes"`

	// Where the operation sits in the model, for plan and messages: a
	// part ("layer"), its layer (-1 outside per-layer parts) and a step
	// ("qkv").
	Part  string `json:"part"`
	Layer int    `json:"layer"`
	Step  string `json:"step"`
}

// Where describes the operation's place in the model, e.g. "layer 3 / fc"
// or "head / lm head".
func (o *Op) Where() string {
	if o.Layer >= 0 {
		return fmt.Sprintf("%s %d / %s", o.Part, o.Layer, o.Step)
	}
	return o.Part + " / " + o.Step
}

// Target names what a memset, copy, allocation or free acts on.
func (o *Op) Target() string {
	if o.Kind == Kernel || o.Dst.IsNull() {
		return ""
	}
	if o.Dst.Label != "" {
		return o.Dst.Label
	}
	return o.Dst.Buf.String()
}

func (o *Op) String() string {
	s := o.describe()
	if o.Stream != ComputeStream {
		s += fmt.Sprintf(" on stream %d", o.Stream)
	}
	return s
}

func (o *Op) describe() string {
	switch o.Kind {
	case Kernel:
		args := make([]string, len(o.Args))
		for i, a := range o.Args {
			args[i] = a.String()
		}
		return fmt.Sprintf("%s<<<%v, %v, %d>>>(%s)", o.Name, o.Grid, o.Block, o.SharedBytes, strings.Join(args, ", "))
	case Graph:
		return fmt.Sprintf("%s %s(%d nodes)", o.Kind, o.Name, len(o.Body.Items))
	case Sync, Host:
		return fmt.Sprintf("%s %s()", o.Kind, o.Name)
	case EventOp:
		return fmt.Sprintf("%s %s(%s)", o.Kind, o.Name, o.Event)
	case Collective:
		if o.Name == NCCLAllReduce {
			return fmt.Sprintf("%s %s(avg %s %s)", o.Kind, o.Name, o.Dst.Buf.Elem, o.Dst)
		}
		return fmt.Sprintf("%s %s()", o.Kind, o.Name)
	case Memcpy:
		return fmt.Sprintf("%s %s(%s %s, %s)", o.Kind, o.Name, o.Dir, o.Host, o.Dst)
	default:
		return fmt.Sprintf("%s %s(%s)", o.Kind, o.Name, o.Dst)
	}
}

// Item is one element of a range: an operation or a nested range.
type Item struct {
	Op    *Op
	Range *Range
}

// Range is one NVTX range: operations and nested ranges, in the order they
// run.
type Range struct {
	Name  string
	Items []Item
	// Kind says what the range stands for, for its NVTX colour and
	// category; Layer is the transformer block it covers (-1 for none),
	// its NVTX payload. Both are zero for the template's ranges.
	Kind  RangeKind
	Layer int
}

// RangeKind is what an NVTX range of the program stands for.
type RangeKind string

// The kinds of range, from the outside in: the iteration and its passes
// (the template's), the model's parts (--nvtx=layer: embedding, layer{l},
// head), a block's halves (attention, mlp), and one operation (--nvtx=op).
const (
	PassRange  RangeKind = "pass"
	PartRange  RangeKind = "part"
	LayerRange RangeKind = "layer"
	HalfRange  RangeKind = "half"
	OpRange    RangeKind = "op"
	// AllReduceRange is the range around one bucket's all-reduce
	// (AllReduceName), a child of the backward at every NVTX depth.
	AllReduceRange RangeKind = "allreduce"
)

// AllReduce is the prefix of the all-reduce ranges' names.
const AllReduce = "allreduce"

// AllReduceName is the NVTX name of rank's all-reduce of bucket b, e.g.
// "allreduce rank0 bucket3": the rank is in the name because each rank is
// a process with its own timeline, and a report that merges them (nsys's
// process tree) must still say whose range it is.
func AllReduceName(rank, bucket int) string {
	return fmt.Sprintf("%s rank%d bucket%d", AllReduce, rank, bucket)
}

// NestKind appends a child range called name of kind k over layer l
// (-1 for none) and returns it.
func (r *Range) NestKind(name string, k RangeKind, l int) *Range {
	c := r.Nest(name)
	c.Kind, c.Layer = k, l
	return c
}

// Add appends operations to r.
func (r *Range) Add(ops ...Op) {
	for i := range ops {
		op := ops[i]
		r.Items = append(r.Items, Item{Op: &op})
	}
}

// Nest appends a child range called name and returns it.
func (r *Range) Nest(name string) *Range {
	c := &Range{Name: name, Layer: -1}
	r.Items = append(r.Items, Item{Range: c})
	return c
}

// Child returns the child range called name, or nil.
func (r *Range) Child(name string) *Range {
	for _, it := range r.Items {
		if it.Range != nil && it.Range.Name == name {
			return it.Range
		}
	}
	return nil
}

// Ops returns every operation of r and its children that does work on the
// GPU, in order: a graph's nodes in place of the graph.
func (r *Range) Ops() []*Op {
	var out []*Op
	r.walk(func(op *Op) { out = append(out, op) })
	return out
}

func (r *Range) walk(f func(*Op)) {
	for _, it := range r.Items {
		switch {
		case it.Op != nil && it.Op.Kind == Graph:
			it.Op.Body.walk(f)
		case it.Op != nil:
			f(it.Op)
		default:
			it.Range.walk(f)
		}
	}
}

// Program is one step of a model: its buffers, what runs once before the
// first iteration, and the iteration's range tree.
type Program struct {
	// Buffers are every device allocation, in allocation order.
	Buffers []*Buffer
	// Setup runs once after the buffers are allocated, before the first
	// iteration (the split-K counters' zeroing, say). It is outside every
	// NVTX range and the profiler window.
	Setup []Op
	// Iteration is the root range, named IterationTemplate.
	Iteration Range
}

// Buffer adds a buffer to the program and returns it.
func (p *Program) Buffer(name string, layer int, e Elem, elems int64, g Group) *Buffer {
	b := &Buffer{Name: name, Layer: layer, Elem: e, Elems: elems, Group: g}
	p.Buffers = append(p.Buffers, b)
	return b
}

// Find returns the buffer called name (at layer, -1 for none), or nil.
func (p *Program) Find(name string, layer int) *Buffer {
	for _, b := range p.Buffers {
		if b.Name == name && b.Layer == layer {
			return b
		}
	}
	return nil
}

// Ops returns every operation of one iteration, in order.
func (p *Program) Ops() []*Op { return p.Iteration.Ops() }

// Dynamic returns the buffers that the iteration allocates itself (Alloc
// operations), in declaration order: an executor leaves them to those
// operations. A dynamic buffer is allocated and freed once per iteration.
func (p *Program) Dynamic() []*Buffer {
	dyn := map[*Buffer]bool{}
	p.Iteration.walk(func(op *Op) {
		if op.Kind == Alloc {
			dyn[op.Dst.Buf] = true
		}
	})
	var out []*Buffer
	for _, b := range p.Buffers {
		if dyn[b] {
			out = append(out, b)
		}
	}
	return out
}

// Static returns the used buffers that are not dynamic: what an executor
// allocates before the setup, and keeps until the program is done.
func (p *Program) Static() []*Buffer {
	dyn := map[*Buffer]bool{}
	for _, b := range p.Dynamic() {
		dyn[b] = true
	}
	var out []*Buffer
	for _, b := range p.Used() {
		if !dyn[b] {
			out = append(out, b)
		}
	}
	return out
}

// Direct returns the operations directly inside r (not in a child
// range), in order: the iteration's own operations, which a run loop
// makes between pushing the iteration range and the forward's.
func (r *Range) Direct() []*Op {
	var out []*Op
	for _, it := range r.Items {
		if it.Op != nil {
			out = append(out, it.Op)
		}
	}
	return out
}

// Used returns the buffers that some operation of the setup or the
// iteration reads or writes, in declaration order: what an executor
// allocates and the memory plan sums. A buffer no operation touches is not
// allocated, so removing the last operation on a buffer shrinks the step's
// memory too.
func (p *Program) Used() []*Buffer {
	used := map[*Buffer]bool{}
	mark := func(op *Op) {
		if !op.Dst.IsNull() {
			used[op.Dst.Buf] = true
		}
		for _, a := range op.Args {
			if a.Kind == Ptr && !a.View.IsNull() {
				used[a.View.Buf] = true
			}
		}
	}
	for i := range p.Setup {
		mark(&p.Setup[i])
	}
	p.Iteration.walk(mark)
	var out []*Buffer
	for _, b := range p.Buffers {
		if used[b] {
			out = append(out, b)
		}
	}
	return out
}

// CaptureAsGraph turns the operations of r into one graph operation that
// replays them: r keeps its name, and its only item is the graph, whose
// nodes are r's operations in order. r must hold no nested range (a graph
// does not replay NVTX calls).
func CaptureAsGraph(r *Range) error {
	body := &Range{Name: r.Name}
	for _, it := range r.Items {
		if it.Range != nil {
			return fmt.Errorf("range %s: cannot capture the nested range %s in a graph", r.Name, it.Range.Name)
		}
		body.Items = append(body.Items, it)
	}
	g := Op{Kind: Graph, Name: GraphLaunch, Body: body, Part: r.Name, Layer: -1, Step: "graph"}
	for _, op := range body.Ops() {
		g.FLOPs += op.FLOPs
		g.MatmulFLOPs += op.MatmulFLOPs
		g.Bytes += op.Bytes
	}
	r.Items = []Item{{Op: &g}}
	return nil
}
