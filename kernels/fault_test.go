//go:build gpu

package kernels

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"gorgonia.org/cu"
)

// Faults injected on purpose, to check that gpubench says which kernel
// failed and how it was launched.

// TestBadLaunchNamesKernel: a launch the driver refuses (a block of 2048
// threads) returns a LaunchError naming the kernel and its shape, and
// leaves the context usable.
func TestBadLaunchNamesKernel(t *testing.T) {
	dev, k := env(t)
	p := buffer(t, 16)
	err := k.Common.fill.launch(dev.Stream, grid1(1), grid1(2048), 0, ptr(p), i32(16), f32(1))
	var le *LaunchError
	if !errors.As(err, &le) {
		t.Fatalf("launch with 2048 threads per block returned %v, want a *LaunchError", err)
	}
	for _, want := range []string{"kernel fill_f32", "block (2048,1,1)", "grid (1,1,1)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	t.Logf("refused launch: %v", err)
	// The context is still good: a correct launch works.
	if err := k.Common.Fill(dev.Stream, p, 16, 2); err != nil {
		t.Fatalf("launch after a refused one: %v", err)
	}
	got := download(t, p, 16)
	for i, v := range got {
		if v != 2 {
			t.Fatalf("element %d = %v after the refused launch, want 2", i, v)
		}
	}
}

// TestIllegalAddressNamesKernel: a kernel that writes through a wild
// pointer faults; with SyncEachLaunch the error names that kernel. A fault
// ruins the CUDA context for good, so it runs in a child process.
func TestIllegalAddressNamesKernel(t *testing.T) {
	if os.Getenv("GPUBENCH_FAULT_CHILD") == "1" {
		dev, k := env(t)
		wild := cu.DevicePtr(0x10) // never a valid device address
		err := k.Common.Fill(dev.Stream, wild, 1<<20, 1)
		if err == nil {
			err = dev.Synchronize()
		}
		// The parent reads this line.
		println("FAULT:", err.Error())
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestIllegalAddressNamesKernel$", "-test.v")
	cmd.Env = append(os.Environ(), "GPUBENCH_FAULT_CHILD=1")
	out, _ := cmd.CombinedOutput()
	line := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "FAULT: ") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("the child reported no fault:\n%s", out)
	}
	t.Logf("child: %s", line)
	for _, want := range []string{"kernel fill_f32", "grid (", "block (256,1,1)", "CUDA_ERROR_ILLEGAL_ADDRESS"} {
		if !strings.Contains(line, want) {
			t.Errorf("fault report %q lacks %q", line, want)
		}
	}
}
