//go:build gpu

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gpubench/gpubench/internal/bf16"
	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/gpu"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
	"gorgonia.org/cu"
)

// The kernels of ptx/llama.cu against model/ref's float64 LLaMA layers, in
// both storage types, at shapes that are multiples of nothing, and through
// views that start off a 16-byte boundary (the kernels' scalar paths).
// -test.short leaves out the largest shapes (for compute-sanitizer).

// uploadOffset is uploadOf into a view off elements into a poisoned buffer:
// with an odd off the kernel sees a pointer that is not 16-byte aligned.
func uploadOffset(t testing.TB, e program.Elem, name string, v []float64, off int) (program.View, []float64) {
	t.Helper()
	if off == 0 {
		return uploadOf(t, e, name, v)
	}
	p := bufferOf(t, e, name, len(v)+off).Buf.Slice(name, int64(off), int64(len(v)))
	seen := make([]float64, len(v))
	var err error
	if e == program.BF16 {
		h := make([]uint16, len(v))
		for i, x := range v {
			h[i] = bf16.FromFloat32(float32(x))
			seen[i] = float64(bf16.ToFloat32(h[i]))
		}
		err = cuexec.Upload(testExec, p, h)
	} else {
		f := make([]float32, len(v))
		for i, x := range v {
			f[i] = float32(x)
			seen[i] = float64(f[i])
		}
		err = cuexec.Upload(testExec, p, f)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p, seen
}

// bufferAt is a poisoned view of n elements, off elements into its buffer.
func bufferAt(t testing.TB, e program.Elem, name string, n, off int) program.View {
	t.Helper()
	return bufferOf(t, e, name, n+off).Buf.Slice(name, int64(off), int64(n))
}

// sameValues fails unless got equals want element for element (a copy
// moves bits; a NaN never matches).
func sameValues(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !(got[i] == want[i]) {
			t.Fatalf("%s: element %d is %g, want %g", what, i, got[i], want[i])
		}
	}
}

// checkElems is checkEach at the precision of e: fp32 results within
// f32Rel, bf16 ones within one bf16 rounding, both plus floor.
func checkElems(t *testing.T, e program.Elem, what string, got, want []float64, f32Rel, floor float64) {
	t.Helper()
	if e == program.BF16 {
		checkEachBF16(t, what, got, want, floor)
		return
	}
	checkEach(t, what, got, want, f32Rel, floor)
}

func TestEmbeddingForward(t *testing.T) {
	env(t)
	r := rng(t)
	const V, guard = 50, 16
	for _, e := range storages {
		for _, c := range []struct{ N, C, off int }{{1, 1, 0}, {7, 100, 0}, {37, 96, 0}, {16, 4096, 0}, {9, 96, 1}} {
			name := fmt.Sprintf("embedding_forward %s N=%d C=%d off=%d", e, c.N, c.C, c.off)
			tokens := make([]int32, c.N)
			for n := range tokens {
				tokens[n] = int32(r.IntN(V))
			}
			tokens[0], tokens[c.N-1] = V-1, 0 // the table's last and first rows
			if c.N == 1 {
				tokens[0] = V - 1
			}
			wteD, wte := uploadOffset(t, e, "wte", normal(r, V*c.C, 1), c.off)
			outAll := bufferAt(t, e, "out", c.N*c.C+guard, c.off)
			out := outAll.Buf.Slice("out", outAll.Offset, int64(c.N*c.C))
			run(t, EmbeddingForward(out, uploadInt(t, "tokens", tokens), wteD, c.N, c.C))
			got := downloadOf(t, e, outAll, c.N*c.C+guard)
			want := make([]float64, c.N*c.C)
			ref.EmbeddingForward(want, tokens, wte, c.N, c.C)
			sameValues(t, name, got[:c.N*c.C], want)
			checkPoisoned(t, name+" past out", got[c.N*c.C:])
		}
	}
}

