//go:build gpu

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model/ref"
)

// crossEntropyShapes are the (N, V) of the cross-entropy tests: the smallest
// vocabulary, vocabularies under, at and over one 512-thread block pass, and
// GPT-2's (few rows: the reference is float64 and single-threaded).
var crossEntropyShapes = [][2]int{{1, 2}, {37, 2}, {37, 1000}, {111, 1003}, {2048, 96}, {3, 50257}, {16, 50257}}

// rowStrides are the row strides Vp the tests run for V logits a row:
// dense (V), and padded to the next multiple of 64 past V, as a padded
// vocabulary is (50257 → 50304).
func rowStrides(V int) []int { return []int{V, (V/64 + 1) * 64} }

// crossEntropyData returns logits (N,V) and targets. Each row gets its own
// offset (up to ±20) so that the kernels must subtract the row maximum, and
// spread (up to 4) so that some rows are sharply peaked.
func crossEntropyData(r *rand.Rand, N, V int) ([]float64, []int32) {
	logits := normal(r, N*V, 1)
	for n := 0; n < N; n++ {
		shift, spread := 40*r.Float64()-20, 0.2+4*r.Float64()
		for v := 0; v < V; v++ {
			logits[n*V+v] = shift + spread*logits[n*V+v]
		}
	}
	return logits, randomTokens(r, N, V)
}

// padRows lays the N rows of V values Vp apart, the padding NaN: a kernel
// that reads it computes NaN, one that writes it shows.
func padRows(dense []float64, N, V, Vp int) []float64 {
	p := make([]float64, N*Vp)
	for i := range p {
		p[i] = math.NaN()
	}
	for n := 0; n < N; n++ {
		copy(p[n*Vp:n*Vp+V], dense[n*V:(n+1)*V])
	}
	return p
}

// unpadRows is padRows' inverse: the rows' V values, and their padding.
func unpadRows(p []float64, N, V, Vp int) (dense, padding []float64) {
	for n := 0; n < N; n++ {
		dense = append(dense, p[n*Vp:n*Vp+V]...)
		padding = append(padding, p[n*Vp+V:(n+1)*Vp]...)
	}
	return dense, padding
}

// refLogSumExp is the reference logsumexp of each row, for the saved lse.
func refLogSumExp(logits []float64, N, V int) []float64 {
	lse := make([]float64, N)
	for n := range lse {
		lse[n] = ref.LogSumExp(logits[n*V : (n+1)*V])
	}
	return lse
}

func TestCrossEntropyForward(t *testing.T)     { testCrossEntropyForward(t, program.F32) }
func TestCrossEntropyForwardBF16(t *testing.T) { testCrossEntropyForward(t, program.BF16) }

// testCrossEntropyForward runs crossentropy_forward on logits stored as e.
// The losses and lse are fp32 in both steps, computed in fp32 from the
// logits as stored, so the tolerances are the same for both.
func testCrossEntropyForward(t *testing.T, e program.Elem) {
	env(t)
	r := rng(t)
	for _, sh := range crossEntropyShapes {
		N, V := sh[0], sh[1]
		for _, Vp := range rowStrides(V) {
			l64, targets := crossEntropyData(r, N, V)
			logitsD, seen := uploadOf(t, e, "logits", padRows(l64, N, V, Vp))
			logits, _ := unpadRows(seen, N, V, Vp)
			targetsD := uploadInt(t, "targets", targets)
			forward := func(withLSE bool) (losses, lse []float64) {
				lossesD := buffer(t, "losses", N)
				var lseD program.View // null: not saved
				if withLSE {
					lseD = buffer(t, "lse", N)
				}
				run(t, CrossEntropyForward(lossesD, lseD, logitsD, targetsD, N, V, Vp))
				losses = download(t, lossesD, N)
				if withLSE {
					lse = download(t, lseD, N)
				}
				return losses, lse
			}
			gotLosses, gotLSE := forward(true)
			want := make([]float64, N)
			ref.CrossEntropyForward(want, logits, targets, N, V)
			// fp32 logsumexp over V terms (accurate expf/logf, fixed tree) has
			// a relative error around 1e-7 of |lse| (up to ~40 with the row
			// offsets). The loss lse − logit[target] is a difference of two
			// such numbers and can be far smaller than either (a confident
			// row), so each row's loss is held to 1e-5 of the larger of its
			// own size and |lse|: the cancellation is fp32's, not a bug. A
			// padding element read (NaN) fails it.
			wantLSE := refLogSumExp(logits, N, V)
			for n := range want {
				scale := math.Max(math.Abs(want[n]), math.Abs(wantLSE[n]))
				if d := math.Abs(gotLosses[n] - want[n]); !(d <= 1e-5*scale) {
					t.Fatalf("%s N=%d V=%d Vp=%d: crossentropy_forward loss of row %d = %v, want %v (|lse| %v)", e, N, V, Vp, n, gotLosses[n], want[n], wantLSE[n])
				}
			}
			checkClose(t, "crossentropy_forward lse", gotLSE, wantLSE, 1e-5)

			againLosses, againLSE := forward(true)
			sameBits(t, "crossentropy_forward losses", gotLosses, againLosses)
			sameBits(t, "crossentropy_forward lse", gotLSE, againLSE)
			// Without lse (null) the losses are the same bits.
			noLSE, _ := forward(false)
			sameBits(t, "crossentropy_forward losses without lse", gotLosses, noLSE)
		}
	}
}

