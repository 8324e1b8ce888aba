package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Run is everything one gpubench run needs to know, after validation.
type Run struct {
	Preset string // the preset the shape started from (--model); see Model
	Dims   Dims
	Mode   Mode
	DType  DType // precision of the step (--dtype)
	Tier   Tier  // which tensor-core kernels run bf16's and tf32's products (--tier)
	// NVTX is the depth of the step's NVTX ranges, NVTXDomain their domain
	// ("" for the global one, as in the template).
	NVTX       NVTXDepth
	NVTXDomain string

	Warmup  int  // iterations before the profiler window, not reported
	Iters   int  // iterations inside the window, reported
	Profile bool // call cuProfilerStart/Stop around the timed iterations
	// ProfileIters narrows the profiler window to these iterations
	// (--profile-iters); ProfileWindows splits the iterations into that
	// many windows (--profile-windows). Either turns Profile on; see
	// Windows.
	ProfileIters   *Window
	ProfileWindows int
	Seed           uint64 // parameters and inputs are drawn from it
	Device         int    // CUDA device ordinal

	JSON          string // write the full result here
	Dump          string // write one step's tensors as safetensors here
	CheckNumerics bool   // fail on NaN/Inf after each iteration
	SyncLaunches  bool   // synchronise after every launch (debugging)
	Graph         bool   // each pass captured once as a CUDA graph, then replayed
	// Flaws are the planted flaws (--flaw), in the order given: a run
	// with any is a lesson, not a benchmark result.
	Flaws []Flaw

	// GPUs is --gpus: the number of ranks of a data-parallel run, one
	// process per GPU, the gradients averaged through NCCL; 0 for the
	// plain single-process run. Rank is this process's rank (0 in the
	// parent, which runs none; a child learns its own from package launch).
	GPUs, Rank int
	// Scaling (--scaling) runs the same step on one GPU first and reports
	// the data-parallel run's scaling efficiency against it.
	Scaling bool
}

// MaxGPUs is the most ranks --gpus takes: the GPUs of one host.
const MaxGPUs = 64

// Custom is the model name of a run whose model is none of the presets.
const Custom = "custom"

// Model is the name of the run's model: its preset's, or Custom when
// --vocab, --context, --layers, --heads or --channels made its shape differ
// from the preset's (the shape flags override the preset, see finish).
// --seq-len and --batch-size change the work of a step, not the model, so
// they keep the preset's name; the report's dims say what they were.
func (r Run) Model() string {
	p, err := LookupPreset(r.Preset)
	if err != nil {
		return Custom
	}
	want := p.Dims(r.Dims.B)
	got := r.Dims
	if got.V != want.V || got.MaxT != want.MaxT || got.L != want.L || got.NH != want.NH || got.C != want.C ||
		got.KVH != want.KVH || got.Hidden != want.Hidden {
		return Custom
	}
	return p.Name
}

// Defaults of the run flags.
const (
	DefaultWarmup = 3
	DefaultIters  = 10
	DefaultSeed   = 1337
	DefaultPreset = "small"
)

// ErrHelp is returned by ParseRun when the user asked for -h or --help.
var ErrHelp = flag.ErrHelp

// runFlags binds a FlagSet to the fields it fills. The shape flags other
// than the batch size override the preset only when given.
type runFlags struct {
	fs                   *flag.FlagSet
	model, mode, dtype   string
	tier                 string
	nvtx, profileIters   string
	flaw                 string
	v, maxT, t, l, nh, c optionalInt
	kvh, hidden          optionalInt
	prompt, newTokens    optionalInt
	gpus                 optionalInt
	b                    int
	run                  Run
}

// optionalInt is an int flag that knows whether it was given, so that any
// given value, -1 included, is validated rather than taken for "unset".
type optionalInt struct {
	v   int
	set bool
}

func (o *optionalInt) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("parse error")
	}
	o.v, o.set = v, true
	return nil
}