func TestGatherRows(t *testing.T) {
	env(t)
	r := rng(t)
	const guard = 16
	for _, e := range storages {
		for _, c := range []struct{ B, T, C, t, off int }{
			{1, 1, 1, 0, 0}, {3, 5, 100, 4, 0}, {3, 5, 100, 0, 0}, {2, 7, 4096, 3, 0}, {3, 5, 96, 2, 1},
		} {
			name := fmt.Sprintf("gather_rows %s B=%d T=%d C=%d t=%d off=%d", e, c.B, c.T, c.C, c.t, c.off)
			inpD, inp := uploadOffset(t, e, "inp", normal(r, c.B*c.T*c.C, 1), c.off)
			outAll := bufferOf(t, e, "out", c.B*c.C+guard)
			out := outAll.Buf.Slice("out", 0, int64(c.B*c.C))
			run(t, GatherRows(out, inpD, c.B, c.T, c.C, c.t))
			got := downloadOf(t, e, outAll, c.B*c.C+guard)
			want := make([]float64, 0, c.B*c.C)
			for b := 0; b < c.B; b++ {
				want = append(want, inp[(b*c.T+c.t)*c.C:][:c.C]...)
			}
			sameValues(t, name, got[:c.B*c.C], want)
			checkPoisoned(t, name+" past out", got[c.B*c.C:])
		}
	}
}

// rmsNormRows returns N rows of C values, each with its own scale, so
// that rstd differs from row to row.
func rmsNormRows(r *rand.Rand, N, C int) []float64 {
	x := normal(r, N*C, 1)
	for n := 0; n < N; n++ {
		s := math.Exp(3 * (r.Float64() - 0.5)) // 0.22 .. 4.5
		for c := 0; c < C; c++ {
			x[n*C+c] *= s
		}
	}
	return x
}

type rmsShape struct {
	N, C, off int
	big       bool // left out by -test.short
}

func TestRMSNormForward(t *testing.T) {
	env(t)
	r := rng(t)
	shapes := []rmsShape{
		{1, 5, 0, false}, {1, 4096, 0, false}, {8, 4096, 0, false}, {37, 100, 0, false}, {111, 768, 0, false},
		{8, 4096, 1, false}, {37, 96, 1, false}, {2048, 768, 0, true}, {2048, 4096, 0, true},
	}
	for _, e := range storages {
		for i, sh := range shapes {
			if sh.big && testing.Short() {
				continue
			}
			N, C := sh.N, sh.C
			eps := float32(1e-5)
			if i%2 == 1 {
				eps = 1e-6
			}
			tpr, rows := rmsNormShape(N, C, e)
			name := fmt.Sprintf("rmsnorm_forward %s N=%d C=%d off=%d (block %dx%d)", e, N, C, sh.off, tpr, rows)
			inpD, inp := uploadOffset(t, e, "inp", rmsNormRows(r, N, C), sh.off)
			wD, w := uploadOffset(t, e, "weight", normal(r, C, 1), sh.off)
			forward := func() (out, rstd []float64) {
				outD, rstdD := bufferAt(t, e, "out", N*C, sh.off), buffer(t, "rstd", N)
				run(t, RMSNormForward(outD, rstdD, inpD, wD, N, C, eps))
				return downloadOf(t, e, outD, N*C), download(t, rstdD, N)
			}
			gotOut, gotRstd := forward()
			wantOut, wantRstd := make([]float64, N*C), make([]float64, N)
			ref.RMSNormForward(wantOut, wantRstd, inp, w, N, C, float64(eps))
			// An fp32 sum of C squares and an elementwise product: a few
			// ulps. rstd is fp32 from the stored inputs in both steps.
			checkClose(t, name+" out", gotOut, wantOut, tolOf(e, 1e-5))
			checkElems(t, e, name+" out", gotOut, wantOut, 1e-5, 1e-6*maxAbs(wantOut))
			checkEach(t, name+" rstd", gotRstd, wantRstd, 1e-5, 0)
			againOut, againRstd := forward()
			sameBits(t, name+" out", gotOut, againOut)
			sameBits(t, name+" rstd", gotRstd, againRstd)
		}
		// A null rstd is skipped.
		const N, C = 5, 300
		inpD, inp := uploadOf(t, e, "inp", rmsNormRows(r, N, C))
		wD, w := uploadOf(t, e, "weight", normal(r, C, 1))
		out := bufferOf(t, e, "out", N*C)
		run(t, RMSNormForward(out, program.View{}, inpD, wD, N, C, 1e-5))
		want := make([]float64, N*C)
		ref.RMSNormForward(want, nil, inp, w, N, C, 1e-5)
		checkClose(t, "rmsnorm_forward (no rstd) "+string(e), downloadOf(t, e, out, N*C), want, tolOf(e, 1e-5))
	}
}

