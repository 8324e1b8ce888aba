package kernels

import (
	"fmt"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// TestAttentionWGMMAOps runs on CI, without a GPU: the Hopper attention
// forward passes the arguments its PTX entry declares (the qkv tensor map
// first), counts the FLOPs and bytes of AttentionForwardMMA, takes a
// persistent grid of min(units, SMs), opts in to its shared memory, and
// describes qkv to TMA as B·T rows of W columns in boxes of one head by
// ptx.AttentionWGMMARows rows.
func TestAttentionWGMMAOps(t *testing.T) {
	for _, sh := range []struct{ b, t, c, nh, nkv int }{{8, 1024, 768, 12, 12}, {3, 301, 256, 4, 2}, {2, 1, 128, 2, 1}, {1, 129, 512, 8, 8}} {
		b, tt, c, nh, nkv := sh.b, sh.t, sh.c, sh.nh, sh.nkv
		w := (nh + 2*nkv) * (c / nh)
		n, nq, nl := b*tt*c, b*tt*w, b*nh*tt
		out, lse, qkv := view("out", program.BF16, n), view("lse", program.F32, nl), view("qkv", program.BF16, nq)
		mma := AttentionForwardMMA(out, lse, qkv, b, tt, c, nh, nkv)
		units := ceilDiv(tt, ptx.AttentionWGMMARows) * nh * b
		for _, sms := range []int{1, 5, 132} {
			what := fmt.Sprintf("%+v sms %d", sh, sms)
			op := AttentionForwardWGMMA(out, lse, qkv, b, tt, c, nh, nkv, sms)
			if op.Module != "attention_wgmma" || op.Name != "attention_forward_wgmma" {
				t.Fatalf("%s: launches %s/%s", what, op.Module, op.Name)
			}
			if op.FLOPs != mma.FLOPs || op.MatmulFLOPs != mma.MatmulFLOPs || op.Bytes != mma.Bytes {
				t.Errorf("%s: %d FLOPs (%d matmul), %d bytes; the mma forward %d (%d), %d", what, op.FLOPs, op.MatmulFLOPs, op.Bytes, mma.FLOPs, mma.MatmulFLOPs, mma.Bytes)
			}
			if want := program.D1(min(units, sms)); op.Grid != want || op.Block != program.D1(ptx.AttentionWGMMAThreads) {
				t.Errorf("%s: grid %v block %v, want %v and %d threads", what, op.Grid, op.Block, want, ptx.AttentionWGMMAThreads)
			}
			if op.SharedBytes != ptx.AttentionWGMMASharedBytes {
				t.Errorf("%s: %d bytes of shared memory, want %d", what, op.SharedBytes, ptx.AttentionWGMMASharedBytes)
			}
			wantMap := program.TensorMap{Inner: int64(w), Outer: int64(b * tt), Stride: int64(w), BoxInner: 64, BoxOuter: ptx.AttentionWGMMARows}
			if m := op.Args[0].Map; m == nil || *m != wantMap || op.Args[0].View != qkv {
				t.Errorf("%s: qkv argument %v, want the view as TMA %v", what, op.Args[0], wantMap)
			}
			matchesPTXMaps(t, op)
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
	out, lse, qkv := view("out", program.BF16, n), view("lse", program.F32, nl), view("qkv", program.BF16, nq)
	mustPanic("head size 32", func() { AttentionForwardWGMMA(out, lse, qkv, B, T, C, 8, 8, 132) })
	mustPanic("head size 128", func() { AttentionForwardWGMMA(out, lse, qkv, B, T, C, 2, 2, 132) })
	mustPanic("fp32 qkv", func() { AttentionForwardWGMMA(out, lse, view("qkv", program.F32, nq), B, T, C, NH, NH, 132) })
	mustPanic("bf16 lse", func() { AttentionForwardWGMMA(out, view("lse", program.BF16, nl), qkv, B, T, C, NH, NH, 132) })
	mustPanic("qkv 4 elements in", func() { AttentionForwardWGMMA(out, lse, qkv.Buf.Slice("qkv", 4, int64(nq-8)), B, T, C, NH, NH, 132) })
	mustPanic("NKV not dividing NH", func() { AttentionForwardWGMMA(out, lse, qkv, B, T, C, NH, 3, 132) })
}

// TestAttentionWGMMAFits: what TMA and the kernel's stores cannot take is
// refused, so the caller takes attention_mma for it.
func TestAttentionWGMMAFits(t *testing.T) {
	out, lse, qkv := view("out", program.BF16, 4096), view("lse", program.F32, 64), view("qkv", program.BF16, 3*4096)
	cases := []struct {
		what          string
		out, lse, qkv program.View
		C, NH         int
		want          bool
	}{
		{"hs 64", out, lse, qkv, 768, 12, true},
		{"hs 32", out, lse, qkv, 768, 24, false},
		{"hs 128", out, lse, qkv, 768, 6, false},
		{"C not a multiple of NH", out, lse, qkv, 770, 12, false},
		{"no heads", out, lse, qkv, 768, 0, false},
		{"fp32 out", view("out", program.F32, 4096), lse, qkv, 768, 12, false},
		{"bf16 lse", out, view("lse", program.BF16, 64), qkv, 768, 12, false},
		{"fp32 qkv", out, lse, view("qkv", program.F32, 3*4096), 768, 12, false},
		{"qkv 4 elements in", out, lse, qkv.Buf.Slice("qkv", 4, 8), 768, 12, false},
		{"qkv 8 elements in", out, lse, qkv.Buf.Slice("qkv", 8, 8), 768, 12, true},
		{"out 1 element in", out.Buf.Slice("out", 1, 8), lse, qkv, 768, 12, false},
		{"out 2 elements in", out.Buf.Slice("out", 2, 8), lse, qkv, 768, 12, true},
		{"null qkv", out, lse, program.View{}, 768, 12, false},
	}
	for _, c := range cases {
		if got := AttentionWGMMAFits(c.out, c.lse, c.qkv, c.C, c.NH); got != c.want {
			t.Errorf("%s: AttentionWGMMAFits = %v, want %v", c.what, got, c.want)
		}
	}
}

// matchesPTXMaps is matchesPTX for an entry that takes tensor maps: a
// TensorMapParam is a pointer argument with its Map set, every other
// pointer has none.
func matchesPTXMaps(t *testing.T, op program.Op) {
	t.Helper()
	types, ok := ptx.Params(op.Module, op.Name)
	if !ok || len(types) != len(op.Args) {
		t.Errorf("%s/%s: PTX parameters %v (%v), the launch passes %d", op.Module, op.Name, types, ok, len(op.Args))
		return
	}
	for i, a := range op.Args {
		isMap := types[i] == ptx.TensorMapParam
		want := argClass(types[i])
		if isMap {
			want = program.Ptr
		}
		if a.Kind != want || isMap != (a.Map != nil) {
			t.Errorf("%s/%s: argument %d (%s) is %s (tensor map %v), the PTX declares .%s", op.Module, op.Name, i, a.Param, a.Kind, a.Map != nil, types[i])
		}
	}
	if err := program.Validate(&op); err != nil {
		t.Errorf("%s/%s: %v", op.Module, op.Name, err)
	}
}
