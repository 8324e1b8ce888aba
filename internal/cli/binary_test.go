package cli

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/launch"
	"github.com/gpubench/gpubench/internal/nccl"
)

// TestBinaryWithoutGPU builds the real gpubench binary, which links
// gorgonia.org/cu, and runs the commands that need no GPU: they must work
// on a machine without one (CI), where cu's own init would exit, and just
// the same on a machine with one. Building it needs the CUDA headers and
// libcuda to link against; make test exports the cgo flags that find them.
func TestBinaryWithoutGPU(t *testing.T) {
	if testing.Short() {
		t.Skip("builds gpubench")
	}
	bin := filepath.Join(t.TempDir(), "gpubench")
	build := exec.Command("go", "build", "-o", bin, "github.com/gpubench/gpubench/cmd/gpubench")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/gpubench (it needs the CUDA toolkit; make test sets the cgo flags): %v\n%s", err, out)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		var o, e bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			code = ee.ExitCode()
		default:
			t.Fatalf("gpubench %s: %v", strings.Join(args, " "), err)
		}
		// cu's init prints this to stdout before it exits.
		if strings.Contains(o.String()+e.String(), "Error in initialization") {
			t.Errorf("gpubench %s: gorgonia.org/cu's init ran cuInit and exited:\n%s%s", strings.Join(args, " "), o.String(), e.String())
		}
		return code, o.String(), e.String()
	}

	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string // a piece of stdout
		stderr string // a piece of stderr
		line   bool   // stderr is one line
	}{
		{"help", []string{"help"}, ExitOK, "gpubench check", "", false},
		{"plan", []string{"plan"}, ExitOK, "per iteration", "", false},
		{"plan bad format", []string{"plan", "--format=bogus"}, ExitUsage, "", "--format", true},
		{"check", []string{"check", "--model=tiny", "--iters", "3", "testdata/nsys/tiny-h200.sqlite"}, ExitOK, "all iterations", "", false},
		{"check without capture range", []string{"check", "--model=tiny", "--iters", "3", "testdata/nsys/tiny-nocapture-h200.sqlite"},
			ExitFailure, "all iterations", "lies outside every iteration range", false},
		// Output paths are refused before the GPU is touched (without one,
		// a run that got further would exit 1 saying there is none).
		{"run with --json in a missing directory", []string{"--model=tiny", "--json=/nonexistent/dir/x.json"},
			ExitUsage, "", "gpubench: --json: /nonexistent/dir/x.json: the directory /nonexistent/dir does not exist", true},
		{"run with --dump under a file", []string{"--model=tiny", "--dump=go.mod/dump"},
			ExitUsage, "", "gpubench: --dump: go.mod/dump: go.mod is a file", true},
		// --gpus's bad input is refused before any child starts.
		{"run with --gpus=0", []string{"--model=tiny", "--gpus=0"}, ExitUsage, "", "gpubench: --gpus: 0 is not allowed (allowed: 1..64", true},
		{"run with --gpus and --graph", []string{"--model=tiny", "--gpus=2", "--graph"}, ExitUsage, "", "gpubench: --gpus: cannot be combined with --graph", true},
		{"plan per rank", []string{"plan", "--model=tiny", "--gpus=2"}, ExitOK, "allreduce rank1 bucket0", "", false},
		// A file that is no export is refused in one line, exit 1.
		{"check a text file", []string{"check", "--model=tiny", "go.mod"}, ExitFailure, "", "gpubench: go.mod: not an SQLite database", true},
		{"check a missing file", []string{"check", "--model=tiny", "missing.sqlite"}, ExitFailure, "", "gpubench: missing.sqlite: no such file or directory", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := run(t, c.args...)
			if code != c.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, stdout, stderr)
			}
			if !strings.Contains(stdout, c.stdout) {
				t.Errorf("stdout lacks %q:\n%s", c.stdout, stdout)
			}
			if !strings.Contains(stderr, c.stderr) {
				t.Errorf("stderr lacks %q:\n%s", c.stderr, stderr)
			}
			if c.code == ExitOK && stderr != "" {
				t.Errorf("stderr is not empty:\n%s", stderr)
			}
			if c.line && strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", stderr)
			}
		})
	}

	// --gpus=2 where NCCL or a second GPU is missing: one line, before
	// any child starts (CI has neither).
	t.Run("gpus without NCCL or GPUs", func(t *testing.T) {
		_, nerr := nccl.Load()
		n, known := launch.VisibleGPUs()
		if nerr == nil && (!known || n >= 2) {
			t.Skip("this machine has NCCL and maybe two GPUs: --gpus=2 would run")
		}
		code, stdout, stderr := run(t, "--model=tiny", "--gpus=2")
		if code == ExitOK || strings.Count(stderr, "\n") != 1 || !(strings.Contains(stderr, "load NCCL: libnccl.so.2") || strings.Contains(stderr, "visible here")) {
			t.Errorf("exit %d, stderr %q, stdout %q: want one line naming NCCL or the visible GPUs", code, stderr, stdout)
		}
	})
	// Without a GPU, --gpus=1 runs its one child, which fails: the parent
	// names the rank and its last line, exit 1.
	t.Run("gpus=1 without a GPU", func(t *testing.T) {
		if _, known := launch.VisibleGPUs(); known {
			t.Skip("this machine has an NVIDIA driver")
		}
		code, _, stderr := run(t, "--model=tiny", "--gpus=1")
		last := stderr[strings.LastIndex(strings.TrimSuffix(stderr, "\n"), "\n")+1:]
		if code != ExitFailure || !strings.HasPrefix(last, "gpubench: --gpus=1: rank 0 failed: exit status 1: gpubench: no usable NVIDIA GPU") {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
	})

	// info needs a GPU: with one it describes it, without one it says so
	// in one line of its own (not cu's).
	t.Run("info", func(t *testing.T) {
		code, stdout, stderr := run(t, "info")
		switch code {
		case ExitOK:
		case ExitFailure:
			if !strings.HasPrefix(stderr, "gpubench: no usable NVIDIA GPU: ") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("without a GPU info must say so in one line, got:\n%s", stderr)
			}
		default:
			t.Errorf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
	})
}
