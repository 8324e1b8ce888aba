package model

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/kernels"
	"github.com/gpubench/gpubench/ptx"
)

// These tests run on CI, without a GPU: they replay the program through the
// recording executor, the same walk the CUDA executor makes.

func shapesForCI(t *testing.T) []config.Dims {
	t.Helper()
	var out []config.Dims
	for _, p := range config.Presets {
		out = append(out, p.Dims(config.DefaultBatch))
	}
	return append(out,
		config.Dims{V: 1000, MaxT: 40, T: 37, L: 3, NH: 3, C: 96, B: 3}, // odd sizes
		config.Dims{V: 50, MaxT: 8, T: 1, L: 1, NH: 1, C: 4, B: 1},      // the smallest
	)
}

var modes = []config.Mode{config.Train, config.Infer}

func record(t *testing.T, m *GPT2) *program.Recorder {
	t.Helper()
	var rec program.Recorder
	for i := range m.Setup {
		if err := rec.Do(&m.Setup[i]); err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
	if err := program.Run(&m.Iteration, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Open() != 0 {
		t.Fatalf("%d NVTX ranges left open", rec.Open())
	}
	return &rec
}

// TestProgramMatchesPTX: every kernel launch of every program names an
// entry of its PTX module and passes one argument of the right class per
// PTX parameter, and every PTX entry is launched by some program (or, for
// fill_f32, by kernels.Fill, which selftest runs). The launches pass
// untyped 8-byte slots, so nothing else would catch a mismatch before a
// GPU does.
func TestProgramMatchesPTX(t *testing.T) {
	launched := map[string]bool{}
	fill := kernels.Fill(program.View{}, 1, 0)
	check := func(op *program.Op) {
		if op.Kind != program.Kernel {
			return
		}
		launched[op.Module+"/"+op.Name] = true
		types, ok := ptx.Params(op.Module, op.Name)
		if !ok {
			t.Errorf("%s: kernel %s is not an entry of %s.ptx", op.Where(), op.Name, op.Module)
			return
		}
		if len(types) != len(op.Args) {
			t.Errorf("%s: %s passes %d arguments, the PTX declares %d", op.Where(), op.Name, len(op.Args), len(types))
			return
		}
		for i, a := range op.Args {
			if want := argClass(types[i]); a.Kind != want {
				t.Errorf("%s: %s argument %d (%s) is %s, the PTX declares .%s", op.Where(), op.Name, i, a.Param, a.Kind, types[i])
			}
		}
	}
	check(&fill)
	for _, d := range shapesForCI(t) {
		for _, mode := range modes {
			m := Program(d, mode, Options{})
			for _, e := range record(t, m).Events {
				if e.Op != nil {
					check(e.Op)
				}
			}
		}
	}
	for _, mod := range ptx.Modules() {
		for _, entry := range ptx.Entries(mod) {
			if !launched[mod+"/"+entry] {
				t.Errorf("%s.ptx: entry %s is launched by no program", mod, entry)
			}
		}
	}
}

func argClass(ptxType string) program.ArgKind {
	switch ptxType {
	case "u64", "s64", "b64":
		return program.Ptr
	case "u32", "s32", "b32":
		return program.I32Arg
	case "f32":
		return program.F32Arg
	}
	return "unsupported ." + program.ArgKind(ptxType)
}

// TestRecorderValidatesEveryOp: the recorder finds every view inside its
// buffer and large enough for what the kernel touches, for every shape.
// (record fails the test on the first op that is not.) It also checks the
// structure of the template: iteration{i} holding forward, then backward.
func TestRecorderValidatesEveryOp(t *testing.T) {
	for _, d := range shapesForCI(t) {
		for _, mode := range modes {
			m := Program(d, mode, Options{SMs: 132})
			rec := record(t, m)
			var pushes []string
			for _, e := range rec.Events {
				if e.Push != "" {
					pushes = append(pushes, e.Push)
				}
			}
			want := []string{program.IterationTemplate, program.Forward}
			if mode == config.Train {
				want = append(want, program.Backward)
			}
			if !reflect.DeepEqual(pushes, want) {
				t.Errorf("%v %s: ranges %v, want %v", d, mode, pushes, want)
			}
		}
	}
}

// TestLaunchCounts pins the number of launches per range against counts
// worked out from the architecture (not read back from the program).
func TestLaunchCounts(t *testing.T) {
	for _, d := range shapesForCI(t) {
		L := d.L
		m := Program(d, config.Train, Options{})
		count := func(r *program.Range) (kernels, memsets int) {
			for _, op := range r.Ops() {
				switch op.Kind {
				case program.Kernel:
					kernels++
				case program.Memset:
					memsets++
				}
			}
			return
		}
		// forward: encoder; per layer 2 LN, 4 matmuls, attention, 2
		// residuals, GELU; final LN, lm head, cross-entropy, loss mean.
		if k, ms := count(m.Forward()); k != 1+10*L+4 || ms != 0 {
			t.Errorf("%v forward: %d kernels %d memsets, want %d and 0", d, k, ms, 1+10*L+4)
		}
		// backward: 2 memsets; cross-entropy, lm head (2), final LN (2);
		// per layer 4 linears (3 each with bias), GELU, attention (3), 2
		// LNs (2 each); encoder (2).
		if k, ms := count(m.Backward()); k != 1+2+2+L*(12+1+3+4)+2 || ms != 2 {
			t.Errorf("%v backward: %d kernels %d memsets, want %d and 2", d, k, ms, 1+2+2+L*20+2)
		}
	}
}

// TestSMsChangeShapesNotKernels: the SM count changes launch shapes (the
// matmul tile and split), never which kernels run, so plan and check need
// no GPU.
func TestSMsChangeShapesNotKernels(t *testing.T) {
	d := config.Presets[1].Dims(config.DefaultBatch)
	names := func(sms int) (string, string) {
		var n, shapes []string
		for _, op := range Program(d, config.Train, Options{SMs: sms}).Ops() {
			n = append(n, op.Name)
			shapes = append(shapes, fmt.Sprint(op.Grid, op.Block))
		}
		return strings.Join(n, " "), strings.Join(shapes, " ")
	}
	n132, s132 := names(132)
	n20, s20 := names(20)
	if n132 != n20 {
		t.Error("the SM count changed which kernels run")
	}
	if s132 == s20 {
		t.Error("20 and 132 SMs give the same launch shapes: the SM count does not reach the matmul plans")
	}
}

// TestShapesAtTheLimitsBuildValidPrograms: the last shape config.Validate
// accepts at each of its limits (the passing rows of its limit table)
// builds, in both modes, a program whose every launch the recorder finds
// within CUDA's grid and block limits and inside its buffers; so do random
// small shapes. This is what makes Validate's limits sufficient: a shape
// it lets through can be launched.
func TestShapesAtTheLimitsBuildValidPrograms(t *testing.T) {
	edges := []config.Dims{
		{V: 1048576, MaxT: 4096, T: 2047, L: 1, NH: 1, C: 4, B: 1},
		{V: 2, MaxT: 1, T: 1, L: 1, NH: 1, C: 1, B: 1},
		{V: 2, MaxT: 1, T: 1, L: 1, NH: 1, C: 128, B: 1},
		{V: 2, MaxT: 1, T: 1, L: 1, NH: 128, C: 16384, B: 32767},
		{V: 2, MaxT: 1, T: 1, L: 1, NH: 3, C: 6, B: 1},
		{V: 2, MaxT: 1, T: 1, L: 1, NH: 331, C: 23170, B: 1},
		{V: 2, MaxT: 1, T: 1, L: 1, NH: 4, C: 512, B: 1},
		{V: 2, MaxT: 32768, T: 32767, L: 1, NH: 128, C: 16384, B: 1},
		{V: 2, MaxT: 536870911, T: 1, L: 1, NH: 1, C: 4, B: 1},
		{V: 2, MaxT: 8, T: 8, L: 1, NH: 1, C: 1, B: 1},
		{V: 50257, MaxT: 1024, T: 1024, L: 12, NH: 12, C: 768, B: 41},
		{V: 512, MaxT: 64, T: 1, L: 2, NH: 4, C: 128, B: 65535},
		{V: 536870911, MaxT: 1, T: 1, L: 1, NH: 1, C: 4, B: 1},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		nh := 1 + rng.IntN(8)
		d := config.Dims{V: 2 + rng.IntN(3000), T: 1 + rng.IntN(300), L: 1 + rng.IntN(3), NH: nh,
			C: nh * (1 + rng.IntN(128)), B: 1 + rng.IntN(9)}
		d.MaxT = d.T + rng.IntN(10)
		edges = append(edges, d)
	}
	for _, d := range edges {
		if err := d.Validate(); err != nil {
			t.Fatalf("%v: %v", d, err)
		}
		for _, mode := range modes {
			record(t, Program(d, mode, Options{}))
		}
	}
}
