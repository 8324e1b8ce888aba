// Package report holds the result of a gpubench run and writes it as a
// human table (WriteTable) and as JSON (WriteJSON).
//
// The caller fills the measured parts of a Result (Config, Device,
// Iterations, Memory.PeakBytes, Telemetry, Partial) and calls Finalize,
// which derives everything else: summaries, tokens/s, TFLOP/s and share of
// peak, loss first and last, the memory plan. WriteTable prints only
// numbers held in the Result, so the table and the JSON always agree.
//
// The JSON field names are snake_case and stable; SchemaVersion changes
// when a field is renamed or its meaning changes.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/flops"
	"github.com/gpubench/gpubench/internal/memplan"
	"github.com/gpubench/gpubench/internal/stats"
	"github.com/gpubench/gpubench/internal/telemetry"
	"github.com/gpubench/gpubench/model"
)

// SchemaVersion is the version of the JSON layout.
const SchemaVersion = 3 // 2: config.dtype, config.graph, kernels; peak_fp32_tflops became peak_tflops. 3: LLaMA dims, generate

// Dims is config.Dims with JSON names; the LLaMA fields are omitted for
// GPT-2.
type Dims struct {
	Arch      config.Arch `json:"arch,omitempty"`
	Vocab     int         `json:"vocab"`
	Context   int         `json:"context"`
	SeqLen    int         `json:"seq_len"`
	Layers    int         `json:"layers"`
	Heads     int         `json:"heads"`
	Channels  int         `json:"channels"`
	Batch     int         `json:"batch_size"`
	KVHeads   int         `json:"kv_heads,omitempty"`
	MLP       int         `json:"mlp,omitempty"`
	Eps       float64     `json:"rms_norm_eps,omitempty"`
	Theta     float64     `json:"rope_theta,omitempty"`
	NewTokens int         `json:"new_tokens,omitempty"`
}

// DimsOf converts config.Dims.
func DimsOf(d config.Dims) Dims {
	return Dims{Arch: d.Arch, Vocab: d.V, Context: d.MaxT, SeqLen: d.T, Layers: d.L, Heads: d.NH, Channels: d.C, Batch: d.B,
		KVHeads: d.KVH, MLP: d.Hidden, Eps: d.Eps, Theta: d.Theta, NewTokens: d.New}
}

// Config converts back to config.Dims.
func (d Dims) Config() config.Dims {
	return config.Dims{Arch: d.Arch, V: d.Vocab, MaxT: d.Context, T: d.SeqLen, L: d.Layers, NH: d.Heads, C: d.Channels, B: d.Batch,
		KVH: d.KVHeads, Hidden: d.MLP, Eps: d.Eps, Theta: d.Theta, New: d.NewTokens}
}

// Config is how the run was set up.
type Config struct {
	Model         string       `json:"model"`  // preset name, or "custom" (config.Run.Model)
	Preset        string       `json:"preset"` // the preset the shape started from (--model)
	Dims          Dims         `json:"dims"`
	Mode          config.Mode  `json:"mode"`
	DType         config.DType `json:"dtype"`  // precision (--dtype)
	Graph         bool         `json:"graph"`  // each pass replayed as a CUDA graph (--graph)
	Iters         int          `json:"iters"`  // measured iterations asked for
	Warmup        int          `json:"warmup"` // unmeasured iterations before them
	Seed          uint64       `json:"seed"`
	Profile       bool         `json:"profile"`        // cuProfilerStart/Stop around the measured iterations
	CheckNumerics bool         `json:"check_numerics"` // NaN/Inf check after each iteration
	SyncLaunches  bool         `json:"sync_launches"`  // synchronised after every launch: timings not representative
	// Flaws are the planted flaws (--flaw): a run with any is a profiling
	// lesson, whose numbers are not a benchmark result.
	Flaws []config.Flaw `json:"flaws,omitempty"`
	// Tier is --tier: which tensor-core kernels the products run on.
	Tier config.Tier `json:"tier,omitempty"`
}

// ConfigOf copies the run's settings. A preset whose shape the flags
// changed is model "custom", started from that preset.
func ConfigOf(r config.Run) Config {
	return Config{Model: r.Model(), Preset: r.Preset, Dims: DimsOf(r.Dims), Mode: r.Mode, DType: r.DType, Tier: r.Tier, Graph: r.Graph, Iters: r.Iters, Warmup: r.Warmup,
		Seed: r.Seed, Profile: r.Profile, CheckNumerics: r.CheckNumerics, SyncLaunches: r.SyncLaunches, Flaws: r.Flaws}
}

