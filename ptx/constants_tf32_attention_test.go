package ptx

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// These tests hold constants_tf32_attention.go to attention_tf32.cu, read
// as text like constants_mma_attention_test.go reads attention_mma.cu. Its
// constants are `static constexpr int`, one a line; each is mirrored in Go
// or listed as CUDA-only with the reason.

const attnTF32File = "attention_tf32.cu"

var attnTF32Bounds = regexp.MustCompile(`__launch_bounds__\s*\(\s*ATT_TF32_THREADS\s*(,\s*\w+\s*)?\)\s*(\w+)\s*\(`)

// attnTF32Mirrors are the constants of attention_tf32.cu that Go restates.
var attnTF32Mirrors = map[string]constMirror{
	"ATT_TF32_THREADS":   {"ptx.AttentionTF32Threads", AttentionTF32Threads},
	"ATT_TF32_D":         {"ptx.AttentionTF32HeadSize", AttentionTF32HeadSize},
	"ATT_TF32_FWD_R":     {"ptx.AttentionTF32ForwardRows", AttentionTF32ForwardRows},
	"ATT_TF32_DKDV_R":    {"ptx.AttentionTF32DKDVRows", AttentionTF32DKDVRows},
	"ATT_TF32_DQ_R":      {"ptx.AttentionTF32DQRows", AttentionTF32DQRows},
	"ATT_TF32_FWD_SMEM":  {"ptx.AttentionTF32ForwardSharedBytes", AttentionTF32ForwardSharedBytes},
	"ATT_TF32_DKDV_SMEM": {"ptx.AttentionTF32DKDVSharedBytes", AttentionTF32DKDVSharedBytes},
	"ATT_TF32_DQ_SMEM":   {"ptx.AttentionTF32DQSharedBytes", AttentionTF32DQSharedBytes},
}

// attnTF32CudaOnly are its constants that no Go code needs, with the reason.
var attnTF32CudaOnly = map[string]string{
	"ATT_TF32_WARPS":  "ATT_TF32_THREADS / WARP_SIZE, the warps inside a block",
	"ATT_TF32_ROW":    "the padded shared row in floats; Go sees it only through the *_SMEM sizes",
	"ATT_TF32_FWD_S":  "the streamed key tile: sets the loop inside a block, not the grid (and *_SMEM)",
	"ATT_TF32_DKDV_S": "the streamed query tile, as ATT_TF32_FWD_S",
	"ATT_TF32_DQ_S":   "the streamed key tile, as ATT_TF32_FWD_S",
}

// attnTF32Entries are the module's kernels, in file order.
var attnTF32Entries = []string{"attention_forward_tf32", "attention_backward_dkdv_tf32", "attention_backward_dq_tf32"}

var attnTF32Module = constModule{
	file: attnTF32File, goFile: "constants_tf32_attention.go", testFile: "constants_tf32_attention_test.go",
	mirrors: attnTF32Mirrors, cudaOnly: attnTF32CudaOnly,
	arch: "compute_80", archWhy: "TF32 mma.sync, ldmatrix and cp.async need sm_80",
}

// checkAttentionTF32 returns the ways in which the Go side and the source
// raw (attention_tf32.cu with its comments) disagree, given the parsed
// sources s (for common.cuh's WARP_SIZE): checkModuleConstants' checks,
// and every entry declared with the block the launchers use.
func checkAttentionTF32(s cuSources, raw string) []string {
	c := checkModuleConstants(s, raw, attnTF32Module)
	if c.value == nil {
		return c.problems
	}
	var bounded []string
	for _, m := range attnTF32Bounds.FindAllStringSubmatch(s[attnTF32File].text, -1) {
		bounded = append(bounded, m[2])
	}
	for _, e := range attnTF32Entries {
		if !slices.Contains(bounded, e) {
			c.add("%s: %s is not declared __launch_bounds__(ATT_TF32_THREADS[, n]), the block the launchers use", attnTF32File, e)
		}
	}
	return c.problems
}

func TestConstantsAttentionTF32(t *testing.T) {
	texts := readCU(t)
	reportProblems(t, checkAttentionTF32(parseCU(texts), texts[attnTF32File]))
}

// TestAttentionTF32Module: the embedded PTX is an sm_80 module with the
// three entries the launchers name, each with the parameters of its fp32
// counterpart in attention.ptx.
func TestAttentionTF32Module(t *testing.T) {
	target, ok := ModuleTarget("attention_tf32")
	if !ok || target != (Target{SM: 80}) {
		t.Errorf("attention_tf32.ptx targets %v (%v), want sm_80", target, ok)
	}
	if got := Entries("attention_tf32"); !slices.Equal(got, attnTF32Entries) {
		t.Errorf("attention_tf32.ptx entries %v, want %v", got, attnTF32Entries)
	}
	for _, e := range attnTF32Entries {
		params, _ := Params("attention_tf32", e)
		want, ok := Params("attention", strings.TrimSuffix(e, "_tf32"))
		if !ok || !slices.Equal(params, want) {
			t.Errorf("%s: parameters %v, want attention.ptx's %v (%v)", e, params, want, ok)
		}
	}
	for hs := -1; hs <= 257; hs++ {
		if AttentionTF32HeadSizeOK(hs) != (hs == 64) {
			t.Errorf("AttentionTF32HeadSizeOK(%d) = %v", hs, hs != 64)
		}
	}
}

// TestConstantsAttentionTF32CatchDrift edits the real source in memory and
// requires checkAttentionTF32 to report each drift with the names and values.
func TestConstantsAttentionTF32CatchDrift(t *testing.T) {
	cases := []driftCase{
		{"threads", "ATT_TF32_THREADS = 128;", "ATT_TF32_THREADS = 256;",
			[]string{attnTF32File, "ATT_TF32_THREADS is 256", "ptx.AttentionTF32Threads is 128"}},
		{"fwd R", "ATT_TF32_FWD_R = 64;", "ATT_TF32_FWD_R = 128;",
			[]string{attnTF32File, "ATT_TF32_FWD_R is 128", "ptx.AttentionTF32ForwardRows is 64"}},
		{"row padding", "ATT_TF32_ROW = ATT_TF32_D + 4;", "ATT_TF32_ROW = ATT_TF32_D + 8;",
			[]string{attnTF32File, "ATT_TF32_FWD_SMEM is 73728", "ptx.AttentionTF32ForwardSharedBytes is 69632"}},
		{"dq tile", "ATT_TF32_DQ_S = 32;", "ATT_TF32_DQ_S = 64;",
			[]string{attnTF32File, "ATT_TF32_DQ_SMEM is 69632", "ptx.AttentionTF32DQSharedBytes is 34816"}},
		{"new constant", "static constexpr int ATT_TF32_WARPS", "static constexpr int ATT_TF32_STAGES = 2;\nstatic constexpr int ATT_TF32_WARPS",
			[]string{attnTF32File, "ATT_TF32_STAGES", "not accounted for"}},
		{"arch", "// nvcc-arch: compute_80", "// compute_80",
			[]string{attnTF32File, "nvcc-arch"}},
		{"bounds", "__launch_bounds__(ATT_TF32_THREADS, 3)\n    attention_backward_dq_tf32", "\n    attention_backward_dq_tf32",
			[]string{attnTF32File, "attention_backward_dq_tf32", "__launch_bounds__"}},
	}
	requireDriftCaught(t, attnTF32File, checkAttentionTF32, cases)
}
