package config

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFlaws(t *testing.T) {
	r, err := ParseRun([]string{"--flaw=host-stall,readback-per-layer"})
	require.NoError(t, err)
	assert.Equal(t, []Flaw{HostStall, ReadbackPerLayer}, r.Flaws)
	r, err = ParseRun(nil)
	require.NoError(t, err)
	assert.Empty(t, r.Flaws)
	// Every flaw alone is a valid run in both modes (train only for the
	// TrainOnly ones), every dtype and every NVTX depth, but the fp32
	// SGEMM's flaws with a tensor-core dtype (TestFlawsRejected).
	for _, f := range Flaws {
		for _, extra := range [][]string{nil, {"--mode=infer"}, {"--dtype=bf16"}, {"--dtype=tf32"}, {"--nvtx=layer"}, {"--nvtx=op"}} {
			trainOnlyInInfer := f.TrainOnly && len(extra) > 0 && extra[0] == "--mode=infer"
			sgemmFlawOnTensorCores := (f.Name == BankConflicts || f.Name == LowOccupancy) && len(extra) == 1 && strings.HasPrefix(extra[0], "--dtype=")
			if trainOnlyInInfer || sgemmFlawOnTensorCores {
				continue
			}
			_, err := ParseRun(append([]string{"--flaw=" + string(f.Name)}, extra...))
			assert.NoError(t, err, "%s %v", f.Name, extra)
		}
	}
}

// TestFlawsRejected: unknown flaws and impossible combinations exit 2 with
// one line that names the allowed flaws or the reason.
func TestFlawsRejected(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown", []string{"--flaw=slow"}, []string{"--flaw", `"slow"`, "sync-every-launch", "pinned-upload", "gpubench flaws"}},
		{"empty name in list", []string{"--flaw=host-stall,"}, []string{"--flaw", `""`}},
		{"twice", []string{"--flaw=host-stall,host-stall"}, []string{"host-stall is named twice"}},
		{"flaw and its fix", []string{"--flaw=pageable-upload,pinned-upload"}, []string{"flaw and its fix"}},
		{"sync with graph", []string{"--graph", "--flaw=sync-every-launch"}, []string{"sync-every-launch", "--graph", "cannot synchronise"}},
		{"alloc with graph", []string{"--graph", "--flaw=alloc-per-iteration"}, []string{"alloc-per-iteration", "--graph", "cudaMalloc"}},
		{"readback with graph", []string{"--graph", "--flaw=readback-per-layer"}, []string{"readback-per-layer", "--graph"}},
		{"sync with sync-launches", []string{"--sync-launches", "--flaw=sync-every-launch"}, []string{"--sync-launches"}},
		{"alloc with dump", []string{"--dump=/tmp/x", "--flaw=alloc-per-iteration"}, []string{"--dump", "frees"}},
		{"serial copies and their fix", []string{"--flaw=serial-copies,overlapped-copies"}, []string{"serial-copies and overlapped-copies", "flaw and its fix"}},
		{"serial copies in infer mode", []string{"--mode=infer", "--flaw=serial-copies"}, []string{"--flaw=serial-copies", "--mode=train", "backward"}},
		{"overlapped copies in infer mode", []string{"--mode=infer", "--flaw=overlapped-copies"}, []string{"--flaw=overlapped-copies", "--mode=train"}},
		{"serial copies with graph", []string{"--graph", "--flaw=serial-copies"}, []string{"--flaw=serial-copies", "--graph", "one stream"}},
		{"overlapped copies with graph", []string{"--graph", "--flaw=overlapped-copies"}, []string{"--flaw=overlapped-copies", "--graph", "one stream"}},
		{"unfused on llama", []string{"--model=llama-tiny", "--flaw=unfused"}, []string{"--flaw=unfused", "LLaMA", "no bias", "SwiGLU"}},
		{"unfused on llama infer", []string{"--model=llama-tiny", "--mode=infer", "--flaw=unfused,host-stall"}, []string{"--flaw=unfused", "GPT-2"}},
		{"bank-conflicts with bf16", []string{"--dtype=bf16", "--flaw=bank-conflicts"}, []string{"bank-conflicts", "--dtype=bf16", "the flaw is in the fp32 SGEMM's shared-memory tile"}},
		{"bank-conflicts with tf32", []string{"--dtype=tf32", "--flaw=bank-conflicts"}, []string{"bank-conflicts", "--dtype=tf32", "the flaw is in the fp32 SGEMM's shared-memory tile"}},
		{"low-occupancy with bf16", []string{"--dtype=bf16", "--flaw=low-occupancy"}, []string{"low-occupancy", "--dtype=bf16", "largest tile", "--dtype=fp32"}},
		{"low-occupancy with tf32", []string{"--dtype=tf32", "--flaw=low-occupancy"}, []string{"low-occupancy", "--dtype=tf32"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRun(c.args)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "\n")
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
	// What acts before the forward runs outside the graphs; the kernel
	// flaws change only what a graph captures. uncoalesced runs with every
	// dtype (its residual add is written for both storage types), and the
	// kernel flaws compose with each other and with infer mode.
	for _, args := range [][]string{{"--dtype=bf16", "--flaw=uncoalesced"}, {"--dtype=tf32", "--flaw=uncoalesced"},
		{"--flaw=low-occupancy,uncoalesced,bank-conflicts"}, {"--graph", "--mode=infer", "--flaw=low-occupancy,uncoalesced,bank-conflicts"}} {
		_, err := ParseRun(args)
		assert.NoError(t, err, "%v", args)
	}
	for _, f := range []Flaw{HostStall, PageableUpload, PinnedUpload, LowOccupancy, Uncoalesced, BankConflicts} {
		_, err := ParseRun([]string{"--graph", "--flaw=" + string(f)})
		assert.NoError(t, err, "%s with --graph", f)
	}
	// unfused is kernels only: a graph captures them, in both modes and
	// with the other flaws a graph allows.
	for _, extra := range [][]string{nil, {"--mode=infer"}, {"--dtype=bf16"}, {"--flaw=host-stall,unfused,pinned-upload"}} {
		args := append([]string{"--graph", "--flaw=unfused"}, extra...)
		if len(extra) == 1 && strings.HasPrefix(extra[0], "--flaw") {
			args = []string{"--graph", extra[0]}
		}
		_, err := ParseRun(args)
		assert.NoError(t, err, "%v", args)
	}
}

func TestWriteFlaws(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteFlaws(&b))
	for _, f := range Flaws {
		assert.Contains(t, b.String(), string(f.Name)+"\n  does:")
		assert.NotEmpty(t, f.Does)
		assert.NotEmpty(t, f.LookFor)
		assert.NotContains(t, f.Does+f.LookFor, "\n")
	}
	assert.Equal(t, 4*len(Flaws), strings.Count(b.String(), "\n"))
	assert.Contains(t, b.String(), "fix:          --flaw=pinned-upload")
	assert.Contains(t, b.String(), "serial-copies\n")
	assert.Contains(t, b.String(), "fix:          --flaw=overlapped-copies")
	assert.Contains(t, b.String(), "(this is the fix of serial-copies)")
}
