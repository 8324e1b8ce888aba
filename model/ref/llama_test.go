package ref

import (
	"math"
	"math/cmplx"
	"math/rand/v2"
	"runtime"
	"testing"
)

// llamaTiny is the main configuration: hs = 8, two query heads per KV head.
var llamaTiny = LlamaDims{V: 37, MaxT: 12, T: 9, L: 2, NH: 4, NKV: 2, C: 32, Hidden: 48, B: 2, Eps: 1e-5, Theta: 10000}

// llamaMini is small enough to check every parameter: hs = 2, NKV = 1.
var llamaMini = LlamaDims{V: 11, MaxT: 6, T: 5, L: 1, NH: 2, NKV: 1, C: 4, Hidden: 6, B: 2, Eps: 1e-5, Theta: 10000}

func llamaLayerCases() []layerCase {
	return []layerCase{
		{"embedding", func(rng *rand.Rand) layerProblem {
			N, C, V := 6, 5, 4
			tokens := []int32{0, 3, 3, 1, 0, 3} // repeats exercise the scatter-add
			wte := randVec(rng, V*C, 1, 0)
			R := randVec(rng, N*C, 1, 0)
			out := make([]float64, N*C)
			return layerProblem{
				names:  []string{"wte"},
				inputs: [][]float64{wte},
				loss: func() float64 {
					EmbeddingForward(out, tokens, wte, N, C)
					return dot(out, R)
				},
				grads: func() [][]float64 {
					prior := randVec(rng, V*C, 1, 0)
					dwte := append([]float64(nil), prior...)
					EmbeddingBackward(dwte, R, tokens, N, C) // +=
					for i := range dwte {
						dwte[i] -= prior[i]
					}
					return [][]float64{dwte}
				},
			}
		}},
		{"rmsnorm", func(rng *rand.Rand) layerProblem {
			N, C, eps := 5, 7, 1e-5
			inp := randVec(rng, N*C, 1.5, 0.7)
			w := randVec(rng, C, 0.5, 1)
			R := randVec(rng, N*C, 1, 0)
			out, rstd := make([]float64, N*C), make([]float64, N)
			return layerProblem{
				names:  []string{"inp", "w"},
				inputs: [][]float64{inp, w},
				loss: func() float64 {
					RMSNormForward(out, rstd, inp, w, N, C, eps)
					return dot(out, R)
				},
				grads: func() [][]float64 {
					RMSNormForward(out, rstd, inp, w, N, C, eps)
					prior := randVec(rng, N*C, 1, 0)
					dinp := append([]float64(nil), prior...)
					dw := nanVec(C)
					RMSNormBackward(dinp, dw, R, inp, w, rstd, N, C) // dinp +=, dw =
					for i := range dinp {
						dinp[i] -= prior[i]
					}
					return [][]float64{dinp, dw}
				},
			}
		}},
		{"rope", func(rng *rand.Rand) layerProblem {
			B, T, NH, NKV, hs, pos0, theta := 2, 3, 4, 2, 6, 5, 100.0
			W := (NH + 2*NKV) * hs
			qkv := randVec(rng, B*T*W, 1, 0)
			R := randVec(rng, B*T*W, 1, 0)
			out := make([]float64, B*T*W)
			return layerProblem{
				names:  []string{"qkv"},
				inputs: [][]float64{qkv},
				loss: func() float64 {
					RopeForward(out, qkv, B, T, NH, NKV, hs, pos0, theta)
					return dot(out, R)
				},
				grads: func() [][]float64 {
					d := nanVec(B * T * W)
					RopeBackward(d, R, B, T, NH, NKV, hs, pos0, theta) // =
					return [][]float64{d}
				},
			}
		}},
		{"swiglu", func(rng *rand.Rand) layerProblem {
			n := 40
			h1 := make([]float64, n)
			for i := range h1 {
				h1[i] = -6 + 12*float64(i)/float64(n-1) + 0.1*rng.NormFloat64()
			}
			h3 := randVec(rng, n, 1, 0)
			R := randVec(rng, n, 1, 0)
			out := make([]float64, n)
			return layerProblem{
				names:  []string{"h1", "h3"},
				inputs: [][]float64{h1, h3},
				loss: func() float64 {
					SwiGLUForward(out, h1, h3, n)
					return dot(out, R)
				},
				grads: func() [][]float64 {
					dh1, dh3 := nanVec(n), nanVec(n)
					SwiGLUBackward(dh1, dh3, R, h1, h3, n) // both =
					return [][]float64{dh1, dh3}
				},
			}
		}},
		gqaCase("gqa NH=4 NKV=2", 4, 2),
		gqaCase("gqa NH=3 NKV=1", 3, 1),
		gqaCase("gqa NH=NKV=2", 2, 2),
	}
}

