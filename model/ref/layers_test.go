package ref

import (
	"math"
	"math/rand/v2"
	"testing"
)

// layerProblem is one layer-function gradient check: inputs are perturbed in
// place, loss evaluates a scalar of the forward outputs (sum(out*R) for a
// fixed random R, or the scaled loss sum for cross-entropy), and grads runs
// the backward function with dout = R and returns the gradient of each input.
//
// grads also checks the =/+= semantics: outputs documented as accumulated are
// pre-filled with random values (subtracted afterwards) and outputs documented
// as overwritten are pre-filled with NaN, which would survive a +=.
type layerProblem struct {
	names  []string
	inputs [][]float64
	loss   func() float64
	grads  func() [][]float64
}

type layerCase struct {
	name  string
	build func(rng *rand.Rand) layerProblem
}

func layerCases() []layerCase {
	return []layerCase{
		{"encoder", func(rng *rand.Rand) layerProblem {
			B, T, C, V, MaxT := 3, 4, 5, 6, 7
			tokens := []int32{0, 1, 1, 5, 2, 2, 2, 0, 5, 4, 1, 3} // repeats exercise the scatter-add
			wte, wpe := randVec(rng, V*C, 1, 0), randVec(rng, MaxT*C, 1, 0)
			R := randVec(rng, B*T*C, 1, 0)
			out := make([]float64, B*T*C)
			return layerProblem{
				names:  []string{"wte", "wpe"},
				inputs: [][]float64{wte, wpe},
				loss: func() float64 {
					EncoderForward(out, tokens, wte, wpe, B, T, C)
					return dot(out, R)
				},
				grads: func() [][]float64 {
					p1, p2 := randVec(rng, V*C, 1, 0), randVec(rng, MaxT*C, 1, 0)
					dwte, dwpe := append([]float64(nil), p1...), append([]float64(nil), p2...)
					EncoderBackward(dwte, dwpe, R, tokens, B, T, C) // += both
					for i := range dwte {
						dwte[i] -= p1[i]
					}
					for i := range dwpe {
						dwpe[i] -= p2[i]
					}
					return [][]float64{dwte, dwpe}
				},
			}
		}},
		{"layernorm", func(rng *rand.Rand) layerProblem {
			N, C := 5, 7
			inp := randVec(rng, N*C, 1.5, 0.7)
			w, b := randVec(rng, C, 0.5, 1), randVec(rng, C, 0.5, 0)
			R := randVec(rng, N*C, 1, 0)
			out, mean, rstd := make([]float64, N*C), make([]float64, N), make([]float64, N)
			return layerProblem{
				names:  []string{"inp", "w", "b"},
				inputs: [][]float64{inp, w, b},
				loss: func() float64 {
					LayerNormForward(out, mean, rstd, inp, w, b, N, C)
					return dot(out, R)
				},
				grads: func() [][]float64 {
					LayerNormForward(out, mean, rstd, inp, w, b, N, C)
					prior := randVec(rng, N*C, 1, 0)
					dinp := append([]float64(nil), prior...)
					dw, db := nanVec(C), nanVec(C)
					LayerNormBackward(dinp, dw, db, R, inp, w, mean, rstd, N, C) // dinp +=, dw/db =
					for i := range dinp {
						dinp[i] -= prior[i]
					}
					return [][]float64{dinp, dw, db}
				},
			}
		}},
		{"matmul", func(rng *rand.Rand) layerProblem {
			N, C, OC := 4, 5, 6
			inp, w, bias := randVec(rng, N*C, 1, 0), randVec(rng, OC*C, 1, 0), randVec(rng, OC, 1, 0)
			R := randVec(rng, N*OC, 1, 0)
			out := make([]float64, N*OC)
			return layerProblem{
				names:  []string{"inp", "w", "bias"},
				inputs: [][]float64{inp, w, bias},
				loss: func() float64 {
					MatmulForward(out, inp, w, bias, N, C, OC)
					return dot(out, R)
				},
				grads: func() [][]float64 {
					dinp, dw, dbias := nanVec(N*C), nanVec(OC*C), nanVec(OC)
					MatmulBackward(dinp, dw, dbias, R, inp, w, N, C, OC) // all =
					return [][]float64{dinp, dw, dbias}
				},
			}
		}},
		{"matmul no bias", func(rng *rand.Rand) layerProblem {
			N, C, OC := 3, 4, 7
			inp, w := randVec(rng, N*C, 1, 0), randVec(rng, OC*C, 1, 0)
			R := randVec(rng, N*OC, 1, 0)
			out := make([]float64, N*OC)
			return layerProblem{
				names:  []string{"inp", "w"},
				inputs: [][]float64{inp, w},
				loss: func() float64 {
					MatmulForward(out, inp, w, nil, N, C, OC)
					return dot(out, R)
				},
				grads: func() [][]float64 {
					dinp, dw := nanVec(N*C), nanVec(OC*C)
					MatmulBackward(dinp, dw, nil, R, inp, w, N, C, OC)
					return [][]float64{dinp, dw}
				},
			}
		}},
		{"gelu", func(rng *rand.Rand) layerProblem {
			n := 40
			inp := make([]float64, n)
			for i := range inp {
				inp[i] = -6 + 12*float64(i)/float64(n-1) + 0.1*rng.NormFloat64()
			}
			R := randVec(rng, n, 1, 0)
			out := make([]float64, n)
			return layerProblem{
				names:  []string{"inp"},
				inputs: [][]float64{inp},
				loss: func() float64 {
					GeluForward(out, inp, n)
					return dot(out, R)
				},
				grads: func() [][]float64 {
					dinp := nanVec(n)
					GeluBackward(dinp, inp, R, n) // =
					return [][]float64{dinp}
				},
			}
		}},
		{"attention", func(rng *rand.Rand) layerProblem {
			B, T, C, NH := 2, 5, 12, 3
			qkv := randVec(rng, B*T*3*C, 1, 0)
			R := randVec(rng, B*T*C, 1, 0)
			out, lse := make([]float64, B*T*C), make([]float64, B*NH*T)
			return layerProblem{
				names:  []string{"qkv"},
				inputs: [][]float64{qkv},
				loss: func() float64 {
					AttentionForward(out, lse, qkv, B, T, C, NH)
					return dot(out, R)
				},
				grads: func() [][]float64 {
					AttentionForward(out, lse, qkv, B, T, C, NH)
					dqkv := nanVec(B * T * 3 * C)
					AttentionBackward(dqkv, R, qkv, out, lse, B, T, C, NH) // =
					return [][]float64{dqkv}
				},
			}
		}},
		{"crossentropy", func(rng *rand.Rand) layerProblem {
			N, V := 4, 7
			logits := randVec(rng, N*V, 2, 0.5)
			targets := []int32{0, 6, 3, 3}
			scale := 1 / float64(N)
			losses := make([]float64, N)
			return layerProblem{
				names:  []string{"logits"},
				inputs: [][]float64{logits},
				loss: func() float64 {
					CrossEntropyForward(losses, logits, targets, N, V)
					s := 0.0
					for _, l := range losses {
						s += l
					}
					return s * scale
				},
				grads: func() [][]float64 {
					d := nanVec(N * V)
					CrossEntropyBackward(d, logits, targets, N, V, scale) // =
					return [][]float64{d}
				},
			}
		}},
	}
}

