package ref

import "math"

// The LLaMA layers: RMSNorm, rotary position embeddings, the SwiGLU gate and
// causal grouped-query attention, plus the token embedding without a
// position table. The matmuls are MatmulForward/MatmulBackward with nil
// biases. As in layers.go, each function says which outputs it overwrites (=)
// and which it accumulates into (+=); slices are row-major, N = B*T rows.

// EmbeddingForward: out[n,:] = wte[tokens[n],:] for the N rows. out is (N,C).
func EmbeddingForward(out []float64, tokens []int32, wte []float64, N, C int) {
	for n := 0; n < N; n++ {
		tok := int(tokens[n])
		copy(out[n*C:(n+1)*C], wte[tok*C:(tok+1)*C])
	}
}

// EmbeddingBackward ACCUMULATES dwte[tokens[n],:] += dout[n,:].
func EmbeddingBackward(dwte, dout []float64, tokens []int32, N, C int) {
	for n := 0; n < N; n++ {
		tok := int(tokens[n])
		dw := dwte[tok*C : (tok+1)*C]
		for i, g := range dout[n*C : (n+1)*C] {
			dw[i] += g
		}
	}
}

// RMSNormForward normalizes each of the N rows of inp (N,C) by its root mean
// square, with no mean subtraction and no bias:
// rstd = 1/sqrt(sum(x^2)/C + eps), out = x*rstd*w. It writes out (N,C) and
// rstd (N); rstd may be nil.
func RMSNormForward(out, rstd, inp, w []float64, N, C int, eps float64) {
	for n := 0; n < N; n++ {
		x := inp[n*C : (n+1)*C]
		ms := 0.0
		for _, v := range x {
			ms += v * v
		}
		s := 1 / math.Sqrt(ms/float64(C)+eps)
		o := out[n*C : (n+1)*C]
		for i, v := range x {
			o[i] = v * s * w[i]
		}
		if rstd != nil {
			rstd[n] = s
		}
	}
}

// RMSNormBackward uses the rstd saved by RMSNormForward. dinp (N,C) is
// ACCUMULATED (+=); dw (C) is OVERWRITTEN with the sum over the N rows.
func RMSNormBackward(dinp, dw, dout, inp, w, rstd []float64, N, C int) {
	clear(dw[:C])
	for n := 0; n < N; n++ {
		x := inp[n*C : (n+1)*C]
		d := dout[n*C : (n+1)*C]
		s := rstd[n]
		// dnorm = w*dout; dx = (dnorm - norm*mean(dnorm*norm))*rstd: the
		// LayerNorm formula without the mean(dnorm) term.
		meanDN := 0.0
		for i := range x {
			norm := x[i] * s
			meanDN += w[i] * d[i] * norm
			dw[i] += norm * d[i]
		}
		meanDN /= float64(C)
		di := dinp[n*C : (n+1)*C]
		for i := range x {
			di[i] += (w[i]*d[i] - x[i]*s*meanDN) * s
		}
	}
}

// RopeRotate applies the rotary position embedding of position pos to one
// head vector inp (hs, even) and writes out (hs); out may be inp. It uses the
// interleaved-pair convention of Meta's original LLaMA code and of llm.c's
// llama3 branch: the pair (x[2i], x[2i+1]) is rotated by the angle
// pos*theta^(-2i/hs), i < hs/2,
//
//	out[2i]   = x[2i]*cos - x[2i+1]*sin
//	out[2i+1] = x[2i]*sin + x[2i+1]*cos.
//
// Hugging Face's LlamaForCausalLM uses "rotate_half" instead, which pairs x[i]
// with x[i+hs/2]; its q and k projection rows are a permutation of these, so a
// dump for transformers must permute the rows of wq and wk within each head.
// No frequency scaling (llama 3.1's use_scaled_rope) is applied. A negative
// pos rotates backwards: RopeRotate by -pos is the transpose of RopeRotate by
// pos, which is how the backward pass uses it.
func RopeRotate(out, inp []float64, hs, pos int, theta float64) {
	for i := 0; i < hs/2; i++ {
		sin, cos := math.Sincos(float64(pos) * ropeFreq(i, hs, theta))
		x0, x1 := inp[2*i], inp[2*i+1]
		out[2*i] = x0*cos - x1*sin
		out[2*i+1] = x0*sin + x1*cos
	}
}

// ropeFreq is the angular frequency theta^(-2i/hs) of pair i.
func ropeFreq(i, hs int, theta float64) float64 {
	return math.Pow(theta, -float64(2*i)/float64(hs))
}

