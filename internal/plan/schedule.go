package plan

// This file is the one place that says which GPU operations a training step
// launches, and in what order. Edit it when kernels are renamed, split or
// fused; the rest of the package (counts, totals, text and JSON output) and
// the profile checker derive everything from it.

// Kernel names: the PTX entry points, as Nsight Systems reports them
// (CUPTI_ACTIVITY_KIND_KERNEL.shortName).
const (
	EncoderForward      = "encoder_forward"
	LayerNormForward    = "layernorm_forward"
	MatmulForward       = "matmul_forward"
	AttentionForward    = "attention_forward"
	ResidualForward     = "residual_forward"
	GeluForward         = "gelu_forward"
	CrossEntropyForward = "crossentropy_forward"
	LossReduce          = "loss_reduce"

	CrossEntropyBackward        = "crossentropy_backward"
	MatmulBackwardInput         = "matmul_backward_input"
	MatmulBackwardWeight        = "matmul_backward_weight"
	BiasBackward                = "bias_backward"
	LayerNormBackwardInput      = "layernorm_backward_input"
	LayerNormBackwardParams     = "layernorm_backward_params"
	GeluBackward                = "gelu_backward"
	AttentionBackwardPreprocess = "attention_backward_preprocess"
	AttentionBackwardDKDV       = "attention_backward_dkdv"
	AttentionBackwardDQ         = "attention_backward_dq"
	EncoderBackwardWTE          = "encoder_backward_wte"
	EncoderBackwardWPE          = "encoder_backward_wpe"
)

// MemsetD32 is the driver call that zeroes a buffer on the stream. Memsets
// are not kernels: Nsight Systems lists them in CUPTI_ACTIVITY_KIND_MEMSET.
const MemsetD32 = "cuMemsetD32Async"

// forwardSchedule is what the "forward" range launches, in order.
var forwardSchedule = []blockSpec{
	once("embedding",
		step("encoder", k(EncoderForward)),
	),
	eachLayer("layer", ascending,
		step("ln1", k(LayerNormForward)),
		step("qkv", k(MatmulForward)),
		step("attention", k(AttentionForward)),
		step("attn proj", k(MatmulForward)),
		step("residual1", k(ResidualForward)),
		step("ln2", k(LayerNormForward)),
		step("fc", k(MatmulForward)),
		step("gelu", k(GeluForward)),
		step("fc proj", k(MatmulForward)),
		step("residual2", k(ResidualForward)),
	),
	once("head",
		step("final ln", k(LayerNormForward)),
		step("lm head", k(MatmulForward)),
		step("loss", k(CrossEntropyForward), k(LossReduce)),
	),
}

// backwardSchedule is what the "backward" range launches, in order.
var backwardSchedule = []blockSpec{
	once("head",
		// Both gradients are accumulated into, so they start at zero.
		step("zero dresidual", memset(MemsetD32, "dresidual")),
		step("zero dwpe", memset(MemsetD32, "dwpe")),
		step("loss", k(CrossEntropyBackward)),
		step("lm head", k(MatmulBackwardInput), k(MatmulBackwardWeight)), // no bias
		step("final ln", k(LayerNormBackwardInput), k(LayerNormBackwardParams)),
	),
	eachLayer("layer", descending,
		step("fc proj", k(MatmulBackwardInput), k(MatmulBackwardWeight), k(BiasBackward)),
		step("gelu", k(GeluBackward)),
		step("fc", k(MatmulBackwardInput), k(MatmulBackwardWeight), k(BiasBackward)),
		step("ln2", k(LayerNormBackwardInput), k(LayerNormBackwardParams)),
		step("attn proj", k(MatmulBackwardInput), k(MatmulBackwardWeight), k(BiasBackward)),
		step("attention", k(AttentionBackwardPreprocess), k(AttentionBackwardDKDV), k(AttentionBackwardDQ)),
		step("qkv", k(MatmulBackwardInput), k(MatmulBackwardWeight), k(BiasBackward)),
		step("ln1", k(LayerNormBackwardInput), k(LayerNormBackwardParams)),
	),
	once("embedding",
		step("encoder", k(EncoderBackwardWTE), k(EncoderBackwardWPE)),
	),
}

// The helpers below only exist to keep the tables above short.

type layerOrder int

const (
	noLayers   layerOrder = iota
	ascending             // l = 0 .. L-1
	descending            // l = L-1 .. 0
)

type blockSpec struct {
	label string
	order layerOrder
	steps []Step
}

func once(label string, steps ...Step) blockSpec {
	return blockSpec{label: label, order: noLayers, steps: steps}
}

func eachLayer(label string, order layerOrder, steps ...Step) blockSpec {
	return blockSpec{label: label, order: order, steps: steps}
}

func step(label string, ops ...Op) Step { return Step{Label: label, Ops: ops} }

func k(name string) Op { return Op{Kind: Kernel, Name: name} }

func memset(api, target string) Op { return Op{Kind: Memset, Name: api, Target: target} }
