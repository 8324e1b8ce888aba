package ref

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// tinyDims is the main gradient-check configuration: hs = 4.
var tinyDims = Dims{V: 23, MaxT: 9, T: 7, L: 2, NH: 3, C: 12, B: 2}

// wideParams are random parameters far from GPT-2's init, so that every
// gradient is sizeable and every path matters: embeddings N(0,1), weight
// matrices N(0, 1/fan_in), biases N(0, 0.3²), LayerNorm weights
// 1 + N(0, 0.3²) and LayerNorm biases N(0, 0.3²).
func wideParams(d Dims, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 99))
	p := make([]float32, NumParams(d))
	for _, t := range Layout(d) {
		mean, std := 0.0, 0.3
		switch t.Name {
		case NameWte, NameWpe:
			std = 1
		case NameQkvw, NameAttprojw, NameFcw, NameFcprojw:
			std = 1 / math.Sqrt(float64(t.Shape[len(t.Shape)-1]))
		case NameLn1w, NameLn2w, NameLnfw:
			mean = 1
		}
		for i := t.Offset; i < t.Offset+t.Size; i++ {
			p[i] = float32(mean + std*rng.NormFloat64())
		}
	}
	return p
}

// checkModel compares the model's gradient with finite differences of its
// loss on the elements chosen by pick for each tensor, and returns the
// results. Rows t >= T of wpe must have an exactly zero gradient.
func checkModel(t *testing.T, d Dims, params []float32, seed uint64, o fdOpts, pick func(rng *rand.Rand, ts Tensor) []int) []gradResult {
	t.Helper()
	m := NewModel(d, params)
	tokens, targets := Inputs(d, seed)
	m.Forward(tokens, targets)
	grads := append([]float64(nil), m.Backward()...)
	loss := func() float64 { return m.Forward(tokens, targets) }
	rng := rand.New(rand.NewPCG(seed, 7))
	var all []gradResult
	for _, ts := range Layout(d) {
		idx := pick(rng, ts)
		for i := range idx {
			idx[i] += ts.Offset
		}
		rs := checkElems(ts.Name, loss, m.Params(), grads, idx, o)
		for i := range rs {
			rs[i].Index -= ts.Offset
		}
		all = append(all, rs...)
		if ts.Name == NameWpe {
			for i := d.T * d.C; i < ts.Size; i++ {
				if g := grads[ts.Offset+i]; g != 0 {
					t.Errorf("wpe[%d] (row %d >= T) has gradient %v", i, i/d.C, g)
				}
			}
		}
	}
	return all
}

// pickSample takes up to k elements of each tensor, and of each layer of a
// per-layer tensor; for wpe only rows < T, which are the ones used.
func pickSample(d Dims, k int) func(rng *rand.Rand, ts Tensor) []int {
	return func(rng *rand.Rand, ts Tensor) []int {
		if ts.Name == NameWpe {
			return sampleIndices(rng, 0, d.T*d.C, k)
		}
		if len(ts.Shape) > 0 && ts.Shape[0] == d.L && ts.Name != NameWte && ts.Name != NameLnfw && ts.Name != NameLnfb {
			per := ts.Size / max(d.L, 1)
			var idx []int
			for l := 0; l < d.L; l++ {
				idx = append(idx, sampleIndices(rng, l*per, (l+1)*per, k)...)
			}
			return idx
		}
		return sampleIndices(rng, 0, ts.Size, k)
	}
}

func reportGrad(t *testing.T, all []gradResult) {
	t.Helper()
	for _, r := range failures(all) {
		t.Errorf("%v", r)
	}
	byTensor := map[string]float64{}
	for _, r := range all {
		byTensor[r.Tensor] = math.Max(byTensor[r.Tensor], r.RelErr)
	}
	t.Logf("%d elements checked; max rel err %v", len(all), worst(all))
	for _, name := range []string{NameWte, NameWpe, NameLn1w, NameLn1b, NameQkvw, NameQkvb, NameAttprojw, NameAttprojb,
		NameLn2w, NameLn2b, NameFcw, NameFcb, NameFcprojw, NameFcprojb, NameLnfw, NameLnfb} {
		if v, ok := byTensor[name]; ok {
			t.Logf("  %-9s max rel err %.3g", name, v)
		}
	}
}

