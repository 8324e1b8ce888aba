package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/ptx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPresetsMatchTheTable(t *testing.T) {
	// The README's and the preset table, written out again so a
	// change to Presets is a deliberate one.
	want := map[string]Dims{
		"tiny":      {V: 512, MaxT: 64, T: 64, L: 2, NH: 4, C: 128, B: 8},
		"small":     {V: 8192, MaxT: 256, T: 256, L: 6, NH: 8, C: 512, B: 8},
		"gpt2-124m": {V: 50257, MaxT: 1024, T: 1024, L: 12, NH: 12, C: 768, B: 8},
		// The LLaMA shapes (Meta's published configurations).
		"llama-tiny": {Arch: Llama, V: 512, MaxT: 64, T: 64, L: 2, NH: 4, C: 128, B: 8, KVH: 2, Hidden: 352, Eps: 1e-5, Theta: 10000},
		"llama2-7b":  {Arch: Llama, V: 32000, MaxT: 4096, T: 4096, L: 32, NH: 32, C: 4096, B: 8, KVH: 32, Hidden: 11008, Eps: 1e-5, Theta: 10000},
		"llama3-8b":  {Arch: Llama, V: 128256, MaxT: 8192, T: 8192, L: 32, NH: 32, C: 4096, B: 8, KVH: 8, Hidden: 14336, Eps: 1e-5, Theta: 500000},
	}
	require.Len(t, Presets, len(want))
	for name, d := range want {
		p, err := LookupPreset(name)
		require.NoError(t, err)
		assert.Equal(t, d, p.Dims(DefaultBatch), name)
		if name != "llama3-8b" { // its batch-8 train step's logits pass the 32-bit index limit: generate is its mode
			assert.NoError(t, p.Dims(DefaultBatch).Validate(), name)
		}
	}
}

// TestLlamaRuns: the LLaMA presets in each mode, generate's defaults and
// flags, and what each refuses, with one line naming the flag.
func TestLlamaRuns(t *testing.T) {
	r, err := ParseRun([]string{"--model=llama2-7b", "--mode=generate"})
	require.NoError(t, err)
	assert.Equal(t, Generate, r.Mode)
	assert.Equal(t, 512, r.Dims.T)
	assert.Equal(t, 64, r.Dims.New)
	assert.Equal(t, 575, r.Dims.KVLen())
	assert.Equal(t, "llama2-7b", r.Model())

	r, err = ParseRun([]string{"--model=llama-tiny", "--mode=generate", "--prompt-len=7", "--new-tokens=3", "--kv-heads=1", "--batch-size=3"})
	require.NoError(t, err)
	assert.Equal(t, Dims{Arch: Llama, V: 512, MaxT: 64, T: 7, L: 2, NH: 4, C: 128, B: 3, KVH: 1, Hidden: 352, Eps: 1e-5, Theta: 10000, New: 3}, r.Dims)
	assert.Equal(t, Custom, r.Model(), "fewer key/value heads is another model")

	r, err = ParseRun([]string{"--model=llama-tiny", "--seq-len=33"})
	require.NoError(t, err)
	assert.Equal(t, Train, r.Mode)
	assert.Equal(t, 33, r.Dims.T)
	assert.Equal(t, 0, r.Dims.New)

	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--model=llama-tiny", "--mode=generate", "--prompt-len=60", "--new-tokens=6"}, []string{"--prompt-len: 60", "65 positions", "context 64"}},
		{[]string{"--model=llama-tiny", "--mode=generate", "--prompt-len=60", "--new-tokens=5"}, nil},
		{[]string{"--model=llama-tiny", "--kv-heads=3"}, []string{"--kv-heads: 3 does not divide --heads 4", "1, 2, 4"}},
		{[]string{"--model=llama-tiny", "--kv-heads=0"}, []string{"--kv-heads: 0"}},
		{[]string{"--model=llama-tiny", "--heads=8", "--channels=120", "--kv-heads=2"}, []string{"head size", "odd"}},
		{[]string{"--model=llama-tiny", "--mlp=0"}, []string{"--mlp: 0"}},
		{[]string{"--model=llama-tiny", "--mode=generate", "--new-tokens=0"}, []string{"--new-tokens: 0"}},
		{[]string{"--model=llama-tiny", "--mode=generate", "--prompt-len=0"}, []string{"--prompt-len: 0"}},
		{[]string{"--model=llama-tiny", "--mode=generate", "--seq-len=8"}, []string{"--seq-len", "--prompt-len"}},
		{[]string{"--model=llama-tiny", "--prompt-len=8"}, []string{"--prompt-len", "generate"}},
		{[]string{"--model=tiny", "--mode=generate"}, []string{"--mode=generate", "LLaMA preset", "llama-tiny"}},
		{[]string{"--model=tiny", "--kv-heads=2"}, []string{"--kv-heads", "GPT-2"}},
		{[]string{"--model=tiny", "--mlp=100"}, []string{"--mlp", "GPT-2"}},
		{[]string{"--model=llama-tiny", "--mode=generate", "--check-numerics"}, []string{"--check-numerics", "generate"}},
		{[]string{"--model=llama-tiny", "--mode=generate", "--flaw=host-stall"}, []string{"--flaw", "generate"}},
		{[]string{"--model=llama-tiny", "--mode=fly"}, []string{"--mode", "generate"}},
	}
	for _, c := range cases {
		_, err := ParseRun(c.args)
		if c.want == nil {
			assert.NoError(t, err, c.args)
			continue
		}
		if assert.Error(t, err, c.args) {
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w, c.args)
			}
			assert.NotContains(t, err.Error(), "\n", c.args)
		}
	}
}

