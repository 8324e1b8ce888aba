package kernels

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/llama.cu: LLaMA's embedding, RMSNorm, RoPE and SwiGLU,
// and the argmax and row gather of token generation. The stored tensors
// are all f32 (module llama) or all bf16 (module llama_bf16, elem.go); rstd
// and the RMSNorm partials are f32 and the token ids i32 in both.
// Embedding and gather are copies and count no FLOPs.

// EmbeddingForward writes out (N,C) = wte[tokens[n],:] for the N int32 ids
// of tokens, each in [0, V) for wte (V,C).
func EmbeddingForward(out, tokens, wte program.View, N, C int) program.Op {
	s := storage("embedding_forward", out, wte)
	require("embedding_forward", program.I32, tokens)
	op := stored(s, "llama", "embedding_forward", program.D1(max(ceilDiv(copyWork(s, N, C), ptx.LlamaBlock), 1)), program.D1(ptx.LlamaBlock),
		program.Out("out", out, int64(N*C)), program.In("tokens", tokens, int64(N)), program.In("wte", wte, wte.Elems),
		program.Int("N", N), program.Int("C", C))
	// The rows of wte it reads are at most N·C elements.
	op.Bytes = s.Size()*int64(N*C+min(N*C, int(wte.Elems))) + 4*int64(N)
	return op
}

// GatherRows writes out (B,C) = row b·T + t of inp (B·T,C) for each b: the
// hidden state of position t of every sequence.
func GatherRows(out, inp program.View, B, T, C, t int) program.Op {
	if t < 0 || t >= T {
		panic(fmt.Sprintf("kernels: gather_rows: position %d outside 0..%d", t, T-1))
	}
	s := storage("gather_rows", out, inp)
	op := stored(s, "llama", "gather_rows", program.D1(max(ceilDiv(copyWork(s, B, C), ptx.LlamaBlock), 1)), program.D1(ptx.LlamaBlock),
		program.Out("out", out, int64(B*C)), program.In("inp", inp, int64(max((B-1)*T+t+1, 0)*C)),
		program.Int("B", B), program.Int("T", T), program.Int("C", C), program.Int("t", t))
	op.Bytes = s.Size() * int64(2*B*C)
	return op
}

// copyWork is the threads' work items of a copy of N rows of C elements of
// s: 16-byte vectors when C fills them exactly (the kernel's fast path),
// elements otherwise.
func copyWork(s program.Elem, N, C int) int {
	if v := vector(s); C%v == 0 {
		return N * C / v
	}
	return N * C
}

// RMSNormForward normalises the N rows of inp (N,C) by their root mean
// square: rstd = 1/sqrt(mean(x²) + eps), out = x·rstd·w, and saves rstd (N,
// f32) for the backward; rstd may be a null view to skip it.
func RMSNormForward(out, rstd, inp, w program.View, N, C int, eps float32) program.Op {
	s := storage("rmsnorm_forward", out, inp, w)
	require("rmsnorm_forward", program.F32, rstd)
	tpr, rows := rmsNormShape(N, C, s)
	op := stored(s, "llama", "rmsnorm_forward", program.D1(max(ceilDiv(N, rows), 1)), program.D2(tpr, rows),
		program.Out("out", out, int64(N*C)), program.Out("rstd", rstd, optional(rstd, N)),
		program.In("inp", inp, int64(N*C)), program.In("weight", w, int64(C)),
		program.Int("N", N), program.Int("C", C), program.Float("eps", eps))
	op.FLOPs = int64(N*C) * RMSNormFwdFLOPs
	return op
}

// rmsNormShape is rmsnorm_forward's block: tpr threads per row (a power of
// two from one warp to MaxBlockThreads) and rows rows. A row gets threads
// up to one 16-byte vector each, then fewer, halving, while N rows would
// hold more than ptx.RMSNormFillThreads: prefill rows (thousands) get a
// warp or two, decode rows (a handful) up to a whole block each. Rows of
// fewer than RMSNormBlock threads share blocks of RMSNormBlock. The
// reduction's order follows tpr, so it is a function of N, C and the
// storage type alone.
func rmsNormShape(N, C int, s program.Elem) (tpr, rows int) {
	tpr = ptx.WarpSize
	for tpr < ptx.MaxBlockThreads && tpr*vector(s) < C {
		tpr *= 2
	}
	for tpr > ptx.WarpSize && N*tpr > ptx.RMSNormFillThreads {
		tpr /= 2
	}
	return tpr, max(1, min(ptx.RMSNormBlock/tpr, N))
}