func gqaCase(name string, NH, NKV int) layerCase {
	return layerCase{name, func(rng *rand.Rand) layerProblem {
		B, T, hs := 2, 5, 4
		W := (NH + 2*NKV) * hs
		qkv := randVec(rng, B*T*W, 1, 0)
		R := randVec(rng, B*T*NH*hs, 1, 0)
		out := make([]float64, B*T*NH*hs)
		return layerProblem{
			names:  []string{"qkv"},
			inputs: [][]float64{qkv},
			loss: func() float64 {
				GQAttentionForward(out, nil, qkv, B, T, NH, NKV, hs)
				return dot(out, R)
			},
			grads: func() [][]float64 {
				d := nanVec(B * T * W)
				GQAttentionBackward(d, R, qkv, B, T, NH, NKV, hs) // =
				return [][]float64{d}
			},
		}
	}}
}

func TestLlamaLayerGradients(t *testing.T) {
	for _, tc := range llamaLayerCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.build(rand.New(rand.NewPCG(21, 22)))
			an := p.grads()
			var all []gradResult
			for i, x := range p.inputs {
				all = append(all, checkElems(p.names[i], p.loss, x, an[i], allIndices(len(x)), defaultFD)...)
			}
			for _, r := range failures(all) {
				t.Errorf("%v", r)
			}
			t.Logf("%d elements, max rel err %s", len(all), worst(all))
		})
	}
}

// TestRMSNormDefinition: RMSNorm of x is x/rms(x)*w, computed here from the
// definition, and without eps it is invariant to scaling x.
func TestRMSNormDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	N, C, eps := 3, 6, 1e-5
	inp, w := randVec(rng, N*C, 1, 0.5), randVec(rng, C, 0.3, 1)
	out, rstd := make([]float64, N*C), make([]float64, N)
	RMSNormForward(out, rstd, inp, w, N, C, eps)
	for n := 0; n < N; n++ {
		x := inp[n*C : (n+1)*C]
		rms := math.Sqrt(dot(x, x)/float64(C) + eps)
		if math.Abs(rstd[n]*rms-1) > 1e-14 {
			t.Errorf("row %d: rstd %v, want 1/%v", n, rstd[n], rms)
		}
		for i := range x {
			if want := x[i] / rms * w[i]; math.Abs(out[n*C+i]-want) > 1e-14 {
				t.Errorf("out[%d,%d] = %v, want %v", n, i, out[n*C+i], want)
			}
		}
	}
	// Scale invariance, exact but for rounding at eps = 0.
	big := make([]float64, N*C)
	for i := range inp {
		big[i] = 3 * inp[i]
	}
	out1, out3 := make([]float64, N*C), make([]float64, N*C)
	RMSNormForward(out1, nil, inp, w, N, C, 0)
	RMSNormForward(out3, nil, big, w, N, C, 0)
	if d := maxAbsDiff(out1, out3); d > 1e-14 {
		t.Errorf("RMSNorm(3x) differs from RMSNorm(x) by %g", d)
	}
}

