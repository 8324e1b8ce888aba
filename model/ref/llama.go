package ref

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

// The float64 reference LLaMA: a token embedding with no position table,
// then L pre-norm blocks
//
//	x += wo · GQA(RoPE(wqkv · RMSNorm(x)))
//	x += w2 · (silu(w1 · RMSNorm(x)) ∘ w3 · RMSNorm(x))
//
// then a final RMSNorm and an untied output head. There are no biases.

// LlamaDims are the model and batch dimensions of a LLaMA model: vocabulary
// V, context MaxT, sequence T, L blocks, NH query heads and NKV key/value
// heads, width C (head size C/NH), MLP width Hidden, batch B, the RMSNorm
// epsilon and the RoPE base theta.
type LlamaDims struct {
	V, MaxT, T, L, NH, NKV, C, Hidden, B int
	Eps, Theta                           float64
}

// HeadSize is C/NH.
func (d LlamaDims) HeadSize() int { return d.C / d.NH }

// QKVWidth is the width (NH+2*NKV)*HeadSize of a packed qkv row.
func (d LlamaDims) QKVWidth() int { return (d.NH + 2*d.NKV) * d.HeadSize() }

// Validate reports whether d describes a model the reference can run (L may
// be 0).
func (d LlamaDims) Validate() error {
	switch {
	case d.V <= 0, d.MaxT <= 0, d.T <= 0, d.L < 0, d.NH <= 0, d.NKV <= 0, d.C <= 0, d.Hidden <= 0, d.B <= 0:
		return fmt.Errorf("ref: invalid llama dims %+v: V, MaxT, T, NH, NKV, C, Hidden, B must be > 0 and L >= 0", d)
	case d.T > d.MaxT:
		return fmt.Errorf("ref: invalid llama dims %+v: T > MaxT", d)
	case d.C%d.NH != 0:
		return fmt.Errorf("ref: invalid llama dims %+v: C %% NH != 0", d)
	case d.HeadSize()%2 != 0:
		return fmt.Errorf("ref: invalid llama dims %+v: head size C/NH must be even for RoPE", d)
	case d.NH%d.NKV != 0:
		return fmt.Errorf("ref: invalid llama dims %+v: NH %% NKV != 0", d)
	case !(d.Eps > 0), !(d.Theta > 0):
		return fmt.Errorf("ref: invalid llama dims %+v: Eps and Theta must be > 0", d)
	}
	return nil
}

// LLaMA parameter tensor names, in LlamaLayout order.
const (
	NameLlamaEmbed    = "embed"
	NameLlamaAttnNorm = "attn_norm"
	NameLlamaWqkv     = "wqkv"
	NameLlamaWo       = "wo"
	NameLlamaMlpNorm  = "mlp_norm"
	NameLlamaW13      = "w13"
	NameLlamaW2       = "w2"
	NameLlamaNorm     = "norm"
	NameLlamaHead     = "head"
)

// Index of each tensor in LlamaLayout's result.
const (
	IdxLlamaEmbed = iota
	IdxLlamaAttnNorm
	IdxLlamaWqkv
	IdxLlamaWo
	IdxLlamaMlpNorm
	IdxLlamaW13
	IdxLlamaW2
	IdxLlamaNorm
	IdxLlamaHead
	NumLlamaTensors
)

// LlamaLayout returns the 9 parameter tensors, contiguous in one flat array,
// the per-layer ones stacked along a leading L, with QKV = (NH+2*NKV)*C/NH:
//
//	embed (V,C), attn_norm (L,C), wqkv (L,QKV,C), wo (L,C,C), mlp_norm (L,C),
//	w13 (L,2*Hidden,C), w2 (L,C,Hidden), norm (C), head (V,C).
//
// Matrices are stored (out, in) as nn.Linear does. Each layer's w13 is the
// gate projection w1 (Hidden rows) then the up projection w3 (Hidden rows),
// packed so that one product computes both (vLLM's gate_up_proj). The rows of wqkv are
// [wq (NH*hs) | wk (NKV*hs) | wv (NKV*hs)], each head's rows in RopeRotate's
// interleaved-pair order.
func LlamaLayout(d LlamaDims) []Tensor {
	V, L, C, H, QKV := d.V, d.L, d.C, d.Hidden, d.QKVWidth()
	return layoutOf([]tensorSpec{
		{NameLlamaEmbed, []int{V, C}},
		{NameLlamaAttnNorm, []int{L, C}},
		{NameLlamaWqkv, []int{L, QKV, C}},
		{NameLlamaWo, []int{L, C, C}},
		{NameLlamaMlpNorm, []int{L, C}},
		{NameLlamaW13, []int{L, 2 * H, C}},
		{NameLlamaW2, []int{L, C, H}},
		{NameLlamaNorm, []int{C}},
		{NameLlamaHead, []int{V, C}},
	})
}

