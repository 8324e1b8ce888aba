// Package ref is the float64 CPU reference implementation of the gpubench
// GPT-2 model (as in nanoGPT / llm.c). Every GPU kernel and the whole GPU
// model are checked against it.
//
// All activation and gradient slices are float64, row-major, with N = B*T
// rows. The package is pure Go and must never import a CUDA binding: it runs
// on CI machines that have no GPU.
package ref

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gpubench/gpubench/internal/config"
)

// Dims are the model and batch dimensions (config.Dims: V, MaxT, T, L, NH,
// C, B).
type Dims = config.Dims

// validate reports whether d describes a model the reference can run. It
// is looser than config.Dims.Validate (L may be 0, no index limits): the
// reference's own tests use such shapes.
func validate(d Dims) error {
	switch {
	case d.V <= 0, d.MaxT <= 0, d.T <= 0, d.L < 0, d.NH <= 0, d.C <= 0, d.B <= 0:
		return fmt.Errorf("ref: invalid dims %+v: V, MaxT, T, NH, C, B must be > 0 and L >= 0", d)
	case d.T > d.MaxT:
		return fmt.Errorf("ref: invalid dims %+v: T > MaxT", d)
	case d.C%d.NH != 0:
		return fmt.Errorf("ref: invalid dims %+v: C %% NH != 0", d)
	}
	return nil
}

// Tensor names one parameter tensor inside the flat parameter array.
// Offset and Size are in elements.
type Tensor struct {
	Name   string
	Shape  []int
	Offset int
	Size   int
}

// Parameter tensor names, in Layout order.
const (
	NameWte      = "wte"
	NameWpe      = "wpe"
	NameLn1w     = "ln1w"
	NameLn1b     = "ln1b"
	NameQkvw     = "qkvw"
	NameQkvb     = "qkvb"
	NameAttprojw = "attprojw"
	NameAttprojb = "attprojb"
	NameLn2w     = "ln2w"
	NameLn2b     = "ln2b"
	NameFcw      = "fcw"
	NameFcb      = "fcb"
	NameFcprojw  = "fcprojw"
	NameFcprojb  = "fcprojb"
	NameLnfw     = "lnfw"
	NameLnfb     = "lnfb"
)

// Index of each tensor in Layout's result.
const (
	IdxWte = iota
	IdxWpe
	IdxLn1w
	IdxLn1b
	IdxQkvw
	IdxQkvb
	IdxAttprojw
	IdxAttprojb
	IdxLn2w
	IdxLn2b
	IdxFcw
	IdxFcb
	IdxFcprojw
	IdxFcprojb
	IdxLnfw
	IdxLnfb
	NumTensors
)

// Layout returns the 16 parameter tensors in llm.c's order, contiguous in one
// flat array:
//
//	wte (V,C), wpe (MaxT,C), ln1w (L,C), ln1b (L,C), qkvw (L,3C,C), qkvb (L,3C),
//	attprojw (L,C,C), attprojb (L,C), ln2w (L,C), ln2b (L,C), fcw (L,4C,C),
//	fcb (L,4C), fcprojw (L,C,4C), fcprojb (L,C), lnfw (C), lnfb (C).
func Layout(d Dims) []Tensor {
	V, MaxT, L, C := d.V, d.MaxT, d.L, d.C
	return layoutOf([]tensorSpec{
		{NameWte, []int{V, C}},
		{NameWpe, []int{MaxT, C}},
		{NameLn1w, []int{L, C}},
		{NameLn1b, []int{L, C}},
		{NameQkvw, []int{L, 3 * C, C}},
		{NameQkvb, []int{L, 3 * C}},
		{NameAttprojw, []int{L, C, C}},
		{NameAttprojb, []int{L, C}},
		{NameLn2w, []int{L, C}},
		{NameLn2b, []int{L, C}},
		{NameFcw, []int{L, 4 * C, C}},
		{NameFcb, []int{L, 4 * C}},
		{NameFcprojw, []int{L, C, 4 * C}},
		{NameFcprojb, []int{L, C}},
		{NameLnfw, []int{C}},
		{NameLnfb, []int{C}},
	})
}

