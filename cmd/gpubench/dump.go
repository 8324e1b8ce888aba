package main

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model"
	"github.com/gpubench/gpubench/model/cuda"
	"github.com/gpubench/gpubench/model/ref"
)

// dump writes one step's tensors as safetensors into dir: for GPT-2 the
// weights, inputs, loss, logits and gradients that scripts/torch_check.py
// reads; for LLaMA the weights in Hugging Face's Llama names with a
// config.json (LlamaForCausalLM.from_pretrained loads the folder) and
// what scripts/llama_hf_check.py compares with transformers.
func dump(m *cuda.Model, dir string) error {
	if m.Dims.IsLlama() {
		return dumpLlama(m, dir)
	}
	dp, err := m.Dump()
	if err != nil {
		return err
	}
	return ref.WriteDump(dir, dp, map[string]string{"producer": "gpubench"})
}

// dumpLlama runs one iteration and writes the weights, the prompts, the
// logits of each prompt's last position and, in generate mode, the greedy
// tokens of every step.
func dumpLlama(m *cuda.Model, dir string) error {
	d := m.Dims
	params, err := m.Params()
	if err != nil {
		return err
	}
	tokens, _, err := m.Inputs()
	if err != nil {
		return err
	}
	if err := m.Forward(); err != nil { // the forward, or generate's prefill
		return err
	}
	logits, err := m.Logits()
	if err != nil {
		return err
	}
	if m.Mode != config.Generate { // every row's logits: keep each sequence's last
		last := make([]float32, 0, d.B*d.V)
		for b := 0; b < d.B; b++ {
			last = append(last, logits[(b*d.T+d.T-1)*d.V:][:d.V]...)
		}
		logits = last
	}
	var generated []int32
	if m.Mode == config.Generate {
		for k := 1; k < m.Passes(); k++ {
			if err := m.Pass(k); err != nil {
				return err
			}
		}
		if generated, err = m.Generated(); err != nil {
			return err
		}
	}
	if err := ref.WriteLlamaHF(dir, model.LlamaRefDims(d), params, m.Elem == program.BF16); err != nil {
		return err
	}
	if err := ref.WriteLlamaHFOutputs(dir, tokens, d.B, d.T, logits, d.V, generated, d.New); err != nil {
		return fmt.Errorf("--dump: %w", err)
	}
	return nil
}
