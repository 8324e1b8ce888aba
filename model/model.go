// Package model is the GPT-2 model of gpubench on the GPU: every buffer is
// allocated once, and the forward and backward passes are fixed sequences of
// kernel launches on one stream, with no host synchronisation inside.
//
// It reads like the architecture: Forward from the embeddings up through the
// blocks to the loss, Backward from the loss down to the embeddings. The
// float64 CPU reference in model/ref computes the same function and the GPU
// tests compare the two.
package model

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/buckets"
	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/gpu"
	"github.com/gpubench/gpubench/kernels"
	"github.com/gpubench/gpubench/model/ref"
	"gorgonia.org/cu"
)

// Model is one GPT-2 with its parameters, gradients, activations and one
// batch of inputs on the device.
type Model struct {
	Dims config.Dims
	Mode config.Mode

	dev *gpu.Device
	k   *kernels.Kernels
	s   cu.Stream

	layout  []ref.Tensor
	params  cu.DevicePtr // all parameters, flat, in ref.Layout order
	grads   cu.DevicePtr // their gradients, same layout (train only)
	nParams int

	tokens, targets cu.DevicePtr
	wteBuckets      deviceBuckets // tokens grouped for the embedding backward
	acts            activations
	scratch         scratch
}

// activations are the tensors the forward pass writes, per layer where the
// backward pass needs them.
type activations struct {
	encoded               cu.DevicePtr   // (N,C) block 0's input
	ln1, ln1Mean, ln1Rstd []cu.DevicePtr // (N,C), (N), (N)
	qkv                   []cu.DevicePtr // (N,3C)
	atty                  []cu.DevicePtr // (N,C) attention output, heads concatenated
	attLSE                []cu.DevicePtr // (B,NH,T) logsumexp of each query row
	residual2             []cu.DevicePtr // (N,C) x + attn
	ln2, ln2Mean, ln2Rstd []cu.DevicePtr
	fch, fchGelu          []cu.DevicePtr // (N,4C)
	residual3             []cu.DevicePtr // (N,C) block output
	lnf, lnfMean, lnfRstd cu.DevicePtr
	logits                cu.DevicePtr // (N,V); the backward overwrites it with dlogits
	losses                cu.DevicePtr // (N)
	lse                   cu.DevicePtr // (N) logsumexp of each logits row, kept for the backward
	loss                  cu.DevicePtr // (1) mean loss
	proj                  cu.DevicePtr // (N,C) output of a projection before its residual add; not kept
}

// scratch holds the backward pass's temporaries, reused layer after layer.
type scratch struct {
	dresidual cu.DevicePtr          // (N,C) gradient of the residual stream
	dC        cu.DevicePtr          // (N,C) dlnf, dln2, datty, dln1 in turn
	d4C       cu.DevicePtr          // (N,4C) dfch; also dqkv (N,3C)
	attD      cu.DevicePtr          // (B,NH,T) rowsum(dout∘out) for attention backward
	lnPartial cu.DevicePtr          // layernorm parameter-gradient partial sums
	matmul    kernels.MatmulScratch // weight gradients' split-K partials and tile counters
}

type deviceBuckets struct {
	order, start, token cu.DevicePtr
	n                   int
}

// New allocates the model for d, draws its parameters and one batch of
// inputs from seed (as model/ref does, so both start from the same values)
// and uploads them. Infer mode allocates no gradients.
func New(dev *gpu.Device, k *kernels.Kernels, d config.Dims, mode config.Mode, seed uint64) (_ *Model, err error) {
	m := &Model{Dims: d, Mode: mode, dev: dev, k: k, s: dev.Stream, layout: ref.Layout(d)}
	m.nParams = ref.NumParams(d)
	defer func() {
		if err != nil {
			m.Free() // nothing is left half-allocated
		}
	}()
	if err := m.allocate(); err != nil {
		return nil, err
	}
	if err := gpu.Upload(m.params, ref.InitParams(d, seed)); err != nil {
		return nil, fmt.Errorf("upload parameters: %w", err)
	}
	tokens, targets := ref.Inputs(d, seed)
	if err := m.SetInputs(tokens, targets); err != nil {
		return nil, err
	}
	return m, nil
}

