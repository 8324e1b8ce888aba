package kernels

import (
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// The kernels of ptx/layernorm.cu. inp, out, the parameters and the
// gradients are all f32 (module layernorm) or all bf16 (module
// layernorm_bf16, elem.go); mean, rstd and the partials are f32 in both.

// LayerNormPartialSize is the size, in floats, of the scratch buffer that
// the LayerNorm backward needs for N rows of C channels: the partial sums
// of dw and db, one row of C each per chunk of ptx.LayerNormBwdRows rows. One
// buffer serves every LayerNorm of the model (they all have C channels); it
// is only live between the two launches of one backward.
func LayerNormPartialSize(N, C int) int { return 2 * ceilDiv(N, ptx.LayerNormBwdRows) * C }

// LayerNormForward normalises the N rows of inp (N,C): out = (x−mean)·rstd·w
// + b, and saves mean (N) and rstd (N) for the backward. mean and rstd may
// be null views to skip them.
func LayerNormForward(out, mean, rstd, inp, w, b program.View, N, C int) program.Op {
	s := storage("layernorm_forward", out, inp, w, b)
	require("layernorm_forward", program.F32, mean, rstd)
	rowsPerBlock := ptx.LayerNormBlock / ptx.WarpSize
	op := stored(s, "layernorm", "layernorm_forward", program.D1(max(ceilDiv(N, rowsPerBlock), 1)), program.D1(ptx.LayerNormBlock),
		program.Out("out", out, int64(N*C)), program.Out("mean", mean, optional(mean, N)), program.Out("rstd", rstd, optional(rstd, N)),
		program.In("inp", inp, int64(N*C)), program.In("weight", w, int64(C)), program.In("bias", b, int64(C)),
		program.Int("N", N), program.Int("C", C))
	op.FLOPs = int64(N*C) * LayerNormFwdFLOPs
	return op
}

// LayerNormBackwardInput ACCUMULATES the input gradient into dinp (N,C) and
// writes the per-chunk partial sums of dw and db into scratch
// (LayerNormPartialSize(N, C) floats), for LayerNormBackwardParams to
// finish. mean and rstd are the forward's.
func LayerNormBackwardInput(dinp, scratch, dout, inp, w, mean, rstd program.View, N, C int) program.Op {
	s := storage("layernorm_backward_input", dinp, dout, inp, w)
	require("layernorm_backward_input", program.F32, scratch, mean, rstd)
	op := stored(s, "layernorm", "layernorm_backward_input", program.D1(max(ceilDiv(N, ptx.LayerNormBwdRows), 1)), program.D1(ptx.LayerNormBlock),
		program.InOut("dinp", dinp, int64(N*C)), program.Out("scratch", scratch, int64(LayerNormPartialSize(N, C))),
		program.In("dout", dout, int64(N*C)), program.In("inp", inp, int64(N*C)), program.In("weight", w, int64(C)),
		program.In("mean", mean, int64(N)), program.In("rstd", rstd, int64(N)),
		program.Int("N", N), program.Int("C", C))
	op.FLOPs = int64(N*C) * LayerNormBwdFLOPs
	return op
}

// LayerNormBackwardParams OVERWRITES dw (C) and db (C) with the sums of the
// partials that LayerNormBackwardInput left in scratch, in a fixed order
// (deterministic).
func LayerNormBackwardParams(dw, db, scratch program.View, N, C int) program.Op {
	s := storage("layernorm_backward_params", dw, db)
	require("layernorm_backward_params", program.F32, scratch)
	op := stored(s, "layernorm", "layernorm_backward_params", program.D1(max(ceilDiv(C, ptx.LayerNormParamsCols), 1)),
		program.D2(ptx.LayerNormParamsCols, ptx.LayerNormParamsSlices),
		program.Out("dw", dw, int64(C)), program.Out("db", db, int64(C)),
		program.In("scratch", scratch, int64(LayerNormPartialSize(N, C))), program.Int("N", N), program.Int("C", C))
	op.FLOPs = int64(N*C) * LayerNormParamsFLOPs
	return op
}

// LayerNormBackward is the whole LayerNorm backward, two launches: the
// input gradient (dinp +=, partials into scratch), then the parameter
// gradients (dw =, db =).
func LayerNormBackward(dinp, dw, db, scratch, dout, inp, w, mean, rstd program.View, N, C int) []program.Op {
	return []program.Op{
		LayerNormBackwardInput(dinp, scratch, dout, inp, w, mean, rstd, N, C),
		LayerNormBackwardParams(dw, db, scratch, N, C),
	}
}
