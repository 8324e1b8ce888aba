package model

import (
	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/kernels"
	"github.com/gpubench/gpubench/model/ref"
)

// The LLaMA step, written once as a program like GPT-2's (program.go):
// RMSNorm, a packed qkv product with rotary position embeddings applied in
// place, grouped-query attention, a SwiGLU MLP whose gate and up
// projections are one packed product (w13), no biases, and an untied head.
// model/ref/llama.go is the same function in float64.
//
// Train and infer run the forward (and backward) pass of B·T tokens, as
// GPT-2 does. Generate runs what an inference server runs for one batch:
//
//	iteration{i}
//	    prefill     the B prompts of T tokens, writing the KV cache, then the
//	                head on each prompt's last row and the greedy argmax
//	    decode{j}   one token a sequence at position T+j, j = 0..New-2: every
//	                weight streamed once (kernels.MatvecForward for B ≤ 16
//	                rows), attention over the cache (flash-decoding), the
//	                argmax fed back as the next step's input on the device
//
// so New tokens are made per sequence (the prefill's and one per decode
// step), with no host round trip between them.

// LlamaRefDims are the reference's dimensions of a LLaMA shape.
func LlamaRefDims(d config.Dims) ref.LlamaDims {
	return ref.LlamaDims{V: d.V, MaxT: d.MaxT, T: d.T, L: d.L, NH: d.NH, NKV: d.KVHeads(), C: d.C,
		Hidden: d.Hidden, B: d.B, Eps: d.Eps, Theta: d.Theta}
}

// llama holds what only a LLaMA step has.
type llama struct {
	H, NKV, QKV int // MLP width, key/value heads, packed qkv row width (NH+2·NKV)·hs
	eps, theta  float32
	// generate mode: the KV cache of each layer, (B, KVLen, NKV·hs), and
	// the decode step's activations (B rows each).
	kcache, vcache []program.View
	next           program.View // (B) i32 the last argmax: the next step's input
	dec            decodeActs
	decScratch     program.View // flash-decoding's split partials
}

type decodeActs struct {
	x, xn, qkv, atty, h13, gate program.View
	proj                        program.View // (B,C) only when B > MatvecMaxRows (products without a fused residual)
}

// buildLlama appends the passes of a LLaMA step to the iteration.
func (m *Step) buildLlama() {
	d, it := m.Dims, &m.Iteration
	if m.Mode == config.Generate {
		prefill := it.NestKind(Prefill, program.PassRange, -1)
		m.buildPrefill(prefill)
		m.passes = append(m.passes, prefill)
		for j := 0; j < d.New-1; j++ {
			r := it.NestKind(DecodeName(j), program.PassRange, -1)
			m.buildDecode(r, d.T+j, j+1)
			m.passes = append(m.passes, r)
		}
		return
	}
	m.forward = it.NestKind(program.Forward, program.PassRange, -1)
	m.buildLlamaForward(m.forward)
	m.passes = append(m.passes, m.forward)
	if m.Mode == config.Train {
		m.backward = it.NestKind(program.Backward, program.PassRange, -1)
		m.buildLlamaBackward(m.backward)
		m.passes = append(m.passes, m.backward)
	}
}

// The NVTX ranges of generate mode inside iteration{i}.
const (
	Prefill      = program.Prefill
	DecodePrefix = program.DecodePrefix
)

// DecodeName is the range of decode step j, e.g. "decode3".
func DecodeName(j int) string { return program.DecodeName(j) }

// llamaLinears are the (in, out) channels of LLaMA's products: qkv, wo,
// w13, w2, head.
func (m *Step) llamaLinears() []linear {
	d, lm := m.Dims, m.lm
	return []linear{{d.C, lm.QKV}, {d.C, d.C}, {d.C, 2 * lm.H}, {lm.H, d.C}, {d.C, d.V}}
}