// TestRopeProperties checks RoPE from its definition as a rotation of the
// pairs (2i, 2i+1) by pos*theta^(-2i/hs).
func TestRopeProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	hs, theta := 8, 10000.0
	x, y := randVec(rng, hs, 1, 0), randVec(rng, hs, 1, 0)
	rot := func(v []float64, pos int) []float64 {
		out := make([]float64, hs)
		RopeRotate(out, v, hs, pos, theta)
		return out
	}
	maxDiff := func(a, b []float64) float64 {
		m := 0.0
		for i := range a {
			m = math.Max(m, math.Abs(a[i]-b[i]))
		}
		return m
	}
	t.Run("position 0 is the identity", func(t *testing.T) {
		if r := rot(x, 0); maxDiff(r, x) != 0 {
			t.Errorf("RoPE(x, 0) = %v, want %v", r, x)
		}
	})
	t.Run("interleaved pairs", func(t *testing.T) {
		// A unit vector in slot 2i goes to (cos a, sin a) in slots 2i, 2i+1.
		for i := 0; i < hs/2; i++ {
			e := make([]float64, hs)
			e[2*i] = 1
			a := 3 * math.Pow(theta, -float64(2*i)/float64(hs))
			want := make([]float64, hs)
			want[2*i], want[2*i+1] = math.Cos(a), math.Sin(a)
			if d := maxDiff(rot(e, 3), want); d > 1e-15 {
				t.Errorf("pair %d: RoPE(e_%d, 3) = %v, want %v", i, 2*i, rot(e, 3), want)
			}
		}
		// Hugging Face's rotate_half pairs x[i] with x[i+hs/2]: a different map.
		hf := make([]float64, hs)
		for i := 0; i < hs/2; i++ {
			s, c := math.Sincos(3 * math.Pow(theta, -float64(2*i)/float64(hs)))
			hf[i] = x[i]*c - x[i+hs/2]*s
			hf[i+hs/2] = x[i]*s + x[i+hs/2]*c
		}
		if maxDiff(hf, rot(x, 3)) < 1e-3 {
			t.Error("the rotate_half layout agrees with the interleaved one: the convention test cannot fail")
		}
	})
	t.Run("composition and norm", func(t *testing.T) {
		for _, pq := range [][2]int{{1, 2}, {5, 7}, {100, 23}, {-4, 4}} {
			p, q := pq[0], pq[1]
			if d := maxDiff(rot(rot(x, p), q), rot(x, p+q)); d > 1e-12 {
				t.Errorf("RoPE(RoPE(x,%d),%d) differs from RoPE(x,%d) by %g", p, q, p+q, d)
			}
			r := rot(x, p)
			for i := 0; i < hs/2; i++ {
				n0 := x[2*i]*x[2*i] + x[2*i+1]*x[2*i+1]
				n1 := r[2*i]*r[2*i] + r[2*i+1]*r[2*i+1]
				if math.Abs(n1-n0) > 1e-13*(1+n0) {
					t.Errorf("pos %d pair %d: norm² %v, was %v", p, i, n1, n0)
				}
			}
		}
	})
	t.Run("scores depend on the position difference", func(t *testing.T) {
		for _, diff := range []int{0, 1, 3, 8} {
			ref := dot(rot(x, diff), rot(y, 0))
			for _, n := range []int{1, 4, 50, 1000} {
				if got := dot(rot(x, n+diff), rot(y, n)); math.Abs(got-ref) > 1e-12 {
					t.Errorf("q at %d, k at %d: %v, want %v (q at %d, k at 0)", n+diff, n, got, ref, diff)
				}
			}
		}
		// And they do depend on it: otherwise the check above proves nothing.
		if math.Abs(dot(rot(x, 3), y)-dot(x, y)) < 1e-6 {
			t.Error("rotation leaves q·k unchanged")
		}
	})
	t.Run("packed rows", func(t *testing.T) {
		// RopeForward rotates q and k heads at pos0+t and copies v.
		B, T, NH, NKV, pos0 := 2, 3, 2, 1, 4
		W := (NH + 2*NKV) * hs
		qkv := randVec(rng, B*T*W, 1, 0)
		out := make([]float64, B*T*W)
		RopeForward(out, qkv, B, T, NH, NKV, hs, pos0, theta)
		for r := 0; r < B*T; r++ {
			for h := 0; h < NH+2*NKV; h++ {
				src := qkv[r*W+h*hs:][:hs]
				want := src
				if h < NH+NKV {
					want = rot(src, pos0+r%T)
				}
				if d := maxDiff(out[r*W+h*hs:][:hs], want); d != 0 {
					t.Errorf("row %d head slot %d differs by %g", r, h, d)
				}
			}
		}
	})
}

