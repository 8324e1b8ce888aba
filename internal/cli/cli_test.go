package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestNeedsNoDriver keeps the commands of this package off the CUDA
// driver: they run from package startup's init, before gpubench calls
// cuInit, on machines that may have no GPU, so nothing here may reach
// gorgonia.org/cu or the driver binding of package cudrv.
func TestNeedsNoDriver(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	var bad []string
	for _, p := range strings.Fields(string(out)) {
		if p == "gorgonia.org/cu" || strings.HasPrefix(p, "gorgonia.org/cu/") ||
			p == "github.com/gpubench/gpubench/internal/cudrv" {
			bad = append(bad, p)
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("package cli depends on the CUDA driver binding: %s", strings.Join(bad, ", "))
	}
}

// Real exports of gpubench --model=tiny --iters 3 (see testdata/nsys).
var (
	tinyExport      = filepath.Join("..", "..", "testdata", "nsys", "tiny-h200.sqlite")
	noCaptureExport = filepath.Join("..", "..", "testdata", "nsys", "tiny-nocapture-h200.sqlite")
)

func TestWithoutGPU(t *testing.T) {
	cases := []struct {
		name       string
		args       []string
		handled    bool
		code       int
		stdout     string
		stderrLine string
	}{
		{"help", []string{"help"}, true, ExitOK, "gpubench check", ""},
		{"--help", []string{"--help"}, true, ExitOK, "Usage:", ""},
		{"run --help", []string{"--model=tiny", "--help"}, true, ExitOK, "", "-batch-size"},
		{"plan", []string{"plan", "--model=tiny"}, true, ExitOK, "backward", ""},
		{"plan json", []string{"plan", "--model=tiny", "--format=json"}, true, ExitOK, `"per_iteration"`, ""},
		{"plan bad format", []string{"plan", "--format=xml"}, true, ExitUsage, "", "--format"},
		{"plan bad shape", []string{"plan", "--heads=0"}, true, ExitUsage, "", "--heads"},
		{"plan tf32 on the Hopper tier", []string{"plan", "--model=tiny", "--dtype=tf32"}, true, ExitOK, "matmul_backward_weight_wgmma_tf32", ""},
		{"plan tf32 on the sm_80 tier", []string{"plan", "--model=tiny", "--dtype=tf32", "--tier=mma"}, true, ExitOK, "matmul_backward_weight_tf32", ""},
		{"plan fp32 on the Hopper tier", []string{"plan", "--model=tiny", "--dtype=fp32", "--tier=wgmma"}, true, ExitUsage, "", "bf16 and tf32 products only"},
		{"run bad preset", []string{"--model=huge"}, true, ExitUsage, "", "tiny, small, gpt2-124m"},
		{"run explicit bad iters", []string{"run", "--iters=0"}, true, ExitUsage, "", "--iters"},
		{"flaws", []string{"flaws"}, true, ExitOK, "sync-every-launch\n  does:", ""},
		{"flaws with argument", []string{"flaws", "x"}, true, ExitUsage, "", "flaws takes no arguments"},
		{"plan with a flaw", []string{"plan", "--model=tiny", "--flaw=host-stall,readback-per-layer"}, true, ExitOK, "readback: cudaMemcpyAsync (dtoh residual3[0], 4 B, pageable memory), cudaStreamSynchronize()", ""},
		{"run unknown flaw", []string{"--flaw=nope"}, true, ExitUsage, "", "allowed: sync-every-launch"},
		{"run flaw with graph", []string{"--graph", "--flaw=sync-every-launch"}, true, ExitUsage, "", "--graph"},
		{"run serial-copies in infer mode", []string{"--mode=infer", "--flaw=serial-copies"}, true, ExitUsage, "", "--mode=train"},
		{"plan with overlapped copies", []string{"plan", "--model=tiny", "--flaw=overlapped-copies"}, true, ExitOK, "cudaStreamWaitEvent (grads ready) on stream 1, cudaMemcpyAsync (dtoh dln1w[1], 512 B, pinned memory) on stream 1", ""},
		{"info with argument", []string{"info", "x"}, true, ExitUsage, "", "info takes no arguments"},
		{"valid run left to main", []string{"--model=tiny"}, false, 0, "", ""},
		{"info left to main", []string{"info"}, false, 0, "", ""},
		{"check", []string{"check", "--model=tiny", "--iters=3", tinyExport}, true, ExitOK, "all iterations", ""},
		{"check without capture range", []string{"check", "--model=tiny", "--iters=3", noCaptureExport}, true, ExitFailure, "", "lies outside every iteration range"},
		{"check --flaw on a clean capture", []string{"check", "--model=tiny", "--iters=3", "--flaw=sync-every-launch", tinyExport}, true, ExitFailure, "sync-every-launch: signature missing in iteration0", ""},
		{"check --flaw, bad combination", []string{"check", "--model=tiny", "--graph", "--flaw=sync-every-launch", tinyExport}, true, ExitUsage, "", "--graph"},
		{"check missing file", []string{"check", "--model=tiny", "no-such-report.sqlite"}, true, ExitFailure, "", "no-such-report.sqlite"},
		{"check no report", []string{"check", "--model=tiny"}, true, ExitUsage, "", "expected 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			handled, code := WithoutGPU(c.args, &stdout, &stderr)
			if handled != c.handled || code != c.code {
				t.Fatalf("handled %v code %d, want %v %d (stderr %q)", handled, code, c.handled, c.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), c.stdout) {
				t.Errorf("stdout lacks %q:\n%s", c.stdout, stdout.String())
			}
			if !strings.Contains(stderr.String(), c.stderrLine) {
				t.Errorf("stderr lacks %q:\n%s", c.stderrLine, stderr.String())
			}
			if c.code == ExitUsage && strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("a usage error must be one line, got %q", stderr.String())
			}
		})
	}
}

