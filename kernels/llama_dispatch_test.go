package kernels

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The launchers of ptx/llama.cu on CI, without a GPU: module and entry by
// storage type, parameters as the PTX declares them, the bytes they count,
// the RMSNorm block shapes, and the shapes they refuse.

func llamaDispatchCases() []dispatchCase {
	const B, T, C, V, ld, maxT, pos0 = 3, 5, 100, 1003, 1024, 16, 7
	const NH, NKV, hs, H = 8, 2, 10, 37
	const N = B * T
	const W, KV = (NH + 2*NKV) * hs, NKV * hs
	f32, i32 := program.F32, program.I32
	null := program.View{}
	partials := RMSNormPartialSize(N, C)
	return []dispatchCase{
		{"llama", "embedding_forward", func(s program.Elem) program.Op {
			return EmbeddingForward(view("out", s, N*C), view("tokens", i32, N), view("wte", s, V*C), N, C)
		}, 2 * N * C, 4 * N},
		{"llama", "gather_rows", func(s program.Elem) program.Op {
			return GatherRows(view("out", s, B*C), view("inp", s, N*C), B, T, C, T-1)
		}, 2 * B * C, 0},
		{"llama", "rmsnorm_forward", func(s program.Elem) program.Op {
			return RMSNormForward(view("out", s, N*C), view("rstd", f32, N), view("inp", s, N*C), view("w", s, C), N, C, 1e-5)
		}, 2*N*C + C, 4 * N},
		{"llama", "rmsnorm_forward", func(s program.Elem) program.Op {
			return RMSNormForward(view("out", s, N*C), null, view("inp", s, N*C), view("w", s, C), N, C, 1e-5)
		}, 2*N*C + C, 0},
		{"llama", "rmsnorm_backward_input", func(s program.Elem) program.Op {
			return RMSNormBackward(view("dinp", s, N*C), view("dw", s, C), view("scratch", f32, partials), view("dout", s, N*C),
				view("inp", s, N*C), view("w", s, C), view("rstd", f32, N), N, C)[0]
		}, 2*N*C + 2*N*C + C, 4 * int64(partials+N)},
		{"llama", "rmsnorm_backward_params", func(s program.Elem) program.Op {
			return RMSNormBackward(view("dinp", s, N*C), view("dw", s, C), view("scratch", f32, partials), view("dout", s, N*C),
				view("inp", s, N*C), view("w", s, C), view("rstd", f32, N), N, C)[1]
		}, C, 4 * int64(partials)},
		{"llama", "rope_forward", func(s program.Elem) program.Op {
			return RoPEForward(view("qkv", s, N*W), null, null, B, T, 0, NH, NKV, hs, maxT, 5e5)
		}, 2 * N * (NH + NKV) * hs, 0},
		{"llama", "rope_forward", func(s program.Elem) program.Op {
			return RoPEForward(view("qkv", s, N*W), view("k", s, B*maxT*KV), view("v", s, B*maxT*KV), B, T, pos0, NH, NKV, hs, maxT, 5e5)
		}, 2*N*(NH+NKV)*hs + 3*N*KV, 0},
		{"llama", "rope_backward", func(s program.Elem) program.Op {
			return RoPEBackward(view("dqkv", s, N*W), B, T, 0, NH, NKV, hs, 1e4)
		}, 2 * N * (NH + NKV) * hs, 0},
		{"llama", "swiglu_forward", func(s program.Elem) program.Op {
			return SwiGLUForward(view("out", s, N*H), view("h", s, 2*N*H), N, H)
		}, 3 * N * H, 0},
		{"llama", "swiglu_backward", func(s program.Elem) program.Op {
			return SwiGLUBackward(view("dh", s, 2*N*H), view("dout", s, N*H), view("h", s, 2*N*H), N, H)
		}, 5 * N * H, 0},
		{"llama", "swiglu_backward", func(s program.Elem) program.Op { // in place, as the model runs it
			h := view("h", s, 2*N*H)
			return SwiGLUBackward(h, view("dout", s, N*H), h, N, H)
		}, 5 * N * H, 0},
		{"llama", "argmax", func(s program.Elem) program.Op {
			return Argmax(view("next", i32, B), view("gen", i32, B*4), view("logits", s, B*ld), B, V, ld, 2, 4)
		}, B * V, 4 * 2 * B},
		{"llama", "argmax", func(s program.Elem) program.Op {
			return Argmax(view("next", i32, B), null, view("logits", s, (B-1)*ld+V), B, V, ld, 0, 0)
		}, B * V, 4 * B},
	}
}