func (o *optionalInt) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.Itoa(o.v)
}

func newRunFlags(name string) *runFlags {
	f := &runFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	fs := f.fs
	fs.SetOutput(io.Discard) // errors are returned, printed once by the caller
	fs.StringVar(&f.model, "model", DefaultPreset, "model preset: "+strings.Join(PresetNames(), ", "))
	fs.IntVar(&f.b, "batch-size", DefaultBatch, "sequences per batch (B)")
	fs.Var(&f.t, "seq-len", "tokens per sequence, `T`; default: the preset's context")
	fs.Var(&f.maxT, "context", "context length, `MaxT`, the rows of the position embedding; default: the preset's")
	fs.Var(&f.v, "vocab", "vocabulary size, `V`; default: the preset's")
	fs.Var(&f.l, "layers", "transformer blocks, `L`; default: the preset's")
	fs.Var(&f.nh, "heads", "attention heads, `H`; default: the preset's")
	fs.Var(&f.c, "channels", "channels, `C`, a multiple of --heads; default: the preset's")
	fs.Var(&f.kvh, "kv-heads", "key/value heads of a LLaMA model, a divisor of --heads (grouped-query attention); default: the preset's")
	fs.Var(&f.hidden, "mlp", "width of a LLaMA model's SwiGLU MLP; default: the preset's")
	fs.StringVar(&f.mode, "mode", string(Train), "train (forward and backward), infer (forward only) or generate (LLaMA: prefill, then one token per decode step with a KV cache)")
	fs.Var(&f.prompt, "prompt-len", "generate mode: prompt tokens per sequence, `P`; default: the preset's")
	fs.Var(&f.newTokens, "new-tokens", "generate mode: tokens generated per sequence, `N` (the prefill's, then N-1 decode steps); default: the preset's")
	fs.StringVar(&f.tier, "tier", string(TierAuto), "tensor-core kernels of the products: auto (wgmma on compute capability 9.0 for bf16 and tf32, else mma), mma (mma.sync, sm_80 and later) or wgmma (Hopper's wgmma and TMA, bf16 and tf32)")
	fs.StringVar(&f.dtype, "dtype", string(FP32), "precision: fp32 (FP32 units), tf32 (fp32 storage, products on TF32 tensor cores) or bf16 (bf16 storage, products on bf16 tensor cores, fp32 statistics and reductions)")
	fs.IntVar(&f.run.Warmup, "warmup", DefaultWarmup, "iterations before the profiler window, not reported")
	fs.IntVar(&f.run.Iters, "iters", DefaultIters, "iterations inside the profiler window, reported")
	fs.BoolVar(&f.run.Profile, "profile", false, "call cuProfilerStart/Stop around the timed iterations (for nsys --capture-range=cudaProfilerApi)")
	fs.StringVar(&f.profileIters, "profile-iters", "", "open the profiler window over measured iterations `A-B` only (0-based; implies --profile)")
	fs.IntVar(&f.run.ProfileWindows, "profile-windows", 0, "open `N` separate profiler windows over the measured iterations, for nsys --capture-range-end=repeat:N (implies --profile)")
	fs.Uint64Var(&f.run.Seed, "seed", DefaultSeed, "seed of the parameters and the inputs")
	fs.IntVar(&f.run.Device, "device", 0, "CUDA device ordinal")
	fs.StringVar(&f.run.JSON, "json", "", "write the full result as JSON to this file")
	fs.StringVar(&f.run.Dump, "dump", "", "write one step's weights, inputs, loss, logits and gradients as safetensors into this directory")
	fs.BoolVar(&f.run.CheckNumerics, "check-numerics", false, "after each iteration, fail on NaN or Inf in the loss or the gradients")
	fs.BoolVar(&f.run.SyncLaunches, "sync-launches", false, "synchronise after every kernel launch, so a fault names its kernel (slow; for debugging)")
	fs.StringVar(&f.nvtx, "nvtx", string(NVTXIteration), "NVTX range depth: iteration (iteration{i}, forward, backward), layer (adds embedding, layer{l} with attention and mlp, head) or op (adds one range per operation)")
	fs.StringVar(&f.run.NVTXDomain, "nvtx-domain", "", "put every NVTX range in this domain (default: the global domain, as the template does)")
	fs.BoolVar(&f.run.Graph, "graph", false, "capture each pass (forward, backward) once as a CUDA graph and replay it every iteration, inside the same NVTX ranges")
	fs.Var(&f.gpus, "gpus", "data-parallel over `N` GPUs: one process per GPU (ordinals 0..N-1), each on its own batch of --batch-size, gradients averaged through NCCL; --gpus=1 is one rank through NCCL")
	fs.BoolVar(&f.run.Scaling, "scaling", false, "with --gpus=N: run the same step on one GPU (one NCCL rank) first, and report the scaling efficiency against it")
	fs.StringVar(&f.flaw, "flaw", "", "plant flaws `NAME[,NAME...]` for a profiling lesson (gpubench flaws lists them); the numbers are then no benchmark result")
	return f
}