func TestRMSNormBackward(t *testing.T) {
	env(t)
	r := rng(t)
	const guard = 64
	shapes := []rmsShape{{1, 5, 0, false}, {37, 100, 0, false}, {100, 768, 0, false}, {8, 4096, 0, false}, {67, 1000, 0, false}, {1000, 4096, 0, true}}
	for _, e := range storages {
		for _, sh := range shapes {
			if sh.big && testing.Short() {
				continue
			}
			N, C := sh.N, sh.C
			name := fmt.Sprintf("rmsnorm_backward %s N=%d C=%d", e, N, C)
			inpD, inp := uploadOf(t, e, "inp", rmsNormRows(r, N, C))
			wD, w := uploadOf(t, e, "weight", normal(r, C, 1))
			fwd, s64 := make([]float64, N*C), make([]float64, N)
			ref.RMSNormForward(fwd, s64, inp, w, N, C, 1e-5)
			rstdD, rstd := upload(t, "rstd", s64) // as the forward saves it, in fp32
			doutD, dout := uploadOf(t, e, "dout", normal(r, N*C, 1))
			// dinp accumulates, so it starts from random values (rounded
			// to e by a throwaway upload).
			_, dinp0 := uploadOf(t, e, "dinp0", normal(r, N*C, 1))

			scratchN := RMSNormPartialSize(N, C)
			if want := (N + 31) / 32 * C; scratchN != want {
				t.Fatalf("RMSNormPartialSize(%d, %d) = %d, want %d", N, C, scratchN, want)
			}
			backward := func() (dinp, dw []float64) {
				dinpD, _ := uploadOf(t, e, "dinp", dinp0)
				dwD := bufferOf(t, e, "dweight", C)
				scratch := buffer(t, "scratch", scratchN+guard)
				ops := RMSNormBackward(dinpD, dwD, scratch.Buf.Slice("scratch", 0, int64(scratchN)), doutD, inpD, wD, rstdD, N, C)
				if len(ops) != 2 {
					t.Fatalf("RMSNormBackward: %d ops, want 2 (input, params)", len(ops))
				}
				run(t, ops...)
				s := download(t, scratch, scratchN+guard)
				checkPoisoned(t, name+": scratch past its RMSNormPartialSize", s[scratchN:])
				return downloadOf(t, e, dinpD, N*C), downloadOf(t, e, dwD, C)
			}
			gotDinp, gotDw := backward()
			wantDinp := append([]float64(nil), dinp0...)
			wantDw := make([]float64, C)
			ref.RMSNormBackward(wantDinp, wantDw, dout, inp, w, rstd, N, C)
			// Per-row fp32 reductions over C, fp32 column sums over N; bf16
			// rounds dinp (after adding to its stored value) and dw once.
			checkClose(t, name+" dinp", gotDinp, wantDinp, tolOf(e, 1e-5))
			checkClose(t, name+" dw", gotDw, wantDw, tolOf(e, 1e-5))
			// The start value is far over the tolerance, so the check
			// above fails a kernel that overwrites dinp instead of adding.
			gradOnly := make([]float64, N*C)
			for i := range gradOnly {
				gradOnly[i] = wantDinp[i] - dinp0[i]
			}
			if relErr(gradOnly, wantDinp) < 10*tolOf(e, 1e-5) {
				t.Fatalf("%s: the test's dinp0 is too small to show the accumulation", name)
			}
			againDinp, againDw := backward()
			sameBits(t, name+" dinp", gotDinp, againDinp)
			sameBits(t, name+" dw", gotDw, againDw)
		}
	}
}

type ropeCase struct {
	B, T, pos0, NH, NKV, hs, MaxT int
	theta                         float32
	cache                         bool
}

func ropeCases() []ropeCase {
	return []ropeCase{
		{2, 5, 0, 4, 2, 16, 8, 1e4, true},        // GQA 4:2, a prefill into a cache longer than T
		{3, 1, 8191, 8, 1, 128, 8192, 5e5, true}, // decode at llama3's last position, GQA 8:1
		{2, 3, 8189, 8, 1, 64, 8192, 5e5, true},  // positions 8189..8191
		{1, 7, 3, 4, 4, 10, 16, 1e4, false},      // hs 10, no GQA, no cache
		{4, 9, 0, 2, 1, 6, 9, 5e5, true},         // a cache of exactly T rows
		{2, 33, 4000, 8, 1, 128, 0, 5e5, false},  // long angles, no cache
	}
}

func (c ropeCase) String() string {
	return fmt.Sprintf("B=%d T=%d pos0=%d NH=%d NKV=%d hs=%d MaxT=%d theta=%g cache=%v", c.B, c.T, c.pos0, c.NH, c.NKV, c.hs, c.MaxT, c.theta, c.cache)
}

