package ref

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestLayout(t *testing.T) {
	d := Dims{V: 50, MaxT: 16, T: 8, L: 3, NH: 2, C: 8, B: 2}
	C, L := d.C, d.L
	want := []struct {
		name  string
		shape []int
	}{
		{"wte", []int{50, C}}, {"wpe", []int{16, C}},
		{"ln1w", []int{L, C}}, {"ln1b", []int{L, C}},
		{"qkvw", []int{L, 3 * C, C}}, {"qkvb", []int{L, 3 * C}},
		{"attprojw", []int{L, C, C}}, {"attprojb", []int{L, C}},
		{"ln2w", []int{L, C}}, {"ln2b", []int{L, C}},
		{"fcw", []int{L, 4 * C, C}}, {"fcb", []int{L, 4 * C}},
		{"fcprojw", []int{L, C, 4 * C}}, {"fcprojb", []int{L, C}},
		{"lnfw", []int{C}}, {"lnfb", []int{C}},
	}
	ts := Layout(d)
	if len(ts) != len(want) || len(ts) != NumTensors {
		t.Fatalf("%d tensors, want %d", len(ts), len(want))
	}
	off := 0
	for i, w := range want {
		tn := ts[i]
		if tn.Name != w.name || !reflect.DeepEqual(tn.Shape, w.shape) {
			t.Errorf("tensor %d: %s %v, want %s %v", i, tn.Name, tn.Shape, w.name, w.shape)
		}
		size := 1
		for _, s := range w.shape {
			size *= s
		}
		if tn.Offset != off || tn.Size != size {
			t.Errorf("%s: offset %d size %d, want %d %d", tn.Name, tn.Offset, tn.Size, off, size)
		}
		off += size
	}
	if NumParams(d) != off {
		t.Errorf("NumParams %d, want %d", NumParams(d), off)
	}
	// The closed form: V*C + MaxT*C + L*(12*C*C + 13*C) + 2*C.
	if got, want := NumParams(d), d.V*C+d.MaxT*C+L*(12*C*C+13*C)+2*C; got != want {
		t.Errorf("NumParams %d, closed form %d", got, want)
	}
	// GPT-2 small (124M) with the padded vocabulary of llm.c: 124,475,904.
	gpt2 := Dims{V: 50304, MaxT: 1024, T: 1024, L: 12, NH: 12, C: 768, B: 1}
	if got := NumParams(gpt2); got != 124475904 {
		t.Errorf("GPT-2 small: %d params, want 124475904", got)
	}
	// Views alias the flat array.
	flat := make([]float64, NumParams(d))
	v := Views(d, flat)
	v[IdxLnfb][C-1] = 7
	if flat[len(flat)-1] != 7 || len(v[IdxQkvw]) != L*3*C*C {
		t.Error("Views does not alias the flat array")
	}
}

func TestValidate(t *testing.T) {
	good := Dims{V: 5, MaxT: 4, T: 4, L: 0, NH: 2, C: 4, B: 1}
	if err := validate(good); err != nil {
		t.Errorf("%+v: %v", good, err)
	}
	for _, d := range []Dims{
		{V: 5, MaxT: 4, T: 5, L: 1, NH: 2, C: 4, B: 1}, // T > MaxT
		{V: 5, MaxT: 4, T: 4, L: 1, NH: 3, C: 4, B: 1}, // C % NH
		{V: 0, MaxT: 4, T: 4, L: 1, NH: 2, C: 4, B: 1},
		{V: 5, MaxT: 4, T: 4, L: -1, NH: 2, C: 4, B: 1},
		{V: 5, MaxT: 4, T: 4, L: 1, NH: 2, C: 4, B: 0},
	} {
		if validate(d) == nil {
			t.Errorf("%+v accepted", d)
		}
	}
}

func meanStd(v []float32) (mean, std float64) {
	for _, x := range v {
		mean += float64(x)
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (float64(x) - mean) * (float64(x) - mean)
	}
	return mean, math.Sqrt(std / float64(len(v)))
}