func TestLayerGradients(t *testing.T) {
	for _, tc := range layerCases() {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, 12))
			p := tc.build(rng)
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

// TestGradCheckCatchesBugs proves the checks can fail: a wrong GELU
// derivative (that of the exact erf GELU, off by ~1e-3) and a gradient
// perturbed by one part in 1e5 are both reported.
func TestGradCheckCatchesBugs(t *testing.T) {
	t.Run("erf gelu derivative", func(t *testing.T) {
		inp := []float64{-2, -0.5, 0.3, 1, 2.5}
		out := make([]float64, len(inp))
		loss := func() float64 {
			GeluForward(out, inp, len(inp))
			s := 0.0
			for _, v := range out {
				s += v
			}
			return s
		}
		an := make([]float64, len(inp))
		for i, x := range inp {
			cdf := 0.5 * (1 + math.Erf(x/math.Sqrt2))
			an[i] = cdf + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi)
		}
		rs := checkElems("inp", loss, inp, an, allIndices(len(inp)), defaultFD)
		if len(failures(rs)) == 0 {
			t.Fatalf("wrong GELU derivative not caught; worst %v", worst(rs))
		}
	})
	t.Run("perturbed gradient", func(t *testing.T) {
		p := layerCases()[1].build(rand.New(rand.NewPCG(11, 12))) // layernorm
		an := p.grads()
		an[0][3] *= 1 + 1e-5
		rs := checkElems("inp", p.loss, p.inputs[0], an[0], []int{2, 3, 4}, defaultFD)
		bad := failures(rs)
		if len(bad) != 1 || bad[0].Index != 3 {
			t.Fatalf("want exactly element 3 to fail, got %v", bad)
		}
	})
	t.Run("accumulating instead of overwriting", func(t *testing.T) {
		// A MatmulBackward that added into dw would turn the NaN pre-fill
		// into NaN gradients; the check must flag NaN.
		rs := []gradResult{{Tensor: "w", FD: 1, An: math.NaN(), RelErr: relErr(1, math.NaN()), Checked: true}}
		if len(failures(rs)) != 1 {
			t.Fatal("NaN gradient not flagged")
		}
	})
}

