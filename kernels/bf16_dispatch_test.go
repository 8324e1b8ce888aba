package kernels

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// These tests run on CI, without a GPU: the launchers of the layers written
// for both storage types (elem.go) pick the module and entry of their
// views' element type, those entries exist with the parameters the launch
// passes, and the bytes they count follow the element sizes.

// view is a view of a whole buffer of n elements of e, for launches that
// are only built, never run.
func view(name string, e program.Elem, n int) program.View {
	return (&program.Buffer{Name: name, Layer: -1, Elem: e, Elems: int64(n)}).All()
}

// dispatchCase builds one launch with the layer's tensors stored as s.
// stored is the elements of type s it moves, fixed the bytes of its f32 and
// i32 tensors: its Bytes must be stored·size(s) + fixed.
type dispatchCase struct {
	module, entry string
	build         func(s program.Elem) program.Op
	stored, fixed int64
}

func dispatchCases() []dispatchCase {
	const B, T, C, V, Vp, maxT = 3, 37, 96, 1003, 1024, 40
	const N = B * T
	const n = 4*N*C + 3
	f32, i32 := program.F32, program.I32
	null := program.View{}
	partials := LayerNormPartialSize(N, C)
	wteRows := min(N, V) // rows of dwte a batch can touch
	return []dispatchCase{
		{"encoder", "encoder_forward", func(s program.Elem) program.Op {
			return EncoderForward(view("out", s, N*C), view("tokens", i32, N), view("wte", s, V*C), view("wpe", s, maxT*C), B, T, C)
		}, N*C + N*C + T*C, 4 * N},
		{"encoder", "encoder_backward_wpe", func(s program.Elem) program.Op {
			return EncoderBackwardWPE(view("dwpe", s, maxT*C), view("dout", s, N*C), B, T, C)
		}, 2*T*C + N*C, 0},
		{"encoder", "encoder_backward_wte", func(s program.Elem) program.Op {
			return EncoderBackwardWTE(view("dwte", s, V*C), view("dout", s, N*C), view("order", i32, N),
				view("seg_start", i32, wteRows+1), view("seg_token", i32, wteRows), wteRows, N, C)
		}, N*C + 2*int64(wteRows)*C, 4 * 3 * N},
		{"layernorm", "layernorm_forward", func(s program.Elem) program.Op {
			return LayerNormForward(view("out", s, N*C), view("mean", f32, N), view("rstd", f32, N),
				view("inp", s, N*C), view("w", s, C), view("b", s, C), N, C)
		}, 2*N*C + 2*C, 4 * 2 * N},
		{"layernorm", "layernorm_forward", func(s program.Elem) program.Op {
			return LayerNormForward(view("out", s, N*C), null, null, view("inp", s, N*C), view("w", s, C), view("b", s, C), N, C)
		}, 2*N*C + 2*C, 0},
		{"layernorm", "layernorm_backward_input", func(s program.Elem) program.Op {
			return LayerNormBackwardInput(view("dinp", s, N*C), view("scratch", f32, partials), view("dout", s, N*C),
				view("inp", s, N*C), view("w", s, C), view("mean", f32, N), view("rstd", f32, N), N, C)
		}, 2*N*C + N*C + N*C + C, 4 * int64(partials+2*N)},
		{"layernorm", "layernorm_backward_params", func(s program.Elem) program.Op {
			return LayerNormBackwardParams(view("dw", s, C), view("db", s, C), view("scratch", f32, partials), N, C)
		}, 2 * C, 4 * int64(partials)},
		{"gelu", "gelu_forward", func(s program.Elem) program.Op {
			return GELUForward(view("out", s, n), view("inp", s, n), n)
		}, 2 * n, 0},
		{"gelu", "gelu_backward", func(s program.Elem) program.Op {
			return GELUBackward(view("dinp", s, n), view("inp", s, n), view("dout", s, n), n)
		}, 3 * n, 0},
		{"gelu", "gelu_backward", func(s program.Elem) program.Op { // in place, as the model runs it
			d := view("d", s, n)
			return GELUBackward(d, view("inp", s, n), d, n)
		}, 3 * n, 0},
		{"residual", "residual_forward", func(s program.Elem) program.Op {
			return ResidualForward(view("out", s, n), view("a", s, n), view("b", s, n), n)
		}, 3 * n, 0},
		// The unfused flaw's kernels (unfused.go).
		{"unfused", "bias_add", func(s program.Elem) program.Op {
			return BiasAdd(view("out", s, N*3*C), view("bias", s, 3*C), N, 3*C, 3*C)
		}, 2*N*3*C + 3*C, 0},
		{"unfused", "bias_add", func(s program.Elem) program.Op { // padded rows: the padding is not moved
			return BiasAdd(view("out", s, N*Vp), view("bias", s, V), N, V, Vp)
		}, 2*N*V + V, 0},
		{"unfused", "elem_mul", func(s program.Elem) program.Op {
			d := view("d", s, n)
			return ElemMul(d, d, view("x", s, n), n)
		}, 3 * n, 0},
		{"unfused", "elem_axpby", func(s program.Elem) program.Op {
			return ElemAxpby(view("out", s, n), view("a", s, n), view("b", s, n), 0.5, 0.5, n)
		}, 3 * n, 0},
		{"unfused", "elem_tanh_scale", func(s program.Elem) program.Op {
			d := view("d", s, n)
			return ElemTanhScale(d, d, 0.8, n)
		}, 2 * n, 0},
		{"residual", "residual_forward_strided", func(s program.Elem) program.Op {
			return ResidualForwardStrided(view("out", s, n), view("a", s, n), view("b", s, n), n)
		}, 3 * n, 0},
		{"residual", "residual_forward_strided", func(s program.Elem) program.Op { // in place, as the model may run it
			o := view("out", s, n)
			return ResidualForwardStrided(o, o, view("b", s, n), n)
		}, 3 * n, 0},
		{"crossentropy", "crossentropy_forward", func(s program.Elem) program.Op {
			return CrossEntropyForward(view("losses", f32, N), view("lse", f32, N), view("logits", s, N*Vp), view("targets", i32, N), N, V, Vp)
		}, N * V, 4 * 3 * N},
		{"crossentropy", "crossentropy_forward", func(s program.Elem) program.Op {
			return CrossEntropyForward(view("losses", f32, N), null, view("logits", s, N*V), view("targets", i32, N), N, V, V)
		}, N * V, 4 * 2 * N},
		{"crossentropy", "crossentropy_backward", func(s program.Elem) program.Op { // in place, as the model runs it
			l := view("logits", s, N*Vp)
			return CrossEntropyBackward(l, l, view("lse", f32, N), view("targets", i32, N), N, V, Vp, 1.0/N)
		}, 2 * N * V, 4 * 2 * N},
		{"crossentropy", "crossentropy_backward", func(s program.Elem) program.Op {
			return CrossEntropyBackward(view("dlogits", s, N*Vp), view("logits", s, N*Vp), null, view("targets", i32, N), N, V, Vp, 1.0/N)
		}, 2 * N * V, 4 * N},
	}
}

