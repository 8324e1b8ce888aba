package kernels

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/gemmplan"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/matmul_mma.cu: the linear layers' products on tensor
// cores (mma.sync, sm_80 and later), in bf16 or TF32, and the bf16 bias
// gradient. See docs/matmul.md ("Tensor cores") for the design.
//
// The semantics are those of the fp32 builders of matmul.go, with two
// additions:
//
//   - The (n, oc) tensor (out in the forward, dout in both backward
//     products) has a row stride ld ≥ oc, so that the lm head can keep its
//     vocabulary padded; only its first oc columns are read or written.
//     Every other operand is dense.
//   - The element type comes from the views: all bf16 (bf16 products,
//     fp32 accumulation, the output rounded to bf16 once) or all f32
//     (products on TF32 tensor cores, operands rounded with cvt.rna, fp32
//     output). A mix panics.
//
// The block tile is 128×256 or 128×192 (gemmplan.MMAPick, by the SM count
// and the shape); the result of the forward and the input gradient does
// not depend on it (every output's sum runs over k in the same order), the
// weight gradient's split does (MatmulBackwardWeightMMA).

const mmaModule = "matmul_mma"

// mmaModuleLow is matmul_mma.cu built at gemmplan.MMAStagesLow stages
// (ptx/matmul_mma3.cu): the same entries, less shared memory.
const mmaModuleLow = "matmul_mma3"

// MMAOnStages retargets the matmul_mma launches among ops to the build of
// stages pipeline stages: gemmplan.MMAStages leaves them as they are,
// gemmplan.MMAStagesLow moves them to matmul_mma3 with its shared memory.
// Other ops pass unchanged. It panics on any other depth.
func MMAOnStages(stages int, ops ...program.Op) []program.Op {
	if stages == gemmplan.MMAStages {
		return ops
	}
	if stages != gemmplan.MMAStagesLow {
		panic(fmt.Sprintf("kernels: no matmul_mma build of %d stages (have %d and %d)", stages, gemmplan.MMAStages, gemmplan.MMAStagesLow))
	}
	for i := range ops {
		op := &ops[i]
		if op.Module != mmaModule {
			continue
		}
		op.Module = mmaModuleLow
		for _, a := range op.Args {
			if a.Param == "bn" && op.SharedBytes > 0 {
				op.SharedBytes = gemmplan.MMASharedBytesAt(int(a.Int), stages)
			}
		}
	}
	return ops
}

// mmaSuffix is the entry suffix for views of one element type: "bf16" or
// "tf32" (f32 storage). It panics on a mix or any other type; null views
// (an absent bias) do not count.
func mmaSuffix(views ...program.View) string {
	var e program.Elem
	for _, v := range views {
		if v.IsNull() {
			continue
		}
		if e == "" {
			e = v.Buf.Elem
		} else if v.Buf.Elem != e {
			panic(fmt.Sprintf("kernels: tensor-core matmul over %s and %s views: all must be bf16 or all f32", e, v.Buf.Elem))
		}
	}
	switch e {
	case program.BF16:
		return "bf16"
	case program.F32:
		return "tf32"
	}
	panic(fmt.Sprintf("kernels: tensor-core matmul over %q views: want bf16 or f32", e))
}

// strided is the elements a kernel may touch in an (n, oc) tensor of row
// stride ld: up to the last row's oc-th column.
func strided(n, oc, ld int) int64 {
	if n <= 0 || oc <= 0 {
		return 0
	}
	if ld < oc {
		panic(fmt.Sprintf("kernels: row stride %d is shorter than the row's %d columns", ld, oc))
	}
	return int64(n-1)*int64(ld) + int64(oc)
}

// mmaKernel is a launch of a GEMM entry of matmul_mma over tiles block
// tiles of width bn and slices slices; the entry's last argument is bn.
func mmaKernel(entry string, bn, tiles, slices int, flops int64, args ...program.Arg) program.Op {
	args = append(args, program.Int("bn", bn))
	op := kernel(mmaModule, entry, program.D2(max(tiles, 1), max(slices, 1)), program.D1(gemmplan.MMAThreads), args...)
	op.SharedBytes = gemmplan.MMASharedBytes(bn)
	op.MatmulFLOPs = flops
	op.FLOPs = flops
	return op
}

// MatmulScratchSizeMMA is a workspace in which the tensor-core weight
// gradient dw(oc,c) = dout(n,oc)ᵀ·inp(n,c) can take its preferred split on
// any GPU: partial floats and int32 counters, both 0 when n is too short
// to split (gemmplan.MMAWeightGradScratch, a bound that needs no device).
func MatmulScratchSizeMMA(n, c, oc int) (partialFloats, counterInts int) {
	return gemmplan.MMAWeightGradScratch(n, c, oc)
}

