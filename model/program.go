// Package model is GPT-2 as gpubench runs it, written once as a program
// (internal/program): the buffers of one training step and the NVTX ranges
// and kernel launches of one iteration. The GPU runs this value
// (internal/cuexec), and plan, check, the memory plan and the FLOP count
// read it, so what gpubench declares is what it launched.
//
// Program reads like the architecture: forward from the embeddings up
// through the blocks to the loss, backward from the loss down to the
// embeddings. The float64 CPU reference in model/ref computes the same
// function and the GPU tests compare the two. The package imports nothing
// that touches CUDA.
package model

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/kernels"
	"github.com/gpubench/gpubench/model/ref"
)

// DefaultSMs is the multiprocessor count a program is built for when the
// GPU is not known (plan and check without a GPU): the H100 SXM's and
// H200's. It changes only the matmul tile and split choices, never which
// kernels run.
const DefaultSMs = 132

// Options are what a program depends on beyond the model's shape and mode.
type Options struct {
	// SMs is the GPU's multiprocessor count, for the matmul tile and
	// split-K choices; 0 means DefaultSMs.
	SMs int
	// Graph captures each pass (forward, and backward in train mode) as
	// one CUDA graph, replayed inside the same NVTX range.
	Graph bool
}

// GPT2 is the program of one GPT-2 step with its buffers by role, for the
// executors and tests that need to reach a particular one.
type GPT2 struct {
	*program.Program
	Dims config.Dims
	Mode config.Mode
	SMs  int
	// Graph is Options.Graph: each pass is one graph launch.
	Graph bool

	Layout []ref.Tensor // the parameters' tensors inside Params (and Grads)

	Params, Grads     *program.Buffer // flat, in ref.Layout order; Grads is nil in infer mode
	Tokens, Targets   *program.Buffer // (N) int32
	Loss              *program.Buffer // (1) the mean loss
	Logits            *program.Buffer // (N,V); the backward overwrites it with dlogits
	Buckets           [3]*program.Buffer
	MatmulCounters    *program.Buffer // the split-K tile counters: state, kept at zero
	NumBuckets        int             // rows of the embedding backward's grid: min(N, V)
	acts              activations
	scratch           scratch
	matmulWorkspace   kernels.MatmulScratch
	forward, backward *program.Range
}

// activations are the tensors the forward pass writes, per layer where the
// backward pass needs them.
type activations struct {
	encoded               program.View   // (N,C) block 0's input
	ln1, ln1Mean, ln1Rstd []program.View // (N,C), (N), (N)
	qkv                   []program.View // (N,3C)
	atty                  []program.View // (N,C) attention output, heads concatenated
	attLSE                []program.View // (B,NH,T) logsumexp of each query row
	residual2             []program.View // (N,C) x + attn
	ln2, ln2Mean, ln2Rstd []program.View
	fch, fchGelu          []program.View // (N,4C)
	residual3             []program.View // (N,C) block output
	lnf, lnfMean, lnfRstd program.View
	losses                program.View // (N)
	lse                   program.View // (N) logsumexp of each logits row, kept for the backward
	proj                  program.View // (N,C) output of a projection before its residual add; not kept
}

// scratch holds the backward pass's temporaries, reused layer after layer.
type scratch struct {
	dresidual program.View // (N,C) gradient of the residual stream
	dC        program.View // (N,C) dlnf, dln2, datty, dln1 in turn
	d4C       program.View // (N,4C) dfch; also dqkv (N,3C)
	attD      program.View // (B,NH,T) rowsum(dout∘out) for attention backward
	lnPartial program.View // layernorm parameter-gradient partial sums
}

// Program builds the step of the GPT-2 of shape d in mode: train runs
// forward then backward, infer the forward only (loss included). d must
// pass config.Dims.Validate; Program panics on an unknown mode, which
// config.ParseMode would have refused.
func Program(d config.Dims, mode config.Mode, o Options) *GPT2 {
	if mode != config.Train && mode != config.Infer {
		panic(fmt.Sprintf("model.Program: unknown mode %q", mode))
	}
	if o.SMs <= 0 {
		o.SMs = DefaultSMs
	}
	m := &GPT2{Program: &program.Program{}, Dims: d, Mode: mode, SMs: o.SMs, Graph: o.Graph, Layout: ref.Layout(d)}
	m.allocate()
	it := &m.Iteration
	it.Name = program.IterationTemplate
	m.forward = it.Nest(program.Forward)
	m.buildForward(m.forward)
	if mode == config.Train {
		m.backward = it.Nest(program.Backward)
		m.buildBackward(m.backward)
	}
	if o.Graph {
		for _, r := range []*program.Range{m.forward, m.backward} {
			if r == nil {
				continue
			}
			if err := program.CaptureAsGraph(r); err != nil {
				panic(err) // the passes hold operations only
			}
		}
	}
	return m
}

