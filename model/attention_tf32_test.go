package model

import (
	"slices"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
)

// TestTF32AttentionKernels: --dtype=tf32 runs attention on the TF32 tensor
// cores (attention_tf32) wherever the head size is 64, on every tier and
// GPU the program is built for, forward and backward, and attention.cu's
// fp32 kernels for other head sizes; the backward's per-row term is
// attention.cu's fp32 preprocess either way.
func TestTF32AttentionKernels(t *testing.T) {
	tf32 := []string{"attention_forward_tf32", "attention_backward_dkdv_tf32", "attention_backward_dq_tf32"}
	fp32 := []string{"attention_forward", "attention_backward_dkdv", "attention_backward_dq"}
	checked := 0
	for _, d := range shapesFor(t, config.TF32) {
		for _, o := range []Options{{}, {SharedOptIn: 163 << 10, CC: 80}, {Tier: config.TierMMA}} {
			o.DType = config.TF32
			m := Program(d, config.Train, o)
			var names []string
			for _, op := range m.Iteration.Ops() {
				if strings.HasPrefix(op.Name, "attention_") {
					names = append(names, op.Module+"/"+op.Name)
				}
			}
			want, other, mod := tf32, fp32, "attention_tf32/"
			if d.HeadSize() != 64 {
				want, other, mod = fp32, tf32, "attention/"
			}
			for _, e := range want {
				if !slices.Contains(names, mod+e) {
					t.Errorf("%+v %+v: tf32 launches no %s%s (its attention ops: %v)", d, o, mod, e, names)
				}
			}
			for _, n := range names {
				for _, e := range other {
					if strings.HasSuffix(n, "/"+e) {
						t.Errorf("%+v %+v: tf32 launches %s beside its %s attention", d, o, n, mod)
					}
				}
			}
			if !slices.Contains(names, "attention/attention_backward_preprocess") {
				t.Errorf("%+v %+v: tf32's backward has no fp32 preprocess: %v", d, o, names)
			}
			p := m.KernelPath()
			if d.HeadSize() == 64 {
				checked++
				if !strings.Contains(p, "attention on TF32 tensor cores") || !strings.Contains(p, "attention_tf32 sm_80") {
					t.Errorf("%+v: kernel path %q", d, p)
				}
			} else if !strings.Contains(p, "attention on the FP32 units") || strings.Contains(p, "attention_tf32") {
				t.Errorf("%+v (head size %d): kernel path %q", d, d.HeadSize(), p)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no CI shape of head size 64")
	}
}