// MatmulForwardMMA computes out(n,oc) = inp(n,c)·w(oc,c)ᵀ + bias(oc) on
// tensor cores; out has row stride ld ≥ oc, and columns oc..ld−1 of it are
// left alone. bias may be a null view for none. out must not overlap the
// inputs. sms picks the block tile (gemmplan.MMAPick); the result does not
// depend on it.
func MatmulForwardMMA(out, inp, w, bias program.View, n, c, oc, ld, sms int) program.Op {
	return mmaForward(out, inp, w, bias, n, c, oc, ld, gemmplan.MMAPick(n, oc, c, sms))
}

// mmaForward is MatmulForwardMMA with block tiles of width bn.
func mmaForward(out, inp, w, bias program.View, n, c, oc, ld, bn int) program.Op {
	sfx := mmaSuffix(out, inp, w, bias)
	op := mmaKernel("matmul_forward_"+sfx, bn, gemmplan.MMATiles(n, oc, bn), 1, matmulFLOPs(n, c, oc),
		program.Out("out", out, strided(n, oc, ld)), program.In("inp", inp, int64(n*c)), program.In("w", w, int64(oc*c)),
		program.In("bias", bias, optional(bias, oc)),
		program.Int("N", n), program.Int("C", c), program.Int("OC", oc), program.Int("ld", ld))
	if !bias.IsNull() {
		op.FLOPs += int64(n) * int64(oc)
	}
	return op
}

// MatmulBackwardInputMMA computes dinp(n,c) = dout(n,oc)·w(oc,c) on tensor
// cores, overwriting dinp; dout has row stride ld ≥ oc. sms picks the block
// tile (gemmplan.MMAPick); the result does not depend on it.
func MatmulBackwardInputMMA(dinp, dout, w program.View, n, c, oc, ld, sms int) program.Op {
	return mmaBackwardInput(dinp, dout, w, n, c, oc, ld, gemmplan.MMAPick(n, c, oc, sms))
}

// mmaBackwardInput is MatmulBackwardInputMMA with block tiles of width bn.
func mmaBackwardInput(dinp, dout, w program.View, n, c, oc, ld, bn int) program.Op {
	sfx := mmaSuffix(dinp, dout, w)
	return mmaKernel("matmul_backward_input_"+sfx, bn, gemmplan.MMATiles(n, c, bn), 1, matmulFLOPs(n, c, oc),
		program.Out("dinp", dinp, int64(n*c)), program.In("dout", dout, strided(n, oc, ld)), program.In("w", w, int64(oc*c)),
		program.Int("N", n), program.Int("C", c), program.Int("OC", oc), program.Int("ld", ld))
}

// MatmulWeightPlanMMA is the split of the tensor-core dw(oc,c) over n rows
// on sms SMs, within the workspace ws (gemmplan.MMAWeightGrad).
func MatmulWeightPlanMMA(n, c, oc, sms int, ws MatmulScratch) gemmplan.MMASplit {
	floats, counters := 0, 0
	if !ws.Partials.IsNull() && !ws.Counters.IsNull() {
		floats, counters = int(ws.Partials.Elems), int(ws.Counters.Elems)
	}
	return gemmplan.MMAWeightGrad(n, c, oc, sms, floats, counters)
}

// MatmulBackwardWeightMMA computes dw(oc,c) = dout(n,oc)ᵀ·inp(n,c) on
// tensor cores, overwriting dw, in one launch; dout has row stride ld ≥ oc.
//
// When the output has too few tiles to fill the GPU, the reduction over
// the n rows is split into S slices (grid tiles × S): each block sums its
// slice into an fp32 partial tile in ws, and the last block to finish a
// tile (elected with an integer counter) adds the S partials in slice
// order 0..S−1 and writes dw, rounded once. The order of every sum is fixed
// by (n, c, oc) and the SM count: deterministic. It differs in the last
// bits from the unsplit sum, and so between GPUs whose SM counts give
// different plans. ws's counters must be zero before the first launch and
// are left zero; a null ws disables the split.
func MatmulBackwardWeightMMA(dw, dout, inp program.View, ws MatmulScratch, n, c, oc, ld, sms int) program.Op {
	return MatmulBackwardWeightMMAPlan(dw, dout, inp, ws, n, c, oc, ld, MatmulWeightPlanMMA(n, c, oc, sms, ws))
}

// MatmulBackwardWeightMMAPlan is MatmulBackwardWeightMMA with the plan
// given; a split plan needs a workspace that holds it (program.Validate
// checks).
func MatmulBackwardWeightMMAPlan(dw, dout, inp program.View, ws MatmulScratch, n, c, oc, ld int, p gemmplan.MMASplit) program.Op {
	sfx := mmaSuffix(dw, dout, inp)
	if p.BN != gemmplan.MMABlockNWide && p.BN != gemmplan.MMABlockNNarrow {
		panic(fmt.Sprintf("kernels: tensor-core weight gradient plan %v: block width %d is neither %d nor %d",
			p, p.BN, gemmplan.MMABlockNWide, gemmplan.MMABlockNNarrow))
	}
	return mmaKernel("matmul_backward_weight_"+sfx, p.BN, p.Tiles, p.Slices, matmulFLOPs(n, c, oc),
		program.Out("dw", dw, int64(oc*c)), program.In("dout", dout, strided(n, oc, ld)), program.In("inp", inp, int64(n*c)),
		program.InOut("partials", ws.Partials, int64(p.PartialFloats())), program.InOut("counters", ws.Counters, int64(p.Counters())),
		program.Int("N", n), program.Int("C", c), program.Int("OC", oc), program.Int("ld", ld),
		program.Int("splits", p.Slices), program.Int("slice_k", p.SliceK))
}