func TestLlamaDispatch(t *testing.T) {
	launched := map[string]bool{}
	for i, c := range llamaDispatchCases() {
		for _, s := range []program.Elem{program.F32, program.BF16} {
			t.Run(fmt.Sprintf("%d-%s-%s", i, c.entry, s), func(t *testing.T) {
				op := c.build(s)
				module, entry := c.module, c.entry
				if s == program.BF16 {
					module, entry = module+"_bf16", entry+"_bf16"
				}
				if op.Module != module || op.Name != entry {
					t.Fatalf("%s storage launches %s/%s, want %s/%s", s, op.Module, op.Name, module, entry)
				}
				launched[op.Module+"/"+op.Name] = true
				matchesPTX(t, op)
				if want := c.stored*s.Size() + c.fixed; op.Bytes != want {
					t.Errorf("%s storage: %d bytes, want %d (%d elements of %d bytes, %d bytes of f32 and i32)",
						s, op.Bytes, want, c.stored, s.Size(), c.fixed)
				}
				if op.FLOPs < 0 || (op.FLOPs == 0) != (c.entry == "embedding_forward" || c.entry == "gather_rows") {
					t.Errorf("%d FLOPs: only the copies count none", op.FLOPs)
				}
			})
		}
	}
	for _, mod := range []string{"llama", "llama_bf16"} {
		for _, e := range ptx.Entries(mod) {
			if !launched[mod+"/"+e] {
				t.Errorf("%s.ptx: entry %s is no launcher's", mod, e)
			}
		}
	}
	target, ok := ptx.ModuleTarget("llama_bf16")
	if !ok || target.SM != 80 || target.ArchSpecific {
		t.Errorf("llama_bf16.ptx targets %v, want sm_80", target)
	}
	if target, ok := ptx.ModuleTarget("llama"); !ok || target.SM != 70 {
		t.Errorf("llama.ptx targets %v, want sm_70 (as layernorm.ptx)", target)
	}
	for _, e := range ptx.Entries("llama_bf16") {
		twin, ok := strings.CutSuffix(e, "_bf16")
		p16, _ := ptx.Params("llama_bf16", e)
		p32, ok32 := ptx.Params("llama", twin)
		if !ok || !ok32 || !slices.Equal(p16, p32) {
			t.Errorf("llama_bf16/%s has parameters %v, its fp32 twin llama/%s %v", e, p16, twin, p32)
		}
	}
}

