//go:build gpu

package kernels

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
	"github.com/gpubench/gpubench/ptx"
)

// Faults injected on purpose, to check that gpubench says which kernel
// failed and how it was launched.

// TestInvalidBlockRefusedBeforeLaunch: a launch with a block of 2048
// threads, past CUDA's 1024, is refused by program.Validate inside the
// executor before it reaches the driver, with an error naming the kernel
// and the block; nothing is launched, and a correct launch works after it.
func TestInvalidBlockRefusedBeforeLaunch(t *testing.T) {
	x := env(t)
	p := buffer(t, "dst", 16)
	op := Fill(p, 16, 1)
	op.Block = program.D1(2048)
	before := x.LaunchCounts()["fill_f32"]
	err := launch(t, op)
	if err == nil {
		t.Fatal("a launch of fill_f32 with 2048 threads per block was accepted")
	}
	var le *cuexec.LaunchError
	if errors.As(err, &le) {
		t.Errorf("the 2048-thread block reached the driver (%v); program.Validate must refuse it first", err)
	}
	for _, want := range []string{"kernel fill_f32", "block (2048,1,1)", "1024"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if verr := program.Validate(&op); verr == nil || verr.Error() != err.Error() {
		t.Errorf("the executor's error %q is not program.Validate's %v", err, verr)
	}
	if n := x.LaunchCounts()["fill_f32"]; n != before {
		t.Errorf("fill_f32 launch count went from %d to %d for a refused launch", before, n)
	}
	t.Logf("refused: %v", err)
	// Nothing was written, and a correct launch works.
	for i, v := range download(t, p, 16) {
		if !math.IsNaN(v) {
			t.Fatalf("element %d = %v after the refused launch, want the NaN poison", i, v)
		}
	}
	run(t, Fill(p, 16, 2))
	for i, v := range download(t, p, 16) {
		if v != 2 {
			t.Fatalf("element %d = %v after the refused launch, want 2", i, v)
		}
	}
}

// faultChild is the environment variable that makes a fault test run its
// fault, in the child process its parent started.
const faultChild = "GPUBENCH_FAULT_CHILD"

// runChild runs test name alone in a child process with faultChild set and
// returns the child's lines that start with prefix, prefix removed. A
// fault can ruin the CUDA context for good, so faults run there.
func runChild(t *testing.T, name, prefix string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), faultChild+"=1")
	out, _ := cmd.CombinedOutput()
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(l, prefix); ok {
			lines = append(lines, s)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("the child reported nothing:\n%s", out)
	}
	return lines
}

// describe is how a child reports an error to its parent: "launch error: "
// and the message for a *cuexec.LaunchError, "other error: " for another,
// "no error" for none.
func describe(err error) string {
	var le *cuexec.LaunchError
	switch {
	case err == nil:
		return "no error"
	case errors.As(err, &le):
		return "launch error: " + err.Error()
	}
	return "other error: " + err.Error()
}

// TestDriverRefusalNamesKernel: a launch that passes program.Validate but
// that the driver refuses (attention_forward, compiled for at most
// ptx.AttentionThreads threads a block (.maxntid), with twice as many)
// returns a *cuexec.LaunchError naming the kernel and its shape, and leaves
// the context usable: a correct launch after it gives the right result. It
// runs in a child process in case the driver does run it and the kernel
// faults.
func TestDriverRefusalNamesKernel(t *testing.T) {
	const B, T, C, NH = 1, 8, 32, 1
	if os.Getenv(faultChild) == "1" {
		env(t)
		r := rng(t)
		out, lse := buffer(t, "out", B*T*C), buffer(t, "lse", B*NH*T)
		qkv, qkvV := upload(t, "qkv", normal(r, B*T*3*C, 1))
		bad := AttentionForward(out, lse, qkv, B, T, C, NH, NH)
		bad.Block = program.D1(2 * ptx.AttentionThreads)
		if err := program.Validate(&bad); err != nil {
			// The parent reads these lines.
			println("REFUSAL: validate: " + err.Error())
			return
		}
		println("REFUSAL: " + describe(launch(t, bad)))
		// The context still works.
		if err := launch(t, AttentionForward(out, lse, qkv, B, T, C, NH, NH)); err != nil {
			println("REFUSAL: after: " + describe(err))
			return
		}
		want, wantLse := make([]float64, B*T*C), make([]float64, B*NH*T)
		ref.AttentionForward(want, wantLse, qkvV, B, T, C, NH)
		println(fmt.Sprintf("REFUSAL: after: relative error %g", relErr(download(t, out, B*T*C), want)))
		return
	}
	lines := runChild(t, "TestDriverRefusalNamesKernel", "REFUSAL: ")
	for _, l := range lines {
		t.Logf("child: %s", l)
	}
	if len(lines) != 2 {
		t.Fatalf("the child reported %q, want the refused launch and the one after it", lines)
	}
	block := fmt.Sprintf("block (%d,1,1)", 2*ptx.AttentionThreads)
	for _, want := range []string{"launch error: ", "kernel attention_forward", "grid (", block} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("refused launch %q lacks %q", lines[0], want)
		}
	}
	var e float64
	if _, err := fmt.Sscanf(lines[1], "after: relative error %g", &e); err != nil || !(e <= attentionFwdTol) {
		t.Errorf("the launch after the refused one: %q, want a relative error within %g", lines[1], attentionFwdTol)
	}
}

