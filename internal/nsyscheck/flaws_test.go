package nsyscheck

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/plan"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model"
)

func flawPlan(t testing.TB, mode config.Mode, fs ...config.Flaw) plan.Plan {
	t.Helper()
	p, err := config.LookupPreset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	return plan.Of(model.Program(p.Dims(config.DefaultBatch), mode, model.Options{Flaws: fs}))
}

// checkFixture writes f and checks it against p with opts, over fxIters
// iterations.
func checkFixture(t *testing.T, f *fixture, p plan.Plan, opts Options) (*Report, []string) {
	t.Helper()
	tr, err := Load(f.write(t))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := checkTrace(tr, p, []config.Window{{First: 0, Last: fxIters - 1}}, opts)
	if err == nil {
		return rep, nil
	}
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("not a mismatch: %v", err)
	}
	return rep, me.Failures
}

func holds(fails []string, want string) bool {
	for _, f := range fails {
		if strings.Contains(f, want) {
			return true
		}
	}
	return false
}

// TestFlawSignatures: for every flaw, in both modes, a capture of the
// flawed run passes check --flaw (noting the signature), the clean run's
// capture fails it naming the missing signature, and the plain check of
// the flawed capture names what differs from the clean plan.
func TestFlawSignatures(t *testing.T) {
	plainDiff := map[config.Flaw]string{
		config.SyncEveryLaunch:   "iteration0/forward: cudaDeviceSynchronize called",
		config.AllocPerIteration: "iteration0/forward: cudaMalloc called",
		config.ReadbackPerLayer:  "iteration0/forward: 2 memcpys, plan says 0",
		config.PageableUpload:    "iteration0: 2 memcpys, plan says 0",
		config.PinnedUpload:      "iteration0: 2 memcpys, plan says 0",
		config.SerialCopies:      "iteration0/backward: 24 memcpys, plan says 0",
		config.OverlappedCopies:  "iteration0/backward: 24 memcpys, plan says 0",
		// host-stall plants no CUDA call: the plain check passes and notes
		// the gap before the forward (timing is never a failure).
		config.HostStall:     "",
		config.Unfused:       "iteration0/forward: kernel bias_add launched",
		config.Uncoalesced:   "iteration0/forward: kernel residual_forward_strided launched 4 times, plan says 0",
		config.BankConflicts: "iteration0/forward: kernel matmul_forward_nopad launched 9 times, plan says 0",
		// low-occupancy launches the clean kernels: the plain check, which
		// compares kernels and not grids, passes; the grids are the
		// signature's.
		config.LowOccupancy: "",
	}
	missing := map[config.Flaw]string{
		config.SyncEveryLaunch:   "launches are not followed by a synchronising call",
		config.AllocPerIteration: "0 cudaMalloc calls and 0 cudaFree calls inside it, the flaw makes",
		config.HostStall:         "the longest gap without CUDA calls before the forward is",
		config.Unfused:           "the forward launches bias_add 0 times (the flaw launches it 8 times), elem_mul 0 times (the flaw launches it 6 times)",
		config.ReadbackPerLayer:  "the forward copies device-to-host 0 times",
		config.PageableUpload:    "0 host-to-device memcpys from pageable memory",
		config.PinnedUpload:      "0 host-to-device memcpys from pinned memory",
		config.SerialCopies:      "the backward copies device-to-host 0 times, the flaw makes 24 (each layer's gradients)",
		config.OverlappedCopies:  "the backward copies device-to-host 0 times, the flaw makes 24 (each layer's gradients)",
		config.Uncoalesced:       "the forward launches residual_forward_strided 0 times and residual_forward 4 times, the flaw launches residual_forward_strided 4 times",
		config.BankConflicts:     "the forward launches matmul_forward_nopad 0 times and matmul_forward 9 times, the flaw launches matmul_forward_nopad 9 times",
		config.LowOccupancy:      "its products run other grids than the flaw's largest tile: matmul_forward at layer 0 / qkv ran grid (",
	}
	for _, mode := range []config.Mode{config.Train, config.Infer} {
		clean := flawPlan(t, mode)
		for _, fi := range config.Flaws {
			f := fi.Name
			if fi.TrainOnly && mode != config.Train {
				continue // refused by config
			}
			t.Run(string(mode)+"/"+string(f), func(t *testing.T) {
				flawed := flawPlan(t, mode, f)
				opts := Options{Flaws: []config.Flaw{f}}
				rep, fails := checkFixture(t, runFixture(flawed, fxIters), flawed, opts)
				if fails != nil {
					t.Fatalf("flawed capture, check --flaw: %v", fails)
				}
				if !strings.Contains(strings.Join(rep.Notes, "\n"), string(f)+": the signature is in all 3 iterations") {
					t.Errorf("notes lack the signature: %v", rep.Notes)
				}
				_, fails = checkFixture(t, runFixture(clean, fxIters), flawed, opts)
				prefix := string(f) + ": signature missing in iteration0: "
				if missing[f] == "" {
					t.Fatalf("no missing-signature message to expect for %s", f)
				}
				found := false
				for _, msg := range fails {
					found = found || (strings.HasPrefix(msg, prefix) && strings.Contains(msg, missing[f]))
				}
				if !found {
					t.Errorf("clean capture, check --flaw: want %q...%q in %v", prefix, missing[f], fails)
				}
				rep, fails = checkFixture(t, runFixture(flawed, fxIters), clean, Options{})
				if want := plainDiff[f]; want == "" && fails != nil {
					t.Errorf("plain check: %v", fails)
				} else if want == "" && f == config.LowOccupancy {
					// nothing to note
				} else if want == "" && !strings.Contains(strings.Join(rep.Notes, "\n"), "iteration0: 2.0") {
					t.Errorf("plain check notes no host gap: %v", rep.Notes)
				} else if want != "" && !holds(fails, want) {
					t.Errorf("plain check of the flawed capture: want %q in %v", want, fails)
				}
			})
		}
	}
}