func TestModelGradientAll(t *testing.T) {
	// Every used parameter of the tiny model, at wide random parameters.
	d := tinyDims
	all := checkModel(t, d, wideParams(d, 1), 1, defaultFD, func(rng *rand.Rand, ts Tensor) []int {
		if ts.Name == NameWpe {
			return allIndices(d.T * d.C)
		}
		return allIndices(ts.Size)
	})
	reportGrad(t, all)
}

// initFD is the finite-difference setting at GPT-2's init. There the
// residual stream is tiny (embeddings of std 0.02), so the LayerNorms have
// rstd ≈ 35 and the loss curves on a scale of ~0.03 in the embeddings: the
// step must be much smaller than defaultFD's 2^-6, and with h = 2^-11 the
// rounding error of g_fd grows to ~3e-12. Many gradients of the first
// layers are only ~1e-7..1e-6 at init, so the relative-error floor is raised
// to 1e-5: elements with |g| >= 1e-5 are still held to a relative error of
// 1e-6, the others to an absolute error of 1e-11.
var initFD = fdOpts{h: 1.0 / 2048, floor: 1e-5}

func TestModelGradientSampled(t *testing.T) {
	cases := []struct {
		name   string
		d      Dims
		params func(d Dims) []float32
		fd     fdOpts
	}{
		{"tiny gpt2 init", tinyDims, func(d Dims) []float32 { return InitParams(d, 5) }, initFD},
		{"one head T=MaxT", Dims{V: 11, MaxT: 4, T: 4, L: 1, NH: 1, C: 6, B: 3}, func(d Dims) []float32 { return wideParams(d, 2) }, defaultFD},
		{"no blocks", Dims{V: 7, MaxT: 5, T: 3, L: 0, NH: 1, C: 4, B: 2}, func(d Dims) []float32 { return wideParams(d, 3) }, defaultFD},
		{"three layers B=1", Dims{V: 17, MaxT: 6, T: 5, L: 3, NH: 2, C: 8, B: 1}, func(d Dims) []float32 { return wideParams(d, 4) }, defaultFD},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reportGrad(t, checkModel(t, tc.d, tc.params(tc.d), 3, tc.fd, pickSample(tc.d, 8)))
		})
	}
}

// TestModelGradCheckCatchesBug: a gradient wrong by one part in 1e5 in one
// element of one tensor must fail the model check.
func TestModelGradCheckCatchesBug(t *testing.T) {
	d := tinyDims
	m := NewModel(d, wideParams(d, 1))
	tokens, targets := Inputs(d, 1)
	m.Forward(tokens, targets)
	grads := append([]float64(nil), m.Backward()...)
	off := Layout(d)[IdxLn2b].Offset
	grads[off+5] *= 1 + 1e-5
	rs := checkElems(NameLn2b, func() float64 { return m.Forward(tokens, targets) }, m.Params(), grads, []int{off + 4, off + 5, off + 6}, defaultFD)
	if bad := failures(rs); len(bad) != 1 || bad[0].Index != off+5 {
		t.Fatalf("want exactly ln2b[5] to fail, got %v (all %v)", bad, rs)
	}
}