// RopeForward applies RopeRotate to every q and k head of the packed rows of
// qkv (B,T,(NH+2*NKV)*hs), laid out [q (NH*hs) | k (NKV*hs) | v (NKV*hs)], the
// row (b,t) at position pos0+t, and OVERWRITES out (same shape) with the
// rotated q and k and an unchanged copy of v. out may be qkv. A prefill uses
// pos0 = 0; a decode step of one token per sequence uses T = 1, pos0 = pos.
func RopeForward(out, qkv []float64, B, T, NH, NKV, hs, pos0 int, theta float64) {
	rope(out, qkv, B, T, NH, NKV, hs, pos0, theta, 1)
}

// RopeBackward OVERWRITES dqkv (B,T,(NH+2*NKV)*hs) with the gradient of
// RopeForward's output dout: each q and k head rotated back (by -(pos0+t)),
// v copied. dqkv may be dout.
func RopeBackward(dqkv, dout []float64, B, T, NH, NKV, hs, pos0 int, theta float64) {
	rope(dqkv, dout, B, T, NH, NKV, hs, pos0, theta, -1)
}

func rope(out, inp []float64, B, T, NH, NKV, hs, pos0 int, theta float64, sign int) {
	W := (NH + 2*NKV) * hs
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			r := (b*T + t) * W
			for h := 0; h < NH+NKV; h++ {
				RopeRotate(out[r+h*hs:r+(h+1)*hs], inp[r+h*hs:r+(h+1)*hs], hs, sign*(pos0+t), theta)
			}
			copy(out[r+(NH+NKV)*hs:r+W], inp[r+(NH+NKV)*hs:r+W])
		}
	}
}

// Silu is x*sigmoid(x).
func Silu(x float64) float64 { return x / (1 + math.Exp(-x)) }

// SiluGrad is the derivative of Silu: sigmoid(x)*(1 + x*(1 - sigmoid(x))).
func SiluGrad(x float64) float64 {
	s := 1 / (1 + math.Exp(-x))
	return s * (1 + x*(1-s))
}

// SwiGLUForward is the gate of the SwiGLU MLP out = (silu(x·W1ᵀ) ∘ x·W3ᵀ)·W2ᵀ:
// out[i] = Silu(h1[i])*h3[i] for i < n, with h1 = x·W1ᵀ and h3 = x·W3ᵀ.
func SwiGLUForward(out, h1, h3 []float64, n int) {
	for i := 0; i < n; i++ {
		out[i] = Silu(h1[i]) * h3[i]
	}
}

// SwiGLUBackward OVERWRITES dh1[i] = SiluGrad(h1[i])*h3[i]*dout[i] and
// dh3[i] = Silu(h1[i])*dout[i].
func SwiGLUBackward(dh1, dh3, dout, h1, h3 []float64, n int) {
	for i := 0; i < n; i++ {
		dh1[i] = SiluGrad(h1[i]) * h3[i] * dout[i]
		dh3[i] = Silu(h1[i]) * dout[i]
	}
}

// SwiGLURowsForward is SwiGLUForward on the N rows of h (N,2H), each laid
// out [h1 | h3] as the packed w13 product writes them: out is (N,H).
func SwiGLURowsForward(out, h []float64, N, H int) {
	for n := 0; n < N; n++ {
		r := h[n*2*H : (n+1)*2*H]
		SwiGLUForward(out[n*H:(n+1)*H], r[:H], r[H:], H)
	}
}

// SwiGLURowsBackward OVERWRITES dh (N,2H), each row [dh1 | dh3], from dout
// (N,H) and h as SwiGLURowsForward took it.
func SwiGLURowsBackward(dh, dout, h []float64, N, H int) {
	for n := 0; n < N; n++ {
		r, dr := h[n*2*H:(n+1)*2*H], dh[n*2*H:(n+1)*2*H]
		SwiGLUBackward(dr[:H], dr[H:], dout[n*H:(n+1)*H], r[:H], r[H:], H)
	}
}

// GQAttentionForward is causal grouped-query self-attention on qkv
// (B,T,(NH+2*NKV)*hs), each row laid out [q (NH*hs) | k (NKV*hs) | v (NKV*hs)].
// NH must be a multiple of NKV; query head h uses key/value head
// h/(NH/NKV), so consecutive query heads share one (Hugging Face's repeat_kv).
// For query t of head h the scores are s[t2] = q_t·k_t2/sqrt(hs) for t2 <= t;
// out (B,T,NH*hs) holds softmax(s)·v with the heads concatenated, and lse
// (B,NH,T) the natural-log logsumexp of s; lse may be nil. With NKV = NH it
// is AttentionForward with C = NH*hs.
func GQAttentionForward(out, lse, qkv []float64, B, T, NH, NKV, hs int) {
	W, group := (NH+2*NKV)*hs, NH/NKV
	scale := 1 / math.Sqrt(float64(hs))
	p := make([]float64, T)
	for b := 0; b < B; b++ {
		for h := 0; h < NH; h++ {
			ko, vo := (NH+h/group)*hs, (NH+NKV+h/group)*hs
			for t := 0; t < T; t++ {
				q := qkv[(b*T+t)*W+h*hs:][:hs]
				m := math.Inf(-1)
				for t2 := 0; t2 <= t; t2++ {
					p[t2] = dot64(q, qkv[(b*T+t2)*W+ko:][:hs]) * scale
					m = max(m, p[t2])
				}
				sum := 0.0
				for t2 := 0; t2 <= t; t2++ {
					sum += math.Exp(p[t2] - m)
				}
				l := m + math.Log(sum)
				if lse != nil {
					lse[(b*NH+h)*T+t] = l
				}
				o := out[(b*T+t)*NH*hs+h*hs:][:hs]
				clear(o)
				for t2 := 0; t2 <= t; t2++ {
					a := math.Exp(p[t2] - l)
					for i, v := range qkv[(b*T+t2)*W+vo:][:hs] {
						o[i] += a * v
					}
				}
			}
		}
	}
}

