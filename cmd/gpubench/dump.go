package main

import (
	"github.com/gpubench/gpubench/model/cuda"
	"github.com/gpubench/gpubench/model/ref"
)

// dump writes one step's weights, inputs, loss, logits and gradients as
// safetensors into dir, in the format scripts/torch_check.py reads.
func dump(m *cuda.Model, dir string) error {
	dp, err := m.Dump()
	if err != nil {
		return err
	}
	return ref.WriteDump(dir, dp, map[string]string{"producer": "gpubench"})
}
