package kernels

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
)

// These run on CI, without a GPU: the unfused GELU chain is the tanh
// approximation of gelu.cu, op by op, and counts the work it does.

// TestGELUChainConstants: the chain's constants are gelu.cu's GELU_SCALE
// and GELU_COEF, as float32 (the kernels' arguments), so that the chain
// computes the function gelu_forward computes.
func TestGELUChainConstants(t *testing.T) {
	src, err := os.ReadFile("../ptx/gelu.cu")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{"GELU_SCALE": geluScale, "GELU_COEF": geluCoef} {
		m := regexp.MustCompile(`(?m)^#define ` + name + ` ([0-9.eE+-]+)f`).FindSubmatch(src)
		if m == nil {
			t.Fatalf("gelu.cu has no #define %s", name)
		}
		v, err := strconv.ParseFloat(string(m[1]), 32)
		if err != nil {
			t.Fatal(err)
		}
		if float32(v) != float32(want) {
			t.Errorf("%s: gelu.cu %v, the chain %v", name, float32(v), float32(want))
		}
	}
}

// TestGELUChainOps: u = x·x, u = u·x, u = x + c·u, u = tanh(s·u), u = x·u,
// out = 0.5·x + 0.5·u, each a launch over n elements, reading fch (inp)
// and gelu_tmp only, never writing inp; 11 FLOPs an element in all.
func TestGELUChainOps(t *testing.T) {
	const n = 4*111*96 + 3
	for _, s := range []program.Elem{program.F32, program.BF16} {
		inp, tmp, out := view("fch", s, n), view("gelu_tmp", s, n), view("fch_gelu", s, n)
		ops := GELUChain(out, tmp, inp, n)
		type arg struct{ param, buf string }
		want := []struct {
			entry  string
			reads  []arg
			writes string
			floats []float32
		}{
			{"elem_mul", []arg{{"a", "fch"}, {"b", "fch"}}, "gelu_tmp", nil},
			{"elem_mul", []arg{{"a", "gelu_tmp"}, {"b", "fch"}}, "gelu_tmp", nil},
			{"elem_axpby", []arg{{"a", "fch"}, {"b", "gelu_tmp"}}, "gelu_tmp", []float32{1, geluCoef}},
			{"elem_tanh_scale", []arg{{"inp", "gelu_tmp"}}, "gelu_tmp", []float32{geluScale}},
			{"elem_mul", []arg{{"a", "fch"}, {"b", "gelu_tmp"}}, "gelu_tmp", nil},
			{"elem_axpby", []arg{{"a", "fch"}, {"b", "gelu_tmp"}}, "fch_gelu", []float32{0.5, 0.5}},
		}
		if len(ops) != len(want) {
			t.Fatalf("%s: %d ops, want %d", s, len(ops), len(want))
		}
		var flops int64
		for i, op := range ops {
			w := want[i]
			name := w.entry
			if s == program.BF16 {
				name += "_bf16"
			}
			if op.Name != name || op.Module != map[program.Elem]string{program.F32: "unfused", program.BF16: "unfused_bf16"}[s] {
				t.Fatalf("%s op %d: %s/%s, want %s", s, i, op.Module, op.Name, name)
			}
			matchesPTX(t, op)
			var floats []float32
			for _, a := range op.Args {
				switch {
				case a.Kind == program.F32Arg:
					floats = append(floats, a.Float)
				case a.Kind == program.I32Arg && a.Param == "n" && a.Int != n:
					t.Errorf("%s op %d: n = %d", s, i, a.Int)
				case a.Kind == program.Ptr && a.Access == program.Write && a.View.Buf.Name != w.writes:
					t.Errorf("%s op %d writes %s, want %s", s, i, a.View, w.writes)
				case a.Kind == program.Ptr && a.Access == program.Read:
					ok := false
					for _, r := range w.reads {
						ok = ok || (r.param == a.Param && r.buf == a.View.Buf.Name)
					}
					if !ok {
						t.Errorf("%s op %d reads %s through %s", s, i, a.View, a.Param)
					}
				}
			}
			if len(floats) != len(w.floats) {
				t.Fatalf("%s op %d: float arguments %v, want %v", s, i, floats, w.floats)
			}
			for k := range floats {
				if floats[k] != w.floats[k] {
					t.Errorf("%s op %d: float arguments %v, want %v", s, i, floats, w.floats)
				}
			}
			flops += op.FLOPs
		}
		if flops != 11*n {
			t.Errorf("%s: the chain counts %d FLOPs, want 11 an element (%d)", s, flops, 11*n)
		}
	}
}

// TestBiasAddLaunch: one element a thread over the n·oc outputs, padded
// rows included in the view it may touch but not in the bytes it moves.
func TestBiasAddLaunch(t *testing.T) {
	const n, oc, ld = 37, 50, 64
	op := BiasAdd(view("out", program.F32, n*ld), view("bias", program.F32, oc), n, oc, ld)
	if want := program.D1((n*oc + 255) / 256); op.Grid != want {
		t.Errorf("grid %v, want %v", op.Grid, want)
	}
	if op.Args[0].Touch != (n-1)*ld+oc || op.Args[0].Access != program.ReadWrite {
		t.Errorf("out touches %d (%s), want %d read and written", op.Args[0].Touch, op.Args[0].Access, (n-1)*ld+oc)
	}
	if op.FLOPs != n*oc || op.Bytes != 4*(2*n*oc+oc) {
		t.Errorf("FLOPs %d, bytes %d", op.FLOPs, op.Bytes)
	}
	if err := program.Validate(&op); err != nil {
		t.Error(err)
	}
}