// RMSNormPartialSize is the size, in floats, of the scratch buffer the
// RMSNorm backward needs for N rows of C channels: one row of C partial dw
// sums per chunk of ptx.RMSNormBwdRows rows. It is only live between the
// backward's two launches.
func RMSNormPartialSize(N, C int) int { return ceilDiv(N, ptx.RMSNormBwdRows) * C }

// RMSNormBackward is the whole RMSNorm backward, two launches: the input
// gradient (dinp (N,C) +=, ACCUMULATED) with the per-chunk partial sums of
// dw into scratch (RMSNormPartialSize(N, C) floats), then dw (C) =, the sum
// of the partials in a fixed order (deterministic). rstd is the
// forward's.
func RMSNormBackward(dinp, dw, scratch, dout, inp, w, rstd program.View, N, C int) []program.Op {
	s := storage("rmsnorm_backward", dinp, dw, dout, inp, w)
	require("rmsnorm_backward", program.F32, scratch, rstd)
	partials := int64(RMSNormPartialSize(N, C))
	in := stored(s, "llama", "rmsnorm_backward_input", program.D1(max(ceilDiv(N, ptx.RMSNormBwdRows), 1)), program.D1(ptx.RMSNormBlock),
		program.InOut("dinp", dinp, int64(N*C)), program.Out("scratch", scratch, partials),
		program.In("dout", dout, int64(N*C)), program.In("inp", inp, int64(N*C)), program.In("weight", w, int64(C)),
		program.In("rstd", rstd, int64(N)), program.Int("N", N), program.Int("C", C))
	in.FLOPs = int64(N*C) * RMSNormBwdFLOPs
	params := stored(s, "llama", "rmsnorm_backward_params", program.D1(max(ceilDiv(C, ptx.RMSNormParamsCols), 1)),
		program.D2(ptx.RMSNormParamsCols, ptx.RMSNormParamsSlices),
		program.Out("dw", dw, int64(C)), program.In("scratch", scratch, partials), program.Int("N", N), program.Int("C", C))
	params.FLOPs = int64(N*C) * RMSNormParamsFLOPs
	return []program.Op{in, params}
}

// ropeCheck panics on a RoPE shape the kernels cannot run: the head size
// must be even (the rotation turns pairs).
func ropeCheck(entry string, hs int) {
	if hs < 2 || hs%2 != 0 {
		panic(fmt.Sprintf("kernels: %s: head size %d is not a positive even number", entry, hs))
	}
}

// RoPEForward rotates, IN PLACE, every q and k head of the B·T rows of qkv
// (each (NH+2·NKV)·hs wide, [q NH·hs | k NKV·hs | v NKV·hs]) by the angles
// of position pos0+t (model/ref.RopeRotate's interleaved pairs, frequency
// theta^(−2i/hs)). If kcache and vcache are non-null (both or neither),
// it also writes the rotated k and the v of row (b,t) into cache row (b,
// pos0+t) of the caches (B, MaxT, NKV·hs); the other rows are untouched.
// A prefill passes pos0 = 0, a decode step T = 1 and pos0 = pos.
func RoPEForward(qkv, kcache, vcache program.View, B, T, pos0, NH, NKV, hs, MaxT int, theta float32) program.Op {
	ropeCheck("rope_forward", hs)
	if kcache.IsNull() != vcache.IsNull() {
		panic("kernels: rope_forward: kcache and vcache must be both null or both non-null")
	}
	cache := !kcache.IsNull()
	if cache && (pos0 < 0 || pos0+T > MaxT) {
		panic(fmt.Sprintf("kernels: rope_forward: positions %d..%d do not fit a cache of %d", pos0, pos0+T-1, MaxT))
	}
	s := storage("rope_forward", qkv, kcache, vcache)
	N, KV := B*T, NKV*hs
	work := N * (NH + NKV) * hs / 2 // one thread per rotated pair
	cacheElems := 0
	if cache {
		work = max(work, N*KV) // and per v element copied
		cacheElems = B * MaxT * KV
	}
	op := stored(s, "llama", "rope_forward", program.D1(max(ceilDiv(work, ptx.LlamaBlock), 1)), program.D1(ptx.LlamaBlock),
		program.InOut("qkv", qkv, int64(N*(NH+2*NKV)*hs)),
		program.Out("kcache", kcache, int64(cacheElems)), program.Out("vcache", vcache, int64(cacheElems)),
		program.Int("B", B), program.Int("T", T), program.Int("pos0", pos0), program.Int("NH", NH), program.Int("NKV", NKV),
		program.Int("hs", hs), program.Int("MaxT", MaxT), program.Float("theta", theta))
	op.FLOPs = int64(N*(NH+NKV)*hs) * RoPEFLOPs
	// q and k are read and written; with a cache, v is read and N rows of
	// each cache are written.
	moved := 2 * N * (NH + NKV) * hs
	if cache {
		moved += 3 * N * KV
	}
	op.Bytes = s.Size() * int64(moved)
	return op
}

