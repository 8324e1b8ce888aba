package ref

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gpubench/gpubench/internal/bf16"
	"github.com/gpubench/gpubench/internal/safetensors"
)

// TestDump writes the reference model's step as a dump and reads it back.
// With GPUBENCH_REF_DUMP=DIR it also leaves the dump in DIR, for checking the
// reference against PyTorch on a machine that has it:
//
//	GPUBENCH_REF_DUMP=/tmp/refdump go test -run TestDump ./model/ref/
//	python3 scripts/torch_check.py /tmp/refdump
func TestDump(t *testing.T) {
	d := tinyDims
	params := InitParams(d, 3)
	tokens, targets := Inputs(d, 3)
	m := NewModel(d, params)
	m.Forward(tokens, targets)
	m.Backward()
	dp := ModelDump(m)
	dir := t.TempDir()
	if env := os.Getenv("GPUBENCH_REF_DUMP"); env != "" {
		dir = env
	}
	if err := WriteDump(dir, dp, map[string]string{"source": "gpubench/model/ref", "seed": "3"}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDump(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Dims != d || !reflect.DeepEqual(got.Params, params) || !reflect.DeepEqual(got.Tokens, tokens) ||
		!reflect.DeepEqual(got.Targets, targets) || !reflect.DeepEqual(got.Logits, dp.Logits) ||
		!reflect.DeepEqual(got.Grads, dp.Grads) || got.Loss != float64(float32(dp.Loss)) {
		t.Error("dump does not round-trip")
	}

	// The file format torch_check.py expects.
	var cfg map[string]int
	b, err := os.ReadFile(filepath.Join(dir, DumpConfig))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	wantCfg := map[string]int{"V": d.V, "MaxT": d.MaxT, "T": d.T, "L": d.L, "NH": d.NH, "C": d.C, "B": d.B}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("config.json %v, want %v", cfg, wantCfg)
	}
	for _, file := range []string{DumpParams, DumpGrads} {
		f, err := safetensors.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Tensors) != NumTensors {
			t.Errorf("%s: %d tensors", file, len(f.Tensors))
		}
		for _, tn := range Layout(d) {
			st := f.Tensors[tn.Name]
			if st.DType != safetensors.F32 || !reflect.DeepEqual(st.Shape, tn.Shape) {
				t.Errorf("%s: %s is %s %v, want F32 %v", file, tn.Name, st.DType, st.Shape, tn.Shape)
			}
		}
	}
	in, err := safetensors.ReadFile(filepath.Join(dir, DumpInputs))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tokens", "targets"} {
		if st := in.Tensors[name]; st.DType != safetensors.I32 || !reflect.DeepEqual(st.Shape, []int{d.B, d.T}) {
			t.Errorf("inputs: %s is %s %v", name, st.DType, st.Shape)
		}
	}
	out, err := safetensors.ReadFile(filepath.Join(dir, DumpOutputs))
	if err != nil {
		t.Fatal(err)
	}
	if st := out.Tensors["loss"]; st.DType != safetensors.F32 || !reflect.DeepEqual(st.Shape, []int{1}) {
		t.Errorf("outputs: loss is %s %v", st.DType, st.Shape)
	}
	if st := out.Tensors["logits"]; st.DType != safetensors.F32 || !reflect.DeepEqual(st.Shape, []int{d.B, d.T, d.V}) {
		t.Errorf("outputs: logits is %s %v", st.DType, st.Shape)
	}

	// Size mismatches are refused.
	bad := dp
	bad.Grads = bad.Grads[1:]
	if WriteDump(t.TempDir(), bad, nil) == nil {
		t.Error("WriteDump accepted short grads")
	}
}

// TestDumpBF16: a bf16 step's dump holds BF16 tensors of exactly its
// values, and reads back the same.
func TestDumpBF16(t *testing.T) {
	d := tinyDims
	params := InitParams(d, 4)
	for i, p := range params {
		params[i] = float32(bf16.Round(float64(p)))
	}
	tokens, targets := Inputs(d, 4)
	m := NewModel(d, params)
	m.Forward(tokens, targets)
	m.Backward()
	dp := ModelDump(m)
	for _, v := range [][]float32{dp.Logits, dp.Grads} {
		for i := range v {
			v[i] = float32(bf16.Round(float64(v[i])))
		}
	}
	dp.BF16 = true
	dir := t.TempDir()
	if err := WriteDump(dir, dp, nil); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{DumpParams, DumpGrads, DumpOutputs} {
		f, err := safetensors.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		for name, ten := range f.Tensors {
			want := safetensors.BF16
			if name == "loss" {
				want = safetensors.F32
			}
			if ten.DType != want {
				t.Errorf("%s: %s is %s, want %s", file, name, ten.DType, want)
			}
		}
	}
	got, err := ReadDump(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Params, params) || !reflect.DeepEqual(got.Logits, dp.Logits) || !reflect.DeepEqual(got.Grads, dp.Grads) {
		t.Error("bf16 dump does not round-trip")
	}
}
