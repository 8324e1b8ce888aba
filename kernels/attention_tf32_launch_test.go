package kernels

import (
	"fmt"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// TestAttentionTF32Ops runs on CI, without a GPU: the TF32 attention
// launches count the FLOPs and bytes of the fp32 ones they replace, have
// the same grids (one block per tile of ptx.AttentionTF32*Rows rows and
// query or kv head), pass the arguments their PTX entries declare, opt in
// to their shared memory, and the backward reuses attention.cu's fp32
// preprocess.
func TestAttentionTF32Ops(t *testing.T) {
	for _, sh := range []struct{ b, t, c, nh, nkv int }{{8, 1024, 768, 12, 12}, {3, 301, 256, 4, 2}, {2, 1, 128, 2, 1}, {1, 129, 512, 8, 1}} {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		what := fmt.Sprintf("%+v", sh)
		w := (nh + 2*nkv) * (c / nh)
		n, nq, nl := b*tt*c, b*tt*w, b*nh*tt
		qkv, out, dout, dqkv := view("qkv", program.F32, nq), view("out", program.F32, n), view("dout", program.F32, n), view("dqkv", program.F32, nq)
		lse, d := view("lse", program.F32, nl), view("d", program.F32, nl)
		tf := append([]program.Op{AttentionForwardTF32(out, lse, qkv, b, tt, c, nh, nkv)}, AttentionBackwardTF32(dqkv, d, dout, qkv, out, lse, b, tt, c, nh, nkv)...)
		f32 := append([]program.Op{AttentionForward(out, lse, qkv, b, tt, c, nh, nkv)}, AttentionBackward(dqkv, d, dout, qkv, out, lse, b, tt, c, nh, nkv)...)
		if len(tf) != 4 {
			t.Fatalf("%s: %d ops, want forward, preprocess, dkdv, dq", what, len(tf))
		}
		wantMod := []string{"attention_tf32", "attention", "attention_tf32", "attention_tf32"}
		wantName := []string{"attention_forward_tf32", "attention_backward_preprocess", "attention_backward_dkdv_tf32", "attention_backward_dq_tf32"}
		rows := []int{ptx.AttentionTF32ForwardRows, 0, ptx.AttentionTF32DKDVRows, ptx.AttentionTF32DQRows}
		heads := []int{nh, 0, nkv, nh}
		shared := []int{ptx.AttentionTF32ForwardSharedBytes, 0, ptx.AttentionTF32DKDVSharedBytes, ptx.AttentionTF32DQSharedBytes}
		for i, op := range tf {
			f := f32[i]
			if op.Module != wantMod[i] || op.Name != wantName[i] {
				t.Errorf("%s: op %d is %s/%s, want %s/%s", what, i, op.Module, op.Name, wantMod[i], wantName[i])
			}
			if op.FLOPs != f.FLOPs || op.MatmulFLOPs != f.MatmulFLOPs || op.Bytes != f.Bytes {
				t.Errorf("%s: %s counts %d FLOPs (%d matmul), %d bytes; fp32 %s %d (%d), %d", what, op.Name, op.FLOPs, op.MatmulFLOPs, op.Bytes, f.Name, f.FLOPs, f.MatmulFLOPs, f.Bytes)
			}
			if i != 1 {
				if g := program.D3(ceilDiv(tt, rows[i]), heads[i], b); op.Grid != g || op.Block != program.D1(ptx.AttentionTF32Threads) {
					t.Errorf("%s: %s grid %v block %v, want %v and %d threads", what, op.Name, op.Grid, op.Block, g, ptx.AttentionTF32Threads)
				}
			} else if op.Grid != f.Grid || op.Block != f.Block {
				t.Errorf("%s: preprocess grid %v block %v, fp32 %v %v", what, op.Grid, op.Block, f.Grid, f.Block)
			}
			if op.SharedBytes != shared[i] {
				t.Errorf("%s: %s asks for %d B of shared memory, want %d", what, op.Name, op.SharedBytes, shared[i])
			}
			matchesPTX(t, op)
		}
	}

	mustPanic := func(what string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", what)
			}
		}()
		f()
	}
	B, T, C, NH := 2, 37, 256, 4
	n, nq, nl := B*T*C, B*T*3*C, B*NH*T
	out, lse, qkv := view("out", program.F32, n), view("lse", program.F32, nl), view("qkv", program.F32, nq)
	mustPanic("head size 32", func() { AttentionForwardTF32(out, lse, qkv, B, T, C, 8, 8) })
	mustPanic("head size 128", func() { AttentionForwardTF32(out, lse, qkv, B, T, C, 2, 2) })
	mustPanic("bf16 qkv", func() { AttentionForwardTF32(out, lse, view("qkv", program.BF16, nq), B, T, C, NH, NH) })
	mustPanic("qkv 2 elements in", func() { AttentionForwardTF32(out, lse, qkv.Buf.Slice("qkv", 2, int64(nq-4)), B, T, C, NH, NH) })
	mustPanic("NKV not dividing NH", func() { AttentionForwardTF32(out, lse, qkv, B, T, C, NH, 3) })
	mustPanic("bf16 dqkv", func() {
		AttentionBackwardTF32(view("dqkv", program.BF16, nq), view("d", program.F32, nl), out, qkv, out, lse, B, T, C, NH, NH)
	})
}

