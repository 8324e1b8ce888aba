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

// Arch is a model architecture.
type Arch string

// The architectures.
const (
	// GPT2 is GPT-2: learned position embeddings, LayerNorm, a GELU MLP of
	// width 4C, multi-head attention, biases, the lm head tied to the token
	// embedding.
	GPT2 Arch = "gpt2"
	// Llama is LLaMA: rotary position embeddings, RMSNorm, a SwiGLU MLP,
	// grouped-query attention, no biases, an untied output head.
	Llama Arch = "llama"
)

// Dims are the shape of the model and of one batch.
type Dims struct {
	Arch Arch `json:",omitempty"` // "" means GPT2 (omitted: a GPT-2 dump's config.json stays as torch_check.py reads it)
	V    int  // vocabulary size
	MaxT int  // context length: rows of the position embedding (GPT-2), longest sequence (LLaMA)
	T    int  // sequence length of a batch, at most MaxT; the prompt length in generate mode
	L    int  // transformer blocks
	NH   int  // attention heads
	C    int  // channels; C/NH is the head size
	B    int  // batch size

	// LLaMA only (zero for GPT-2):
	KVH    int     `json:",omitempty"` // key/value heads, a divisor of NH (grouped-query attention)
	Hidden int     `json:",omitempty"` // the SwiGLU MLP's width
	Eps    float64 `json:",omitempty"` // RMSNorm epsilon
	Theta  float64 `json:",omitempty"` // RoPE base
	// New is the number of tokens generate mode makes per sequence: the
	// prefill's, then one per decode step (New-1 steps); 0 in train and
	// infer mode.
	New int `json:",omitempty"`
}

// IsLlama reports whether the shape is a LLaMA's.
func (d Dims) IsLlama() bool { return d.Arch == Llama }

// KVHeads is the number of key/value heads: KVH for LLaMA, NH for GPT-2.
func (d Dims) KVHeads() int {
	if d.IsLlama() {
		return d.KVH
	}
	return d.NH
}

// MLPWidth is the width of the MLP's hidden activation: 4C for GPT-2,
// Hidden for LLaMA.
func (d Dims) MLPWidth() int {
	if d.IsLlama() {
		return d.Hidden
	}
	return 4 * d.C
}

// KVLen is the number of positions the KV cache of generate mode holds:
// the prompt's T and the New-1 decode steps' (the last new token is
// never fed back).
func (d Dims) KVLen() int { return d.T + d.New - 1 }

// Preset is a named model shape.
type Preset struct {
	Name string
	Arch Arch // "" means GPT2
	V    int
	T    int // context length, and the default sequence length
	L    int
	NH   int
	C    int
	// LLaMA only:
	KVH, Hidden int
	Eps, Theta  float64
	// Prompt and New are generate mode's default --prompt-len and
	// --new-tokens.
	Prompt, New int
}

// Presets are the model shapes gpubench knows by name. The LLaMA ones are
// Meta's published shapes; llama-tiny is small enough for the float64
// reference on CI, with fewer key/value heads than heads.
var Presets = []Preset{
	{Name: "tiny", V: 512, T: 64, L: 2, NH: 4, C: 128},
	{Name: "small", V: 8192, T: 256, L: 6, NH: 8, C: 512},
	{Name: "gpt2-124m", V: 50257, T: 1024, L: 12, NH: 12, C: 768},
	{Name: "llama-tiny", Arch: Llama, V: 512, T: 64, L: 2, NH: 4, C: 128, KVH: 2, Hidden: 352, Eps: 1e-5, Theta: 10000, Prompt: 32, New: 16},
	{Name: "llama2-7b", Arch: Llama, V: 32000, T: 4096, L: 32, NH: 32, C: 4096, KVH: 32, Hidden: 11008, Eps: 1e-5, Theta: 10000, Prompt: 512, New: 64},
	{Name: "llama3-8b", Arch: Llama, V: 128256, T: 8192, L: 32, NH: 32, C: 4096, KVH: 8, Hidden: 14336, Eps: 1e-5, Theta: 500000, Prompt: 512, New: 64},
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
	d := Dims{Arch: p.Arch, V: p.V, MaxT: p.T, T: p.T, L: p.L, NH: p.NH, C: p.C, B: batch}
	if p.Arch == Llama {
		d.KVH, d.Hidden, d.Eps, d.Theta = p.KVH, p.Hidden, p.Eps, p.Theta
	}
	return d
}

// HeadSize is C/NH.
func (d Dims) HeadSize() int { return d.C / d.NH }

// Rows is B*T, the number of token positions in a batch.
func (d Dims) Rows() int { return d.B * d.T }