// GQAttentionBackward OVERWRITES dqkv (B,T,(NH+2*NKV)*hs) with the gradient
// of GQAttentionForward's output with respect to qkv, given dout
// (B,T,NH*hs). The k and v gradients sum over the NH/NKV query heads that
// share them. The probabilities are recomputed from qkv.
func GQAttentionBackward(dqkv, dout, qkv []float64, B, T, NH, NKV, hs int) {
	W, group := (NH+2*NKV)*hs, NH/NKV
	scale := 1 / math.Sqrt(float64(hs))
	clear(dqkv[:B*T*W])
	p := make([]float64, T)
	dp := make([]float64, T)
	for b := 0; b < B; b++ {
		for h := 0; h < NH; h++ {
			ko, vo := (NH+h/group)*hs, (NH+NKV+h/group)*hs
			for t := 0; t < T; t++ {
				q := qkv[(b*T+t)*W+h*hs:][:hs]
				dq := dqkv[(b*T+t)*W+h*hs:][:hs]
				do := dout[(b*T+t)*NH*hs+h*hs:][:hs]
				m := math.Inf(-1)
				for t2 := 0; t2 <= t; t2++ {
					p[t2] = dot64(q, qkv[(b*T+t2)*W+ko:][:hs]) * scale
					m = max(m, p[t2])
				}
				sum := 0.0
				for t2 := 0; t2 <= t; t2++ {
					p[t2] = math.Exp(p[t2] - m)
					sum += p[t2]
				}
				// dp = dout·v; dv += p*dout; ds = p*(dp - sum(p*dp)).
				pdp := 0.0
				for t2 := 0; t2 <= t; t2++ {
					p[t2] /= sum
					v := qkv[(b*T+t2)*W+vo:][:hs]
					dv := dqkv[(b*T+t2)*W+vo:][:hs]
					for i := range do {
						dv[i] += p[t2] * do[i]
					}
					dp[t2] = dot64(do, v)
					pdp += p[t2] * dp[t2]
				}
				for t2 := 0; t2 <= t; t2++ {
					ds := p[t2] * (dp[t2] - pdp) * scale
					k := qkv[(b*T+t2)*W+ko:][:hs]
					dk := dqkv[(b*T+t2)*W+ko:][:hs]
					for i := range q {
						dq[i] += ds * k[i]
						dk[i] += ds * q[i]
					}
				}
			}
		}
	}
}

// DecodeAttentionForward is the attention of one new token per sequence
// against a KV cache: q (B,NH*hs) holds the rotated queries of position pos,
// kc and vc (B,MaxT,NKV*hs) the rotated keys and the values, of which
// positions 0..pos (the new token's included) are read. It OVERWRITES out
// (B,NH*hs) with what GQAttentionForward gives for the row at pos.
func DecodeAttentionForward(out, q, kc, vc []float64, B, MaxT, pos, NH, NKV, hs int) {
	group, KV := NH/NKV, NKV*hs
	scale := 1 / math.Sqrt(float64(hs))
	p := make([]float64, pos+1)
	for b := 0; b < B; b++ {
		for h := 0; h < NH; h++ {
			kvo := (h / group) * hs
			qh := q[(b*NH+h)*hs:][:hs]
			m := math.Inf(-1)
			for t2 := 0; t2 <= pos; t2++ {
				p[t2] = dot64(qh, kc[(b*MaxT+t2)*KV+kvo:][:hs]) * scale
				m = max(m, p[t2])
			}
			sum := 0.0
			for t2 := 0; t2 <= pos; t2++ {
				sum += math.Exp(p[t2] - m)
			}
			l := m + math.Log(sum)
			o := out[(b*NH+h)*hs:][:hs]
			clear(o)
			for t2 := 0; t2 <= pos; t2++ {
				a := math.Exp(p[t2] - l)
				for i, v := range vc[(b*MaxT+t2)*KV+kvo:][:hs] {
					o[i] += a * v
				}
			}
		}
	}
}

func dot64(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}
