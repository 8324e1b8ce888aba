package ptx

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/gemmplan"
)

// The constants of matmul_mma.cu, the tensor-core GEMM, held to their Go
// mirrors: gemmplan's MMA* (the block tile, the pipeline, the shared
// memory the launchers pass) and constants_mma.go's bias_backward_bf16
// block. Its constants are indented in the mma namespace, out of
// constants_test.go's column-0 inventory, so this file keeps their
// inventory: every constexpr int of matmul_mma.cu is mirrored here or
// listed in mmaCudaOnly with the reason.

const mmaFile = "matmul_mma.cu"

var mmaConstexpr = regexp.MustCompile(`(?m)^\s*constexpr\s+int\s+(\w+)\s*=\s*([^;]+);`)

// mmaMirrors are matmul_mma.cu's constants that Go restates.
var mmaMirrors = []mirror{
	{mmaFile, "BM", "gemmplan.MMABlockM", gemmplan.MMABlockM},
	{mmaFile, "BN_WIDE", "gemmplan.MMABlockNWide", gemmplan.MMABlockNWide},
	{mmaFile, "BN_NARROW", "gemmplan.MMABlockNNarrow", gemmplan.MMABlockNNarrow},
	{mmaFile, "THREADS", "gemmplan.MMAThreads", gemmplan.MMAThreads},
	{mmaFile, "STAGES", "gemmplan.MMAStages", gemmplan.MMAStages},
	{mmaFile, "ROW_BYTES", "gemmplan.MMARowBytes", gemmplan.MMARowBytes},
	{mmaFile, "KC_STRIDE", "gemmplan.MMARowStride", gemmplan.MMARowStride},
	{mmaFile, "SMEM_WIDE", "gemmplan.MMASharedBytes(MMABlockNWide)", gemmplan.MMASharedBytes(gemmplan.MMABlockNWide)},
	{mmaFile, "SMEM_NARROW", "gemmplan.MMASharedBytes(MMABlockNNarrow)", gemmplan.MMASharedBytes(gemmplan.MMABlockNNarrow)},
	{mmaFile, "BIAS_COLS", "ptx.BiasBackwardBF16Cols", BiasBackwardBF16Cols},
	{mmaFile, "BIAS_ROWS", "ptx.BiasBackwardBF16Rows", BiasBackwardBF16Rows},
}

// mmaCudaOnly are matmul_mma.cu's constants that no Go code needs.
var mmaCudaOnly = map[string]string{
	"WARPS_N": "the warps' arrangement inside a block; Go sees only THREADS",
	"KSTEPS":  "mma k-steps a stage, ROW_BYTES/32, inside the kernel",
	"GROUP_M": "block-index swizzle inside the kernel; the grid is the tile count whatever it is",
}

// parseMMA reads matmul_mma.cu's constexpr ints, at any indentation.
func parseMMA(s cuSources) (*cuFile, []string) {
	f := s[mmaFile]
	if f == nil {
		return nil, []string{mmaFile + ": missing"}
	}
	g := *f
	g.consts = map[string]string{}
	for k, v := range f.consts {
		g.consts[k] = v
	}
	for _, m := range mmaConstexpr.FindAllStringSubmatch(f.text, -1) {
		g.consts[m[1]] = strings.TrimSpace(m[2])
	}
	return &g, nil
}

var (
	mmaBounds     = regexp.MustCompile(`__launch_bounds__\s*\(\s*THREADS\s*,\s*(\d+)\s*\)`)
	mmaBiasBounds = regexp.MustCompile(`__launch_bounds__\s*\(\s*BIAS_COLS\s*/\s*(\d+)\s*\*\s*BIAS_ROWS\s*\)`)
	mmaBiasCol    = regexp.MustCompile(`blockIdx\.x\s*\*\s*BIAS_COLS\s*\+\s*x\s*\*\s*(\d+)`)
)

