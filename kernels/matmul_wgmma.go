package kernels

import (
	"fmt"
	"strings"

	"github.com/gpubench/gpubench/internal/gemmplan"
	"github.com/gpubench/gpubench/internal/program"
)

// The kernels of ptx/matmul_wgmma.cu: the linear layers' bf16 and TF32
// products on Hopper's warpgroup tensor cores (wgmma), their operands loaded by TMA
// through tensor maps (program.TensorMap). sm_90a only: the program takes
// them on compute capability 9.0 (model.Options.Tier); every other GPU
// keeps matmul_mma. See docs/matmul.md ("The Hopper tier").
//
// The semantics are MatmulForwardMMA's, MatmulBackwardInputMMA's and
// MatmulBackwardWeightMMA's for bf16 views, with one addition: every
// product may split its K over the workspace (gemmplan.WGMMAPlan), not
// only the weight gradient. TMA reads rows of 16-byte-aligned starts and
// strides: WGMMAFits says whether the operands allow it.
//
// TF32 (f32 views): wgmma reads tf32 operands K-major only, so the
// forward maps directly, and the backward products read operands
// transposed beforehand by MatmulTransposeTF32 into a scratch buffer
// (MatmulBackwardWGMMATF32). The tensor cores truncate the fp32 operands
// to TF32 (no cvt.rna as in matmul_mma's TF32): see ptx/matmul_wgmma.cu.

const wgmmaModule = "matmul_wgmma"

// wgmmaBox is the box of an operand along its contiguous dimension: 64
// bf16, the 128-byte swizzle's span; wgmmaBoxTF32 is 32 fp32, the same
// span.
const (
	wgmmaBox     = 64
	wgmmaBoxTF32 = gemmplan.WGMMABlockKTF32
)

// WGMMAFits says whether the Hopper tier can run a linear layer's products
// over these views: all bf16 or all f32 (TF32), the dense operands' rows
// (c) and the (n, oc) tensor's stride (ld) multiples of 8 elements (16
// bytes of bf16, 32 of fp32, whose epilogue stores pairs), and every view
// starting a multiple of 8 elements into its buffer. Null views do not
// count.
func WGMMAFits(c, ld int, views ...program.View) bool {
	if c%8 != 0 || ld%8 != 0 {
		return false
	}
	var e program.Elem
	for _, v := range views {
		if v.IsNull() {
			continue
		}
		if (v.Buf.Elem != program.BF16 && v.Buf.Elem != program.F32) || v.Offset%8 != 0 {
			return false
		}
		if e == "" {
			e = v.Buf.Elem
		} else if v.Buf.Elem != e {
			return false
		}
	}
	return true
}

// wgmmaKernel is a launch of a matmul_wgmma entry with plan p on sms SMs;
// the entry's last three arguments are splits, slice_k and bn. The grid is
// persistent: one block an SM at most (gemmplan.WGMMAGrid), each looping
// over the plan's tiles × slices.
func wgmmaKernel(entry string, p gemmplan.MMASplit, sms int, flops int64, args ...program.Arg) program.Op {
	if p.BN != gemmplan.WGMMABlockNWide && p.BN != gemmplan.WGMMABlockNNarrow {
		panic(fmt.Sprintf("kernels: Hopper GEMM plan %v: block width %d is neither %d nor %d",
			p, p.BN, gemmplan.WGMMABlockNWide, gemmplan.WGMMABlockNNarrow))
	}
	args = append(args, program.Int("splits", p.Slices), program.Int("slice_k", p.SliceK), program.Int("bn", p.BN))
	op := kernel(wgmmaModule, entry, program.D1(gemmplan.WGMMAGrid(p, sms)), program.D1(gemmplan.WGMMAThreads), args...)
	op.SharedBytes = gemmplan.WGMMASharedBytes(p.BN)
	if strings.HasSuffix(entry, "_tf32") {
		op.SharedBytes = gemmplan.WGMMASharedBytesTF32(p.BN)
	}
	op.MatmulFLOPs = flops
	op.FLOPs = flops
	return op
}

// MatmulScratchSizeWGMMA is a workspace in which each of a linear layer's
// three products on the Hopper tier can take its preferred split on any
// GPU (gemmplan.WGMMAScratch of each): partial floats and int32 counters.
func MatmulScratchSizeWGMMA(n, c, oc int) (partialFloats, counterInts int) {
	for _, mnk := range [][3]int{{n, oc, c}, {n, c, oc}, {oc, c, n}} {
		f, k := gemmplan.WGMMAScratch(mnk[0], mnk[1], mnk[2])
		partialFloats, counterInts = max(partialFloats, f), max(counterInts, k)
	}
	return partialFloats, counterInts
}

