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
		if d := p.Dims(config.DefaultBatch); d.Validate() == nil {
			out = append(out, d)
		}
	}
	return append(out,
		config.Dims{V: 1000, MaxT: 40, T: 37, L: 3, NH: 3, C: 96, B: 3}, // odd sizes
		config.Dims{V: 50, MaxT: 8, T: 1, L: 1, NH: 1, C: 4, B: 1},      // the smallest
		llamaOdd,
	)
}

// llamaOdd is a LLaMA of odd sizes with grouped-query attention (3 query
// heads a key/value head).
var llamaOdd = config.Dims{Arch: config.Llama, V: 1000, MaxT: 48, T: 29, L: 2, NH: 6, KVH: 2, C: 192, Hidden: 200, B: 3, Eps: 1e-5, Theta: 5e5}

var modes = []config.Mode{config.Train, config.Infer}

// modesOf are the modes shape d runs in, each with its shape: train and
// infer, and for a LLaMA generate too, with a prompt of up to T tokens and
// 5 new ones.
func modesOf(d config.Dims) (ms []config.Mode, ds []config.Dims) {
	for _, m := range modes {
		ms, ds = append(ms, m), append(ds, d)
	}
	if d.IsLlama() {
		g := d
		g.New = 5
		g.T = min(d.T, d.MaxT-g.New+1)
		ms, ds = append(ms, config.Generate), append(ds, g)
	}
	return ms, ds
}

// shapesFor is shapesForCI less the shapes that dtype's kernels refuse
// (config.Dims.ValidateDType), which never reach a program.
func shapesFor(t *testing.T, dt config.DType) []config.Dims {
	var out []config.Dims
	for _, d := range shapesForCI(t) {
		if d.ValidateDType(dt) == nil {
			out = append(out, d)
		}
	}
	if len(out) < 3 {
		t.Fatalf("%s: only %d CI shapes", dt, len(out))
	}
	return out
}

