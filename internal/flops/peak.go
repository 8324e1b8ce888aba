package flops

import (
	"fmt"
	"strings"
)

// PeakEntry is a datasheet dense FP32 (non-tensor) peak, matched on a device
// name.
type PeakEntry struct {
	// Match is compared case-insensitively with the device name (as NVML or
	// cuDeviceGetName report it); it must occur as whole words: "A10"
	// matches "NVIDIA A10" but not "NVIDIA A100", "H200" not "GH200".
	Match  string
	Label  string  // what the source string calls it
	TFLOPS float64 // dense FP32, TFLOP/s, at boost clock
}

// PeakTable lists known GPUs, most specific first; the first match wins.
// Names the table misses fall back to the SM-count formula, which gives the
// same numbers for the variants listed here.
var PeakTable = []PeakEntry{
	{"GH200", "GH200", 66.9},
	{"H200 NVL", "H200 NVL", 60.0},
	{"H200", "H200 SXM", 66.9},
	{"H100 PCIe", "H100 PCIe", 51.2},
	{"H100 NVL", "H100 NVL", 60.0},
	{"H100 80GB HBM3", "H100 SXM", 66.9},
	{"H100 SXM", "H100 SXM", 66.9},
	{"H100 SXM5", "H100 SXM", 66.9},
	{"A100", "A100", 19.5},
	{"A800", "A800", 19.5},
	{"A10", "A10", 31.2},
	{"A40", "A40", 37.4},
	{"L40S", "L40S", 91.6},
	{"L40", "L40", 90.5},
	{"L4", "L4", 30.3},
	{"RTX 4090", "RTX 4090", 82.6},
	{"RTX 3090", "RTX 3090", 35.6},
	{"RTX A6000", "RTX A6000", 38.7},
	{"T4", "T4", 8.1},
	{"V100-SXM2", "V100 SXM2", 15.7},
	{"V100 SXM2", "V100 SXM2", 15.7},
	{"V100-PCIE", "V100 PCIe", 14.0},
	{"V100 PCIe", "V100 PCIe", 14.0},
}

// FP32LanesPerSM is the number of FP32 CUDA cores per SM for a compute
// capability, or 0 if unknown. Note sm_80 (A100) has 64 while sm_86, sm_89
// and sm_90 have 128.
func FP32LanesPerSM(ccMajor, ccMinor int) int {
	switch ccMajor {
	case 3:
		return 192
	case 5:
		return 128
	case 6:
		if ccMinor == 0 {
			return 64 // P100
		}
		return 128
	case 7:
		return 64 // V100 (7.0), Xavier (7.2), Turing (7.5)
	case 8:
		if ccMinor == 0 {
			return 64 // A100
		}
		return 128 // 8.6 Ampere consumer/A10/A40, 8.7 Orin, 8.9 Ada
	case 9, 10, 12:
		return 128 // Hopper, Blackwell
	}
	return 0
}

// PeakFP32 returns the dense FP32 peak in TFLOP/s and where it came from.
// It first matches name against PeakTable; failing that it computes
// smCount × FP32LanesPerSM × 2 × maxClockMHz (the max SM clock, e.g. NVML's
// max SM clock or CU_DEVICE_ATTRIBUTE_CLOCK_RATE/1000). If neither works it
// returns 0 and a source saying why; a caller then prints no % of peak.
func PeakFP32(name string, smCount, ccMajor, ccMinor int, maxClockMHz int) (tflops float64, source string) {
	if e, ok := lookupPeak(name); ok {
		return e.TFLOPS, "table: " + e.Label
	}
	lanes := FP32LanesPerSM(ccMajor, ccMinor)
	if lanes == 0 || smCount <= 0 || maxClockMHz <= 0 {
		return 0, fmt.Sprintf("unknown: %q not in table, formula lacks data (sm_%d%d, %d SMs, %d MHz)",
			name, ccMajor, ccMinor, smCount, maxClockMHz)
	}
	tf := float64(smCount) * float64(lanes) * 2 * float64(maxClockMHz) * 1e6 / 1e12
	return tf, fmt.Sprintf("formula: %d SMs × %d FP32 lanes × 2 × %d MHz", smCount, lanes, maxClockMHz)
}

func lookupPeak(name string) (PeakEntry, bool) {
	n := strings.ToLower(name)
	for _, e := range PeakTable {
		if containsWords(n, strings.ToLower(e.Match)) {
			return e, true
		}
	}
	return PeakEntry{}, false
}

// containsWords reports whether sub occurs in s with no letter or digit
// directly before or after it.
func containsWords(s, sub string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], sub)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(sub)
		if (start == 0 || !isAlnum(s[start-1])) && (end == len(s) || !isAlnum(s[end])) {
			return true
		}
		i = start + 1
	}
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}
