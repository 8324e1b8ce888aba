//go:build gpu

package cuda

import (
	"math"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/memplan"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model"
)

// TestFlawsKeepTheStep: every flaw (and all that compose, together) runs
// three iterations on the GPU with the same losses, bit for bit, as the
// clean program: a flaw changes how the step runs, never what it computes.
// Each iteration makes every planted operation (the executor's counts),
// and alloc-per-iteration's peak stays the memory plan's total.
//
// The kernel flaws keep the bits too (residual_forward_strided is the
// same one add, matmul_forward_nopad the same FMA chain, and any tile
// gives the same forward), but low-occupancy in train mode: its weight
// gradients run unsplit, a sum over the rows in another order than the
// clean plan's split-K, so from the second iteration on (the first's loss
// is a forward before any update) the losses may differ in the last bits
// of fp32; lowOccupancyTol bounds that. The SGEMM's flaws are skipped
// with a tensor-core dtype, which config refuses.
func TestFlawsKeepTheStep(t *testing.T) {
	d := shapes[1].d
	sets := [][]config.Flaw{{config.AllocPerIteration, config.SyncEveryLaunch, config.HostStall, config.ReadbackPerLayer, config.PageableUpload},
		{config.LowOccupancy, config.Uncoalesced, config.BankConflicts}}
	for _, f := range config.Flaws {
		sets = append(sets, []config.Flaw{f.Name})
	}
	for _, mode := range []config.Mode{config.Train, config.Infer} {
		want := losses(t, d, mode, nil, 3)
		for _, fs := range sets {
			t.Run(string(mode)+"/"+config.FlawList(fs), func(t *testing.T) {
				sgemm := config.HasFlaw(fs, config.LowOccupancy) || config.HasFlaw(fs, config.BankConflicts)
				if sgemm && dtype(t).TensorCores() {
					t.Skipf("--dtype=%s does not run the fp32 SGEMM", dtype(t))
				}
				got := losses(t, d, mode, fs, 3)
				for i := range want {
					if i > 0 && mode == config.Train && config.HasFlaw(fs, config.LowOccupancy) {
						if r := math.Abs(float64(got[i])-float64(want[i])) / math.Abs(float64(want[i])); !(r <= lowOccupancyTol) {
							t.Errorf("iteration %d: loss %v, clean %v (relative %.3g, allowed %.3g)", i, got[i], want[i], r, lowOccupancyTol)
						}
						continue
					}
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Errorf("iteration %d: loss %v, clean %v", i, got[i], want[i])
					}
				}
			})
		}
	}
}

// lowOccupancyTol bounds the relative change of a loss after updates made
// with weight gradients summed unsplit instead of split-K: each gradient
// element differs by a few fp32 roundings of its sum (~1e-6 relative), a
// learning-rate step moves the weights by a fraction of that, and the
// loss's change is smaller still; 1e-5 leaves room and still catches a
// wrong gradient, which moves the loss by far more.
const lowOccupancyTol = 1e-5

// losses runs iters iterations of the program with flaws fs and returns
// each loss; it checks the planted operations' counts and the peak memory.
func losses(t *testing.T, d config.Dims, mode config.Mode, fs []config.Flaw, iters int) []float32 {
	t.Helper()
	bind(t)
	o := model.Options{SMs: testDev.Info.SMs, DType: dtype(t), Flaws: fs}
	base := testDev.Allocated()
	m, err := New(testExec, d, mode, o, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	planted := map[string]int{}
	for _, op := range m.Iteration.Ops() {
		switch op.Kind {
		case program.Sync, program.Host, program.Alloc, program.Free, program.Memcpy:
			planted[op.Name]++
		}
	}
	testExec.ResetCounts()
	var out []float32
	for i := 0; i < iters; i++ {
		if err := m.Prologue(); err != nil {
			t.Fatal(err)
		}
		if err := m.Forward(); err != nil {
			t.Fatal(err)
		}
		if mode == config.Train {
			if err := m.Backward(); err != nil {
				t.Fatal(err)
			}
		}
		loss, err := m.Loss()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, loss)
	}
	got := testExec.LaunchCounts()
	for name, n := range planted {
		if got[name] != iters*n {
			t.Errorf("%s ran %d times in %d iterations, the program plants %d per iteration", name, got[name], iters, n)
		}
	}
	if config.HasFlaw(fs, config.AllocPerIteration) {
		p, err := memplan.New(d, mode, dtype(t))
		if err != nil {
			t.Fatal(err)
		}
		if now := testDev.Allocated() - base; now != p.Total-dynamicBytes(m) {
			t.Errorf("between iterations %d bytes allocated, want the plan's %d less the activations", now, p.Total)
		}
	}
	return out
}

func dynamicBytes(m *Model) int64 {
	var n int64
	for _, b := range m.Dynamic() {
		n += b.Bytes()
	}
	return n
}