// allocateLlama declares every buffer of a LLaMA step, in allocation
// order.
func (m *Step) allocateLlama() {
	d := m.Dims
	m.lm = &llama{H: d.Hidden, NKV: d.KVHeads(), eps: float32(d.Eps), theta: float32(d.Theta)}
	m.lm.QKV = (d.NH + 2*m.lm.NKV) * d.HeadSize()
	m.Layout = ref.LlamaLayout(LlamaRefDims(d))
	lm := m.lm
	B, C, L, H, QKV := int64(d.B), int64(d.C), d.L, int64(lm.H), int64(lm.QKV)
	N := int64(d.Rows())
	p, e, F := m.Program, m.Elem, program.F32
	act := program.Activations
	one := func(name string, n int64, g program.Group) program.View { return p.Buffer(name, -1, e, n, g).All() }
	f32 := func(name string, n int64, g program.Group) program.View { return p.Buffer(name, -1, F, n, g).All() }
	// In generate mode the prefill's activations are not kept per layer:
	// nothing reads them after the layer, so one buffer serves every layer.
	perLayer := func(name string, elem program.Elem, n int64) []program.View {
		vs := make([]program.View, L)
		for l := range vs {
			if m.Mode == config.Generate && l > 0 {
				vs[l] = vs[0]
				continue
			}
			layer := l
			if m.Mode == config.Generate {
				layer = -1
			}
			vs[l] = p.Buffer(name, layer, elem, n, act).All()
		}
		return vs
	}
	m.Params = p.Buffer("params", -1, e, int64(ref.LlamaNumParams(LlamaRefDims(d))), program.Params)
	m.Tokens = p.Buffer("tokens", -1, program.I32, N, program.Inputs)
	a := &m.acts
	a.encoded = one("embedded", N*C, act)
	a.ln1, a.ln1Rstd = perLayer("attn_norm", e, N*C), perLayer("attn_rstd", F, N)
	a.qkv = perLayer("qkv", e, N*QKV)
	a.atty = perLayer("atty", e, N*C)
	a.attLSE = perLayer("att_lse", F, int64(d.B*d.NH*d.T))
	a.ln2, a.ln2Rstd = perLayer("mlp_norm", e, N*C), perLayer("mlp_rstd", F, N)
	a.fch, a.fchGelu = perLayer("h13", e, N*2*H), perLayer("gate", e, N*H)
	a.proj = one("proj", N*C, act)
	if m.Mode == config.Generate {
		// The residual stream is updated in place: x += wo·attn, x += w2·mlp.
		a.residual2 = perLayer("residual", e, N*C)
		a.residual3 = a.residual2
		a.lnf = one("last_rows", B*C, act) // each prompt's last row
		m.Logits = p.Buffer("logits", -1, e, B*int64(m.Vp), act)
		m.allocateDecode()
		return
	}
	a.residual2 = perLayer("residual2", e, N*C)
	a.residual3 = perLayer("residual3", e, N*C)
	a.lnf, a.lnfRstd = one("norm", N*C, act), f32("norm_rstd", N, act)
	m.Logits = p.Buffer("logits", -1, e, N*int64(m.Vp), act)
	m.Targets = p.Buffer("targets", -1, program.I32, N, program.Inputs)
	a.losses = f32("losses", N, act)
	a.lse = f32("lse", N, act)
	m.Loss = p.Buffer("loss", -1, F, 1, act)
	if m.Mode != config.Train {
		return
	}
	nParams := m.Params.Elems
	m.Grads = p.Buffer("grads", -1, e, nParams, program.Grads)
	sc, s := &m.scratch, program.Scratch
	sc.dresidual = one("dresidual", N*C, s)
	sc.dC = one("dC", N*C, s)
	sc.d4C = one("dwide", N*max(2*H, QKV), s) // dh13, then dqkv
	sc.dH = one("dgate", N*H, s)
	sc.attD = f32("att_delta", int64(d.B*d.NH*d.T), s)
	sc.lnPartial = f32("rmsnorm_partials", int64(kernels.RMSNormPartialSize(d.Rows(), d.C)), s)
	m.allocateMatmulWorkspace(m.llamaLinears())
	m.allocateBuckets()
}

