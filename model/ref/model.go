package ref

import (
	"fmt"
	"math"
)

// LayerActs are the activations that one transformer block saves for the
// backward pass. Shapes use N = B*T.
type LayerActs struct {
	Ln1       []float64 // (N,C)  LN1(residual)
	Ln1Mean   []float64 // (N)
	Ln1Rstd   []float64 // (N)
	Qkv       []float64 // (N,3C)
	Atty      []float64 // (N,C)  attention output, heads concatenated
	AttLse    []float64 // (B,NH,T) logsumexp of the scaled causal scores
	Attproj   []float64 // (N,C)
	Residual2 []float64 // (N,C)  residual + attproj
	Ln2       []float64 // (N,C)
	Ln2Mean   []float64 // (N)
	Ln2Rstd   []float64 // (N)
	Fch       []float64 // (N,4C) before GELU
	FchGelu   []float64 // (N,4C)
	Fcproj    []float64 // (N,C)
	Residual3 []float64 // (N,C)  block output: Residual2 + Fcproj
}

// Acts are the activations of one forward pass.
type Acts struct {
	Encoded []float64 // (N,C) wte[token] + wpe[t]
	Layers  []LayerActs
	Lnf     []float64 // (N,C)
	LnfMean []float64 // (N)
	LnfRstd []float64 // (N)
	Logits  []float64 // (N,V)
	Losses  []float64 // (N) per-position cross-entropy
}

// Model is the float64 reference GPT-2. It owns float64 copies of the
// parameters and their gradients, both flat in Layout order.
type Model struct {
	d      Dims
	params []float64
	grads  []float64
	p, g   [][]float64 // per-tensor views of params and grads

	acts    Acts
	tokens  []int32
	targets []int32
	loss    float64
	haveFwd bool
}

// NewModel builds a model with float64 copies of params (length NumParams(d)).
// It panics if d is invalid or params has the wrong length.
func NewModel(d Dims, params []float32) *Model {
	if err := validate(d); err != nil {
		panic(err)
	}
	if len(params) != NumParams(d) {
		panic(fmt.Sprintf("ref: NewModel: %d params, want %d", len(params), NumParams(d)))
	}
	m := &Model{d: d}
	m.params = make([]float64, len(params))
	for i, v := range params {
		m.params[i] = float64(v)
	}
	m.grads = make([]float64, len(params))
	m.p = Views(d, m.params)
	m.g = Views(d, m.grads)

	N, C, V := d.B*d.T, d.C, d.V
	f := func(n int) []float64 { return make([]float64, n) }
	a := &m.acts
	a.Encoded = f(N * C)
	a.Layers = make([]LayerActs, d.L)
	for l := range a.Layers {
		a.Layers[l] = LayerActs{
			Ln1: f(N * C), Ln1Mean: f(N), Ln1Rstd: f(N),
			Qkv: f(N * 3 * C), Atty: f(N * C), AttLse: f(d.B * d.NH * d.T),
			Attproj: f(N * C), Residual2: f(N * C),
			Ln2: f(N * C), Ln2Mean: f(N), Ln2Rstd: f(N),
			Fch: f(N * 4 * C), FchGelu: f(N * 4 * C),
			Fcproj: f(N * C), Residual3: f(N * C),
		}
	}
	a.Lnf, a.LnfMean, a.LnfRstd = f(N*C), f(N), f(N)
	a.Logits = f(N * V)
	a.Losses = f(N)
	return m
}

// Dims returns the model's dimensions.
func (m *Model) Dims() Dims { return m.d }

// Params returns the flat float64 parameters (Layout order). The slice is the
// model's own: changes to it take effect at the next Forward.
func (m *Model) Params() []float64 { return m.params }

// Grads returns the flat gradient (Layout order) of the last Backward.
func (m *Model) Grads() []float64 { return m.grads }

// Param returns the view of tensor i (IdxWte ...) of the parameters.
func (m *Model) Param(i int) []float64 { return m.p[i] }

// Grad returns the view of tensor i (IdxWte ...) of the gradient.
func (m *Model) Grad(i int) []float64 { return m.g[i] }

// Logits returns the (B,T,V) logits of the last Forward.
func (m *Model) Logits() []float64 { return m.acts.Logits }

// Losses returns the (B,T) per-position losses of the last Forward.
func (m *Model) Losses() []float64 { return m.acts.Losses }

// Loss returns the mean loss of the last Forward (NaN without targets).
func (m *Model) Loss() float64 { return m.loss }

// Acts returns the activations of the last Forward. They are the model's own
// buffers, overwritten by the next Forward.
func (m *Model) Acts() *Acts { return &m.acts }

