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
	"strings"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/gemmplan"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/kernels"
	"github.com/gpubench/gpubench/model/ref"
	"github.com/gpubench/gpubench/ptx"
)

// DefaultSMs is the multiprocessor count a program is built for when the
// GPU is not known (plan and check without a GPU): the H100 SXM's and
// H200's. It changes only the matmul tile and split choices, never which
// kernels run.
const DefaultSMs = 132

// DefaultCC is the compute capability a program is built for when the GPU
// is not known, DefaultSMs's GPUs' (9.0): it decides, with Options.Tier,
// whether bf16's products run on the Hopper tier. plan and check without a
// GPU therefore describe an H100/H200's run; --tier=mma describes another's.
const DefaultCC = 90

// Options are what a program depends on beyond the model's shape and mode.
type Options struct {
	// SMs is the GPU's multiprocessor count, for the matmul tile and
	// split-K choices; 0 means DefaultSMs.
	SMs int
	// Graph captures each pass (forward, and backward in train mode) as
	// one CUDA graph, replayed inside the same NVTX range.
	Graph bool
	// DType is the step's precision; "" means config.FP32.
	DType config.DType
	// Tier picks the tensor-core kernels of bf16's products ("" means
	// config.TierAuto), CC the GPU's compute capability as major·10 +
	// minor (0: not known, DefaultCC). Auto takes the Hopper tier
	// (kernels/matmul_wgmma.go) on 9.0.
	Tier config.Tier
	CC   int
	// SharedOptIn is the GPU's shared memory a block may opt in to; it
	// picks the tensor-core GEMM's pipeline depth
	// (gemmplan.MMAStagesFor). 0 means not known: the H100/H200's.
	SharedOptIn int
	// NVTX is the depth of the NVTX ranges inside each pass; "" means
	// config.NVTXIteration (none inside the passes). A deeper program
	// cannot be captured as graphs.
	NVTX config.NVTXDepth
	// Flaws are the planted flaws (config.Flaws), each a change to the
	// program: see flaws.go. config.ParseRun refuses the combinations
	// that cannot run (a graph with a synchronisation inside, say).
	Flaws []config.Flaw
	// DataParallel makes the step one rank of a data-parallel run: its
	// backward all-reduces the gradients in buckets (allreduce.go).
	DataParallel DataParallel
}

// Step is the program of one step (GPT-2 or LLaMA) with its buffers by role, for the
// executors and tests that need to reach a particular one.
type Step struct {
	*program.Program
	Dims config.Dims
	Mode config.Mode
	SMs  int
	// Graph is Options.Graph: each pass is one graph launch.
	Graph bool
	// DType is the precision: it sets Elem and which kernels run the
	// products (see the product and attention methods).
	DType config.DType
	// Elem is the element type of the parameters, their gradients and the
	// activations: bf16 for config.BF16, else f32. Statistics (LayerNorm
	// mean and rstd, logsumexps, losses), the loss and every partial sum
	// stay f32 whatever the dtype.
	Elem program.Elem
	// NVTX is the depth of the NVTX ranges (Options.NVTX).
	NVTX config.NVTXDepth
	// WGMMA says that the linear layers' bf16 or tf32 products run on the
	// Hopper tier (matmul_wgmma) wherever their operands allow TMA
	// (kernels.WGMMAFits), on matmul_mma elsewhere (bf16's attention too:
	// see attentionForward).
	WGMMA bool
	// mmaStages is the tensor-core GEMM's pipeline depth for the GPU
	// (Options.SharedOptIn); a GPU with room for none keeps the deepest,
	// which CheckDevice then refuses.
	mmaStages int
	// Flaws are the planted flaws (Options.Flaws; see flaws.go).
	Flaws []config.Flaw
	// DP is Options.DataParallel; buckets its all-reduces, in backward
	// order (allreduce.go).
	DP      DataParallel
	buckets []GradBucket
	// Vp is the row stride of the logits: V for fp32, V rounded up to a
	// multiple of VocabPad for the tensor-core dtypes, whose products load
	// rows in 16-byte chunks (columns V..Vp-1 are never read or written).
	Vp int

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
	passes            []*program.Range

	// Generated is generate mode's (B, New) i32 greedy tokens: column 0
	// from the prefill, column j+1 from decode step j.
	Generated *program.Buffer
	lm        *llama // LLaMA's own state; nil for GPT-2

	// tf32Transposes is the TF32 backward's scratch on the Hopper tier
	// (kernels.MatmulBackwardWGMMATF32: wᵀ, doutᵀ, inpᵀ); null otherwise.
	tf32Transposes program.View
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
	geluTmp               program.View // (N,4C) unfused's GELU chain intermediate (flaws.go); not kept, null without the flaw
}