// RoPEBackward rotates, in place, the q and k heads of the gradient dqkv
// (laid out as RoPEForward's qkv) back by −(pos0+t); v is untouched.
func RoPEBackward(dqkv program.View, B, T, pos0, NH, NKV, hs int, theta float32) program.Op {
	ropeCheck("rope_backward", hs)
	s := storage("rope_backward", dqkv)
	N := B * T
	op := stored(s, "llama", "rope_backward", program.D1(max(ceilDiv(N*(NH+NKV)*hs/2, ptx.LlamaBlock), 1)), program.D1(ptx.LlamaBlock),
		program.InOut("dqkv", dqkv, int64(N*(NH+2*NKV)*hs)),
		program.Int("B", B), program.Int("T", T), program.Int("pos0", pos0), program.Int("NH", NH), program.Int("NKV", NKV),
		program.Int("hs", hs), program.Float("theta", theta))
	op.FLOPs = int64(N*(NH+NKV)*hs) * RoPEFLOPs
	op.Bytes = s.Size() * int64(2*N*(NH+NKV)*hs)
	return op
}

// SwiGLUForward writes out (N,H) = silu(h1)·h3 for the rows of h (N,2H),
// each [h1 (H) | h3 (H)].
func SwiGLUForward(out, h program.View, N, H int) program.Op {
	s := storage("swiglu_forward", out, h)
	op := stored(s, "llama", "swiglu_forward", program.D1(max(ceilDiv(copyWork(s, N, H), ptx.LlamaBlock), 1)), program.D1(ptx.LlamaBlock),
		program.Out("out", out, int64(N*H)), program.In("h", h, int64(2*N*H)), program.Int("N", N), program.Int("H", H))
	op.FLOPs = int64(N*H) * SwiGLUFwdFLOPs
	return op
}

// SwiGLUBackward OVERWRITES dh (N,2H), rows [dh1 | dh3], with the gradient
// of SwiGLUForward given dout (N,H) (model/ref.SwiGLURowsBackward). dh may
// be h (in place).
func SwiGLUBackward(dh, dout, h program.View, N, H int) program.Op {
	s := storage("swiglu_backward", dh, dout, h)
	d := program.Out("dh", dh, int64(2*N*H))
	hin := program.In("h", h, int64(2*N*H))
	if dh == h {
		d.Access = program.ReadWrite
		hin.Touch = 0 // one pass, read and written in place
	}
	op := stored(s, "llama", "swiglu_backward", program.D1(max(ceilDiv(copyWork(s, N, H), ptx.LlamaBlock), 1)), program.D1(ptx.LlamaBlock),
		d, program.In("dout", dout, int64(N*H)), hin, program.Int("N", N), program.Int("H", H))
	op.FLOPs = int64(N*H) * SwiGLUBwdFLOPs
	return op
}

// Argmax writes next[b] (i32) = the index of the largest of the first V
// logits of row b, for B rows ld ≥ V elements apart: ties go to the lowest
// index, and a row with a NaN gives its first NaN's index. If generated
// (B, newTokens, i32) is non-null it also writes generated[b·newTokens +
// col] = next[b]. One block per row.
func Argmax(next, generated, logits program.View, B, V, ld, col, newTokens int) program.Op {
	if V < 1 {
		panic(fmt.Sprintf("kernels: argmax: %d logits a row", V))
	}
	if !generated.IsNull() && (col < 0 || col >= newTokens) {
		panic(fmt.Sprintf("kernels: argmax: column %d outside 0..%d", col, newTokens-1))
	}
	s := storage("argmax", logits)
	require("argmax", program.I32, next, generated)
	op := stored(s, "llama", "argmax", program.D1(max(B, 1)), program.D1(ptx.ArgmaxThreads),
		program.Out("next", next, int64(B)), program.Out("generated", generated, optional(generated, B*newTokens)),
		program.In("logits", logits, logitsSpan(B, V, ld)),
		program.Int("B", B), program.Int("V", V), program.Int("ld", ld), program.Int("col", col), program.Int("newTokens", newTokens))
	op.FLOPs = int64(B*V) * ArgmaxFLOPs
	// It reads V logits a row and writes one id a row to each output.
	op.Bytes = s.Size()*int64(B*V) + 4*int64(B) + 4*optional(generated, B)
	return op
}