// String formats the shape as the flags that would reproduce it.
func (d Dims) String() string {
	s := fmt.Sprintf("V=%d MaxT=%d T=%d L=%d H=%d C=%d B=%d", d.V, d.MaxT, d.T, d.L, d.NH, d.C, d.B)
	if d.IsLlama() {
		s = "llama " + s + fmt.Sprintf(" KV=%d MLP=%d", d.KVH, d.Hidden)
		if d.New > 0 {
			s += fmt.Sprintf(" new=%d", d.New)
		}
	}
	return s
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
	mlp := int64(d.mlpProduct())
	logitRows := rows
	if d.New > 0 { // generate: the head runs on each sequence's last row only
		logitRows = int64(d.B)
	}
	kv := int64(d.B) * int64(d.KVLen()) * int64(d.KVHeads()) * int64(d.HeadSize()) // generate's KV cache of a layer
	return max(
		kv,
		logitRows*int64(d.V),     // logits
		rows*mlp,                 // MLP hidden activations
		mlp*int64(d.C),           // one layer's fc (w13) weight
		int64(d.V)*int64(d.C),    // token embedding
		int64(d.MaxT)*int64(d.C), // position embedding; LLaMA's KV cache rows are shorter
	)
}

// mlpProduct is the width of the MLP's first product: GPT-2's fc (4C),
// LLaMA's packed gate and up projections (2·Hidden).
func (d Dims) mlpProduct() int {
	if d.IsLlama() {
		return 2 * d.Hidden
	}
	return 4 * d.C
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
	if err := d.validateLlama(); err != nil {
		return err
	}
	if err := d.validateWeights(); err != nil {
		return err
	}
	return d.validateBatch()
}

// validateLlama checks what only a LLaMA shape has: key/value heads that
// divide the heads, an even head size (RoPE rotates pairs), an MLP width,
// and in generate mode a prompt and its new tokens that fit the context.
// GPT-2 shapes must leave those zero.
func (d Dims) validateLlama() error {
	if !d.IsLlama() {
		if d.KVH != 0 && d.KVH != d.NH {
			return fmt.Errorf("--kv-heads: GPT-2 has one key/value head per head (allowed: a LLaMA preset: %s)", strings.Join(LlamaPresetNames(), ", "))
		}
		if d.Hidden != 0 {
			return fmt.Errorf("--mlp: GPT-2's MLP is 4C wide (allowed: a LLaMA preset: %s)", strings.Join(LlamaPresetNames(), ", "))
		}
		return nil
	}
	if d.KVH <= 0 || d.NH%d.KVH != 0 {
		return fmt.Errorf("--kv-heads: %d does not divide --heads %d (allowed: %s)", d.KVH, d.NH, joinInts(divisors(d.NH)))
	}
	if d.HeadSize()%2 != 0 {
		return fmt.Errorf("--heads: %d makes head size %d/%d = %d, which is odd; rotary embeddings rotate pairs of channels (allowed: an even C/H)", d.NH, d.C, d.NH, d.HeadSize())
	}
	if d.Hidden <= 0 {
		return fmt.Errorf("--mlp: %d is not allowed (must be at least 1)", d.Hidden)
	}
	if !(d.Eps > 0) || !(d.Theta > 0) {
		return fmt.Errorf("the preset's RMSNorm epsilon %g and RoPE base %g must both be positive", d.Eps, d.Theta)
	}
	if d.New < 0 {
		return fmt.Errorf("--new-tokens: %d is not allowed (must be at least 1)", d.New)
	}
	if d.New > 0 && d.KVLen() > d.MaxT {
		return fmt.Errorf("--prompt-len: %d with --new-tokens %d needs %d positions, over the context %d (allowed: prompt-len + new-tokens − 1 ≤ %d)",
			d.T, d.New, d.KVLen(), d.MaxT, d.MaxT)
	}
	return nil
}

// divisors lists n's divisors in increasing order.
func divisors(n int) []int {
	var ds []int
	for i := 1; i <= n; i++ {
		if n%i == 0 {
			ds = append(ds, i)
		}
	}
	return ds
}

// LlamaPresetNames lists the LLaMA presets.
func LlamaPresetNames() []string {
	var names []string
	for _, p := range Presets {
		if p.Arch == Llama {
			names = append(names, p.Name)
		}
	}
	return names
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
	if d.IsLlama() {
		if n := int64(d.mlpProduct()) * c; n > maxIndex {
			return fmt.Errorf("--mlp: %d makes the gate and up weight 2·MLP×C = %d elements, over the kernels' 32-bit index limit %d (allowed: 1..%d at --channels=%d)",
				d.Hidden, n, maxIndex, maxIndex/(2*c), d.C)
		}
	} else if n := 4 * c * c; n > maxIndex {
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
	// In generate mode the head runs on each sequence's last row only, so
	// the logits (B·V) do not grow with T.
	v := d.V
	if d.New > 0 {
		v = 0
	}
	width := int64(max(v, d.mlpProduct()))
	what, one := "logits B·T·V", "logits T·V"
	if v < d.mlpProduct() {
		what, one = "MLP activations B·T·4C", "MLP activations T·4C"
		if d.IsLlama() {
			what, one = "MLP activations B·T·2·MLP", "MLP activations T·2·MLP"
		}
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

// Generate is LLM inference as a server runs it: a prefill of the batch's
// prompts, then one token per decode step with a KV cache (LLaMA only).
const Generate Mode = "generate"

// ParseMode checks a --mode value.
func ParseMode(s string) (Mode, error) {
	return parseChoice("--mode", "mode", s, []Mode{Train, Infer, Generate})
}