func TestRoPEForward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range storages {
		for _, c := range ropeCases() {
			name := fmt.Sprintf("rope_forward %s %v", e, c)
			N, W, KV := c.B*c.T, (c.NH+2*c.NKV)*c.hs, c.NKV*c.hs
			qkvD, qkv := uploadOf(t, e, "qkv", normal(r, N*W, 1))
			var kc, vc program.View
			if c.cache {
				kc, vc = bufferOf(t, e, "kcache", c.B*c.MaxT*KV), bufferOf(t, e, "vcache", c.B*c.MaxT*KV)
			}
			run(t, RoPEForward(qkvD, kc, vc, c.B, c.T, c.pos0, c.NH, c.NKV, c.hs, c.MaxT, c.theta))
			got := downloadOf(t, e, qkvD, N*W)
			want := make([]float64, N*W)
			ref.RopeForward(want, qkv, c.B, c.T, c.NH, c.NKV, c.hs, c.pos0, float64(c.theta))
			// An fp32 rotation of an accurate angle: an ulp or two of the
			// pair's size; an fp32 angle at pos 8191 would be 5e-4 off.
			checkClose(t, name, got, want, tolOf(e, 1e-5))
			checkElems(t, e, name, got, want, 1e-5, 2e-6*maxAbs(want))
			for row := 0; row < N; row++ { // v is not rotated: the same bits
				sameValues(t, name+" v", got[row*W+(c.NH+c.NKV)*c.hs:][:KV], qkv[row*W+(c.NH+c.NKV)*c.hs:][:KV])
			}
			if !c.cache {
				continue
			}
			gk, gv := downloadOf(t, e, kc, c.B*c.MaxT*KV), downloadOf(t, e, vc, c.B*c.MaxT*KV)
			for b := 0; b < c.B; b++ {
				for p := 0; p < c.MaxT; p++ {
					k, v := gk[(b*c.MaxT+p)*KV:][:KV], gv[(b*c.MaxT+p)*KV:][:KV]
					if p < c.pos0 || p >= c.pos0+c.T {
						checkPoisoned(t, fmt.Sprintf("%s kcache row (%d,%d)", name, b, p), k)
						checkPoisoned(t, fmt.Sprintf("%s vcache row (%d,%d)", name, b, p), v)
						continue
					}
					row := b*c.T + p - c.pos0
					sameValues(t, fmt.Sprintf("%s kcache row (%d,%d)", name, b, p), k, got[row*W+c.NH*c.hs:][:KV])
					sameValues(t, fmt.Sprintf("%s vcache row (%d,%d)", name, b, p), v, qkv[row*W+(c.NH+c.NKV)*c.hs:][:KV])
				}
			}
		}
	}
}

func TestRoPEBackward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range storages {
		for _, c := range ropeCases() {
			name := fmt.Sprintf("rope_backward %s %v", e, c)
			N, W, KV := c.B*c.T, (c.NH+2*c.NKV)*c.hs, c.NKV*c.hs
			dD, dout := uploadOf(t, e, "dqkv", normal(r, N*W, 1))
			run(t, RoPEBackward(dD, c.B, c.T, c.pos0, c.NH, c.NKV, c.hs, c.theta))
			got := downloadOf(t, e, dD, N*W)
			want := make([]float64, N*W)
			ref.RopeBackward(want, dout, c.B, c.T, c.NH, c.NKV, c.hs, c.pos0, float64(c.theta))
			checkClose(t, name, got, want, tolOf(e, 1e-5))
			checkElems(t, e, name, got, want, 1e-5, 2e-6*maxAbs(want))
			for row := 0; row < N; row++ {
				sameValues(t, name+" v", got[row*W+(c.NH+c.NKV)*c.hs:][:KV], dout[row*W+(c.NH+c.NKV)*c.hs:][:KV])
			}
		}
	}
}

// swigluInputs is h (N,2H) of normal values with the extremes of silu
// mixed in: its overflow (e^−x = inf below −88), its flat tails, and its
// minimum near −1.28 where silu' changes sign. A tensor of a few elements
// gets none: the norm of outputs that are all ~1e-42 (silu(−100)) would
// measure fp32's flush to zero, not the kernel.
func swigluInputs(r *rand.Rand, N, H int) []float64 {
	h := normal(r, 2*N*H, 3)
	if len(h) < 64 {
		return h
	}
	for i, x := range []float64{-100, 100, -88.8, -1.278, 1e-3, 0} {
		h[i*7] = x
	}
	return h
}