// TestRMSNormShape: whole warps a row, at most a block's threads; decode
// rows spread over many threads, prefill rows over a warp or two; and the
// kernel's limit of 32 warps a block (one shared partial each).
func TestRMSNormShape(t *testing.T) {
	for _, s := range []program.Elem{program.F32, program.BF16} {
		for _, N := range []int{1, 2, 8, 33, 512, 4096, 65536} {
			for _, C := range []int{1, 31, 100, 768, 4096, 8192} {
				tpr, rows := rmsNormShape(N, C, s)
				if tpr%ptx.WarpSize != 0 || tpr < ptx.WarpSize || tpr > ptx.MaxBlockThreads || tpr&(tpr-1) != 0 {
					t.Errorf("%s N=%d C=%d: %d threads a row", s, N, C, tpr)
				}
				if rows < 1 || rows > N || tpr*rows > max(ptx.RMSNormBlock, tpr) {
					t.Errorf("%s N=%d C=%d: %d rows of %d threads a block", s, N, C, rows, tpr)
				}
				if N*tpr > ptx.RMSNormFillThreads && tpr > ptx.WarpSize {
					t.Errorf("%s N=%d C=%d: %d threads a row, %d in all", s, N, C, tpr, N*tpr)
				}
				if tpr > ptx.WarpSize && (tpr/2)*vector(s) >= C {
					t.Errorf("%s N=%d C=%d: %d threads a row, more than one vector each", s, N, C, tpr)
				}
			}
		}
	}
	// The two shapes the model runs most at llama's C = 4096.
	if tpr, _ := rmsNormShape(8, 4096, program.BF16); tpr != 512 {
		t.Errorf("decode (N=8, C=4096, bf16): %d threads a row, want 512 (one 8-element vector each)", tpr)
	}
	if tpr, rows := rmsNormShape(4096, 4096, program.BF16); tpr != 64 || rows != 4 {
		t.Errorf("prefill (N=4096, C=4096, bf16): %d threads a row, %d rows a block; want 64, 4", tpr, rows)
	}
}

// TestLlamaRefusals: shapes and argument sets the kernels cannot run
// panic in the launcher rather than launch.
func TestLlamaRefusals(t *testing.T) {
	const B, T, NH, NKV, hs, maxT = 2, 4, 4, 2, 8, 8
	f32, bf, i32 := program.F32, program.BF16, program.I32
	null := program.View{}
	qkv := view("qkv", f32, B*T*(NH+2*NKV)*hs)
	cache := view("k", f32, B*maxT*NKV*hs)
	for _, c := range []struct {
		name  string
		build func()
	}{
		{"rope k cache without v cache", func() { RoPEForward(qkv, cache, null, B, T, 0, NH, NKV, hs, maxT, 1e4) }},
		{"rope v cache without k cache", func() { RoPEForward(qkv, null, cache, B, T, 0, NH, NKV, hs, maxT, 1e4) }},
		{"rope past the cache", func() { RoPEForward(qkv, cache, cache, B, T, maxT-T+1, NH, NKV, hs, maxT, 1e4) }},
		{"rope odd head size", func() { RoPEBackward(qkv, B, T, 0, NH, NKV, 7, 1e4) }},
		{"rope bf16 cache, f32 qkv", func() {
			RoPEForward(qkv, view("k", bf, B*maxT*NKV*hs), view("v", bf, B*maxT*NKV*hs), B, T, 0, NH, NKV, hs, maxT, 1e4)
		}},
		{"rmsnorm bf16 rstd", func() {
			RMSNormForward(view("o", bf, 8), view("r", bf, 1), view("i", bf, 8), view("w", bf, 8), 1, 8, 1e-5)
		}},
		{"rmsnorm bf16 partials", func() {
			RMSNormBackward(view("d", bf, 8), view("dw", bf, 8), view("s", bf, 8), view("do", bf, 8), view("i", bf, 8),
				view("w", bf, 8), view("r", f32, 1), 1, 8)
		}},
		{"embedding f32 tokens", func() { EmbeddingForward(view("o", f32, 8), view("t", f32, 1), view("w", f32, 80), 1, 8) }},
		{"argmax f32 next", func() { Argmax(view("n", f32, 1), null, view("l", f32, 10), 1, 10, 10, 0, 0) }},
		{"argmax ld < V", func() { Argmax(view("n", i32, 2), null, view("l", f32, 20), 2, 10, 9, 0, 0) }},
		{"argmax column past newTokens", func() {
			Argmax(view("n", i32, 1), view("g", i32, 4), view("l", f32, 10), 1, 10, 10, 4, 4)
		}},
		{"gather position past T", func() { GatherRows(view("o", f32, 8), view("i", f32, 32), 2, 2, 8, 2) }},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("%s: no panic", c.name)
				}
			}()
			c.build()
		}()
	}
}