// Forward and Backward are the iteration's two ranges; Backward is nil in
// infer mode.
func (m *GPT2) Forward() *program.Range  { return m.forward }
func (m *GPT2) Backward() *program.Range { return m.backward }

// allocate declares every buffer the step uses, in allocation order.
func (m *GPT2) allocate() {
	d := m.Dims
	N, C, L := int64(d.Rows()), int64(d.C), d.L
	p := m.Program
	one := func(name string, n int64, g program.Group) program.View {
		return p.Buffer(name, -1, program.F32, n, g).All()
	}
	perLayer := func(name string, n int64) []program.View {
		vs := make([]program.View, L)
		for l := range vs {
			vs[l] = p.Buffer(name, l, program.F32, n, program.Activations).All()
		}
		return vs
	}
	nParams := int64(ref.NumParams(d))
	m.Params = p.Buffer("params", -1, program.F32, nParams, program.Params)
	m.Tokens = p.Buffer("tokens", -1, program.I32, N, program.Inputs)
	m.Targets = p.Buffer("targets", -1, program.I32, N, program.Inputs)
	act := program.Activations
	a := &m.acts
	a.encoded = one("encoded", N*C, act)
	a.ln1, a.ln1Mean, a.ln1Rstd = perLayer("ln1", N*C), perLayer("ln1_mean", N), perLayer("ln1_rstd", N)
	a.qkv = perLayer("qkv", N*3*C)
	a.atty = perLayer("atty", N*C)
	a.attLSE = perLayer("att_lse", int64(d.B*d.NH*d.T))
	a.residual2 = perLayer("residual2", N*C)
	a.ln2, a.ln2Mean, a.ln2Rstd = perLayer("ln2", N*C), perLayer("ln2_mean", N), perLayer("ln2_rstd", N)
	a.fch, a.fchGelu = perLayer("fch", N*4*C), perLayer("fch_gelu", N*4*C)
	a.residual3 = perLayer("residual3", N*C)
	a.lnf, a.lnfMean, a.lnfRstd = one("lnf", N*C, act), one("lnf_mean", N, act), one("lnf_rstd", N, act)
	m.Logits = p.Buffer("logits", -1, program.F32, N*int64(d.V), act)
	a.losses = one("losses", N, act)
	a.lse = one("lse", N, act)
	m.Loss = p.Buffer("loss", -1, program.F32, 1, act)
	a.proj = one("proj", N*C, act)
	if m.Mode != config.Train {
		return
	}
	m.Grads = p.Buffer("grads", -1, program.F32, nParams, program.Grads)
	sc, s := &m.scratch, program.Scratch
	sc.dresidual = one("dresidual", N*C, s)
	sc.dC = one("dC", N*C, s)
	sc.d4C = one("d4C", N*4*C, s)
	sc.attD = one("att_delta", int64(d.B*d.NH*d.T), s)
	sc.lnPartial = one("ln_partials", int64(kernels.LayerNormPartialSize(d.Rows(), d.C)), s)
	// A weight gradient whose output has too few tiles for the GPU splits
	// its sum over the N rows; one workspace, sized for the linear layer
	// that needs most (a bound for any SM count), serves them all in turn.
	floats, counters := 1, 1
	for _, l := range m.linears() {
		f, c := kernels.MatmulScratchSize(d.Rows(), l.in, l.out)
		floats, counters = max(floats, f), max(counters, c)
	}
	m.matmulWorkspace.Partials = one("matmul_partials", int64(floats), s)
	m.MatmulCounters = p.Buffer("matmul_counters", -1, program.I32, int64(counters), s)
	m.MatmulCounters.State = true
	m.matmulWorkspace.Counters = m.MatmulCounters.All()
	// The tile counters start at zero, once: every launch leaves them so.
	p.Setup = append(p.Setup, kernels.Memset(m.matmulWorkspace.Counters))
	// Token positions grouped by token for the embedding backward
	// (internal/buckets.Padded): order, bucket starts, bucket tokens.
	m.NumBuckets = min(d.Rows(), d.V)
	m.Buckets[0] = p.Buffer("bucket_order", -1, program.I32, N, program.Inputs)
	m.Buckets[1] = p.Buffer("bucket_start", -1, program.I32, int64(m.NumBuckets+1), program.Inputs)
	m.Buckets[2] = p.Buffer("bucket_token", -1, program.I32, int64(m.NumBuckets), program.Inputs)
}

