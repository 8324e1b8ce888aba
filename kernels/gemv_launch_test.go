package kernels

import (
	"fmt"
	"slices"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// These tests run on CI, without a GPU: matvec_forward's launches (module
// and entry by element type, arguments against the PTX, bytes, FLOPs), the
// plans MatvecPlanFor picks for LLaMA's decode shapes, and, on a model of
// the kernel's indexing, that every plan covers every (column, step of C)
// exactly once.

// matvecDecodeShapes are LLaMA-2-7B's (and LLaMA-3's head's) decode
// products at batch 8: residual in place where the model adds the product
// to the residual stream.
var matvecDecodeShapes = []struct {
	name      string
	C, OC, ld int
	residual  bool
	f32, bf16 MatvecPlan // on 132 SMs (an H100 or H200)
	M         int
}{
	{"wqkv", 4096, 12288, 12288, false, MatvecPlan{8, 1, 768}, MatvecPlan{8, 1, 768}, 8},
	{"wo", 4096, 4096, 4096, true, MatvecPlan{8, 1, 256}, MatvecPlan{8, 1, 256}, 8},
	{"w13", 4096, 22016, 22016, false, MatvecPlan{4, 1, 688}, MatvecPlan{8, 1, 1376}, 8},
	{"w2", 11008, 4096, 4096, true, MatvecPlan{8, 1, 256}, MatvecPlan{8, 1, 256}, 8},
	{"head", 4096, 32000, 32000, false, MatvecPlan{4, 1, 1000}, MatvecPlan{8, 1, 2000}, 8},
	{"head3", 4096, 128256, 128256, false, MatvecPlan{1, 1, 1002}, MatvecPlan{4, 1, 4008}, 8},
}

func TestMatvecPlanForDecode(t *testing.T) {
	const sms = 132
	for _, s := range matvecDecodeShapes {
		for e, want := range map[program.Elem]MatvecPlan{program.F32: s.f32, program.BF16: s.bf16} {
			got := MatvecPlanFor(e, s.C, s.OC, sms)
			if got != want {
				t.Errorf("%s %s (C=%d OC=%d): plan %v, want %v", e, s.name, s.C, s.OC, got, want)
			}
			if limit := sms * ptx.GemvMinBlocks * MatvecWaves(e); got.Blocks > limit {
				t.Errorf("%s %s: %d blocks are more than %d waves, %d", e, s.name, got.Blocks, MatvecWaves(e), limit)
			}
		}
	}
}

// TestMatvecPlans: every plan MatvecPlanFor picks is one of MatvecPlans,
// fits MatvecWaves waves where any plan does, and splits C no finer than
// its steps.
func TestMatvecPlans(t *testing.T) {
	for _, C := range []int{1, 31, 64, 100, 352, 4096, 11008} {
		for _, OC := range []int{1, 7, 16, 17, 130, 4096, 32000, 128256} {
			for _, sms := range []int{1, 2, 80, 108, 132} {
				e := []program.Elem{program.F32, program.BF16}[sms%2]
				p := MatvecPlanFor(e, C, OC, sms)
				plans := MatvecPlans(C, OC)
				if !slices.Contains(plans, p) {
					t.Errorf("C=%d OC=%d SMs=%d: plan %v is not among %v", C, OC, sms, p, plans)
				}
				if last := plans[len(plans)-1]; last.Blocks != 1 {
					t.Errorf("C=%d OC=%d: the coarsest plan %v is not one block", C, OC, last)
				}
				if p.Blocks > sms*ptx.GemvMinBlocks*MatvecWaves(e) && p.Blocks > 1 {
					t.Errorf("%s C=%d OC=%d SMs=%d: plan %v is over %d waves", e, C, OC, sms, p, MatvecWaves(e))
				}
				if steps := ceilDiv(C, ptx.GemvStep); p.WK > max(steps, 1) {
					t.Errorf("C=%d OC=%d SMs=%d: plan %v splits %d steps %d ways", C, OC, sms, p, steps, p.WK)
				}
			}
		}
	}
}

// matvecCoverage models matvec_forward's indexing under plan p: block b,
// warp = k·wc + i, tile (b·wc + i)·nt + r, steps [k·steps/wk,
// (k+1)·steps/wk). It returns how often each (column, step) is computed.
func matvecCoverage(C, OC int, p MatvecPlan) [][]int {
	steps := ceilDiv(C, ptx.GemvStep)
	seen := make([][]int, OC)
	for i := range seen {
		seen[i] = make([]int, steps)
	}
	wc := ptx.GemvWarps / p.WK
	for b := 0; b < p.Blocks; b++ {
		for warp := 0; warp < ptx.GemvWarps; warp++ {
			i, k := warp%wc, warp/wc
			s0, s1 := k*steps/p.WK, (k+1)*steps/p.WK
			for r := 0; r < p.NT; r++ {
				tile := (b*wc+i)*p.NT + r
				for col := tile * ptx.GemvTile; col < min((tile+1)*ptx.GemvTile, OC); col++ {
					for s := s0; s < s1; s++ {
						seen[col][s]++
					}
				}
			}
		}
	}
	return seen
}

func TestMatvecPlanCoverage(t *testing.T) {
	for _, C := range []int{1, 64, 100, 352, 4096} {
		for _, OC := range []int{1, 7, 130, 1000, 4096} {
			for _, p := range MatvecPlans(C, OC) {
				for col, row := range matvecCoverage(C, OC, p) {
					for s, n := range row {
						if n != 1 {
							t.Fatalf("C=%d OC=%d plan %v: column %d step %d computed %d times", C, OC, p, col, s, n)
						}
					}
				}
			}
		}
	}
}

// TestMatvecLaunch: the launch of each storage type names its module's
// entry with the PTX's parameters, the grid of its plan, and counts the
// bytes and FLOPs of the product and the residual.
func TestMatvecLaunch(t *testing.T) {
	for _, s := range []program.Elem{program.F32, program.BF16} {
		module, entry := "gemv", "matvec_forward"
		if s == program.BF16 {
			module, entry = "gemv_bf16", "matvec_forward_bf16"
		}
		for _, c := range []struct {
			M, C, OC, ld int
			residual     string // "", "separate", "inplace"
		}{
			{8, 4096, 12288, 12288, ""},
			{8, 4096, 4096, 4096, "inplace"},
			{16, 100, 130, 137, "separate"},
			{1, 64, 1, 1, ""},
			{3, 352, 7, 8, "inplace"},
			{8, 4096, 128256, 128256, ""},
		} {
			t.Run(fmt.Sprintf("%s/M%d_C%d_OC%d_ld%d_%s", s, c.M, c.C, c.OC, c.ld, c.residual), func(t *testing.T) {
				outElems := (c.M-1)*c.ld + c.OC
				out := view("out", s, c.M*c.ld)
				res := program.View{}
				switch c.residual {
				case "separate":
					res = view("res", s, c.M*c.ld)
				case "inplace":
					res = out
				}
				op := MatvecForward(out, view("inp", s, c.M*c.C), view("w", s, c.OC*c.C), res, c.M, c.C, c.OC, c.ld, 132)
				if op.Module != module || op.Name != entry {
					t.Fatalf("launches %s/%s, want %s/%s", op.Module, op.Name, module, entry)
				}
				matchesPTX(t, op)
				p := MatvecPlanFor(s, c.C, c.OC, 132)
				if op.Grid != program.D1(p.Blocks) || op.Block != program.D1(ptx.GemvThreads) || op.SharedBytes != 0 {
					t.Errorf("grid %v block %v shared %d, want %v %v 0", op.Grid, op.Block, op.SharedBytes, program.D1(p.Blocks), program.D1(ptx.GemvThreads))
				}
				args := map[string]program.Arg{}
				for _, a := range op.Args {
					args[a.Param] = a
				}
				for name, want := range map[string]int{"M": c.M, "C": c.C, "OC": c.OC, "ld": c.ld, "wk": p.WK, "nt": p.NT} {
					if got := args[name]; got.Kind != program.I32Arg || int(got.Int) != want {
						t.Errorf("argument %s = %v, want %d", name, got, want)
					}
				}
				if a := args["residual"]; a.View != res {
					t.Errorf("residual argument is %v, want %v", a.View, res)
				}
				elems := int64(outElems + c.M*c.C + c.OC*c.C)
				flops := 2 * int64(c.M) * int64(c.C) * int64(c.OC)
				if c.residual != "" {
					elems += int64(outElems)
				}
				if want := elems * s.Size(); op.Bytes != want {
					t.Errorf("bytes %d, want %d", op.Bytes, want)
				}
				if op.MatmulFLOPs != flops {
					t.Errorf("matmul FLOPs %d, want %d", op.MatmulFLOPs, flops)
				}
				if c.residual != "" {
					flops += int64(c.M * c.OC)
				}
				if op.FLOPs != flops {
					t.Errorf("FLOPs %d, want %d", op.FLOPs, flops)
				}
			})
		}
	}
	// Both modules hold the one entry, with the same parameters, fp32 for
	// every GPU from Volta, bf16 (mma.sync) from Ampere.
	for mod, want := range map[string]ptx.Target{"gemv": {SM: 70}, "gemv_bf16": {SM: 80}} {
		if got, ok := ptx.ModuleTarget(mod); !ok || got != want {
			t.Errorf("%s.ptx targets %v, want %v", mod, got, want)
		}
	}
	if e := ptx.Entries("gemv"); !slices.Equal(e, []string{"matvec_forward"}) {
		t.Errorf("gemv.ptx entries %v", e)
	}
	if e := ptx.Entries("gemv_bf16"); !slices.Equal(e, []string{"matvec_forward_bf16"}) {
		t.Errorf("gemv_bf16.ptx entries %v", e)
	}
	p32, _ := ptx.Params("gemv", "matvec_forward")
	p16, _ := ptx.Params("gemv_bf16", "matvec_forward_bf16")
	if !slices.Equal(p32, p16) {
		t.Errorf("matvec_forward has parameters %v, matvec_forward_bf16 %v", p32, p16)
	}
}

// TestMatvecPanics: too many rows, an empty dimension, a short row stride,
// mixed or unsupported element types are the calling program's bugs.
func TestMatvecPanics(t *testing.T) {
	f32, bf, i32 := program.F32, program.BF16, program.I32
	null := program.View{}
	const C, OC = 64, 32
	for _, c := range []struct {
		name  string
		build func()
	}{
		{"17 rows", func() {
			MatvecForward(view("o", f32, 17*OC), view("i", f32, 17*C), view("w", f32, OC*C), null, 17, C, OC, OC, 132)
		}},
		{"0 rows", func() {
			MatvecForward(view("o", f32, OC), view("i", f32, C), view("w", f32, OC*C), null, 0, C, OC, OC, 132)
		}},
		{"C 0", func() {
			MatvecForward(view("o", f32, OC), view("i", f32, C), view("w", f32, OC*C), null, 1, 0, OC, OC, 132)
		}},
		{"ld < OC", func() {
			MatvecForward(view("o", f32, 2*OC), view("i", f32, 2*C), view("w", f32, OC*C), null, 2, C, OC, OC-1, 132)
		}},
		{"w bf16, rest f32", func() {
			MatvecForward(view("o", f32, OC), view("i", f32, C), view("w", bf, OC*C), null, 1, C, OC, OC, 132)
		}},
		{"residual f32, rest bf16", func() {
			MatvecForward(view("o", bf, OC), view("i", bf, C), view("w", bf, OC*C), view("r", f32, OC), 1, C, OC, OC, 132)
		}},
		{"i32", func() {
			MatvecForward(view("o", i32, OC), view("i", i32, C), view("w", i32, OC*C), null, 1, C, OC, OC, 132)
		}},
		{"nt > 1 with a split C", func() {
			matvecForward(view("o", f32, OC), view("i", f32, C), view("w", f32, OC*C), null, 1, C, OC, OC, MatvecPlan{WK: 2, NT: 2, Blocks: 1})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("did not panic")
				}
			}()
			c.build()
		})
	}
}
