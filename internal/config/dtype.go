package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gpubench/gpubench/ptx"
)

// DType is the precision of a step: what its buffers hold and what its
// products run on.
type DType string

// The dtypes of a run.
const (
	// FP32: fp32 storage, every product on the FP32 units (the default).
	FP32 DType = "fp32"
	// TF32: fp32 storage, the linear layers' products on tensor cores in
	// TF32 (10-bit mantissa operands, fp32 accumulation).
	TF32 DType = "tf32"
	// BF16: parameters, activations and gradients in bfloat16, every
	// product on tensor cores with fp32 accumulation; statistics, softmax,
	// the loss and every reduction in fp32.
	BF16 DType = "bf16"
)

// DTypes lists the dtypes in the order --help shows them.
var DTypes = []DType{FP32, TF32, BF16}

// ParseDType checks a --dtype value.
func ParseDType(s string) (DType, error) { return parseChoice("--dtype", "dtype", s, DTypes) }

// parseChoice returns the one of allowed that s names, or the one-line
// error of flag: what it got (a kind, quoted) and what it allows.
func parseChoice[T ~string](flag, kind, s string, allowed []T) (T, error) {
	names := make([]string, len(allowed))
	for i, a := range allowed {
		if string(a) == s {
			return a, nil
		}
		names[i] = string(a)
	}
	return "", fmt.Errorf("%s: unknown %s %q (allowed: %s)", flag, kind, s, strings.Join(names, ", "))
}

// TensorCores says whether the dtype's products run on tensor cores.
func (t DType) TensorCores() bool { return t == TF32 || t == BF16 }

// ValidateDType checks the shape against the limits of the dtype's own
// kernels, beyond Validate's: the bf16 flash attention has tiles for some
// head sizes only.
func (d Dims) ValidateDType(t DType) error {
	if t == BF16 && !bf16HeadSizeOK(d.HeadSize()) {
		return fmt.Errorf("--dtype=bf16: head size C/NH = %d/%d = %d has no bf16 attention kernel (allowed: %s; or use --dtype=fp32 or tf32)",
			d.C, d.NH, d.HeadSize(), bf16HeadSizes)
	}
	return nil
}

// bf16HeadSizeOK and bf16HeadSizes are the head sizes of the bf16 attention
// kernels (ptx/attention_mma.cu's tile table, mirrored in package ptx).
var (
	bf16HeadSizeOK = ptx.AttentionMMAHeadSizeOK
	bf16HeadSizes  = joinInts(ptx.AttentionMMAHeadSizes())
)

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}