// scratch holds the backward pass's temporaries, reused layer after layer.
type scratch struct {
	dresidual program.View // (N,C) gradient of the residual stream
	dC        program.View // (N,C) dlnf, dln2, datty, dln1 in turn
	d4C       program.View // (N,4C) dfch; also dqkv (N,3C). LLaMA: (N,max(2H,QKV)) dh13, then dqkv
	dH        program.View // LLaMA: (N,H) the SwiGLU output's gradient
	attD      program.View // (B,NH,T) rowsum(dout∘out) for attention backward
	lnPartial program.View // layernorm parameter-gradient partial sums
}

// Program builds the step of the GPT-2 of shape d in mode: train runs
// forward then backward, infer the forward only (loss included). d must
// pass config.Dims.Validate; Program panics on an unknown mode, which
// config.ParseMode would have refused.
func Program(d config.Dims, mode config.Mode, o Options) *Step {
	if mode != config.Train && mode != config.Infer && !(mode == config.Generate && d.IsLlama()) {
		panic(fmt.Sprintf("model.Program: unknown mode %q for %s", mode, d.Arch))
	}
	if o.SMs <= 0 {
		o.SMs = DefaultSMs
	}
	if o.DType == "" {
		o.DType = config.FP32
	}
	m := &Step{Program: &program.Program{}, Dims: d, Mode: mode, SMs: o.SMs, Graph: o.Graph, Layout: ref.Layout(d),
		DType: o.DType, Elem: program.F32, Vp: d.V, NVTX: o.NVTX, Flaws: o.Flaws, DP: o.DataParallel}
	if m.NVTX == "" {
		m.NVTX = config.NVTXIteration
	}
	if m.mmaStages = gemmplan.MMAStagesFor(o.SharedOptIn); m.mmaStages == 0 {
		m.mmaStages = gemmplan.MMAStages
	}
	if o.DType == config.BF16 {
		m.Elem = program.BF16
	}
	if o.CC <= 0 {
		o.CC = DefaultCC
	}
	m.WGMMA = o.Tier.UsesWGMMA(o.DType, o.CC)
	if o.DType.TensorCores() {
		m.Vp = (d.V + VocabPad - 1) / VocabPad * VocabPad
	}
	it := &m.Iteration
	it.Name = program.IterationTemplate
	it.Layer = -1
	if d.IsLlama() {
		m.allocateLlama()
		it.Add(m.iterationOps()...)
		m.buildLlama()
	} else {
		m.allocate()
		it.Add(m.iterationOps()...)
		m.forward = it.NestKind(program.Forward, program.PassRange, -1)
		m.buildForward(m.forward)
		m.passes = append(m.passes, m.forward)
		if mode == config.Train {
			if m.DP.World > 0 {
				m.planBuckets()
			}
			m.backward = it.NestKind(program.Backward, program.PassRange, -1)
			m.buildBackward(m.backward)
			m.passes = append(m.passes, m.backward)
		}
	}
	if free := m.freeActivations(); len(free) > 0 {
		m.part(m.passes[len(m.passes)-1], "activations", -1, "", "free", free...)
	}
	if o.Graph {
		for _, r := range m.passes {
			if err := program.CaptureAsGraph(r); err != nil {
				panic(err) // a deeper --nvtx puts ranges in the passes; config refuses it with --graph
			}
		}
	}
	return m
}

// Passes are the iteration's ranges in the order they run: forward, then
// backward in train mode; prefill, then decode0, decode1, ... in generate
// mode. Executors compile each once and time each.
func (m *Step) Passes() []*program.Range { return m.passes }

// VocabPad is what the tensor-core dtypes round the logits' row stride up
// to: a multiple of 64 elements keeps every row 128-byte aligned in bf16
// and fp32 alike (GPT-2's V = 50257 is stored with stride 50304).
const VocabPad = 64

// Forward and Backward are the iteration's two ranges; Backward is nil in
// infer mode.
func (m *Step) Forward() *program.Range  { return m.forward }
func (m *Step) Backward() *program.Range { return m.backward }