func TestParseRunDefaults(t *testing.T) {
	r, err := ParseRun(nil)
	require.NoError(t, err)
	assert.Equal(t, "small", r.Preset)
	assert.Equal(t, Dims{V: 8192, MaxT: 256, T: 256, L: 6, NH: 8, C: 512, B: 8}, r.Dims)
	assert.Equal(t, Train, r.Mode)
	assert.Equal(t, FP32, r.DType)
	assert.Equal(t, DefaultWarmup, r.Warmup)
	assert.Equal(t, DefaultIters, r.Iters)
	assert.False(t, r.Profile)
}

func TestParseRunOverrides(t *testing.T) {
	r, err := ParseRun([]string{"--model=tiny", "--batch-size", "3", "--vocab=1000", "--seq-len=37",
		"--layers=2", "--heads=3", "--channels=96", "--mode=infer", "--iters=4", "--warmup=0", "--profile"})
	require.NoError(t, err)
	assert.Equal(t, Dims{V: 1000, MaxT: 64, T: 37, L: 2, NH: 3, C: 96, B: 3}, r.Dims)
	assert.Equal(t, Infer, r.Mode)
	assert.Equal(t, 4, r.Iters)
	assert.Equal(t, 0, r.Warmup)
	assert.True(t, r.Profile)
}