type linear struct{ in, out int }

// linears are the (in, out) channels of the model's linear layers: qkv,
// attention projection, fc, fc projection, lm head.
func (m *GPT2) linears() []linear {
	C := m.Dims.C
	return []linear{{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}, {C, m.Dims.V}}
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

// Param returns the view of parameter tensor i at layer l (ignored for the
// tensors outside the blocks), and Grad that of its gradient.
func (m *GPT2) Param(i, l int) program.View { return m.tensor(m.Params, "", i, l) }

// Grad is the gradient of Param(i, l).
func (m *GPT2) Grad(i, l int) program.View { return m.tensor(m.Grads, "d", i, l) }

func (m *GPT2) tensor(b *program.Buffer, prefix string, i, l int) program.View {
	t := m.Layout[i]
	off, size, label := int64(t.Offset), int64(t.Size), prefix+t.Name
	if isPerLayer(t.Name) {
		size /= int64(m.Dims.L)
		off += int64(l) * size
		label = fmt.Sprintf("%s%s[%d]", prefix, t.Name, l)
	}
	return b.Slice(label, off, size)
}

func isPerLayer(name string) bool {
	switch name {
	case ref.NameWte, ref.NameWpe, ref.NameLnfw, ref.NameLnfb:
		return false
	}
	return true
}

// blockInput is the residual stream entering block l (l = L: the final
// LayerNorm's input).
func (m *GPT2) blockInput(l int) program.View {
	if l == 0 {
		return m.acts.encoded
	}
	return m.acts.residual3[l-1]
}

// part appends ops to r as the step of a part of the model at layer l (-1
// outside the blocks).
func part(r *program.Range, name string, l int, step string, ops ...program.Op) {
	for i := range ops {
		ops[i].Part, ops[i].Layer, ops[i].Step = name, l, step
	}
	r.Add(ops...)
}

// buildForward appends the forward pass to r: embeddings, L blocks, final
// LayerNorm, logits and the mean cross-entropy loss.
func (m *GPT2) buildForward(r *program.Range) {
	d, a, sms := m.Dims, &m.acts, m.SMs
	B, T, C, NH, N, V := d.B, d.T, d.C, d.NH, d.Rows(), d.V
	p, tok := m.Param, m.Tokens.All()

	part(r, "embedding", -1, "encoder", kernels.EncoderForward(a.encoded, tok, p(iWte, 0), p(iWpe, 0), B, T, C))
	for l := 0; l < d.L; l++ {
		x := m.blockInput(l)
		step := func(name string, ops ...program.Op) { part(r, "layer", l, name, ops...) }
		// x + Attn(LN1(x))
		step("ln1", kernels.LayerNormForward(a.ln1[l], a.ln1Mean[l], a.ln1Rstd[l], x, p(iLn1w, l), p(iLn1b, l), N, C))
		step("qkv", kernels.MatmulForward(a.qkv[l], a.ln1[l], p(iQkvw, l), p(iQkvb, l), N, C, 3*C, sms))
		step("attention", kernels.AttentionForward(a.atty[l], a.attLSE[l], a.qkv[l], B, T, C, NH))
		step("attn proj", kernels.MatmulForward(a.proj, a.atty[l], p(iAttprojw, l), p(iAttprojb, l), N, C, C, sms))
		step("residual1", kernels.ResidualForward(a.residual2[l], x, a.proj, N*C))
		// x + MLP(LN2(x))
		step("ln2", kernels.LayerNormForward(a.ln2[l], a.ln2Mean[l], a.ln2Rstd[l], a.residual2[l], p(iLn2w, l), p(iLn2b, l), N, C))
		step("fc", kernels.MatmulForward(a.fch[l], a.ln2[l], p(iFcw, l), p(iFcb, l), N, C, 4*C, sms))
		step("gelu", kernels.GELUForward(a.fchGelu[l], a.fch[l], N*4*C))
		step("fc proj", kernels.MatmulForward(a.proj, a.fchGelu[l], p(iFcprojw, l), p(iFcprojb, l), N, 4*C, C, sms))
		step("residual2", kernels.ResidualForward(a.residual3[l], a.residual2[l], a.proj, N*C))
	}
	head := func(name string, ops ...program.Op) { part(r, "head", -1, name, ops...) }
	head("final ln", kernels.LayerNormForward(a.lnf, a.lnfMean, a.lnfRstd, m.blockInput(d.L), p(iLnfw, 0), p(iLnfb, 0), N, C))
	head("lm head", kernels.MatmulForward(m.Logits.All(), a.lnf, p(iWte, 0), program.View{}, N, C, V, sms)) // tied weights, no bias
	head("loss", kernels.CrossEntropyForward(a.losses, a.lse, m.Logits.All(), m.Targets.All(), N, V),
		kernels.LossReduce(m.Loss.All(), a.losses, N))
}

// buildBackward appends the backward pass of the forward to r, writing
// every parameter gradient. It overwrites the logits with their gradient.
func (m *GPT2) buildBackward(r *program.Range) {
	d, a, sc, ws, sms := m.Dims, &m.acts, &m.scratch, m.matmulWorkspace, m.SMs
	B, T, C, NH, N, V := d.B, d.T, d.C, d.NH, d.Rows(), d.V
	p, g := m.Param, m.Grad
	null := program.View{}
	head := func(name string, ops ...program.Op) { part(r, "head", -1, name, ops...) }

	// The residual stream's gradient and the position embedding's are
	// accumulated, so they start at zero (wpe rows past T stay zero).
	head("zero dresidual", kernels.Memset(sc.dresidual))
	head("zero dwpe", kernels.Memset(g(iWpe, 0)))

	// loss → logits → final LayerNorm
	dlogits := m.Logits.All()
	head("loss", kernels.CrossEntropyBackward(dlogits, dlogits, a.lse, m.Targets.All(), N, V, 1/float32(N)))
	head("lm head", kernels.MatmulBackward(sc.dC, g(iWte, 0), null, dlogits, a.lnf, p(iWte, 0), ws, N, C, V, sms)...)
	head("final ln", kernels.LayerNormBackward(sc.dresidual, g(iLnfw, 0), g(iLnfb, 0), sc.lnPartial, sc.dC,
		m.blockInput(d.L), p(iLnfw, 0), a.lnfMean, a.lnfRstd, N, C)...)

	for l := d.L - 1; l >= 0; l-- {
		step := func(name string, ops ...program.Op) { part(r, "layer", l, name, ops...) }
		// MLP: dresidual is the gradient of residual3[l], and (through
		// the residual add) of the MLP's output.
		step("fc proj", kernels.MatmulBackward(sc.d4C, g(iFcprojw, l), g(iFcprojb, l), sc.dresidual, a.fchGelu[l], p(iFcprojw, l), ws, N, 4*C, C, sms)...)
		step("gelu", kernels.GELUBackward(sc.d4C, a.fch[l], sc.d4C, N*4*C))
		step("fc", kernels.MatmulBackward(sc.dC, g(iFcw, l), g(iFcb, l), sc.d4C, a.ln2[l], p(iFcw, l), ws, N, C, 4*C, sms)...)
		step("ln2", kernels.LayerNormBackward(sc.dresidual, g(iLn2w, l), g(iLn2b, l), sc.lnPartial, sc.dC,
			a.residual2[l], p(iLn2w, l), a.ln2Mean[l], a.ln2Rstd[l], N, C)...)
		// Attention: dresidual is now the gradient of residual2[l].
		step("attn proj", kernels.MatmulBackward(sc.dC, g(iAttprojw, l), g(iAttprojb, l), sc.dresidual, a.atty[l], p(iAttprojw, l), ws, N, C, C, sms)...)
		dqkv := sc.d4C // free again: dfch was consumed above
		step("attention", kernels.AttentionBackward(dqkv, sc.attD, sc.dC, a.qkv[l], a.atty[l], a.attLSE[l], B, T, C, NH)...)
		step("qkv", kernels.MatmulBackward(sc.dC, g(iQkvw, l), g(iQkvb, l), dqkv, a.ln1[l], p(iQkvw, l), ws, N, C, 3*C, sms)...)
		step("ln1", kernels.LayerNormBackward(sc.dresidual, g(iLn1w, l), g(iLn1b, l), sc.lnPartial, sc.dC,
			m.blockInput(l), p(iLn1w, l), a.ln1Mean[l], a.ln1Rstd[l], N, C)...)
	}

	// embeddings: the lm head already wrote dwte; add the lookups' part.
	bk := m.Buckets
	part(r, "embedding", -1, "encoder",
		kernels.EncoderBackwardWTE(g(iWte, 0), sc.dresidual, bk[0].All(), bk[1].All(), bk[2].All(), m.NumBuckets, N, C),
		kernels.EncoderBackwardWPE(g(iWpe, 0), sc.dresidual, B, T, C))
}
