// Package memplan says how many bytes of device memory a gpubench run
// needs, buffer by buffer, before anything is allocated: for the memory
// preflight, for choosing the largest batch that fits, and for the report.
//
// The buffers are those of the GPU model (llm.c layout, fp32). They are
// listed in two tables below (ActivationTable, ScratchTable) that the
// model's allocation code mirrors: change a table and the model together
// (a GPU test compares the two). The parameters are model/ref's Layout.
//
//   - params and grads: one flat buffer each of P floats, tensors in llm.c
//     order (model/ref.Layout). Infer allocates no grads.
//   - activations: what the forward pass writes and the backward pass
//     reads. A "per layer" buffer is allocated once for all L layers
//     (stacked, L × the size shown). logits are reused in place for
//     dlogits, so the backward pass needs no separate buffer for them.
//     Both modes allocate all of them (infer keeps it simple).
//   - scratch: backward-only work buffers (train only).
//
// Every element is 4 bytes (float32 or int32). Plan.Total is the exact sum;
// Plan.Required adds the allocator's rounding (each buffer rounded up to
// AllocGranularity) and Headroom, and is what the preflight compares with
// the free memory that cuMemGetInfo reports after the context exists.
package memplan

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/gemmplan"
	"github.com/gpubench/gpubench/model/ref"
)

// ElemBytes is the size of every element: float32 or int32.
const ElemBytes = 4

// PartialRowsPerBlock is how many rows one block of the bias-gradient and
// LayerNorm-parameter-gradient kernels reduces before writing a partial
// sum; the partials buffer holds ceil(N/PartialRowsPerBlock) rows of
// partials (see ScratchTable).
const PartialRowsPerBlock = 32

// AllocGranularity is what each buffer is rounded up to in Required:
// the CUDA driver hands out device memory in 2 MiB pages.
const AllocGranularity = 2 << 20

// Headroom is added to Required for device memory the plan does not list:
// loaded kernel modules, CUDA events and small driver-side allocations made
// after the preflight.
const Headroom = 64 << 20

// Group says what a buffer is for.
type Group string

// The groups of buffers.
const (
	Params      Group = "params"
	Grads       Group = "grads"
	Activations Group = "activations"
	Scratch     Group = "scratch"
)

// Shape is Dims in int64, with N = B·T, for the tables' size functions.
type Shape struct {
	V, MaxT, T, L, NH, C, B int64
	N                       int64 // B·T
}

func newShape(d config.Dims) Shape {
	s := Shape{V: int64(d.V), MaxT: int64(d.MaxT), T: int64(d.T), L: int64(d.L),
		NH: int64(d.NH), C: int64(d.C), B: int64(d.B)}
	s.N = s.B * s.T
	return s
}

// Entry is one row of a table: a buffer and its element count (per layer
// when PerLayer).
type Entry struct {
	Name     string
	PerLayer bool
	Int32    bool // int32 elements (tokens, targets); float32 otherwise
	Size     func(s Shape) int64
}

// ActivationTable is the forward pass's buffers, allocated in both modes.
var ActivationTable = []Entry{
	{"encoded", false, false, func(s Shape) int64 { return s.N * s.C }},
	{"ln1", true, false, func(s Shape) int64 { return s.N * s.C }},
	{"ln1_mean", true, false, func(s Shape) int64 { return s.N }},
	{"ln1_rstd", true, false, func(s Shape) int64 { return s.N }},
	{"qkv", true, false, func(s Shape) int64 { return s.N * 3 * s.C }},
	{"atty", true, false, func(s Shape) int64 { return s.N * s.C }},
	{"att_lse", true, false, func(s Shape) int64 { return s.B * s.NH * s.T }},
	{"residual2", true, false, func(s Shape) int64 { return s.N * s.C }},
	{"ln2", true, false, func(s Shape) int64 { return s.N * s.C }},
	{"ln2_mean", true, false, func(s Shape) int64 { return s.N }},
	{"ln2_rstd", true, false, func(s Shape) int64 { return s.N }},
	{"fch", true, false, func(s Shape) int64 { return s.N * 4 * s.C }},
	{"fch_gelu", true, false, func(s Shape) int64 { return s.N * 4 * s.C }},
	{"residual3", true, false, func(s Shape) int64 { return s.N * s.C }},
	{"lnf", false, false, func(s Shape) int64 { return s.N * s.C }},
	{"lnf_mean", false, false, func(s Shape) int64 { return s.N }},
	{"lnf_rstd", false, false, func(s Shape) int64 { return s.N }},
	{"logits", false, false, func(s Shape) int64 { return s.N * s.V }}, // reused in place for dlogits
	{"losses", false, false, func(s Shape) int64 { return s.N }},
	{"lse", false, false, func(s Shape) int64 { return s.N }}, // logsumexp of each logits row
	// A projection's output before its residual add; the backward does not
	// need it, so one buffer serves every layer.
	{"proj", false, false, func(s Shape) int64 { return s.N * s.C }},
	{"loss", false, false, func(s Shape) int64 { return 1 }},
	{"tokens", false, true, func(s Shape) int64 { return s.N }},
	{"targets", false, true, func(s Shape) int64 { return s.N }},
}