// TestParseRunRejects: every bad input gets one line naming the flag and
// what it allows.
func TestParseRunRejects(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string // substrings of the one-line error
	}{
		{"unknown preset", []string{"--model=huge"}, []string{"--model", `"huge"`, "tiny, small, gpt2-124m"}},
		{"zero batch", []string{"--batch-size=0"}, []string{"--batch-size", "at least 1"}},
		{"negative batch", []string{"--batch-size=-4"}, []string{"--batch-size", "at least 1"}},
		{"zero layers", []string{"--layers=0"}, []string{"--layers", "at least 1"}},
		{"negative heads", []string{"--heads=-2"}, []string{"--heads", "at least 1"}},
		{"minus one is a value, not unset", []string{"--vocab=-1"}, []string{"--vocab", "-1", "at least"}},
		{"zero channels", []string{"--channels=0"}, []string{"--channels", "at least 1"}},
		{"zero seq-len", []string{"--seq-len=0"}, []string{"--seq-len", "at least 1"}},
		{"C not divisible by H", []string{"--channels=100", "--heads=3"}, []string{"--channels", "100", "--heads 3"}},
		{"T over the preset's context", []string{"--model=tiny", "--seq-len=65"}, []string{"--seq-len", "65", "context 64", "1..64"}},
		{"T over an explicit context", []string{"--context=32", "--seq-len=33"}, []string{"--seq-len", "33", "1..32"}},
		{"V under 2", []string{"--vocab=1"}, []string{"--vocab", "at least 2"}},
		{"iters under 1", []string{"--iters=0"}, []string{"--iters", "at least 1"}},
		{"warmup under 0", []string{"--warmup=-1"}, []string{"--warmup", "at least 0"}},
		{"graph with sync-launches", []string{"--graph", "--sync-launches"}, []string{"--graph", "--sync-launches"}},
		{"batch too large for 32-bit indexing", []string{"--model=gpt2-124m", "--batch-size=100"}, []string{"--batch-size", "32-bit", "1..41"}},
		{"weight too large for 32-bit indexing", []string{"--channels=32768", "--heads=256"}, []string{"--channels", "32-bit", "1..23170"}},
		{"head size over the attention kernels' limit", []string{"--channels=512", "--heads=2"}, []string{"--heads", "512/2 = 256", "limit 128", "--heads ≥ 4"}},
		{"batch over the attention grid", []string{"--model=tiny", "--seq-len=1", "--batch-size=65536"}, []string{"--batch-size", "grid limit 65535", "1..65535"}},
		{"unknown mode", []string{"--mode=eval"}, []string{"--mode", "train, infer"}},
		{"unknown dtype", []string{"--dtype=fp16"}, []string{"--dtype", `"fp16"`, "fp32, tf32, bf16"}},
		{"dtype case", []string{"--dtype=BF16"}, []string{"--dtype", "fp32, tf32, bf16"}},
		{"profile iters past the end", []string{"--iters=10", "--profile-iters=5-10"}, []string{"--profile-iters", `"5-10"`, "past the last", "--iters = 10"}},
		{"profile iters backwards", []string{"--profile-iters=4-2"}, []string{"--profile-iters", "ends before it starts"}},
		{"profile iters not a range", []string{"--profile-iters=two"}, []string{"--profile-iters", "not a number"}},
		{"profile iters negative", []string{"--profile-iters=-1"}, []string{"--profile-iters"}},
		{"profile windows with iters", []string{"--profile-windows=2", "--profile-iters=1-2"}, []string{"--profile-windows", "--profile-iters"}},
		{"profile windows over iters", []string{"--iters=3", "--profile-windows=4"}, []string{"--profile-windows", "4", "1..--iters = 3"}},
		{"unknown nvtx depth", []string{"--nvtx=kernel"}, []string{"--nvtx", `"kernel"`, "iteration, layer, op"}},
		{"nvtx depth with graph", []string{"--nvtx=layer", "--graph"}, []string{"--graph", "--nvtx=layer", "--nvtx=iteration"}},
		{"nvtx domain with @", []string{"--nvtx-domain=a@b"}, []string{"--nvtx-domain", "'@'"}},
		{"nvtx domain with space", []string{"--nvtx-domain=a b"}, []string{"--nvtx-domain", "printable ASCII"}},
		{"nvtx domain too long", []string{"--nvtx-domain=" + strings.Repeat("d", 65)}, []string{"--nvtx-domain", "65 characters", "at most 64"}},
		{"bf16 head size", []string{"--model=tiny", "--dtype=bf16", "--heads=8"}, []string{"--dtype=bf16", "128/8 = 16", "allowed: 32, 64, 128", "--dtype=fp32"}},
		{"dump with infer", []string{"--mode=infer", "--dump=/tmp/x"}, []string{"--dump", "--mode=train"}},
		{"check-numerics with infer", []string{"--mode=infer", "--check-numerics"}, []string{"--check-numerics", "--mode=train"}},
		{"unknown flag", []string{"--batch=8"}, []string{"unknown flag", "-batch"}},
		{"not a number", []string{"--iters=ten"}, []string{"--iters", `"ten"`, "not a valid value"}},
		{"stray argument", []string{"extra"}, []string{"unexpected argument", "extra"}},
		{"negative device", []string{"--device=-1"}, []string{"--device", "at least 0"}},
		{"json in a missing directory", []string{"--json=/nonexistent/dir/x.json"}, []string{"--json: /nonexistent/dir/x.json: ", "/nonexistent/dir does not exist"}},
		{"json is a directory", []string{"--json=testdata"}, []string{"--json: testdata: ", "is a directory"}},
		{"dump under a file", []string{"--dump=config.go/dump"}, []string{"--dump: config.go/dump: ", "config.go is a file"}},
		{"scaling without gpus", []string{"--scaling"}, []string{"--scaling", "--gpus=N"}},
		{"no GPUs", []string{"--gpus=0"}, []string{"--gpus: 0 is not allowed", "1..64"}},
		{"too many GPUs", []string{"--gpus=65"}, []string{"--gpus: 65 is not allowed"}},
		{"gpus not a number", []string{"--gpus=two"}, []string{"--gpus", `"two"`, "not a valid value"}},
		{"gpus with infer", []string{"--gpus=2", "--mode=infer"}, []string{"--gpus", "--mode=train"}},
		{"gpus with graph", []string{"--gpus=2", "--graph"}, []string{"--gpus", "--graph"}},
		{"gpus with device", []string{"--gpus=2", "--device=1"}, []string{"--gpus", "--device", "CUDA_VISIBLE_DEVICES"}},
		{"gpus with a flaw", []string{"--gpus=2", "--flaw=host-stall"}, []string{"--gpus", "--flaw"}},
		{"gpus with a LLaMA", []string{"--gpus=2", "--model=llama-tiny"}, []string{"--gpus", "LLaMA"}},
		{"gpus with dump", []string{"--gpus=2", "--dump=/tmp/x"}, []string{"--gpus", "--dump"}},
		{"gpus with json", []string{"--gpus=2", "--json=/tmp/x.json"}, []string{"--gpus", "--json"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRun(c.args)
			require.Error(t, err)
			msg := err.Error()
			assert.NotContains(t, msg, "\n", "the error must be one line")
			for _, w := range c.want {
				assert.Contains(t, msg, w)
			}
		})
	}
}