// ParseRun parses and validates the flags of a run. Its errors are one line
// that names the flag and what it allows.
func ParseRun(args []string) (Run, error) {
	r, _, err := ParseCommand(args, nil, 0)
	if err == nil {
		err = r.CheckOutputs() // before any GPU call: see outputs.go
	}
	if err != nil {
		return Run{}, err
	}
	return r, nil
}

// ParseCommand parses the run flags plus the ones extra defines, and
// expects exactly positional arguments after the flags, which it returns.
// Commands such as plan and check describe a run with the same flags.
func ParseCommand(args []string, extra func(*flag.FlagSet), positional int) (Run, []string, error) {
	f := newRunFlags("gpubench")
	if extra != nil {
		extra(f.fs)
	}
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Run{}, nil, ErrHelp
		}
		return Run{}, nil, flagError(err)
	}
	rest := f.fs.Args()
	if len(rest) > positional {
		return Run{}, nil, fmt.Errorf("unexpected argument %q (flags come before it, as --name=value; see gpubench --help)", rest[positional])
	}
	if len(rest) < positional {
		return Run{}, nil, fmt.Errorf("missing argument: expected %d after the flags, got %d (see gpubench --help)", positional, len(rest))
	}
	r, err := f.finish()
	return r, rest, err
}

// flagError rewrites the flag package's messages into gpubench's one-line
// form.
func flagError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return fmt.Errorf("unknown flag %q (see gpubench --help)", "-"+name)
	}
	// "invalid value "x" for flag -iters: parse error"
	if strings.HasPrefix(msg, "invalid value") {
		if i := strings.Index(msg, "for flag -"); i >= 0 {
			rest := msg[i+len("for flag -"):]
			name, _, _ := strings.Cut(rest, ":")
			value := strings.TrimPrefix(msg[:i], "invalid value ")
			return fmt.Errorf("--%s: %s is not a valid value", name, strings.TrimSpace(value))
		}
	}
	return err
}