// TestPlanSMs: --sms changes the launch shapes plan prints, is refused
// outside 1..1024, and defaults to the H100/H200's 132.
func TestPlanSMs(t *testing.T) {
	var def, few, bad bytes.Buffer
	if err := Plan([]string{"--model=small"}, &def); err != nil {
		t.Fatal(err)
	}
	if err := Plan([]string{"--model=small", "--sms=20"}, &few); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(def.String(), "launch shapes for 132 SMs") || !strings.Contains(few.String(), "launch shapes for 20 SMs") {
		t.Errorf("plan headers: %q / %q", firstLine(def.String()), firstLine(few.String()))
	}
	if def.String() == strings.Replace(few.String(), "for 20 SMs", "for 132 SMs", 1) {
		t.Error("--sms=20 printed the same launch shapes as 132")
	}
	err := Plan([]string{"--sms=0"}, &bad)
	var ue UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--sms: 0 is not allowed") {
		t.Errorf("--sms=0: %v", err)
	}
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

// TestPlanPerRank: plan --gpus=N prints each rank's program, whose
// all-reduce ranges carry the rank; a plain plan has none.
func TestPlanPerRank(t *testing.T) {
	var out, plain bytes.Buffer
	if err := Plan([]string{"--model=tiny", "--gpus=3"}, &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for r := range 3 {
		if !strings.Contains(s, fmt.Sprintf("rank %d of 3 (device %d)\n", r, r)) {
			t.Errorf("plan --gpus=3 has no header for rank %d", r)
		}
		for _, other := range []int{0, 1, 2} {
			name := fmt.Sprintf("allreduce rank%d bucket", other)
			part := s[strings.Index(s, fmt.Sprintf("rank %d of 3", r)):]
			if next := strings.Index(part[1:], "rank "+fmt.Sprint(r+1)+" of 3"); next >= 0 {
				part = part[:next]
			}
			if got := strings.Contains(part, name); got != (other == r) {
				t.Errorf("rank %d's plan: %q present = %v", r, name, got)
			}
		}
	}
	if !strings.Contains(s, "ncclAllReduce") {
		t.Error("plan --gpus=3 lists no ncclAllReduce")
	}
	if err := Plan([]string{"--model=tiny"}, &plain); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plain.String(), "allreduce") {
		t.Error("the plain plan all-reduces")
	}
	var js bytes.Buffer
	if err := Plan([]string{"--model=tiny", "--gpus=2", "--format=json"}, &js); err != nil {
		t.Fatal(err)
	}
	var plans []map[string]any
	if err := json.Unmarshal(js.Bytes(), &plans); err != nil || len(plans) != 2 {
		t.Fatalf("plan --gpus=2 --format=json: %d plans, %v", len(plans), err)
	}
}