// ScratchTable is the backward pass's work buffers, allocated in train mode
// only.
var ScratchTable = []Entry{
	{"dresidual", false, false, func(s Shape) int64 { return s.N * s.C }},
	{"dC", false, false, func(s Shape) int64 { return s.N * s.C }},               // dlnf, dln2, datty, dln1 in turn
	{"d4C", false, false, func(s Shape) int64 { return s.N * 4 * s.C }},          // dfch, then dqkv
	{"att_delta", false, false, func(s Shape) int64 { return s.B * s.NH * s.T }}, // D = rowsum(dO∘O)
	// LayerNorm dweight and dbias partial sums, one row of 2C per
	// PartialRowsPerBlock rows (kernels.LayerNormPartialSize).
	{"ln_partials", false, false, func(s Shape) int64 { return 2 * s.C * ceilDiv(s.N, PartialRowsPerBlock) }},
	// The weight gradients' split-K workspace (kernels.MatmulScratch):
	// partial tiles and per-tile counters, one set for every linear layer
	// in turn, sized for the one that needs most, at least one element
	// each.
	{"matmul_partials", false, false, func(s Shape) int64 { f, _ := MatmulScratch(s); return f }},
	{"matmul_counters", false, true, func(s Shape) int64 { _, c := MatmulScratch(s); return c }},
	// Token positions grouped by token, for the embedding backward
	// (internal/buckets): order, bucket starts, bucket tokens.
	{"bucket_order", false, true, func(s Shape) int64 { return s.N }},
	{"bucket_start", false, true, func(s Shape) int64 { return s.N + 1 }},
	{"bucket_token", false, true, func(s Shape) int64 { return s.N }},
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// MatmulScratch is the split-K workspace of the model's weight gradients,
// in partial floats and int32 counters, as model.allocate sizes it: the
// most that any linear layer (qkv, attention projection, fc, fc
// projection, lm head) needs (gemmplan.WeightGradScratch, a bound for any
// SM count that grows with N), and at least 1.
func MatmulScratch(s Shape) (floats, counters int64) {
	n, c := int(s.N), int(s.C)
	floats, counters = 1, 1
	for _, l := range [][2]int{{c, 3 * c}, {c, c}, {c, 4 * c}, {4 * c, c}, {c, int(s.V)}} { // (in, out)
		f, k := gemmplan.WeightGradScratch(n, l[0], l[1])
		floats, counters = max(floats, int64(f)), max(counters, int64(k))
	}
	return floats, counters
}

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
	Scratch     int64 `json:"scratch_bytes"`
	Total       int64 `json:"total_bytes"`    // exact sum of Buffers
	Required    int64 `json:"required_bytes"` // Total with rounding and Headroom
}

// New returns the plan for d in mode. It checks the mode but not d (see
// config.Dims.Validate); a non-positive dimension is an error.
func New(d config.Dims, mode config.Mode) (Plan, error) {
	if mode != config.Train && mode != config.Infer {
		return Plan{}, fmt.Errorf("memplan: unknown mode %q", mode)
	}
	if d.V <= 0 || d.MaxT <= 0 || d.T <= 0 || d.L <= 0 || d.NH <= 0 || d.C <= 0 || d.B <= 0 {
		return Plan{}, fmt.Errorf("memplan: dims must be positive: %v", d)
	}
	s := newShape(d)
	p := Plan{Dims: d, Mode: mode}
	p.ParamCount = int64(ref.NumParams(d))
	add := func(name string, g Group, layers int, elems int64) {
		b := Buffer{Name: name, Group: g, Layers: layers, Elements: elems, Bytes: elems * ElemBytes}
		p.Buffers = append(p.Buffers, b)
		p.Total += b.Bytes
		p.Required += roundUp(b.Bytes, AllocGranularity)
		switch g {
		case Params:
			p.Params += b.Bytes
		case Grads:
			p.Grads += b.Bytes
		case Activations:
			p.Activations += b.Bytes
		case Scratch:
			p.Scratch += b.Bytes
		}
	}
	add("params", Params, 1, p.ParamCount)
	if mode == config.Train {
		add("grads", Grads, 1, p.ParamCount)
	}
	for _, e := range ActivationTable {
		add(e.Name, Activations, layers(e, s), count(e, s))
	}
	if mode == config.Train {
		for _, e := range ScratchTable {
			add(e.Name, Scratch, layers(e, s), count(e, s))
		}
	}
	p.Required += Headroom
	return p, nil
}

func layers(e Entry, s Shape) int {
	if e.PerLayer {
		return int(s.L)
	}
	return 1
}

func count(e Entry, s Shape) int64 { return int64(layers(e, s)) * e.Size(s) }

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
func LargestBatchThatFits(d config.Dims, mode config.Mode, freeBytes int64) int {
	ok := func(b int) bool {
		d.B = b
		if d.Validate() != nil {
			return false
		}
		p, err := New(d, mode)
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