// argClass is the program.ArgKind that passes a PTX parameter type.
func argClass(ptxType string) program.ArgKind {
	switch ptxType {
	case "u64", "s64", "b64":
		return program.Ptr
	case "u32", "s32", "b32":
		return program.I32Arg
	case "f32":
		return program.F32Arg
	}
	return "unsupported ." + program.ArgKind(ptxType)
}

// matchesPTX checks op against the PTX declaration of its entry.
func matchesPTX(t *testing.T, op program.Op) {
	t.Helper()
	types, ok := ptx.Params(op.Module, op.Name)
	if !ok {
		t.Errorf("%s is not an entry of %s.ptx (it has %v)", op.Name, op.Module, ptx.Entries(op.Module))
		return
	}
	if len(types) != len(op.Args) {
		t.Errorf("%s/%s: the launch passes %d arguments, the PTX declares %d", op.Module, op.Name, len(op.Args), len(types))
		return
	}
	for i, a := range op.Args {
		if want := argClass(types[i]); a.Kind != want {
			t.Errorf("%s/%s: argument %d (%s) is %s, the PTX declares .%s", op.Module, op.Name, i, a.Param, a.Kind, types[i])
		}
	}
	if err := program.Validate(&op); err != nil {
		t.Errorf("%s/%s: %v", op.Module, op.Name, err)
	}
}