func TestGeluValues(t *testing.T) {
	// 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715x^3))), evaluated independently with
	// Python's math module.
	cases := []struct{ x, want float64 }{
		{0, 0},
		{1, 0.8411919906082768},
		{-1, -0.15880800939172324},
		{3, 2.996362607918227},
	}
	for _, c := range cases {
		if got := Gelu(c.x); math.Abs(got-c.want) > 1e-15 {
			t.Errorf("Gelu(%v) = %.17g, want %.17g", c.x, got, c.want)
		}
	}
	if g := GeluGrad(0); g != 0.5 {
		t.Errorf("GeluGrad(0) = %v, want 0.5", g)
	}
	if g := GeluGrad(40); g != 1 {
		t.Errorf("GeluGrad(40) = %v, want 1", g)
	}
	if g := GeluGrad(-40); g != 0 {
		t.Errorf("GeluGrad(-40) = %v, want 0", g)
	}
}

func TestLayerNormValues(t *testing.T) {
	inp := []float64{1, 2, 3, 4}
	w := []float64{1, 1, 2, 2}
	b := []float64{0, 0, 0, 10}
	out, mean, rstd := make([]float64, 4), make([]float64, 1), make([]float64, 1)
	LayerNormForward(out, mean, rstd, inp, w, b, 1, 4)
	// mean 2.5, biased variance 1.25.
	wantRstd := 1 / math.Sqrt(1.25+1e-5)
	if mean[0] != 2.5 || math.Abs(rstd[0]-wantRstd) > 1e-15 {
		t.Fatalf("mean %v rstd %v, want 2.5 %v", mean[0], rstd[0], wantRstd)
	}
	want := []float64{-1.5 * wantRstd, -0.5 * wantRstd, 2 * 0.5 * wantRstd, 2*1.5*wantRstd + 10}
	for i := range want {
		if math.Abs(out[i]-want[i]) > 1e-14 {
			t.Errorf("out[%d] = %v, want %v", i, out[i], want[i])
		}
	}
}

func TestMatmulValues(t *testing.T) {
	// inp (2,3), w (OC=2, C=3) stored row-major as nn.Linear does.
	inp := []float64{1, 2, 3, 4, 5, 6}
	w := []float64{1, 0, -1, 0.5, 0.5, 0.5}
	bias := []float64{10, 20}
	out := make([]float64, 4)
	MatmulForward(out, inp, w, bias, 2, 3, 2)
	want := []float64{1 - 3 + 10, 3 + 20, 4 - 6 + 10, 7.5 + 20}
	for i := range want {
		if out[i] != want[i] {
			t.Errorf("out = %v, want %v", out, want)
			break
		}
	}
	dout := []float64{1, 2, 3, 4}
	dinp, dw, db := make([]float64, 6), make([]float64, 6), make([]float64, 2)
	MatmulBackward(dinp, dw, db, dout, inp, w, 2, 3, 2)
	wantDinp := []float64{1 + 1, 1, -1 + 1, 3 + 2, 2, -3 + 2}
	wantDw := []float64{1 + 12, 2 + 15, 3 + 18, 2 + 16, 4 + 20, 6 + 24}
	wantDb := []float64{4, 6}
	for i := range wantDinp {
		if dinp[i] != wantDinp[i] || dw[i] != wantDw[i] {
			t.Fatalf("dinp %v dw %v, want %v %v", dinp, dw, wantDinp, wantDw)
		}
	}
	if db[0] != wantDb[0] || db[1] != wantDb[1] {
		t.Errorf("dbias %v, want %v", db, wantDb)
	}
}

func TestEncoderResidualValues(t *testing.T) {
	wte := []float64{0, 0, 1, 1, 2, 2} // V=3, C=2
	wpe := []float64{10, 20, 30, 40}   // MaxT=2
	out := make([]float64, 8)
	EncoderForward(out, []int32{2, 0, 1, 1}, wte, wpe, 2, 2, 2)
	want := []float64{12, 22, 30, 40, 11, 21, 31, 41}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("out %v, want %v", out, want)
		}
	}
	r := make([]float64, 3)
	ResidualForward(r, []float64{1, 2, 3}, []float64{10, 20, 30}, 3)
	if r[0] != 11 || r[1] != 22 || r[2] != 33 {
		t.Errorf("residual %v", r)
	}
}