// allocate makes every buffer the model will ever use.
func (m *Model) allocate() error {
	d := m.Dims
	N, C, L := d.Rows(), d.C, d.L
	var failed error
	alloc := func(n int) cu.DevicePtr {
		if failed != nil {
			return 0
		}
		p, err := m.dev.AllocF32(n)
		if err != nil {
			failed = err
		}
		return p
	}
	perLayer := func(n int) []cu.DevicePtr {
		ps := make([]cu.DevicePtr, L)
		for l := range ps {
			ps[l] = alloc(n)
		}
		return ps
	}
	m.params = alloc(m.nParams)
	m.tokens = alloc(N)
	m.targets = alloc(N)
	a := &m.acts
	a.encoded = alloc(N * C)
	a.ln1, a.ln1Mean, a.ln1Rstd = perLayer(N*C), perLayer(N), perLayer(N)
	a.qkv = perLayer(N * 3 * C)
	a.atty = perLayer(N * C)
	a.attLSE = perLayer(d.B * d.NH * d.T)
	a.residual2 = perLayer(N * C)
	a.ln2, a.ln2Mean, a.ln2Rstd = perLayer(N*C), perLayer(N), perLayer(N)
	a.fch, a.fchGelu = perLayer(N*4*C), perLayer(N*4*C)
	a.residual3 = perLayer(N * C)
	a.lnf, a.lnfMean, a.lnfRstd = alloc(N*C), alloc(N), alloc(N)
	a.logits = alloc(N * d.V)
	a.losses = alloc(N)
	a.lse = alloc(N)
	a.loss = alloc(1)
	a.proj = alloc(N * C)
	if m.Mode == config.Train {
		m.grads = alloc(m.nParams)
		sc := &m.scratch
		sc.dresidual = alloc(N * C)
		sc.dC = alloc(N * C)
		sc.d4C = alloc(N * 4 * C)
		sc.attD = alloc(d.B * d.NH * d.T)
		sc.lnPartial = alloc(kernels.LayerNormPartialSize(N, C))
		// A weight gradient whose output has too few tiles for the GPU
		// splits its sum over the N rows; one workspace, sized for the
		// linear layer that needs most, serves them all in turn.
		mm := &sc.matmul
		mm.PartialFloats, mm.CounterInts = 1, 1
		for _, l := range [][2]int{{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}, {C, d.V}} { // (in, out): qkv, attproj, fc, fcproj, lm head
			f, c := kernels.MatmulScratchSize(N, l[0], l[1])
			mm.PartialFloats, mm.CounterInts = max(mm.PartialFloats, f), max(mm.CounterInts, c)
		}
		mm.Partials, mm.Counters = alloc(mm.PartialFloats), alloc(mm.CounterInts)
		if failed == nil {
			// The tile counters start at zero, once: every launch leaves
			// them so.
			failed = cu.MemsetD32(mm.Counters, 0, int64(mm.CounterInts))
		}
	}
	return failed
}

// SetInputs uploads a batch of token ids and targets (B*T each) and the
// token grouping the embedding backward uses.
func (m *Model) SetInputs(tokens, targets []int32) error {
	N := m.Dims.Rows()
	if len(tokens) != N || len(targets) != N {
		return fmt.Errorf("inputs: got %d tokens and %d targets, want B*T = %d each", len(tokens), len(targets), N)
	}
	if err := gpu.Upload(m.tokens, tokens); err != nil {
		return fmt.Errorf("upload tokens: %w", err)
	}
	if err := gpu.Upload(m.targets, targets); err != nil {
		return fmt.Errorf("upload targets: %w", err)
	}
	if m.Mode != config.Train {
		return nil
	}
	b, err := buckets.Build(tokens, m.Dims.V)
	if err != nil {
		return err
	}
	wb := &m.wteBuckets
	if wb.order == 0 {
		// Sized for the worst case (every token distinct) so that new
		// inputs never reallocate.
		if wb.order, err = m.dev.Alloc(int64(N) * 4); err != nil {
			return err
		}
		if wb.start, err = m.dev.Alloc(int64(N+1) * 4); err != nil {
			return err
		}
		if wb.token, err = m.dev.Alloc(int64(N) * 4); err != nil {
			return err
		}
	}
	wb.n = b.Len()
	for _, up := range []struct {
		dst cu.DevicePtr
		src []int32
	}{{wb.order, b.Order}, {wb.start, b.Start}, {wb.token, b.Token}} {
		if err := gpu.Upload(up.dst, up.src); err != nil {
			return fmt.Errorf("upload token buckets: %w", err)
		}
	}
	return nil
}

// Free releases every buffer. The model must not be used afterwards.
func (m *Model) Free() {
	// The device owns the allocations; freeing them one by one here keeps
	// the device usable for another model.
	for _, p := range m.all() {
		if p != 0 {
			m.dev.Free(p)
		}
	}
}

