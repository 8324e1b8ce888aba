package report

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/flops"
	"github.com/gpubench/gpubench/internal/telemetry"
)

func sample(sec int, clock uint32, power float64, energy uint64, mask uint64) telemetry.Sample {
	return telemetry.Sample{Time: time.Unix(1000+int64(sec), 0), SMClockMHz: clock, TemperatureC: uint32(40 + sec),
		PowerW: power, EnergyMJ: energy, MemoryUsedBytes: 9 << 30, ReasonsMask: mask, Reasons: telemetry.DecodeReasons(mask)}
}

// newResult builds a filled, finalized Result.
func newResult(t *testing.T, mode config.Mode, n int) *Result {
	t.Helper()
	r := &Result{
		Version:   "test",
		StartedAt: time.Unix(1000, 0).UTC(),
		Config:    Config{Model: "gpt2-124m", Dims: DimsOf(config.Presets[2].Dims(8)), Mode: mode, Iters: 20, Warmup: 3, Seed: 42},
		Device: Device{Name: "NVIDIA H100 80GB HBM3", CCMajor: 9, CCMinor: 0, SMs: 132, MemoryBytes: 85 << 30,
			MaxSMClockMHz: 1980, DriverVersion: "550.54.15", CUDAVersion: "12.4"},
		Memory: Memory{PeakBytes: 9<<30 + 123456789},
	}
	for i := range n {
		f := 40 + 0.37*float64((i*7)%11)
		it := Iteration{Index: i, ForwardMs: f, StepMs: f, WallMs: f + 0.2 + 0.01*float64(i%3), Loss: Float(10.9 - 0.05*float64(i))}
		if mode == config.Train {
			it.BackwardMs = 2*f + 0.123*float64(i%5)
			it.StepMs = f + it.BackwardMs + 0.05
			it.WallMs = it.StepMs + 0.3
		}
		r.Iterations = append(r.Iterations, it)
	}
	before := sample(0, 345, 70, 5_000_000, telemetry.ReasonGpuIdle)
	after := sample(9, 400, 90, 7_500_000, telemetry.ReasonGpuIdle)
	r.Telemetry = &Telemetry{
		Static: telemetry.Static{Name: "NVIDIA H100 80GB HBM3", MaxSMClockMHz: 1980},
		Before: &before,
		During: []telemetry.Sample{sample(1, 1980, 600, 5_500_000, 0), sample(2, 1755, 700, 6_000_000, telemetry.ReasonSwPowerCap)},
		After:  &after,
	}
	if err := r.Finalize(); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFinalize(t *testing.T) {
	r := newResult(t, config.Train, 20)
	c := flops.Count(config.Presets[2].Dims(8))
	if r.FLOPsPerIter != c.Total() || r.TokensPerIter != 8*1024 || r.CompletedIters != 20 || r.SchemaVersion != SchemaVersion {
		t.Errorf("flops %d tokens %d completed %d", r.FLOPsPerIter, r.TokensPerIter, r.CompletedIters)
	}
	sec := r.Summary.Step.Median / 1000
	if !close(r.TokensPerSec, 8192/sec) || !close(r.TFLOPS, float64(c.Total())/sec/1e12) {
		t.Errorf("rates %v %v", r.TokensPerSec, r.TFLOPS)
	}
	if r.PeakTFLOPS != 66.9 || r.PeakSource != "table: H100 SXM" || !close(r.PeakFraction, r.TFLOPS/66.9) {
		t.Errorf("peak %v %q %v", r.PeakTFLOPS, r.PeakSource, r.PeakFraction)
	}
	if r.Summary.Backward == nil || r.Summary.Step.N != 20 || r.LossFirst != 10.9 || !close(float64(r.LossLast), 10.9-0.05*19) {
		t.Errorf("summary %+v loss %v→%v", r.Summary, r.LossFirst, r.LossLast)
	}
	if r.Memory.PlannedBytes <= 0 || r.Memory.RequiredBytes <= r.Memory.PlannedBytes {
		t.Errorf("memory %+v", r.Memory)
	}
	if s := r.Telemetry.Summary; s.EnergyJ != 2500 || s.SMClockMinMHz != 1755 || s.Samples != 2 {
		t.Errorf("telemetry summary %+v", s)
	}

	in := newResult(t, config.Infer, 5)
	if in.Summary.Backward != nil || in.FLOPsPerIter != c.Forward {
		t.Errorf("infer: backward %v flops %d", in.Summary.Backward, in.FLOPsPerIter)
	}

	// Errors: bad mode, bad dims, NaN time.
	bad := newResult(t, config.Train, 3)
	bad.Config.Mode = "sideways"
	if bad.Finalize() == nil {
		t.Error("bad mode accepted")
	}
	bad = newResult(t, config.Train, 3)
	bad.Config.Dims.Heads = 7
	if bad.Finalize() == nil {
		t.Error("bad dims accepted")
	}
	bad = newResult(t, config.Train, 3)
	bad.Iterations[1].StepMs = math.NaN()
	if bad.Finalize() == nil {
		t.Error("NaN step accepted")
	}
	// Unknown GPU, no clock: no peak, no fraction.
	u := newResult(t, config.Train, 3)
	u.Device = Device{Name: "Mystery"}
	u.Telemetry = nil
	u.PeakTFLOPS = 0
	if err := u.Finalize(); err != nil || u.PeakTFLOPS != 0 || u.PeakFraction != 0 || !strings.HasPrefix(u.PeakSource, "unknown") {
		t.Errorf("unknown device: %v %v %v %q", err, u.PeakTFLOPS, u.PeakFraction, u.PeakSource)
	}
}

func close(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// decode round-trips r through WriteJSON and returns the generic JSON.
func decode(t *testing.T, r *Result) map[string]any {
	t.Helper()
	path := filepath.Join(t.TempDir(), "result.json")
	if err := WriteJSON(path, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	// And back into a Result.
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Summary.Step != r.Summary.Step || back.TFLOPS != r.TFLOPS || len(back.Iterations) != len(r.Iterations) {
		t.Error("JSON round trip changed the result")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("WriteJSON left %d files", len(entries))
	}
	return m
}

func get(t *testing.T, m map[string]any, path string) float64 {
	t.Helper()
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("JSON %s: %q is not an object", path, k)
		}
		cur, ok = mm[k]
		if !ok {
			t.Fatalf("JSON has no %s", path)
		}
	}
	f, ok := cur.(float64)
	if !ok {
		t.Fatalf("JSON %s = %v, not a number", path, cur)
	}
	return f
}

var numRE = regexp.MustCompile(`\d+(?:\.\d+)?`) // the table prints no negative numbers

func nums(t *testing.T, line string) []float64 {
	t.Helper()
	var out []float64
	for _, s := range numRE.FindAllString(line, -1) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

// agree checks that a printed number with the given decimals is the JSON
// value rounded.
func agree(t *testing.T, what string, printed float64, decimals int, json float64) {
	t.Helper()
	if tol := 0.5*math.Pow(10, -float64(decimals)) + 1e-9; math.Abs(printed-json) > tol {
		t.Errorf("%s: table %v, JSON %v", what, printed, json)
	}
}

func TestTableAgreesWithJSON(t *testing.T) {
	for _, mode := range []config.Mode{config.Train, config.Infer} {
		t.Run(string(mode), func(t *testing.T) {
			r := newResult(t, mode, 20)
			m := decode(t, r)
			var buf bytes.Buffer
			if err := WriteTable(&buf, r); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			t.Log("\n" + out)
			lines := map[string]string{}
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) > 0 {
					lines[f[0]] = l
				}
			}
			if !strings.HasPrefix(out, "gpubench  gpt2-124m  "+string(mode)+"  V=50257 MaxT=1024 T=1024 L=12 H=12 C=768 B=8\n") {
				t.Errorf("header: %q", strings.SplitN(out, "\n", 2)[0])
			}
			if !strings.Contains(lines["device"], "NVIDIA H100 80GB HBM3") || !strings.Contains(lines["device"], "sm_90") {
				t.Errorf("device line: %q", lines["device"])
			}

			rows := []string{"forward", "step", "wall"}
			if mode == config.Train {
				rows = append(rows, "backward")
			} else if _, ok := lines["backward"]; ok {
				t.Error("infer table has a backward row")
			}
			if _, ok := m["summary"].(map[string]any)["backward_ms"]; ok != (mode == config.Train) {
				t.Errorf("JSON backward_ms present=%v in %s", ok, mode)
			}
			if _, ok := m["iterations"].([]any)[0].(map[string]any)["backward_ms"]; ok != (mode == config.Train) {
				t.Errorf("JSON iterations[0].backward_ms present=%v in %s", ok, mode)
			}
			cols := []string{"median", "mean", "min", "max", "p90", "std"}
			for _, row := range rows {
				l, ok := lines[row]
				if !ok {
					t.Fatalf("no %s row", row)
				}
				got := nums(t, l)
				if len(got) != len(cols) {
					t.Fatalf("%s row has %d numbers: %q", row, len(got), l)
				}
				for i, col := range cols {
					agree(t, row+"."+col, got[i], 3, get(t, m, "summary."+row+"_ms."+col))
				}
			}

			tok := nums(t, lines["tokens/s"])
			agree(t, "tokens/s", tok[0], 0, get(t, m, "tokens_per_s"))
			if int64(tok[1]) != int64(get(t, m, "tokens_per_iter")) {
				t.Errorf("tokens/iter %v", tok[1])
			}
			tf := nums(t, strings.ReplaceAll(lines["TFLOP/s"], "FP32", ""))
			agree(t, "TFLOP/s", tf[0], 2, get(t, m, "tflops"))
			agree(t, "% of peak", tf[1], 1, 100*get(t, m, "peak_fraction"))
			agree(t, "peak", tf[2], 2, get(t, m, "peak_tflops"))

			mem := regexp.MustCompile(`peak ([\d.]+) GiB\s+planned ([\d.]+) GiB`).FindStringSubmatch(lines["memory"])
			if mem == nil {
				t.Fatalf("memory line %q", lines["memory"])
			}
			pk, _ := strconv.ParseFloat(mem[1], 64)
			pl, _ := strconv.ParseFloat(mem[2], 64)
			agree(t, "peak memory GiB", pk, 2, get(t, m, "memory.peak_bytes")/(1<<30))
			agree(t, "planned memory GiB", pl, 2, get(t, m, "memory.planned_bytes")/(1<<30))

			loss := nums(t, lines["loss"])
			agree(t, "loss first", loss[0], 4, get(t, m, "loss_first"))
			agree(t, "loss last", loss[1], 4, get(t, m, "loss_last"))

			nv := nums(t, lines["nvml"])
			if nv[0] != get(t, m, "telemetry.summary.sm_clock_min_mhz") || nv[1] != get(t, m, "telemetry.summary.sm_clock_max_mhz") {
				t.Errorf("nvml line %q", lines["nvml"])
			}
			if !strings.Contains(lines["nvml"], "clock events: sw_power_cap") {
				t.Errorf("nvml line %q", lines["nvml"])
			}
			if _, ok := lines["PARTIAL"]; ok || m["partial"] != false {
				t.Error("PARTIAL on a complete run")
			}
		})
	}
}

