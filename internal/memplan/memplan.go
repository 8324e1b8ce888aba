// Package memplan says how many bytes of device memory a gpubench run
// needs, buffer by buffer, before anything is allocated: for the memory
// preflight, for choosing the largest batch that fits, and for the report.
//
// The buffers are the program's (model.Program): the same list the CUDA
// executor allocates, so the plan is exact by construction. A per-layer
// buffer (one allocation per layer) is reported once with its layer count.
//
// Plan.Total is the exact sum; Plan.Required adds the allocator's rounding
// (each allocation rounded up to AllocGranularity) and Headroom, and is what
// the preflight compares with the free memory that cuMemGetInfo reports
// after the context exists.
package memplan

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model"
)

// AllocGranularity is what each allocation is rounded up to in Required:
// the CUDA driver hands out device memory in 2 MiB pages.
const AllocGranularity = 2 << 20

// Headroom is added to Required for device memory the plan does not list:
// loaded kernel modules, CUDA events and small driver-side allocations made
// after the preflight.
const Headroom = 64 << 20

// Group says what a buffer is for (program.Group).
type Group = program.Group

// The groups of buffers.
const (
	Params      = program.Params
	Grads       = program.Grads
	Activations = program.Activations
	Inputs      = program.Inputs
	Scratch     = program.Scratch
	KVCache     = program.KVCache
)

// Buffer is one allocation of the plan.
type Buffer struct {
	Name     string `json:"name"`
	Group    Group  `json:"group"`
	Layers   int    `json:"layers"`   // L for a per-layer buffer, else 1
	Elements int64  `json:"elements"` // total, all layers
	Bytes    int64  `json:"bytes"`
}

// Plan is the memory a run needs.
type Plan struct {
	Dims    config.Dims `json:"-"`
	Mode    config.Mode `json:"mode"`
	Buffers []Buffer    `json:"buffers"`

	ParamCount  int64 `json:"param_count"` // P
	Params      int64 `json:"params_bytes"`
	Grads       int64 `json:"grads_bytes"`
	Activations int64 `json:"activations_bytes"`
	Inputs      int64 `json:"inputs_bytes"`
	Scratch     int64 `json:"scratch_bytes"`
	KVCache     int64 `json:"kv_cache_bytes,omitempty"`
	Total       int64 `json:"total_bytes"`    // exact sum of Buffers
	Required    int64 `json:"required_bytes"` // Total with rounding and Headroom

	// flaws are those NewWith built the program with, so that Refuse's
	// suggestions are for the same program (unfused needs gelu_tmp).
	flaws []config.Flaw
}

// New returns the plan for d in mode at dtype dt ("" is fp32): the buffers
// of model.Program. It checks the mode and that every dimension is
// positive, but not the rest of config.Dims.Validate, which callers run
// first.
func New(d config.Dims, mode config.Mode, dt config.DType) (Plan, error) {
	return NewWith(d, mode, model.Options{DType: dt})
}

// NewWith is New for the program built with o: its flaws change the
// buffers (unfused's GELU chain needs a scratch activation), the other
// options do not.
func NewWith(d config.Dims, mode config.Mode, o model.Options) (Plan, error) {
	if mode != config.Train && mode != config.Infer && !(mode == config.Generate && d.IsLlama()) {
		return Plan{}, fmt.Errorf("memplan: unknown mode %q", mode)
	}
	if d.V <= 0 || d.MaxT <= 0 || d.T <= 0 || d.L <= 0 || d.NH <= 0 || d.C <= 0 || d.B <= 0 {
		return Plan{}, fmt.Errorf("memplan: dims must be positive: %v", d)
	}
	m := model.Program(d, mode, o)
	p := Of(m.Program)
	p.Dims, p.Mode, p.ParamCount, p.flaws = d, mode, m.Params.Elems, o.Flaws
	return p, nil
}

// Of sums the buffers of a program.
func Of(prog *program.Program) Plan {
	var p Plan
	index := map[string]int{}
	for _, b := range prog.Used() {
		bytes := b.Bytes()
		p.Total += bytes
		p.Required += roundUp(bytes, AllocGranularity)
		switch b.Group {
		case Params:
			p.Params += bytes
		case Grads:
			p.Grads += bytes
		case Activations:
			p.Activations += bytes
		case Inputs:
			p.Inputs += bytes
		case Scratch:
			p.Scratch += bytes
		case KVCache:
			p.KVCache += bytes
		}
		if i, ok := index[b.Name]; ok {
			p.Buffers[i].Layers++
			p.Buffers[i].Elements += b.Elems
			p.Buffers[i].Bytes += bytes
			continue
		}
		index[b.Name] = len(p.Buffers)
		p.Buffers = append(p.Buffers, Buffer{Name: b.Name, Group: b.Group, Layers: 1, Elements: b.Elems, Bytes: bytes})
	}
	p.Required += Headroom
	return p
}