func TestStorageDispatch(t *testing.T) {
	launched := map[string]bool{}
	for i, c := range dispatchCases() {
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
			})
		}
	}
	// Every entry of the bf16 modules is some launcher's, and has the
	// parameters of its fp32 twin (the same kernel over other pointers).
	for _, layer := range []string{"encoder", "layernorm", "gelu", "residual", "crossentropy", "unfused"} {
		mod := layer + "_bf16"
		if !slices.Contains(ptx.Modules(), mod) {
			t.Errorf("no module %s", mod)
			continue
		}
		target, ok := ptx.ModuleTarget(mod)
		if !ok || target.SM != 80 || target.ArchSpecific {
			t.Errorf("%s.ptx targets %v, want sm_80 (bf16 conversions; loaded on every GPU from Ampere on)", mod, target)
		}
		for _, e := range ptx.Entries(mod) {
			if !launched[mod+"/"+e] {
				t.Errorf("%s.ptx: entry %s is no launcher's", mod, e)
			}
			twin, ok := strings.CutSuffix(e, "_bf16")
			if !ok {
				t.Errorf("%s.ptx: entry %s is not named <fp32 entry>_bf16", mod, e)
				continue
			}
			p16, _ := ptx.Params(mod, e)
			p32, ok := ptx.Params(layer, twin)
			if !ok || !slices.Equal(p16, p32) {
				t.Errorf("%s/%s has parameters %v, its fp32 twin %s/%s %v", mod, e, p16, layer, twin, p32)
			}
		}
	}
	// loss_reduce reads and writes only f32: one entry, in module
	// crossentropy, for both steps.
	op := LossReduce(view("loss", program.F32, 1), view("losses", program.F32, 111), 111)
	if op.Module != "crossentropy" || op.Name != "loss_reduce" {
		t.Errorf("LossReduce launches %s/%s", op.Module, op.Name)
	}
	matchesPTX(t, op)
	if _, ok := ptx.Params("crossentropy_bf16", "loss_reduce_bf16"); ok {
		t.Error("crossentropy_bf16.ptx has a loss_reduce_bf16, which nothing launches")
	}
}

// TestStorageVectorGrid: the elementwise kernels cover one 16-byte vector
// per thread, 4 floats or 8 bf16s, so a bf16 launch has half the blocks.
func TestStorageVectorGrid(t *testing.T) {
	const n = 8 * 256 * 10
	for _, c := range []struct {
		name  string
		build func(s program.Elem) program.Op
		block int
	}{
		{"gelu_forward", func(s program.Elem) program.Op { return GELUForward(view("o", s, n), view("i", s, n), n) }, ptx.GELUBlock},
		{"gelu_backward", func(s program.Elem) program.Op {
			return GELUBackward(view("o", s, n), view("i", s, n), view("d", s, n), n)
		}, ptx.GELUBlock},
		{"residual_forward", func(s program.Elem) program.Op {
			return ResidualForward(view("o", s, n), view("a", s, n), view("b", s, n), n)
		}, ptx.ResidualBlock},
		{"elem_mul", func(s program.Elem) program.Op { return ElemMul(view("o", s, n), view("a", s, n), view("b", s, n), n) }, ptx.UnfusedBlock},
		{"elem_axpby", func(s program.Elem) program.Op {
			return ElemAxpby(view("o", s, n), view("a", s, n), view("b", s, n), 1, 2, n)
		}, ptx.UnfusedBlock},
		{"elem_tanh_scale", func(s program.Elem) program.Op { return ElemTanhScale(view("o", s, n), view("i", s, n), 1, n) }, ptx.UnfusedBlock},
	} {
		for _, s := range []struct {
			e   program.Elem
			per int
		}{{program.F32, 4}, {program.BF16, 8}} {
			if got, want := c.build(s.e).Grid, program.D1(n/s.per/c.block); got != want {
				t.Errorf("%s, %s: grid %v, want %v", c.name, s.e, got, want)
			}
		}
	}
	// residual_forward_strided gives each thread ResidualStridedChunk
	// elements whatever the storage: a chunk of 64, 256 bytes of floats,
	// puts every lane of a warp in a sector of its own.
	for _, s := range []program.Elem{program.F32, program.BF16} {
		op := ResidualForwardStrided(view("o", s, n), view("a", s, n), view("b", s, n), n)
		if want := program.D1(ceilDiv(n/ResidualStridedChunk, ptx.ResidualBlock)); op.Grid != want || op.Block != program.D1(ptx.ResidualBlock) {
			t.Errorf("residual_forward_strided, %s: grid %v block %v, want grid %v", s, op.Grid, op.Block, want)
		}
		if got := ResidualForwardStrided(view("o", s, 3), view("a", s, 3), view("b", s, 3), 3).Grid; got != program.D1(1) {
			t.Errorf("residual_forward_strided of 3 elements: grid %v, want one block", got)
		}
	}
	if 2*ResidualStridedChunk < 32 {
		t.Errorf("a chunk of %d bf16s is under a 32-byte sector", ResidualStridedChunk)
	}
	// encoder_forward vectorises a row of C when C is a multiple of the
	// vector: C = 100 is for f32, not for bf16.
	const B, T, C = 4, 64, 100
	for _, s := range []struct {
		e   program.Elem
		per int
	}{{program.F32, 4}, {program.BF16, 1}} {
		op := EncoderForward(view("out", s.e, B*T*C), view("tok", program.I32, B*T), view("wte", s.e, 50*C), view("wpe", s.e, T*C), B, T, C)
		if want := program.D1(ceilDiv(B*T*C/s.per, ptx.EncoderBlock)); op.Grid != want {
			t.Errorf("encoder_forward C=%d, %s: grid %v, want %v", C, s.e, op.Grid, want)
		}
	}
}