// allocateDecode declares generate mode's KV cache and decode buffers.
func (m *Step) allocateDecode() {
	d, lm, p, e := m.Dims, m.lm, m.Program, m.Elem
	B, C, KV := int64(d.B), int64(d.C), int64(lm.NKV*d.HeadSize())
	cache := B * int64(d.KVLen()) * KV
	for l := 0; l < d.L; l++ {
		lm.kcache = append(lm.kcache, p.Buffer("k_cache", l, e, cache, program.KVCache).All())
		lm.vcache = append(lm.vcache, p.Buffer("v_cache", l, e, cache, program.KVCache).All())
	}
	lm.next = p.Buffer("next_tokens", -1, program.I32, B, program.Activations).All()
	m.Generated = p.Buffer("generated", -1, program.I32, B*int64(d.New), program.Activations)
	act := program.Activations
	one := func(name string, n int64) program.View { return p.Buffer(name, -1, e, n, act).All() }
	dc := &lm.dec
	dc.x, dc.xn = one("decode_x", B*C), one("decode_xn", B*C)
	dc.qkv, dc.atty = one("decode_qkv", B*int64(lm.QKV)), one("decode_atty", B*C)
	dc.h13, dc.gate = one("decode_h13", B*2*int64(lm.H)), one("decode_gate", B*int64(lm.H))
	if d.B > kernels.MatvecMaxRows {
		dc.proj = one("decode_proj", B*C)
	}
	lm.decScratch = p.Buffer("decode_partials", -1, program.F32,
		int64(kernels.DecodeAttentionScratchSize(d.B, d.NH, d.HeadSize(), d.KVLen(), m.SMs)), program.Scratch).All()
}

// llamaBlockForward appends block l's forward over the N = B·T rows of x
// to r, leaving the block's output in out (which may be x in generate
// mode: the residual stream in place). caches are the layer's KV cache
// (null views outside generate mode).
func (m *Step) llamaBlockForward(r *program.Range, l int, x, out program.View, kc, vc program.View) {
	d, a, lm := m.Dims, &m.acts, m.lm
	B, T, C, NH, N, H, QKV := d.B, d.T, d.C, d.NH, d.Rows(), lm.H, lm.QKV
	p := m.Param
	attn := func(name string, ops ...program.Op) { m.part(r, "layer", l, "attention", name, ops...) }
	mlp := func(name string, ops ...program.Op) { m.part(r, "layer", l, "mlp", name, ops...) }
	null := program.View{}
	cacheLen := T
	if !kc.IsNull() {
		cacheLen = d.KVLen()
	}
	// x + wo·GQA(RoPE(wqkv·RMSNorm(x)))
	attn("attn norm", kernels.RMSNormForward(a.ln1[l], a.ln1Rstd[l], x, p(ref.IdxLlamaAttnNorm, l), N, C, lm.eps))
	attn("qkv", m.linearForward(a.qkv[l], a.ln1[l], p(ref.IdxLlamaWqkv, l), null, N, C, QKV, QKV))
	attn("rope", kernels.RoPEForward(a.qkv[l], kc, vc, B, T, 0, NH, lm.NKV, d.HeadSize(), cacheLen, lm.theta))
	attn("attention", m.attentionForward(a.atty[l], a.attLSE[l], a.qkv[l], B, T, C, NH, lm.NKV))
	attn("wo", m.linearForward(a.proj, a.atty[l], p(ref.IdxLlamaWo, l), null, N, C, C, C))
	attn("residual1", m.residualForward(a.residual2[l], x, a.proj, N*C))
	// x + w2·(silu(w1·RMSNorm(x)) ∘ w3·RMSNorm(x))
	mlp("mlp norm", kernels.RMSNormForward(a.ln2[l], a.ln2Rstd[l], a.residual2[l], p(ref.IdxLlamaMlpNorm, l), N, C, lm.eps))
	mlp("w13", m.linearForward(a.fch[l], a.ln2[l], p(ref.IdxLlamaW13, l), null, N, C, 2*H, 2*H))
	mlp("swiglu", kernels.SwiGLUForward(a.fchGelu[l], a.fch[l], N, H))
	mlp("w2", m.linearForward(a.proj, a.fchGelu[l], p(ref.IdxLlamaW2, l), null, N, H, C, C))
	mlp("residual2", m.residualForward(out, a.residual2[l], a.proj, N*C))
	if rb := m.readback(l); len(rb) > 0 {
		mlp("readback", rb...)
	}
}