// wgmmaPlan is gemmplan.WGMMAPlan within the workspace ws (none if null).
func wgmmaPlan(m, n, k, sms int, ws MatmulScratch) gemmplan.MMASplit {
	floats, counters := 0, 0
	if !ws.Partials.IsNull() && !ws.Counters.IsNull() {
		floats, counters = int(ws.Partials.Elems), int(ws.Counters.Elems)
	}
	return gemmplan.WGMMAPlan(m, n, k, sms, floats, counters)
}

// kMajor is the tensor map of an operand whose rows (outer) of k (inner)
// bf16 are ld apart, read in boxes of 64 k × rows.
func kMajor(k, outer, ld, rows int) program.TensorMap {
	return program.TensorMap{Inner: int64(k), Outer: int64(outer), Stride: int64(ld), BoxInner: wgmmaBox, BoxOuter: rows}
}

// kMajorTF32 is kMajor over fp32: boxes of 32 k × rows.
func kMajorTF32(k, outer, ld, rows int) program.TensorMap {
	m := kMajor(k, outer, ld, rows)
	m.BoxInner = wgmmaBoxTF32
	return m
}

// mnMajor is the tensor map of an operand whose k rows (outer) of mn
// (inner) elements are ld apart, read in boxes of 64 (m or n) × 64 k.
func mnMajor(mn, k, ld int) program.TensorMap {
	return program.TensorMap{Inner: int64(mn), Outer: int64(k), Stride: int64(ld), BoxInner: wgmmaBox, BoxOuter: gemmplan.WGMMABlockK}
}

// outMap is the tensor map of an output of rows (outer) of cols (inner)
// elements, ld apart, written by TMA in boxes of 64 × 64 (each consumer
// warpgroup's half of a 128-row tile, 64 columns at a time).
func outMap(cols, rows, ld int) program.TensorMap {
	return program.TensorMap{Inner: int64(cols), Outer: int64(rows), Stride: int64(ld), BoxInner: wgmmaBox, BoxOuter: 64}
}

// workspaceArgs are a plan's partials and counters.
func workspaceArgs(ws MatmulScratch, p gemmplan.MMASplit) []program.Arg {
	return []program.Arg{
		program.InOut("partials", ws.Partials, int64(p.PartialFloats())),
		program.InOut("counters", ws.Counters, int64(p.Counters())),
	}
}

// MatmulForwardWGMMA computes out(n,oc) = inp(n,c)·w(oc,c)ᵀ + bias(oc) on
// Hopper's tensor cores; out has row stride ld ≥ oc (columns oc..ld−1 left
// alone); bias may be null. ws is the split-K workspace (null for none).
// The views must pass WGMMAFits.
func MatmulForwardWGMMA(out, inp, w, bias program.View, ws MatmulScratch, n, c, oc, ld, sms int) program.Op {
	return MatmulForwardWGMMAPlan(out, inp, w, bias, ws, n, c, oc, ld, wgmmaPlan(n, oc, c, sms, ws), sms)
}

// MatmulForwardWGMMAPlan is MatmulForwardWGMMA with the plan given; sms
// sizes the persistent grid.
func MatmulForwardWGMMAPlan(out, inp, w, bias program.View, ws MatmulScratch, n, c, oc, ld int, p gemmplan.MMASplit, sms int) program.Op {
	mustFitWGMMA(c, ld, out, inp, w, bias)
	if inp.Buf.Elem == program.F32 {
		return matmulForwardWGMMATF32(out, inp, w, bias, ws, n, c, oc, ld, p, sms)
	}
	args := []program.Arg{
		program.InMap("a", inp, int64(n*c), kMajor(c, n, c, gemmplan.MMABlockM)),
		program.InMap("b", w, int64(oc*c), kMajor(c, oc, c, p.BN)),
		// TMA stores whole 16-byte chunks: the map ends at the last
		// whole one (at least one, so that it encodes), and the kernel
		// stores the last oc mod 8 columns through the pointer.
		program.OutMap("out_map", out, strided(n, oc, ld), outMap(max(oc/8*8, 8), n, ld)),
		program.Out("out", out, strided(n, oc, ld)), program.In("bias", bias, optional(bias, oc)),
	}
	args = append(args, workspaceArgs(ws, p)...)
	args = append(args, program.Int("N", n), program.Int("C", c), program.Int("OC", oc), program.Int("ld", ld))
	op := wgmmaKernel("matmul_forward_wgmma", p, sms, matmulFLOPs(n, c, oc), args...)
	op.Bytes -= args[3].Bytes() // out and out_map are one tensor: count its bytes once
	if !bias.IsNull() {
		op.FLOPs += int64(n) * int64(oc)
	}
	return op
}