// LlamaNumParams is the total number of parameters of LlamaLayout(d).
func LlamaNumParams(d LlamaDims) int { return flatSize(LlamaLayout(d)) }

// LlamaViews splits a flat parameter (or gradient) array into its
// LlamaLayout tensors without copying.
func LlamaViews[E any](d LlamaDims, flat []E) [][]E {
	if len(flat) != LlamaNumParams(d) {
		panic(fmt.Sprintf("ref: flat array has %d elements, want %d", len(flat), LlamaNumParams(d)))
	}
	ts := LlamaLayout(d)
	out := make([][]E, len(ts))
	for i, t := range ts {
		out[i] = flat[t.Offset : t.Offset+t.Size : t.Offset+t.Size]
	}
	return out
}

// LlamaInitParams returns initialized parameters in LlamaLayout order:
// embed, wqkv, w13 and head take NormFloat64()*0.02, wo and w2
// NormFloat64()*0.02/sqrt(2L) (the GPT-2 scheme for the projections into
// the residual stream); the norm weights are 1. Each tensor is drawn in
// chunks of initChunk elements, row-major, chunk c of tensor i from its own
// stream rand.NewPCG(seed, paramStream^(i<<32|c)), so that the 6.7 billion
// parameters of llama2-7b are drawn on every core at once and the values
// still depend on the seed alone. The result is float32 so that a GPU
// model starts from bit-identical values.
func LlamaInitParams(d LlamaDims, seed uint64) []float32 {
	if err := d.Validate(); err != nil {
		panic(err)
	}
	p := make([]float32, LlamaNumParams(d))
	projStd := InitStd
	if d.L > 0 {
		projStd = InitStd / math.Sqrt(2*float64(d.L))
	}
	type chunk struct {
		dst    []float32
		stream uint64
		std    float64
	}
	var chunks []chunk
	for i, t := range LlamaLayout(d) {
		dst := p[t.Offset : t.Offset+t.Size]
		std := InitStd
		switch t.Name {
		case NameLlamaWo, NameLlamaW2:
			std = projStd
		case NameLlamaAttnNorm, NameLlamaMlpNorm, NameLlamaNorm:
			for i := range dst {
				dst[i] = 1
			}
			continue
		}
		for c := 0; c*initChunk < len(dst); c++ {
			chunks = append(chunks, chunk{dst[c*initChunk : min((c+1)*initChunk, len(dst))], paramStream ^ (uint64(i)<<32 | uint64(c)), std})
		}
	}
	work := make(chan chunk)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ch := range work {
				rng := rand.New(rand.NewPCG(seed, ch.stream))
				for i := range ch.dst {
					ch.dst[i] = float32(rng.NormFloat64() * ch.std)
				}
			}
		}()
	}
	for _, ch := range chunks {
		work <- ch
	}
	close(work)
	wg.Wait()
	return p
}

// initChunk is the elements of one of LlamaInitParams's streams.
const initChunk = 1 << 22

// LlamaInputs returns B*T tokens and B*T targets exactly as Inputs does for
// the same V, B and T.
func LlamaInputs(d LlamaDims, seed uint64) (tokens, targets []int32) {
	if err := d.Validate(); err != nil {
		panic(err)
	}
	return Inputs(Dims{V: d.V, MaxT: d.MaxT, T: d.T, L: d.L, NH: 1, C: 1, B: d.B}, seed)
}