func TestParseRunHelp(t *testing.T) {
	_, err := ParseRun([]string{"--help"})
	assert.True(t, errors.Is(err, ErrHelp))
	var b strings.Builder
	Usage(&b)
	for _, flag := range []string{"-model", "-batch-size", "-iters", "-warmup", "-profile", "-mode", "-json"} {
		assert.Contains(t, b.String(), flag)
	}
}

func TestLargestBatchAtIndexLimit(t *testing.T) {
	// The largest accepted batch must be accepted and the next one refused.
	p, _ := LookupPreset("gpt2-124m")
	d := p.Dims(1)
	rows := int64(d.T) * int64(d.V)
	maxB := int((1<<31 - 1) / rows)
	assert.NoError(t, p.Dims(maxB).Validate())
	assert.Error(t, p.Dims(maxB+1).Validate())
}

// FuzzParseRun: no input makes ParseRun panic, and everything it accepts
// is a valid shape.
func FuzzParseRun(f *testing.F) {
	f.Add("--model=tiny", "--batch-size=8", "--heads=4")
	f.Add("--channels=-1", "--seq-len=99999", "--vocab=0")
	f.Add("--model=gpt2-124m", "--batch-size=2147483647", "--iters=1")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		r, err := ParseRun([]string{a, b, c})
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		if verr := r.Dims.Validate(); verr != nil {
			t.Errorf("accepted an invalid shape %v: %v", r.Dims, verr)
		}
		if r.Iters < 1 || r.Warmup < 0 {
			t.Errorf("accepted iters %d warmup %d", r.Iters, r.Warmup)
		}
	})
}

