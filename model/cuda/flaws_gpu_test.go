//go:build gpu

package cuda

import (
	"bytes"
	"math"
	"testing"
	"unsafe"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/memplan"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model"
	"github.com/gpubench/gpubench/model/ref"
)

// TestFlawsKeepTheStep: every flaw (and all that compose, together) runs
// three iterations on the GPU with the same losses, bit for bit, as the
// clean program: a flaw changes how the step runs, never what it computes.
// Each iteration makes every planted operation (the executor's counts),
// and alloc-per-iteration's peak stays the memory plan's total.
//
// Two flaws change the roundings, and their losses are the clean ones up
// to a bound instead. unfused's GELU chain rounds after each of its six
// kernels (and, in bf16, its bias_add after the product): unfusedLossTol.
// low-occupancy in train mode runs its weight gradients unsplit, a sum
// over the rows in another order than the clean plan's split-K, so from
// the second iteration on (the first's loss is a forward before any
// update) the losses may differ in the last bits of fp32:
// lowOccupancyTol. The other kernel flaws keep the bits
// (residual_forward_strided is the same one add, matmul_forward_nopad the
// same FMA chain). The SGEMM's flaws are left out with a tensor-core dtype,
// which config refuses.
func TestFlawsKeepTheStep(t *testing.T) {
	d := shapes[1].d
	sets := [][]config.Flaw{
		{config.AllocPerIteration, config.SyncEveryLaunch, config.HostStall, config.ReadbackPerLayer, config.PageableUpload},
		{config.AllocPerIteration, config.SyncEveryLaunch, config.HostStall, config.Unfused, config.ReadbackPerLayer, config.PageableUpload},
		{config.LowOccupancy, config.Uncoalesced, config.BankConflicts},
		// matmul_forward_nopad without a bias: unfused's products.
		{config.Unfused, config.LowOccupancy, config.Uncoalesced, config.BankConflicts},
	}
	for _, f := range config.Flaws {
		sets = append(sets, []config.Flaw{f.Name})
	}
	// The train-only flaws, with all that compose.
	for _, f := range []config.Flaw{config.SerialCopies, config.OverlappedCopies} {
		sets = append(sets, append([]config.Flaw{f}, sets[0]...))
	}
	for _, mode := range []config.Mode{config.Train, config.Infer} {
		want := losses(t, d, mode, nil, 3)
		for _, fs := range sets {
			sgemm := config.HasFlaw(fs, config.LowOccupancy) || config.HasFlaw(fs, config.BankConflicts)
			if mode != config.Train && trainOnly(fs) || sgemm && dtype(t).TensorCores() {
				continue // config refuses it (the SGEMM's flaws: a tensor-core dtype does not run it)
			}
			t.Run(string(mode)+"/"+config.FlawList(fs), func(t *testing.T) {
				got := losses(t, d, mode, fs, 3)
				for i := range want {
					tol := 0.0
					if config.HasFlaw(fs, config.Unfused) {
						tol = max(tol, unfusedLossTol(dtype(t)))
					}
					if i > 0 && mode == config.Train && config.HasFlaw(fs, config.LowOccupancy) {
						tol = max(tol, lowOccupancyTol)
					}
					if tol > 0 {
						// NaN never passes: the test is !(r <= tol).
						if r := math.Abs(float64(got[i])-float64(want[i])) / math.Abs(float64(want[i])); !(r <= tol) {
							t.Errorf("iteration %d: loss %v, clean %v (relative %.3g, allowed %.3g)", i, got[i], want[i], r, tol)
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

// unfusedLossTol is how far, relatively, an unfused step's loss may be
// from the clean one's. fp32 and tf32 store fp32 activations: the chain's
// roundings are a few fp32 ulps a GELU element, which move a loss by far
// less than 1e-5 over three steps. bf16 rounds each of the chain's six
// outputs to bf16 (2^-9 relative), which the mean over the batch's tokens
// averages down; 5e-3 is a few bf16 roundings of the loss itself and
// still catches a wrong or missing term (a lost bias moves it by more).
func unfusedLossTol(dt config.DType) float64 {
	if dt == config.BF16 {
		return 5e-3
	}
	return 1e-5
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
	o := gpuOptions(t)
	o.Flaws = fs
	base := testDev.Allocated()
	m, err := New(testExec, d, mode, o, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	planted := map[string]int{}
	for _, op := range m.Iteration.Ops() {
		switch op.Kind {
		case program.Sync, program.Host, program.Alloc, program.Free, program.Memcpy, program.EventOp:
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
	if config.HasFlaw(fs, config.SerialCopies) || config.HasFlaw(fs, config.OverlappedCopies) {
		checkOffloaded(t, m)
	}
	if config.HasFlaw(fs, config.AllocPerIteration) {
		p, err := memplan.NewWith(d, mode, model.Options{DType: dtype(t), Flaws: fs})
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

func trainOnly(fs []config.Flaw) bool {
	for _, f := range fs {
		if fi, _ := config.LookupFlaw(f); fi.TrainOnly {
			return true
		}
	}
	return false
}

// checkOffloaded: after a step of serial-copies or overlapped-copies (and
// the wait for the loss, which waits for the copies: overlapped-copies'
// backward ends joining the copy stream), each offload copy's pinned host
// memory holds its gradient tensor, bit for bit, as a plain download of
// the gradients after the step reads it.
func checkOffloaded(t *testing.T, m *Model) {
	t.Helper()
	if _, err := m.Loss(); err != nil {
		t.Fatal(err)
	}
	size := m.Step.Grads.Elem.Size()
	grads := make([]byte, m.Step.Grads.Bytes())
	var err error
	if size == 2 {
		h := make([]uint16, m.Step.Grads.Elems)
		err = cuexec.Download(m.x, h, m.Step.Grads.All())
		copy(grads, unsafe.Slice((*byte)(unsafe.Pointer(&h[0])), len(grads)))
	} else {
		f := make([]float32, m.Step.Grads.Elems)
		err = cuexec.Download(m.x, f, m.Step.Grads.All())
		copy(grads, unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), len(grads)))
	}
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, op := range m.Step.Backward().Ops() {
		if op.Kind != program.Memcpy || op.Dir != program.DeviceToHost {
			continue
		}
		host, ok := m.x.HostCopy(op)
		if !ok {
			t.Fatalf("%s at %s: no host memory", op, op.Where())
		}
		lo := op.Dst.Offset * size
		if !bytes.Equal(host, grads[lo:lo+op.Dst.Bytes()]) {
			t.Errorf("%s at %s: the host copy differs from the gradient %s", op, op.Where(), op.Dst)
		}
		n++
	}
	if want := m.Dims.L * 12; n != want {
		t.Errorf("%d offload copies checked, want %d", n, want)
	}
}

// TestUnfusedMatchesReference: the unfused step (bias_add after each
// product, the GELU as a chain of six kernels) is still GPT-2: one
// training step, every output poisoned first, matches the float64
// reference with the clean step's tolerances (the chain's extra roundings
// are a few of the dtype's own); its launches are its plan's, and what it
// allocates is its memory plan's (gelu_tmp included).
func TestUnfusedMatchesReference(t *testing.T) {
	fs := []config.Flaw{config.Unfused}
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			bind(t)
			s := seed(t)
			o := gpuOptions(t)
			o.Graph, o.Flaws = *graph, fs
			before := testDev.Allocated()
			m, err := New(testExec, sh.d, config.Train, o, s)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			p, err := memplan.NewWith(sh.d, config.Train, o)
			if err != nil {
				t.Fatal(err)
			}
			if got := testDev.Allocated() - before; got != p.Total {
				t.Errorf("allocated %d bytes, the memory plan counts %d", got, p.Total)
			}
			checkLaunches(t, m)
			if err := m.Poison(); err != nil {
				t.Fatal(err)
			}
			dp, err := m.Dump()
			if err != nil {
				t.Fatal(err)
			}
			r := ref.NewModel(dp.Dims, dp.Params)
			wantLoss := r.Forward(dp.Tokens, dp.Targets)
			wantGrads := r.Backward()
			tol := tolerances[dtype(t)]
			if e := math.Abs(dp.Loss-wantLoss) / math.Abs(wantLoss); !(e <= tol.loss) {
				t.Errorf("loss %.7f, reference %.7f: relative error %.3g > %g", dp.Loss, wantLoss, e, tol.loss)
			}
			if e := relNorm(dp.Logits, r.Logits()); !(e <= tol.logits) {
				t.Errorf("logits: ‖g−ref‖/‖ref‖ = %.3g > %g", e, tol.logits)
			}
			for _, tn := range ref.Layout(dp.Dims) {
				e := relNorm(dp.Grads[tn.Offset:tn.Offset+tn.Size], wantGrads[tn.Offset:tn.Offset+tn.Size])
				t.Logf("grad %-9s ‖g−ref‖/‖ref‖ = %.2e", tn.Name, e)
				if !(e <= tol.grads) {
					t.Errorf("gradient %s: ‖g−ref‖/‖ref‖ = %.3g > %g", tn.Name, e, tol.grads)
				}
			}
		})
	}
}