func record(t *testing.T, m *Step) *program.Recorder {
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
// fill_f32, by kernels.Fill, which selftest runs; for unfused.ptx, by the
// unfused flaw's program). The launches pass
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
			if isMap := types[i] == ptx.TensorMapParam; isMap != (a.Map != nil) {
				t.Errorf("%s: %s argument %d (%s): tensor map %v, the PTX declares .%s", op.Where(), op.Name, i, a.Param, a.Map != nil, types[i])
			}
		}
	}
	check(&fill)
	for _, dt := range config.DTypes {
		for k, d0 := range shapesFor(t, dt) {
			ms, ds := modesOf(d0)
			for i, mode := range ms {
				d := ds[i]
				// The kernel flaws' entries (residual_forward_strided,
				// matmul_forward_nopad), with the flaws config allows for
				// dt, on one shape: they change which entry a launch
				// names, not the arguments.
				if k == 0 && mode != config.Generate {
					fs := []config.Flaw{config.Uncoalesced}
					if !dt.TensorCores() {
						fs = append(fs, config.BankConflicts, config.LowOccupancy)
					}
					for _, e := range record(t, Program(d, mode, Options{DType: dt, Flaws: fs})).Events {
						if e.Op != nil {
							check(e.Op)
						}
					}
				}
				// The H200's program (the Hopper tier for bf16), an A100's
				// (163 KB of shared memory a block: the 3-stage GEMM
				// build) and the H200's on the sm_80 tier (--tier=mma).
				for _, o := range []Options{{}, {SharedOptIn: 163 << 10, CC: 80}, {Tier: config.TierMMA}} {
					if o.Tier == config.TierMMA && !dt.TensorCores() {
						continue
					}
					o.DType = dt
					m := Program(d, mode, o)
					for _, e := range record(t, m).Events {
						if e.Op != nil {
							check(e.Op)
						}
					}
				}
				// The unfused flaw's kernels (bias_add, the GELU chain),
				// on the small GPT-2 shapes: the same launchers at any size.
				if !d.IsLlama() && d.C <= 128 {
					m := Program(d, mode, Options{DType: dt, Flaws: []config.Flaw{config.Unfused}})
					for _, e := range record(t, m).Events {
						if e.Op != nil {
							check(e.Op)
						}
					}
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
	case "u64", "s64", "b64", ptx.TensorMapParam:
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
	for _, dt := range config.DTypes {
		testRecorderValidatesEveryOp(t, dt)
	}
}

func testRecorderValidatesEveryOp(t *testing.T, dt config.DType) {
	for _, d0 := range shapesFor(t, dt) {
		ms, ds := modesOf(d0)
		for i, mode := range ms {
			d := ds[i]
			m := Program(d, mode, Options{SMs: 132, DType: dt})
			rec := record(t, m)
			var pushes []string
			for _, e := range rec.Events {
				if e.Push != "" {
					pushes = append(pushes, e.Push)
				}
			}
			want := []string{program.IterationTemplate, program.Forward}
			switch mode {
			case config.Train:
				want = append(want, program.Backward)
			case config.Generate:
				want = []string{program.IterationTemplate, Prefill}
				for j := 0; j < d.New-1; j++ {
					want = append(want, DecodeName(j))
				}
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
		fwd, bwd := 1+10*L+4, 1+2+2+L*(12+1+3+4)+2
		if d.IsLlama() {
			// forward: embedding; per layer 2 RMSNorms, 4 matmuls, RoPE,
			// attention, 2 residuals, SwiGLU; final norm, head,
			// cross-entropy, loss mean. backward: cross-entropy, head (2),
			// final norm (2); per layer 4 linears (2 each, no biases),
			// SwiGLU, attention (3), RoPE, 2 RMSNorms (2 each); embedding.
			fwd, bwd = 1+11*L+4, 1+2+2+L*(8+1+3+1+4)+1
			// generate: the prefill is the forward less the loss, with the
			// last rows' gather and the argmax; a decode step the same
			// launches but the residual adds (fused into the products) and
			// the gather, and 2 per attention (split, combine).
			g := d
			g.New, g.T = 3, min(d.T, d.MaxT-2)
			gm := Program(g, config.Generate, Options{})
			if k, _ := count(gm.Passes()[0]); k != 1+11*L+4 {
				t.Errorf("%v prefill: %d kernels, want %d", g, k, 1+11*L+4)
			}
			for _, r := range gm.Passes()[1:] {
				if k, _ := count(r); k != 1+10*L+3 {
					t.Errorf("%v %s: %d kernels, want %d", g, r.Name, k, 1+10*L+3)
				}
			}
		}
		// forward: encoder; per layer 2 LN, 4 matmuls, attention, 2
		// residuals, GELU; final LN, lm head, cross-entropy, loss mean.
		if k, ms := count(m.Forward()); k != fwd || ms != 0 {
			t.Errorf("%v forward: %d kernels %d memsets, want %d and 0", d, k, ms, fwd)
		}
		// backward: 2 memsets; cross-entropy, lm head (2), final LN (2);
		// per layer 4 linears (3 each with bias), GELU, attention (3), 2
		// LNs (2 each); encoder (2).
		if k, ms := count(m.Backward()); k != bwd || ms != 2 {
			t.Errorf("%v backward: %d kernels %d memsets, want %d and 2", d, k, ms, bwd)
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

// TestDTypeBuffers: the dtype sets the element type of the parameters,
// gradients and activations, while statistics, losses and partial sums
// stay fp32; the tensor-core dtypes pad the logits' rows.
func TestDTypeBuffers(t *testing.T) {
	d := config.Dims{V: 1000, MaxT: 40, T: 37, L: 2, NH: 3, C: 96, B: 3}
	fp32Always := map[string]bool{"ln1_mean": true, "ln1_rstd": true, "ln2_mean": true, "ln2_rstd": true, "lnf_mean": true,
		"lnf_rstd": true, "att_lse": true, "att_delta": true, "losses": true, "lse": true, "loss": true,
		"ln_partials": true, "matmul_partials": true}
	for _, dt := range config.DTypes {
		m := Program(d, config.Train, Options{DType: dt})
		want := program.F32
		if dt == config.BF16 {
			want = program.BF16
		}
		for _, b := range m.Buffers {
			switch {
			case b.Elem == program.I32:
				if b.Group != program.Inputs && b.Name != "matmul_counters" {
					t.Errorf("%s: %s is i32", dt, b.Name)
				}
			case fp32Always[b.Name]:
				if b.Elem != program.F32 {
					t.Errorf("%s: %s is %s, want f32 whatever the dtype", dt, b.Name, b.Elem)
				}
			case b.Elem != want:
				t.Errorf("%s: %s is %s, want %s", dt, b.Name, b.Elem, want)
			}
		}
		wantVp := d.V
		if dt.TensorCores() {
			wantVp = 1024 // 1000 rounded up to a multiple of 64
		}
		if m.Vp != wantVp || m.Logits.Elems != int64(d.Rows()*wantVp) {
			t.Errorf("%s: logits stride %d (%d elements), want %d", dt, m.Vp, m.Logits.Elems, wantVp)
		}
	}
}

// TestCheckDevice: the tensor-core dtypes' programs use sm_80 modules and
// so refuse a Volta, naming the module; fp32 runs there. Nothing is
// declared by hand: the requirement is read from the modules launched.
func TestCheckDevice(t *testing.T) {
	d := config.Presets[0].Dims(2)
	for _, dt := range config.DTypes {
		m := Program(d, config.Train, Options{DType: dt})
		if err := m.CheckDevice(Device{Name: "H200", Major: 9, SharedOptIn: 227 << 10}); err != nil {
			t.Errorf("%s on an H200: %v", dt, err)
		}
		// An A100 has 163 KB a block: the tensor-core GEMM's 4 stages of
		// 128×256 tiles need more, so the H200's program does not run
		// there, and the A100's (built with its shared memory: 3 stages,
		// module matmul_mma3) does.
		// The tensor-core dtypes' H200 programs also take the Hopper tier
		// (sm_90a), which an A100 cannot load at all.
		a100 := Device{Name: "A100", Major: 8, SharedOptIn: 163 << 10}
		err := m.CheckDevice(a100)
		want := "shared memory"
		if dt.TensorCores() {
			want = "sm_90a PTX, which A100 (compute capability 8.0) cannot run (use --tier=mma)"
		}
		if dt.TensorCores() != (err != nil) {
			t.Errorf("%s: the H200's program on an A100: %v", dt, err)
		} else if err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("%s on an A100: %q does not say %q", dt, err, want)
		}
		forA100 := Program(d, config.Train, Options{DType: dt, SharedOptIn: a100.SharedOptIn, CC: 80})
		if err := forA100.CheckDevice(a100); err != nil {
			t.Errorf("%s: the A100's program on an A100: %v", dt, err)
		}
		if dt.TensorCores() && !strings.Contains(forA100.KernelPath(), "matmul_mma3") {
			t.Errorf("%s: the A100's program does not use the 3-stage GEMM: %s", dt, forA100.KernelPath())
		}
		// 99 KB (an RTX 4090) fits neither build.
		if err := Program(d, config.Train, Options{DType: dt, SharedOptIn: 99 << 10, CC: 89}).CheckDevice(Device{Name: "RTX 4090", Major: 8, Minor: 9, SharedOptIn: 99 << 10}); dt.TensorCores() && err == nil {
			t.Errorf("%s on 99 KB of shared memory: no error", dt)
		}
		err = m.CheckDevice(Device{Name: "Tesla V100", Major: 7})
		if dt == config.FP32 {
			if err != nil {
				t.Errorf("fp32 on a V100: %v", err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s on a V100: no error", dt)
			continue
		}
		// bf16's first module past Volta is an sm_80 one, tf32's the
		// Hopper GEMM (its other kernels are fp32's); either way the way
		// out on a Volta is fp32, not the other tier.
		target := "sm_80"
		if dt == config.TF32 {
			target = "sm_90a"
		}
		for _, want := range []string{"--dtype=" + string(dt), target, "Tesla V100", "7.0", "--dtype=fp32"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s on a V100: %q does not say %q", dt, err, want)
			}
		}
	}
}

// TestNVTXDepths: every depth runs the same operations in the same order;
// layer adds embedding, layer{l} (attention, mlp) and head in each pass,
// op one range per operation inside them.
func TestNVTXDepths(t *testing.T) {
	d := config.Dims{V: 1000, MaxT: 40, T: 37, L: 3, NH: 3, C: 96, B: 3}
	base := Program(d, config.Train, Options{})
	names := func(m *Step) []string {
		var out []string
		for _, op := range m.Iteration.Ops() {
			out = append(out, op.Where()+" "+op.Name)
		}
		return out
	}
	children := func(r *program.Range) []string {
		var out []string
		for _, it := range r.Items {
			if it.Range != nil {
				out = append(out, it.Range.Name)
			}
		}
		return out
	}
	wantParts := func(pass string) []string {
		layers := []string{"layer0", "layer1", "layer2"}
		if pass == program.Backward {
			return append(append([]string{"head"}, "layer2", "layer1", "layer0"), "embedding")
		}
		return append(append([]string{"embedding"}, layers...), "head")
	}
	for _, depth := range []config.NVTXDepth{config.NVTXLayer, config.NVTXOp} {
		m := Program(d, config.Train, Options{NVTX: depth})
		if !reflect.DeepEqual(names(m), names(base)) {
			t.Errorf("%s: the operations differ from --nvtx=iteration's", depth)
		}
		record(t, m) // balanced, every op valid
		ops := 0
		for _, pass := range []*program.Range{m.Forward(), m.Backward()} {
			if got, want := children(pass), wantParts(pass.Name); !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: parts %v, want %v", depth, pass.Name, got, want)
			}
			for _, it := range pass.Items {
				if it.Op != nil {
					t.Errorf("%s %s: operation %s outside every part", depth, pass.Name, it.Op.Name)
					continue
				}
				p := it.Range
				if strings.HasPrefix(p.Name, "layer") {
					want := []string{"attention", "mlp"}
					if pass.Name == program.Backward {
						want = []string{"mlp", "attention"}
					}
					if got := children(p); !reflect.DeepEqual(got, want) {
						t.Errorf("%s %s %s: halves %v, want %v", depth, pass.Name, p.Name, got, want)
					}
					if p.Kind != program.LayerRange || p.Layer != int(p.Name[5]-'0') {
						t.Errorf("%s %s: kind %s layer %d", depth, p.Name, p.Kind, p.Layer)
					}
				}
			}
			var walk func(r *program.Range)
			walk = func(r *program.Range) {
				for _, it := range r.Items {
					if it.Range == nil {
						if depth == config.NVTXOp && r.Kind != program.OpRange {
							t.Errorf("op depth: %s directly in range %s", it.Op.Name, r.Name)
						}
						continue
					}
					if it.Range.Kind == program.OpRange {
						ops++
						if len(it.Range.Items) != 1 || it.Range.Items[0].Op == nil || it.Range.Items[0].Op.Name != it.Range.Name {
							t.Errorf("op range %s does not hold exactly its operation", it.Range.Name)
						}
					}
					walk(it.Range)
				}
			}
			walk(pass)
		}
		if want := 0; depth == config.NVTXOp {
			if want = len(base.Iteration.Ops()); ops != want {
				t.Errorf("op depth: %d op ranges, want one per operation (%d)", ops, want)
			}
		} else if ops != want {
			t.Errorf("layer depth: %d op ranges", ops)
		}
	}
}

// TestDecodeStepsOnlyLaunch: a decode step of generate mode allocates
// nothing, copies nothing to or from the host and never waits: its
// operations are kernel launches alone, and the token it makes is read by
// the next step on the device.
func TestDecodeStepsOnlyLaunch(t *testing.T) {
	for _, dt := range config.DTypes {
		for _, d0 := range shapesFor(t, dt) {
			if !d0.IsLlama() {
				continue
			}
			ms, ds := modesOf(d0)
			d := ds[len(ms)-1]
			m := Program(d, config.Generate, Options{DType: dt})
			if n := len(m.Passes()); n != d.New {
				t.Errorf("%v: %d passes, want the prefill and %d decode steps", d, n, d.New-1)
			}
			for _, r := range m.Passes()[1:] {
				for _, op := range r.Ops() {
					if op.Kind != program.Kernel {
						t.Errorf("%v %s: %s is a %s, not a kernel launch", d, r.Name, op.Where(), op.Kind)
					}
				}
			}
		}
	}
}

// TestTF32HopperTier: tf32 on compute capability 9.0 runs every linear
// layer's three products on the Hopper tier's tf32 entries, the backward
// ones from transposes in the tf32_transposes scratch (train only);
// --tier=mma and an A100 keep matmul_mma's tf32 entries and no scratch.
// Both programs count the same matmul FLOPs: one description of the step.
func TestTF32HopperTier(t *testing.T) {
	d := config.Presets[1].Dims(2)
	names := func(m *Step) map[string]int {
		n := map[string]int{}
		for _, op := range m.Iteration.Ops() {
			if op.Kind == program.Kernel {
				n[op.Name]++
			}
		}
		return n
	}
	flops := func(m *Step) (f int64) {
		for _, op := range m.Iteration.Ops() {
			f += op.MatmulFLOPs
		}
		return f
	}
	hasScratch := func(m *Step) bool {
		for _, b := range m.Buffers {
			if b.Name == "tf32_transposes" {
				return true
			}
		}
		return false
	}
	hopper := Program(d, config.Train, Options{DType: config.TF32})
	n := names(hopper)
	linears := 4*d.L + 1
	for _, e := range []string{"matmul_forward_wgmma_tf32", "matmul_backward_input_wgmma_tf32", "matmul_backward_weight_wgmma_tf32"} {
		if n[e] != linears {
			t.Errorf("tf32 on 9.0: %s launched %d times, want %d (every linear layer)", e, n[e], linears)
		}
	}
	if want := 3 * linears; n["matmul_transpose_tf32"] != want {
		t.Errorf("tf32 on 9.0: %d transposes, want %d (w, dout, inp of each linear layer)", n["matmul_transpose_tf32"], want)
	}
	for _, e := range []string{"matmul_forward_tf32", "matmul_backward_input_tf32", "matmul_backward_weight_tf32", "matmul_forward_wgmma"} {
		if n[e] != 0 {
			t.Errorf("tf32 on 9.0 launches %s %d times", e, n[e])
		}
	}
	if !hasScratch(hopper) {
		t.Error("tf32 on 9.0: no tf32_transposes buffer")
	}
	if p := hopper.KernelPath(); !strings.Contains(p, "linear layers on Hopper's TF32 tensor cores (wgmma, TMA)") || !strings.Contains(p, "matmul_wgmma sm_90a") {
		t.Errorf("tf32 on 9.0: kernel path %q", p)
	}
	if hasScratch(Program(d, config.Infer, Options{DType: config.TF32})) {
		t.Error("tf32 inference declares the backward's transposes")
	}
	for _, o := range []Options{{DType: config.TF32, Tier: config.TierMMA}, {DType: config.TF32, CC: 80, SharedOptIn: 163 << 10}} {
		m := Program(d, config.Train, o)
		n := names(m)
		if n["matmul_forward_tf32"] != linears || n["matmul_backward_weight_tf32"] != linears {
			t.Errorf("tf32 (%+v): forward %d, weight gradient %d on mma.sync, want %d", o, n["matmul_forward_tf32"], n["matmul_backward_weight_tf32"], linears)
		}
		if n["matmul_forward_wgmma_tf32"]+n["matmul_transpose_tf32"] != 0 || hasScratch(m) {
			t.Errorf("tf32 (%+v) reaches the Hopper tier", o)
		}
		if p := m.KernelPath(); !strings.Contains(p, "linear layers on TF32 tensor cores (mma.sync)") {
			t.Errorf("tf32 (%+v): kernel path %q", o, p)
		}
		if flops(m) != flops(hopper) {
			t.Errorf("tf32 (%+v): %d matmul FLOPs, the Hopper tier's program %d", o, flops(m), flops(hopper))
		}
	}
	// bf16 on 9.0 is as it was: its own entries, no transposes.
	b := names(Program(d, config.Train, Options{DType: config.BF16}))
	if b["matmul_forward_wgmma"] != linears || b["matmul_backward_weight_wgmma"] != linears || b["matmul_transpose_tf32"] != 0 {
		t.Errorf("bf16 on 9.0: %v", b)
	}
}