func TestInitParamsStatistics(t *testing.T) {
	d := Dims{V: 1000, MaxT: 64, T: 32, L: 4, NH: 4, C: 64, B: 2}
	p := InitParams(d, 1)
	if len(p) != NumParams(d) {
		t.Fatalf("%d params, want %d", len(p), NumParams(d))
	}
	proj := 0.02 / math.Sqrt(2*float64(d.L))
	for _, tn := range Layout(d) {
		v := p[tn.Offset : tn.Offset+tn.Size]
		var wantStd float64
		switch tn.Name {
		case "wte", "wpe", "qkvw", "fcw":
			wantStd = 0.02
		case "attprojw", "fcprojw":
			wantStd = proj
		case "ln1w", "ln2w", "lnfw":
			for i, x := range v {
				if x != 1 {
					t.Fatalf("%s[%d] = %v, want 1", tn.Name, i, x)
				}
			}
			continue
		default:
			for i, x := range v {
				if x != 0 {
					t.Fatalf("%s[%d] = %v, want 0", tn.Name, i, x)
				}
			}
			continue
		}
		mean, std := meanStd(v)
		n := float64(len(v))
		// Sampling errors: std(mean) = s/sqrt(n), std(std) ≈ s/sqrt(2n); allow 5 sigma.
		if math.Abs(mean) > 5*wantStd/math.Sqrt(n) {
			t.Errorf("%s: mean %.3g, want 0 ± %.3g", tn.Name, mean, wantStd/math.Sqrt(n))
		}
		if math.Abs(std-wantStd) > 5*wantStd/math.Sqrt(2*n) {
			t.Errorf("%s: std %.5g, want %.5g", tn.Name, std, wantStd)
		}
		// Per layer too: each layer's slice is drawn with the same std.
		if len(tn.Shape) == 3 {
			per := tn.Size / d.L
			for l := 0; l < d.L; l++ {
				_, s := meanStd(v[l*per : (l+1)*per])
				if math.Abs(s-wantStd) > 5*wantStd/math.Sqrt(2*float64(per)) {
					t.Errorf("%s layer %d: std %.5g, want %.5g", tn.Name, l, s, wantStd)
				}
			}
		}
	}
}

func TestInitParamsStream(t *testing.T) {
	// The documented generator: the first values of wte, then of wpe (no
	// draws are skipped between tensors), rounded from float64 to float32.
	d := Dims{V: 3, MaxT: 2, T: 2, L: 1, NH: 1, C: 2, B: 1}
	p := InitParams(d, 123)
	rng := rand.New(rand.NewPCG(123, 0x9e3779b97f4a7c15))
	for i := 0; i < (d.V+d.MaxT)*d.C; i++ {
		if want := float32(rng.NormFloat64() * 0.02); p[i] != want {
			t.Fatalf("p[%d] = %v, want %v", i, p[i], want)
		}
	}
	qkvw := Layout(d)[IdxQkvw]
	if want := float32(rng.NormFloat64() * 0.02); p[qkvw.Offset] != want {
		t.Errorf("qkvw[0] = %v, want %v (ln1 tensors must draw nothing)", p[qkvw.Offset], want)
	}
}

func TestInitParamsDeterminism(t *testing.T) {
	d := tinyDims
	a, b, c := InitParams(d, 7), InitParams(d, 7), InitParams(d, 8)
	if !reflect.DeepEqual(a, b) {
		t.Error("same seed gave different params")
	}
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	// Only the constant tensors (LN weights 1, biases 0) may coincide.
	constant := 0
	for _, tn := range Layout(d) {
		switch tn.Name {
		case "wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw":
		default:
			constant += tn.Size
		}
	}
	if same != constant {
		t.Errorf("seeds 7 and 8 share %d values, want only the %d constant ones", same, constant)
	}
}

func TestInputs(t *testing.T) {
	d := Dims{V: 37, MaxT: 64, T: 64, L: 1, NH: 1, C: 4, B: 16}
	tok, tgt := Inputs(d, 5)
	tok2, tgt2 := Inputs(d, 5)
	tok3, _ := Inputs(d, 6)
	if len(tok) != d.B*d.T || len(tgt) != d.B*d.T {
		t.Fatalf("lengths %d %d, want %d", len(tok), len(tgt), d.B*d.T)
	}
	if !reflect.DeepEqual(tok, tok2) || !reflect.DeepEqual(tgt, tgt2) {
		t.Error("same seed gave different inputs")
	}
	if reflect.DeepEqual(tok, tok3) {
		t.Error("different seeds gave the same tokens")
	}
	if reflect.DeepEqual(tok, tgt) {
		t.Error("tokens and targets are the same stream")
	}
	seen := make([]int, d.V)
	for i := range tok {
		for _, x := range []int32{tok[i], tgt[i]} {
			if x < 0 || int(x) >= d.V {
				t.Fatalf("input %d out of [0,%d)", x, d.V)
			}
			seen[x]++
		}
	}
	// 2048 draws over 37 values: each expected ~55 times.
	for v, n := range seen {
		if n < 20 {
			t.Errorf("value %d drawn %d times of %d", v, n, 2*d.B*d.T)
		}
	}
	// The documented generator.
	rng := rand.New(rand.NewPCG(5, 0xd1b54a32d192ed03))
	for i := range tok {
		if want := int32(rng.IntN(d.V)); tok[i] != want {
			t.Fatalf("tokens[%d] = %d, want %d", i, tok[i], want)
		}
	}
	if want := int32(rng.IntN(d.V)); tgt[0] != want {
		t.Errorf("targets[0] = %d, want %d", tgt[0], want)
	}
}