// buildLlamaForward appends the train and infer forward pass: embedding, L
// blocks, final RMSNorm, head, loss.
func (m *Step) buildLlamaForward(r *program.Range) {
	d, a, lm := m.Dims, &m.acts, m.lm
	N, C, V := d.Rows(), d.C, d.V
	p, null := m.Param, program.View{}
	if alloc := m.allocActivations(); len(alloc) > 0 {
		m.part(r, "activations", -1, "", "alloc", alloc...)
	}
	m.part(r, "embedding", -1, "", "embedding", kernels.EmbeddingForward(a.encoded, m.Tokens.All(), p(ref.IdxLlamaEmbed, 0), N, C))
	for l := 0; l < d.L; l++ {
		m.llamaBlockForward(r, l, m.blockInput(l), a.residual3[l], null, null)
	}
	head := func(name string, ops ...program.Op) { m.part(r, "head", -1, "", name, ops...) }
	head("final norm", kernels.RMSNormForward(a.lnf, a.lnfRstd, m.blockInput(d.L), p(ref.IdxLlamaNorm, 0), N, C, lm.eps))
	head("lm head", m.linearForward(m.Logits.All(), a.lnf, p(ref.IdxLlamaHead, 0), null, N, C, V, m.Vp))
	head("loss", kernels.CrossEntropyForward(a.losses, a.lse, m.Logits.All(), m.Targets.All(), N, V, m.Vp),
		kernels.LossReduce(m.Loss.All(), a.losses, N))
}