// BiasBackwardBF16 computes dbias(oc) = Σ_n dout(n,oc) for bf16 dout of row
// stride ld ≥ oc, overwriting the bf16 dbias: fp32 sums in a fixed order
// (deterministic), rounded once. Blocks of (8, 32) threads own 64 columns
// each; when that is too few blocks to fill sms SMs, the rows are split
// into slices within the workspace ws (BiasSplit), whose counters must be
// zero before and are left zero. A null ws sums each column block in one
// block.
func BiasBackwardBF16(dbias, dout program.View, ws MatmulScratch, n, oc, ld, sms int) program.Op {
	if mmaSuffix(dbias, dout) != "bf16" {
		panic("kernels: BiasBackwardBF16 over f32 views: use BiasBackward")
	}
	splits, sliceRows := BiasSplit(n, oc, sms, ws)
	cols := max(ceilDiv(oc, ptx.BiasBackwardBF16Cols), 1)
	partials, counters := int64(0), int64(0)
	if splits > 1 {
		partials, counters = int64(splits*oc), int64(cols)
	}
	op := kernel(mmaModule, "bias_backward_bf16", program.D2(cols, splits),
		program.D2(ptx.BiasBackwardBF16Cols/ptx.BiasBackwardBF16PerThread, ptx.BiasBackwardBF16Rows),
		program.Out("dbias", dbias, int64(oc)), program.In("dout", dout, strided(n, oc, ld)),
		program.InOut("partials", ws.Partials, partials), program.InOut("counters", ws.Counters, counters),
		program.Int("N", n), program.Int("OC", oc), program.Int("ld", ld),
		program.Int("splits", splits), program.Int("slice_rows", sliceRows))
	op.FLOPs = int64(n) * int64(oc)
	return op
}

// biasBlocksPerSM is how many bias_backward_bf16 blocks of 256 threads an
// SM should get for the reads to reach the memory bandwidth: enough 16-byte
// loads in flight (each thread keeps four).
const biasBlocksPerSM = 4

// BiasSplit is bias_backward_bf16's split of n rows for oc columns on sms
// SMs: splits slices of sliceRows rows (the last may be shorter, none is
// empty), enough column blocks × slices for biasBlocksPerSM blocks an SM,
// each slice at least two rows a thread, and within the workspace ws (a
// partial float per slice and column, a counter per column block). A
// function of (n, oc, sms) and ws's size alone: deterministic.
func BiasSplit(n, oc, sms int, ws MatmulScratch) (splits, sliceRows int) {
	cols := max(ceilDiv(oc, ptx.BiasBackwardBF16Cols), 1)
	splits = min(ceilDiv(biasBlocksPerSM*max(sms, 1), cols), n/(2*ptx.BiasBackwardBF16Rows))
	if ws.Partials.IsNull() || ws.Counters.IsNull() || ws.Counters.Elems < int64(cols) {
		splits = 1
	} else {
		splits = min(splits, int(ws.Partials.Elems/int64(max(oc, 1))))
	}
	if splits < 2 {
		return 1, max(n, 1)
	}
	sliceRows = ceilDiv(n, splits)
	return ceilDiv(n, sliceRows), sliceRows
}

// MatmulBackwardMMA is the linear layer's backward pass on tensor cores:
// dinp = dout·w (n,c), dw = doutᵀ·inp (oc,c) and, when dbias is not null,
// dbias = colsum(dout) (oc), all overwritten; dout has row stride ld ≥ oc.
// The bias gradient is BiasBackwardBF16 for bf16, and for f32 the fp32
// BiasBackward, which reads a dense dout: it panics when ld ≠ oc. ws is the
// weight gradient's split-K workspace (see MatmulBackwardWeightMMA). Two
// launches, or three with the bias.
func MatmulBackwardMMA(dinp, dw, dbias, dout, inp, w program.View, ws MatmulScratch, n, c, oc, ld, sms int) []program.Op {
	ops := []program.Op{
		MatmulBackwardInputMMA(dinp, dout, w, n, c, oc, ld, sms),
		MatmulBackwardWeightMMA(dw, dout, inp, ws, n, c, oc, ld, sms),
	}
	if dbias.IsNull() {
		return ops
	}
	if mmaSuffix(dbias, dout) == "bf16" {
		return append(ops, BiasBackwardBF16(dbias, dout, ws, n, oc, ld, sms))
	}
	if ld != oc {
		panic(fmt.Sprintf("kernels: the f32 bias gradient reads a dense dout, but its row stride is %d for %d columns", ld, oc))
	}
	return append(ops, BiasBackward(dbias, dout, n, oc))
}