func (m *Model) all() []cu.DevicePtr {
	a, sc, wb := &m.acts, &m.scratch, &m.wteBuckets
	ps := []cu.DevicePtr{m.params, m.grads, m.tokens, m.targets, a.encoded, a.lnf, a.lnfMean, a.lnfRstd,
		a.logits, a.losses, a.lse, a.loss, a.proj, sc.dresidual, sc.dC, sc.d4C, sc.attD, sc.lnPartial,
		sc.matmul.Partials, sc.matmul.Counters, wb.order, wb.start, wb.token}
	for _, layer := range [][]cu.DevicePtr{a.ln1, a.ln1Mean, a.ln1Rstd, a.qkv, a.atty, a.attLSE, a.residual2,
		a.ln2, a.ln2Mean, a.ln2Rstd, a.fch, a.fchGelu, a.residual3} {
		ps = append(ps, layer...)
	}
	return ps
}

// NumParams is the number of parameters.
func (m *Model) NumParams() int { return m.nParams }

// tensor returns the device address of parameter (or gradient) tensor i of
// base, at layer l for the per-layer tensors.
func (m *Model) tensor(base cu.DevicePtr, i, l int) cu.DevicePtr {
	t := m.layout[i]
	off := t.Offset
	if len(t.Shape) > 0 && t.Shape[0] == m.Dims.L && isPerLayer(t.Name) {
		off += l * (t.Size / m.Dims.L)
	}
	return base + cu.DevicePtr(off*4)
}

func isPerLayer(name string) bool {
	switch name {
	case ref.NameWte, ref.NameWpe, ref.NameLnfw, ref.NameLnfb:
		return false
	}
	return true
}

// Indices of the parameter tensors in ref.Layout.
const (
	iWte = iota
	iWpe
	iLn1w
	iLn1b
	iQkvw
	iQkvb
	iAttprojw
	iAttprojb
	iLn2w
	iLn2b
	iFcw
	iFcb
	iFcprojw
	iFcprojb
	iLnfw
	iLnfb
)

// sticky keeps the first error of a launch sequence, so that Forward and
// Backward read as the list of their launches.
type sticky struct{ err error }

func (s *sticky) do(err error) {
	if s.err == nil && err != nil {
		s.err = err
	}
}

// Forward enqueues the forward pass: embeddings, L blocks, final
// LayerNorm, logits and the mean cross-entropy loss.
func (m *Model) Forward() error {
	d, k, s, a := m.Dims, m.k, m.s, &m.acts
	B, T, C, NH, N, V := d.B, d.T, d.C, d.NH, d.Rows(), d.V
	p := func(i, l int) cu.DevicePtr { return m.tensor(m.params, i, l) }
	var q sticky

	q.do(k.Encoder.Forward(s, a.encoded, m.tokens, p(iWte, 0), p(iWpe, 0), B, T, C))
	for l := 0; l < d.L; l++ {
		x := m.blockInput(l)
		// x + Attn(LN1(x))
		q.do(k.LayerNorm.Forward(s, a.ln1[l], a.ln1Mean[l], a.ln1Rstd[l], x, p(iLn1w, l), p(iLn1b, l), N, C))
		q.do(k.Matmul.Forward(s, a.qkv[l], a.ln1[l], p(iQkvw, l), p(iQkvb, l), N, C, 3*C))
		q.do(k.Attention.Forward(s, a.atty[l], a.attLSE[l], a.qkv[l], B, T, C, NH))
		q.do(k.Matmul.Forward(s, a.proj, a.atty[l], p(iAttprojw, l), p(iAttprojb, l), N, C, C))
		q.do(k.Residual.Forward(s, a.residual2[l], x, a.proj, N*C))
		// x + MLP(LN2(x))
		q.do(k.LayerNorm.Forward(s, a.ln2[l], a.ln2Mean[l], a.ln2Rstd[l], a.residual2[l], p(iLn2w, l), p(iLn2b, l), N, C))
		q.do(k.Matmul.Forward(s, a.fch[l], a.ln2[l], p(iFcw, l), p(iFcb, l), N, C, 4*C))
		q.do(k.GELU.Forward(s, a.fchGelu[l], a.fch[l], N*4*C))
		q.do(k.Matmul.Forward(s, a.proj, a.fchGelu[l], p(iFcprojw, l), p(iFcprojb, l), N, 4*C, C))
		q.do(k.Residual.Forward(s, a.residual3[l], a.residual2[l], a.proj, N*C))
	}
	q.do(k.LayerNorm.Forward(s, a.lnf, a.lnfMean, a.lnfRstd, m.blockInput(d.L), p(iLnfw, 0), p(iLnfb, 0), N, C))
	q.do(k.Matmul.Forward(s, a.logits, a.lnf, p(iWte, 0), 0, N, C, V)) // tied weights, no bias
	q.do(k.CrossEntropy.Forward(s, a.losses, a.lse, a.logits, m.targets, N, V))
	q.do(k.CrossEntropy.LossReduce(s, a.loss, a.losses, N))
	return q.err
}