// TestValidateLimits: one row per limit of Validate, each with the last
// shape that passes and the first that fails, whose error must be one line
// naming the flag and what it allows.
func TestValidateLimits(t *testing.T) {
	// base is the smallest valid shape; each row changes what it tests.
	base := Dims{V: 2, MaxT: 1, T: 1, L: 1, NH: 1, C: 1, B: 1}
	with := func(f func(*Dims)) Dims {
		d := base
		f(&d)
		return d
	}
	gpt2, _ := LookupPreset("gpt2-124m")
	tiny, _ := LookupPreset("tiny")
	tinyT1 := func(b int) Dims { d := tiny.Dims(b); d.T = 1; return d }
	cases := []struct {
		name       string
		pass, fail Dims
		flag       string
		want       []string
	}{
		{"vocab at least 1", base, with(func(d *Dims) { d.V = 0 }), "--vocab", []string{"at least 1"}},
		{"vocab at least 2", base, with(func(d *Dims) { d.V = 1 }), "--vocab", []string{"1", "at least 2"}},
		{"context at least 1", base, with(func(d *Dims) { d.MaxT, d.T = 0, 0 }), "--context", []string{"at least 1"}},
		{"seq-len at least 1", base, with(func(d *Dims) { d.T = 0 }), "--seq-len", []string{"at least 1"}},
		{"layers at least 1", base, with(func(d *Dims) { d.L = 0 }), "--layers", []string{"at least 1"}},
		{"heads at least 1", base, with(func(d *Dims) { d.NH = 0 }), "--heads", []string{"at least 1"}},
		{"channels at least 1", base, with(func(d *Dims) { d.C = 0 }), "--channels", []string{"at least 1"}},
		{"batch-size at least 1", base, with(func(d *Dims) { d.B = 0 }), "--batch-size", []string{"at least 1"}},
		{"seq-len within the context",
			with(func(d *Dims) { d.MaxT, d.T = 8, 8 }), with(func(d *Dims) { d.MaxT, d.T = 8, 9 }),
			"--seq-len", []string{"9", "context length 8", "1..8"}},
		{"heads divide channels",
			with(func(d *Dims) { d.C, d.NH = 6, 3 }), with(func(d *Dims) { d.C, d.NH = 6, 4 }),
			"--channels", []string{"6", "--heads 4"}},
		{"head size at most ATT_HS_MAX",
			with(func(d *Dims) { d.C = ptx.AttentionMaxHeadSize }), with(func(d *Dims) { d.C = ptx.AttentionMaxHeadSize + 1 }),
			"--heads", []string{"head size 129/1 = 129", "limit 128", "--heads ≥ 2 that divides 129, the smallest being 3", "--channels ≤ 128"}},
		{"head size, at fewer heads",
			with(func(d *Dims) { d.C, d.NH = 512, 4 }), with(func(d *Dims) { d.C, d.NH = 512, 2 }),
			"--heads", []string{"2 makes head size 512/2 = 256", "limit 128", "--channels=512: --heads ≥ 4 that divides 512;", "--heads=2, --channels ≤ 256"}},
		// 4·23170² ≤ 2^31−1 < 4·23171²; the heads keep each head size ≤ 128.
		{"MLP weight within 32-bit indexing",
			with(func(d *Dims) { d.C, d.NH = 23170, 331 }), with(func(d *Dims) { d.C, d.NH = 23171, 493 }),
			"--channels", []string{"23171", "4C×C", "32-bit", "1..23170"}},
		{"token embedding within 32-bit indexing",
			with(func(d *Dims) { d.C, d.V = 4, ptx.MaxIndex/4 }), with(func(d *Dims) { d.C, d.V = 4, ptx.MaxIndex/4+1 }),
			"--vocab", []string{"V×C", "32-bit", "2..536870911 at --channels=4"}},
		{"position embedding within 32-bit indexing",
			with(func(d *Dims) { d.C, d.MaxT = 4, ptx.MaxIndex/4 }), with(func(d *Dims) { d.C, d.MaxT = 4, ptx.MaxIndex/4+1 }),
			"--context", []string{"MaxT×C", "32-bit", "1..536870911 at --channels=4"}},
		// 2047·2^20 ≤ 2^31−1 < 2048·2^20: one sequence's logits.
		{"one sequence's logits within 32-bit indexing",
			with(func(d *Dims) { d.V, d.C, d.MaxT, d.T = 1<<20, 4, 4096, 2047 }),
			with(func(d *Dims) { d.V, d.C, d.MaxT, d.T = 1<<20, 4, 4096, 2048 }),
			"--seq-len", []string{"2048", "one sequence's logits T·V", "32-bit", "1..2047"}},
		// 32767·4·16384 ≤ 2^31−1 < 32768·4·16384: one sequence's MLP rows.
		{"one sequence's MLP activations within 32-bit indexing",
			with(func(d *Dims) { d.C, d.NH, d.MaxT, d.T = 16384, 128, 32768, 32767 }),
			with(func(d *Dims) { d.C, d.NH, d.MaxT, d.T = 16384, 128, 32768, 32768 }),
			"--seq-len", []string{"32768", "one sequence's MLP activations T·4C", "32-bit", "1..32767"}},
		{"batch's logits within 32-bit indexing", gpt2.Dims(41), gpt2.Dims(42),
			"--batch-size", []string{"42", "logits", "32-bit", "1..41"}},
		{"batch's MLP activations within 32-bit indexing",
			with(func(d *Dims) { d.C, d.NH, d.B = 16384, 128, 32767 }), with(func(d *Dims) { d.C, d.NH, d.B = 16384, 128, 32768 }),
			"--batch-size", []string{"32768", "MLP activations", "32-bit", "1..32767"}},
		{"batch within the attention grid's z", tinyT1(ptx.MaxGridYZ), tinyT1(ptx.MaxGridYZ + 1),
			"--batch-size", []string{"65536", "grid limit 65535", "grid z", "1..65535"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.NoError(t, c.pass.Validate(), "last passing shape %v", c.pass)
			err := c.fail.Validate()
			require.Error(t, err, "first failing shape %v", c.fail)
			msg := err.Error()
			assert.NotContains(t, msg, "\n", "the error must be one line")
			assert.True(t, strings.HasPrefix(msg, c.flag+": "), "%q does not start with the flag %s", msg, c.flag)
			for _, w := range c.want {
				assert.Contains(t, msg, w)
			}
		})
	}
}

