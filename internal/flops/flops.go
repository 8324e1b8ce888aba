// Package flops counts the floating-point operations of one gpubench
// iteration and knows the FP32 peak rate of the GPUs it runs on.
//
// # Method
//
// Count(d) adds up, per component of the GPT-2 step as gpubench runs it
// (fp32, llm.c layout), the FLOPs the algorithm needs. These are counted
// FLOPs, not measured ones: they do not depend on how a kernel is written.
// Notation: N = B·T token positions, C channels, V vocabulary, L layers,
// NH heads of size hs = C/NH.
//
//   - Matmuls count 2 FLOPs per multiply-add. A linear layer N×IC → OC costs
//     2·N·IC·OC forward, plus N·OC for its bias. Backward costs 2·N·IC·OC
//     for the input gradient and 2·N·IC·OC for the weight gradient (twice
//     the forward), plus N·OC for the bias gradient. The linear layers are
//     qkv (C→3C), attproj (C→C), fc (C→4C), fcproj (4C→C), per layer, and
//     the lm_head (C→V, weight tied to wte, no bias), once.
//   - Causal attention counts only the causal half: for each (b, h) the
//     score matrix has T(T+1)/2 live entries, so QKᵀ costs
//     2·hs·T(T+1)/2 = hs·T(T+1), and P·V the same. Forward = 2 such
//     matmuls. Backward recomputes the scores (FlashAttention-2 style: only
//     a logsumexp per query row is kept) and then runs dV = PᵀdO,
//     dP = dO·Vᵀ, dQ = dS·K, dK = dSᵀ·Q: 5 causal-size matmuls in all.
//   - Attention elementwise work: forward, 5 FLOPs per live score (scale,
//     running max, subtract, exp, sum) plus hs+2 per query row (normalise
//     the output row, log and add for the logsumexp); backward, 6 per live
//     score (scale, subtract lse, exp to rebuild P; subtract D, multiply by
//     P, scale to form dS) plus 2·hs per query row (D = rowsum(dO∘O)).
//   - Elementwise kernels, per element of their input (an add, multiply or
//     transcendental such as exp, tanh or rsqrt each counts 1; per-row
//     scalars such as one rsqrt per LayerNorm row are left out):
//     encoder (wte[tok]+wpe[t]) 1 forward, 2 backward (scatter-add into
//     dwte and dwpe); LayerNorm 8 forward (mean 1, variance 3, normalise
//     and affine 4), 14 backward; GELU (tanh form) 9 forward, 20 backward;
//     each residual add 1 forward, 1 backward (accumulate into the residual
//     gradient); cross-entropy 4 per logit forward (max, subtract, exp,
//     sum), 4 per logit backward (subtract, exp, scale, multiply by dloss),
//     fused with the softmax as in llm.c.
//
// Matmuls dominate: for gpt2-124m at T=1024 the elementwise terms are well
// under 1% of the total. The optimizer update is not part of an iteration
// and is not counted. Inference (config.Infer) counts Forward only.
//
// For comparison Counts.SixND holds the usual estimate 6·P·tokens for a
// forward+backward step (P = all parameters, embeddings included, as the
// token embedding doubles as the lm_head weight; the rule ignores attention
// scores). Counted FLOPs exceed it by roughly the attention matmuls,
// 7·L·B·C·T(T+1) here (2 forward + 5 backward causal matmuls), and fall
// short of it by the parameters that do no matmul (wpe, LayerNorms, biases).
//
// # Peak rates
//
// PeakFP32 gives the dense FP32 (CUDA core, not tensor core) peak of a GPU,
// from a table of datasheet numbers matched on the device name, or else
// from SMs × FP32 lanes per SM × 2 (an FMA is 2 FLOPs) × max SM clock.
package flops

import (
	"github.com/gpubench/gpubench/internal/config"
)

// Per-element FLOP constants of the non-matmul kernels; see the package doc.
const (
	EncoderFwd      = 1
	EncoderBwd      = 2
	LayerNormFwd    = 8
	LayerNormBwd    = 14
	GELUFwd         = 9
	GELUBwd         = 20
	ResidualFwd     = 1
	ResidualBwd     = 1
	CrossEntropyFwd = 4
	CrossEntropyBwd = 4

	AttnScoreFwd = 5 // per live (causal) score, forward softmax
	AttnScoreBwd = 6 // per live score, backward (rebuild P, form dS)
	AttnRowFwd   = 2 // per query row plus hs: normalise output, logsumexp
	// Backward per query row: 2·hs for D = rowsum(dO∘O).

	AttnMatmulsFwd = 2 // QKᵀ, PV
	AttnMatmulsBwd = 5 // QKᵀ recompute, PᵀdO, dO·Vᵀ, dS·K, dSᵀ·Q
)