// allocate declares every buffer the step uses, in allocation order.
func (m *Step) allocate() {
	d := m.Dims
	N, C, L := int64(d.Rows()), int64(d.C), d.L
	p, e := m.Program, m.Elem
	// one declares a buffer of the step's element type e, and f32 one of
	// fp32 statistics or partial sums, whatever the dtype.
	one := func(name string, n int64, g program.Group) program.View {
		return p.Buffer(name, -1, e, n, g).All()
	}
	f32 := func(name string, n int64, g program.Group) program.View {
		return p.Buffer(name, -1, program.F32, n, g).All()
	}
	perLayer := func(name string, elem program.Elem, n int64) []program.View {
		vs := make([]program.View, L)
		for l := range vs {
			vs[l] = p.Buffer(name, l, elem, n, program.Activations).All()
		}
		return vs
	}
	nParams := int64(ref.NumParams(d))
	m.Params = p.Buffer("params", -1, e, nParams, program.Params)
	m.Tokens = p.Buffer("tokens", -1, program.I32, N, program.Inputs)
	m.Targets = p.Buffer("targets", -1, program.I32, N, program.Inputs)
	act := program.Activations
	a := &m.acts
	a.encoded = one("encoded", N*C, act)
	F := program.F32
	a.ln1, a.ln1Mean, a.ln1Rstd = perLayer("ln1", e, N*C), perLayer("ln1_mean", F, N), perLayer("ln1_rstd", F, N)
	a.qkv = perLayer("qkv", e, N*3*C)
	a.atty = perLayer("atty", e, N*C)
	a.attLSE = perLayer("att_lse", F, int64(d.B*d.NH*d.T))
	a.residual2 = perLayer("residual2", e, N*C)
	a.ln2, a.ln2Mean, a.ln2Rstd = perLayer("ln2", e, N*C), perLayer("ln2_mean", F, N), perLayer("ln2_rstd", F, N)
	a.fch, a.fchGelu = perLayer("fch", e, N*4*C), perLayer("fch_gelu", e, N*4*C)
	a.residual3 = perLayer("residual3", e, N*C)
	a.lnf, a.lnfMean, a.lnfRstd = one("lnf", N*C, act), f32("lnf_mean", N, act), f32("lnf_rstd", N, act)
	m.Logits = p.Buffer("logits", -1, e, N*int64(m.Vp), act)
	a.losses = f32("losses", N, act)
	a.lse = f32("lse", N, act)
	m.Loss = p.Buffer("loss", -1, F, 1, act)
	a.proj = one("proj", N*C, act)
	if m.has(config.Unfused) {
		a.geluTmp = one("gelu_tmp", N*4*C, act) // the GELU chain's intermediate, reused layer after layer
	}
	if m.Mode != config.Train {
		return
	}
	m.Grads = p.Buffer("grads", -1, e, nParams, program.Grads)
	sc, s := &m.scratch, program.Scratch
	sc.dresidual = one("dresidual", N*C, s)
	sc.dC = one("dC", N*C, s)
	sc.d4C = one("d4C", N*4*C, s)
	sc.attD = f32("att_delta", int64(d.B*d.NH*d.T), s)
	sc.lnPartial = f32("ln_partials", int64(kernels.LayerNormPartialSize(d.Rows(), d.C)), s)
	m.allocateMatmulWorkspace(m.linears())
	m.allocateBuckets()
}

// allocateMatmulWorkspace declares the split-K workspace of the train
// step's weight gradients, sized for the one of ls that needs most.
func (m *Step) allocateMatmulWorkspace(ls []linear) {
	d, p := m.Dims, m.Program
	s := program.Scratch
	// A weight gradient whose output has too few tiles for the GPU splits
	// its sum over the N rows; one workspace, sized for the linear layer
	// that needs most (a bound for any SM count), serves them all in turn.
	floats, counters := 1, 1
	for _, l := range ls {
		f, c := kernels.MatmulScratchSize(d.Rows(), l.in, l.out)
		if m.DType.TensorCores() {
			f, c = kernels.MatmulScratchSizeMMA(d.Rows(), l.in, l.out)
		}
		if m.WGMMA {
			// The Hopper tier's plans, and the mma tier's for the layers
			// whose operands TMA cannot read.
			fw, cw := kernels.MatmulScratchSizeWGMMA(d.Rows(), l.in, l.out)
			f, c = max(f, fw), max(c, cw)
		}
		floats, counters = max(floats, f), max(counters, c)
	}
	if m.WGMMA && m.DType == config.TF32 && m.Mode == config.Train {
		// wgmma reads tf32 operands K-major only: the backward products
		// read transposes, made layer by layer into one buffer.
		var elems int64
		for _, l := range ls {
			elems = max(elems, kernels.MatmulTransposeScratchTF32(d.Rows(), l.in, l.out, tf32WeightGradOnWGMMA))
		}
		m.tf32Transposes = p.Buffer("tf32_transposes", -1, program.F32, elems, s).All()
	}
	m.matmulWorkspace.Partials = p.Buffer("matmul_partials", -1, program.F32, int64(floats), s).All()
	m.MatmulCounters = p.Buffer("matmul_counters", -1, program.I32, int64(counters), s)
	m.MatmulCounters.State = true
	m.matmulWorkspace.Counters = m.MatmulCounters.All()
	// The tile counters start at zero, once: every launch leaves them so.
	p.Setup = append(p.Setup, kernels.Memset(m.matmulWorkspace.Counters))
}