// MatmulBackwardInputWGMMA computes dinp(n,c) = dout(n,oc)·w(oc,c),
// overwriting dinp; dout has row stride ld ≥ oc.
func MatmulBackwardInputWGMMA(dinp, dout, w program.View, ws MatmulScratch, n, c, oc, ld, sms int) program.Op {
	return MatmulBackwardInputWGMMAPlan(dinp, dout, w, ws, n, c, oc, ld, wgmmaPlan(n, c, oc, sms, ws), sms)
}

// MatmulBackwardInputWGMMAPlan is MatmulBackwardInputWGMMA with the plan given.
func MatmulBackwardInputWGMMAPlan(dinp, dout, w program.View, ws MatmulScratch, n, c, oc, ld int, p gemmplan.MMASplit, sms int) program.Op {
	mustFitWGMMA(c, ld, dinp, dout, w)
	args := []program.Arg{
		program.InMap("a", dout, strided(n, oc, ld), kMajor(oc, n, ld, gemmplan.MMABlockM)),
		program.InMap("b", w, int64(oc*c), mnMajor(c, oc, c)),
		program.OutMap("dinp", dinp, int64(n*c), outMap(c, n, c)),
	}
	args = append(args, workspaceArgs(ws, p)...)
	args = append(args, program.Int("N", n), program.Int("C", c), program.Int("OC", oc))
	return wgmmaKernel("matmul_backward_input_wgmma", p, sms, matmulFLOPs(n, c, oc), args...)
}

// MatmulBackwardWeightWGMMA computes dw(oc,c) = dout(n,oc)ᵀ·inp(n,c),
// overwriting dw; dout has row stride ld ≥ oc. The split over the n rows
// is as MatmulBackwardWeightMMA's (deterministic; counters zero before and
// after).
func MatmulBackwardWeightWGMMA(dw, dout, inp program.View, ws MatmulScratch, n, c, oc, ld, sms int) program.Op {
	return MatmulBackwardWeightWGMMAPlan(dw, dout, inp, ws, n, c, oc, ld, wgmmaPlan(oc, c, n, sms, ws), sms)
}

// MatmulBackwardWeightWGMMAPlan is MatmulBackwardWeightWGMMA with the plan given.
func MatmulBackwardWeightWGMMAPlan(dw, dout, inp program.View, ws MatmulScratch, n, c, oc, ld int, p gemmplan.MMASplit, sms int) program.Op {
	mustFitWGMMA(c, ld, dw, dout, inp)
	args := []program.Arg{
		program.InMap("a", dout, strided(n, oc, ld), mnMajor(oc, n, ld)),
		program.InMap("b", inp, int64(n*c), mnMajor(c, n, c)),
		program.OutMap("dw", dw, int64(oc*c), outMap(c, oc, c)),
	}
	args = append(args, workspaceArgs(ws, p)...)
	args = append(args, program.Int("N", n), program.Int("C", c), program.Int("OC", oc))
	return wgmmaKernel("matmul_backward_weight_wgmma", p, sms, matmulFLOPs(n, c, oc), args...)
}

// MatmulBackwardWGMMA is the linear layer's backward pass on the Hopper
// tier: dinp, dw and (unless null) dbias (BiasBackwardBF16), all
// overwritten, from dout of row stride ld ≥ oc.
func MatmulBackwardWGMMA(dinp, dw, dbias, dout, inp, w program.View, ws MatmulScratch, n, c, oc, ld, sms int) []program.Op {
	ops := []program.Op{
		MatmulBackwardInputWGMMA(dinp, dout, w, ws, n, c, oc, ld, sms),
		MatmulBackwardWeightWGMMA(dw, dout, inp, ws, n, c, oc, ld, sms),
	}
	if !dbias.IsNull() {
		ops = append(ops, BiasBackwardBF16(dbias, dout, ws, n, oc, ld, sms))
	}
	return ops
}

func mustFitWGMMA(c, ld int, views ...program.View) {
	if !WGMMAFits(c, ld, views...) {
		panic(fmt.Sprintf("kernels: the Hopper GEMM needs all-bf16 or all-f32 views at offsets and rows of multiples of 8 elements (c = %d, ld = %d): check WGMMAFits first", c, ld))
	}
}