// Device describes the GPU; the caller fills it from CUDA (and NVML).
type Device struct {
	Index         int    `json:"index"`
	Name          string `json:"name"`
	CCMajor       int    `json:"cc_major"`
	CCMinor       int    `json:"cc_minor"`
	SMs           int    `json:"sms"`
	MemoryBytes   int64  `json:"memory_bytes"` // total device memory
	MaxSMClockMHz int    `json:"max_sm_clock_mhz"`
	DriverVersion string `json:"driver_version"` // e.g. "550.54.15"
	CUDAVersion   string `json:"cuda_version"`   // driver API version, e.g. "12.4"
}

// CC is the compute capability as "major.minor".
func (d Device) CC() string { return fmt.Sprintf("%d.%d", d.CCMajor, d.CCMinor) }

// Float is a float64 that encodes NaN and ±Inf as JSON null (a diverged
// loss must not make the whole report unwritable).
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	x := float64(f)
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(x)
}

// UnmarshalJSON implements json.Unmarshaler; null decodes as NaN.
func (f *Float) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = Float(math.NaN())
		return nil
	}
	var x float64
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	*f = Float(x)
	return nil
}

// Iteration is one measured iteration. Times are milliseconds.
type Iteration struct {
	Index      int     `json:"index"`                 // 0 = first measured (after warmup)
	ForwardMs  float64 `json:"forward_ms"`            // CUDA events around the forward pass
	BackwardMs float64 `json:"backward_ms,omitempty"` // CUDA events; absent in infer mode
	StepMs     float64 `json:"step_ms"`               // events: forward start to backward end
	WallMs     float64 `json:"wall_ms"`               // host clock around the iteration
	Loss       Float   `json:"loss"`
	// Generate mode: the prefill (ForwardMs holds it too) and each decode
	// step, from CUDA events.
	PrefillMs float64   `json:"prefill_ms,omitempty"`
	DecodeMs  []float64 `json:"decode_ms,omitempty"`
}

// Summaries are the stats of the per-iteration times, in milliseconds.
type Summaries struct {
	Forward  stats.Summary  `json:"forward_ms"`
	Backward *stats.Summary `json:"backward_ms,omitempty"` // nil in infer mode
	Step     stats.Summary  `json:"step_ms"`
	Wall     stats.Summary  `json:"wall_ms"`
	// Generate mode: the prefills, and every decode step of every
	// iteration.
	Prefill *stats.Summary `json:"prefill_ms,omitempty"`
	Decode  *stats.Summary `json:"decode_step_ms,omitempty"`
}

// Generate is what a generate run derives beyond the step: the rates of
// its two phases and how close the decode steps come to the memory
// bandwidth that bounds them.
type Generate struct {
	PromptTokens        int64   `json:"prompt_tokens"`        // B·T, per prefill
	NewTokens           int64   `json:"new_tokens"`           // B·New, per iteration
	PrefillTokensPerSec float64 `json:"prefill_tokens_per_s"` // B·T / median prefill
	DecodeTokensPerSec  float64 `json:"decode_tokens_per_s"`  // B / median decode step
	// DecodeBytesPerStep is the mean over the decode steps of the bytes
	// their operations must move (model.Program's annotations: every
	// weight once, the KV cache up to the step's position, activations).
	DecodeBytesPerStep int64   `json:"decode_bytes_per_step"`
	DecodeGBps         float64 `json:"decode_gbps"` // DecodeBytesPerStep / median decode step
	// CopyGBps is the card's device-to-device copy bandwidth (bytes read
	// plus written per second), measured by the caller at the start of
	// the run; BandwidthFraction is DecodeGBps / CopyGBps (0 if not
	// measured).
	CopyGBps          float64 `json:"copy_gbps,omitempty"`
	BandwidthFraction float64 `json:"bandwidth_fraction,omitempty"`
}

// Memory is device memory use in bytes.
type Memory struct {
	PeakBytes     int64 `json:"peak_bytes"`     // measured by the caller
	PlannedBytes  int64 `json:"planned_bytes"`  // memplan Total
	RequiredBytes int64 `json:"required_bytes"` // memplan Required (with rounding and headroom)
}

// Telemetry is what NVML saw; Result.Telemetry is nil when NVML was not
// available (Result.TelemetryError says why).
type Telemetry struct {
	Static  telemetry.Static   `json:"static"`
	Before  *telemetry.Sample  `json:"before,omitempty"`
	During  []telemetry.Sample `json:"during,omitempty"`
	After   *telemetry.Sample  `json:"after,omitempty"`
	Summary telemetry.Summary  `json:"summary"` // filled by Finalize
}

