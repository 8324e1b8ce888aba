package ref

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gpubench/gpubench/internal/safetensors"
)

// A LLaMA dump in Hugging Face's layout, for transformers'
// LlamaForCausalLM.from_pretrained(dir):
//
//	config.json                   LlamaConfig's fields (LlamaHFConfig)
//	model.safetensors             the weights under HF's names (LlamaHFTensors)
//	gpubench_outputs.safetensors  tokens (B,T) I32: the prompts;
//	                              logits (B,V) F32: each prompt's last position;
//	                              generated (B,N) I32: the greedy tokens, if any
//
// scripts/llama_hf_check.py loads the folder and compares transformers'
// logits and greedy generation with gpubench_outputs.
const (
	LlamaHFConfigFile  = "config.json"
	LlamaHFWeightsFile = "model.safetensors"
	LlamaHFOutputsFile = "gpubench_outputs.safetensors"
)

// HFRopeRow maps row j of a q or k head in Hugging Face's order to the row
// of gpubench's: HF's rotary embedding ("rotate_half") pairs x[i] with
// x[i+hs/2], gpubench's (RopeRotate) x[2i] with x[2i+1], so HF row i <
// hs/2 is our row 2i and HF row hs/2+i our row 2i+1. With q and k's rows
// so permuted, rotate_half computes exactly RopeRotate.
func HFRopeRow(j, hs int) int {
	if j < hs/2 {
		return 2 * j
	}
	return 2*(j-hs/2) + 1
}

// LlamaHFTensors returns params (LlamaLayout order) as Hugging Face's
// LlamaForCausalLM tensors: q_proj and k_proj with their rows permuted
// within each head (HFRopeRow), gate_proj and up_proj split out of w13,
// each F32, or BF16 when asBF16 (exact for a bf16 model's values).
func LlamaHFTensors(d LlamaDims, params []float32, asBF16 bool) map[string]safetensors.Tensor {
	p := LlamaViews(d, params)
	C, H, hs := d.C, d.Hidden, d.HeadSize()
	QKV := d.QKVWidth()
	out := map[string]safetensors.Tensor{}
	put := func(name string, shape []int, v []float32) { out[name] = floatTensor(shape, v, asBF16) }
	// heads copies the rows of nh heads starting at row r0 of w (rows of C),
	// permuting each head's rows when rope is set.
	heads := func(w []float32, r0, nh int, rope bool) []float32 {
		dst := make([]float32, nh*hs*C)
		for h := 0; h < nh; h++ {
			for j := 0; j < hs; j++ {
				src := j
				if rope {
					src = HFRopeRow(j, hs)
				}
				copy(dst[(h*hs+j)*C:][:C], w[(r0+h*hs+src)*C:][:C])
			}
		}
		return dst
	}
	put("model.embed_tokens.weight", []int{d.V, C}, p[IdxLlamaEmbed])
	for l := 0; l < d.L; l++ {
		pre := fmt.Sprintf("model.layers.%d.", l)
		wqkv := p[IdxLlamaWqkv][l*QKV*C : (l+1)*QKV*C]
		put(pre+"input_layernorm.weight", []int{C}, p[IdxLlamaAttnNorm][l*C:(l+1)*C])
		put(pre+"self_attn.q_proj.weight", []int{d.NH * hs, C}, heads(wqkv, 0, d.NH, true))
		put(pre+"self_attn.k_proj.weight", []int{d.NKV * hs, C}, heads(wqkv, d.NH*hs, d.NKV, true))
		put(pre+"self_attn.v_proj.weight", []int{d.NKV * hs, C}, heads(wqkv, (d.NH+d.NKV)*hs, d.NKV, false))
		put(pre+"self_attn.o_proj.weight", []int{C, C}, p[IdxLlamaWo][l*C*C:(l+1)*C*C])
		put(pre+"post_attention_layernorm.weight", []int{C}, p[IdxLlamaMlpNorm][l*C:(l+1)*C])
		w13 := p[IdxLlamaW13][l*2*H*C : (l+1)*2*H*C]
		put(pre+"mlp.gate_proj.weight", []int{H, C}, w13[:H*C])
		put(pre+"mlp.up_proj.weight", []int{H, C}, w13[H*C:])
		put(pre+"mlp.down_proj.weight", []int{C, H}, p[IdxLlamaW2][l*C*H:(l+1)*C*H])
	}
	put("model.norm.weight", []int{C}, p[IdxLlamaNorm])
	put("lm_head.weight", []int{d.V, C}, p[IdxLlamaHead])
	return out
}

