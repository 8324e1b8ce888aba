package ref

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/gpubench/gpubench/internal/bf16"
	"github.com/gpubench/gpubench/internal/safetensors"
)

// Dump is one forward+backward step, as scripts/torch_check.py reads it from
// a dump directory:
//
//	config.json          {"V":..,"MaxT":..,"T":..,"L":..,"NH":..,"C":..,"B":..}
//	params.safetensors   the 16 Layout tensors, F32, named and shaped as Layout
//	inputs.safetensors   tokens, targets: I32 (B,T)
//	outputs.safetensors  loss: F32 shape [1]; logits: F32 (B,T,V)
//	grads.safetensors    the gradient, F32, under the same names as params
type Dump struct {
	Dims    Dims
	Params  []float32 // flat, Layout order
	Tokens  []int32   // B*T
	Targets []int32   // B*T
	Loss    float64
	Logits  []float32 // B*T*V
	Grads   []float32 // flat, Layout order
	// BF16 writes Params, Logits and Grads as BF16 tensors: the values of
	// a bf16 step, which are exact in bfloat16. ReadDump reads either.
	BF16 bool
}

// Dump files.
const (
	DumpConfig  = "config.json"
	DumpParams  = "params.safetensors"
	DumpInputs  = "inputs.safetensors"
	DumpOutputs = "outputs.safetensors"
	DumpGrads   = "grads.safetensors"
)

// ModelDump returns the dump of m's last Forward (with targets) and Backward,
// with params, logits and gradients rounded to float32.
func ModelDump(m *Model) Dump {
	return Dump{
		Dims:    m.d,
		Params:  toFloat32(m.params),
		Tokens:  append([]int32(nil), m.tokens...),
		Targets: append([]int32(nil), m.targets...),
		Loss:    m.loss,
		Logits:  toFloat32(m.acts.Logits),
		Grads:   toFloat32(m.grads),
	}
}

func toFloat32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func (dp *Dump) check() error {
	d := dp.Dims
	if err := validate(d); err != nil {
		return err
	}
	N, P := d.B*d.T, NumParams(d)
	if len(dp.Params) != P || len(dp.Grads) != P || len(dp.Tokens) != N || len(dp.Targets) != N || len(dp.Logits) != N*d.V {
		return fmt.Errorf("ref: dump sizes: params %d grads %d (want %d), tokens %d targets %d (want %d), logits %d (want %d)",
			len(dp.Params), len(dp.Grads), P, len(dp.Tokens), len(dp.Targets), N, len(dp.Logits), N*d.V)
	}
	return nil
}

func flatTensors(d Dims, flat []float32, asBF16 bool) map[string]safetensors.Tensor {
	out := make(map[string]safetensors.Tensor, NumTensors)
	for _, t := range Layout(d) {
		out[t.Name] = floatTensor(t.Shape, flat[t.Offset:t.Offset+t.Size], asBF16)
	}
	return out
}

// floatTensor is an F32 tensor of v, or a BF16 one of v rounded to
// bfloat16 (exactly v when v came from a bf16 buffer).
func floatTensor(shape []int, v []float32, asBF16 bool) safetensors.Tensor {
	if !asBF16 {
		return safetensors.FromFloat32(shape, v)
	}
	h := make([]uint16, len(v))
	for i, x := range v {
		h[i] = bf16.FromFloat32(x)
	}
	return safetensors.FromBF16(shape, h)
}

