package kernels

import (
	"fmt"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// TestAttentionWGMMABackwardOps runs on CI, without a GPU: the Hopper
// attention backward is the mma preprocess and two wgmma kernels that pass
// the arguments their PTX entries declare (the dout and qkv tensor maps
// third and fourth), count the FLOPs and bytes of the mma kernels, take a
// persistent grid of min(units, SMs) (units over NKV heads for dkdv, NH
// for dq), opt in to their shared memory, and describe qkv and dout to TMA
// as B·T rows in boxes of one head by ptx.AttentionWGMMABackwardBoxRows.
func TestAttentionWGMMABackwardOps(t *testing.T) {
	for _, sh := range []struct{ b, t, c, nh, nkv int }{{8, 1024, 768, 12, 12}, {3, 301, 256, 4, 2}, {2, 1, 128, 2, 1}, {1, 129, 512, 8, 8}} {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		w := (nh + 2*nkv) * (c / nh)
		n, nq, nl := b*tt*c, b*tt*w, b*nh*tt
		dqkv, d, dout := view("dqkv", program.BF16, nq), view("d", program.F32, nl), view("dout", program.BF16, n)
		qkv, out, lse := view("qkv", program.BF16, nq), view("out", program.BF16, n), view("lse", program.F32, nl)
		mma := AttentionBackwardMMA(dqkv, d, dout, qkv, out, lse, b, tt, c, nh, nkv)
		if !AttentionBackwardWGMMAFits(dqkv, d, dout, qkv, out, lse, c, nh) {
			t.Fatalf("%+v: whole tensors do not fit", sh)
		}
		for _, sms := range []int{1, 5, 132} {
			what := fmt.Sprintf("%+v sms %d", sh, sms)
			ops := AttentionBackwardWGMMA(dqkv, d, dout, qkv, out, lse, b, tt, c, nh, nkv, sms)
			if len(ops) != 3 || ops[0].Module != mma[0].Module || ops[0].Name != mma[0].Name {
				t.Fatalf("%s: %d ops, want the mma preprocess and two kernels", what, len(ops))
			}
			for i, k := range []struct {
				entry  string
				heads  int
				shared int
			}{{"attention_backward_dkdv_wgmma", nkv, ptx.AttentionWGMMABackwardDKDVSharedBytes}, {"attention_backward_dq_wgmma", nh, ptx.AttentionWGMMABackwardDQSharedBytes}} {
				op, ref := ops[i+1], mma[i+1]
				if op.Module != "attention_wgmma_bwd" || op.Name != k.entry {
					t.Fatalf("%s: launches %s/%s, want %s", what, op.Module, op.Name, k.entry)
				}
				if op.FLOPs != ref.FLOPs || op.MatmulFLOPs != ref.MatmulFLOPs || op.Bytes != ref.Bytes {
					t.Errorf("%s: %s %d FLOPs (%d matmul), %d bytes; the mma kernel %d (%d), %d", what, k.entry, op.FLOPs, op.MatmulFLOPs, op.Bytes, ref.FLOPs, ref.MatmulFLOPs, ref.Bytes)
				}
				units := ceilDiv(tt, ptx.AttentionWGMMABackwardRows) * k.heads * b
				if want := program.D1(min(units, sms)); op.Grid != want || op.Block != program.D1(ptx.AttentionWGMMABackwardThreads) {
					t.Errorf("%s: %s grid %v block %v, want %v and %d threads", what, k.entry, op.Grid, op.Block, want, ptx.AttentionWGMMABackwardThreads)
				}
				if op.SharedBytes != k.shared {
					t.Errorf("%s: %s %d bytes of shared memory, want %d", what, k.entry, op.SharedBytes, k.shared)
				}
				box := ptx.AttentionWGMMABackwardBoxRows
				wantDout := program.TensorMap{Inner: int64(c), Outer: int64(b * tt), Stride: int64(c), BoxInner: 64, BoxOuter: box}
				wantQKV := program.TensorMap{Inner: int64(w), Outer: int64(b * tt), Stride: int64(w), BoxInner: 64, BoxOuter: box}
				if m := op.Args[2].Map; m == nil || *m != wantDout || op.Args[2].View != dout {
					t.Errorf("%s: %s dout argument %v, want the view as TMA %v", what, k.entry, op.Args[2], wantDout)
				}
				if m := op.Args[3].Map; m == nil || *m != wantQKV || op.Args[3].View != qkv {
					t.Errorf("%s: %s qkv argument %v, want the view as TMA %v", what, k.entry, op.Args[3], wantQKV)
				}
				matchesPTXMaps(t, op)
			}
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
	dqkv, d, dout := view("dqkv", program.BF16, nq), view("d", program.F32, nl), view("dout", program.BF16, n)
	qkv, out, lse := view("qkv", program.BF16, nq), view("out", program.BF16, n), view("lse", program.F32, nl)
	mustPanic("head size 32", func() { AttentionBackwardWGMMA(dqkv, d, dout, qkv, out, lse, B, T, C, 8, 8, 132) })
	mustPanic("head size 128", func() { AttentionBackwardWGMMA(dqkv, d, dout, qkv, out, lse, B, T, C, 2, 2, 132) })
	mustPanic("fp32 dqkv", func() {
		AttentionBackwardWGMMA(view("dqkv", program.F32, nq), d, dout, qkv, out, lse, B, T, C, NH, NH, 132)
	})
	mustPanic("bf16 lse", func() {
		AttentionBackwardWGMMA(dqkv, d, dout, qkv, out, view("lse", program.BF16, nl), B, T, C, NH, NH, 132)
	})
	mustPanic("dout 4 elements in", func() {
		AttentionBackwardWGMMA(dqkv, d, dout.Buf.Slice("dout", 4, int64(n-8)), qkv, out, lse, B, T, C, NH, NH, 132)
	})
	mustPanic("qkv 4 elements in", func() {
		AttentionBackwardWGMMA(dqkv, d, dout, qkv.Buf.Slice("qkv", 4, int64(nq-8)), out, lse, B, T, C, NH, NH, 132)
	})
	mustPanic("dqkv 1 element in", func() {
		AttentionBackwardWGMMA(dqkv.Buf.Slice("dqkv", 1, int64(nq-8)), d, dout, qkv, out, lse, B, T, C, NH, NH, 132)
	})
	mustPanic("NKV not dividing NH", func() { AttentionBackwardWGMMA(dqkv, d, dout, qkv, out, lse, B, T, C, NH, 3, 132) })
}

// TestAttentionBackwardWGMMAFits: what TMA and the kernels' stores cannot
// take is refused, so the caller takes attention_mma for it.
func TestAttentionBackwardWGMMAFits(t *testing.T) {
	dqkv, d, dout := view("dqkv", program.BF16, 3*4096), view("d", program.F32, 64), view("dout", program.BF16, 4096)
	qkv, out, lse := view("qkv", program.BF16, 3*4096), view("out", program.BF16, 4096), view("lse", program.F32, 64)
	type views struct{ dqkv, d, dout, qkv, out, lse program.View }
	all := views{dqkv, d, dout, qkv, out, lse}
	with := func(f func(v *views)) views { v := all; f(&v); return v }
	cases := []struct {
		what  string
		v     views
		C, NH int
		want  bool
	}{
		{"hs 64", all, 768, 12, true},
		{"hs 32", all, 768, 24, false},
		{"hs 128", all, 768, 6, false},
		{"C not a multiple of NH", all, 770, 12, false},
		{"no heads", all, 768, 0, false},
		{"fp32 dqkv", with(func(v *views) { v.dqkv = view("dqkv", program.F32, 3*4096) }), 768, 12, false},
		{"bf16 d", with(func(v *views) { v.d = view("d", program.BF16, 64) }), 768, 12, false},
		{"fp32 dout", with(func(v *views) { v.dout = view("dout", program.F32, 4096) }), 768, 12, false},
		{"fp32 out", with(func(v *views) { v.out = view("out", program.F32, 4096) }), 768, 12, false},
		{"bf16 lse", with(func(v *views) { v.lse = view("lse", program.BF16, 64) }), 768, 12, false},
		{"qkv 4 elements in", with(func(v *views) { v.qkv = qkv.Buf.Slice("qkv", 4, 8) }), 768, 12, false},
		{"qkv 8 elements in", with(func(v *views) { v.qkv = qkv.Buf.Slice("qkv", 8, 8) }), 768, 12, true},
		{"dout 4 elements in", with(func(v *views) { v.dout = dout.Buf.Slice("dout", 4, 8) }), 768, 12, false},
		{"out 4 elements in", with(func(v *views) { v.out = out.Buf.Slice("out", 4, 8) }), 768, 12, false},
		{"dqkv 1 element in", with(func(v *views) { v.dqkv = dqkv.Buf.Slice("dqkv", 1, 8) }), 768, 12, false},
		{"dqkv 2 elements in", with(func(v *views) { v.dqkv = dqkv.Buf.Slice("dqkv", 2, 8) }), 768, 12, true},
		{"null d", with(func(v *views) { v.d = program.View{} }), 768, 12, false},
	}
	for _, c := range cases {
		v := c.v
		if got := AttentionBackwardWGMMAFits(v.dqkv, v.d, v.dout, v.qkv, v.out, v.lse, c.C, c.NH); got != c.want {
			t.Errorf("%s: AttentionBackwardWGMMAFits = %v, want %v", c.what, got, c.want)
		}
	}
}
