//go:build gpu

package cuda

import (
	"flag"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/gpu"
	"github.com/gpubench/gpubench/internal/memplan"
	"github.com/gpubench/gpubench/internal/nccl"
	"github.com/gpubench/gpubench/internal/plan"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model"
	"github.com/gpubench/gpubench/model/ref"
	"gorgonia.org/cu"
)

// These tests need a GPU; they are built with -tags gpu and run on the
// device machine. They never skip. With -graph, every model runs its passes
// as CUDA graphs (model.Options.Graph), and every test must hold as
// without.
var graph = flag.Bool("graph", false, "run every model with --graph")

// With -dtype, every model runs at that precision, against tolerances
// derived from it (tolerances below).
var dtypeFlag = flag.String("dtype", "fp32", "run every model at this --dtype: fp32, tf32 or bf16")

// With -tier, the tensor-core dtypes take that tier's kernels (auto: the
// Hopper tier for bf16 on compute capability 9.0).
var tierFlag = flag.String("tier", "auto", "run every model with this --tier: auto, mma or wgmma")

// With -nccl, every train model is one rank of a data-parallel step of
// one rank (--gpus=1): its backward all-reduces the gradients through
// NCCL, which for one rank must leave them exactly as they were.
var ncclFlag = flag.Bool("nccl", false, "run every model as rank 0 of 1 through NCCL (--gpus=1)")

// gpuOptions are the program options of this GPU (its SMs, compute
// capability and shared memory) at the test's dtype and tier.
func gpuOptions(t *testing.T) model.Options {
	tier, err := config.ParseTier(*tierFlag)
	if err != nil {
		t.Fatal(err)
	}
	i := testDev.Info
	o := model.Options{SMs: i.SMs, CC: 10*i.CCMajor + i.CCMinor, SharedOptIn: i.SharedOptIn, DType: dtype(t), Tier: tier}
	if *ncclFlag {
		o.DataParallel = model.DataParallel{World: 1}
	}
	return o
}

func dtype(t *testing.T) config.DType {
	dt, err := config.ParseDType(*dtypeFlag)
	if err != nil {
		t.Fatal(err)
	}
	return dt
}

// tolerance bounds the relative errors of one step against the float64
// reference at a dtype: the loss, the logits (‖g−ref‖/‖ref‖) and each
// gradient tensor. The reference runs on the same parameters (for bf16,
// the bf16 values), but rounds nothing in between.
//   - fp32: products of K terms in fp32, about 2^-24·√K relative, grown
//     through the layers; 1e-5 and 1e-4 leave margin.
//   - tf32: every linear layer's operands rounded to a 10-bit mantissa
//     (2^-11 relative each), so errors near 1e-3 per product; the
//     gradients compound them through two layers.
//   - bf16: every activation and gradient rounded to an 8-bit mantissa
//     (2^-9 relative each) at each step of the chain; the loss averages
//     them away, single tensors do not.
type tolerance struct{ loss, logits, grads float64 }

var tolerances = map[config.DType]tolerance{
	config.FP32: {1e-5, 1e-5, 1e-4},
	config.TF32: {1e-3, 2e-3, 5e-3},
	config.BF16: {5e-3, 1e-2, 3e-2},
}

var (
	testDev  *gpu.Device
	testExec *cuexec.Executor
)

func TestMain(m *testing.M) {
	dev, err := gpu.Open(0)
	if err != nil {
		println("model GPU tests: open device:", err.Error())
		os.Exit(1)
	}
	x, err := cuexec.New(dev)
	if err != nil {
		println("model GPU tests: load kernels:", err.Error())
		os.Exit(1)
	}
	testDev, testExec = dev, x
	flag.Parse()
	var comm *nccl.Comm
	if *ncclFlag {
		lib, err := nccl.Load()
		if err != nil {
			println("model GPU tests: -nccl:", err.Error())
			os.Exit(1)
		}
		id, err := lib.UniqueID()
		if err == nil {
			comm, err = lib.CommInitRank(1, id, 0)
		}
		if err != nil {
			println("model GPU tests: -nccl: join a communicator of one rank:", err.Error())
			os.Exit(1)
		}
		x.Comm = cuexec.NCCL(lib, comm)
	}
	code := m.Run()
	if comm != nil {
		_ = comm.Destroy()
	}
	x.Close()
	dev.Close()
	os.Exit(code)
}

