//go:build gpu

package cuda

import (
	"math"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/memplan"
	"github.com/gpubench/gpubench/model"
	"github.com/gpubench/gpubench/model/ref"
)

// llamaShapes are LLaMA steps with grouped-query attention: llama-tiny's
// shape, and one of odd sizes (3 query heads a key/value head, a sequence
// and MLP width of no power of two, theta as llama 3's).
var llamaShapes = []struct {
	name string
	d    config.Dims
}{
	{"llama-tiny", config.Dims{Arch: config.Llama, V: 512, MaxT: 64, T: 64, L: 2, NH: 4, KVH: 2, C: 128, Hidden: 352, B: 4, Eps: 1e-5, Theta: 1e4}},
	{"llama-odd", config.Dims{Arch: config.Llama, V: 1000, MaxT: 48, T: 29, L: 2, NH: 6, KVH: 2, C: 192, Hidden: 200, B: 3, Eps: 1e-5, Theta: 5e5}},
}

// generating is d in generate mode: a prompt of T tokens and New new ones
// (T+New-1 ≤ MaxT).
func generating(d config.Dims, T, New int) config.Dims {
	d.T, d.New = T, New
	return d
}

// TestLlamaStepMatchesReference runs one LLaMA training step on the GPU,
// every output poisoned first, and compares the loss, the logits and
// every gradient tensor with the float64 reference (model/ref/llama.go).
func TestLlamaStepMatchesReference(t *testing.T) {
	for _, sh := range llamaShapes {
		t.Run(sh.name, func(t *testing.T) {
			bind(t)
			m := newModel(t, sh.d, config.Train, seed(t))
			defer m.Free()
			if err := m.Poison(); err != nil {
				t.Fatal(err)
			}
			dp, err := m.Dump()
			if err != nil {
				t.Fatal(err)
			}
			rd := model.LlamaRefDims(sh.d)
			r := ref.NewLlamaModel(rd, dp.Params)
			wantLoss := r.Forward(dp.Tokens, dp.Targets)
			wantGrads := r.Backward()
			tol := tolerances[dtype(t)]
			lossErr := math.Abs(dp.Loss-wantLoss) / math.Abs(wantLoss)
			t.Logf("%s: loss %.7f (ref %.7f), relative error %.2e", dtype(t), dp.Loss, wantLoss, lossErr)
			if !(lossErr <= tol.loss) {
				t.Errorf("loss relative error %.3g > %g", lossErr, tol.loss)
			}
			if e := relNorm(dp.Logits, r.Logits()); !(e <= tol.logits) {
				t.Errorf("logits: ‖g−ref‖/‖ref‖ = %.3g > %g", e, tol.logits)
			} else {
				t.Logf("logits ‖g−ref‖/‖ref‖ = %.2e", e)
			}
			for _, tn := range ref.LlamaLayout(rd) {
				e := relNorm(dp.Grads[tn.Offset:tn.Offset+tn.Size], wantGrads[tn.Offset:tn.Offset+tn.Size])
				t.Logf("grad %-9s ‖g−ref‖/‖ref‖ = %.2e", tn.Name, e)
				if !(e <= tol.grads) {
					t.Errorf("gradient %s: ‖g−ref‖/‖ref‖ = %.3g > %g", tn.Name, e, tol.grads)
				}
			}
		})
	}
}

