package config

import (
	"errors"
	"strings"
	"testing"

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
	}
	require.Len(t, Presets, len(want))
	for name, d := range want {
		p, err := LookupPreset(name)
		require.NoError(t, err)
		assert.Equal(t, d, p.Dims(DefaultBatch), name)
		assert.NoError(t, p.Dims(DefaultBatch).Validate(), name)
	}
}

func TestParseRunDefaults(t *testing.T) {
	r, err := ParseRun(nil)
	require.NoError(t, err)
	assert.Equal(t, "small", r.Preset)
	assert.Equal(t, Dims{V: 8192, MaxT: 256, T: 256, L: 6, NH: 8, C: 512, B: 8}, r.Dims)
	assert.Equal(t, Train, r.Mode)
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
		{"batch too large for 32-bit indexing", []string{"--model=gpt2-124m", "--batch-size=100"}, []string{"--batch-size", "32-bit", "1..41"}},
		{"weight too large for 32-bit indexing", []string{"--channels=32768", "--heads=1"}, []string{"--channels", "32-bit"}},
		{"unknown mode", []string{"--mode=eval"}, []string{"--mode", "train, infer"}},
		{"dump with infer", []string{"--mode=infer", "--dump=/tmp/x"}, []string{"--dump", "--mode=train"}},
		{"check-numerics with infer", []string{"--mode=infer", "--check-numerics"}, []string{"--check-numerics", "--mode=train"}},
		{"unknown flag", []string{"--batch=8"}, []string{"unknown flag", "-batch"}},
		{"not a number", []string{"--iters=ten"}, []string{"--iters", `"ten"`, "not a valid value"}},
		{"stray argument", []string{"extra"}, []string{"unexpected argument", "extra"}},
		{"negative device", []string{"--device=-1"}, []string{"--device", "at least 0"}},
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
