package ref

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/bf16"
	"github.com/gpubench/gpubench/internal/safetensors"
)

var llamaHFDims = LlamaDims{V: 512, MaxT: 32, T: 16, L: 2, NH: 4, NKV: 2, C: 128, Hidden: 352, B: 2, Eps: 1e-5, Theta: 1e4}

// hfForward is transformers' LlamaForCausalLM forward, written from its
// modeling_llama.py in float64 over the tensors of a dump: separate q, k,
// v, o, gate, up and down matrices, rotate_half rotary embeddings with
// inv_freq = theta^(-2i/hs) duplicated over the two halves, and repeat_kv
// for the key/value heads. It returns the (B,V) logits of each sequence's
// last position.
func hfForward(t *testing.T, d LlamaDims, ts map[string]safetensors.Tensor, tokens []int32) []float64 {
	t.Helper()
	get := func(name string) []float64 {
		tn, ok := ts[name]
		if !ok {
			t.Fatalf("no tensor %s", name)
		}
		v, err := tn.Float64()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	B, T, C, V, H, hs := d.B, d.T, d.C, d.V, d.Hidden, d.HeadSize()
	group := d.NH / d.NKV
	linear := func(x, w []float64, in, out int) []float64 { // x (T,in) · w(out,in)ᵀ
		y := make([]float64, T*out)
		for r := 0; r < T; r++ {
			for o := 0; o < out; o++ {
				y[r*out+o] = dot64(x[r*in:][:in], w[o*in:][:in])
			}
		}
		return y
	}
	rmsnorm := func(x, w []float64) []float64 {
		y := make([]float64, len(x))
		for r := 0; r < len(x)/C; r++ {
			row := x[r*C:][:C]
			ms := dot64(row, row) / float64(C)
			s := 1 / math.Sqrt(ms+d.Eps)
			for c := range row {
				y[r*C+c] = w[c] * (row[c] * s)
			}
		}
		return y
	}
	rope := func(x []float64, nh int) { // x (T, nh*hs), in place
		for p := 0; p < T; p++ {
			for h := 0; h < nh; h++ {
				v := x[(p*nh+h)*hs:][:hs]
				rot := make([]float64, hs)
				for i := 0; i < hs; i++ {
					f := math.Pow(d.Theta, -float64(2*(i%(hs/2)))/float64(hs))
					sin, cos := math.Sincos(float64(p) * f)
					var half float64 // rotate_half: [-x2, x1]
					if i < hs/2 {
						half = -v[i+hs/2]
					} else {
						half = v[i-hs/2]
					}
					rot[i] = v[i]*cos + half*sin
				}
				copy(v, rot)
			}
		}
	}
	embed, head, norm := get("model.embed_tokens.weight"), get("lm_head.weight"), get("model.norm.weight")
	logits := make([]float64, B*V)
	for b := 0; b < B; b++ {
		x := make([]float64, T*C)
		for p := 0; p < T; p++ {
			copy(x[p*C:][:C], embed[int(tokens[b*T+p])*C:][:C])
		}
		for l := 0; l < d.L; l++ {
			pre := fmt.Sprintf("model.layers.%d.", l)
			xn := rmsnorm(x, get(pre+"input_layernorm.weight"))
			q := linear(xn, get(pre+"self_attn.q_proj.weight"), C, d.NH*hs)
			k := linear(xn, get(pre+"self_attn.k_proj.weight"), C, d.NKV*hs)
			v := linear(xn, get(pre+"self_attn.v_proj.weight"), C, d.NKV*hs)
			rope(q, d.NH)
			rope(k, d.NKV)
			att := make([]float64, T*C)
			for h := 0; h < d.NH; h++ {
				kh := h / group // repeat_kv
				for p := 0; p < T; p++ {
					s := make([]float64, p+1)
					m := math.Inf(-1)
					for p2 := 0; p2 <= p; p2++ {
						s[p2] = dot64(q[(p*d.NH+h)*hs:][:hs], k[(p2*d.NKV+kh)*hs:][:hs]) / math.Sqrt(float64(hs))
						m = math.Max(m, s[p2])
					}
					sum := 0.0
					for p2 := range s {
						s[p2] = math.Exp(s[p2] - m)
						sum += s[p2]
					}
					for p2 := range s {
						for i := 0; i < hs; i++ {
							att[(p*d.NH+h)*hs+i] += s[p2] / sum * v[(p2*d.NKV+kh)*hs+i]
						}
					}
				}
			}
			o := linear(att, get(pre+"self_attn.o_proj.weight"), C, C)
			for i := range x {
				x[i] += o[i]
			}
			xn = rmsnorm(x, get(pre+"post_attention_layernorm.weight"))
			gate := linear(xn, get(pre+"mlp.gate_proj.weight"), C, H)
			up := linear(xn, get(pre+"mlp.up_proj.weight"), C, H)
			for i := range gate {
				gate[i] = Silu(gate[i]) * up[i]
			}
			down := linear(gate, get(pre+"mlp.down_proj.weight"), H, C)
			for i := range x {
				x[i] += down[i]
			}
		}
		xn := rmsnorm(x[(T-1)*C:], norm)
		for o := 0; o < V; o++ {
			logits[b*V+o] = dot64(xn, head[o*C:][:C])
		}
	}
	return logits
}

// TestLlamaHFMatchesReference: the weights written in Hugging Face's
// layout, run the way transformers runs them, give the reference's logits:
// so the q and k row permutation makes rotate_half equal gpubench's
// interleaved RoPE, and the names, splits and shapes are HF's.
func TestLlamaHFMatchesReference(t *testing.T) {
	d := llamaHFDims
	params := LlamaInitParams(d, 7)
	tokens, _ := LlamaInputs(d, 7)
	dir := t.TempDir()
	if err := WriteLlamaHF(dir, d, params, false); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.ReadFile(filepath.Join(dir, LlamaHFWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.Tensors); n != 3+9*d.L {
		t.Errorf("%d tensors, want %d", n, 3+9*d.L)
	}
	got := hfForward(t, d, f.Tensors, tokens)
	m := NewLlamaModel(d, params)
	m.Forward(tokens, nil)
	worst := 0.0
	for b := 0; b < d.B; b++ {
		want := m.Logits()[(b*d.T+d.T-1)*d.V:][:d.V]
		scale := 0.0
		for _, w := range want {
			scale = math.Max(scale, math.Abs(w))
		}
		for i, w := range want {
			worst = math.Max(worst, math.Abs(got[b*d.V+i]-w)/scale)
		}
	}
	t.Logf("HF-style forward vs reference: max |Δ|/max|ref| = %.2e", worst)
	if !(worst <= 1e-12) {
		t.Errorf("HF-style forward differs from the reference: %.3g", worst)
	}

	var cfg map[string]any
	raw, err := os.ReadFile(filepath.Join(dir, LlamaHFConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if rp, _ := cfg["rope_parameters"].(map[string]any); rp["rope_theta"] != 1e4 {
		t.Errorf("config.json rope_parameters = %v, want rope_theta 1e4", cfg["rope_parameters"])
	}
	for k, want := range map[string]any{"model_type": "llama", "num_key_value_heads": 2.0, "intermediate_size": 352.0,
		"rope_theta": 1e4, "rms_norm_eps": 1e-5, "dtype": "float32", "tie_word_embeddings": false, "torch_dtype": "float32", "head_dim": 32.0} {
		if cfg[k] != want {
			t.Errorf("config.json %s = %v, want %v", k, cfg[k], want)
		}
	}
}

// TestLlamaHFBF16 writes BF16 tensors holding the parameters rounded once
// to bfloat16.
func TestLlamaHFBF16(t *testing.T) {
	d := llamaHFDims
	params := LlamaInitParams(d, 3)
	ts := LlamaHFTensors(d, params, true)
	e := ts["model.embed_tokens.weight"]
	if e.DType != safetensors.BF16 {
		t.Fatalf("embed is %s, want BF16", e.DType)
	}
	v, err := e.Float32()
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range v {
		if want := bf16.ToFloat32(bf16.FromFloat32(params[i])); x != want {
			t.Fatalf("embed[%d] = %v, want %v", i, x, want)
		}
	}
}

// TestLlamaHFErrors: an unwritable place and wrong sizes give an error
// naming what is wrong.
func TestLlamaHFErrors(t *testing.T) {
	d := llamaHFDims
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteLlamaHF(filepath.Join(file, "dump"), d, LlamaInitParams(d, 1), false); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("a dump under a file gave %v, want an error naming %s", err, file)
	}
	if err := WriteLlamaHF(t.TempDir(), d, make([]float32, 3), false); err == nil {
		t.Error("3 parameters were written")
	}
	if err := WriteLlamaHFOutputs(t.TempDir(), make([]int32, 5), d.B, d.T, nil, d.V, nil, 0); err == nil {
		t.Error("outputs of the wrong size were written")
	}
}

// TestHFRopeRow is a permutation of each head's rows.
func TestHFRopeRow(t *testing.T) {
	for _, hs := range []int{2, 8, 128} {
		seen := map[int]bool{}
		for j := 0; j < hs; j++ {
			seen[HFRopeRow(j, hs)] = true
		}
		if len(seen) != hs {
			t.Errorf("hs %d: %d distinct rows", hs, len(seen))
		}
	}
}
