// Package plan is a program (internal/program) as `gpubench plan` prints it
// and `gpubench check` reads it: the NVTX range tree of one iteration and,
// for each range, the GPU operations launched directly inside it, in launch
// order, with everything about them but device addresses.
//
// Nothing here is written by hand: For builds the model's program and
// FromProgram copies it out. The package imports nothing that touches
// CUDA, so it is tested everywhere; internal/nsyscheck compares an Nsight
// Systems report against a Plan.
package plan

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model"
)

// NVTX range names (see package program).
const (
	IterationPrefix   = program.IterationPrefix
	IterationTemplate = program.IterationTemplate
	Forward           = program.Forward
	Backward          = program.Backward
)

// IterationName is the NVTX name of iteration i, e.g. "iteration3".
func IterationName(i int) string { return program.IterationName(i) }

// ParseIterationName returns i for a name "iteration{i}" (i a decimal
// number without sign or leading zeros) and reports whether name has that
// form.
func ParseIterationName(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, IterationPrefix)
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(s)
	if err != nil {
		return 0, false
	}
	return i, true
}

// OpKind is the kind of an operation (program.OpKind).
type OpKind = program.OpKind

// The kinds of operation a profiler lists as GPU work.
const (
	Kernel = program.Kernel
	Memset = program.Memset
	Graph  = program.Graph
)

// MemsetD32 is the driver call of the program's memsets.
const MemsetD32 = program.MemsetD32

// Arg is a kernel argument without its address: the buffer (or tensor) it
// points at, or the scalar's value.
type Arg struct {
	Param  string          `json:"param"`
	Kind   program.ArgKind `json:"kind"`
	Buffer string          `json:"buffer,omitempty"` // "null" for a null pointer
	Elem   program.Elem    `json:"elem,omitempty"`
	Elems  int64           `json:"elems,omitempty"` // the view's size
	Access program.Access  `json:"access,omitempty"`
	Value  string          `json:"value,omitempty"` // a scalar's value
}

// Op is one operation of the program.
type Op struct {
	Kind OpKind `json:"kind"`
	// Name is the PTX entry point of a kernel, or the driver call of any
	// other operation (cuMemsetD32Async).
	Name string `json:"name"`
	// Target names the buffer a memset clears, a copy writes or reads,
	// an allocation makes or a free releases; empty for kernels.
	Target string `json:"target,omitempty"`
	// Dir and Host are a copy's direction and host memory.
	Dir  program.CopyDir    `json:"dir,omitempty"`
	Host program.HostMemory `json:"host,omitempty"`
	// Stream is the stream the operation is enqueued on (0: the compute
	// stream); Event the event an event operation records or waits for.
	Stream      int          `json:"stream,omitempty"`
	Event       string       `json:"event,omitempty"`
	Grid        program.Dim3 `json:"grid"`
	Block       program.Dim3 `json:"block"`
	SharedBytes int          `json:"shared_bytes"`
	Args        []Arg        `json:"args,omitempty"`
	FLOPs       int64        `json:"flops"`
	Bytes       int64        `json:"bytes"`
	// Nodes are what a graph launch replays, in capture order.
	Nodes []Launch `json:"nodes,omitempty"`
}

// Launch is one operation with its place in the model.
type Launch struct {
	Op
	Part  string `json:"part"`
	Layer int    `json:"layer"` // -1 outside per-layer parts
	Step  string `json:"step"`
}

// Where describes the launch's place in the model, e.g. "layer 3 / fc" or
// "head / lm head".
func (l Launch) Where() string {
	if l.Layer >= 0 {
		return fmt.Sprintf("%s %d / %s", l.Part, l.Layer, l.Step)
	}
	return l.Part + " / " + l.Step
}

// Count is how many times one kernel (or memset call) is launched.
type Count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// Totals count launches and their annotations.
type Totals struct {
	Kernels  int `json:"kernels"`
	Memsets  int `json:"memsets"`
	Memcpys  int `json:"memcpys,omitempty"`
	Graphs   int `json:"graphs"`   // graph launches; their nodes count as kernels and memsets
	Launches int `json:"launches"` // Kernels + Memsets + Memcpys: what the GPU runs
	// Calls count the operations that run on the host only:
	// synchronisations, allocations, frees and host work.
	Calls int   `json:"calls,omitempty"`
	FLOPs int64 `json:"flops"`
	Bytes int64 `json:"bytes"`
}

