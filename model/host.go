package model

import (
	"fmt"
	"math"

	"github.com/gpubench/gpubench/internal/gpu"
	"github.com/gpubench/gpubench/model/ref"
	"gorgonia.org/cu"
)

// This file holds what copies model state back to the host: the loss after
// each iteration, the numerics check and the tensors of a dump. None of it
// runs inside Forward or Backward.

// Loss waits for the stream and returns the mean loss of the last Forward.
func (m *Model) Loss() (float32, error) {
	if err := m.dev.Synchronize(); err != nil {
		// Launches are asynchronous: a kernel's fault surfaces here, after
		// the fact. SyncEachLaunch (--sync-launches) pins it on the kernel.
		hint := ""
		if !m.k.SyncEachLaunch {
			hint = " (run again with --sync-launches to name the kernel that failed)"
		}
		return 0, fmt.Errorf("waiting for the iteration's kernels: %w%s", err, hint)
	}
	var loss [1]float32
	if err := gpu.Download(loss[:], m.acts.loss); err != nil {
		return 0, fmt.Errorf("read loss: %w", err)
	}
	return loss[0], nil
}

// Params copies the parameters to the host, in ref.Layout order.
func (m *Model) Params() ([]float32, error) { return m.download(m.params, m.nParams, "parameters") }

// Grads copies the gradients of the last Backward to the host.
func (m *Model) Grads() ([]float32, error) {
	if m.grads == 0 {
		return nil, fmt.Errorf("gradients: the model was built for --mode=%s", m.Mode)
	}
	return m.download(m.grads, m.nParams, "gradients")
}

// Logits copies the logits of the last Forward to the host. Call it before
// Backward, which overwrites them with their gradient.
func (m *Model) Logits() ([]float32, error) {
	return m.download(m.acts.logits, m.Dims.Rows()*m.Dims.V, "logits")
}

// Inputs copies the current tokens and targets to the host.
func (m *Model) Inputs() (tokens, targets []int32, err error) {
	if err := m.dev.Synchronize(); err != nil {
		return nil, nil, err
	}
	tokens, targets = make([]int32, m.Dims.Rows()), make([]int32, m.Dims.Rows())
	if err := gpu.Download(tokens, m.tokens); err != nil {
		return nil, nil, err
	}
	return tokens, targets, gpu.Download(targets, m.targets)
}

func (m *Model) download(p cu.DevicePtr, n int, what string) ([]float32, error) {
	if err := m.dev.Synchronize(); err != nil {
		return nil, err
	}
	out := make([]float32, n)
	if err := gpu.Download(out, p); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
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
	if m.grads == 0 {
		return nil
	}
	g, err := m.Grads()
	if err != nil {
		return err
	}
	for _, t := range m.layout {
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
	dp.Dims = m.Dims
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

// Poison fills every activation, gradient and scratch buffer with NaN, so
// that a test after one step finds any element the step should have written
// but did not. Parameters and inputs are left alone.
func (m *Model) Poison() error {
	// The split-K tile counters are state, not output: they must stay zero.
	keep := map[cu.DevicePtr]bool{m.params: true, m.tokens: true, m.targets: true,
		m.wteBuckets.order: true, m.wteBuckets.start: true, m.wteBuckets.token: true,
		m.scratch.matmul.Counters: true}
	for _, p := range m.all() {
		if p == 0 || keep[p] {
			continue
		}
		if err := gpu.Poison(p, int(m.dev.Size(p)/4)); err != nil {
			return fmt.Errorf("poison: %w", err)
		}
	}
	return nil
}