func TestPartial(t *testing.T) {
	r := newResult(t, config.Train, 7)
	r.Partial = true
	var buf bytes.Buffer
	if err := WriteTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	m := decode(t, r)
	if m["partial"] != true || get(t, m, "completed_iters") != 7 {
		t.Errorf("JSON partial %v completed %v", m["partial"], m["completed_iters"])
	}
	if !strings.Contains(buf.String(), "\nPARTIAL   interrupted after 7 of 20 iterations\n") {
		t.Errorf("no PARTIAL marker:\n%s", buf.String())
	}

	// Interrupted before the first measured iteration.
	z := newResult(t, config.Train, 0)
	z.Partial = true
	buf.Reset()
	if err := WriteTable(&buf, z); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "PARTIAL") || !strings.Contains(buf.String(), "no completed iterations") {
		t.Errorf("empty partial table:\n%s", buf.String())
	}
	if m := decode(t, z); get(t, m, "completed_iters") != 0 || get(t, m, "tokens_per_s") != 0 {
		t.Error("empty partial JSON")
	}
}

func TestNaNLossAndNoTelemetry(t *testing.T) {
	r := newResult(t, config.Train, 4)
	r.Iterations[3].Loss = Float(math.NaN())
	r.Telemetry = nil
	r.TelemetryError = "telemetry: NVML unavailable: nvmlInit: Driver Not Loaded"
	if err := r.Finalize(); err != nil {
		t.Fatal(err)
	}
	m := decode(t, r)
	if v, ok := m["loss_last"]; !ok || v != nil {
		t.Errorf("loss_last = %v, want null", v)
	}
	if _, ok := m["telemetry"]; ok {
		t.Error("telemetry present")
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "-> NaN") || !strings.Contains(buf.String(), "nvml      unavailable: telemetry: NVML unavailable") {
		t.Errorf("table:\n%s", buf.String())
	}
}