// WriteDump writes dp into dir (created if needed). meta is stored as the
// safetensors metadata of every file and may be nil.
func WriteDump(dir string, dp Dump, meta map[string]string) error {
	if err := dp.check(); err != nil {
		return err
	}
	d := dp.Dims
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, DumpConfig), append(cfg, '\n'), 0o644); err != nil {
		return err
	}
	bt := []int{d.B, d.T}
	files := []struct {
		name    string
		tensors map[string]safetensors.Tensor
	}{
		{DumpParams, flatTensors(d, dp.Params, dp.BF16)},
		{DumpInputs, map[string]safetensors.Tensor{
			"tokens":  safetensors.FromInt32(bt, dp.Tokens),
			"targets": safetensors.FromInt32(bt, dp.Targets),
		}},
		{DumpOutputs, map[string]safetensors.Tensor{
			"loss":   safetensors.FromFloat32([]int{1}, []float32{float32(dp.Loss)}),
			"logits": floatTensor([]int{d.B, d.T, d.V}, dp.Logits, dp.BF16),
		}},
		{DumpGrads, flatTensors(d, dp.Grads, dp.BF16)},
	}
	for _, f := range files {
		if err := safetensors.WriteFile(filepath.Join(dir, f.name), f.tensors, meta); err != nil {
			return fmt.Errorf("ref: %s: %w", f.name, err)
		}
	}
	return nil
}

// ReadDump reads a dump directory written by WriteDump (or by the GPU model
// in the same format). Float tensors may be F32 or F64; F64 values are
// rounded to float32 (except the loss).
func ReadDump(dir string) (*Dump, error) {
	dp := &Dump{}
	cfg, err := os.ReadFile(filepath.Join(dir, DumpConfig))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(cfg, &dp.Dims); err != nil {
		return nil, fmt.Errorf("ref: %s: %w", DumpConfig, err)
	}
	d := dp.Dims
	if err := validate(d); err != nil {
		return nil, err
	}
	open := func(name string) (*safetensors.File, error) {
		f, err := safetensors.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("ref: %s: %w", name, err)
		}
		return f, nil
	}
	floats := func(f *safetensors.File, file, name string, want int) ([]float64, error) {
		t, ok := f.Tensors[name]
		if !ok {
			return nil, fmt.Errorf("ref: %s: no tensor %q", file, name)
		}
		v, err := t.Float64()
		if err != nil {
			return nil, fmt.Errorf("ref: %s: %s: %w", file, name, err)
		}
		if len(v) != want {
			return nil, fmt.Errorf("ref: %s: %s has %d elements, want %d", file, name, len(v), want)
		}
		return v, nil
	}
	flat := func(file string) ([]float32, error) {
		f, err := open(file)
		if err != nil {
			return nil, err
		}
		out := make([]float32, 0, NumParams(d))
		for _, t := range Layout(d) {
			v, err := floats(f, file, t.Name, t.Size)
			if err != nil {
				return nil, err
			}
			out = append(out, toFloat32(v)...)
		}
		return out, nil
	}
	if dp.Params, err = flat(DumpParams); err != nil {
		return nil, err
	}
	if dp.Grads, err = flat(DumpGrads); err != nil {
		return nil, err
	}
	in, err := open(DumpInputs)
	if err != nil {
		return nil, err
	}
	for name, dst := range map[string]*[]int32{"tokens": &dp.Tokens, "targets": &dp.Targets} {
		t, ok := in.Tensors[name]
		if !ok {
			return nil, fmt.Errorf("ref: %s: no tensor %q", DumpInputs, name)
		}
		if *dst, err = t.Int32(); err != nil {
			return nil, fmt.Errorf("ref: %s: %s: %w", DumpInputs, name, err)
		}
		if len(*dst) != d.B*d.T {
			return nil, fmt.Errorf("ref: %s: %s has %d elements, want %d", DumpInputs, name, len(*dst), d.B*d.T)
		}
	}
	out, err := open(DumpOutputs)
	if err != nil {
		return nil, err
	}
	loss, err := floats(out, DumpOutputs, "loss", 1)
	if err != nil {
		return nil, err
	}
	dp.Loss = loss[0]
	if math.IsNaN(dp.Loss) {
		return nil, fmt.Errorf("ref: %s: loss is NaN", DumpOutputs)
	}
	logits, err := floats(out, DumpOutputs, "logits", d.B*d.T*d.V)
	if err != nil {
		return nil, err
	}
	dp.Logits = toFloat32(logits)
	return dp, nil
}
