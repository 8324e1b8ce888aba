// Package config holds gpubench's run configuration: the model presets, the
// flags that override them, and the validation that runs before any GPU call.
//
// It imports nothing that touches CUDA, so it is tested everywhere.
package config

import (
	"fmt"
	"github.com/gpubench/gpubench/ptx"
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

// The kernel limits Validate checks, from package ptx, whose constants.go
// is tested against the .cu sources.
const (
	// maxIndex bounds the element count of every buffer a kernel indexes.
	// The kernels compute flat offsets such as row*V+col in 32-bit int; the
	// largest such buffers are the logits (B*T*V), the MLP activations
	// (B*T*4C) and one layer's MLP weight (4C*C). (Stacked per-layer
	// tensors are addressed layer by layer from Go, in 64 bits.)
	maxIndex = ptx.MaxIndex
	// maxHeadSize is the attention kernels' largest head size C/NH
	// (ATT_HS_MAX in attention.cu).
	maxHeadSize = ptx.AttentionMaxHeadSize
	// maxGridYZ is CUDA's limit on gridDim.y and gridDim.z; the attention
	// kernels' grid is (T/tile, NH, B).
	maxGridYZ = ptx.MaxGridYZ
)

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

// Validate checks the shape against every limit of the kernels, so that a
// shape they cannot run fails here, before a GPU is touched, rather than
// after allocation. It returns one error naming the first bad value, the
// flag that sets it and what is allowed. The limits, in the order checked:
//
//   - every dimension at least 1, and V at least 2;
//   - T ≤ MaxT (the position embedding has MaxT rows);
//   - NH divides C;
//   - head size C/NH ≤ ptx.AttentionMaxHeadSize (ATT_HS_MAX): the
//     attention kernels have tiles for no larger head;
//   - the 32-bit indexing (ptx.MaxIndex): each weight (V×C, MaxT×C, 4C×C)
//     and each activation (B·T·V logits, B·T·4C) within 2^31−1 elements;
//   - B ≤ ptx.MaxGridYZ: the attention kernels' grid is (T/tile, NH, B).
//
// Limits that the ones above imply, so that no shape reaches them (the
// tests check each implication):
//
//   - NH ≤ ptx.MaxGridYZ (attention grid y): NH ≤ C, and 4C·C ≤ 2^31−1
//     keeps C ≤ 23170;
//   - ceil(C/ptx.EncoderWTECols) ≤ ptx.MaxGridYZ (encoder_backward_wte's
//     grid y), by the same bound on C;
//   - every 1-D grid (N = B·T blocks of the cross-entropy, ceil(T/tile),
//     N/LayerNormBwdRows, ...) ≤ ptx.MaxGridX = 2^31−1: N ≤ B·T·V ≤ 2^31−1.
//
// There is no alignment limit: every float4 path falls back to scalar
// code when C (or a pointer) is not a multiple of 4 (encoder_forward,
// the GEMM's loads and stores, gelu and residual), and the attention
// kernels pad any head size to their tile. Nor does any shared-memory
// size depend on the shape: every kernel's is static.
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
	if err := d.validateHeadSize(); err != nil {
		return err
	}
	if err := d.validateWeights(); err != nil {
		return err
	}
	return d.validateBatch()
}

// validateHeadSize checks C/NH against the attention kernels' largest
// head size, and says which --heads would do at this --channels (a divisor
// of C, since NH must divide it) and which --channels at this --heads.
func (d Dims) validateHeadSize() error {
	const limit = maxHeadSize
	hs := d.HeadSize()
	if hs <= limit {
		return nil
	}
	least := (d.C + limit - 1) / limit // the fewest heads with hs ≤ limit
	smallest := smallestDivisorFrom(d.C, least)
	heads := fmt.Sprintf("--heads ≥ %d that divides %d", least, d.C)
	if smallest != least {
		heads += fmt.Sprintf(", the smallest being %d", smallest)
	}
	return fmt.Errorf("--heads: %d makes head size %d/%d = %d, over the attention kernels' limit %d (allowed at --channels=%d: %s; or, at --heads=%d, --channels ≤ %d)",
		d.NH, d.C, d.NH, hs, limit, d.C, heads, d.NH, limit*d.NH)
}