// LlamaLayerActs are the activations one block saves for the backward pass.
// Shapes use N = B*T and QKV = (NH+2*NKV)*C/NH.
type LlamaLayerActs struct {
	AttnNorm  []float64 // (N,C)  RMSNorm(residual)
	AttnRstd  []float64 // (N)
	Qkv       []float64 // (N,QKV) before RoPE
	QkvRope   []float64 // (N,QKV) q and k rotated
	Atty      []float64 // (N,C)  attention output, heads concatenated
	AttLse    []float64 // (B,NH,T)
	Attproj   []float64 // (N,C)  wo · Atty
	Residual2 []float64 // (N,C)  residual + Attproj
	MlpNorm   []float64 // (N,C)
	MlpRstd   []float64 // (N)
	H13       []float64 // (N,2*Hidden) w13 · MlpNorm: each row [w1 · x | w3 · x]
	Gate      []float64 // (N,Hidden) silu(w1 · x) ∘ (w3 · x)
	Mlp       []float64 // (N,C)  w2 · Gate
	Residual3 []float64 // (N,C)  block output: Residual2 + Mlp
}

// LlamaActs are the activations of one forward pass.
type LlamaActs struct {
	Embedded []float64 // (N,C)
	Layers   []LlamaLayerActs
	Norm     []float64 // (N,C)
	NormRstd []float64 // (N)
	Logits   []float64 // (N,V)
	Losses   []float64 // (N)
}

// LlamaModel is the float64 reference LLaMA. It owns float64 copies of the
// parameters and gradients (flat, LlamaLayout order) and a KV cache of
// (L,B,MaxT,NKV*hs) rotated keys and values for DecodeStep.
type LlamaModel struct {
	d      LlamaDims
	params []float64
	grads  []float64
	p, g   [][]float64

	acts    LlamaActs
	tokens  []int32
	targets []int32
	loss    float64
	haveFwd bool

	kc, vc []float64 // (L,B,MaxT,NKV*hs)
}

// NewLlamaModel builds a model with float64 copies of params (length
// LlamaNumParams(d)). It panics if d is invalid or params has the wrong
// length.
func NewLlamaModel(d LlamaDims, params []float32) *LlamaModel {
	if err := d.Validate(); err != nil {
		panic(err)
	}
	if len(params) != LlamaNumParams(d) {
		panic(fmt.Sprintf("ref: NewLlamaModel: %d params, want %d", len(params), LlamaNumParams(d)))
	}
	m := &LlamaModel{d: d}
	m.params = make([]float64, len(params))
	for i, v := range params {
		m.params[i] = float64(v)
	}
	m.grads = make([]float64, len(params))
	m.p = LlamaViews(d, m.params)
	m.g = LlamaViews(d, m.grads)

	N, C, V, H, QKV := d.B*d.T, d.C, d.V, d.Hidden, d.QKVWidth()
	f := func(n int) []float64 { return make([]float64, n) }
	a := &m.acts
	a.Embedded = f(N * C)
	a.Layers = make([]LlamaLayerActs, d.L)
	for l := range a.Layers {
		a.Layers[l] = LlamaLayerActs{
			AttnNorm: f(N * C), AttnRstd: f(N), Qkv: f(N * QKV), QkvRope: f(N * QKV),
			Atty: f(N * C), AttLse: f(d.B * d.NH * d.T), Attproj: f(N * C), Residual2: f(N * C),
			MlpNorm: f(N * C), MlpRstd: f(N), H13: f(N * 2 * H), Gate: f(N * H),
			Mlp: f(N * C), Residual3: f(N * C),
		}
	}
	a.Norm, a.NormRstd = f(N*C), f(N)
	a.Logits, a.Losses = f(N*V), f(N)
	kv := d.L * d.B * d.MaxT * d.NKV * d.HeadSize()
	m.kc, m.vc = f(kv), f(kv)
	return m
}

// Dims returns the model's dimensions.
func (m *LlamaModel) Dims() LlamaDims { return m.d }

// Params returns the flat float64 parameters (LlamaLayout order), the
// model's own slice: changes take effect at the next Forward or DecodeStep.
func (m *LlamaModel) Params() []float64 { return m.params }

// Grads returns the flat gradient of the last Backward.
func (m *LlamaModel) Grads() []float64 { return m.grads }

// Param returns the view of tensor i (IdxLlamaEmbed ...) of the parameters.
func (m *LlamaModel) Param(i int) []float64 { return m.p[i] }

// Grad returns the view of tensor i of the gradient.
func (m *LlamaModel) Grad(i int) []float64 { return m.g[i] }

// Logits returns the (B,T,V) logits of the last Forward.
func (m *LlamaModel) Logits() []float64 { return m.acts.Logits }

