// Package flops counts the floating-point operations of one gpubench
// iteration and knows the FP32 peak rate of the GPUs it runs on.
//
// # Method
//
// Count(d) sums the FLOP annotations of the operations of the model's
// program (model.Program): every kernel launch says what it computes, in
// the package kernels function that builds it. These are counted FLOPs,
// not measured ones: they do not depend on how a kernel is written, but
// they do count the work a kernel really does, recomputation included.
// Notation: N = B·T token positions, C channels, V vocabulary, L layers,
// NH heads of size hs = C/NH.
//
//   - Matmuls count 2 FLOPs per multiply-add. A linear layer N×IC → OC costs
//     2·N·IC·OC forward, plus N·OC for its bias. Backward costs 2·N·IC·OC
//     for the input gradient and 2·N·IC·OC for the weight gradient (twice
//     the forward), plus N·OC for the bias gradient. The linear layers are
//     qkv (C→3C), attn proj (C→C), fc (C→4C), fc proj (4C→C), per layer,
//     and the lm head (C→V, weight tied to wte, no bias), once.
//   - Causal attention counts only the causal half: for each (b, h) the
//     score matrix has T(T+1)/2 live entries, so one causal-size product
//     costs 2·hs·T(T+1)/2. The forward runs 2 (S = QKᵀ, O = PV). The
//     backward keeps only a logsumexp per query row and recomputes: its dK
//     and dV kernel runs 4 (S, dP = dO·Vᵀ, dV = PᵀdO, dK = dSᵀQ) and its dQ
//     kernel 3 (S, dP, dQ = dS·K), 7 in all.
//   - Attention elementwise work: forward, 5 FLOPs per live score (scale,
//     running max, subtract, exp, sum) plus hs+2 per query row; backward, 6
//     per live score in each of its two kernels (rebuild P, form dS) plus
//     2·hs per query row for D = rowsum(dO∘O).
//   - Elementwise kernels, per element (the constants in package kernels:
//     an add, multiply or transcendental each counts 1; per-row scalars are
//     left out): encoder 1 forward, 1 + 1 backward (dwte and dwpe);
//     LayerNorm 8 forward, 12 + 2 backward (input, parameters); GELU 9
//     forward, 20 backward; residual add 1 (its gradient is the LayerNorm
//     backward's accumulate); cross-entropy 4 per logit each way, and 1 per
//     row for the mean loss.
//
// Matmuls dominate: for gpt2-124m at T=1024 the elementwise terms are well
// under 1% of the total. The optimizer update is not part of an iteration
// and is not counted. Inference (config.Infer) counts Forward only.
//
// For comparison Counts.SixND holds the usual estimate 6·P·tokens for a
// forward+backward step (P = all parameters, embeddings included, as the
// token embedding doubles as the lm head weight; the rule ignores attention
// scores).
//
// # Peak rates
//
// PeakFP32 gives the dense FP32 (CUDA core, not tensor core) peak of a GPU,
// from a table of datasheet numbers matched on the device name, or else
// from SMs × FP32 lanes per SM × 2 (an FMA is 2 FLOPs) × max SM clock.
package flops

import (
	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model"
)

// Component is one step of the model (its program's step label, "qkv"),
// summed over all layers.
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
	// Components in order of first launch.
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

// Count returns the FLOPs of one training iteration at d: the sums of the
// annotations of model.Program(d, config.Train)'s forward and backward
// ranges. d should be valid (config.Dims.Validate).
func Count(d config.Dims) Counts { return CountWith(d, nil) }

// CountWith is Count for the program with flaws fs planted: a flaw that
// changes the kernels (unfused's GELU chain) changes the work counted.
func CountWith(d config.Dims, fs []config.Flaw) Counts {
	m := model.Program(d, config.Train, model.Options{Flaws: fs})
	c := Of(m.Forward(), m.Backward())
	c.Params, c.Tokens = NumParams(d), int64(d.B)*int64(d.T)
	c.SixND = 6 * c.Params * c.Tokens
	return c
}

// Of sums the FLOP annotations of a forward and a backward range (nil for
// none) by step.
func Of(forward, backward *program.Range) Counts {
	var c Counts
	index := map[string]int{}
	add := func(r *program.Range, bwd bool) {
		if r == nil {
			return
		}
		for _, op := range r.Ops() {
			i, ok := index[op.Step]
			if !ok {
				i = len(c.Components)
				index[op.Step] = i
				c.Components = append(c.Components, Component{Name: op.Step})
			}
			x := &c.Components[i]
			if bwd {
				x.Backward += op.FLOPs
				x.MatmulBackward += op.MatmulFLOPs
				c.Backward += op.FLOPs
				c.MatmulBackward += op.MatmulFLOPs
			} else {
				x.Forward += op.FLOPs
				x.MatmulForward += op.MatmulFLOPs
				c.Forward += op.FLOPs
				c.MatmulForward += op.MatmulFLOPs
			}
		}
	}
	add(forward, false)
	add(backward, true)
	return c
}