// buildLlamaBackward appends the backward pass of buildLlamaForward,
// overwriting every parameter gradient (ref.LlamaModel.Backward).
func (m *Step) buildLlamaBackward(r *program.Range) {
	d, a, sc, lm := m.Dims, &m.acts, &m.scratch, m.lm
	B, T, C, NH, N, V, H, QKV := d.B, d.T, d.C, d.NH, d.Rows(), d.V, lm.H, lm.QKV
	p, g, null := m.Param, m.Grad, program.View{}
	head := func(name string, ops ...program.Op) { m.part(r, "head", -1, "", name, ops...) }
	// The residual stream's gradient is accumulated by every RMSNorm
	// backward, so it starts at zero.
	head("zero dresidual", kernels.Memset(sc.dresidual))
	dlogits := m.Logits.All()
	head("loss", kernels.CrossEntropyBackward(dlogits, dlogits, a.lse, m.Targets.All(), N, V, m.Vp, 1/float32(N)))
	head("lm head", m.linearBackward(sc.dC, g(ref.IdxLlamaHead, 0), null, dlogits, a.lnf, p(ref.IdxLlamaHead, 0), N, C, V, m.Vp)...)
	head("final norm", kernels.RMSNormBackward(sc.dresidual, g(ref.IdxLlamaNorm, 0), sc.lnPartial, sc.dC,
		m.blockInput(d.L), p(ref.IdxLlamaNorm, 0), a.lnfRstd, N, C)...)
	dh13, dqkv := sc.d4C.Buf.Slice("dh13", 0, int64(N*2*H)), sc.d4C.Buf.Slice("dqkv", 0, int64(N*QKV))
	for l := d.L - 1; l >= 0; l-- {
		attn := func(name string, ops ...program.Op) { m.part(r, "layer", l, "attention", name, ops...) }
		mlp := func(name string, ops ...program.Op) { m.part(r, "layer", l, "mlp", name, ops...) }
		mlp("w2", m.linearBackward(sc.dH, g(ref.IdxLlamaW2, l), null, sc.dresidual, a.fchGelu[l], p(ref.IdxLlamaW2, l), N, H, C, C)...)
		mlp("swiglu", kernels.SwiGLUBackward(dh13, sc.dH, a.fch[l], N, H))
		mlp("w13", m.linearBackward(sc.dC, g(ref.IdxLlamaW13, l), null, dh13, a.ln2[l], p(ref.IdxLlamaW13, l), N, C, 2*H, 2*H)...)
		mlp("mlp norm", kernels.RMSNormBackward(sc.dresidual, g(ref.IdxLlamaMlpNorm, l), sc.lnPartial, sc.dC,
			a.residual2[l], p(ref.IdxLlamaMlpNorm, l), a.ln2Rstd[l], N, C)...)
		attn("wo", m.linearBackward(sc.dC, g(ref.IdxLlamaWo, l), null, sc.dresidual, a.atty[l], p(ref.IdxLlamaWo, l), N, C, C, C)...)
		attn("attention", m.attentionBackward(dqkv, sc.attD, sc.dC, a.qkv[l], a.atty[l], a.attLSE[l], B, T, C, NH, lm.NKV)...)
		attn("rope", kernels.RoPEBackward(dqkv, B, T, 0, NH, lm.NKV, d.HeadSize(), lm.theta))
		attn("qkv", m.linearBackward(sc.dC, g(ref.IdxLlamaWqkv, l), null, dqkv, a.ln1[l], p(ref.IdxLlamaWqkv, l), N, C, QKV, QKV)...)
		attn("attn norm", kernels.RMSNormBackward(sc.dresidual, g(ref.IdxLlamaAttnNorm, l), sc.lnPartial, sc.dC,
			m.blockInput(l), p(ref.IdxLlamaAttnNorm, l), a.ln1Rstd[l], N, C)...)
		if off := m.offload(l); len(off) > 0 {
			attn("offload grads", off...)
		}
	}
	// The embedding's gradient is the lookups' sum alone (the head is
	// untied), accumulated into zero.
	bk := m.Buckets
	m.part(r, "embedding", -1, "", "embedding", kernels.Memset(g(ref.IdxLlamaEmbed, 0)),
		kernels.EncoderBackwardWTE(g(ref.IdxLlamaEmbed, 0), sc.dresidual, bk[0].All(), bk[1].All(), bk[2].All(), m.NumBuckets, N, C))
	if join := m.joinCopies(); len(join) > 0 {
		m.part(r, "embedding", -1, "", "join copies", join...)
	}
}

// buildPrefill appends generate mode's prefill: the B prompts through
// every block (each writing its layer's KV cache), then the head on each
// prompt's last row and the first greedy token.
func (m *Step) buildPrefill(r *program.Range) {
	d, a, lm := m.Dims, &m.acts, m.lm
	B, T, N, C, V := d.B, d.T, d.Rows(), d.C, d.V
	p := m.Param
	x := a.residual2[0]
	m.part(r, "embedding", -1, "", "embedding", kernels.EmbeddingForward(x, m.Tokens.All(), p(ref.IdxLlamaEmbed, 0), N, C))
	for l := 0; l < d.L; l++ {
		m.llamaBlockForward(r, l, x, x, lm.kcache[l], lm.vcache[l])
	}
	head := func(name string, ops ...program.Op) { m.part(r, "head", -1, "", name, ops...) }
	head("last rows", kernels.GatherRows(a.lnf, x, B, T, C, T-1))
	head("final norm", kernels.RMSNormForward(lm.dec.xn, program.View{}, a.lnf, p(ref.IdxLlamaNorm, 0), B, C, lm.eps))
	head("lm head", m.rowsLinear(m.Logits.All(), lm.dec.xn, p(ref.IdxLlamaHead, 0), program.View{}, program.View{}, B, C, V, m.Vp)...)
	head("argmax", kernels.Argmax(lm.next, m.Generated.All(), m.Logits.All(), B, V, m.Vp, 0, d.New))
}