// Losses returns the (B,T) per-position losses of the last Forward.
func (m *LlamaModel) Losses() []float64 { return m.acts.Losses }

// Loss returns the mean loss of the last Forward (NaN without targets).
func (m *LlamaModel) Loss() float64 { return m.loss }

// Acts returns the activations of the last Forward (the model's own
// buffers).
func (m *LlamaModel) Acts() *LlamaActs { return &m.acts }

// KVCache returns the (L,B,MaxT,NKV*hs) rotated keys and values, the model's
// own buffers. Positions not yet written hold stale values.
func (m *LlamaModel) KVCache() (k, v []float64) { return m.kc, m.vc }

func (m *LlamaModel) checkTokens(what string, toks []int32) {
	for _, tok := range toks {
		if tok < 0 || int(tok) >= m.d.V {
			panic(fmt.Sprintf("ref: %s: token %d out of [0,%d)", what, tok, m.d.V))
		}
	}
}

// Forward runs the model on tokens (B*T, row b*T+t), the prefill: it also
// writes the rotated keys and the values of positions 0..T-1 into the KV
// cache, so that DecodeStep can continue at pos T. With targets it returns
// the mean cross-entropy loss; without (nil) it returns NaN and computes
// the logits only. Activations are kept for Backward.
func (m *LlamaModel) Forward(tokens, targets []int32) float64 {
	d := m.d
	B, T, C, V, H := d.B, d.T, d.C, d.V, d.Hidden
	N, hs, QKV, KV := B*T, d.HeadSize(), d.QKVWidth(), d.NKV*d.HeadSize()
	if len(tokens) != N || (targets != nil && len(targets) != N) {
		panic(fmt.Sprintf("ref: Forward: want %d tokens and targets, got %d and %d", N, len(tokens), len(targets)))
	}
	m.checkTokens("Forward", tokens)
	m.checkTokens("Forward", targets)
	m.tokens = append(m.tokens[:0], tokens...)
	m.targets = nil
	if targets != nil {
		m.targets = append([]int32(nil), targets...)
	}

	p, a := m.p, &m.acts
	EmbeddingForward(a.Embedded, tokens, p[IdxLlamaEmbed], N, C)
	residual := a.Embedded
	for l := 0; l < d.L; l++ {
		la := &a.Layers[l]
		RMSNormForward(la.AttnNorm, la.AttnRstd, residual, row(p[IdxLlamaAttnNorm], l, C), N, C, d.Eps)
		MatmulForward(la.Qkv, la.AttnNorm, row(p[IdxLlamaWqkv], l, QKV*C), nil, N, C, QKV)
		RopeForward(la.QkvRope, la.Qkv, B, T, d.NH, d.NKV, hs, 0, d.Theta)
		for b := 0; b < B; b++ {
			for t := 0; t < T; t++ {
				src := la.QkvRope[(b*T+t)*QKV+d.NH*hs:]
				dst := ((l*B+b)*d.MaxT + t) * KV
				copy(m.kc[dst:dst+KV], src[:KV])
				copy(m.vc[dst:dst+KV], src[KV:2*KV])
			}
		}
		GQAttentionForward(la.Atty, la.AttLse, la.QkvRope, B, T, d.NH, d.NKV, hs)
		MatmulForward(la.Attproj, la.Atty, row(p[IdxLlamaWo], l, C*C), nil, N, C, C)
		ResidualForward(la.Residual2, residual, la.Attproj, N*C)
		RMSNormForward(la.MlpNorm, la.MlpRstd, la.Residual2, row(p[IdxLlamaMlpNorm], l, C), N, C, d.Eps)
		MatmulForward(la.H13, la.MlpNorm, row(p[IdxLlamaW13], l, 2*H*C), nil, N, C, 2*H)
		SwiGLURowsForward(la.Gate, la.H13, N, H)
		MatmulForward(la.Mlp, la.Gate, row(p[IdxLlamaW2], l, C*H), nil, N, H, C)
		ResidualForward(la.Residual3, la.Residual2, la.Mlp, N*C)
		residual = la.Residual3
	}
	RMSNormForward(a.Norm, a.NormRstd, residual, p[IdxLlamaNorm], N, C, d.Eps)
	MatmulForward(a.Logits, a.Norm, p[IdxLlamaHead], nil, N, C, V)

	m.haveFwd = true
	if targets == nil {
		m.loss = math.NaN()
		return m.loss
	}
	CrossEntropyForward(a.Losses, a.Logits, targets, N, V)
	sum := 0.0
	for _, v := range a.Losses {
		sum += v
	}
	m.loss = sum / float64(N)
	return m.loss
}

