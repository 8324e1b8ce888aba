package ptx

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// These tests run on CI, where there is no GPU: they check the PTX with the
// toolkit's own assembler and compiler, so a bad or stale PTX file fails
// here rather than as a JIT error on a GPU.

// tool finds a CUDA toolkit binary under CUDA_HOME or on PATH. A missing
// toolkit is a failure: `make test` installs it (scripts/install-cuda.sh).
func tool(t *testing.T, name string) string {
	t.Helper()
	if home := os.Getenv("CUDA_HOME"); home != "" {
		p := filepath.Join(home, "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found under $CUDA_HOME/bin or on PATH: run scripts/install-cuda.sh (make test does)", name)
	}
	return p
}

func ptxFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.ptx")
	if err != nil || len(files) == 0 {
		t.Fatalf("no PTX files found (%v)", err)
	}
	return files
}

// TestAssemble assembles every PTX file for Volta, Ampere and Hopper.
func TestAssemble(t *testing.T) {
	ptxas := tool(t, "ptxas")
	for _, f := range ptxFiles(t) {
		for _, arch := range []string{"sm_70", "sm_80", "sm_90"} {
			t.Run(f+"/"+arch, func(t *testing.T) {
				out, err := exec.Command(ptxas, "-arch="+arch, "-o", os.DevNull, f).CombinedOutput()
				if err != nil {
					t.Fatalf("ptxas -arch=%s %s: %v\n%s", arch, f, err, out)
				}
				if len(bytes.TrimSpace(out)) > 0 {
					t.Errorf("ptxas -arch=%s %s printed:\n%s", arch, f, out)
				}
			})
		}
	}
}

// makeVar reads a variable from the Makefile, so this test compiles
// exactly as `make ptx` does: with the same flags, in the same folder.
func makeVar(t *testing.T, name string) string {
	t.Helper()
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + name + `\s*:?=\s*(.+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatalf("Makefile has no %s line", name)
	}
	return strings.TrimSpace(string(m[1]))
}

var (
	fileDirective = regexp.MustCompile(`\.file(\s+\d+) "[^"]*/([^/"]+)"`)
	releaseLine   = regexp.MustCompile(`release (\d+\.\d+)`)
)

// TestFresh recompiles every .cu file and compares the result with the
// committed PTX, so that a source edited without `make ptx` fails CI.
func TestFresh(t *testing.T) {
	nvcc := tool(t, "nvcc")
	version, err := exec.Command(nvcc, "--version").Output()
	if err != nil {
		t.Fatalf("nvcc --version: %v", err)
	}
	release := releaseLine.FindSubmatch(version)
	if release == nil {
		t.Fatalf("cannot read the release from nvcc --version:\n%s", version)
	}
	sources, _ := filepath.Glob("*.cu")
	if len(sources) == 0 {
		t.Fatal("no .cu sources")
	}
	tmp := makeVar(t, "PTX_BUILD")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	headers, _ := filepath.Glob("*.cuh")
	for _, f := range append(sources, headers...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	flags := strings.Fields(makeVar(t, "NVCCFLAGS"))
	for _, src := range sources {
		ptxName := strings.TrimSuffix(src, ".cu") + ".ptx"
		t.Run(src, func(t *testing.T) {
			committed, err := os.ReadFile(ptxName)
			if err != nil {
				t.Fatalf("%s has no %s: run make ptx", src, ptxName)
			}
			// PTX from another nvcc release differs in its header and code;
			// only the release the PTX was made with can judge it.
			if want := "release " + string(release[1]); !bytes.Contains(committed, []byte("Cuda compilation tools, "+want)) {
				msg := fmt.Sprintf("%s was not made by nvcc %s (this toolkit's): cannot compare", ptxName, release[1])
				if os.Getenv("CI") != "" {
					t.Fatal(msg)
				}
				t.Skip(msg)
			}
			args := append(append([]string{}, flags...), src, "-o", ptxName)
			cmd := exec.Command(nvcc, args...)
			cmd.Dir = tmp
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("nvcc %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			fresh, err := os.ReadFile(filepath.Join(tmp, ptxName))
			if err != nil {
				t.Fatal(err)
			}
			fresh = fileDirective.ReplaceAll(fresh, []byte(`.file$1 "$2"`))
			if !bytes.Equal(fresh, committed) {
				t.Errorf("%s is stale against %s: run make ptx and commit the result", ptxName, src)
			}
		})
	}
	for _, f := range ptxFiles(t) {
		if _, err := os.Stat(strings.TrimSuffix(f, ".ptx") + ".cu"); err != nil {
			t.Errorf("%s has no source %s", f, strings.TrimSuffix(f, ".ptx")+".cu")
		}
	}
}

func TestModule(t *testing.T) {
	src, err := Module("common")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(src, "\x00") || !strings.Contains(src, ".entry fill_f32") {
		t.Errorf("Module(common) is not the NUL-terminated common.ptx")
	}
	if _, err := Module("no-such-module"); err == nil || !strings.Contains(err.Error(), "common") {
		t.Errorf("Module(no-such-module) error %v does not list the modules", err)
	}
}