func roundUp(n, m int64) int64 { return (n + m - 1) / m * m }

// Buffer returns the named buffer of the plan.
func (p Plan) Buffer(name string) (Buffer, bool) {
	for _, b := range p.Buffers {
		if b.Name == name {
			return b, true
		}
	}
	return Buffer{}, false
}

// Fits reports whether the plan's Required bytes fit in freeBytes.
func (p Plan) Fits(freeBytes int64) bool { return p.Required <= freeBytes }

// LargestBatchThatFits returns the largest batch size B for which the plan
// of d (with d.B replaced) in mode fits in freeBytes and d passes
// config.Dims.Validate (which bounds B by the kernels' 32-bit indexing). It
// returns 0 if no B does, including when d is invalid for a reason other
// than B, or mode is unknown.
func LargestBatchThatFits(d config.Dims, mode config.Mode, dt config.DType, freeBytes int64) int {
	return largestBatch(d, mode, model.Options{DType: dt}, freeBytes)
}

// largestBatch is LargestBatchThatFits for the program built with o.
func largestBatch(d config.Dims, mode config.Mode, o model.Options, freeBytes int64) int {
	ok := func(b int) bool {
		d.B = b
		if d.Validate() != nil {
			return false
		}
		p, err := NewWith(d, mode, o)
		return err == nil && p.Fits(freeBytes)
	}
	if !ok(1) {
		return 0
	}
	// Required grows with B and Validate fails past some B, so both are
	// monotone: find the last B that passes by doubling, then bisection.
	lo, hi := 1, 2
	for ok(hi) {
		lo = hi
		if hi > 1<<30 {
			return lo
		}
		hi *= 2
	}
	return lastTrue(ok, lo, hi)
}

// lastTrue bisects a monotone ok, true at lo and false at hi, for the last
// value where it holds.
func lastTrue(ok func(int) bool, lo, hi int) int {
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if ok(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// LargestPromptThatFits returns, for generate mode, the longest prompt T
// for which the plan of d (with d.T replaced, d.New kept) fits in
// freeBytes and d passes config.Dims.Validate: with the New-1 decode steps
// its KV cache holds a context of T+New-1 positions. It returns 0 if no T
// does.
func LargestPromptThatFits(d config.Dims, dt config.DType, freeBytes int64) int {
	ok := func(t int) bool {
		d.T = t
		if d.Validate() != nil {
			return false
		}
		p, err := New(d, config.Generate, dt)
		return err == nil && p.Fits(freeBytes)
	}
	if !ok(1) {
		return 0
	}
	// Required grows with T, and Validate fails once T+New-1 passes the
	// context: bisect for the last T that passes.
	return lastTrue(ok, 1, d.MaxT+1)
}

// Refuse is the memory preflight's verdict on plan need (of model name, d,
// mode and dt, and the flaws NewWith built it with) against freeBytes of
// free device memory: nil when it fits,
// else one line saying what was asked, what it needs and what would fit:
// the largest batch, and in generate mode, whose KV cache grows with the
// context, also the longest prompt at this batch.
func Refuse(name string, d config.Dims, mode config.Mode, dt config.DType, need Plan, freeBytes int64) error {
	if need.Fits(freeBytes) {
		return nil
	}
	msg := fmt.Sprintf("--batch-size: %s at batch %d needs %s of device memory, %s is free",
		name, d.B, gib(need.Required), gib(freeBytes))
	b := largestBatch(d, mode, model.Options{DType: dt, Flaws: need.flaws}, freeBytes)
	if mode == config.Generate {
		msg = fmt.Sprintf("%s, with a KV cache of %d positions a sequence (%s)", msg, d.KVLen(), gib(need.KVCache))
		t := LargestPromptThatFits(d, dt, freeBytes)
		switch {
		case t > 0 && b > 0:
			return fmt.Errorf("%s (the largest batch that fits is %d; at batch %d the longest --prompt-len that fits is %d, a context of %d)",
				msg, b, d.B, t, t+d.New-1)
		case t > 0:
			return fmt.Errorf("%s (at batch %d the longest --prompt-len that fits is %d, a context of %d)", msg, d.B, t, t+d.New-1)
		}
	}
	if b > 0 {
		return fmt.Errorf("%s (the largest batch that fits is %d)", msg, b)
	}
	return fmt.Errorf("%s (not even batch 1 fits)", msg)
}

// gib formats a byte count in GiB.
func gib(n int64) string { return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30)) }