// Forward runs the model on tokens (B*T, row b*T+t) and, if targets is not
// nil, computes the per-position losses and returns their mean; without
// targets it returns NaN and computes the logits only. Activations are kept
// for Backward.
func (m *Model) Forward(tokens, targets []int32) float64 {
	d := m.d
	B, T, C, NH, V := d.B, d.T, d.C, d.NH, d.V
	N := B * T
	if len(tokens) != N || (targets != nil && len(targets) != N) {
		panic(fmt.Sprintf("ref: Forward: want %d tokens and targets, got %d and %d", N, len(tokens), len(targets)))
	}
	for _, tok := range tokens {
		if tok < 0 || int(tok) >= V {
			panic(fmt.Sprintf("ref: Forward: token %d out of [0,%d)", tok, V))
		}
	}
	for _, tg := range targets {
		if tg < 0 || int(tg) >= V {
			panic(fmt.Sprintf("ref: Forward: target %d out of [0,%d)", tg, V))
		}
	}
	m.tokens = append(m.tokens[:0], tokens...)
	m.targets = nil
	if targets != nil {
		m.targets = append([]int32(nil), targets...)
	}

	p, a := m.p, &m.acts
	EncoderForward(a.Encoded, tokens, p[IdxWte], p[IdxWpe], B, T, C)
	residual := a.Encoded
	for l := 0; l < d.L; l++ {
		la := &a.Layers[l]
		LayerNormForward(la.Ln1, la.Ln1Mean, la.Ln1Rstd, residual, row(p[IdxLn1w], l, C), row(p[IdxLn1b], l, C), N, C)
		MatmulForward(la.Qkv, la.Ln1, row(p[IdxQkvw], l, 3*C*C), row(p[IdxQkvb], l, 3*C), N, C, 3*C)
		AttentionForward(la.Atty, la.AttLse, la.Qkv, B, T, C, NH)
		MatmulForward(la.Attproj, la.Atty, row(p[IdxAttprojw], l, C*C), row(p[IdxAttprojb], l, C), N, C, C)
		ResidualForward(la.Residual2, residual, la.Attproj, N*C)
		LayerNormForward(la.Ln2, la.Ln2Mean, la.Ln2Rstd, la.Residual2, row(p[IdxLn2w], l, C), row(p[IdxLn2b], l, C), N, C)
		MatmulForward(la.Fch, la.Ln2, row(p[IdxFcw], l, 4*C*C), row(p[IdxFcb], l, 4*C), N, C, 4*C)
		GeluForward(la.FchGelu, la.Fch, N*4*C)
		MatmulForward(la.Fcproj, la.FchGelu, row(p[IdxFcprojw], l, 4*C*C), row(p[IdxFcprojb], l, C), N, 4*C, C)
		ResidualForward(la.Residual3, la.Residual2, la.Fcproj, N*C)
		residual = la.Residual3
	}
	LayerNormForward(a.Lnf, a.LnfMean, a.LnfRstd, residual, p[IdxLnfw], p[IdxLnfb], N, C)
	MatmulForward(a.Logits, a.Lnf, p[IdxWte], nil, N, C, V)

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
// must have had targets) with respect to every parameter, in llm.c's order,
// and returns it flat in Layout order (the model's own slice, see Grads).
func (m *Model) Backward() []float64 {
	if !m.haveFwd || m.targets == nil {
		panic("ref: Backward needs a Forward with targets")
	}
	d := m.d
	B, T, C, NH, V := d.B, d.T, d.C, d.NH, d.V
	N := B * T
	p, g, a := m.p, m.g, &m.acts
	f := func(n int) []float64 { return make([]float64, n) }

	dlogits := f(N * V)
	CrossEntropyBackward(dlogits, a.Logits, m.targets, N, V, 1/float64(N))
	dlnf := f(N * C)
	MatmulBackward(dlnf, g[IdxWte], nil, dlogits, a.Lnf, p[IdxWte], N, C, V) // dwte =
	dresidual := f(N * C)                                                    // zeroed; LN backward adds into it
	residual := a.Encoded
	if d.L > 0 {
		residual = a.Layers[d.L-1].Residual3
	}
	LayerNormBackward(dresidual, g[IdxLnfw], g[IdxLnfb], dlnf, residual, p[IdxLnfw], a.LnfMean, a.LnfRstd, N, C)

	dfchgelu, dfch := f(N*4*C), f(N*4*C)
	dln2, datty, dqkv, dln1 := f(N*C), f(N*C), f(N*3*C), f(N*C)
	for l := d.L - 1; l >= 0; l-- {
		la := &a.Layers[l]
		residual := a.Encoded
		if l > 0 {
			residual = a.Layers[l-1].Residual3
		}
		// MLP: dresidual is the gradient of Residual3, and flows unchanged
		// to Residual2 through the residual connection.
		MatmulBackward(dfchgelu, row(g[IdxFcprojw], l, 4*C*C), row(g[IdxFcprojb], l, C), dresidual, la.FchGelu, row(p[IdxFcprojw], l, 4*C*C), N, 4*C, C)
		GeluBackward(dfch, la.Fch, dfchgelu, N*4*C)
		MatmulBackward(dln2, row(g[IdxFcw], l, 4*C*C), row(g[IdxFcb], l, 4*C), dfch, la.Ln2, row(p[IdxFcw], l, 4*C*C), N, C, 4*C)
		LayerNormBackward(dresidual, row(g[IdxLn2w], l, C), row(g[IdxLn2b], l, C), dln2, la.Residual2, row(p[IdxLn2w], l, C), la.Ln2Mean, la.Ln2Rstd, N, C)
		// Attention: dresidual is now the gradient of Residual2.
		MatmulBackward(datty, row(g[IdxAttprojw], l, C*C), row(g[IdxAttprojb], l, C), dresidual, la.Atty, row(p[IdxAttprojw], l, C*C), N, C, C)
		AttentionBackward(dqkv, datty, la.Qkv, la.Atty, la.AttLse, B, T, C, NH)
		MatmulBackward(dln1, row(g[IdxQkvw], l, 3*C*C), row(g[IdxQkvb], l, 3*C), dqkv, la.Ln1, row(p[IdxQkvw], l, 3*C*C), N, C, 3*C)
		LayerNormBackward(dresidual, row(g[IdxLn1w], l, C), row(g[IdxLn1b], l, C), dln1, residual, row(p[IdxLn1w], l, C), la.Ln1Mean, la.Ln1Rstd, N, C)
	}
	clear(g[IdxWpe])
	EncoderBackward(g[IdxWte], g[IdxWpe], dresidual, m.tokens, B, T, C)
	return m.grads
}

// row returns the l-th block of size n of a per-layer tensor.
func row(t []float64, l, n int) []float64 { return t[l*n : (l+1)*n : (l+1)*n] }
