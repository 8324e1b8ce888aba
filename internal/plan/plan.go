// Package plan is the schedule a gpubench run follows: the NVTX range tree of
// one iteration and, for each range, the GPU operations launched directly
// inside it, in launch order and counted per kernel.
//
// The launch sequence itself lives in one table (schedule.go); everything
// here is derived from it and from the model shape. The package imports
// nothing that touches CUDA, so it is tested everywhere; internal/nsyscheck
// compares an Nsight Systems report against a Plan.
package plan

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gpubench/gpubench/internal/config"
)

// NVTX range names. The iteration range's name carries the iteration index:
// "iteration0", "iteration1", ...; the plan calls it IterationTemplate.
const (
	IterationPrefix   = "iteration"
	IterationTemplate = "iteration{i}"
	Forward           = "forward"
	Backward          = "backward"
)

// IterationName is the NVTX name of iteration i, e.g. "iteration3".
func IterationName(i int) string { return IterationPrefix + strconv.Itoa(i) }

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

// OpKind tells kernels from memsets; profilers list them in different tables.
type OpKind string

// The kinds of GPU operation.
const (
	Kernel OpKind = "kernel"
	Memset OpKind = "memset"
)

// Op is one GPU operation.
type Op struct {
	Kind OpKind `json:"kind"`
	// Name is the PTX entry point of a kernel, or the driver call of a
	// memset (cuMemsetD32Async).
	Name string `json:"name"`
	// Target names the buffer a memset clears; empty for kernels.
	Target string `json:"target,omitempty"`
}

// Step is a group of operations that implement one piece of the model, such
// as the qkv projection of a layer, launched in order.
type Step struct {
	Label string `json:"label"`
	Ops   []Op   `json:"ops"`
}

// Block is a run of steps launched once, or once per transformer layer.
type Block struct {
	Label string `json:"label"`
	// PerLayer blocks run once per layer: for l = 0..L-1, or for
	// l = L-1..0 when Descending.
	PerLayer   bool `json:"per_layer"`
	Descending bool `json:"descending,omitempty"`
	// Repeat is how often the steps run: 1, or L for a per-layer block.
	Repeat int    `json:"repeat"`
	Steps  []Step `json:"steps"`
}

// Layer returns the layer index of the rep-th repetition of a per-layer
// block (rep counts from 0 in launch order), or -1 for other blocks.
func (b Block) Layer(rep int) int {
	switch {
	case !b.PerLayer:
		return -1
	case b.Descending:
		return b.Repeat - 1 - rep
	default:
		return rep
	}
}

// Count is how many times one kernel (or memset call) is launched.
type Count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// Totals count launches.
type Totals struct {
	Kernels  int `json:"kernels"`
	Memsets  int `json:"memsets"`
	Launches int `json:"launches"` // Kernels + Memsets
}

func (t *Totals) add(o Totals) {
	t.Kernels += o.Kernels
	t.Memsets += o.Memsets
	t.Launches += o.Launches
}

// Range is one NVTX range of an iteration.
type Range struct {
	// Name is the NVTX range name; IterationTemplate for the iteration.
	Name string `json:"name"`
	// Blocks are the operations launched directly inside the range (not
	// inside a child range), in launch order.
	Blocks []Block `json:"blocks"`
	// Kernels and Memsets count Blocks per name, in order of first launch.
	Kernels []Count `json:"kernels"`
	Memsets []Count `json:"memsets"`
	// Direct counts the launches directly inside the range; Inclusive adds
	// those of all child ranges.
	Direct    Totals `json:"direct"`
	Inclusive Totals `json:"inclusive"`
	// Children are the nested ranges, in the order they run.
	Children []Range `json:"children"`
}

// Launch is one operation of a range's launch sequence.
type Launch struct {
	Op
	Block string `json:"block"`
	Layer int    `json:"layer"` // -1 outside per-layer blocks
	Step  string `json:"step"`
}

// Where describes the launch's place in the schedule, e.g. "layer 3 / fc"
// or "head / lm head".
func (l Launch) Where() string {
	if l.Layer >= 0 {
		return fmt.Sprintf("%s %d / %s", l.Block, l.Layer, l.Step)
	}
	return l.Block + " / " + l.Step
}