// NumParams is the total number of parameters (the length of the flat array).
func NumParams(d Dims) int { return flatSize(Layout(d)) }

// tensorSpec names one parameter tensor and its shape, for layoutOf.
type tensorSpec struct {
	name  string
	shape []int
}

// layoutOf lays the tensors out contiguously in one flat array, in order.
func layoutOf(spec []tensorSpec) []Tensor {
	out := make([]Tensor, len(spec))
	off := 0
	for i, s := range spec {
		size := 1
		for _, n := range s.shape {
			size *= n
		}
		out[i] = Tensor{Name: s.name, Shape: s.shape, Offset: off, Size: size}
		off += size
	}
	return out
}

// flatSize is the length of the flat array that holds layout ts.
func flatSize(ts []Tensor) int {
	last := ts[len(ts)-1]
	return last.Offset + last.Size
}

// Seed-stream constants: the second PCG word, which selects independent
// streams for the parameters and for the inputs of one seed.
const (
	paramStream = 0x9e3779b97f4a7c15
	inputStream = 0xd1b54a32d192ed03
)

// InitStd is the GPT-2 init standard deviation of weight matrices and
// embeddings.
const InitStd = 0.02

// InitParams returns GPT-2-initialized parameters in Layout order, drawn from
// rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)). Tensors are filled in
// Layout order, each element in row-major order: wte, wpe, qkvw, attprojw, fcw
// and fcprojw take NormFloat64()*std (computed in float64, then rounded to
// float32), with std = 0.02 except attprojw and fcprojw, which use
// 0.02/sqrt(2L). No random numbers are drawn for the other tensors: biases
// are 0, LayerNorm weights 1 and LayerNorm biases 0.
//
// The result is float32 so that a GPU model and the reference start from
// bit-identical values.
func InitParams(d Dims, seed uint64) []float32 {
	if err := validate(d); err != nil {
		panic(err)
	}
	rng := rand.New(rand.NewPCG(seed, paramStream))
	p := make([]float32, NumParams(d))
	projStd := InitStd
	if d.L > 0 {
		projStd = InitStd / math.Sqrt(2*float64(d.L))
	}
	for _, t := range Layout(d) {
		dst := p[t.Offset : t.Offset+t.Size]
		var std float64
		switch t.Name {
		case NameWte, NameWpe, NameQkvw, NameFcw:
			std = InitStd
		case NameAttprojw, NameFcprojw:
			std = projStd
		case NameLn1w, NameLn2w, NameLnfw:
			for i := range dst {
				dst[i] = 1
			}
			continue
		default: // biases
			continue
		}
		for i := range dst {
			dst[i] = float32(rng.NormFloat64() * std)
		}
	}
	return p
}

// Inputs returns B*T tokens and then B*T targets, each uniform in [0, V),
// drawn with IntN(V) from rand.New(rand.NewPCG(seed, 0xd1b54a32d192ed03)), a
// stream independent of InitParams'. All tokens are drawn before the targets.
func Inputs(d Dims, seed uint64) (tokens, targets []int32) {
	if err := validate(d); err != nil {
		panic(err)
	}
	rng := rand.New(rand.NewPCG(seed, inputStream))
	n := d.B * d.T
	tokens = make([]int32, n)
	targets = make([]int32, n)
	for i := range tokens {
		tokens[i] = int32(rng.IntN(d.V))
	}
	for i := range targets {
		targets[i] = int32(rng.IntN(d.V))
	}
	return tokens, targets
}

// Views splits a flat parameter (or gradient) array into its Layout tensors,
// without copying: views[i] aliases flat[t.Offset : t.Offset+t.Size].
func Views[E any](d Dims, flat []E) [][]E {
	ts := Layout(d)
	if len(flat) != NumParams(d) {
		panic(fmt.Sprintf("ref: flat array has %d elements, want %d", len(flat), NumParams(d)))
	}
	out := make([][]E, len(ts))
	for i, t := range ts {
		out[i] = flat[t.Offset : t.Offset+t.Size : t.Offset+t.Size]
	}
	return out
}
