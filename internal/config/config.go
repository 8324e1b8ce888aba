// Package config holds gpubench's run configuration: the model presets, the
// flags that override them, and the validation that runs before any GPU call.
//
// It imports nothing that touches CUDA, so it is tested everywhere.
package config

import (
	"fmt"
	"strings"
)

// Dims are the shape of the model and of one batch.
type Dims struct {
	V    int // vocabulary size
	MaxT int // context length: rows of the position embedding
	T    int // sequence length of a batch, at most MaxT
	L    int // transformer blocks
	NH   int // attention heads
	C    int // channels; C/NH is the head size
	B    int // batch size
}

// Preset is a named model shape.
type Preset struct {
	Name string
	V    int
	T    int // context length, and the default sequence length
	L    int
	NH   int
	C    int
}

// Presets are the model shapes gpubench knows by name.
var Presets = []Preset{
	{Name: "tiny", V: 512, T: 64, L: 2, NH: 4, C: 128},
	{Name: "small", V: 8192, T: 256, L: 6, NH: 8, C: 512},
	{Name: "gpt2-124m", V: 50257, T: 1024, L: 12, NH: 12, C: 768},
}

// PresetNames lists the preset names in the order of Presets.
func PresetNames() []string {
	names := make([]string, len(Presets))
	for i, p := range Presets {
		names[i] = p.Name
	}
	return names
}

// LookupPreset returns the preset with the given name.
func LookupPreset(name string) (Preset, error) {
	for _, p := range Presets {
		if p.Name == name {
			return p, nil
		}
	}
	return Preset{}, fmt.Errorf("--model: unknown preset %q (allowed: %s)", name, strings.Join(PresetNames(), ", "))
}

// DefaultBatch is the batch size of the Nsight Systems template.
const DefaultBatch = 8

// Dims returns the preset's shape at the given batch size.
func (p Preset) Dims(batch int) Dims {
	return Dims{V: p.V, MaxT: p.T, T: p.T, L: p.L, NH: p.NH, C: p.C, B: batch}
}

// HeadSize is C/NH.
func (d Dims) HeadSize() int { return d.C / d.NH }

// Rows is B*T, the number of token positions in a batch.
func (d Dims) Rows() int { return d.B * d.T }

// String formats the shape as the flags that would reproduce it.
func (d Dims) String() string {
	return fmt.Sprintf("V=%d MaxT=%d T=%d L=%d H=%d C=%d B=%d", d.V, d.MaxT, d.T, d.L, d.NH, d.C, d.B)
}

// maxIndex bounds the element count of every buffer a kernel indexes. The
// kernels compute flat offsets such as row*V+col in 32-bit int; the largest
// such buffers are the logits (B*T*V), the MLP activations (B*T*4C) and
// one layer's MLP weight (4C*C). (Stacked per-layer tensors are addressed
// layer by layer from Go, in 64 bits.)
const maxIndex = 1<<31 - 1

// LargestBuffer is the element count of the largest buffer one kernel
// indexes.
func (d Dims) LargestBuffer() int64 {
	rows := int64(d.B) * int64(d.T)
	return max(
		rows*int64(d.V),          // logits
		rows*4*int64(d.C),        // MLP hidden activations
		4*int64(d.C)*int64(d.C),  // one layer's fc weight
		int64(d.V)*int64(d.C),    // token embedding
		int64(d.MaxT)*int64(d.C), // position embedding
	)
}

// Validate checks the shape and returns one error naming the first bad value,
// the flag that sets it and what is allowed.
func (d Dims) Validate() error {
	positive := []struct {
		flag string
		v    int
	}{
		{"--vocab", d.V}, {"--context", d.MaxT}, {"--seq-len", d.T}, {"--layers", d.L},
		{"--heads", d.NH}, {"--channels", d.C}, {"--batch-size", d.B},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("%s: %d is not allowed (must be at least 1)", p.flag, p.v)
		}
	}
	if d.V < 2 {
		return fmt.Errorf("--vocab: %d is not allowed (must be at least 2: cross-entropy over one class is always zero)", d.V)
	}
	if d.T > d.MaxT {
		return fmt.Errorf("--seq-len: %d is over the context length %d (allowed: 1..%d, or raise --context)", d.T, d.MaxT, d.MaxT)
	}
	if d.C%d.NH != 0 {
		return fmt.Errorf("--channels: %d is not divisible by --heads %d (C must be a multiple of H)", d.C, d.NH)
	}
	if n := max(int64(d.V), 4*int64(d.C), int64(d.MaxT)) * int64(d.C); n > maxIndex {
		return fmt.Errorf("--channels: %d makes a weight of %d elements, over the kernels' 32-bit index limit %d (lower --channels, --vocab or --context)", d.C, n, maxIndex)
	}
	if n := d.LargestBuffer(); n > maxIndex {
		perSequence := int64(d.T) * int64(max(d.V, 4*d.C))
		return fmt.Errorf("--batch-size: %d makes a buffer of %d elements, over the kernels' 32-bit index limit %d (allowed: 1..%d at this shape)", d.B, n, maxIndex, maxIndex/perSequence)
	}
	return nil
}

// Mode selects what one iteration runs.
type Mode string

// The modes of a run.
const (
	Train Mode = "train" // forward and backward
	Infer Mode = "infer" // forward only, as prefill-style inference
)

// ParseMode checks a --mode value.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case Train, Infer:
		return Mode(s), nil
	}
	return "", fmt.Errorf("--mode: unknown mode %q (allowed: train, infer)", s)
}
