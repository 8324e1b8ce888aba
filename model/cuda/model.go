// Package cuda is the GPT-2 of package model on a GPU: its program's
// buffers allocated through the CUDA executor (internal/cuexec), its
// parameters and a batch uploaded, and the program's forward and backward
// ranges run on the device's stream.
//
// What copies state back to the host (the loss after each iteration, the
// numerics check, the tensors of a dump) is here too; none of it runs
// inside Forward or Backward.
package cuda

import (
	"fmt"
	"math"
	"sync"

	"github.com/gpubench/gpubench/internal/bf16"
	"github.com/gpubench/gpubench/internal/buckets"
	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/gpu"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model"
	"github.com/gpubench/gpubench/model/ref"
)

// Model is one GPT-2 step's program with its buffers on the device.
type Model struct {
	*model.Step
	x *cuexec.Executor
	// passes are the program's passes compiled for the executor, in
	// order (model.Step.Passes: forward and backward, or prefill and the
	// decode steps); prologue is the iteration's own operations, which
	// run before the first pass (a planted flaw's; nil when there are
	// none).
	passes   []*cuexec.Compiled
	prologue *cuexec.Compiled
}

// New builds the program of d in mode with options o (o.SMs should be the
// executor's device's multiprocessor count), allocates every buffer, draws the parameters
// and one batch of inputs from seed (as model/ref does, so both start from
// the same values), uploads them and runs the program's setup. Nothing is
// left allocated on an error.
func New(x *cuexec.Executor, d config.Dims, mode config.Mode, o model.Options, seed uint64) (_ *Model, err error) {
	m := &Model{Step: model.Program(d, mode, o), x: x}
	// The buffers the iteration allocates itself (alloc-per-iteration)
	// are left to it.
	if err := x.Alloc(m.Static()...); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			m.Free()
		}
	}()
	params, tokens, targets := initial(d, seed)
	if err := m.upload(m.Step.Params, params); err != nil {
		return nil, fmt.Errorf("upload parameters: %w", err)
	}
	if err := m.SetInputs(tokens, targets); err != nil {
		return nil, err
	}
	if err := x.Setup(m.Program); err != nil {
		return nil, err
	}
	if ops := m.Iteration.Direct(); len(ops) > 0 {
		if m.prologue, err = x.CompileOps(ops); err != nil {
			return nil, err
		}
	}
	for _, r := range m.Step.Passes() {
		c, err := x.Compile(r)
		if err != nil {
			return nil, err
		}
		m.passes = append(m.passes, c)
	}
	return m, nil
}

// initial is what model/ref draws from seed for shape d: the parameters
// and one batch of inputs (the prompts in generate mode; targets are
// unused there).
func initial(d config.Dims, seed uint64) (params []float32, tokens, targets []int32) {
	if d.IsLlama() {
		rd := model.LlamaRefDims(d)
		tokens, targets = ref.LlamaInputs(rd, seed)
		return ref.LlamaInitParams(rd, seed), tokens, targets
	}
	tokens, targets = ref.Inputs(d, seed)
	return ref.InitParams(d, seed), tokens, targets
}

// Passes is the number of passes of an iteration (model.Step.Passes).
func (m *Model) Passes() int { return len(m.passes) }

// Pass enqueues pass i of the iteration.
func (m *Model) Pass(i int) error { return m.passes[i].Run() }

// Free releases every buffer. The model must not be used afterwards.
func (m *Model) Free() { m.x.Free(m.Buffers...) }

// Prologue runs the iteration's own operations, which come before its
// forward range: a planted data loader's stall or batch upload. Without
// them it does nothing.
func (m *Model) Prologue() error {
	if m.prologue == nil {
		return nil
	}
	return m.prologue.Run()
}

// Forward enqueues the forward range of the program (the prefill in
// generate mode).
func (m *Model) Forward() error { return m.passes[0].Run() }

// Backward enqueues the backward range: every parameter gradient of the
// last Forward. It overwrites the logits with their gradient.
func (m *Model) Backward() error {
	if m.Mode != config.Train {
		return fmt.Errorf("backward: the model was built for --mode=%s, which has no gradients", m.Mode)
	}
	return m.passes[1].Run()
}

// Generate enqueues a whole generate iteration: the prefill, then every
// decode step.
func (m *Model) Generate() error {
	if m.Mode != config.Generate {
		return fmt.Errorf("generate: the model was built for --mode=%s", m.Mode)
	}
	for _, p := range m.passes {
		if err := p.Run(); err != nil {
			return err
		}
	}
	return nil
}

