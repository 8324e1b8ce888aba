package nsyscheck

import (
	"errors"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
)

// realFlawExports are real captures of flawed runs in testdata/nsys (see
// the README there): gpubench --model=tiny --batch-size 8 --iters 3
// --warmup 2 --profile --flaw=NAME on an H200 under nsys -t cuda,nvtx,osrt
// -s cpu --capture-range=cudaProfilerApi, made by scripts/flaw-check.sh.
// plainWant is a failure the plain check (against the clean plan) must
// give; "" for a flaw that plants no CUDA call, whose plain check passes.
var realFlawExports = []struct {
	file      string
	flaw      config.Flaw
	plainWant string
}{
	{"tiny-flaw-sync-every-launch-h200.sqlite", config.SyncEveryLaunch, "iteration0/forward: cudaDeviceSynchronize called 25 times, plan says 0"},
	{"tiny-flaw-readback-per-layer-h200.sqlite", config.ReadbackPerLayer, "iteration0/forward: cudaStreamSynchronize called 2 times, plan says 0"},
	{"tiny-flaw-host-stall-h200.sqlite", config.HostStall, ""},
	{"tiny-flaw-serial-copies-h200.sqlite", config.SerialCopies, "iteration0/backward: 24 memcpys, plan says 0"},
	{"tiny-flaw-unfused-h200.sqlite", config.Unfused, "iteration0/forward: kernel gelu_forward launched 0 times, plan says 2"},
	// low-occupancy launches the clean kernels with other grids, which the
	// plain check does not compare.
	{"tiny-flaw-low-occupancy-h200.sqlite", config.LowOccupancy, ""},
}

// TestRealFlawExports: each real flawed capture passes check --flaw with
// its signature in every iteration, its plain check names what differs
// from the clean plan, and the real clean capture fails check --flaw
// naming the missing signature.
func TestRealFlawExports(t *testing.T) {
	clean := flawPlan(t, config.Train)
	for _, e := range realFlawExports {
		t.Run(string(e.flaw), func(t *testing.T) {
			run := config.Run{Iters: 3, Flaws: []config.Flaw{e.flaw}}
			flawed := flawPlan(t, config.Train, e.flaw)
			rep, err := CheckRun(realExport(t, e.file), flawed, run)
			if err != nil {
				t.Fatalf("check --flaw=%s of its capture: %v", e.flaw, err)
			}
			if want := string(e.flaw) + ": the signature is in all 3 iterations"; !strings.Contains(strings.Join(rep.Notes, "\n"), want) {
				t.Errorf("notes lack %q: %v", want, rep.Notes)
			}

			_, err = Check(realExport(t, e.file), clean, 3)
			var me *MismatchError
			switch {
			case e.plainWant == "" && err != nil:
				t.Errorf("plain check of the %s capture: %v", e.flaw, err)
			case e.plainWant != "" && !errors.As(err, &me):
				t.Errorf("plain check of the %s capture: want a mismatch naming %q, got %v", e.flaw, e.plainWant, err)
			case e.plainWant != "" && !holds(me.Failures, e.plainWant):
				t.Errorf("plain check of the %s capture: want %q in %v", e.flaw, e.plainWant, me.Failures)
			}

			_, err = CheckRun(realExport(t, "tiny-h200.sqlite"), flawed, run)
			if !errors.As(err, &me) || !holds(me.Failures, string(e.flaw)+": signature missing in iteration0") {
				t.Errorf("check --flaw=%s of the clean capture: want the missing signature, got %v", e.flaw, err)
			}
		})
	}
}