// allocateBuckets declares the embedding backward's token grouping.
func (m *Step) allocateBuckets() {
	d, p, N := m.Dims, m.Program, int64(m.Dims.Rows())
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
func (m *Step) linears() []linear {
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
func (m *Step) Param(i, l int) program.View { return m.tensor(m.Params, "", i, l) }

// Grad is the gradient of Param(i, l).
func (m *Step) Grad(i, l int) program.View { return m.tensor(m.Grads, "d", i, l) }

func (m *Step) tensor(b *program.Buffer, prefix string, i, l int) program.View {
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
	case ref.NameWte, ref.NameWpe, ref.NameLnfw, ref.NameLnfb, ref.NameLlamaEmbed, ref.NameLlamaNorm, ref.NameLlamaHead:
		return false
	}
	return true
}

// blockInput is the residual stream entering block l (l = L: the final
// LayerNorm's input).
func (m *Step) blockInput(l int) program.View {
	if l == 0 {
		return m.acts.encoded
	}
	return m.acts.residual3[l-1]
}

// part appends ops to pass r as the step of a part of the model ("embedding",
// "layer" l, "head"; l is -1 outside the blocks), in the block's half
// ("attention" or "mlp", "" outside the blocks), inside the NVTX ranges
// the program's depth gives them (rangeFor).
func (m *Step) part(r *program.Range, name string, l int, half, step string, ops ...program.Op) {
	into := m.rangeFor(r, name, l, half)
	ops = m.withSyncs(ops)
	for i := 0; i < len(ops); i++ {
		ops[i].Part, ops[i].Layer, ops[i].Step = name, l, step
		if m.NVTX != config.NVTXOp {
			into.Add(ops[i])
			continue
		}
		// One range per operation; a planted synchronisation stays in its
		// launch's range.
		op := into.NestKind(ops[i].Name, program.OpRange, l)
		op.Add(ops[i])
		for i+1 < len(ops) && ops[i+1].Kind == program.Sync && ops[i].Kind != program.Memcpy && ops[i].Kind != program.Sync {
			i++
			ops[i].Part, ops[i].Layer, ops[i].Step = name, l, step
			op.Add(ops[i])
		}
	}
}

// rangeFor is the range the operations of a part go into at the program's
// NVTX depth: the pass itself at iteration depth; else the part's range
// (embedding, layer{l}, head), and in a block its half's (attention, mlp),
// each the pass's last child when that is the same range, else a new one.
func (m *Step) rangeFor(pass *program.Range, name string, l int, half string) *program.Range {
	if m.NVTX == config.NVTXIteration || m.NVTX == "" {
		return pass
	}
	kind := program.PartRange
	if l >= 0 {
		name, kind = fmt.Sprintf("%s%d", name, l), program.LayerRange
	}
	r := lastChild(pass, name, l, kind)
	if half != "" {
		r = lastChild(r, half, l, program.HalfRange)
	}
	return r
}

// lastChild returns r's last item when it is the range name over layer l,
// else a new child range of that name, kind and layer.
func lastChild(r *program.Range, name string, l int, k program.RangeKind) *program.Range {
	if n := len(r.Items); n > 0 {
		if c := r.Items[n-1].Range; c != nil && c.Name == name && c.Layer == l {
			return c
		}
	}
	return r.NestKind(name, k, l)
}

// buildForward appends the forward pass to r: embeddings, L blocks, final
// LayerNorm, logits and the mean cross-entropy loss.
func (m *Step) buildForward(r *program.Range) {
	d, a := m.Dims, &m.acts
	B, T, C, NH, N, V := d.B, d.T, d.C, d.NH, d.Rows(), d.V
	p, tok := m.Param, m.Tokens.All()

	if alloc := m.allocActivations(); len(alloc) > 0 {
		m.part(r, "activations", -1, "", "alloc", alloc...)
	}
	m.part(r, "embedding", -1, "", "encoder", kernels.EncoderForward(a.encoded, tok, p(iWte, 0), p(iWpe, 0), B, T, C))
	for l := 0; l < d.L; l++ {
		x := m.blockInput(l)
		attn := func(name string, ops ...program.Op) { m.part(r, "layer", l, "attention", name, ops...) }
		mlp := func(name string, ops ...program.Op) { m.part(r, "layer", l, "mlp", name, ops...) }
		// x + Attn(LN1(x))
		attn("ln1", kernels.LayerNormForward(a.ln1[l], a.ln1Mean[l], a.ln1Rstd[l], x, p(iLn1w, l), p(iLn1b, l), N, C))
		attn("qkv", m.biasedLinearForward(a.qkv[l], a.ln1[l], p(iQkvw, l), p(iQkvb, l), N, C, 3*C, 3*C)...)
		attn("attention", m.attentionForward(a.atty[l], a.attLSE[l], a.qkv[l], B, T, C, NH, NH))
		attn("attn proj", m.biasedLinearForward(a.proj, a.atty[l], p(iAttprojw, l), p(iAttprojb, l), N, C, C, C)...)
		attn("residual1", m.residualForward(a.residual2[l], x, a.proj, N*C))
		// x + MLP(LN2(x))
		mlp("ln2", kernels.LayerNormForward(a.ln2[l], a.ln2Mean[l], a.ln2Rstd[l], a.residual2[l], p(iLn2w, l), p(iLn2b, l), N, C))
		mlp("fc", m.biasedLinearForward(a.fch[l], a.ln2[l], p(iFcw, l), p(iFcb, l), N, C, 4*C, 4*C)...)
		mlp("gelu", m.geluForward(a.fchGelu[l], a.fch[l], N*4*C)...)
		mlp("fc proj", m.biasedLinearForward(a.proj, a.fchGelu[l], p(iFcprojw, l), p(iFcprojb, l), N, 4*C, C, C)...)
		mlp("residual2", m.residualForward(a.residual3[l], a.residual2[l], a.proj, N*C))
		if rb := m.readback(l); len(rb) > 0 {
			mlp("readback", rb...)
		}
	}
	head := func(name string, ops ...program.Op) { m.part(r, "head", -1, "", name, ops...) }
	head("final ln", kernels.LayerNormForward(a.lnf, a.lnfMean, a.lnfRstd, m.blockInput(d.L), p(iLnfw, 0), p(iLnfb, 0), N, C))
	head("lm head", m.linearForward(m.Logits.All(), a.lnf, p(iWte, 0), program.View{}, N, C, V, m.Vp)) // tied weights, no bias
	head("loss", kernels.CrossEntropyForward(a.losses, a.lse, m.Logits.All(), m.Targets.All(), N, V, m.Vp),
		kernels.LossReduce(m.Loss.All(), a.losses, N))
}

// buildBackward appends the backward pass of the forward to r, writing
// every parameter gradient. It overwrites the logits with their gradient.
func (m *Step) buildBackward(r *program.Range) {
	d, a, sc := m.Dims, &m.acts, &m.scratch
	B, T, C, NH, N, V := d.B, d.T, d.C, d.NH, d.Rows(), d.V
	p, g := m.Param, m.Grad
	null := program.View{}
	head := func(name string, ops ...program.Op) { m.part(r, "head", -1, "", name, ops...) }

	// The residual stream's gradient and the position embedding's are
	// accumulated, so they start at zero (wpe rows past T stay zero).
	head("zero dresidual", kernels.Memset(sc.dresidual))
	head("zero dwpe", kernels.Memset(g(iWpe, 0)))

	// loss → logits → final LayerNorm
	dlogits := m.Logits.All()
	head("loss", kernels.CrossEntropyBackward(dlogits, dlogits, a.lse, m.Targets.All(), N, V, m.Vp, 1/float32(N)))
	head("lm head", m.linearBackward(sc.dC, g(iWte, 0), null, dlogits, a.lnf, p(iWte, 0), N, C, V, m.Vp)...)
	head("final ln", kernels.LayerNormBackward(sc.dresidual, g(iLnfw, 0), g(iLnfb, 0), sc.lnPartial, sc.dC,
		m.blockInput(d.L), p(iLnfw, 0), a.lnfMean, a.lnfRstd, N, C)...)

	for l := d.L - 1; l >= 0; l-- {
		attn := func(name string, ops ...program.Op) { m.part(r, "layer", l, "attention", name, ops...) }
		mlp := func(name string, ops ...program.Op) { m.part(r, "layer", l, "mlp", name, ops...) }
		// MLP: dresidual is the gradient of residual3[l], and (through
		// the residual add) of the MLP's output.
		mlp("fc proj", m.linearBackward(sc.d4C, g(iFcprojw, l), g(iFcprojb, l), sc.dresidual, a.fchGelu[l], p(iFcprojw, l), N, 4*C, C, C)...)
		mlp("gelu", kernels.GELUBackward(sc.d4C, a.fch[l], sc.d4C, N*4*C))
		mlp("fc", m.linearBackward(sc.dC, g(iFcw, l), g(iFcb, l), sc.d4C, a.ln2[l], p(iFcw, l), N, C, 4*C, 4*C)...)
		mlp("ln2", kernels.LayerNormBackward(sc.dresidual, g(iLn2w, l), g(iLn2b, l), sc.lnPartial, sc.dC,
			a.residual2[l], p(iLn2w, l), a.ln2Mean[l], a.ln2Rstd[l], N, C)...)
		// Attention: dresidual is now the gradient of residual2[l].
		attn("attn proj", m.linearBackward(sc.dC, g(iAttprojw, l), g(iAttprojb, l), sc.dresidual, a.atty[l], p(iAttprojw, l), N, C, C, C)...)
		dqkv := sc.d4C // free again: dfch was consumed above
		attn("attention", m.attentionBackward(dqkv, sc.attD, sc.dC, a.qkv[l], a.atty[l], a.attLSE[l], B, T, C, NH, NH)...)
		attn("qkv", m.linearBackward(sc.dC, g(iQkvw, l), g(iQkvb, l), dqkv, a.ln1[l], p(iQkvw, l), N, C, 3*C, 3*C)...)
		attn("ln1", kernels.LayerNormBackward(sc.dresidual, g(iLn1w, l), g(iLn1b, l), sc.lnPartial, sc.dC,
			m.blockInput(l), p(iLn1w, l), a.ln1Mean[l], a.ln1Rstd[l], N, C)...)
		if off := m.offload(l); len(off) > 0 {
			attn("offload grads", off...)
		}
		if b := m.bucketEndingAt(l); b >= 0 {
			m.allReduce(r, b)
		}
	}

	// embeddings: the lm head already wrote dwte; add the lookups' part.
	bk := m.Buckets
	m.part(r, "embedding", -1, "", "encoder",
		kernels.EncoderBackwardWTE(g(iWte, 0), sc.dresidual, bk[0].All(), bk[1].All(), bk[2].All(), m.NumBuckets, N, C),
		kernels.EncoderBackwardWPE(g(iWpe, 0), sc.dresidual, B, T, C))
	if join := m.joinCopies(); len(join) > 0 {
		m.part(r, "embedding", -1, "", "join copies", join...)
	}
	if len(m.buckets) > 0 {
		m.allReduce(r, len(m.buckets)-1)
	}
}

// linearForward is out(n,oc) = inp(n,c)·w(oc,c)ᵀ + bias, out's rows of
// stride ld: on the FP32 units for fp32, on tensor cores for tf32 and bf16
// (kernels/matmul_mma.go). Only the tensor-core path pads (ld > oc).
func (m *Step) linearForward(out, inp, w, bias program.View, n, c, oc, ld int) program.Op {
	if m.WGMMA && kernels.WGMMAFits(c, ld, out, inp, w, bias) {
		return kernels.MatmulForwardWGMMA(out, inp, w, bias, m.matmulWorkspace, n, c, oc, ld, m.SMs)
	}
	if m.DType.TensorCores() {
		return kernels.MMAOnStages(m.mmaStages, kernels.MatmulForwardMMA(out, inp, w, bias, n, c, oc, ld, m.SMs))[0]
	}
	return kernels.MatmulForwardWith(out, inp, w, bias, m.matmulWorkspace, n, c, oc, m.SMs, m.matmulOptions())
}

// linearBackward is linearForward's backward: dinp, dw and (unless null)
// dbias, all overwritten, from dout (rows of stride ld).
func (m *Step) linearBackward(dinp, dw, dbias, dout, inp, w program.View, n, c, oc, ld int) []program.Op {
	if m.WGMMA && m.DType == config.TF32 && kernels.WGMMAFits(c, ld, dinp, dw, dbias, dout, inp, w) {
		return kernels.MMAOnStages(m.mmaStages, kernels.MatmulBackwardWGMMATF32(dinp, dw, dbias, dout, inp, w, m.tf32Transposes,
			m.matmulWorkspace, n, c, oc, ld, m.SMs, tf32WeightGradOnWGMMA)...)
	}
	if m.WGMMA && kernels.WGMMAFits(c, ld, dinp, dw, dbias, dout, inp, w) {
		return kernels.MatmulBackwardWGMMA(dinp, dw, dbias, dout, inp, w, m.matmulWorkspace, n, c, oc, ld, m.SMs)
	}
	if m.DType.TensorCores() {
		return kernels.MMAOnStages(m.mmaStages, kernels.MatmulBackwardMMA(dinp, dw, dbias, dout, inp, w, m.matmulWorkspace, n, c, oc, ld, m.SMs)...)
	}
	return kernels.MatmulBackwardWith(dinp, dw, dbias, dout, inp, w, m.matmulWorkspace, n, c, oc, m.SMs, m.matmulOptions())
}

// tf32WeightGradOnWGMMA says whether the TF32 weight gradient on the
// Hopper tier runs on wgmma from transposed dout and inp (else on
// mma.sync, reading them as they are): see docs/matmul.md, "TF32 on the
// Hopper tier", for the prediction and the measurement that chose it.
const tf32WeightGradOnWGMMA = true

// attentionForward runs the causal attention of qkv with NKV key/value
// heads (NH for GPT-2): the bf16 tensor-core flash attention
// (kernels/attention_mma.go) for bf16, on the Hopper tier its wgmma
// forward (kernels/attention_wgmma.go) where the head size and views allow
// it; for tf32 the TF32 tensor-core flash attention
// (kernels/attention_tf32.go, every tier) where they allow it; the fp32
// kernels otherwise. Both bf16 forwards write the same out and lse, which
// either bf16 backward reads; the tf32 and fp32 ones likewise.
func (m *Step) attentionForward(out, lse, qkv program.View, B, T, C, NH, NKV int) program.Op {
	if m.DType == config.TF32 && kernels.AttentionTF32ForwardFits(out, lse, qkv, C, NH) {
		return kernels.AttentionForwardTF32(out, lse, qkv, B, T, C, NH, NKV)
	}
	if m.WGMMA && kernels.AttentionWGMMAFits(out, lse, qkv, C, NH) {
		return kernels.AttentionForwardWGMMA(out, lse, qkv, B, T, C, NH, NKV, m.SMs)
	}
	if m.DType == config.BF16 {
		return kernels.AttentionForwardMMA(out, lse, qkv, B, T, C, NH, NKV)
	}
	return kernels.AttentionForward(out, lse, qkv, B, T, C, NH, NKV)
}

// attentionBackward is attentionForward's backward: on the Hopper tier its
// wgmma kernels (kernels/attention_wgmma_bwd.go) where the head size and
// views allow them, else the mma.sync ones for bf16; for tf32 the TF32
// ones where they fit. Either reads the out and lse of either forward of
// its dtype.
func (m *Step) attentionBackward(dqkv, d, dout, qkv, out, lse program.View, B, T, C, NH, NKV int) []program.Op {
	if m.DType == config.TF32 && kernels.AttentionTF32BackwardFits(dqkv, d, dout, qkv, out, lse, C, NH) {
		return kernels.AttentionBackwardTF32(dqkv, d, dout, qkv, out, lse, B, T, C, NH, NKV)
	}
	if m.WGMMA && kernels.AttentionBackwardWGMMAFits(dqkv, d, dout, qkv, out, lse, C, NH) {
		return kernels.AttentionBackwardWGMMA(dqkv, d, dout, qkv, out, lse, B, T, C, NH, NKV, m.SMs)
	}
	if m.DType == config.BF16 {
		return kernels.AttentionBackwardMMA(dqkv, d, dout, qkv, out, lse, B, T, C, NH, NKV)
	}
	return kernels.AttentionBackward(dqkv, d, dout, qkv, out, lse, B, T, C, NH, NKV)
}

// ModuleUse is one PTX module the program launches kernels from, with the
// GPU architecture its PTX targets.
type ModuleUse struct {
	Name    string
	Target  ptx.Target
	Kernels []string // its entries that the program launches, in first-use order
}

// Modules lists the modules the program's kernels come from, in first-use
// order (setup, then the iteration). It is what decides which GPUs can run
// the step: see CheckDevice.
func (m *Step) Modules() []ModuleUse {
	var uses []ModuleUse
	index := map[string]int{}
	seen := map[string]bool{}
	var ops []*program.Op
	for i := range m.Setup {
		ops = append(ops, &m.Setup[i])
	}
	for _, op := range append(ops, m.Iteration.Ops()...) {
		if op.Kind != program.Kernel {
			continue
		}
		i, ok := index[op.Module]
		if !ok {
			t, _ := ptx.ModuleTarget(op.Module)
			i = len(uses)
			index[op.Module] = i
			uses = append(uses, ModuleUse{Name: op.Module, Target: t})
		}
		if key := op.Module + "/" + op.Name; !seen[key] {
			seen[key] = true
			uses[i].Kernels = append(uses[i].Kernels, op.Name)
		}
	}
	return uses
}

// Device is what CheckDevice needs to know of a GPU.
type Device struct {
	Name         string
	Major, Minor int // compute capability
	// SharedOptIn is the most dynamic shared memory a block may use
	// (after opting in); 0 skips that check.
	SharedOptIn int
}

// CheckDevice refuses a GPU that cannot load one of the program's modules,
// naming the module, its target and what to use instead, or that has less
// shared memory a block than one of its kernels asks for.
func (m *Step) CheckDevice(d Device) error {
	name, major, minor := d.Name, d.Major, d.Minor
	for _, u := range m.Modules() {
		if !u.Target.Runs(major, minor) {
			hint := "use --dtype=fp32"
			if u.Target.ArchSpecific && major >= 8 {
				hint = "use --tier=mma" // the sm_80 tier runs there
			}
			if m.DType == config.FP32 {
				hint = "no dtype of gpubench runs on it"
			}
			return fmt.Errorf("--dtype=%s: its kernels in %s.ptx are %s PTX, which %s (compute capability %d.%d) cannot run (%s)",
				m.DType, u.Name, u.Target, name, major, minor, hint)
		}
	}
	if d.SharedOptIn > 0 {
		var ops []*program.Op
		for i := range m.Setup {
			ops = append(ops, &m.Setup[i])
		}
		for _, op := range append(ops, m.Iteration.Ops()...) {
			if op.Kind == program.Kernel && op.SharedBytes > d.SharedOptIn {
				return fmt.Errorf("--dtype=%s: kernel %s asks for %d B of shared memory a block; %s allows %d (use --dtype=fp32)",
					m.DType, op.Name, op.SharedBytes, name, d.SharedOptIn)
			}
		}
	}
	return nil
}

// KernelPath says, in one line, which kernels run the step: where the
// dtype's products run, then every module the program launches from with
// its PTX target. The run's header and `gpubench info` print it.
func (m *Step) KernelPath() string {
	var mods []string
	tf32Attention := false
	for _, u := range m.Modules() {
		mods = append(mods, u.Name+" "+u.Target.String())
		tf32Attention = tf32Attention || u.Name == "attention_tf32"
	}
	var products string
	switch m.DType {
	case config.BF16:
		products = "products and attention on bf16 tensor cores (mma.sync), fp32 accumulation"
		if m.WGMMA {
			products = "linear layers and attention on Hopper's bf16 tensor cores (wgmma, TMA), fp32 accumulation"
		}
	case config.TF32:
		// The linear layers run on the Hopper tier's wgmma on 9.0, else on
		// mma.sync; attention takes the TF32 kernels at head size 64 only.
		linear := "linear layers on TF32 tensor cores (mma.sync)"
		if m.WGMMA {
			linear = "linear layers on Hopper's TF32 tensor cores (wgmma, TMA)"
		}
		products = linear + ", attention on the FP32 units (its TF32 kernels run head size 64)"
		if tf32Attention {
			products = linear + ", attention on TF32 tensor cores (mma.sync), fp32 accumulation"
		}
	default:
		products = "every product on the FP32 units"
	}
	return fmt.Sprintf("%s: %s; modules %s", m.DType, products, strings.Join(mods, ", "))
}