// Generated waits for the stream and copies the (B, New) tokens of the
// last generate iteration to the host.
func (m *Model) Generated() ([]int32, error) {
	if m.Step.Generated == nil {
		return nil, fmt.Errorf("generated tokens: the model was built for --mode=%s", m.Mode)
	}
	if err := m.wait(); err != nil {
		return nil, err
	}
	out := make([]int32, m.Step.Generated.Elems)
	if err := cuexec.Download(m.x, out, m.Step.Generated.All()); err != nil {
		return nil, fmt.Errorf("read generated tokens: %w", err)
	}
	return out, nil
}

// SetInputs uploads a batch of token ids and targets (B*T each) and, in
// train mode, the token grouping the embedding backward uses.
func (m *Model) SetInputs(tokens, targets []int32) error {
	N := m.Dims.Rows()
	if len(tokens) != N || (m.Targets != nil && len(targets) != N) {
		return fmt.Errorf("inputs: got %d tokens and %d targets, want B*T = %d each", len(tokens), len(targets), N)
	}
	if err := cuexec.Upload(m.x, m.Tokens.All(), tokens); err != nil {
		return fmt.Errorf("upload tokens: %w", err)
	}
	if m.Targets == nil { // generate mode: prompts only
		return nil
	}
	if err := cuexec.Upload(m.x, m.Targets.All(), targets); err != nil {
		return fmt.Errorf("upload targets: %w", err)
	}
	if m.Mode != config.Train {
		return nil
	}
	b, err := buckets.Padded(tokens, m.Dims.V)
	if err != nil {
		return err
	}
	if b.Len() != m.NumBuckets {
		return fmt.Errorf("inputs: %d token buckets, the program launches %d", b.Len(), m.NumBuckets)
	}
	for i, src := range [][]int32{b.Order, b.Start, b.Token} {
		if err := cuexec.Upload(m.x, m.Buckets[i].All(), src); err != nil {
			return fmt.Errorf("upload token buckets: %w", err)
		}
	}
	return nil
}

// Loss waits for the stream and returns the mean loss of the last Forward
// (NaN in generate mode, which has none).
func (m *Model) Loss() (float32, error) {
	if err := m.wait(); err != nil {
		return 0, err
	}
	if m.Step.Loss == nil {
		return float32(math.NaN()), nil
	}
	var loss [1]float32
	if err := cuexec.Download(m.x, loss[:], m.Step.Loss.All()); err != nil {
		return 0, fmt.Errorf("read loss: %w", err)
	}
	return loss[0], nil
}

// wait waits for the stream, naming what to do when a kernel failed.
func (m *Model) wait() error {
	if err := m.x.Synchronize(); err != nil {
		// Launches are asynchronous: a kernel's fault surfaces here, after
		// the fact. SyncEachLaunch (--sync-launches) pins it on the kernel;
		// a graph's fault names the graph (cuexec.GraphFault).
		hint := ""
		if !m.x.SyncEachLaunch && !m.Graph {
			hint = " (run again with --sync-launches to name the kernel that failed)"
		}
		return fmt.Errorf("waiting for the iteration's kernels: %w%s", err, hint)
	}
	return nil
}

// Params copies the parameters to the host, in ref.Layout order.
func (m *Model) Params() ([]float32, error) { return m.download(m.Step.Params, "parameters") }

// Grads copies the gradients of the last Backward to the host.
func (m *Model) Grads() ([]float32, error) {
	if m.Step.Grads == nil {
		return nil, fmt.Errorf("gradients: the model was built for --mode=%s", m.Mode)
	}
	return m.download(m.Step.Grads, "gradients")
}

// Logits copies the logits of the last Forward to the host, (B·T, V) with
// the rows' padding (Vp > V, see model.Step.Vp) cut off; in generate mode
// the (B, V) logits of the last pass. Call it before Backward, which
// overwrites them with their gradient.
func (m *Model) Logits() ([]float32, error) {
	padded, err := m.download(m.Step.Logits, "logits")
	if err != nil || m.Vp == m.Dims.V {
		return padded, err
	}
	V, Vp := m.Dims.V, m.Vp
	rows := int(m.Step.Logits.Elems) / Vp
	out := make([]float32, 0, rows*V)
	for r := 0; r < rows; r++ {
		out = append(out, padded[r*Vp:r*Vp+V]...)
	}
	return out, nil
}