// GPUWork reports whether the GPU runs an operation of kind k (a profiler
// lists it in its own table), rather than the host alone.
func GPUWork(k OpKind) bool {
	return k == Kernel || k == Memset || k == program.Memcpy || k == Graph
}

func (t *Totals) add(o Totals) {
	t.Kernels += o.Kernels
	t.Memsets += o.Memsets
	t.Memcpys += o.Memcpys
	t.Calls += o.Calls
	t.Graphs += o.Graphs
	t.Launches += o.Launches
	t.FLOPs += o.FLOPs
	t.Bytes += o.Bytes
}

// Range is one NVTX range of an iteration.
type Range struct {
	// Name is the NVTX range name; IterationTemplate for the iteration.
	Name string `json:"name"`
	// Ops are the operations launched directly inside the range (not
	// inside a child range), in launch order; a graph launch holds its
	// nodes.
	Ops []Launch `json:"ops"`
	// Kernels and Memsets count the GPU operations of Ops (a graph's
	// nodes included) per name, in order of first launch.
	Kernels []Count `json:"kernels"`
	Memsets []Count `json:"memsets"`
	// Direct counts the launches directly inside the range; Inclusive adds
	// those of all child ranges.
	Direct    Totals `json:"direct"`
	Inclusive Totals `json:"inclusive"`
	// Children are the nested ranges, in the order they run.
	Children []Range `json:"children"`
	// After is how many of the parent's own operations (its Ops) run
	// before this range: a data-parallel backward's all-reduce ranges sit
	// between its kernels. Every other range of gpubench's programs comes
	// after all of its parent's operations.
	After int `json:"after,omitempty"`
}

// Launches is the range's sequence of GPU operations, without those of
// child ranges: Ops with each graph launch replaced by its nodes, which is
// what a profiler that traces graph nodes shows.
func (r Range) Launches() []Launch {
	var out []Launch
	for _, l := range r.Ops {
		if l.Kind == program.Graph {
			out = append(out, l.Nodes...)
		} else {
			out = append(out, l)
		}
	}
	return out
}

// GraphLaunches is the number of graph launches directly inside the range.
func (r Range) GraphLaunches() int { return r.Direct.Graphs }

// KernelCount is how many times the range launches kernel name directly.
func (r Range) KernelCount(name string) int { return countOf(r.Kernels, name) }

// MemsetCount is how many memsets with driver call name the range launches
// directly.
func (r Range) MemsetCount(name string) int { return countOf(r.Memsets, name) }

// Child returns the child range called name, or nil.
func (r *Range) Child(name string) *Range {
	for i := range r.Children {
		if r.Children[i].Name == name {
			return &r.Children[i]
		}
	}
	return nil
}

func countOf(cs []Count, name string) int {
	for _, c := range cs {
		if c.Name == name {
			return c.Count
		}
	}
	return 0
}

// Plan is one iteration of a program.
type Plan struct {
	Mode config.Mode `json:"mode"`
	Dims config.Dims `json:"dims"`
	// DType is the precision the program was built for; Kernels says
	// which kernels that gives (model.Step.KernelPath).
	DType   config.DType `json:"dtype"`
	Kernels string       `json:"kernels"`
	// Flaws are the flaws planted in the program (--flaw).
	Flaws []config.Flaw `json:"flaws,omitempty"`
	// SMs is the multiprocessor count the program was built for; it
	// changes launch shapes, never which kernels run.
	SMs int `json:"sms"`
	// Setup is what runs once before the first iteration, outside every
	// range and the profiler window.
	Setup []Launch `json:"setup"`
	// Iteration is the root range, named IterationTemplate; in a run it is
	// IterationName(i) for the i-th iteration.
	Iteration Range `json:"iteration"`
	// PerIteration counts all launches of one iteration.
	PerIteration Totals `json:"per_iteration"`
	// Ranges is the number of NVTX ranges one iteration pushes.
	Ranges int `json:"ranges"`
}