type swigluShape struct{ N, H, off int }

var swigluShapes = []swigluShape{{1, 1, 0}, {7, 37, 0}, {33, 96, 0}, {5, 1000, 0}, {3, 688, 1}, {64, 1024, 0}}

func TestSwiGLUForward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range storages {
		for _, sh := range swigluShapes {
			N, H := sh.N, sh.H
			name := fmt.Sprintf("swiglu_forward %s N=%d H=%d off=%d", e, N, H, sh.off)
			hD, h := uploadOffset(t, e, "h", swigluInputs(r, N, H), sh.off)
			out := bufferAt(t, e, "out", N*H, sh.off)
			run(t, SwiGLUForward(out, hD, N, H))
			got := downloadOf(t, e, out, N*H)
			want := make([]float64, N*H)
			ref.SwiGLURowsForward(want, h, N, H)
			checkClose(t, name, got, want, tolOf(e, 1e-5))
			checkElems(t, e, name, got, want, 1e-5, 1e-6*maxAbs(want))
		}
	}
}

func TestSwiGLUBackward(t *testing.T) {
	env(t)
	r := rng(t)
	for _, e := range storages {
		for _, sh := range swigluShapes {
			N, H := sh.N, sh.H
			name := fmt.Sprintf("swiglu_backward %s N=%d H=%d off=%d", e, N, H, sh.off)
			hv := swigluInputs(r, N, H)
			hD, h := uploadOffset(t, e, "h", hv, sh.off)
			doutD, dout := uploadOffset(t, e, "dout", normal(r, N*H, 1), sh.off)
			dh := bufferAt(t, e, "dh", 2*N*H, sh.off)
			run(t, SwiGLUBackward(dh, doutD, hD, N, H))
			got := downloadOf(t, e, dh, 2*N*H)
			want := make([]float64, 2*N*H)
			ref.SwiGLURowsBackward(want, dout, h, N, H)
			checkClose(t, name, got, want, tolOf(e, 1e-5))
			checkElems(t, e, name, got, want, 1e-5, 1e-6*maxAbs(want))
			sameValues(t, name+": h is only read", downloadOf(t, e, hD, 2*N*H), h)

			// In place, as the model runs it: the gradient overwrites the
			// saved product, with the same bits.
			inPlace, _ := uploadOffset(t, e, "h in place", hv, sh.off)
			run(t, SwiGLUBackward(inPlace, doutD, inPlace, N, H))
			sameBits(t, name+" in place", downloadOf(t, e, inPlace, 2*N*H), got)
		}
	}
}

// argmaxRef is the first NaN's index, else the first maximum's.
func argmaxRef(row []float64) int32 {
	best := 0
	for i, v := range row {
		if math.IsNaN(v) {
			return int32(i)
		}
		if v > row[best] {
			best = i
		}
	}
	return int32(best)
}

// argmaxRows builds B = 7 rows of V logits, ld apart, the padding columns
// set to a value that would win if a kernel read them: row 0 random, 1 a
// tie of two maxima, 2 two NaNs behind a +Inf, 3 all −Inf, 4 its maximum
// last (in the tail of the vectors), 5 all zeros of both signs, 6 small
// integers (many ties).
func argmaxRows(r *rand.Rand, V, ld int) []float64 {
	const B = 7
	x := make([]float64, B*ld)
	for b := 0; b < B; b++ {
		row := x[b*ld : (b+1)*ld]
		for i := V; i < ld; i++ {
			row[i] = 1e30
		}
		row = row[:V]
		for i := range row {
			row[i] = r.NormFloat64()
		}
		switch b {
		case 1:
			row[V/3], row[V-1] = 10, 10
		case 2:
			row[0], row[V/2], row[V-1] = math.Inf(1), math.NaN(), math.NaN()
		case 3:
			for i := range row {
				row[i] = math.Inf(-1)
			}
		case 4:
			row[V-1] = 10
		case 5:
			for i := range row {
				row[i] = math.Copysign(0, float64(i%2)-0.5)
			}
		case 6:
			for i := range row {
				row[i] = float64(r.IntN(5) - 2)
			}
		}
	}
	return x
}