// Backward computes the gradient of the mean loss of the last Forward (which
// must have had targets) with respect to every parameter, bottom of the
// model to top, and returns it flat in LlamaLayout order (the model's own
// slice). Every gradient is overwritten.
func (m *LlamaModel) Backward() []float64 {
	if !m.haveFwd || m.targets == nil {
		panic("ref: Backward needs a Forward with targets")
	}
	d := m.d
	B, T, C, V, H := d.B, d.T, d.C, d.V, d.Hidden
	N, hs, QKV := B*T, d.HeadSize(), d.QKVWidth()
	p, g, a := m.p, m.g, &m.acts
	f := func(n int) []float64 { return make([]float64, n) }

	dlogits := f(N * V)
	CrossEntropyBackward(dlogits, a.Logits, m.targets, N, V, 1/float64(N))
	dnorm := f(N * C)
	MatmulBackward(dnorm, g[IdxLlamaHead], nil, dlogits, a.Norm, p[IdxLlamaHead], N, C, V)
	dresidual := f(N * C) // zeroed; RMSNorm backward adds into it
	residual := a.Embedded
	if d.L > 0 {
		residual = a.Layers[d.L-1].Residual3
	}
	RMSNormBackward(dresidual, g[IdxLlamaNorm], dnorm, residual, p[IdxLlamaNorm], a.NormRstd, N, C)

	dgate, dh13 := f(N*H), f(N*2*H)
	dmlpnorm, datty, dqkv, dattnnorm := f(N*C), f(N*C), f(N*QKV), f(N*C)
	for l := d.L - 1; l >= 0; l-- {
		la := &a.Layers[l]
		residual := a.Embedded
		if l > 0 {
			residual = a.Layers[l-1].Residual3
		}
		// MLP: dresidual is the gradient of Residual3 and flows unchanged to
		// Residual2. MlpNorm feeds both w1 and w3, so its gradient is a sum.
		MatmulBackward(dgate, row(g[IdxLlamaW2], l, C*H), nil, dresidual, la.Gate, row(p[IdxLlamaW2], l, C*H), N, H, C)
		SwiGLURowsBackward(dh13, dgate, la.H13, N, H)
		MatmulBackward(dmlpnorm, row(g[IdxLlamaW13], l, 2*H*C), nil, dh13, la.MlpNorm, row(p[IdxLlamaW13], l, 2*H*C), N, C, 2*H)
		RMSNormBackward(dresidual, row(g[IdxLlamaMlpNorm], l, C), dmlpnorm, la.Residual2, row(p[IdxLlamaMlpNorm], l, C), la.MlpRstd, N, C)
		// Attention: dresidual is now the gradient of Residual2.
		MatmulBackward(datty, row(g[IdxLlamaWo], l, C*C), nil, dresidual, la.Atty, row(p[IdxLlamaWo], l, C*C), N, C, C)
		GQAttentionBackward(dqkv, datty, la.QkvRope, B, T, d.NH, d.NKV, hs)
		RopeBackward(dqkv, dqkv, B, T, d.NH, d.NKV, hs, 0, d.Theta)
		MatmulBackward(dattnnorm, row(g[IdxLlamaWqkv], l, QKV*C), nil, dqkv, la.AttnNorm, row(p[IdxLlamaWqkv], l, QKV*C), N, C, QKV)
		RMSNormBackward(dresidual, row(g[IdxLlamaAttnNorm], l, C), dattnnorm, residual, row(p[IdxLlamaAttnNorm], l, C), la.AttnRstd, N, C)
	}
	clear(g[IdxLlamaEmbed])
	EmbeddingBackward(g[IdxLlamaEmbed], dresidual, m.tokens, N, C)
	return m.grads
}