// TestGQAEqualsMHA: with NKV = NH grouped-query attention is AttentionForward
// (whose qkv rows are [q C | k C | v C]); with NKV < NH it is multi-head
// attention on k and v heads repeated NH/NKV times (Hugging Face's
// repeat_kv), forward and backward.
func TestGQAEqualsMHA(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	B, T, NH, hs := 2, 6, 4, 4
	C := NH * hs
	for _, NKV := range []int{4, 2, 1} {
		W, group := (NH+2*NKV)*hs, NH/NKV
		qkv := randVec(rng, B*T*W, 1, 0)
		// The repeated, MHA-shaped copy.
		mha := make([]float64, B*T*3*C)
		for r := 0; r < B*T; r++ {
			copy(mha[r*3*C:], qkv[r*W:r*W+C])
			for h := 0; h < NH; h++ {
				kv := h / group
				copy(mha[r*3*C+C+h*hs:][:hs], qkv[r*W+C+kv*hs:][:hs])
				copy(mha[r*3*C+2*C+h*hs:][:hs], qkv[r*W+C+NKV*hs+kv*hs:][:hs])
			}
		}
		out, lse := make([]float64, B*T*C), make([]float64, B*NH*T)
		wantOut, wantLse := make([]float64, B*T*C), make([]float64, B*NH*T)
		GQAttentionForward(out, lse, qkv, B, T, NH, NKV, hs)
		AttentionForward(wantOut, wantLse, mha, B, T, C, NH)
		for i := range out {
			if math.Abs(out[i]-wantOut[i]) > 1e-14 {
				t.Fatalf("NKV=%d: out[%d] = %v, MHA %v", NKV, i, out[i], wantOut[i])
			}
		}
		for i := range lse {
			if math.Abs(lse[i]-wantLse[i]) > 1e-14 {
				t.Fatalf("NKV=%d: lse[%d] = %v, MHA %v", NKV, i, lse[i], wantLse[i])
			}
		}
		dout := randVec(rng, B*T*C, 1, 0)
		dqkv, dmha := make([]float64, B*T*W), make([]float64, B*T*3*C)
		GQAttentionBackward(dqkv, dout, qkv, B, T, NH, NKV, hs)
		AttentionBackward(dmha, dout, mha, wantOut, wantLse, B, T, C, NH)
		// The gradient of a shared k or v head is the sum over its copies.
		want := make([]float64, B*T*W)
		for r := 0; r < B*T; r++ {
			copy(want[r*W:], dmha[r*3*C:r*3*C+C])
			for h := 0; h < NH; h++ {
				kv := h / group
				for i := 0; i < hs; i++ {
					want[r*W+C+kv*hs+i] += dmha[r*3*C+C+h*hs+i]
					want[r*W+C+NKV*hs+kv*hs+i] += dmha[r*3*C+2*C+h*hs+i]
				}
			}
		}
		for i := range want {
			if math.Abs(dqkv[i]-want[i]) > 1e-13 {
				t.Fatalf("NKV=%d: dqkv[%d] = %v, MHA %v", NKV, i, dqkv[i], want[i])
			}
		}
	}
}

// wideLlamaParams are random parameters far from init, so that every
// gradient is sizeable: embed and head N(0,1), matrices N(0, 1/fan_in), norm
// weights 1 + N(0, 0.3²).
func wideLlamaParams(d LlamaDims, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 98))
	p := make([]float32, LlamaNumParams(d))
	for _, t := range LlamaLayout(d) {
		mean, std := 0.0, 1/math.Sqrt(float64(t.Shape[len(t.Shape)-1]))
		switch t.Name {
		case NameLlamaEmbed, NameLlamaHead:
			std = 1
		case NameLlamaAttnNorm, NameLlamaMlpNorm, NameLlamaNorm:
			mean, std = 1, 0.3
		}
		for i := t.Offset; i < t.Offset+t.Size; i++ {
			p[i] = float32(mean + std*rng.NormFloat64())
		}
	}
	return p
}

// checkLlama compares the model's gradient with finite differences of its
// loss on the elements pick chooses in each tensor.
func checkLlama(d LlamaDims, params []float32, seed uint64, o fdOpts, pick func(rng *rand.Rand, ts Tensor) []int) []gradResult {
	m := NewLlamaModel(d, params)
	tokens, targets := LlamaInputs(d, seed)
	m.Forward(tokens, targets)
	grads := append([]float64(nil), m.Backward()...)
	loss := func() float64 { return m.Forward(tokens, targets) }
	rng := rand.New(rand.NewPCG(seed, 7))
	var all []gradResult
	for _, ts := range LlamaLayout(d) {
		idx := pick(rng, ts)
		for i := range idx {
			idx[i] += ts.Offset
		}
		rs := checkElems(ts.Name, loss, m.Params(), grads, idx, o)
		for i := range rs {
			rs[i].Index -= ts.Offset
		}
		all = append(all, rs...)
	}
	return all
}