// TestLlamaGenerateMatchesReference runs generate pass by pass: after the
// prefill and after each decode step it reads the GPU's logits and its
// greedy token and checks them against the float64 reference fed the
// GPU's own tokens (teacher-forced, so one near-tie cannot derail the rest
// of the comparison):
//   - the logits agree within the dtype's tolerance;
//   - the GPU's token is the argmax of the GPU's logits (lowest id on ties),
//     written to its column of the generated tokens;
//   - it is the reference's argmax too, unless the reference's top two
//     logits are closer than the GPU's error allows.
func TestLlamaGenerateMatchesReference(t *testing.T) {
	for _, sh := range llamaShapes {
		t.Run(sh.name, func(t *testing.T) {
			bind(t)
			d := generating(sh.d, sh.d.T/2+1, 9)
			m := newModel(t, d, config.Generate, seed(t))
			defer m.Free()
			if err := m.Poison(); err != nil {
				t.Fatal(err)
			}
			params, err := m.Params()
			if err != nil {
				t.Fatal(err)
			}
			prompt, _, err := m.Inputs()
			if err != nil {
				t.Fatal(err)
			}
			r := ref.NewLlamaModel(model.LlamaRefDims(d), params)
			r.Forward(prompt, nil)
			B, T, V := d.B, d.T, d.V
			want := make([]float64, B*V) // the reference's logits of the step
			for b := 0; b < B; b++ {
				copy(want[b*V:(b+1)*V], r.Logits()[(b*T+T-1)*V:][:V])
			}
			tol := tolerances[dtype(t)]
			fed := make([]int32, B)
			for k := 0; k < m.Passes(); k++ {
				if k > 0 {
					want = r.DecodeStep(fed, T+k-1)
				}
				if err := m.Pass(k); err != nil {
					t.Fatal(err)
				}
				got, err := m.Logits()
				if err != nil {
					t.Fatal(err)
				}
				gen, err := m.Generated()
				if err != nil {
					t.Fatal(err)
				}
				e := relNorm(got, want)
				if !(e <= tol.logits) {
					t.Fatalf("pass %d: logits ‖g−ref‖/‖ref‖ = %.3g > %g", k, e, tol.logits)
				}
				for b := 0; b < B; b++ {
					tok := gen[b*d.New+k]
					row, wrow := got[b*V:(b+1)*V], want[b*V:(b+1)*V]
					if a := argmax32(row); tok != a {
						t.Fatalf("pass %d, sequence %d: token %d, but the GPU's own logits' argmax is %d", k, b, tok, a)
					}
					if a := argmax64(wrow); tok != a {
						gap := wrow[a] - wrow[tok]
						allow := 4 * e * maxAbs(wrow)
						if !(gap <= allow) {
							t.Fatalf("pass %d, sequence %d: token %d, the reference's is %d with a logit %.3g higher (allowed %.3g)", k, b, tok, a, gap, allow)
						}
						t.Logf("pass %d, sequence %d: a near-tie (gap %.2g): GPU %d, reference %d", k, b, gap, tok, a)
					}
					fed[b] = tok
				}
				if k == 0 || k == m.Passes()-1 {
					t.Logf("pass %d: logits ‖g−ref‖/‖ref‖ = %.2e", k, e)
				}
			}
		})
	}
}

// TestKVCacheMatchesRecompute: the last decode step's logits, computed
// from the KV cache, equal the logits at the same position of a forward
// pass over the whole sequence (prompt and generated tokens), on the GPU.
func TestKVCacheMatchesRecompute(t *testing.T) {
	for _, sh := range llamaShapes {
		t.Run(sh.name, func(t *testing.T) {
			bind(t)
			s := seed(t)
			d := generating(sh.d, sh.d.T/2+1, 7)
			g := newModel(t, d, config.Generate, s)
			defer g.Free()
			if err := g.Generate(); err != nil {
				t.Fatal(err)
			}
			gen, err := g.Generated()
			if err != nil {
				t.Fatal(err)
			}
			last, err := g.Logits()
			if err != nil {
				t.Fatal(err)
			}
			prompt, _, err := g.Inputs()
			if err != nil {
				t.Fatal(err)
			}
			// The whole sequence: the prompt and every generated token
			// but the last (which was never fed back).
			full := d
			full.T, full.New = d.T+d.New-1, 0
			f := newModel(t, full, config.Infer, s)
			defer f.Free()
			seq := make([]int32, 0, full.Rows())
			for b := 0; b < d.B; b++ {
				seq = append(seq, prompt[b*d.T:(b+1)*d.T]...)
				seq = append(seq, gen[b*d.New:b*d.New+d.New-1]...)
			}
			if err := f.SetInputs(seq, make([]int32, full.Rows())); err != nil {
				t.Fatal(err)
			}
			if err := f.Forward(); err != nil {
				t.Fatal(err)
			}
			all, err := f.Logits()
			if err != nil {
				t.Fatal(err)
			}
			V := d.V
			var got []float32
			var want []float64
			for b := 0; b < d.B; b++ {
				got = append(got, last[b*V:(b+1)*V]...)
				for _, v := range all[(b*full.T+full.T-1)*V:][:V] {
					want = append(want, float64(v))
				}
			}
			e := relNorm(got, want)
			t.Logf("%s: decode-from-cache vs recompute: ‖Δ‖/‖ref‖ = %.2e", dtype(t), e)
			if tol := tolerances[dtype(t)].logits; !(e <= tol) {
				t.Errorf("the KV-cache logits differ from the recomputed ones: %.3g > %g", e, tol)
			}
		})
	}
}