// checkMMA holds the Go mirrors to matmul_mma.cu and keeps its inventory.
func checkMMA(s cuSources) []string {
	f, problems := parseMMA(s)
	if f == nil {
		return problems
	}
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	local := cuSources{mmaFile: f}
	for _, m := range mmaMirrors {
		v, err := local.value(mmaFile, m.macro)
		if err != nil {
			add("%s: %s, which %s mirrors, cannot be read: %v", mmaFile, m.macro, m.goName, err)
		} else if v != m.goValue {
			add("%s: %s is %d, but %s is %d", mmaFile, m.macro, v, m.goName, m.goValue)
		}
	}
	// A slice must be whole stages of both types: BK = ROW_BYTES/2 (bf16)
	// and ROW_BYTES/4 (fp32).
	if rb := gemmplan.MMARowBytes; gemmplan.MMASliceAlign%(rb/2) != 0 || gemmplan.MMASliceAlign%(rb/4) != 0 {
		add("%s: ROW_BYTES = %d gives stages of %d bf16 and %d fp32 rows, which gemmplan.MMASliceAlign %d is not a multiple of",
			mmaFile, rb, rb/2, rb/4, gemmplan.MMASliceAlign)
	}
	// Every width the planner may pick is one the kernel dispatches on.
	for _, bn := range gemmplan.MMABlockNs {
		if bn != gemmplan.MMABlockNWide && bn != gemmplan.MMABlockNNarrow {
			add("gemmplan.MMABlockNs holds %d, which is neither BN_WIDE nor BN_NARROW", bn)
		}
	}
	if m := mmaBounds.FindAllStringSubmatch(f.text, -1); len(m) != 6 {
		add("%s: %d GEMM entries with __launch_bounds__(THREADS, n), want 6", mmaFile, len(m))
	} else {
		for _, b := range m {
			if b[1] != fmt.Sprint(gemmplan.MMAResidentBlocks) {
				add("%s: __launch_bounds__(THREADS, %s), but gemmplan.MMAResidentBlocks is %d", mmaFile, b[1], gemmplan.MMAResidentBlocks)
			}
		}
	}
	mb, mc := mmaBiasBounds.FindStringSubmatch(f.text), mmaBiasCol.FindStringSubmatch(f.text)
	if mb == nil || mc == nil {
		add("%s: bias_backward_bf16 no longer has the __launch_bounds__(BIAS_COLS / n * BIAS_ROWS) and blockIdx.x * BIAS_COLS + x * n this test reads", mmaFile)
	} else if mb[1] != fmt.Sprint(BiasBackwardBF16PerThread) || mc[1] != fmt.Sprint(BiasBackwardBF16PerThread) {
		add("%s: bias_backward_bf16 gives a thread %s (bounds) and %s (columns) columns, but ptx.BiasBackwardBF16PerThread is %d",
			mmaFile, mb[1], mc[1], BiasBackwardBF16PerThread)
	}
	if r := BiasBackwardBF16Rows; r&(r-1) != 0 || BiasBackwardBF16Cols/BiasBackwardBF16PerThread*r > MaxBlockThreads {
		add("ptx.BiasBackwardBF16Rows %d must be a power of two (the tree) and the block at most %d threads", r, MaxBlockThreads)
	}
	// Inventory.
	known := map[string]bool{}
	for _, m := range mmaMirrors {
		known[m.macro] = true
	}
	for k := range mmaCudaOnly {
		known[k] = true
	}
	var names []string
	for _, m := range mmaConstexpr.FindAllStringSubmatch(f.text, -1) {
		names = append(names, m[1])
	}
	for _, m := range defineLine.FindAllStringSubmatch(f.text, -1) {
		names = append(names, m[1])
	}
	sort.Strings(names)
	for _, n := range names {
		if !known[n] {
			add("%s: %s is not accounted for: mirror it in constants_mma_test.go's mmaMirrors, or list it in mmaCudaOnly with the reason Go does not need it", mmaFile, n)
		}
	}
	for k := range known {
		if _, ok := f.consts[k]; !ok {
			add("%s: %s is listed in constants_mma_test.go but no longer defined there", mmaFile, k)
		}
	}
	sort.Strings(problems)
	return problems
}

func TestConstantsMMA(t *testing.T) { reportProblems(t, checkMMA(parseCU(readCU(t)))) }

// TestConstantsMMACatchDrift edits matmul_mma.cu in memory and requires
// checkMMA to report each drift.
func TestConstantsMMACatchDrift(t *testing.T) {
	cases := []struct {
		name, old, new string
		wantParts      []string
	}{
		{"STAGES", "constexpr int STAGES = 4;", "constexpr int STAGES = 3;", []string{mmaFile, "STAGES is 3", "gemmplan.MMAStages is 4"}},
		{"BM", "constexpr int BM = 128;", "constexpr int BM = 64;", []string{mmaFile, "BM is 64", "gemmplan.MMABlockM is 128"}},
		{"BN_NARROW", "constexpr int BN_NARROW = 192;", "constexpr int BN_NARROW = 128;", []string{mmaFile, "BN_NARROW is 128", "gemmplan.MMABlockNNarrow is 192"}},
		{"ROW_BYTES", "constexpr int ROW_BYTES = 128;", "constexpr int ROW_BYTES = 64;", []string{mmaFile, "ROW_BYTES is 64", "gemmplan.MMARowBytes"}},
		{"padding", "constexpr int KC_STRIDE = ROW_BYTES + 16;", "constexpr int KC_STRIDE = ROW_BYTES;", []string{mmaFile, "SMEM_WIDE", "gemmplan.MMASharedBytes"}},
		{"bias rows", "constexpr int BIAS_ROWS = 32;", "constexpr int BIAS_ROWS = 16;", []string{mmaFile, "BIAS_ROWS is 16"}},
		{"residency", "__launch_bounds__(THREADS, 1)", "__launch_bounds__(THREADS, 2)", []string{mmaFile, "THREADS, 2", "gemmplan.MMAResidentBlocks"}},
		{"new constant", "constexpr int GROUP_M = 8;", "constexpr int GROUP_M = 8;\n    constexpr int SPLIT_MIN = 2;", []string{mmaFile, "SPLIT_MIN", "not accounted for"}},
	}
	orig := readCU(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if p := checkMMA(parseCU(orig)); len(p) > 0 {
				t.Fatalf("the unedited sources already fail: %v", p)
			}
			edited := map[string]string{}
			for k, v := range orig {
				edited[k] = v
			}
			if !strings.Contains(edited[mmaFile], c.old) {
				t.Fatalf("%s no longer contains %q: update this case", mmaFile, c.old)
			}
			edited[mmaFile] = strings.Replace(edited[mmaFile], c.old, c.new, 1)
			for _, p := range checkMMA(parseCU(edited)) {
				if containsAll(p, c.wantParts) {
					return
				}
			}
			t.Errorf("no problem reported mentions all of %q; got %q", c.wantParts, checkMMA(parseCU(edited)))
		})
	}
}