// miniFD is a smaller step for llamaMini at wide parameters: with C = 4 the
// loss curves on a shorter scale, and at defaultFD's h = 2^-6 the truncation
// error of g_fd alone reaches a relative ~6e-7 (w3). At h = 2^-9 it is 8^6
// times smaller and the rounding error is still ~1e-13.
var miniFD = fdOpts{h: 1.0 / 512, floor: relFloor}

func TestLlamaGradient(t *testing.T) {
	// k elements of each tensor, and of each layer of a per-layer one.
	sample := func(d LlamaDims, k int) func(rng *rand.Rand, ts Tensor) []int {
		return func(rng *rand.Rand, ts Tensor) []int {
			if len(ts.Shape) > 1 && ts.Shape[0] == d.L && ts.Name != NameLlamaEmbed && ts.Name != NameLlamaHead {
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
	every := func(rng *rand.Rand, ts Tensor) []int { return allIndices(ts.Size) }
	cases := []struct {
		name   string
		d      LlamaDims
		params []float32
		fd     fdOpts
		pick   func(rng *rand.Rand, ts Tensor) []int
	}{
		{"mini every parameter", llamaMini, wideLlamaParams(llamaMini, 1), miniFD, every},
		{"tiny wide", llamaTiny, wideLlamaParams(llamaTiny, 2), defaultFD, sample(llamaTiny, 6)},
		{"tiny at init", llamaTiny, LlamaInitParams(llamaTiny, 3), initFD, sample(llamaTiny, 6)},
		{"no blocks", LlamaDims{V: 7, MaxT: 4, T: 3, L: 0, NH: 1, NKV: 1, C: 4, Hidden: 4, B: 2, Eps: 1e-5, Theta: 10000},
			wideLlamaParams(LlamaDims{V: 7, MaxT: 4, T: 3, L: 0, NH: 1, NKV: 1, C: 4, Hidden: 4, B: 2, Eps: 1e-5, Theta: 10000}, 4), defaultFD, every},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			all := checkLlama(tc.d, tc.params, 3, tc.fd, tc.pick)
			for _, r := range failures(all) {
				t.Errorf("%v", r)
			}
			t.Logf("%d elements checked; max rel err %v", len(all), worst(all))
		})
	}
}

// TestLlamaGradCheckCatchesBug: a gradient wrong by one part in 1e5 in one
// element must fail the model check.
func TestLlamaGradCheckCatchesBug(t *testing.T) {
	d := llamaMini
	m := NewLlamaModel(d, wideLlamaParams(d, 1))
	tokens, targets := LlamaInputs(d, 1)
	m.Forward(tokens, targets)
	grads := append([]float64(nil), m.Backward()...)
	off := LlamaLayout(d)[IdxLlamaWqkv].Offset
	grads[off+5] *= 1 + 1e-5
	rs := checkElems(NameLlamaWqkv, func() float64 { return m.Forward(tokens, targets) }, m.Params(), grads, []int{off + 4, off + 5, off + 6}, defaultFD)
	if bad := failures(rs); len(bad) != 1 || bad[0].Index != off+5 {
		t.Fatalf("want exactly wqkv[5] to fail, got %v (all %v)", bad, rs)
	}
}

// maxAbsDiff is the largest |a[i]-b[i]|.
func maxAbsDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

// TestDecodeMatchesPrefill: the logits of DecodeStep at pos, after feeding
// tokens 0..pos one at a time, equal those of a full Forward at pos; and a
// prefill of a prefix followed by decode steps gives the same.
func TestDecodeMatchesPrefill(t *testing.T) {
	d := llamaTiny
	params := wideLlamaParams(d, 5)
	tokens, _ := LlamaInputs(d, 5)
	full := NewLlamaModel(d, params)
	full.Forward(tokens, nil)
	want := full.Logits()
	V, T := d.V, d.T
	at := func(pos int) []float64 { // (B,V) rows of want at pos
		out := make([]float64, 0, d.B*V)
		for b := 0; b < d.B; b++ {
			out = append(out, want[(b*T+pos)*V:(b*T+pos+1)*V]...)
		}
		return out
	}
	column := func(pos int) []int32 {
		c := make([]int32, d.B)
		for b := range c {
			c[b] = tokens[b*T+pos]
		}
		return c
	}

	t.Run("token by token", func(t *testing.T) {
		m := NewLlamaModel(d, params)
		worst := 0.0
		defer func() { t.Logf("max |decode - prefill| %g", worst) }()
		for pos := 0; pos < T; pos++ {
			got := m.DecodeStep(column(pos), pos)
			diff := maxAbsDiff(got, at(pos))
			if diff > 1e-12 {
				t.Errorf("pos %d: decode logits differ from prefill by %g", pos, diff)
			}
			worst = math.Max(worst, diff)
		}
	})
	t.Run("prefill then decode", func(t *testing.T) {
		P := 4
		dp := d
		dp.T = P
		m := NewLlamaModel(dp, params)
		prompt := make([]int32, 0, d.B*P)
		for b := 0; b < d.B; b++ {
			prompt = append(prompt, tokens[b*T:b*T+P]...)
		}
		m.Forward(prompt, nil)
		for pos := P; pos < T; pos++ {
			got := m.DecodeStep(column(pos), pos)
			if diff := maxAbsDiff(got, at(pos)); diff > 1e-12 {
				t.Errorf("pos %d: decode after a %d-token prefill differs by %g", pos, P, diff)
			}
		}
	})
	t.Run("the check can fail", func(t *testing.T) {
		// The same tokens one position later: RoPE and the cache see it.
		m := NewLlamaModel(d, params)
		m.DecodeStep(column(0), 0)
		m.DecodeStep(column(0), 1)
		got := m.DecodeStep(column(1), 2)
		if diff := maxAbsDiff(got, at(1)); diff < 1e-6 {
			t.Errorf("decode at a shifted position matches the prefill (diff %g)", diff)
		}
	})
}

func TestLlamaGenerate(t *testing.T) {
	d := llamaTiny
	d.T = 3
	params := wideLlamaParams(d, 6)
	prompt, _ := LlamaInputs(d, 6)
	n := d.MaxT - d.T + 1
	got := NewLlamaModel(d, params).Generate(prompt, n)
	// The same tokens by recomputing the whole sequence at every step.
	for b := 0; b < d.B; b++ {
		seq := append([]int32(nil), prompt[b*d.T:(b+1)*d.T]...)
		for j := 0; j < n; j++ {
			dj := d
			dj.B, dj.T = 1, len(seq)
			m := NewLlamaModel(dj, params)
			m.Forward(seq, nil)
			next := argmax(m.Logits()[(len(seq)-1)*d.V:])
			if got[b*n+j] != next {
				t.Fatalf("sequence %d token %d: Generate %d, recomputed %d", b, j, got[b*n+j], next)
			}
			seq = append(seq, next)
		}
	}
}

func TestLlamaDimsValidate(t *testing.T) {
	bad := []func(d *LlamaDims){
		func(d *LlamaDims) { d.NKV = 3 },            // NH % NKV
		func(d *LlamaDims) { d.NKV = 0 },            // no KV heads
		func(d *LlamaDims) { d.C = 12 },             // hs = 3, odd
		func(d *LlamaDims) { d.C = 30 },             // C % NH
		func(d *LlamaDims) { d.T = d.MaxT + 1 },     // T > MaxT
		func(d *LlamaDims) { d.Eps = 0 },            // eps
		func(d *LlamaDims) { d.Theta = math.NaN() }, // theta
		func(d *LlamaDims) { d.Hidden = 0 },
	}
	if err := llamaTiny.Validate(); err != nil {
		t.Fatalf("llamaTiny: %v", err)
	}
	for i, f := range bad {
		d := llamaTiny
		f(&d)
		if d.Validate() == nil {
			t.Errorf("case %d: %+v accepted", i, d)
		}
	}
}

func TestLlamaLayout(t *testing.T) {
	d := llamaTiny
	hs := d.C / d.NH
	want := 2*d.V*d.C + d.L*(2*d.C+(d.NH+2*d.NKV)*hs*d.C+d.C*d.C+3*d.Hidden*d.C) + d.C
	if n := LlamaNumParams(d); n != want {
		t.Errorf("LlamaNumParams %d, want %d", n, want)
	}
	off := 0
	for i, ts := range LlamaLayout(d) {
		if ts.Offset != off {
			t.Errorf("tensor %d %s at %d, want %d", i, ts.Name, ts.Offset, off)
		}
		off += ts.Size
	}
	if len(LlamaLayout(d)) != NumLlamaTensors {
		t.Errorf("%d tensors, want %d", len(LlamaLayout(d)), NumLlamaTensors)
	}
}

// TestLlamaSeeded: the init and the inputs are functions of the seed, the
// loss at init is about ln V, and Forward/Backward are repeatable and do not
// depend on GOMAXPROCS.
func TestLlamaSeeded(t *testing.T) {
	d := llamaTiny
	a, b, c := LlamaInitParams(d, 1), LlamaInitParams(d, 1), LlamaInitParams(d, 2)
	same, differ := true, 0
	for i := range a {
		same = same && a[i] == b[i]
		if a[i] != c[i] {
			differ++
		}
	}
	if !same {
		t.Error("LlamaInitParams(seed 1) differs between calls")
	}
	if differ < LlamaNumParams(d)/2 {
		t.Errorf("seeds 1 and 2 differ in only %d of %d parameters", differ, LlamaNumParams(d))
	}
	for _, ts := range LlamaLayout(d) {
		if ts.Name == NameLlamaNorm || ts.Name == NameLlamaAttnNorm || ts.Name == NameLlamaMlpNorm {
			for _, v := range a[ts.Offset : ts.Offset+ts.Size] {
				if v != 1 {
					t.Fatalf("%s has %v, want 1", ts.Name, v)
				}
			}
		}
	}
	tokens, targets := LlamaInputs(d, 1)
	m := NewLlamaModel(d, a)
	// The mean of N = 18 per-token losses: over seeds it spreads about
	// ln V with a standard deviation near 0.03, so 0.15 is 5σ.
	if loss := m.Forward(tokens, targets); math.Abs(loss-math.Log(float64(d.V))) > 0.15 {
		t.Errorf("loss at init %v, want about ln V = %v", loss, math.Log(float64(d.V)))
	}

	run := func(procs int) (float64, []float64) {
		old := runtime.GOMAXPROCS(procs)
		defer runtime.GOMAXPROCS(old)
		m := NewLlamaModel(d, wideLlamaParams(d, 1))
		loss := m.Forward(tokens, targets)
		return loss, append([]float64(nil), m.Backward()...)
	}
	l1, g1 := run(1)
	l2, g2 := run(4)
	m2 := NewLlamaModel(d, wideLlamaParams(d, 1))
	m2.Forward(tokens, targets)
	m2.Backward()
	l3 := m2.Forward(tokens, targets)
	g3 := m2.Backward()
	if l1 != l2 || l1 != l3 {
		t.Errorf("loss %v, %v (4 procs), %v (second pass)", l1, l2, l3)
	}
	for i := range g1 {
		if g1[i] != g2[i] || g1[i] != g3[i] {
			t.Fatalf("grad[%d]: %v, %v (4 procs), %v (second pass)", i, g1[i], g2[i], g3[i])
		}
	}
}

// naiveLlamaLogits is an independent, literal forward pass written from the
// architecture (per position, nested slices), with RoPE as Meta's code writes
// it: each pair (x[2i], x[2i+1]) a complex number multiplied by
// exp(i*pos*theta^(-2i/hs)). It returns the logits of row b*T+t.
func naiveLlamaLogits(d LlamaDims, params []float32, tokens []int32) [][]float64 {
	f := make([]float64, len(params))
	for i, v := range params {
		f[i] = float64(v)
	}
	P := LlamaViews(d, f)
	C, hs, H, T := d.C, d.C/d.NH, d.Hidden, d.T
	linear := func(w []float64, x []float64, out int) []float64 { // w (out, len(x))
		y := make([]float64, out)
		for o := range y {
			for i, v := range x {
				y[o] += w[o*len(x)+i] * v
			}
		}
		return y
	}
	rms := func(x, w []float64) []float64 {
		ss := 0.0
		for _, v := range x {
			ss += v * v
		}
		r := 1 / math.Sqrt(ss/float64(len(x))+d.Eps)
		y := make([]float64, len(x))
		for i := range x {
			y[i] = x[i] * r * w[i]
		}
		return y
	}
	rotate := func(x []float64, pos int) []float64 {
		y := make([]float64, len(x))
		for i := 0; i < hs/2; i++ {
			z := complex(x[2*i], x[2*i+1]) * cmplx.Exp(complex(0, float64(pos)*math.Pow(d.Theta, -float64(2*i)/float64(hs))))
			y[2*i], y[2*i+1] = real(z), imag(z)
		}
		return y
	}
	var logits [][]float64
	for b := 0; b < d.B; b++ {
		x := make([][]float64, T)
		for t := range x {
			x[t] = append([]float64(nil), P[IdxLlamaEmbed][int(tokens[b*T+t])*C:][:C]...)
		}
		for l := 0; l < d.L; l++ {
			wq := P[IdxLlamaWqkv][l*d.QKVWidth()*C:]
			wk, wv := wq[C*C:], wq[(C+d.NKV*hs)*C:]
			q, k, v := make([][][]float64, T), make([][][]float64, T), make([][][]float64, T)
			for t := 0; t < T; t++ {
				xn := rms(x[t], P[IdxLlamaAttnNorm][l*C:])
				qt, kt, vt := linear(wq, xn, C), linear(wk, xn, d.NKV*hs), linear(wv, xn, d.NKV*hs)
				for h := 0; h < d.NH; h++ {
					q[t] = append(q[t], rotate(qt[h*hs:(h+1)*hs], t))
				}
				for h := 0; h < d.NKV; h++ {
					k[t] = append(k[t], rotate(kt[h*hs:(h+1)*hs], t))
					v[t] = append(v[t], vt[h*hs:(h+1)*hs])
				}
			}
			for t := 0; t < T; t++ {
				att := make([]float64, 0, C)
				for h := 0; h < d.NH; h++ {
					kvh := h * d.NKV / d.NH
					w := make([]float64, t+1)
					z := 0.0
					for u := 0; u <= t; u++ {
						w[u] = math.Exp(dot(q[t][h], k[u][kvh]) / math.Sqrt(float64(hs)))
						z += w[u]
					}
					o := make([]float64, hs)
					for u := 0; u <= t; u++ {
						for i := range o {
							o[i] += w[u] / z * v[u][kvh][i]
						}
					}
					att = append(att, o...)
				}
				proj := linear(P[IdxLlamaWo][l*C*C:], att, C)
				for i := range x[t] {
					x[t][i] += proj[i]
				}
				xn := rms(x[t], P[IdxLlamaMlpNorm][l*C:])
				h13 := linear(P[IdxLlamaW13][l*2*H*C:], xn, 2*H)
				h1, h3 := h13[:H], h13[H:]
				for i := range h1 {
					h1[i] = h1[i] / (1 + math.Exp(-h1[i])) * h3[i]
				}
				mlp := linear(P[IdxLlamaW2][l*C*H:], h1, C)
				for i := range x[t] {
					x[t][i] += mlp[i]
				}
			}
		}
		for t := 0; t < T; t++ {
			logits = append(logits, linear(P[IdxLlamaHead], rms(x[t], P[IdxLlamaNorm]), d.V))
		}
	}
	return logits
}

func TestLlamaForwardMatchesNaive(t *testing.T) {
	for _, d := range []LlamaDims{llamaTiny, llamaMini} {
		params := wideLlamaParams(d, 8)
		tokens, targets := LlamaInputs(d, 8)
		m := NewLlamaModel(d, params)
		loss := m.Forward(tokens, targets)
		want := naiveLlamaLogits(d, params, tokens)
		wantLoss := 0.0
		for n, row := range want {
			if diff := maxAbsDiff(m.Logits()[n*d.V:(n+1)*d.V], row); diff > 1e-11 {
				t.Errorf("%+v: row %d logits differ from the naive forward by %g", d, n, diff)
			}
			wantLoss += (LogSumExp(row) - row[targets[n]]) / float64(len(want))
		}
		if math.Abs(loss-wantLoss) > 1e-12 {
			t.Errorf("%+v: loss %v, naive %v", d, loss, wantLoss)
		}
	}
}