// blockInput is the residual stream entering block l (l = L: the final
// LayerNorm's input).
func (m *Model) blockInput(l int) cu.DevicePtr {
	if l == 0 {
		return m.acts.encoded
	}
	return m.acts.residual3[l-1]
}

// Backward enqueues the backward pass of the last Forward, writing every
// parameter gradient. It overwrites the logits with their gradient.
func (m *Model) Backward() error {
	if m.Mode != config.Train {
		return fmt.Errorf("backward: the model was built for --mode=%s, which has no gradients", m.Mode)
	}
	d, k, s, a, sc := m.Dims, m.k, m.s, &m.acts, &m.scratch
	B, T, C, NH, N, V := d.B, d.T, d.C, d.NH, d.Rows(), d.V
	p := func(i, l int) cu.DevicePtr { return m.tensor(m.params, i, l) }
	g := func(i, l int) cu.DevicePtr { return m.tensor(m.grads, i, l) }
	var q sticky

	// The residual stream's gradient and the position embedding's are
	// accumulated, so they start at zero (wpe rows past T stay zero).
	q.do(cu.MemsetD32Async(sc.dresidual, 0, int64(N*C), s))
	q.do(cu.MemsetD32Async(g(iWpe, 0), 0, int64(d.MaxT*C), s))

	// loss → logits → final LayerNorm
	q.do(k.CrossEntropy.Backward(s, a.logits, a.logits, a.lse, m.targets, N, V, 1/float32(N)))
	dlogits := a.logits
	q.do(k.Matmul.Backward(s, sc.dC, g(iWte, 0), 0, dlogits, a.lnf, p(iWte, 0), sc.matmul, N, C, V))
	q.do(k.LayerNorm.Backward(s, sc.dresidual, g(iLnfw, 0), g(iLnfb, 0), sc.lnPartial, sc.dC,
		m.blockInput(d.L), p(iLnfw, 0), a.lnfMean, a.lnfRstd, N, C))

	for l := d.L - 1; l >= 0; l-- {
		// MLP: dresidual is the gradient of residual3[l], and (through
		// the residual add) of the MLP's output.
		q.do(k.Matmul.Backward(s, sc.d4C, g(iFcprojw, l), g(iFcprojb, l), sc.dresidual, a.fchGelu[l], p(iFcprojw, l), sc.matmul, N, 4*C, C))
		q.do(k.GELU.Backward(s, sc.d4C, a.fch[l], sc.d4C, N*4*C))
		q.do(k.Matmul.Backward(s, sc.dC, g(iFcw, l), g(iFcb, l), sc.d4C, a.ln2[l], p(iFcw, l), sc.matmul, N, C, 4*C))
		q.do(k.LayerNorm.Backward(s, sc.dresidual, g(iLn2w, l), g(iLn2b, l), sc.lnPartial, sc.dC,
			a.residual2[l], p(iLn2w, l), a.ln2Mean[l], a.ln2Rstd[l], N, C))
		// Attention: dresidual is now the gradient of residual2[l].
		q.do(k.Matmul.Backward(s, sc.dC, g(iAttprojw, l), g(iAttprojb, l), sc.dresidual, a.atty[l], p(iAttprojw, l), sc.matmul, N, C, C))
		dqkv := sc.d4C // free again: dfch was consumed above
		q.do(k.Attention.Backward(s, dqkv, sc.attD, sc.dC, a.qkv[l], a.atty[l], a.attLSE[l], B, T, C, NH))
		q.do(k.Matmul.Backward(s, sc.dC, g(iQkvw, l), g(iQkvb, l), dqkv, a.ln1[l], p(iQkvw, l), sc.matmul, N, C, 3*C))
		q.do(k.LayerNorm.Backward(s, sc.dresidual, g(iLn1w, l), g(iLn1b, l), sc.lnPartial, sc.dC,
			m.blockInput(l), p(iLn1w, l), a.ln1Mean[l], a.ln1Rstd[l], N, C))
	}

	// embeddings: the lm head already wrote dwte; add the lookups' part.
	wb := &m.wteBuckets
	q.do(k.Encoder.BackwardWTE(s, g(iWte, 0), sc.dresidual, wb.order, wb.start, wb.token, wb.n, C))
	q.do(k.Encoder.BackwardWPE(s, g(iWpe, 0), sc.dresidual, B, T, C))
	return q.err
}