// TestStorageMix: a launch whose stored tensors mix element types, or
// whose fp32 or int32 tensors are of another type, is a bug of the program
// that built it: the launchers panic rather than launch the wrong kernel.
func TestStorageMix(t *testing.T) {
	const N, C, V = 37, 96, 50
	f32, bf, i32 := program.F32, program.BF16, program.I32
	null := program.View{}
	for _, c := range []struct {
		name  string
		build func()
	}{
		{"layernorm out bf16, inp f32", func() {
			LayerNormForward(view("out", bf, N*C), null, null, view("inp", f32, N*C), view("w", bf, C), view("b", bf, C), N, C)
		}},
		{"layernorm bf16 mean", func() {
			LayerNormForward(view("out", bf, N*C), view("mean", bf, N), null, view("inp", bf, N*C), view("w", bf, C), view("b", bf, C), N, C)
		}},
		{"layernorm bf16 partials", func() {
			LayerNormBackwardParams(view("dw", bf, C), view("db", bf, C), view("scratch", bf, LayerNormPartialSize(N, C)), N, C)
		}},
		{"residual i32", func() { ResidualForward(view("o", i32, N), view("a", i32, N), view("b", i32, N), N) }},
		{"gelu backward dout f32", func() { GELUBackward(view("d", bf, N), view("i", bf, N), view("o", f32, N), N) }},
		{"bias_add out bf16, bias f32", func() { BiasAdd(view("o", bf, N*C), view("b", f32, C), N, C, C) }},
		{"gelu chain tmp f32", func() { GELUChain(view("o", bf, N), view("t", f32, N), view("i", bf, N), N) }},
		{"encoder f32 tokens", func() {
			EncoderForward(view("out", bf, N*C), view("tok", f32, N), view("wte", bf, V*C), view("wpe", bf, N*C), 1, N, C)
		}},
		{"encoder wte bf16, wpe f32", func() {
			EncoderForward(view("out", bf, N*C), view("tok", i32, N), view("wte", bf, V*C), view("wpe", f32, N*C), 1, N, C)
		}},
		{"crossentropy bf16 lse", func() {
			CrossEntropyForward(view("losses", f32, N), view("lse", bf, N), view("logits", bf, N*V), view("t", i32, N), N, V, V)
		}},
		{"crossentropy dlogits f32, logits bf16", func() {
			CrossEntropyBackward(view("dl", f32, N*V), view("l", bf, N*V), null, view("t", i32, N), N, V, V, 1)
		}},
		{"crossentropy Vp < V", func() {
			CrossEntropyForward(view("losses", f32, N), null, view("logits", f32, N*V), view("t", i32, N), N, V, V-1)
		}},
		{"loss_reduce bf16", func() { LossReduce(view("loss", f32, 1), view("losses", bf, N), N) }},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("%s: no panic", c.name)
				} else {
					t.Logf("%s: %v", c.name, r)
				}
			}()
			c.build()
		}()
	}
}

// TestCrossEntropyRowStride: the logits' view must hold the N−1 padded
// rows and the last row's V columns, no more.
func TestCrossEntropyRowStride(t *testing.T) {
	const N, V, Vp = 37, 1003, 1024
	for _, s := range []program.Elem{program.F32, program.BF16} {
		losses, targets := view("losses", program.F32, N), view("t", program.I32, N)
		tight := view("logits", s, (N-1)*Vp+V)
		fwd := CrossEntropyForward(losses, program.View{}, tight, targets, N, V, Vp)
		bwd := CrossEntropyBackward(tight, tight, program.View{}, targets, N, V, Vp, 1)
		for _, op := range []program.Op{fwd, bwd} {
			if err := program.Validate(&op); err != nil {
				t.Errorf("%s, logits of (N−1)·Vp+V elements: %v", op.Name, err)
			}
		}
		short := view("logits", s, (N-1)*Vp+V-1)
		op := CrossEntropyForward(losses, program.View{}, short, targets, N, V, Vp)
		if err := program.Validate(&op); err == nil {
			t.Errorf("%s: logits one element short of (N−1)·Vp+V pass Validate", op.Name)
		}
	}
}