// TestValidateImpliedLimits: the kernel limits that Validate does not
// check itself are implied by those it does, as its comment says. The
// largest C it accepts bounds NH (attention grid y) and ceil(C/WTE_COLS)
// (encoder_backward_wte grid y); B·T·V ≤ 2^31−1 with V ≥ 2 bounds every
// 1-D grid.
func TestValidateImpliedLimits(t *testing.T) {
	largest := Dims{V: 2, MaxT: 1, T: 1, L: 1, NH: 331, C: 23170, B: 1}
	require.NoError(t, largest.Validate())
	for _, nh := range []int{1, 7, 17, 29, 47, 493, 23171} { // divisors of 23171 = 17·29·47 and others
		d := largest
		d.C, d.NH = 23171, nh
		assert.Error(t, d.Validate(), "C = 23171 must fail whatever --heads (%d)", nh)
	}
	assert.Equal(t, 23170, maxChannels())
	assert.LessOrEqual(t, maxChannels(), ptx.MaxGridYZ, "NH ≤ C must keep the attention grid's y in range")
	assert.LessOrEqual(t, (maxChannels()+ptx.EncoderWTECols-1)/ptx.EncoderWTECols, ptx.MaxGridYZ, "encoder_backward_wte's grid y")
	assert.LessOrEqual(t, ptx.MaxIndex/2, ptx.MaxGridX, "B·T rows at V ≥ 2 must keep every 1-D grid in range")
}

func TestSmallestDivisorFrom(t *testing.T) {
	for _, c := range []struct{ n, k, want int }{
		{512, 4, 4}, {129, 2, 3}, {23170, 182, 331}, {23171, 182, 493}, {257, 3, 257},
		{12, 1, 1}, {12, 5, 6}, {12, 12, 12}, {1<<31 - 1, 1 << 24, 1<<31 - 1},
	} {
		assert.Equal(t, c.want, smallestDivisorFrom(c.n, c.k), "smallest divisor of %d from %d", c.n, c.k)
	}
}

func TestParseDTypes(t *testing.T) {
	for _, d := range DTypes {
		r, err := ParseRun([]string{"--dtype=" + string(d)})
		require.NoError(t, err)
		assert.Equal(t, d, r.DType)
	}
}

func TestWindows(t *testing.T) {
	cases := []struct {
		args []string
		want []Window
	}{
		{nil, nil},
		{[]string{"--profile"}, []Window{{0, 9}}},
		{[]string{"--profile-iters=2-4"}, []Window{{2, 4}}},
		{[]string{"--profile-iters=7"}, []Window{{7, 7}}},
		{[]string{"--profile-windows=3"}, []Window{{0, 3}, {4, 6}, {7, 9}}},
		{[]string{"--iters=2", "--profile-windows=2"}, []Window{{0, 0}, {1, 1}}},
	}
	for _, c := range cases {
		r, err := ParseRun(c.args)
		require.NoError(t, err, c.args)
		assert.Equal(t, c.want, r.Windows(), c.args)
		assert.Equal(t, c.want != nil, r.Profile, c.args)
	}
	for iters := 1; iters < 30; iters++ {
		for n := 1; n <= iters; n++ {
			ws := SplitWindows(iters, n)
			next := 0
			for _, w := range ws {
				if w.First != next || w.Len() < iters/n || w.Len() > iters/n+1 {
					t.Fatalf("SplitWindows(%d, %d) = %v", iters, n, ws)
				}
				next = w.Last + 1
			}
			if next != iters || len(ws) != n {
				t.Fatalf("SplitWindows(%d, %d) = %v", iters, n, ws)
			}
		}
	}
}