// naiveLoss is an independent, literal forward pass written from the model
// description (per position, nested slices), for checking Model.Forward.
func naiveLoss(d Dims, params []float32, tokens, targets []int32) (loss float64, logits [][]float64) {
	f := make([]float64, len(params))
	for i, v := range params {
		f[i] = float64(v)
	}
	P := map[string][]float64{}
	for _, t := range Layout(d) {
		P[t.Name] = f[t.Offset : t.Offset+t.Size]
	}
	C, hs := d.C, d.C/d.NH
	linear := func(x []float64, w, b []float64, out int) []float64 {
		in := len(x)
		y := make([]float64, out)
		for o := 0; o < out; o++ {
			if b != nil {
				y[o] = b[o]
			}
			for i := 0; i < in; i++ {
				y[o] += w[o*in+i] * x[i]
			}
		}
		return y
	}
	layernorm := func(x, w, b []float64) []float64 {
		mu, v := 0.0, 0.0
		for _, e := range x {
			mu += e / float64(len(x))
		}
		for _, e := range x {
			v += (e - mu) * (e - mu) / float64(len(x))
		}
		y := make([]float64, len(x))
		for i := range x {
			y[i] = w[i]*(x[i]-mu)/math.Sqrt(v+1e-5) + b[i]
		}
		return y
	}
	for b := 0; b < d.B; b++ {
		xs := make([][]float64, d.T)
		for t := range xs {
			tok := int(tokens[b*d.T+t])
			xs[t] = make([]float64, C)
			for c := 0; c < C; c++ {
				xs[t][c] = P["wte"][tok*C+c] + P["wpe"][t*C+c]
			}
		}
		for l := 0; l < d.L; l++ {
			lw := func(name string, n int) []float64 { return P[name][l*n : (l+1)*n] }
			qkv := make([][]float64, d.T)
			for t := range xs {
				qkv[t] = linear(layernorm(xs[t], lw("ln1w", C), lw("ln1b", C)), lw("qkvw", 3*C*C), lw("qkvb", 3*C), 3*C)
			}
			att := make([][]float64, d.T)
			for t := range xs {
				y := make([]float64, C)
				for h := 0; h < d.NH; h++ {
					q := qkv[t][h*hs : (h+1)*hs]
					w := make([]float64, t+1)
					z := 0.0
					for u := 0; u <= t; u++ {
						k := qkv[u][C+h*hs : C+(h+1)*hs]
						s := 0.0
						for i := range q {
							s += q[i] * k[i]
						}
						w[u] = math.Exp(s / math.Sqrt(float64(hs)))
						z += w[u]
					}
					for u := 0; u <= t; u++ {
						for i := 0; i < hs; i++ {
							y[h*hs+i] += w[u] / z * qkv[u][2*C+h*hs+i]
						}
					}
				}
				att[t] = y
			}
			for t := range xs {
				a := linear(att[t], lw("attprojw", C*C), lw("attprojb", C), C)
				for c := range a {
					xs[t][c] += a[c]
				}
				hid := linear(layernorm(xs[t], lw("ln2w", C), lw("ln2b", C)), lw("fcw", 4*C*C), lw("fcb", 4*C), 4*C)
				for i, v := range hid {
					hid[i] = 0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v)))
				}
				m := linear(hid, lw("fcprojw", 4*C*C), lw("fcprojb", C), C)
				for c := range m {
					xs[t][c] += m[c]
				}
			}
		}
		for t := range xs {
			lg := linear(layernorm(xs[t], P["lnfw"], P["lnfb"]), P["wte"], nil, d.V)
			logits = append(logits, lg)
			mx := math.Inf(-1)
			for _, v := range lg {
				mx = math.Max(mx, v)
			}
			z := 0.0
			for _, v := range lg {
				z += math.Exp(v - mx)
			}
			loss += (mx + math.Log(z) - lg[targets[b*d.T+t]]) / float64(d.B*d.T)
		}
	}
	return loss, logits
}

func TestForwardMatchesNaive(t *testing.T) {
	for _, d := range []Dims{tinyDims, {V: 7, MaxT: 5, T: 3, L: 0, NH: 1, C: 4, B: 2}} {
		params := wideParams(d, 8)
		tokens, targets := Inputs(d, 8)
		m := NewModel(d, params)
		loss := m.Forward(tokens, targets)
		want, wantLogits := naiveLoss(d, params, tokens, targets)
		if math.Abs(loss-want) > 1e-12*math.Abs(want) {
			t.Errorf("%+v: loss %.17g, naive %.17g", d, loss, want)
		}
		for n, row := range wantLogits {
			for v, x := range row {
				if got := m.Logits()[n*d.V+v]; math.Abs(got-x) > 1e-12*(1+math.Abs(x)) {
					t.Fatalf("%+v: logits[%d,%d] = %v, naive %v", d, n, v, got, x)
				}
			}
		}
		mean := 0.0
		for _, l := range m.Losses() {
			mean += l / float64(len(m.Losses()))
		}
		if math.Abs(mean-loss) > 1e-14 {
			t.Errorf("mean of Losses %v != loss %v", mean, loss)
		}
	}
}

