package cli

import (
	"bytes"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// TestStartupInitialisesBeforeCu keeps package startup's promise: its init
// runs before gorgonia.org/cu's only while every package it depends on is
// either a dependency of cu too or has an import path that sorts before
// gorgonia.org/cu (Go initialises packages in path order where
// dependencies allow). One import too many here, and a machine without a
// GPU gets cu's exit instead of gpubench's message.
func TestStartupInitialisesBeforeCu(t *testing.T) {
	deps := func(pkg string) map[string]bool {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		set := map[string]bool{}
		for _, p := range strings.Fields(string(out)) {
			set[p] = true
		}
		return set
	}
	const cu = "gorgonia.org/cu"
	cuDeps := deps(cu)
	startup := deps("github.com/gpubench/gpubench/internal/startup")
	if startup[cu] {
		t.Fatal("package startup depends on gorgonia.org/cu")
	}
	var late []string
	for p := range startup {
		if !cuDeps[p] && p > cu {
			late = append(late, p)
		}
	}
	sort.Strings(late)
	if len(late) > 0 {
		t.Errorf("package startup would initialise after gorgonia.org/cu: it needs %s, which cu does not import and which sort after %s",
			strings.Join(late, ", "), cu)
	}
}

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
		{"run bad preset", []string{"--model=huge"}, true, ExitUsage, "", "tiny, small, gpt2-124m"},
		{"run explicit bad iters", []string{"run", "--iters=0"}, true, ExitUsage, "", "--iters"},
		{"info with argument", []string{"info", "x"}, true, ExitUsage, "", "info takes no arguments"},
		{"valid run left to main", []string{"--model=tiny"}, false, 0, "", ""},
		{"info left to main", []string{"info"}, false, 0, "", ""},
		{"check left to main", []string{"check", "x.sqlite"}, false, 0, "", ""},
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