// Result is one run.
type Result struct {
	SchemaVersion int       `json:"schema_version"`
	Version       string    `json:"gpubench_version,omitempty"`
	StartedAt     time.Time `json:"started_at"`

	Config     Config      `json:"config"`
	Device     Device      `json:"device"`
	Iterations []Iteration `json:"iterations"`

	// Partial is set when the run was interrupted; CompletedIters is then
	// less than Config.Iters. Finalize sets CompletedIters.
	Partial        bool `json:"partial"`
	CompletedIters int  `json:"completed_iters"`

	// Derived by Finalize.
	Summary       Summaries    `json:"summary"`
	TokensPerIter int64        `json:"tokens_per_iter"` // B·T
	TokensPerSec  float64      `json:"tokens_per_s"`    // B·T / median step
	FLOPs         flops.Counts `json:"flops"`           // per iteration, by component
	FLOPsPerIter  int64        `json:"flops_per_iter"`  // counted, for the mode
	TFLOPS        float64      `json:"tflops"`          // FLOPsPerIter / median step
	PeakTFLOPS    float64      `json:"peak_tflops"`     // of the dtype's units: FP32, or the bf16/TF32 tensor cores
	PeakSource    string       `json:"peak_source"`
	PeakFraction  float64      `json:"peak_fraction"` // TFLOPS / PeakTFLOPS, 0 if unknown
	LossFirst     Float        `json:"loss_first"`
	LossLast      Float        `json:"loss_last"`

	// Kernels says which kernels ran the step (model.Step.KernelPath): the
	// dtype's products and the PTX modules with their targets.
	Kernels string `json:"kernels,omitempty"`

	// Generate is set in generate mode (Finalize derives it, but for
	// CopyGBps, which the caller measures).
	Generate *Generate `json:"generate,omitempty"`

	Memory         Memory     `json:"memory"`
	Telemetry      *Telemetry `json:"telemetry,omitempty"`
	TelemetryError string     `json:"telemetry_error,omitempty"`
}

