package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/stats"
)

// EncodeJSON writes r as indented JSON.
func EncodeJSON(w io.Writer, r *Result) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("report: encoding JSON: %w", err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// WriteJSON writes r as indented JSON to path, through a temporary file in
// the same directory renamed into place, so an interrupted write never
// leaves half a file.
func WriteJSON(path string, r *Result) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = EncodeJSON(f, r); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// Number formats of the table. The test that checks the table against the
// JSON parses them back, so change them together.
const (
	msFmt     = "%10.3f"
	lossFmt   = "%.4f"
	tflopsFmt = "%.2f"
	pctFmt    = "%.1f"
	tokFmt    = "%.0f"
)

// FlawLine is the table's first line for a run with planted flaws: that
// they are there, so that its numbers are never taken for a benchmark
// result ("FLAWED (sync-every-launch): not a benchmark result"); a run of
// fix variants only says so. "" without flaws.
func FlawLine(fs []config.Flaw) string {
	if len(fs) == 0 {
		return ""
	}
	var flaws, fixes []string
	for _, f := range fs {
		if fi, ok := config.LookupFlaw(f); ok && fi.FixOf != "" {
			fixes = append(fixes, fmt.Sprintf("%s, the fix of %s", f, fi.FixOf))
		} else {
			flaws = append(flaws, string(f))
		}
	}
	if len(flaws) == 0 {
		return fmt.Sprintf("LESSON (%s): not a benchmark result", strings.Join(fixes, "; "))
	}
	line := fmt.Sprintf("FLAWED (%s)", strings.Join(flaws, ", "))
	if len(fixes) > 0 {
		line += fmt.Sprintf(" with %s", strings.Join(fixes, "; "))
	}
	return line + ": not a benchmark result"
}

// WriteTable writes the human summary of r (after Finalize). Every number
// it prints is a field of r, rounded.
func WriteTable(w io.Writer, r *Result) error {
	var b strings.Builder
	c := r.Config
	d := c.Dims.Config()
	model := c.Model
	if model == "" {
		model = config.Custom
	}
	if model == config.Custom && c.Preset != "" {
		model += " (from " + c.Preset + ")"
	}
	if line := FlawLine(c.Flaws); line != "" {
		b.WriteString(line + "\n")
	}
	fmt.Fprintf(&b, "gpubench  %s  %s  %s\n", model, c.Mode, d)
	dev := r.Device
	fmt.Fprintf(&b, "device    %s  sm_%d%d  %d SMs  %s", orDash(dev.Name), dev.CCMajor, dev.CCMinor, dev.SMs, HumanBytes(dev.MemoryBytes))
	if dev.DriverVersion != "" {
		fmt.Fprintf(&b, "  driver %s", dev.DriverVersion)
	}
	if dev.CUDAVersion != "" {
		fmt.Fprintf(&b, "  CUDA %s", dev.CUDAVersion)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "run       %d of %d iterations measured  warmup %d  seed %d", r.CompletedIters, c.Iters, c.Warmup, c.Seed)
	if c.Profile {
		b.WriteString("  profile")
	}
	if c.CheckNumerics {
		b.WriteString("  check-numerics")
	}
	if c.SyncLaunches {
		b.WriteString("  sync-launches (timings not representative)")
	}
	b.WriteString("\n")
	if r.Partial {
		fmt.Fprintf(&b, "PARTIAL   interrupted after %d of %d iterations\n", r.CompletedIters, c.Iters)
	}
	if r.CompletedIters == 0 {
		b.WriteString("no completed iterations\n")
		_, err := io.WriteString(w, b.String())
		return err
	}

	b.WriteString("\n")
	fmt.Fprintf(&b, "%-9s%10s%10s%10s%10s%10s%10s   (ms, n=%d)\n", "", "median", "mean", "min", "max", "p90", "std", r.Summary.Step.N)
	row := func(name string, s stats.Summary) {
		fmt.Fprintf(&b, "%-9s"+strings.Repeat(msFmt, 6)+"\n", name, s.Median, s.Mean, s.Min, s.Max, s.P90, s.Std)
	}
	if r.Summary.Prefill != nil {
		row("prefill", *r.Summary.Prefill)
	} else {
		row("forward", r.Summary.Forward)
	}
	if r.Summary.Decode != nil {
		fmt.Fprintf(&b, "%-9s"+strings.Repeat(msFmt, 6)+"   (each decode step, n=%d)\n", "decode", r.Summary.Decode.Median, r.Summary.Decode.Mean,
			r.Summary.Decode.Min, r.Summary.Decode.Max, r.Summary.Decode.P90, r.Summary.Decode.Std, r.Summary.Decode.N)
	}
	if r.Summary.Backward != nil {
		row("backward", *r.Summary.Backward)
	}
	row("step", r.Summary.Step)
	row("wall", r.Summary.Wall)
	b.WriteString("\n")

	if g := r.Generate; g != nil {
		fmt.Fprintf(&b, "prefill   "+tokFmt+" tokens/s  (%d prompt tokens at median prefill)\n", g.PrefillTokensPerSec, g.PromptTokens)
		fmt.Fprintf(&b, "decode    "+tokFmt+" tokens/s  (batch %d at median step)  %.0f GB/s", g.DecodeTokensPerSec, d.B, g.DecodeGBps)
		if g.CopyGBps > 0 {
			fmt.Fprintf(&b, "  ("+pctFmt+"%% of the %.0f GB/s device copy measured at start)", 100*g.BandwidthFraction, g.CopyGBps)
		}
		fmt.Fprintf(&b, "  %s moved a step\n", HumanBytes(g.DecodeBytesPerStep))
	}
	fmt.Fprintf(&b, "tokens/s  "+tokFmt+"  (%d tokens/iter at median step)\n", r.TokensPerSec, r.TokensPerIter)
	fmt.Fprintf(&b, "TFLOP/s   "+tflopsFmt, r.TFLOPS)
	if r.PeakTFLOPS > 0 {
		fmt.Fprintf(&b, "  ("+pctFmt+"%% of "+tflopsFmt+" peak; %s)", 100*r.PeakFraction, r.PeakTFLOPS, r.PeakSource)
	} else if r.PeakSource != "" {
		fmt.Fprintf(&b, "  (peak %s)", r.PeakSource)
	}
	fmt.Fprintf(&b, "  counted %.4g FLOP/iter\n", float64(r.FLOPsPerIter))
	fmt.Fprintf(&b, "memory    peak %s  planned %s\n", HumanBytes(r.Memory.PeakBytes), HumanBytes(r.Memory.PlannedBytes))
	if c.Mode != config.Generate {
		fmt.Fprintf(&b, "loss      %s -> %s\n", fmtLoss(r.LossFirst), fmtLoss(r.LossLast))
	}

	if t := r.Telemetry; t != nil {
		s := t.Summary
		fmt.Fprintf(&b, "nvml      SM %d-%d MHz  max %d C  mean %.1f W  max %.1f W", s.SMClockMinMHz, s.SMClockMaxMHz, s.TempMaxC, s.PowerMeanW, s.PowerMaxW)
		if s.EnergyJ > 0 {
			fmt.Fprintf(&b, "  energy %.1f J", s.EnergyJ)
		}
		reasons := "none"
		if len(s.Reasons) > 0 {
			reasons = strings.Join(s.Reasons, ",")
		}
		fmt.Fprintf(&b, "  clock events: %s\n", reasons)
	} else if r.TelemetryError != "" {
		fmt.Fprintf(&b, "nvml      unavailable: %s\n", r.TelemetryError)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtLoss(f Float) string {
	x := float64(f)
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return fmt.Sprint(x)
	}
	return fmt.Sprintf(lossFmt, x)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