func newModel(t *testing.T, d config.Dims, mode config.Mode, seed uint64) *Model {
	t.Helper()
	m, err := New(testExec, d, mode, func() model.Options { o := gpuOptions(t); o.Graph = *graph; return o }(), seed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func bind(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	ctx, _ := testDev.Context()
	if err := cu.SetCurrentContext(ctx); err != nil {
		t.Fatal(err)
	}
}

// seed is fresh for every run unless GPUBENCH_TEST_SEED replays one.
func seed(t *testing.T) uint64 {
	s := uint64(time.Now().UnixNano())
	if env := os.Getenv("GPUBENCH_TEST_SEED"); env != "" {
		var err error
		if s, err = strconv.ParseUint(env, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d", s)
	return s
}

var shapes = []struct {
	name string
	d    config.Dims
}{
	{"tiny", config.Dims{V: 512, MaxT: 64, T: 64, L: 2, NH: 4, C: 128, B: 8}},
	{"odd", config.Dims{V: 1000, MaxT: 40, T: 37, L: 2, NH: 3, C: 96, B: 3}},
	// Head size 64 (gpt2's), which the other shapes (32) do not reach:
	// the size the tf32 and Hopper-tier attention kernels run, at a T
	// that is no multiple of their tiles.
	{"hs64", config.Dims{V: 300, MaxT: 70, T: 70, L: 2, NH: 2, C: 128, B: 2}},
}

func relNorm(got []float32, want []float64) float64 {
	var num, den float64
	for i := range got {
		g := float64(got[i])
		if math.IsNaN(g) || math.IsInf(g, 0) {
			return math.Inf(1)
		}
		num += (g - want[i]) * (g - want[i])
		den += want[i] * want[i]
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// TestStepMatchesReference runs one training step on the GPU, with every
// output poisoned first, and compares the loss, the logits and every
// gradient tensor with the float64 CPU reference on the same inputs.
func TestStepMatchesReference(t *testing.T) {
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			bind(t)
			s := seed(t)
			m := newModel(t, sh.d, config.Train, s)
			defer m.Free()
			if err := m.Poison(); err != nil {
				t.Fatal(err)
			}
			dp, err := m.Dump() // forward, logits, backward, grads
			if err != nil {
				t.Fatal(err)
			}

			r := ref.NewModel(dp.Dims, dp.Params)
			wantLoss := r.Forward(dp.Tokens, dp.Targets)
			wantGrads := r.Backward()

			tol := tolerances[dtype(t)]
			lossErr := math.Abs(dp.Loss-wantLoss) / math.Abs(wantLoss)
			t.Logf("%s: loss %.7f (ref %.7f), relative error %.2e", dtype(t), dp.Loss, wantLoss, lossErr)
			if !(lossErr <= tol.loss) {
				t.Errorf("loss relative error %.3g > %g", lossErr, tol.loss)
			}
			e := relNorm(dp.Logits, r.Logits())
			t.Logf("logits ‖g−ref‖/‖ref‖ = %.2e", e)
			if !(e <= tol.logits) {
				t.Errorf("logits: ‖g−ref‖/‖ref‖ = %.3g > %g", e, tol.logits)
			}
			for _, tn := range ref.Layout(dp.Dims) {
				got := dp.Grads[tn.Offset : tn.Offset+tn.Size]
				want := wantGrads[tn.Offset : tn.Offset+tn.Size]
				e := relNorm(got, want)
				t.Logf("grad %-9s ‖g−ref‖/‖ref‖ = %.2e", tn.Name, e)
				if !(e <= tol.grads) {
					t.Errorf("gradient %s: ‖g−ref‖/‖ref‖ = %.3g > %g", tn.Name, e, tol.grads)
				}
			}
		})
	}
}

// TestDeterministic: the same seed gives bitwise-identical loss and
// gradients, step after step and model after model.
func TestDeterministic(t *testing.T) {
	bind(t)
	d := shapes[1].d
	s := seed(t)
	var first []float32
	var firstLoss float64
	for run := 0; run < 3; run++ {
		m := newModel(t, d, config.Train, s)
		if err := m.Poison(); err != nil {
			t.Fatal(err)
		}
		dp, err := m.Dump()
		m.Free()
		if err != nil {
			t.Fatal(err)
		}
		if run == 0 {
			first, firstLoss = dp.Grads, dp.Loss
			continue
		}
		if dp.Loss != firstLoss {
			t.Errorf("run %d: loss %v, first run %v", run, dp.Loss, firstLoss)
		}
		for i := range first {
			if math.Float32bits(first[i]) != math.Float32bits(dp.Grads[i]) {
				t.Fatalf("run %d: gradient element %d differs: %v vs %v", run, i, dp.Grads[i], first[i])
			}
		}
	}
}

// TestLaunchesMatchPlan: one iteration on the GPU launches exactly the
// operations the plan (and so gpubench plan and gpubench check) lists, in
// both modes: every launch the CUDA executor made, counted per kernel and
// memset, against the plan built for this GPU's SM count.
func TestLaunchesMatchPlan(t *testing.T) {
	for _, mode := range []config.Mode{config.Train, config.Infer} {
		for _, sh := range shapes {
			t.Run(string(mode)+"/"+sh.name, func(t *testing.T) {
				bind(t) // a subtest runs on its own goroutine
				m := newModel(t, sh.d, mode, 1)
				defer m.Free()
				checkLaunches(t, m)
				if _, err := m.Loss(); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// checkLaunches runs each pass of m's iteration (plan order) and checks
// that the executor launched exactly the plan's kernels, memsets and graph
// launches for it, as many times each.
func checkLaunches(t *testing.T, m *Model) {
	t.Helper()
	p := plan.Of(m.Step)
	if len(p.Iteration.Children) != m.Passes() {
		t.Fatalf("plan has %d passes, the model %d", len(p.Iteration.Children), m.Passes())
	}
	for k, r := range p.Iteration.Children {
		testExec.ResetCounts()
		if err := m.Pass(k); err != nil {
			t.Fatal(err)
		}
		got := testExec.LaunchCounts()
		want := map[string]int{}
		// Every operation of the pass and of its nested ranges (a
		// data-parallel backward's all-reduces): kernels and memsets, and
		// the calls (events, NCCL's); a graph launch counts, and so do
		// its nodes.
		var count func(r *plan.Range)
		count = func(r *plan.Range) {
			for _, l := range r.Ops {
				want[l.Name]++
				for _, n := range l.Nodes {
					want[n.Name]++
				}
			}
			for i := range r.Children {
				count(&r.Children[i])
			}
		}
		count(&r)
		for name, n := range want {
			if got[name] != n {
				t.Errorf("%s: %s launched %d times, plan says %d", r.Name, name, got[name], n)
			}
		}
		for name, n := range got {
			if _, ok := want[name]; !ok {
				t.Errorf("%s: %s launched %d times, not in the plan", r.Name, name, n)
			}
		}
	}
}

// TestMemoryMatchesPlan: what the model allocates is exactly what the
// memory preflight counts, so the preflight's refusal is truthful.
func TestMemoryMatchesPlan(t *testing.T) {
	bind(t)
	for _, mode := range []config.Mode{config.Train, config.Infer} {
		for _, sh := range shapes {
			before := testDev.Allocated()
			m := newModel(t, sh.d, mode, 1)
			got := testDev.Allocated() - before
			m.Free()
			p, err := memplan.New(sh.d, mode, dtype(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s/%s: allocated %d bytes, planned %d (required with headroom %d)", mode, sh.name, got, p.Total, p.Required)
			if got != p.Total {
				t.Errorf("%s/%s: model allocates %d bytes, memplan counts %d", mode, sh.name, got, p.Total)
			}
		}
	}
}

// TestInferHasNoBackward: an infer model refuses Backward with an error.
func TestInferHasNoBackward(t *testing.T) {
	bind(t)
	m := newModel(t, shapes[0].d, config.Infer, 1)
	defer m.Free()
	if err := m.Backward(); err == nil {
		t.Fatal("Backward on an infer model returned no error")
	}
}

// TestCheckNumericsNamesTensor: a NaN planted in one gradient is reported
// with the tensor's name; a NaN planted in a parameter reaches the loss and
// is reported as such.
func TestCheckNumericsNamesTensor(t *testing.T) {
	bind(t)
	m := newModel(t, shapes[1].d, config.Train, seed(t))
	defer m.Free()
	step := func() {
		t.Helper()
		if err := m.Forward(); err != nil {
			t.Fatal(err)
		}
		if err := m.Backward(); err != nil {
			t.Fatal(err)
		}
	}
	step()
	if err := m.CheckNumerics(); err != nil {
		t.Fatalf("a healthy step failed the numerics check: %v", err)
	}
	// A NaN in one element of the last layer's fc bias gradient, after
	// the step wrote it: the loss is healthy, so only the gradient scan
	// can find it, and it must name the tensor.
	fcb := m.Grad(layoutIndex(t, m, ref.NameFcb), m.Dims.L-1)
	plantNaN(t, fcb.At(3))
	err := m.CheckNumerics()
	if err == nil {
		t.Fatal("a NaN gradient passed the numerics check")
	}
	t.Logf("numerics check: %v", err)
	if !strings.Contains(err.Error(), "--check-numerics: gradient "+ref.NameFcb+" holds NaN") {
		t.Errorf("error %q does not name the gradient %s", err, ref.NameFcb)
	}
	// A NaN in a parameter reaches the loss.
	plantNaN(t, m.Param(layoutIndex(t, m, ref.NameFcb), m.Dims.L-1))
	step()
	if err := m.CheckNumerics(); err == nil || !strings.Contains(err.Error(), "--check-numerics: the loss is NaN") {
		t.Errorf("a NaN parameter gave %v, want the loss named", err)
	}
}

func layoutIndex(t *testing.T, m *Model, name string) int {
	t.Helper()
	for i, tn := range m.Layout {
		if tn.Name == name {
			return i
		}
	}
	t.Fatalf("no parameter %s", name)
	return -1
}

// plantNaN writes a NaN into the first element of v, in v's element type.
func plantNaN(t *testing.T, v program.View) {
	t.Helper()
	var err error
	if v.Buf.Elem == program.BF16 {
		err = cuexec.Upload(testExec, v, []uint16{gpu.BF16NaNBits})
	} else {
		err = cuexec.Upload(testExec, v, []float32{float32(math.NaN())})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestOneRankAllReduceIsIdentity (-nccl): the all-reduce of one rank
// leaves every gradient bit as the plain step computes it, and the loss,
// for the same seed: NCCL's average over one rank is a copy or a scale by
// exactly 1.
func TestOneRankAllReduceIsIdentity(t *testing.T) {
	if !*ncclFlag {
		t.Skip("needs -nccl") // the device script runs it with -nccl
	}
	bind(t)
	for _, sh := range shapes {
		s := seed(t)
		var dumps []ref.Dump
		for _, dp := range []model.DataParallel{{World: 1}, {}} {
			o := gpuOptions(t)
			o.DataParallel = dp
			m, err := New(testExec, sh.d, config.Train, o, s)
			if err != nil {
				t.Fatal(err)
			}
			if dp.World == 1 && len(m.GradBuckets()) == 0 {
				t.Fatal("the data-parallel model has no all-reduce")
			}
			if err := m.Poison(); err != nil {
				t.Fatal(err)
			}
			d, err := m.Dump()
			m.Free()
			if err != nil {
				t.Fatal(err)
			}
			dumps = append(dumps, d)
		}
		a, b := dumps[0], dumps[1]
		if a.Loss != b.Loss {
			t.Errorf("%s: loss %v through NCCL, %v without", sh.name, a.Loss, b.Loss)
		}
		diff := 0
		for i := range a.Grads {
			if math.Float32bits(a.Grads[i]) != math.Float32bits(b.Grads[i]) {
				if diff == 0 {
					t.Errorf("%s: gradient element %d: %v through NCCL, %v without", sh.name, i, a.Grads[i], b.Grads[i])
				}
				diff++
			}
		}
		t.Logf("%s %s: %d gradients, %d differ bitwise; loss %v", sh.name, dtype(t), len(a.Grads), diff, a.Loss)
		if diff > 0 {
			t.Errorf("%s: %d of %d gradients differ", sh.name, diff, len(a.Grads))
		}
	}
}