// smallestDivisorFrom is the smallest divisor of n that is at least k
// (n itself at the latest), found through the divisor pairs (i, n/i) with
// i ≤ √n, so that a large prime n costs √n steps rather than n.
func smallestDivisorFrom(n, k int) int {
	best := n
	for i := 1; i*i <= n; i++ {
		if n%i != 0 {
			continue
		}
		for _, q := range []int{i, n / i} {
			if q >= k && q < best {
				best = q
			}
		}
	}
	return best
}

// validateWeights checks the weights against the 32-bit indexing. Each is
// blamed on the flag that makes it large: the token embedding (V×C) on
// --vocab, the position embedding (MaxT×C) on --context, the MLP weight
// (4C×C) on --channels.
func (d Dims) validateWeights() error {
	c := int64(d.C)
	if n := 4 * c * c; n > maxIndex {
		return fmt.Errorf("--channels: %d makes the MLP weight 4C×C = %d elements, over the kernels' 32-bit index limit %d (allowed: 1..%d)",
			d.C, n, maxIndex, maxChannels())
	}
	if n := int64(d.V) * c; n > maxIndex {
		return fmt.Errorf("--vocab: %d makes the token embedding V×C = %d×%d = %d elements, over the kernels' 32-bit index limit %d (allowed: 2..%d at --channels=%d)",
			d.V, d.V, d.C, n, maxIndex, maxIndex/c, d.C)
	}
	if n := int64(d.MaxT) * c; n > maxIndex {
		return fmt.Errorf("--context: %d makes the position embedding MaxT×C = %d×%d = %d elements, over the kernels' 32-bit index limit %d (allowed: 1..%d at --channels=%d)",
			d.MaxT, d.MaxT, d.C, n, maxIndex, maxIndex/c, d.C)
	}
	return nil
}

// maxChannels is the largest C whose MLP weight 4C×C the kernels can index.
func maxChannels() int {
	c := 1
	for 4*int64(c+1)*int64(c+1) <= maxIndex {
		c++
	}
	return c
}

// validateBatch checks the activations, which grow with B·T, against the
// 32-bit indexing, and B against the attention kernels' grid z. The
// largest activation of one sequence is its logits (T×V) or its MLP
// hidden rows (T×4C); when even one sequence is too large, --seq-len is
// at fault, otherwise --batch-size.
func (d Dims) validateBatch() error {
	width := int64(max(d.V, 4*d.C))
	what, one := "logits B·T·V", "logits T·V"
	if int64(d.V) < 4*int64(d.C) {
		what, one = "MLP activations B·T·4C", "MLP activations T·4C"
	}
	perSequence := int64(d.T) * width
	if perSequence > maxIndex {
		return fmt.Errorf("--seq-len: %d makes one sequence's %s = %d elements, over the kernels' 32-bit index limit %d (allowed: 1..%d at this --vocab and --channels)",
			d.T, one, perSequence, maxIndex, maxIndex/width)
	}
	maxB := min(maxIndex/perSequence, maxGridYZ)
	if n := int64(d.B) * perSequence; n > maxIndex {
		return fmt.Errorf("--batch-size: %d makes the %s = %d elements, over the kernels' 32-bit index limit %d (allowed: 1..%d at this shape)",
			d.B, what, n, maxIndex, maxB)
	}
	if d.B > maxGridYZ {
		return fmt.Errorf("--batch-size: %d is over the attention kernels' grid limit %d (B is their grid z; allowed: 1..%d at this shape)",
			d.B, maxGridYZ, maxB)
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
func ParseMode(s string) (Mode, error) { return parseChoice("--mode", "mode", s, []Mode{Train, Infer}) }