// TestJSONNames pins the top-level and config field names.
func TestJSONNames(t *testing.T) {
	m := decode(t, newResult(t, config.Train, 2))
	for _, k := range []string{"schema_version", "gpubench_version", "started_at", "config", "device", "iterations",
		"partial", "completed_iters", "summary", "tokens_per_iter", "tokens_per_s", "flops", "flops_per_iter",
		"tflops", "peak_tflops", "peak_source", "peak_fraction", "loss_first", "loss_last", "memory", "telemetry"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	for _, k := range []string{"config.dims.vocab", "config.dims.context", "config.dims.seq_len", "config.dims.layers",
		"config.dims.heads", "config.dims.channels", "config.dims.batch_size", "config.iters", "config.warmup", "config.seed",
		"device.cc_major", "device.sms", "device.memory_bytes", "summary.step_ms.p90", "summary.wall_ms.std",
		"flops.forward", "flops.backward", "flops.six_nd", "memory.required_bytes",
		"telemetry.summary.energy_j", "telemetry.before.power_w"} {
		get(t, m, k)
	}
	if m["config"].(map[string]any)["mode"] != "train" || m["config"].(map[string]any)["profile"] != false {
		t.Error("config.mode/profile")
	}
	for _, k := range []string{"model", "preset"} {
		if _, ok := m["config"].(map[string]any)[k].(string); !ok {
			t.Errorf("JSON lacks the string config.%s", k)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {5 << 20, "5.0 MiB"},
		{1<<30 - 1, "1024.0 MiB"}, {1 << 30, "1.00 GiB"}, {80 << 30, "80.00 GiB"},
	} {
		if got := HumanBytes(tc.n); got != tc.want {
			t.Errorf("HumanBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestFlawedRunSaysSo: a run with flaws names them in its table's first
// line and in the JSON's config.
func TestFlawedRunSaysSo(t *testing.T) {
	r := newResult(t, config.Train, 5)
	r.Config.Flaws = []config.Flaw{config.SyncEveryLaunch, config.HostStall}
	var buf bytes.Buffer
	if err := WriteTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	if first := strings.SplitN(buf.String(), "\n", 2)[0]; first != "FLAWED (sync-every-launch, host-stall): not a benchmark result" {
		t.Errorf("first line %q", first)
	}
	var js bytes.Buffer
	if err := EncodeJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"flaws": [
      "sync-every-launch",
      "host-stall"
    ]`) {
		t.Errorf("JSON config lacks the flaws:\n%s", js.String()[:min(600, js.Len())])
	}
	if got := FlawLine([]config.Flaw{config.PinnedUpload}); got != "LESSON (pinned-upload, the fix of pageable-upload): not a benchmark result" {
		t.Errorf("fix only: %q", got)
	}
	if FlawLine(nil) != "" {
		t.Error("a clean run has a flaw line")
	}
	r.Config.Flaws = nil
	js.Reset()
	if err := EncodeJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(js.String(), "flaws") {
		t.Error("a clean run's JSON names flaws")
	}
}

func TestConfigOf(t *testing.T) {
	run := config.Run{Preset: "tiny", Dims: config.Presets[0].Dims(2), Mode: config.Infer, Warmup: 1, Iters: 5,
		Profile: true, Seed: 1 << 63, SyncLaunches: true, Flaws: []config.Flaw{config.HostStall}}
	c := ConfigOf(run)
	if len(c.Flaws) != 1 || c.Flaws[0] != config.HostStall {
		t.Errorf("ConfigOf flaws = %v", c.Flaws)
	}
	if c.Model != "tiny" || c.Dims.Config() != run.Dims || c.Mode != config.Infer || c.Iters != 5 || c.Warmup != 1 ||
		!c.Profile || c.Seed != 1<<63 || !c.SyncLaunches || c.CheckNumerics {
		t.Errorf("ConfigOf = %+v", c)
	}
	run.Preset = ""
	if ConfigOf(run).Model != "custom" {
		t.Error("empty preset is not custom")
	}
}

// TestModelLabel runs the flags through config.ParseRun, as gpubench does:
// a preset whose model shape the flags changed is reported as "custom",
// from that preset, in the JSON and in the table's header.
func TestModelLabel(t *testing.T) {
	for _, tc := range []struct {
		args          string
		model, preset string
		header        string
	}{
		{"", "small", "small", "gpubench  small  train  V=8192 MaxT=256 T=256 L=6 H=8 C=512 B=8\n"},
		{"--model=tiny", "tiny", "tiny", "gpubench  tiny  train  "},
		{"--model=tiny --batch-size=3 --mode=infer", "tiny", "tiny", "gpubench  tiny  infer  "},
		{"--model=tiny --seq-len=37", "tiny", "tiny", "gpubench  tiny  train  V=512 MaxT=64 T=37 "},
		{"--model=tiny --layers=2 --heads=4", "tiny", "tiny", "gpubench  tiny  train  "}, // the preset's own values
		{"--model=tiny --layers=3", "custom", "tiny", "gpubench  custom (from tiny)  train  V=512 MaxT=64 T=64 L=3 H=4 C=128 B=8\n"},
		{"--model=tiny --heads=8", "custom", "tiny", "gpubench  custom (from tiny)  train  "},
		{"--model=tiny --channels=256", "custom", "tiny", "gpubench  custom (from tiny)  train  "},
		{"--model=small --vocab=1000", "custom", "small", "gpubench  custom (from small)  train  V=1000 "},
		{"--model=tiny --context=128", "custom", "tiny", "gpubench  custom (from tiny)  train  V=512 MaxT=128 T=128 "},
		{"--model=tiny --vocab=1000 --seq-len=37 --layers=2 --heads=3 --channels=96 --batch-size=3", "custom", "tiny",
			"gpubench  custom (from tiny)  train  V=1000 MaxT=64 T=37 L=2 H=3 C=96 B=3\n"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			run, err := config.ParseRun(strings.Fields(tc.args))
			if err != nil {
				t.Fatal(err)
			}
			if got := run.Model(); got != tc.model {
				t.Errorf("Run.Model() = %q, want %q", got, tc.model)
			}
			r := &Result{Config: ConfigOf(run), Iterations: []Iteration{{ForwardMs: 1, BackwardMs: 2, StepMs: 3, WallMs: 3, Loss: 1}}}
			if run.Mode == config.Infer {
				r.Iterations[0].BackwardMs = 0
			}
			if err := r.Finalize(); err != nil {
				t.Fatal(err)
			}
			c := decode(t, r)["config"].(map[string]any)
			if c["model"] != tc.model || c["preset"] != tc.preset {
				t.Errorf("JSON config model %v preset %v, want %q %q", c["model"], c["preset"], tc.model, tc.preset)
			}
			var buf bytes.Buffer
			if err := WriteTable(&buf, r); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(buf.String(), tc.header) {
				t.Errorf("table header %q, want it to start %q", strings.SplitN(buf.String(), "\n", 2)[0], tc.header)
			}
		})
	}
}

func TestDimsRoundTrip(t *testing.T) {
	d := config.Dims{V: 1, MaxT: 2, T: 3, L: 4, NH: 5, C: 6, B: 7}
	if DimsOf(d).Config() != d {
		t.Error("DimsOf/Config")
	}
}