// matmulForwardWGMMATF32 is MatmulForwardWGMMAPlan over f32 views: the
// TF32 entry, out written from the registers (no tensor map).
func matmulForwardWGMMATF32(out, inp, w, bias program.View, ws MatmulScratch, n, c, oc, ld int, p gemmplan.MMASplit, sms int) program.Op {
	args := []program.Arg{
		program.InMap("a", inp, int64(n*c), kMajorTF32(c, n, c, gemmplan.MMABlockM)),
		program.InMap("b", w, int64(oc*c), kMajorTF32(c, oc, c, p.BN)),
		program.Out("out", out, strided(n, oc, ld)), program.In("bias", bias, optional(bias, oc)),
	}
	args = append(args, workspaceArgs(ws, p)...)
	args = append(args, program.Int("N", n), program.Int("C", c), program.Int("OC", oc), program.Int("ld", ld))
	op := wgmmaKernel("matmul_forward_wgmma_tf32", p, sms, matmulFLOPs(n, c, oc), args...)
	if !bias.IsNull() {
		op.FLOPs += int64(n) * int64(oc)
	}
	return op
}

// roundUp8 is n rounded up to a multiple of 8: the row stride of a
// transposed operand (TMA's 16-byte rows, the epilogue's pairs).
func roundUp8(n int) int { return (n + 7) / 8 * 8 }

// MatmulTransposeTF32 writes out(cols, rows), row stride ldo, the
// transpose of in(rows, cols), row stride ldi: the K-major operands of the
// TF32 backward products. Columns rows..ldo−1 of out are left alone.
func MatmulTransposeTF32(out, in program.View, rows, cols, ldi, ldo int) program.Op {
	if ldi < cols || ldo < rows {
		panic(fmt.Sprintf("kernels: transpose of %d×%d with row strides %d (in) and %d (out)", rows, cols, ldi, ldo))
	}
	return kernel(wgmmaModule, "matmul_transpose_tf32",
		program.D2(ceilDiv(cols, transposeTile), ceilDiv(rows, transposeTile)), program.D2(transposeTile, transposeRows),
		program.Out("out", out, strided(cols, rows, ldo)), program.In("in", in, strided(rows, cols, ldi)),
		program.Int("rows", rows), program.Int("cols", cols), program.Int("ldi", ldi), program.Int("ldo", ldo))
}

// The transpose's tile and block (gemmplan.TransposeTile, TransposeRows).
const (
	transposeTile = gemmplan.TransposeTile
	transposeRows = gemmplan.TransposeRows
)

// MatmulTransposeScratchTF32 is the scratch elements, f32, that
// MatmulBackwardWGMMATF32 needs for an (n, c, oc) layer: wᵀ (c rows of
// roundUp8(oc)), and with the weight gradient on wgmma (weightGrad) doutᵀ
// and inpᵀ (oc and c rows of roundUp8(n)) after it, in the same space.
func MatmulTransposeScratchTF32(n, c, oc int, weightGrad bool) int64 {
	s := int64(c) * int64(roundUp8(oc))
	if weightGrad {
		s = max(s, int64(oc+c)*int64(roundUp8(n)))
	}
	return s
}

// MatmulBackwardInputWGMMATF32 computes dinp(n,c) = dout(n,oc)·w(oc,c) in
// TF32 from wt = wᵀ (c rows of oc, stride ldt), overwriting dinp; dout has
// row stride ld ≥ oc.
func MatmulBackwardInputWGMMATF32(dinp, dout, wt program.View, ws MatmulScratch, n, c, oc, ld, ldt, sms int) program.Op {
	return MatmulBackwardInputWGMMATF32Plan(dinp, dout, wt, ws, n, c, oc, ld, ldt, wgmmaPlan(n, c, oc, sms, ws), sms)
}

// MatmulBackwardInputWGMMATF32Plan is MatmulBackwardInputWGMMATF32 with
// the plan given.
func MatmulBackwardInputWGMMATF32Plan(dinp, dout, wt program.View, ws MatmulScratch, n, c, oc, ld, ldt int, p gemmplan.MMASplit, sms int) program.Op {
	mustFitWGMMA(c, ld, dinp, dout, wt)
	mustFitWGMMA(c, ldt, wt)
	args := []program.Arg{
		program.InMap("a", dout, strided(n, oc, ld), kMajorTF32(oc, n, ld, gemmplan.MMABlockM)),
		program.InMap("b", wt, strided(c, oc, ldt), kMajorTF32(oc, c, ldt, p.BN)),
		program.Out("dinp", dinp, int64(n*c)),
	}
	args = append(args, workspaceArgs(ws, p)...)
	args = append(args, program.Int("N", n), program.Int("C", c), program.Int("OC", oc))
	return wgmmaKernel("matmul_backward_input_wgmma_tf32", p, sms, matmulFLOPs(n, c, oc), args...)
}

