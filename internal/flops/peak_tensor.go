package flops

import (
	"fmt"
	"strings"

	"github.com/gpubench/gpubench/internal/config"
)

// TensorPeakEntry is a datasheet dense tensor-core peak (no sparsity), in
// TFLOP/s at boost clock, matched on a device name as PeakEntry is.
type TensorPeakEntry struct {
	Match, Label string
	BF16, TF32   float64
}

// TensorPeakTable lists the dense bf16 and TF32 tensor peaks of the GPUs
// gpubench's tensor-core dtypes run on (sm_80 and later), from NVIDIA's
// datasheets; most specific first.
var TensorPeakTable = []TensorPeakEntry{
	{"GH200", "GH200", 989.4, 494.7},
	{"H200 NVL", "H200 NVL", 835.5, 417.8},
	{"H200", "H200 SXM", 989.4, 494.7},
	{"H100 PCIe", "H100 PCIe", 756.5, 378.0},
	{"H100 NVL", "H100 NVL", 835.5, 417.8},
	{"H100 80GB HBM3", "H100 SXM", 989.4, 494.7},
	{"H100 SXM", "H100 SXM", 989.4, 494.7},
	{"H100 SXM5", "H100 SXM", 989.4, 494.7},
	{"A100", "A100", 312, 156},
	{"A800", "A800", 312, 156},
	{"A10", "A10", 125, 62.5},
	{"A40", "A40", 149.7, 74.8},
	{"L40S", "L40S", 362.1, 183},
	{"L40", "L40", 181, 90.5},
	{"L4", "L4", 121, 60},
}

// tensorFLOPsPerClock is the dense bf16 tensor FLOPs per SM per clock of
// the data-centre parts (A100: 2048, H100: 4096), for GPUs the table
// misses; TF32 is half. 0 where it is not known.
func tensorFLOPsPerClock(ccMajor, ccMinor int) int {
	switch {
	case ccMajor == 8 && ccMinor == 0:
		return 2048
	case ccMajor == 9 && ccMinor == 0:
		return 4096
	}
	return 0
}

// Peak is the peak that the step's counted FLOPs are a share of at dtype
// dt: the FP32 peak for fp32, the dense tensor-core peak of the operand
// type for tf32 and bf16 (where the products, nearly all of the FLOPs,
// run). It returns 0 and why when the GPU is not known.
func Peak(dt config.DType, name string, smCount, ccMajor, ccMinor, maxClockMHz int) (tflops float64, source string) {
	if !dt.TensorCores() {
		return PeakFP32(name, smCount, ccMajor, ccMinor, maxClockMHz)
	}
	for _, e := range TensorPeakTable {
		if containsWords(lower(name), lower(e.Match)) {
			if dt == config.BF16 {
				return e.BF16, "table: " + e.Label + " dense bf16 tensor"
			}
			return e.TF32, "table: " + e.Label + " dense TF32 tensor"
		}
	}
	per := tensorFLOPsPerClock(ccMajor, ccMinor)
	if dt == config.TF32 {
		per /= 2
	}
	if per == 0 || smCount <= 0 || maxClockMHz <= 0 {
		return 0, fmt.Sprintf("unknown: %q not in the tensor table, formula lacks data (sm_%d%d, %d SMs, %d MHz)",
			name, ccMajor, ccMinor, smCount, maxClockMHz)
	}
	tf := float64(smCount) * float64(per) * float64(maxClockMHz) * 1e6 / 1e12
	return tf, fmt.Sprintf("formula: %d SMs × %d %s tensor FLOPs/clock × %d MHz", smCount, per, dt, maxClockMHz)
}

func lower(s string) string { return strings.ToLower(s) }