// LlamaHFConfig is the config.json of a dump of d: LlamaConfig's fields,
// with dtype "float32" or "bfloat16".
func LlamaHFConfig(d LlamaDims, dtype string) map[string]any {
	return map[string]any{
		"architectures":           []string{"LlamaForCausalLM"},
		"model_type":              "llama",
		"vocab_size":              d.V,
		"hidden_size":             d.C,
		"intermediate_size":       d.Hidden,
		"num_hidden_layers":       d.L,
		"num_attention_heads":     d.NH,
		"num_key_value_heads":     d.NKV,
		"head_dim":                d.HeadSize(),
		"max_position_embeddings": d.MaxT,
		"rms_norm_eps":            d.Eps,
		"rope_theta":              d.Theta,
		// transformers 5 reads the RoPE base from rope_parameters (and
		// would silently take its default 10000 otherwise), and the
		// precision from dtype; older versions read the keys beside them.
		"rope_parameters":     map[string]any{"rope_type": "default", "rope_theta": d.Theta},
		"dtype":               dtype,
		"hidden_act":          "silu",
		"tie_word_embeddings": false,
		"attention_bias":      false,
		"mlp_bias":            false,
		"torch_dtype":         dtype,
		"bos_token_id":        nil,
		"eos_token_id":        nil,
		"pad_token_id":        nil,
		"producer":            "gpubench",
	}
}

// WriteLlamaHF writes the weights and config.json of a LLaMA of shape d
// into dir (created if needed).
func WriteLlamaHF(dir string, d LlamaDims, params []float32, asBF16 bool) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if len(params) != LlamaNumParams(d) {
		return fmt.Errorf("ref: WriteLlamaHF: %d parameters, want %d", len(params), LlamaNumParams(d))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dtype := "float32"
	if asBF16 {
		dtype = "bfloat16"
	}
	cfg, err := json.MarshalIndent(LlamaHFConfig(d, dtype), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, LlamaHFConfigFile), append(cfg, '\n'), 0o644); err != nil {
		return err
	}
	meta := map[string]string{"format": "pt", "producer": "gpubench"}
	if err := safetensors.WriteFile(filepath.Join(dir, LlamaHFWeightsFile), LlamaHFTensors(d, params, asBF16), meta); err != nil {
		return fmt.Errorf("ref: %s: %w", LlamaHFWeightsFile, err)
	}
	return nil
}

// WriteLlamaHFOutputs writes what the GPU computed from the dump's weights
// into dir: the (B,T) prompts, the (B,V) logits of each prompt's last
// position and, when newTokens > 0, the (B,newTokens) greedy tokens.
func WriteLlamaHFOutputs(dir string, tokens []int32, B, T int, logits []float32, V int, generated []int32, newTokens int) error {
	if len(tokens) != B*T || len(logits) != B*V || len(generated) != B*newTokens {
		return fmt.Errorf("ref: WriteLlamaHFOutputs: %d tokens, %d logits, %d generated; want %d, %d and %d",
			len(tokens), len(logits), len(generated), B*T, B*V, B*newTokens)
	}
	ts := map[string]safetensors.Tensor{
		"tokens": safetensors.FromInt32([]int{B, T}, tokens),
		"logits": safetensors.FromFloat32([]int{B, V}, logits),
	}
	if newTokens > 0 {
		ts["generated"] = safetensors.FromInt32([]int{B, newTokens}, generated)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, LlamaHFOutputsFile), ts, map[string]string{"producer": "gpubench"}); err != nil {
		return fmt.Errorf("ref: %s: %w", LlamaHFOutputsFile, err)
	}
	return nil
}