// MatmulBackwardWeightWGMMATF32 computes dw(oc,c) = dout(n,oc)ᵀ·inp(n,c) in
// TF32 from doutT = doutᵀ (oc rows of n) and inpT = inpᵀ (c rows of n),
// both of row stride ldn, overwriting dw.
func MatmulBackwardWeightWGMMATF32(dw, doutT, inpT program.View, ws MatmulScratch, n, c, oc, ldn, sms int) program.Op {
	return MatmulBackwardWeightWGMMATF32Plan(dw, doutT, inpT, ws, n, c, oc, ldn, wgmmaPlan(oc, c, n, sms, ws), sms)
}

// MatmulBackwardWeightWGMMATF32Plan is MatmulBackwardWeightWGMMATF32 with
// the plan given.
func MatmulBackwardWeightWGMMATF32Plan(dw, doutT, inpT program.View, ws MatmulScratch, n, c, oc, ldn int, p gemmplan.MMASplit, sms int) program.Op {
	mustFitWGMMA(c, ldn, dw, doutT, inpT)
	args := []program.Arg{
		program.InMap("a", doutT, strided(oc, n, ldn), kMajorTF32(n, oc, ldn, gemmplan.MMABlockM)),
		program.InMap("b", inpT, strided(c, n, ldn), kMajorTF32(n, c, ldn, p.BN)),
		program.Out("dw", dw, int64(oc*c)),
	}
	args = append(args, workspaceArgs(ws, p)...)
	args = append(args, program.Int("N", n), program.Int("C", c), program.Int("OC", oc))
	return wgmmaKernel("matmul_backward_weight_wgmma_tf32", p, sms, matmulFLOPs(n, c, oc), args...)
}

// MatmulBackwardWGMMATF32 is the linear layer's backward pass in TF32 on
// the Hopper tier, all outputs overwritten: wᵀ into the scratch tr
// (MatmulTransposeScratchTF32 elements, f32), the input gradient from it;
// with weightGrad, doutᵀ and inpᵀ into tr and the weight gradient from
// them, else the weight gradient on mma.sync (MatmulBackwardWeightMMA);
// then (unless null) the bias gradient (BiasBackward, dense dout).
func MatmulBackwardWGMMATF32(dinp, dw, dbias, dout, inp, w, tr program.View, ws MatmulScratch, n, c, oc, ld, sms int, weightGrad bool) []program.Op {
	need := MatmulTransposeScratchTF32(n, c, oc, weightGrad)
	if tr.IsNull() || tr.Elems < need {
		panic(fmt.Sprintf("kernels: the TF32 backward of (%d, %d, %d) needs %d scratch elements, has %d", n, c, oc, need, tr.Elems))
	}
	ldt, ldn := roundUp8(oc), roundUp8(n)
	at := func(label string, off, elems int64) program.View {
		return tr.Buf.Slice(label, tr.Offset+off, elems)
	}
	wt := at("wT", 0, int64(c)*int64(ldt))
	ops := []program.Op{
		MatmulTransposeTF32(wt, w, oc, c, c, ldt),
		MatmulBackwardInputWGMMATF32(dinp, dout, wt, ws, n, c, oc, ld, ldt, sms),
	}
	if weightGrad {
		doutT := at("doutT", 0, int64(oc)*int64(ldn))
		inpT := at("inpT", int64(oc)*int64(ldn), int64(c)*int64(ldn))
		ops = append(ops,
			MatmulTransposeTF32(doutT, dout, n, oc, ld, ldn),
			MatmulTransposeTF32(inpT, inp, n, c, c, ldn),
			MatmulBackwardWeightWGMMATF32(dw, doutT, inpT, ws, n, c, oc, ldn, sms))
	} else {
		ops = append(ops, MatmulBackwardWeightMMA(dw, dout, inp, ws, n, c, oc, ld, sms))
	}
	if !dbias.IsNull() {
		if ld != oc {
			panic(fmt.Sprintf("kernels: the f32 bias gradient reads a dense dout, but its row stride is %d for %d columns", ld, oc))
		}
		ops = append(ops, BiasBackward(dbias, dout, n, oc))
	}
	return ops
}