// upload copies float32 values into buffer b, rounded to bfloat16 where b
// holds bf16.
func (m *Model) upload(b *program.Buffer, v []float32) error {
	if b.Elem != program.BF16 {
		return cuexec.Upload(m.x, b.All(), v)
	}
	// Rounded on every core: llama2-7b has 6.7 billion parameters.
	h := make([]uint16, len(v))
	const chunk = 1 << 22
	var wg sync.WaitGroup
	for lo := 0; lo < len(v); lo += chunk {
		wg.Add(1)
		go func(lo int) {
			defer wg.Done()
			for i := lo; i < min(lo+chunk, len(v)); i++ {
				h[i] = bf16.FromFloat32(v[i])
			}
		}(lo)
	}
	wg.Wait()
	return cuexec.Upload(m.x, b.All(), h)
}

// Inputs copies the current tokens and targets to the host.
func (m *Model) Inputs() (tokens, targets []int32, err error) {
	tokens, targets = make([]int32, m.Dims.Rows()), make([]int32, m.Dims.Rows())
	if err := cuexec.Download(m.x, tokens, m.Tokens.All()); err != nil {
		return nil, nil, err
	}
	if m.Targets == nil {
		return tokens, nil, nil
	}
	return tokens, targets, cuexec.Download(m.x, targets, m.Targets.All())
}

// download copies buffer b to the host as float32 (bf16 widened exactly).
func (m *Model) download(b *program.Buffer, what string) ([]float32, error) {
	v := b.All()
	out := make([]float32, v.Elems)
	if b.Elem != program.BF16 {
		if err := cuexec.Download(m.x, out, v); err != nil {
			return nil, fmt.Errorf("read %s: %w", what, err)
		}
		return out, nil
	}
	h := make([]uint16, v.Elems)
	if err := cuexec.Download(m.x, h, v); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	for i, x := range h {
		out[i] = bf16.ToFloat32(x)
	}
	return out, nil
}

// CheckNumerics fails on NaN or Inf in the loss or any gradient tensor, and
// names the first tensor that holds one.
func (m *Model) CheckNumerics() error {
	loss, err := m.Loss()
	if err != nil {
		return err
	}
	if bad(loss) {
		return fmt.Errorf("--check-numerics: the loss is %v", loss)
	}
	if m.Step.Grads == nil {
		return nil
	}
	g, err := m.Grads()
	if err != nil {
		return err
	}
	for _, t := range m.Layout {
		for i, v := range g[t.Offset : t.Offset+t.Size] {
			if bad(v) {
				return fmt.Errorf("--check-numerics: gradient %s holds %v at element %d of %d", t.Name, v, i, t.Size)
			}
		}
	}
	return nil
}

func bad(v float32) bool { return math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) }

// Dump runs one forward and backward step on the current inputs and returns
// everything scripts/torch_check.py needs to check it.
func (m *Model) Dump() (ref.Dump, error) {
	var dp ref.Dump
	var err error
	dp.Dims, dp.BF16 = m.Dims, m.Elem == program.BF16
	if dp.Params, err = m.Params(); err != nil {
		return dp, err
	}
	if dp.Tokens, dp.Targets, err = m.Inputs(); err != nil {
		return dp, err
	}
	if err = m.Forward(); err != nil {
		return dp, err
	}
	loss, err := m.Loss()
	if err != nil {
		return dp, err
	}
	dp.Loss = float64(loss)
	if dp.Logits, err = m.Logits(); err != nil {
		return dp, err
	}
	if err = m.Backward(); err != nil {
		return dp, err
	}
	dp.Grads, err = m.Grads()
	return dp, err
}

// Poison fills every buffer the step writes with NaN, so that a test after
// one step finds any element the step should have written but did not.
// Parameters, inputs and state (the split-K tile counters, which must stay
// zero) are left alone.
func (m *Model) Poison() error {
	for _, b := range m.Buffers {
		if b.Group == program.Params || b.Group == program.Inputs || b.State {
			continue
		}
		p := m.x.Ptr(b.All())
		if p == 0 {
			continue // no operation uses it, so it was not allocated
		}
		poison := gpu.Poison
		if b.Elem == program.BF16 {
			poison = gpu.PoisonBF16
		}
		if err := poison(p, int(b.Elems)); err != nil {
			return fmt.Errorf("poison %s: %w", b, err)
		}
	}
	return nil
}