func (f *runFlags) finish() (Run, error) {
	r := f.run
	p, err := LookupPreset(f.model)
	if err != nil {
		return Run{}, err
	}
	r.Preset = p.Name
	if r.Mode, err = ParseMode(f.mode); err != nil {
		return Run{}, err
	}
	if r.DType, err = ParseDType(f.dtype); err != nil {
		return Run{}, err
	}
	if r.Tier, err = ParseTier(f.tier); err != nil {
		return Run{}, err
	}
	if err := ValidateTier(r.Tier, r.DType); err != nil {
		return Run{}, err
	}
	if r.NVTX, err = ParseNVTXDepth(f.nvtx); err != nil {
		return Run{}, err
	}
	if err := ValidNVTXDomain(r.NVTXDomain); err != nil {
		return Run{}, err
	}
	d := p.Dims(f.b)
	override := func(dst *int, o optionalInt) {
		if o.set {
			*dst = o.v
		}
	}
	override(&d.V, f.v)
	override(&d.MaxT, f.maxT)
	override(&d.L, f.l)
	override(&d.NH, f.nh)
	override(&d.C, f.c)
	d.T = d.MaxT
	override(&d.T, f.t)
	if f.t.set && !f.maxT.set && f.t.v > d.MaxT {
		return Run{}, fmt.Errorf("--seq-len: %d is over the %s preset's context %d (allowed: 1..%d, or raise --context)", f.t.v, p.Name, d.MaxT, d.MaxT)
	}
	if err := f.llamaShape(&d, p, r.Mode); err != nil {
		return Run{}, err
	}
	if err := d.Validate(); err != nil {
		return Run{}, err
	}
	if err := d.ValidateDType(r.DType); err != nil {
		return Run{}, err
	}
	r.Dims = d
	if r.Iters < 1 {
		return Run{}, fmt.Errorf("--iters: %d is not allowed (must be at least 1)", r.Iters)
	}
	if f.profileIters != "" && r.ProfileWindows != 0 {
		return Run{}, errors.New("--profile-windows: cannot be combined with --profile-iters (one names a window, the other splits the run into several; drop one)")
	}
	if f.profileIters != "" {
		w, err := parseWindow(f.profileIters, r.Iters)
		if err != nil {
			return Run{}, err
		}
		r.ProfileIters, r.Profile = &w, true
	}
	if r.ProfileWindows < 0 || r.ProfileWindows > r.Iters {
		return Run{}, fmt.Errorf("--profile-windows: %d is not allowed (1..--iters = %d)", r.ProfileWindows, r.Iters)
	}
	if r.ProfileWindows > 0 {
		r.Profile = true
	}
	if r.Warmup < 0 {
		return Run{}, fmt.Errorf("--warmup: %d is not allowed (must be at least 0)", r.Warmup)
	}
	if r.Device < 0 {
		return Run{}, fmt.Errorf("--device: %d is not allowed (must be at least 0)", r.Device)
	}
	if r.Dump != "" && r.Mode == Infer && !r.Dims.IsLlama() {
		return Run{}, errors.New("--dump: needs --mode=train for GPT-2 (its dump holds the gradients, which infer does not compute); a LLaMA dumps in every mode")
	}
	if r.Graph && r.NVTX != NVTXIteration {
		return Run{}, fmt.Errorf("--graph: cannot be combined with --nvtx=%s (a pass replays as one graph launch, which holds no NVTX ranges; use --nvtx=iteration with --graph)", r.NVTX)
	}
	if r.Graph && r.SyncLaunches {
		return Run{}, errors.New("--graph: cannot be combined with --sync-launches (a captured graph cannot synchronise after each kernel; drop one of them)")
	}
	if r.CheckNumerics && r.Mode != Train {
		return Run{}, fmt.Errorf("--check-numerics: needs --mode=train (it checks the gradients, which %s does not compute)", r.Mode)
	}
	if r.Flaws, err = ParseFlaws(f.flaw); err != nil {
		return Run{}, err
	}
	if len(r.Flaws) > 0 && r.Mode == Generate {
		return Run{}, errors.New("--flaw: the planted flaws are written for train and infer; generate mode has none yet (drop --flaw, or use --mode=infer)")
	}
	if err := checkFlaws(r); err != nil {
		return Run{}, err
	}
	if r.Scaling && !f.gpus.set {
		return Run{}, errors.New("--scaling: needs --gpus=N (it compares N GPUs with one)")
	}
	if f.gpus.set {
		r.GPUs = f.gpus.v
		if err := checkGPUs(r); err != nil {
			return Run{}, err
		}
	}
	return r, nil
}