// TestLlamaLaunchesAndMemoryMatchPlan: every pass of every mode launches
// exactly what the plan lists, and the model allocates exactly what the
// memory plan (the preflight's) counts, KV cache included.
func TestLlamaLaunchesAndMemoryMatchPlan(t *testing.T) {
	for _, sh := range llamaShapes {
		for _, mode := range []config.Mode{config.Train, config.Infer, config.Generate} {
			t.Run(string(mode)+"/"+sh.name, func(t *testing.T) {
				bind(t)
				d := sh.d
				if mode == config.Generate {
					d = generating(d, d.T/2, 5)
				}
				before := testDev.Allocated()
				m := newModel(t, d, mode, 1)
				defer m.Free()
				allocated := testDev.Allocated() - before
				mp, err := memplan.New(d, mode, dtype(t))
				if err != nil {
					t.Fatal(err)
				}
				if allocated != mp.Total {
					t.Errorf("the model allocates %d bytes, memplan counts %d", allocated, mp.Total)
				}
				if mode == config.Generate && mp.KVCache == 0 {
					t.Error("memplan counts no KV cache")
				}
				checkLaunches(t, m)
				if _, err := m.Loss(); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func argmax32(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] || (math.IsNaN(float64(v)) && !math.IsNaN(float64(x[best]))) {
			best = i
		}
	}
	return int32(best)
}

func argmax64(x []float64) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}

func maxAbs(x []float64) float64 {
	m := 0.0
	for _, v := range x {
		m = max(m, math.Abs(v))
	}
	return m
}

// TestKVCachePreflightRefuses: with the GPU's memory taken but for room
// for the weights and half the KV cache of llama2-7b's batch-8 generate
// run (an allocation of the cache would fail), the preflight refuses the
// run against the GPU's real free memory before anything of the model is
// allocated, naming the KV cache, a batch and a prompt that fit; and what
// it names does fit.
func TestKVCachePreflightRefuses(t *testing.T) {
	bind(t)
	p, err := config.LookupPreset("llama2-7b")
	if err != nil {
		t.Fatal(err)
	}
	d := p.Dims(8)
	d.T, d.New = 512, 64
	need, err := memplan.New(d, config.Generate, config.BF16)
	if err != nil {
		t.Fatal(err)
	}
	free, _, err := testDev.MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	room := need.Required - need.KVCache/2
	blocker, err := testDev.Alloc(free - room)
	if err != nil {
		t.Fatal(err)
	}
	defer testDev.Free(blocker)
	before := testDev.Allocated()
	if free, _, err = testDev.MemInfo(); err != nil {
		t.Fatal(err)
	}
	err = memplan.Refuse("llama2-7b", d, config.Generate, config.BF16, need, free)
	if err == nil {
		t.Fatalf("a plan of %d bytes fits in %d free", need.Required, free)
	}
	t.Logf("free %d bytes: %v", free, err)
	for _, want := range []string{"KV cache", "the largest batch that fits is", "the longest --prompt-len that fits is"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not say %q", err, want)
		}
	}
	if got := testDev.Allocated(); got != before {
		t.Errorf("the preflight allocated %d bytes", got-before)
	}
	b := memplan.LargestBatchThatFits(d, config.Generate, config.BF16, free)
	prompt := memplan.LargestPromptThatFits(d, config.BF16, free)
	for _, s := range []config.Dims{func() config.Dims { x := d; x.B = b; return x }(), func() config.Dims { x := d; x.T = prompt; return x }()} {
		if plan, err := memplan.New(s, config.Generate, config.BF16); err != nil || !plan.Fits(free) || s.B < 1 || s.T < 1 {
			t.Errorf("the named shape %v does not fit: %v", s, err)
		}
	}
}