// For returns the plan of one iteration of the GPT-2 of shape d in mode,
// built for DefaultSMs (model.Program). d must pass config.Dims.Validate.
func For(d config.Dims, mode config.Mode) Plan {
	return Of(model.Program(d, mode, model.Options{}))
}

// Of is the plan of a model's program.
func Of(m *model.Step) Plan {
	p := FromProgram(m.Program)
	p.Mode, p.Dims, p.SMs, p.DType, p.Kernels = m.Mode, m.Dims, m.SMs, m.DType, m.KernelPath()
	p.Flaws = m.Flaws
	return p
}

// FromProgram copies a program out as a plan (Mode, Dims and SMs left
// zero). A child range between its parent's operations says where in
// After.
func FromProgram(p *program.Program) Plan {
	root := fromRange(&p.Iteration)
	out := Plan{Iteration: root, PerIteration: root.Inclusive, Ranges: root.count()}
	out.Setup = []Launch{}
	for i := range p.Setup {
		out.Setup = append(out.Setup, launchOf(&p.Setup[i]))
	}
	return out
}

func fromRange(pr *program.Range) Range {
	r := Range{Name: pr.Name, Ops: []Launch{}, Kernels: []Count{}, Memsets: []Count{}, Children: []Range{}}
	for _, it := range pr.Items {
		if it.Range != nil {
			c := fromRange(it.Range)
			c.After = len(r.Ops)
			r.Children = append(r.Children, c)
			continue
		}
		l := launchOf(it.Op)
		r.Ops = append(r.Ops, l)
		r.Direct.FLOPs += l.FLOPs
		r.Direct.Bytes += l.Bytes
		if l.Kind == program.Graph {
			r.Direct.Graphs++
		}
	}
	for _, l := range r.Launches() {
		switch l.Kind {
		case Kernel:
			r.Kernels = bump(r.Kernels, l.Name)
			r.Direct.Kernels++
		case Memset:
			r.Memsets = bump(r.Memsets, l.Name)
			r.Direct.Memsets++
		case program.Memcpy:
			r.Direct.Memcpys++
		default:
			r.Direct.Calls++
			continue
		}
		r.Direct.Launches++
	}
	r.Inclusive = r.Direct
	for _, c := range r.Children {
		r.Inclusive.add(c.Inclusive)
	}
	return r
}

func launchOf(op *program.Op) Launch {
	l := Launch{Op: Op{Kind: op.Kind, Name: op.Name, Target: op.Target(), Dir: op.Dir, Host: op.Host, Stream: op.Stream, Event: op.Event, Grid: op.Grid, Block: op.Block,
		SharedBytes: op.SharedBytes, FLOPs: op.FLOPs, Bytes: op.Bytes}, Part: op.Part, Layer: op.Layer, Step: op.Step}
	for _, a := range op.Args {
		pa := Arg{Param: a.Param, Kind: a.Kind, Access: a.Access}
		switch {
		case a.Kind != program.Ptr:
			pa.Access = ""
			if a.Kind == program.I32Arg {
				pa.Value = strconv.Itoa(int(a.Int))
			} else {
				pa.Value = strconv.FormatFloat(float64(a.Float), 'g', -1, 32)
			}
		case a.View.IsNull():
			pa.Buffer = "null"
		default:
			pa.Buffer, pa.Elem, pa.Elems = a.View.String(), a.View.Buf.Elem, a.View.Elems
		}
		l.Args = append(l.Args, pa)
	}
	if op.Kind == program.Graph {
		for _, it := range op.Body.Items {
			l.Nodes = append(l.Nodes, launchOf(it.Op))
		}
	}
	return l
}

func bump(cs []Count, name string) []Count {
	for i := range cs {
		if cs[i].Name == name {
			cs[i].Count++
			return cs
		}
	}
	return append(cs, Count{Name: name, Count: 1})
}

func (r Range) count() int {
	n := 1
	for _, c := range r.Children {
		n += c.count()
	}
	return n
}