// checkGPUs refuses what a data-parallel run (--gpus) cannot do.
func checkGPUs(r Run) error {
	switch {
	case r.GPUs < 1 || r.GPUs > MaxGPUs:
		return fmt.Errorf("--gpus: %d is not allowed (allowed: 1..%d GPUs of this host)", r.GPUs, MaxGPUs)
	case r.Mode != Train:
		return fmt.Errorf("--gpus: needs --mode=train (the ranks all-reduce the gradients, which %s does not compute)", r.Mode)
	case r.Dims.IsLlama():
		return errors.New("--gpus: the data-parallel step is GPT-2's; a LLaMA model has none yet (use a GPT-2 --model)")
	case r.Graph:
		return errors.New("--gpus: cannot be combined with --graph (the all-reduces are NCCL calls between the backward's kernels, not graph nodes)")
	case r.Device != 0:
		return errors.New("--gpus: cannot be combined with --device (rank r runs on device r; set CUDA_VISIBLE_DEVICES to choose the GPUs)")
	case len(r.Flaws) > 0:
		return errors.New("--gpus: cannot be combined with --flaw (the planted flaws are lessons of one process)")
	case r.Dump != "":
		return errors.New("--gpus: cannot be combined with --dump (each rank would write the same directory)")
	case r.JSON != "":
		return errors.New("--gpus: cannot be combined with --json (the parent prints the per-rank table; there is no one result to write)")
	}
	return nil
}

func gpt2PresetNames() []string {
	var names []string
	for _, p := range Presets {
		if p.Arch != Llama {
			names = append(names, p.Name)
		}
	}
	return names
}

// llamaShape applies the LLaMA flags (--kv-heads, --mlp) and generate
// mode's (--prompt-len, --new-tokens, which sets T and New) to d, refusing
// them where they mean nothing.
func (f *runFlags) llamaShape(d *Dims, p Preset, mode Mode) error {
	if !d.IsLlama() {
		for _, o := range []struct {
			name string
			set  bool
		}{{"--kv-heads", f.kvh.set}, {"--mlp", f.hidden.set}} {
			if o.set {
				return fmt.Errorf("%s: the %s preset is GPT-2, which has no such setting (allowed with a LLaMA preset: %s)", o.name, p.Name, strings.Join(LlamaPresetNames(), ", "))
			}
		}
		if mode == Generate {
			return fmt.Errorf("--mode=generate: needs a LLaMA preset (allowed: %s); GPT-2 runs train and infer", strings.Join(LlamaPresetNames(), ", "))
		}
	}
	if mode != Generate {
		for _, o := range []struct {
			name string
			set  bool
		}{{"--prompt-len", f.prompt.set}, {"--new-tokens", f.newTokens.set}} {
			if o.set {
				return fmt.Errorf("%s: only generate mode has prompts (use --mode=generate, or --seq-len for train and infer)", o.name)
			}
		}
	}
	if f.kvh.set {
		d.KVH = f.kvh.v
	}
	if f.hidden.set {
		d.Hidden = f.hidden.v
	}
	if mode != Generate {
		return nil
	}
	if f.t.set {
		return errors.New("--seq-len: generate mode's sequences are its prompts (use --prompt-len)")
	}
	d.T, d.New = p.Prompt, p.New
	if f.prompt.set {
		d.T = f.prompt.v
	}
	if f.newTokens.set {
		d.New = f.newTokens.v
	}
	if d.T < 1 {
		return fmt.Errorf("--prompt-len: %d is not allowed (must be at least 1)", d.T)
	}
	if d.New < 1 {
		return fmt.Errorf("--new-tokens: %d is not allowed (must be at least 1)", d.New)
	}
	return nil
}

// Usage writes the run flags' help.
func Usage(w io.Writer) {
	f := newRunFlags("gpubench")
	f.fs.SetOutput(w)
	f.fs.PrintDefaults()
}