// DecodeStep runs one token per sequence, tokens[b] at position pos of
// sequence b (len(tokens) = B, 0 <= pos < MaxT): it writes that position's
// rotated keys and values into the KV cache, attends to cache positions
// 0..pos, and returns the (B,V) logits of position pos (a new slice). The
// cache must hold positions 0..pos-1, from a Forward of T >= pos tokens or
// from earlier steps. It touches no Forward activations.
func (m *LlamaModel) DecodeStep(tokens []int32, pos int) []float64 {
	d := m.d
	B, C, V, H := d.B, d.C, d.V, d.Hidden
	hs, QKV, KV := d.HeadSize(), d.QKVWidth(), d.NKV*d.HeadSize()
	if len(tokens) != B {
		panic(fmt.Sprintf("ref: DecodeStep: want %d tokens, got %d", B, len(tokens)))
	}
	if pos < 0 || pos >= d.MaxT {
		panic(fmt.Sprintf("ref: DecodeStep: pos %d out of [0,%d)", pos, d.MaxT))
	}
	m.checkTokens("DecodeStep", tokens)
	p := m.p
	f := func(n int) []float64 { return make([]float64, n) }
	x, xn, qkv, q, att, proj := f(B*C), f(B*C), f(B*QKV), f(B*C), f(B*C), f(B*C)
	h13, gate := f(B*2*H), f(B*H)
	EmbeddingForward(x, tokens, p[IdxLlamaEmbed], B, C)
	for l := 0; l < d.L; l++ {
		RMSNormForward(xn, nil, x, row(p[IdxLlamaAttnNorm], l, C), B, C, d.Eps)
		MatmulForward(qkv, xn, row(p[IdxLlamaWqkv], l, QKV*C), nil, B, C, QKV)
		RopeForward(qkv, qkv, B, 1, d.NH, d.NKV, hs, pos, d.Theta)
		kc := row(m.kc, l, B*d.MaxT*KV)
		vc := row(m.vc, l, B*d.MaxT*KV)
		for b := 0; b < B; b++ {
			r := qkv[b*QKV : (b+1)*QKV]
			copy(q[b*C:(b+1)*C], r[:C])
			dst := (b*d.MaxT + pos) * KV
			copy(kc[dst:dst+KV], r[C:C+KV])
			copy(vc[dst:dst+KV], r[C+KV:])
		}
		DecodeAttentionForward(att, q, kc, vc, B, d.MaxT, pos, d.NH, d.NKV, hs)
		MatmulForward(proj, att, row(p[IdxLlamaWo], l, C*C), nil, B, C, C)
		ResidualForward(x, x, proj, B*C)
		RMSNormForward(xn, nil, x, row(p[IdxLlamaMlpNorm], l, C), B, C, d.Eps)
		MatmulForward(h13, xn, row(p[IdxLlamaW13], l, 2*H*C), nil, B, C, 2*H)
		SwiGLURowsForward(gate, h13, B, H)
		MatmulForward(proj, gate, row(p[IdxLlamaW2], l, C*H), nil, B, H, C)
		ResidualForward(x, x, proj, B*C)
	}
	RMSNormForward(xn, nil, x, p[IdxLlamaNorm], B, C, d.Eps)
	logits := f(B * V)
	MatmulForward(logits, xn, p[IdxLlamaHead], nil, B, C, V)
	return logits
}

// Generate is greedy generation: a prefill Forward of prompt (B*T tokens,
// row b*T+t), then n-1 DecodeSteps, each fed the previous argmax. It returns
// the B*n new tokens, row b*n+j; argmax ties go to the lowest id. T+n-1 must
// not exceed MaxT.
func (m *LlamaModel) Generate(prompt []int32, n int) []int32 {
	d := m.d
	if n < 0 || d.T+n-1 > d.MaxT {
		panic(fmt.Sprintf("ref: Generate: %d new tokens after %d do not fit MaxT %d", n, d.T, d.MaxT))
	}
	out := make([]int32, d.B*n)
	if n == 0 {
		return out
	}
	m.Forward(prompt, nil)
	next := make([]int32, d.B)
	for b := range next {
		next[b] = argmax(m.acts.Logits[(b*d.T+d.T-1)*d.V:][:d.V])
		out[b*n] = next[b]
	}
	for j := 1; j < n; j++ {
		logits := m.DecodeStep(next, d.T+j-1)
		for b := range next {
			next[b] = argmax(logits[b*d.V : (b+1)*d.V])
			out[b*n+j] = next[b]
		}
	}
	return out
}

// argmax is the index of the largest element, the lowest on ties.
func argmax(x []float64) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}