func TestInitLossNearLogV(t *testing.T) {
	d := tinyDims
	m := NewModel(d, InitParams(d, 1))
	loss := m.Forward(Inputs(d, 1))
	if math.Abs(loss-math.Log(float64(d.V))) > 0.02 {
		t.Errorf("loss at init %v, want about ln(V) = %v", loss, math.Log(float64(d.V)))
	}
}

// TestGolden pins the reproducible streams and the model: if InitParams,
// Inputs or the forward pass change, GPU-side expectations change too.
func TestGolden(t *testing.T) {
	d := tinyDims
	p := InitParams(d, 42)
	tokens, targets := Inputs(d, 42)
	wantP := []float32{goldenP0, goldenP1, goldenP2}
	for i, w := range wantP {
		if p[i] != w {
			t.Errorf("InitParams(seed 42)[%d] = %v, want %v", i, p[i], w)
		}
	}
	if got := p[Layout(d)[IdxFcprojw].Offset]; got != goldenFcproj0 {
		t.Errorf("fcprojw[0] = %v, want %v", got, goldenFcproj0)
	}
	for i, w := range goldenTokens {
		if tokens[i] != w {
			t.Fatalf("tokens = %v, want prefix %v", tokens, goldenTokens)
		}
	}
	for i, w := range goldenTargets {
		if targets[i] != w {
			t.Fatalf("targets = %v, want prefix %v", targets, goldenTargets)
		}
	}
	m := NewModel(d, p)
	if loss := m.Forward(tokens, targets); math.Abs(loss-goldenLoss) > 1e-13 {
		t.Errorf("loss %.17g, want %.17g", loss, goldenLoss)
	}
}

func TestForwardBackwardRepeatable(t *testing.T) {
	d := tinyDims
	m := NewModel(d, wideParams(d, 1))
	tokens, targets := Inputs(d, 1)
	l1 := m.Forward(tokens, targets)
	g1 := append([]float64(nil), m.Backward()...)
	l2 := m.Forward(tokens, targets)
	g2 := m.Backward()
	if l1 != l2 {
		t.Errorf("loss %v then %v", l1, l2)
	}
	for i := range g1 {
		if g1[i] != g2[i] {
			t.Fatalf("grad[%d] %v then %v: a backward pass accumulates stale state", i, g1[i], g2[i])
		}
	}
	// Without targets: the same logits, NaN loss, and Backward refuses.
	logits := append([]float64(nil), m.Logits()...)
	if l := m.Forward(tokens, nil); !math.IsNaN(l) {
		t.Errorf("loss without targets %v, want NaN", l)
	}
	for i := range logits {
		if m.Logits()[i] != logits[i] {
			t.Fatal("logits differ without targets")
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Backward after a Forward without targets did not panic")
			}
		}()
		m.Backward()
	}()
}

// TestParallelDeterministic: results are bit-identical whatever GOMAXPROCS,
// on a model large enough for the matmuls to run in parallel.
func TestParallelDeterministic(t *testing.T) {
	d := Dims{V: 300, MaxT: 16, T: 16, L: 1, NH: 2, C: 32, B: 4}
	params := InitParams(d, 9)
	tokens, targets := Inputs(d, 9)
	run := func(procs int) (float64, []float64, []float64) {
		old := runtime.GOMAXPROCS(procs)
		defer runtime.GOMAXPROCS(old)
		m := NewModel(d, params)
		loss := m.Forward(tokens, targets)
		return loss, append([]float64(nil), m.Logits()...), append([]float64(nil), m.Backward()...)
	}
	l1, lg1, g1 := run(1)
	l4, lg4, g4 := run(4)
	if l1 != l4 {
		t.Errorf("loss %v (1 proc) vs %v (4)", l1, l4)
	}
	for i := range lg1 {
		if lg1[i] != lg4[i] {
			t.Fatalf("logits[%d] differ", i)
		}
	}
	for i := range g1 {
		if g1[i] != g4[i] {
			t.Fatalf("grad[%d] differs", i)
		}
	}
}