func TestLossReduce(t *testing.T) {
	env(t)
	r := rng(t)
	for _, N := range []int{1, 37, 111, 1024, 1025, 2048, 65536} {
		v := make([]float64, N)
		for i := range v {
			v[i] = -math.Log(r.Float64() + 1e-9) // loss-like: positive, spread out
		}
		lossesD, losses := upload(t, "losses", v)
		reduce := func() []float64 {
			loss := buffer(t, "loss", 1)
			run(t, LossReduce(loss, lossesD, N))
			return download(t, loss, 1)
		}
		got := reduce()
		sum := 0.0
		for _, x := range losses {
			sum += x
		}
		// An fp32 sum of N positive terms by 1024 strided partials and a
		// shuffle tree: error ≲ (N/1024 + 10)·2^-24 relative, under 1e-5.
		checkClose(t, "loss_reduce", got, []float64{sum / float64(N)}, 1e-5)
		sameBits(t, "loss_reduce", got, reduce())
	}
}

func TestCrossEntropyBackward(t *testing.T)     { testCrossEntropyBackward(t, program.F32) }
func TestCrossEntropyBackwardBF16(t *testing.T) { testCrossEntropyBackward(t, program.BF16) }

// testCrossEntropyBackward runs crossentropy_backward on logits stored as
// e, writing dlogits as e: every combination of in place or not, and lse
// saved by the forward or recomputed (null). The padding columns of the
// rows must stay poisoned.
func testCrossEntropyBackward(t *testing.T, e program.Elem) {
	env(t)
	r := rng(t)
	for _, sh := range crossEntropyShapes {
		N, V := sh[0], sh[1]
		for _, Vp := range rowStrides(V) {
			l64, targets := crossEntropyData(r, N, V)
			padded := padRows(l64, N, V, Vp)
			_, seen := uploadOf(t, e, "logits", padded) // the logits as stored, for the reference
			logits, _ := unpadRows(seen, N, V, Vp)
			targetsD := uploadInt(t, "targets", targets)
			scale := float32(1) / float32(N)
			want := make([]float64, N*V)
			ref.CrossEntropyBackward(want, logits, targets, N, V, float64(scale))

			for _, inPlace := range []bool{false, true} {
				for _, saved := range []bool{true, false} {
					name := "crossentropy_backward " + string(e)
					if inPlace {
						name += " in place"
					}
					if !saved {
						name += " recomputing lse"
					}
					// In place, the logits buffer is overwritten, so each run
					// uploads its own copy.
					backward := func() []float64 {
						logitsD, _ := uploadOf(t, e, "logits", padded)
						var lseD program.View // null: recomputed
						if saved {
							lseD = buffer(t, "lse", N)
							run(t, CrossEntropyForward(buffer(t, "losses", N), lseD, logitsD, targetsD, N, V, Vp))
						}
						dlogitsD := logitsD
						if !inPlace {
							dlogitsD = bufferOf(t, e, "dlogits", N*Vp)
						}
						run(t, CrossEntropyBackward(dlogitsD, logitsD, lseD, targetsD, N, V, Vp, scale))
						got, padding := unpadRows(downloadOf(t, e, dlogitsD, N*Vp), N, V, Vp)
						checkPoisoned(t, name+" padding", padding)
						return got
					}
					got := backward()
					// Elementwise exp(x − lse)·scale: the fp32 lse's absolute
					// error (~1e-7·|lse|) becomes a relative error of the
					// probabilities: a few 1e-6 at most for |lse| ≤ ~40. bf16
					// rounds each gradient once; the floor of each element's
					// bound is that fp32 error on p − 1 ≈ 0 (a confident row's
					// target), 2e-5 of the largest possible |dlogit|, scale.
					//
					// In fp32 the same lse error makes the target's p − 1
					// cancel: with |logits| up to ~40 the exponent is off by
					// up to ~4e-6 (two roundings at ulp(40)/2), so a
					// confident row's gradient has that absolute error, which
					// a norm-relative check would count against a row of tiny
					// values (seen at N=1, V=2: 4.4e-5 relative). fp32 is
					// checked element by element: 1e-5 relative plus that
					// floor, doubled.
					if e == program.BF16 {
						checkClose(t, name, got, want, tolOf(e, 1e-5))
						checkEachBF16(t, name, got, want, 2e-5*float64(scale))
					} else {
						checkEach(t, name, got, want, 1e-5, 8e-6*float64(scale))
					}
					sameBits(t, name, got, backward())
				}
			}
		}
	}
}