// buildDecode appends decode step j's range r: the B tokens of lm.next at
// position pos through every block (appending to the KV cache), the head,
// and the argmax that makes token col of each sequence and the next
// step's input.
func (m *Step) buildDecode(r *program.Range, pos, col int) {
	d, lm, dc := m.Dims, m.lm, &m.lm.dec
	B, C, NH, V, H, QKV, hs := d.B, d.C, d.NH, d.V, lm.H, lm.QKV, d.HeadSize()
	p, null := m.Param, program.View{}
	m.part(r, "embedding", -1, "", "embedding", kernels.EmbeddingForward(dc.x, lm.next, p(ref.IdxLlamaEmbed, 0), B, C))
	for l := 0; l < d.L; l++ {
		attn := func(name string, ops ...program.Op) { m.part(r, "layer", l, "attention", name, ops...) }
		mlp := func(name string, ops ...program.Op) { m.part(r, "layer", l, "mlp", name, ops...) }
		attn("attn norm", kernels.RMSNormForward(dc.xn, null, dc.x, p(ref.IdxLlamaAttnNorm, l), B, C, lm.eps))
		attn("qkv", m.rowsLinear(dc.qkv, dc.xn, p(ref.IdxLlamaWqkv, l), null, null, B, C, QKV, QKV)...)
		attn("rope", kernels.RoPEForward(dc.qkv, lm.kcache[l], lm.vcache[l], B, 1, pos, NH, lm.NKV, hs, d.KVLen(), lm.theta))
		attn("attention", kernels.DecodeAttention(dc.atty, dc.qkv, lm.kcache[l], lm.vcache[l], lm.decScratch, B, pos, NH, lm.NKV, hs, d.KVLen(), m.SMs)...)
		attn("wo", m.rowsLinear(dc.x, dc.atty, p(ref.IdxLlamaWo, l), dc.x, dc.proj, B, C, C, C)...)
		mlp("mlp norm", kernels.RMSNormForward(dc.xn, null, dc.x, p(ref.IdxLlamaMlpNorm, l), B, C, lm.eps))
		mlp("w13", m.rowsLinear(dc.h13, dc.xn, p(ref.IdxLlamaW13, l), null, null, B, C, 2*H, 2*H)...)
		mlp("swiglu", kernels.SwiGLUForward(dc.gate, dc.h13, B, H))
		mlp("w2", m.rowsLinear(dc.x, dc.gate, p(ref.IdxLlamaW2, l), dc.x, dc.proj, B, H, C, C)...)
	}
	head := func(name string, ops ...program.Op) { m.part(r, "head", -1, "", name, ops...) }
	head("final norm", kernels.RMSNormForward(dc.xn, null, dc.x, p(ref.IdxLlamaNorm, 0), B, C, lm.eps))
	head("lm head", m.rowsLinear(m.Logits.All(), dc.xn, p(ref.IdxLlamaHead, 0), null, null, B, C, V, m.Vp)...)
	head("argmax", kernels.Argmax(lm.next, m.Generated.All(), m.Logits.All(), B, V, m.Vp, col, d.New))
}

// rowsLinear is out(M,oc) = inp(M,c)·w(oc,c)ᵀ (+ residual) for the few
// rows of a decode step or of the prefill's head: a weight-streaming
// matvec that reads each weight once when M ≤ kernels.MatvecMaxRows, else
// the GEMM, into proj before the residual add when there is one. residual
// may be out (the residual stream updated in place).
func (m *Step) rowsLinear(out, inp, w, residual, proj program.View, M, c, oc, ld int) []program.Op {
	if M <= kernels.MatvecMaxRows {
		return []program.Op{kernels.MatvecForward(out, inp, w, residual, M, c, oc, ld, m.SMs)}
	}
	if residual.IsNull() {
		return []program.Op{m.linearForward(out, inp, w, program.View{}, M, c, oc, ld)}
	}
	return []program.Op{m.linearForward(proj, inp, w, program.View{}, M, c, oc, oc),
		m.residualForward(out, residual, proj, M*oc)}
}