// Launches expands the range's blocks into its launch sequence, without
// those of child ranges.
func (r Range) Launches() []Launch {
	var out []Launch
	for _, b := range r.Blocks {
		for rep := 0; rep < b.Repeat; rep++ {
			for _, s := range b.Steps {
				for _, op := range s.Ops {
					out = append(out, Launch{Op: op, Block: b.Label, Layer: b.Layer(rep), Step: s.Label})
				}
			}
		}
	}
	return out
}

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

// Plan is the schedule of one iteration.
type Plan struct {
	Mode config.Mode `json:"mode"`
	Dims config.Dims `json:"dims"`
	// Iteration is the root range, named IterationTemplate; in a run it is
	// IterationName(i) for the i-th iteration.
	Iteration Range `json:"iteration"`
	// PerIteration counts all launches of one iteration.
	PerIteration Totals `json:"per_iteration"`
	// Ranges is the number of NVTX ranges one iteration pushes.
	Ranges int `json:"ranges"`
}

// For returns the plan of one iteration of a model of shape d in mode
// (config.Train: forward then backward; config.Infer: forward only). The
// forward pass is the same in both modes, loss included. For panics on a mode
// that config.ParseMode would reject.
func For(d config.Dims, mode config.Mode) Plan {
	L := max(d.L, 0)
	root := Range{Name: IterationTemplate}
	switch mode {
	case config.Train:
		root.Children = []Range{
			newRange(Forward, forwardSchedule, L),
			newRange(Backward, backwardSchedule, L),
		}
	case config.Infer:
		root.Children = []Range{newRange(Forward, forwardSchedule, L)}
	default:
		panic(fmt.Sprintf("plan.For: unknown mode %q (allowed: %s, %s)", mode, config.Train, config.Infer))
	}
	return Build(mode, d, root)
}

// Build completes a plan from its range tree: it fills in the counts and
// totals of every range from the ranges' Blocks (with Repeat as given). For
// uses it for the model; tests and small tools use it for custom schedules,
// such as `gpubench selftest`'s one kernel per range.
func Build(mode config.Mode, d config.Dims, iteration Range) Plan {
	root := cloneRange(iteration)
	root.finish()
	return Plan{
		Mode:         mode,
		Dims:         d,
		Iteration:    root,
		PerIteration: root.Inclusive,
		Ranges:       root.count(),
	}
}

func cloneRange(r Range) Range {
	out := Range{Name: r.Name}
	for _, b := range r.Blocks {
		b.Steps = cloneSteps(b.Steps)
		out.Blocks = append(out.Blocks, b)
	}
	for _, c := range r.Children {
		out.Children = append(out.Children, cloneRange(c))
	}
	return out
}

func newRange(name string, specs []blockSpec, L int) Range {
	r := Range{Name: name}
	for _, s := range specs {
		b := Block{Label: s.label, Repeat: 1, Steps: cloneSteps(s.steps)}
		if s.order != noLayers {
			b.PerLayer, b.Descending, b.Repeat = true, s.order == descending, L
		}
		r.Blocks = append(r.Blocks, b)
	}
	return r
}

// cloneSteps copies the table so a caller editing a Plan cannot change it.
func cloneSteps(steps []Step) []Step {
	out := make([]Step, len(steps))
	for i, s := range steps {
		out[i] = Step{Label: s.Label, Ops: append([]Op(nil), s.Ops...)}
	}
	return out
}

// finish fills in the counts and totals of r and its children.
func (r *Range) finish() {
	r.Kernels, r.Memsets = []Count{}, []Count{}
	r.Direct = Totals{}
	for _, l := range r.Launches() {
		switch l.Kind {
		case Kernel:
			r.Kernels = bump(r.Kernels, l.Name)
			r.Direct.Kernels++
		case Memset:
			r.Memsets = bump(r.Memsets, l.Name)
			r.Direct.Memsets++
		}
		r.Direct.Launches++
	}
	if r.Blocks == nil {
		r.Blocks = []Block{}
	}
	if r.Children == nil {
		r.Children = []Range{}
	}
	r.Inclusive = r.Direct
	for i := range r.Children {
		r.Children[i].finish()
		r.Inclusive.add(r.Children[i].Inclusive)
	}
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