// Finalize derives the summary fields from the measured ones. It may be
// called again after more iterations are appended. A Result with no
// iterations (a run interrupted before the first) finalizes to zero
// summaries and rates. If PeakTFLOPS is 0 it is looked up with
// flops.PeakFP32 from Device (Device.MaxSMClockMHz, or else the NVML max SM
// clock from Telemetry). It fails on invalid dims, an unknown mode, or a
// time that is NaN or infinite.
func (r *Result) Finalize() error {
	mode := r.Config.Mode
	if mode != config.Train && mode != config.Infer && mode != config.Generate {
		return fmt.Errorf("report: unknown mode %q", mode)
	}
	r.SchemaVersion = SchemaVersion
	r.CompletedIters = len(r.Iterations)
	d := r.Config.Dims.Config()
	if err := d.Validate(); err != nil {
		return fmt.Errorf("report: %w", err)
	}

	r.TokensPerIter = int64(d.B) * int64(d.T)
	var decodeBytes []int64
	if mode == config.Generate {
		// The generate program's own annotations: FLOPs of every pass,
		// bytes of each decode step.
		prog := model.Program(d, mode, model.Options{DType: r.Config.DType})
		r.FLOPs = flops.Counts{}
		for k, pass := range prog.Passes() {
			var b int64
			for _, op := range pass.Ops() {
				r.FLOPs.Forward += op.FLOPs
				b += op.Bytes
			}
			if k > 0 {
				decodeBytes = append(decodeBytes, b)
			}
		}
		r.FLOPsPerIter = r.FLOPs.Forward
		r.TokensPerIter = int64(d.B) * int64(d.New)
	} else {
		r.FLOPs = flops.CountWith(d, r.Config.Flaws)
		r.FLOPsPerIter = r.FLOPs.ForMode(mode)
	}
	if r.PeakTFLOPS == 0 {
		clock := r.Device.MaxSMClockMHz
		if clock == 0 && r.Telemetry != nil {
			clock = int(r.Telemetry.Static.MaxSMClockMHz)
		}
		r.PeakTFLOPS, r.PeakSource = flops.Peak(r.Config.DType, r.Device.Name, r.Device.SMs, r.Device.CCMajor, r.Device.CCMinor, clock)
	}
	// The program the run ran: its tier on this GPU decides buffers (the
	// Hopper tier's split-K workspace, tf32's transposes).
	o := model.Options{DType: r.Config.DType, Flaws: r.Config.Flaws, Tier: r.Config.Tier, SMs: r.Device.SMs}
	if r.Device.CCMajor > 0 {
		o.CC = 10*r.Device.CCMajor + r.Device.CCMinor
	}
	if p, err := memplan.NewWith(d, mode, o); err == nil {
		r.Memory.PlannedBytes, r.Memory.RequiredBytes = p.Total, p.Required
	}
	if t := r.Telemetry; t != nil {
		t.Summary = telemetry.Summarize(t.Before, t.During, t.After)
	}

	r.Summary = Summaries{}
	r.TokensPerSec, r.TFLOPS, r.PeakFraction = 0, 0, 0
	r.LossFirst, r.LossLast = 0, 0
	n := len(r.Iterations)
	if n == 0 {
		return nil
	}
	col := func(get func(Iteration) float64) []float64 {
		xs := make([]float64, n)
		for i, it := range r.Iterations {
			xs[i] = get(it)
		}
		return xs
	}
	var errs []error
	sum := func(name string, get func(Iteration) float64) stats.Summary {
		s, err := stats.Summarize(col(get))
		if err != nil {
			errs = append(errs, fmt.Errorf("report: %s times: %w", name, err))
		}
		return s
	}
	r.Summary.Forward = sum("forward", func(it Iteration) float64 { return it.ForwardMs })
	if mode == config.Train {
		b := sum("backward", func(it Iteration) float64 { return it.BackwardMs })
		r.Summary.Backward = &b
	}
	r.Summary.Step = sum("step", func(it Iteration) float64 { return it.StepMs })
	r.Summary.Wall = sum("wall", func(it Iteration) float64 { return it.WallMs })
	if mode == config.Generate {
		p := sum("prefill", func(it Iteration) float64 { return it.PrefillMs })
		r.Summary.Prefill = &p
		var steps []float64
		for _, it := range r.Iterations {
			steps = append(steps, it.DecodeMs...)
		}
		if len(steps) > 0 {
			s, err := stats.Summarize(steps)
			if err != nil {
				errs = append(errs, fmt.Errorf("report: decode step times: %w", err))
			}
			r.Summary.Decode = &s
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if mode == config.Generate {
		r.finalizeGenerate(d, decodeBytes)
	}

	if sec := r.Summary.Step.Median / 1000; sec > 0 {
		r.TokensPerSec = float64(r.TokensPerIter) / sec
		r.TFLOPS = float64(r.FLOPsPerIter) / sec / 1e12
		if r.PeakTFLOPS > 0 {
			r.PeakFraction = r.TFLOPS / r.PeakTFLOPS
		}
	}
	r.LossFirst, r.LossLast = r.Iterations[0].Loss, r.Iterations[n-1].Loss
	return nil
}

// finalizeGenerate derives Generate from the summaries and the decode
// steps' bytes, keeping the caller's CopyGBps.
func (r *Result) finalizeGenerate(d config.Dims, decodeBytes []int64) {
	g := r.Generate
	if g == nil {
		g = &Generate{}
		r.Generate = g
	}
	*g = Generate{CopyGBps: g.CopyGBps, PromptTokens: int64(d.B) * int64(d.T), NewTokens: int64(d.B) * int64(d.New)}
	if sec := r.Summary.Prefill.Median / 1000; sec > 0 {
		g.PrefillTokensPerSec = float64(g.PromptTokens) / sec
	}
	if len(decodeBytes) > 0 {
		var sum int64
		for _, b := range decodeBytes {
			sum += b
		}
		g.DecodeBytesPerStep = sum / int64(len(decodeBytes))
	}
	if r.Summary.Decode != nil {
		if sec := r.Summary.Decode.Median / 1000; sec > 0 {
			g.DecodeTokensPerSec = float64(d.B) / sec
			g.DecodeGBps = float64(g.DecodeBytesPerStep) / sec / 1e9
		}
	}
	if g.CopyGBps > 0 {
		g.BandwidthFraction = g.DecodeGBps / g.CopyGBps
	}
}

// HumanBytes formats a byte count in binary units: "512 B", "1.5 KiB",
// "12.3 MiB", "1.23 GiB".
func HumanBytes(n int64) string {
	const (
		kib = 1 << 10
		mib = 1 << 20
		gib = 1 << 30
	)
	switch a := math.Abs(float64(n)); {
	case a < kib:
		return strconv.FormatInt(n, 10) + " B"
	case a < mib:
		return fmt.Sprintf("%.1f KiB", float64(n)/kib)
	case a < gib:
		return fmt.Sprintf("%.1f MiB", float64(n)/mib)
	default:
		return fmt.Sprintf("%.2f GiB", float64(n)/gib)
	}
}