// TestIllegalAddressNamesKernel: a kernel that writes far past the end of
// its allocation faults; with SyncEachLaunch the error names that kernel.
// A fault ruins the CUDA context for good, so it runs in a child process.
//
// The executor resolves every view to an address inside a buffer it
// allocated, and program.Validate refuses any view larger than its buffer,
// so the test lies: it allocates a buffer of 16 floats and then records it
// as 2^28 floats, so that Validate lets fill_f32 write 1 GiB from its
// start: far past the driver's 2 MiB allocation granularity (and any module
// memory allocated near it), into device address space with nothing mapped.
func TestIllegalAddressNamesKernel(t *testing.T) {
	if os.Getenv(faultChild) == "1" {
		x := env(t)
		const n = 1 << 28
		b := alloc(t, "small", program.F32, 16)
		b.Elems = n // the lie: only 16 floats are allocated
		op := Fill(b.All(), n, 1)
		if err := program.Validate(&op); err != nil {
			println("FAULT: validate: " + err.Error())
			return
		}
		err := x.Do(&op)
		if err == nil {
			err = x.Stream().Synchronize()
		}
		// The parent reads this line.
		println("FAULT: " + describe(err))
		return
	}
	lines := runChild(t, "TestIllegalAddressNamesKernel", "FAULT: ")
	line := lines[len(lines)-1]
	t.Logf("child: %s", line)
	block := fmt.Sprintf("block (%d,1,1)", ptx.FillBlock)
	for _, want := range []string{"launch error: ", "kernel fill_f32", "grid (", block, "CUDA_ERROR_ILLEGAL_ADDRESS"} {
		if !strings.Contains(line, want) {
			t.Errorf("fault report %q lacks %q", line, want)
		}
	}
}

// TestGraphFaultNamesGraph: a kernel that faults inside a replayed CUDA
// graph surfaces at the next wait, which names the graph and its kernels
// (the driver names no node). The fault is TestIllegalAddressNamesKernel's.
func TestGraphFaultNamesGraph(t *testing.T) {
	if os.Getenv(faultChild) == "1" {
		x := env(t)
		const n = 1 << 28
		b := alloc(t, "small", program.F32, 16)
		b.Elems = n // the lie: only 16 floats are allocated
		// The harness synchronises after every launch, which a capture
		// refuses (as --graph refuses --sync-launches); a graph's fault
		// must surface at the wait instead.
		x.SyncEachLaunch = false
		r := &program.Range{Name: "forward", Layer: -1}
		r.Add(Fill(b.All(), n, 1))
		if err := program.CaptureAsGraph(r); err != nil {
			println("FAULT: capture: " + err.Error())
			return
		}
		c, err := x.Compile(r)
		if err != nil {
			println("FAULT: compile: " + err.Error())
			return
		}
		if err := c.Run(); err != nil {
			println("FAULT: replay: " + describe(err))
			return
		}
		err = x.Synchronize()
		var gf *cuexec.GraphFault
		kind := "other error: "
		if errors.As(err, &gf) {
			kind = "graph fault: "
		}
		if err == nil {
			println("FAULT: no error")
			return
		}
		println("FAULT: " + kind + err.Error())
		return
	}
	lines := runChild(t, "TestGraphFaultNamesGraph", "FAULT: ")
	line := lines[len(lines)-1]
	t.Logf("child: %s", line)
	for _, want := range []string{"graph fault: ", "CUDA_ERROR_ILLEGAL_ADDRESS", "graph forward (fill_f32)", "--sync-launches"} {
		if !strings.Contains(line, want) {
			t.Errorf("fault report %q lacks %q", line, want)
		}
	}
}