// TestFlawSignatureDetails: a signature fails on a capture that shows the
// flaw only in part, or another flaw's.
func TestFlawSignatureDetails(t *testing.T) {
	t.Run("one sync dropped", func(t *testing.T) {
		p := flawPlan(t, config.Train, config.SyncEveryLaunch)
		f := runFixture(p, fxIters)
		for k, l := range f.launches {
			if l.iter == 1 && l.api == program.DeviceSynchronize {
				f.remove(k)
				break
			}
		}
		_, fails := checkFixture(t, f, p, Options{Flaws: []config.Flaw{config.SyncEveryLaunch}})
		if !holds(fails, "sync-every-launch: signature missing in iteration1: 1 of ") || holds(fails, "in iteration0") {
			t.Errorf("%v", fails)
		}
	})
	t.Run("pageable capture, pinned signature", func(t *testing.T) {
		pageable := flawPlan(t, config.Train, config.PageableUpload)
		pinned := flawPlan(t, config.Train, config.PinnedUpload)
		_, fails := checkFixture(t, runFixture(pageable, fxIters), pinned, Options{Flaws: []config.Flaw{config.PinnedUpload}})
		if !holds(fails, "0 host-to-device memcpys from pinned memory before the forward, the flaw makes 2 (2 from other host memory)") {
			t.Errorf("%v", fails)
		}
	})
	t.Run("sync-launches counts no syncs", func(t *testing.T) {
		p := flawPlan(t, config.Train, config.SyncEveryLaunch)
		clean := flawPlan(t, config.Train)
		_, fails := checkFixture(t, runFixture(p, fxIters), clean, Options{SyncLaunches: true})
		if fails != nil {
			t.Errorf("a --sync-launches run's syncs are not the plan's: %v", fails)
		}
	})
	copies := func(f *fixture) []int {
		var out []int
		for k, l := range f.launches {
			if l.kind == program.Memcpy && l.copyKind == CopyDtoH && l.rng == plan.Backward {
				out = append(out, k)
			}
		}
		return out
	}
	serial := flawPlan(t, config.Train, config.SerialCopies)
	overlapped := flawPlan(t, config.Train, config.OverlappedCopies)
	t.Run("overlapped capture, serial signature", func(t *testing.T) {
		_, fails := checkFixture(t, runFixture(overlapped, fxIters), serial, Options{Flaws: []config.Flaw{config.SerialCopies}})
		if !holds(fails, "serial-copies: signature missing in iteration0: the backward copies device-to-host 24 times, the flaw makes 24 (each layer's gradients); 0 of them on the kernels' stream 7, 24 on other streams") {
			t.Errorf("%v", fails)
		}
	})
	t.Run("serial capture, overlapped signature", func(t *testing.T) {
		_, fails := checkFixture(t, runFixture(serial, fxIters), overlapped, Options{Flaws: []config.Flaw{config.OverlappedCopies}})
		if !holds(fails, "overlapped-copies: signature missing in iteration0: the backward copies device-to-host 24 times, the flaw makes 24 (each layer's gradients); 24 of them on the kernels' stream 7, 0 on other streams") {
			t.Errorf("%v", fails)
		}
		// The calls the fix plants are the plan's: the plain comparison
		// names the missing events.
		if !holds(fails, "iteration0/backward: cudaEventRecord called 0 times, plan says 3") {
			t.Errorf("%v", fails)
		}
	})
	t.Run("a serial copy under a kernel", func(t *testing.T) {
		f := runFixture(serial, fxIters)
		// Iteration 1's last copy of layer 1 runs on into the next
		// kernel: not serial.
		k := copies(f)[24+11]
		f.launches[k].gpuEnd += 40 * us
		_, fails := checkFixture(t, f, serial, Options{Flaws: []config.Flaw{config.SerialCopies}})
		if !holds(fails, "serial-copies: signature missing in iteration1:") || !holds(fails, ", 1 overlapping a kernel") || holds(fails, "in iteration0") {
			t.Errorf("%v", fails)
		}
	})
	t.Run("overlap is a note", func(t *testing.T) {
		f := runFixture(overlapped, fxIters)
		rep, fails := checkFixture(t, f, overlapped, Options{Flaws: []config.Flaw{config.OverlappedCopies}})
		if fails != nil || !strings.Contains(strings.Join(rep.Notes, "\n"), "overlapped-copies: 0 of 72 device-to-host copies on the second stream overlapped a backward kernel") {
			t.Errorf("%v %v", fails, rep.Notes)
		}
		// The last copy of each layer runs on into the next kernel.
		cs := copies(f)
		for _, i := range []int{11, 23, 35, 47, 59} {
			f.launches[cs[i]].gpuEnd += 40 * us
		}
		rep, fails = checkFixture(t, f, overlapped, Options{Flaws: []config.Flaw{config.OverlappedCopies}})
		if fails != nil || !strings.Contains(strings.Join(rep.Notes, "\n"), "overlapped-copies: 5 of 72 device-to-host copies") {
			t.Errorf("%v %v", fails, rep.Notes)
		}
	})
	t.Run("unfused, one bias_add dropped", func(t *testing.T) {
		p := flawPlan(t, config.Train, config.Unfused)
		f := runFixture(p, fxIters)
		for k, l := range f.launches {
			if l.iter == 2 && l.kernel == "bias_add" {
				f.remove(k)
				break
			}
		}
		_, fails := checkFixture(t, f, p, Options{Flaws: []config.Flaw{config.Unfused}})
		if !holds(fails, "unfused: signature missing in iteration2: the forward launches bias_add 7 times (the flaw launches it 8 times)") ||
			holds(fails, "in iteration0") || holds(fails, "elem_mul") {
			t.Errorf("%v", fails)
		}
	})
	t.Run("unfused, bf16 and graphs", func(t *testing.T) {
		// The counts follow the plan: a bf16 step's kernels are named
		// _bf16, and a graph's nodes traced one by one
		// (--cuda-graph-trace=node) are the same launches.
		d := tinyDims
		for _, o := range []model.Options{{DType: config.BF16}, {Graph: true}, {DType: config.BF16, Graph: true}} {
			o.Flaws = []config.Flaw{config.Unfused}
			p := plan.Of(model.Program(d, config.Infer, o))
			if _, fails := checkFixture(t, runFixture(p, fxIters), p, Options{Flaws: o.Flaws}); fails != nil {
				t.Errorf("%+v: %v", o, fails)
			}
			clean := o
			clean.Flaws = nil
			_, fails := checkFixture(t, runFixture(plan.Of(model.Program(d, config.Infer, clean)), fxIters), p, Options{Flaws: o.Flaws})
			if !holds(fails, "unfused: signature missing in iteration0: the forward launches bias_add 0 times") {
				t.Errorf("%+v, clean capture: %v", o, fails)
			}
		}
	})
	t.Run("unfused, checked against the clean plan", func(t *testing.T) {
		clean := flawPlan(t, config.Train)
		_, fails := checkFixture(t, runFixture(clean, fxIters), clean, Options{Flaws: []config.Flaw{config.Unfused}})
		if !holds(fails, "the plan's forward launches none of the flaw's kernels (check with the run's --flaw)") {
			t.Errorf("%v", fails)
		}
	})
	kernelFlaws := []config.Flaw{config.LowOccupancy, config.Uncoalesced, config.BankConflicts}
	t.Run("kernel flaws together", func(t *testing.T) {
		for _, graph := range []bool{false, true} {
			p := plan.Of(model.Program(tinyDims, config.Train, model.Options{Graph: graph, Flaws: kernelFlaws}))
			rep, fails := checkFixture(t, runFixture(p, fxIters), p, Options{Flaws: kernelFlaws})
			if fails != nil {
				t.Errorf("graph=%v: %v", graph, fails)
			}
			for _, f := range kernelFlaws {
				if !strings.Contains(strings.Join(rep.Notes, "\n"), string(f)+": the signature is in all 3 iterations") {
					t.Errorf("graph=%v: notes lack %s: %v", graph, f, rep.Notes)
				}
			}
		}
	})
	t.Run("one product's grid is the clean one", func(t *testing.T) {
		p := flawPlan(t, config.Train, config.LowOccupancy)
		clean := flawPlan(t, config.Train)
		f := runFixture(p, fxIters)
		k := f.findLaunch(t, 1, plan.Forward, "matmul_forward", 0)
		cg := clean.Iteration.Child(plan.Forward).Launches()
		var want program.Dim3
		for _, l := range cg {
			if l.Name == "matmul_forward" {
				want = l.Grid
				break
			}
		}
		f.launches[k].grid = want
		_, fails := checkFixture(t, f, p, Options{Flaws: []config.Flaw{config.LowOccupancy}})
		msg := fmt.Sprintf("low-occupancy: signature missing in iteration1: its products run other grids than the flaw's largest tile: matmul_forward at layer 0 / qkv ran grid (%d,%d,%d) (%d blocks), the flaw's is (12,1,1) (12 blocks; 9 of the forward's 9 products have fewer blocks than the 132 SMs)", want.X, want.Y, want.Z, want.X*want.Y*want.Z)
		if !holds(fails, msg) || holds(fails, "in iteration0") || len(fails) != 1 {
			t.Errorf("want %q alone, got %v", msg, fails)
		}
	})
	t.Run("no grid columns", func(t *testing.T) {
		p := flawPlan(t, config.Train, config.LowOccupancy)
		f := runFixture(p, fxIters)
		f.noGrids = true
		_, fails := checkFixture(t, f, p, Options{Flaws: []config.Flaw{config.LowOccupancy}})
		if !holds(fails, "low-occupancy: signature missing in iteration0: the export's CUPTI_ACTIVITY_KIND_KERNEL has no gridX, gridY and gridZ columns") {
			t.Errorf("%v", fails)
		}
		// Nothing else reads the grids: the plain check passes.
		if _, fails := checkFixture(t, f, p, Options{}); fails != nil {
			t.Errorf("plain check without grids: %v", fails)
		}
	})
	t.Run("a model that fills the GPU", func(t *testing.T) {
		// GPT-2 124M at the default batch: even the largest tile gives
		// every forward product more blocks than 132 SMs, so there is no
		// signature to see, and check says so rather than pass.
		p, err := config.LookupPreset("gpt2-124m")
		if err != nil {
			t.Fatal(err)
		}
		pl := plan.Of(model.Program(p.Dims(config.DefaultBatch), config.Infer, model.Options{Flaws: []config.Flaw{config.LowOccupancy}}))
		_, fails := checkFixture(t, runFixture(pl, fxIters), pl, Options{Flaws: []config.Flaw{config.LowOccupancy}})
		if !holds(fails, "low-occupancy: signature missing in iteration0: the plan's forward has no fp32 product of fewer blocks than its 132 SMs") {
			t.Errorf("%v", fails)
		}
	})
	t.Run("all flaws together", func(t *testing.T) {
		fs := []config.Flaw{config.SyncEveryLaunch, config.AllocPerIteration, config.HostStall, config.Unfused, config.ReadbackPerLayer, config.PageableUpload,
			config.LowOccupancy, config.Uncoalesced, config.BankConflicts}
		p := flawPlan(t, config.Train, fs...)
		if _, fails := checkFixture(t, runFixture(p, fxIters), p, Options{Flaws: fs}); fails != nil {
			t.Errorf("%v", fails)
		}
		for _, copies := range []config.Flaw{config.SerialCopies, config.OverlappedCopies} {
			fs := append([]config.Flaw{copies}, fs...)
			p := flawPlan(t, config.Train, fs...)
			if _, fails := checkFixture(t, runFixture(p, fxIters), p, Options{Flaws: fs}); fails != nil {
				t.Errorf("%s: %v", copies, fails)
			}
		}
	})
}