// Component is one part of the step, summed over all layers.
type Component struct {
	Name     string `json:"name"`
	Forward  int64  `json:"forward"`
	Backward int64  `json:"backward"`
	// Matmul parts of Forward and Backward (2 per multiply-add), excluding
	// bias adds; 0 for elementwise components.
	MatmulForward  int64 `json:"matmul_forward"`
	MatmulBackward int64 `json:"matmul_backward"`
}

// Counts are the FLOPs of one iteration at some Dims.
type Counts struct {
	Forward  int64 `json:"forward"`
	Backward int64 `json:"backward"`
	// Matmul parts of Forward and Backward (linear layers and attention).
	MatmulForward  int64 `json:"matmul_forward"`
	MatmulBackward int64 `json:"matmul_backward"`
	// Components in step order: encoder, ln1, qkv, attention_matmul,
	// attention_softmax, attproj, residual, ln2, fc, gelu, fcproj, lnf,
	// lm_head, cross_entropy.
	Components []Component `json:"components"`
	Params     int64       `json:"params"` // P, all parameters
	Tokens     int64       `json:"tokens"` // B·T
	SixND      int64       `json:"six_nd"` // 6·P·tokens, fwd+bwd estimate
}

// Total is Forward + Backward.
func (c Counts) Total() int64 { return c.Forward + c.Backward }

// ForMode is the FLOPs of one iteration of the mode: Forward for
// config.Infer, Forward+Backward otherwise.
func (c Counts) ForMode(m config.Mode) int64 {
	if m == config.Infer {
		return c.Forward
	}
	return c.Total()
}

// Component returns the component with the given name.
func (c Counts) Component(name string) (Component, bool) {
	for _, x := range c.Components {
		if x.Name == name {
			return x, true
		}
	}
	return Component{}, false
}

// NumParams is the parameter count of the GPT-2 model at d:
// V·C + MaxT·C + L·(12C² + 13C) + 2C.
func NumParams(d config.Dims) int64 {
	C, L := int64(d.C), int64(d.L)
	return int64(d.V)*C + int64(d.MaxT)*C + L*(12*C*C+13*C) + 2*C
}

// Count returns the FLOPs of one iteration at d. d should be valid
// (config.Dims.Validate); Count does not check it.
func Count(d config.Dims) Counts {
	N := int64(d.B) * int64(d.T)
	C, V, L := int64(d.C), int64(d.V), int64(d.L)
	T, NH := int64(d.T), int64(d.NH)
	hs := C / NH
	BH := int64(d.B) * NH

	var comps []Component
	elem := func(name string, n, fwd, bwd int64) {
		comps = append(comps, Component{Name: name, Forward: n * fwd, Backward: n * bwd})
	}
	linear := func(name string, times, ic, oc int64, bias bool) {
		mm := times * 2 * N * ic * oc
		c := Component{Name: name, Forward: mm, Backward: 2 * mm, MatmulForward: mm, MatmulBackward: 2 * mm}
		if bias {
			c.Forward += times * N * oc
			c.Backward += times * N * oc
		}
		comps = append(comps, c)
	}

	live := T * (T + 1) / 2        // live scores per (b,h)
	causalMM := 2 * hs * live * BH // one causal-size matmul over all (b,h), per layer

	elem("encoder", N*C, EncoderFwd, EncoderBwd)
	elem("ln1", L*N*C, LayerNormFwd, LayerNormBwd)
	linear("qkv", L, C, 3*C, true)
	comps = append(comps, Component{
		Name:           "attention_matmul",
		Forward:        L * AttnMatmulsFwd * causalMM,
		Backward:       L * AttnMatmulsBwd * causalMM,
		MatmulForward:  L * AttnMatmulsFwd * causalMM,
		MatmulBackward: L * AttnMatmulsBwd * causalMM,
	})
	comps = append(comps, Component{
		Name:     "attention_softmax",
		Forward:  L * BH * (AttnScoreFwd*live + T*(hs+AttnRowFwd)),
		Backward: L * BH * (AttnScoreBwd*live + T*2*hs),
	})
	linear("attproj", L, C, C, true)
	elem("residual", 2*L*N*C, ResidualFwd, ResidualBwd)
	elem("ln2", L*N*C, LayerNormFwd, LayerNormBwd)
	linear("fc", L, C, 4*C, true)
	elem("gelu", L*N*4*C, GELUFwd, GELUBwd)
	linear("fcproj", L, 4*C, C, true)
	elem("lnf", N*C, LayerNormFwd, LayerNormBwd)
	linear("lm_head", 1, C, V, false)
	elem("cross_entropy", N*V, CrossEntropyFwd, CrossEntropyBwd)

	c := Counts{Components: comps, Params: NumParams(d), Tokens: N}
	for _, x := range comps {
		c.Forward += x.Forward
		c.Backward += x.Backward
		c.MatmulForward += x.MatmulForward
		c.MatmulBackward += x.MatmulBackward
	}
	c.SixND = 6 * c.Params * N
	return c
}
