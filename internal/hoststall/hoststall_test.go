package hoststall

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestStallSpins: Stall takes at least the time it is given, and spins
// (it uses the CPU for that time rather than sleeping).
func TestStallSpins(t *testing.T) {
	for _, d := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond} {
		start := time.Now()
		Stall(d)
		if got := time.Since(start); got < d {
			t.Errorf("Stall(%v) returned after %v", d, got)
		}
	}
}

// TestSymbol: gpubench, built as the device build builds it (DWARF
// dropped, the symbol table kept: scripts/llama-check.sh), holds a
// function symbol named Symbol, without a package prefix or a dot, which
// is the name a CPU sampler shows.
func TestSymbol(t *testing.T) {
	if testing.Short() {
		t.Skip("links gpubench")
	}
	exe := filepath.Join(t.TempDir(), "gpubench")
	build := exec.Command("go", "build", "-ldflags=-w", "-o", exe, "./cmd/gpubench")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if s.Name == Symbol && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			return
		}
	}
	t.Errorf("gpubench has no function symbol %q", Symbol)
}
