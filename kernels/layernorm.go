package kernels

import "gorgonia.org/cu"

// LayerNorm holds the kernels of ptx/layernorm.cu.
type LayerNorm struct {
	forward        *kernel
	backwardInput  *kernel
	backwardParams *kernel
}

func (x *LayerNorm) load(l *loader) {
	x.forward = l.kernel("layernorm", "layernorm_forward")
	x.backwardInput = l.kernel("layernorm", "layernorm_backward_input")
	x.backwardParams = l.kernel("layernorm", "layernorm_backward_params")
}

const (
	// layerNormBlock is the block size of layernorm_forward and
	// layernorm_backward_input: 8 warps.
	layerNormBlock = 256
	// layerNormBwdRows is LN_BWD_ROWS of ptx/layernorm.cu: the rows of one
	// block of layernorm_backward_input, and of one chunk of partial sums.
	layerNormBwdRows = 32
	// layerNormParamsCols and layerNormParamsSlices are the block shape
	// (LN_PARAMS_COLS, LN_PARAMS_SLICES) of layernorm_backward_params.
	layerNormParamsCols   = 32
	layerNormParamsSlices = 16
)

// LayerNormPartialSize is the size, in floats, of the scratch buffer that
// LayerNorm.Backward needs for N rows of C channels: the partial sums of dw
// and db, one row of C each per chunk of 32 rows, 2·ceil(N/32)·C. One buffer
// can serve every LayerNorm of the model (they all have C channels); it is
// only live between the two launches of one Backward.
func LayerNormPartialSize(N, C int) int { return 2 * ceilDiv(N, layerNormBwdRows) * C }

// Forward normalises the N rows of inp (N,C): out = (x-mean)·rstd·w + b, and
// saves mean (N) and rstd (N) for the backward. mean and rstd may be 0 to
// skip them.
func (x *LayerNorm) Forward(s cu.Stream, out, mean, rstd, inp, w, b cu.DevicePtr, N, C int) error {
	rowsPerBlock := layerNormBlock / 32
	blocks := max(ceilDiv(N, rowsPerBlock), 1)
	return x.forward.launch(s, grid1(blocks), grid1(layerNormBlock), 0,
		ptr(out), ptr(mean), ptr(rstd), ptr(inp), ptr(w), ptr(b), i32(N), i32(C))
}

// BackwardInput ACCUMULATES the input gradient into dinp (N,C) and writes
// the per-chunk partial sums of dw and db into scratch (LayerNormPartialSize(N, C)
// floats), for BackwardParams to finish. mean and rstd are Forward's.
func (x *LayerNorm) BackwardInput(s cu.Stream, dinp, scratch, dout, inp, w, mean, rstd cu.DevicePtr, N, C int) error {
	blocks := max(ceilDiv(N, layerNormBwdRows), 1)
	return x.backwardInput.launch(s, grid1(blocks), grid1(layerNormBlock), 0,
		ptr(dinp), ptr(scratch), ptr(dout), ptr(inp), ptr(w), ptr(mean), ptr(rstd), i32(N), i32(C))
}

// BackwardParams OVERWRITES dw (C) and db (C) with the sums of the partials
// that BackwardInput left in scratch, in a fixed order (deterministic).
func (x *LayerNorm) BackwardParams(s cu.Stream, dw, db, scratch cu.DevicePtr, N, C int) error {
	blocks := max(ceilDiv(C, layerNormParamsCols), 1)
	return x.backwardParams.launch(s, grid1(blocks), grid2(layerNormParamsCols, layerNormParamsSlices), 0,
		ptr(dw), ptr(db), ptr(scratch), i32(N), i32(C))
}

// Backward is the whole LayerNorm backward, two launches: BackwardInput
// (dinp +=, partials into scratch) then BackwardParams (dw =, db =).
func (x *LayerNorm) Backward(s cu.Stream, dinp, dw, db, scratch, dout, inp, w, mean, rstd cu.DevicePtr, N, C int) error {
	if err := x.BackwardInput(s, dinp, scratch, dout, inp, w, mean, rstd, N, C); err != nil {
		return err
	}
	return x.BackwardParams(s, dw, db, scratch, N, C)
}