func TestArgmax(t *testing.T) {
	env(t)
	r := rng(t)
	const B, newTokens, col = 7, 3, 2
	poison := int32(gpu.NaNBits)
	for _, e := range storages {
		for _, V := range []int{1, 7, 1003, 128256} {
			for _, ld := range []int{V, V + 5, (V + 7) / 8 * 8} {
				name := fmt.Sprintf("argmax %s V=%d ld=%d", e, V, ld)
				logitsD, logits := uploadOf(t, e, "logits", argmaxRows(r, V, ld))
				want := make([]int32, B)
				for b := range want {
					want[b] = argmaxRef(logits[b*ld:][:V])
				}
				next, gen := intBuffer(t, "next", B), intBuffer(t, "generated", B*newTokens)
				run(t, Argmax(next, gen, logitsD, B, V, ld, col, newTokens))
				gotNext, gotGen := downloadInt(t, next), downloadInt(t, gen)
				for b := 0; b < B; b++ {
					if gotNext[b] != want[b] {
						t.Fatalf("%s: row %d: next %d, want %d", name, b, gotNext[b], want[b])
					}
					for j := 0; j < newTokens; j++ {
						g, w := gotGen[b*newTokens+j], poison
						if j == col {
							w = want[b]
						}
						if g != w {
							t.Fatalf("%s: generated[%d,%d] is %d, want %d", name, b, j, g, w)
						}
					}
				}
				// Without generated, next alone.
				next2 := intBuffer(t, "next", B)
				run(t, Argmax(next2, program.View{}, logitsD, B, V, ld, 0, 0))
				for b, g := range downloadInt(t, next2) {
					if g != want[b] {
						t.Fatalf("%s (no generated): row %d: next %d, want %d", name, b, g, want[b])
					}
				}
			}
		}
	}
}

// llamaGraphSeconds is the mean seconds of one launch of op on the GPU:
// n copies captured in one CUDA graph, replayed reps times between two
// events, so that the host's launch rate does not hide a short kernel.
func llamaGraphSeconds(b *testing.B, x *cuexec.Executor, op program.Op, n, reps int) float64 {
	b.Helper()
	rg := &program.Range{Name: "bench"}
	for range n {
		o := op
		rg.Items = append(rg.Items, program.Item{Op: &o})
	}
	if err := program.CaptureAsGraph(rg); err != nil {
		b.Fatal(err)
	}
	g := rg.Items[0].Op
	for range 2 {
		if err := x.Do(g); err != nil {
			b.Fatal(err)
		}
	}
	start, err := cu.MakeEvent(cu.DefaultEvent)
	if err != nil {
		b.Fatal(err)
	}
	defer cu.DestroyEvent(&start)
	stop, err := cu.MakeEvent(cu.DefaultEvent)
	if err != nil {
		b.Fatal(err)
	}
	defer cu.DestroyEvent(&stop)
	s := x.Stream()
	if err := start.Record(s); err != nil {
		b.Fatal(err)
	}
	for range reps {
		if err := x.Do(g); err != nil {
			b.Fatal(err)
		}
	}
	if err := stop.Record(s); err != nil {
		b.Fatal(err)
	}
	if err := stop.Synchronize(); err != nil {
		b.Fatal(err)
	}
	ms, err := start.Elapsed(stop)
	if err != nil {
		b.Fatal(err)
	}
	return float64(ms) / 1e3 / float64(n*reps)
}

// BenchmarkRMSNormForward times the bf16 RMSNorm of llama's C = 4096 at a
// decode step (8 rows) and a prefill (4096 rows): back to back on the
// stream (us/launch, which a short kernel's host launch rate bounds) and
// inside a graph (us/kernel, the GPU's time).
func BenchmarkRMSNormForward(b *testing.B) {
	for _, sh := range []struct {
		name string
		N, C int
	}{{"decode-N8-C4096", 8, 4096}, {"prefill-N4096-C4096", 4096, 4096}} {
		b.Run(sh.name, func(b *testing.B) {
			x := matmulBenchEnv(b)
			r := rand.New(rand.NewPCG(1, 2))
			inp, _ := uploadBF16(b, "inp", normal(r, sh.N*sh.C, 1))
			w, _ := uploadBF16(b, "w", normal(r, sh.C, 1))
			op := RMSNormForward(bf16Buffer(b, "out", sh.N*sh.C), buffer(b, "rstd", sh.N), inp, w, sh.N, sh.C, 1e-5)
			sec := matmulTimeLaunches(b, x, op)
			b.ReportMetric(sec*1e6, "us/launch")
			g := llamaGraphSeconds(b, x, op, 100, 10)
			b.ReportMetric(g*1e6, "us/kernel")
			b.ReportMetric(float64(op.Bytes)/g/1e9, "GB/s")
		})
	}
}