// naiveAttention is an independent, literal implementation: the full T×T
// score matrix with -Inf above the diagonal, then softmax and a weighted sum.
func naiveAttention(qkv []float64, B, T, C, NH int) (out, lse []float64) {
	hs := C / NH
	out, lse = make([]float64, B*T*C), make([]float64, B*NH*T)
	at := func(b, t, part, h, i int) float64 { return qkv[b*T*3*C+t*3*C+part*C+h*hs+i] }
	for b := 0; b < B; b++ {
		for h := 0; h < NH; h++ {
			for t := 0; t < T; t++ {
				scores := make([]float64, T)
				for u := 0; u < T; u++ {
					if u > t {
						scores[u] = math.Inf(-1)
						continue
					}
					for i := 0; i < hs; i++ {
						scores[u] += at(b, t, 0, h, i) * at(b, u, 1, h, i)
					}
					scores[u] /= math.Sqrt(float64(hs))
				}
				z := 0.0
				for u := 0; u < T; u++ {
					z += math.Exp(scores[u])
				}
				lse[b*NH*T+h*T+t] = math.Log(z)
				for u := 0; u < T; u++ {
					for i := 0; i < hs; i++ {
						out[b*T*C+t*C+h*hs+i] += math.Exp(scores[u]) / z * at(b, u, 2, h, i)
					}
				}
			}
		}
	}
	return out, lse
}

func TestAttentionValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	B, T, C, NH := 2, 6, 12, 4
	qkv := randVec(rng, B*T*3*C, 1, 0)
	out, lse := make([]float64, B*T*C), make([]float64, B*NH*T)
	AttentionForward(out, lse, qkv, B, T, C, NH)
	wantOut, wantLse := naiveAttention(qkv, B, T, C, NH)
	for i := range out {
		if math.Abs(out[i]-wantOut[i]) > 1e-13 {
			t.Fatalf("out[%d] = %v, want %v", i, out[i], wantOut[i])
		}
	}
	for i := range lse {
		if math.Abs(lse[i]-wantLse[i]) > 1e-13 {
			t.Fatalf("lse[%d] = %v, want %v", i, lse[i], wantLse[i])
		}
	}
	// Query 0 attends only to key 0: out = v0, lse = q0·k0/sqrt(hs).
	hs := C / NH
	for h := 0; h < NH; h++ {
		s := 0.0
		for i := 0; i < hs; i++ {
			s += qkv[h*hs+i] * qkv[C+h*hs+i]
			if out[h*hs+i] != qkv[2*C+h*hs+i] {
				t.Errorf("head %d: out[0] != v[0]", h)
			}
		}
		if math.Abs(lse[h*T]-s/math.Sqrt(float64(hs))) > 1e-15 {
			t.Errorf("head %d: lse[0] = %v, want %v", h, lse[h*T], s/math.Sqrt(float64(hs)))
		}
	}
	// Large scores must not overflow.
	for i := range qkv {
		qkv[i] *= 100
	}
	AttentionForward(out, lse, qkv, B, T, C, NH)
	dqkv := make([]float64, len(qkv))
	AttentionBackward(dqkv, out, qkv, out, lse, B, T, C, NH)
	for _, v := range append(append(out, lse...), dqkv...) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatal("non-finite attention result for large scores")
		}
	}
}

func TestCrossEntropyValues(t *testing.T) {
	N, V := 2, 5
	logits := []float64{0, 0, 0, 0, 0, 1000, 0, 0, 0, 0}
	losses := make([]float64, N)
	CrossEntropyForward(losses, logits, []int32{3, 0}, N, V)
	if math.Abs(losses[0]-math.Log(5)) > 1e-15 || losses[1] != 0 {
		t.Errorf("losses %v, want [log 5, 0]", losses)
	}
	d := make([]float64, N*V)
	CrossEntropyBackward(d, logits, []int32{3, 1}, N, V, 0.5)
	want := []float64{0.1, 0.1, 0.1, 0.1 - 0.5, 0.1, 0.5, -0.5, 0, 0, 0}
	for i := range want {
		if math.Abs(d[i]-want[i]) > 1e-15 {
			t.Fatalf("dlogits %v, want %v", d, want)
		}
	}
}