// TestAttentionTF32Fits: head size 64, fp32 views, the row tensors at
// whole 16-byte chunks; the caller takes the fp32 kernels for anything else.
func TestAttentionTF32Fits(t *testing.T) {
	f := func(name string, n int) program.View { return view(name, program.F32, n) }
	out, lse, qkv, dqkv, dout, d := f("out", 4096), f("lse", 64), f("qkv", 3*4096), f("dqkv", 3*4096), f("dout", 4096), f("d", 64)
	at := func(v program.View, off int64) program.View { return v.Buf.Slice(v.Buf.Name, off, 8) }
	cases := []struct {
		what                         string
		out, lse, qkv, dqkv, dout, d program.View
		C, NH                        int
		want                         bool
	}{
		{"hs 64", out, lse, qkv, dqkv, dout, d, 768, 12, true},
		{"hs 32", out, lse, qkv, dqkv, dout, d, 768, 24, false},
		{"hs 128", out, lse, qkv, dqkv, dout, d, 768, 6, false},
		{"C not a multiple of NH", out, lse, qkv, dqkv, dout, d, 770, 12, false},
		{"no heads", out, lse, qkv, dqkv, dout, d, 768, 0, false},
		{"bf16 out", view("out", program.BF16, 4096), lse, qkv, dqkv, dout, d, 768, 12, false},
		{"bf16 lse", out, view("lse", program.BF16, 64), qkv, dqkv, dout, d, 768, 12, false},
		{"qkv 2 elements in", out, lse, at(qkv, 2), dqkv, dout, d, 768, 12, false},
		{"qkv 4 elements in", out, lse, at(qkv, 4), dqkv, dout, d, 768, 12, true},
		{"out 2 elements in", at(out, 2), lse, qkv, dqkv, dout, d, 768, 12, false},
		{"lse and d 1 element in", out, at(lse, 1), qkv, dqkv, dout, at(d, 1), 768, 12, true},
		{"null qkv", out, lse, program.View{}, dqkv, dout, d, 768, 12, false},
	}
	for _, c := range cases {
		if got := AttentionTF32ForwardFits(c.out, c.lse, c.qkv, c.C, c.NH); got != c.want {
			t.Errorf("%s: AttentionTF32ForwardFits = %v, want %v", c.what, got, c.want)
		}
		if got := AttentionTF32BackwardFits(c.dqkv, c.d, c.dout, c.qkv, c.out, c.lse, c.C, c.NH); got != c.want {
			t.Errorf("%s: AttentionTF32BackwardFits = %v, want %v", c.what, got, c.want)
		}
	}
	// The backward's own views.
	for _, c := range []struct {
		what          string
		dqkv, dout, d program.View
		want          bool
	}{
		{"dqkv 2 elements in", at(dqkv, 2), dout, d, false},
		{"dout 6 elements in", dqkv, at(dout, 6), d, false},
		{"bf16 d", dqkv, dout, view("d", program.BF16, 64), false},
		{"dqkv 8 elements in", at(dqkv, 8), dout, d, true},
	} {
		if got := AttentionTF32BackwardFits(c.dqkv, c.d, c.dout, qkv, out, lse, 768, 12); got != c.want {
			t.Errorf("%s: AttentionTF32BackwardFits = %v, want %v", c.what, got, c.want)
		}
	}
}
