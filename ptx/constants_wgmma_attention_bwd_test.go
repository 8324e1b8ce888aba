package ptx

import (
	"regexp"
	"slices"
	"testing"
)

// These tests hold constants_wgmma_attention_bwd.go to
// attention_wgmma_bwd.cu, read as text (no toolkit, no GPU), as
// constants_wgmma_attention_test.go does for the forward.

const attnWGMMABwdFile = "attention_wgmma_bwd.cu"

var attnWGMMABwdEntries = []string{"attention_backward_dkdv_wgmma", "attention_backward_dq_wgmma"}

// attnWGMMABwdMirrors are the constants of attention_wgmma_bwd.cu that Go
// restates.
var attnWGMMABwdMirrors = map[string]constMirror{
	"AWB_HS":        {"ptx.AttentionWGMMAHeadSize", AttentionWGMMAHeadSize},
	"AWB_UNIT_ROWS": {"ptx.AttentionWGMMABackwardRows", AttentionWGMMABackwardRows},
	"AWB_BOX":       {"ptx.AttentionWGMMABackwardBoxRows", AttentionWGMMABackwardBoxRows},
	"AWB_THREADS":   {"ptx.AttentionWGMMABackwardThreads", AttentionWGMMABackwardThreads},
	"AWB_DKDV_SMEM": {"ptx.AttentionWGMMABackwardDKDVSharedBytes", AttentionWGMMABackwardDKDVSharedBytes},
	"AWB_DQ_SMEM":   {"ptx.AttentionWGMMABackwardDQSharedBytes", AttentionWGMMABackwardDQSharedBytes},
}

// attnWGMMABwdCudaOnly are its constants that no Go code needs, with the
// reason.
var attnWGMMABwdCudaOnly = map[string]string{
	"AWB_STAGES":        "the ring's depth; Go sees it inside AWB_DKDV_SMEM and AWB_DQ_SMEM",
	"AWB_BOX_BYTES":     "one box of one head in shared memory, inside the kernels",
	"AWB_PRODUCER_REGS": "setmaxnreg's register split between the warpgroups, inside the kernels",
	"AWB_CONSUMER_REGS": "setmaxnreg's register split between the warpgroups, inside the kernels",
}

var attnWGMMABwdModule = hopperModule(attnWGMMABwdFile, "constants_wgmma_attention_bwd.go", "constants_wgmma_attention_bwd_test.go", attnWGMMABwdMirrors, attnWGMMABwdCudaOnly)

// checkAttentionWGMMABwd returns the ways in which the Go side and the
// source raw (attention_wgmma_bwd.cu with its comments) disagree, given
// the parsed sources s.
func checkAttentionWGMMABwd(s cuSources, raw string) []string {
	c := checkModuleConstants(s, raw, attnWGMMABwdModule)
	if c.value == nil {
		return c.problems
	}
	add, value := c.add, c.value

	rows, ok1 := value("AWB_UNIT_ROWS")
	threads, ok2 := value("AWB_THREADS")
	if ok1 && ok2 && threads != 128+2*rows {
		add("%s: AWB_THREADS is %d: a producer warpgroup and one consumer warpgroup per 64 of AWB_UNIT_ROWS's %d rows make %d", attnWGMMABwdFile, threads, rows, 128+2*rows)
	}
	prod, ok3 := value("AWB_PRODUCER_REGS")
	cons, ok4 := value("AWB_CONSUMER_REGS")
	if ok2 && ok3 && ok4 && (prod%8 != 0 || cons%8 != 0 || prod < 24 || cons > 256 || 128*prod+(threads-128)*cons > 65536) {
		add("%s: setmaxnreg gives %d registers to 128 producer and %d to %d consumer threads: multiples of 8 in 24..256 that fit 64K", attnWGMMABwdFile, prod, cons, threads-128)
	}
	for _, n := range []string{"AWB_DKDV_SMEM", "AWB_DQ_SMEM"} {
		if smem, ok := value(n); ok && smem > 227<<10 {
			add("%s: %s is %d bytes, more than the 227 KB an H100/H200 block may opt in to", attnWGMMABwdFile, n, smem)
		}
	}
	for _, e := range attnWGMMABwdEntries {
		if !regexp.MustCompile(`__launch_bounds__\s*\(\s*AWB_THREADS\s*,\s*1\s*\)\s*` + e + `\s*\(`).MatchString(s[attnWGMMABwdFile].text) {
			add("%s: %s is not declared __launch_bounds__(AWB_THREADS, 1), the block and the one block an SM the launcher assumes", attnWGMMABwdFile, e)
		}
	}
	return c.problems
}

func TestConstantsAttentionWGMMABackward(t *testing.T) {
	texts := readCU(t)
	reportProblems(t, checkAttentionWGMMABwd(parseCU(texts), texts[attnWGMMABwdFile]))
}

// TestAttentionWGMMABackwardModule: the embedded PTX is an sm_90a module
// with the two entries the launchers name, each taking dqkv, d, the dout
// and qkv tensor maps, lse and the shape.
func TestAttentionWGMMABackwardModule(t *testing.T) {
	target, ok := ModuleTarget("attention_wgmma_bwd")
	if !ok || target != (Target{SM: 90, ArchSpecific: true}) {
		t.Errorf("attention_wgmma_bwd.ptx targets %v (%v), want sm_90a", target, ok)
	}
	if got := Entries("attention_wgmma_bwd"); !slices.Equal(got, attnWGMMABwdEntries) {
		t.Errorf("attention_wgmma_bwd.ptx entries %v, want %v", got, attnWGMMABwdEntries)
	}
	// dqkv, d, dout (tensor map), qkv (tensor map), lse, B, T, C, NH, NKV
	want := []string{"u64", "u64", TensorMapParam, TensorMapParam, "u64", "u32", "u32", "u32", "u32", "u32"}
	for _, e := range attnWGMMABwdEntries {
		if params, _ := Params("attention_wgmma_bwd", e); !slices.Equal(params, want) {
			t.Errorf("%s: parameters %v, want %v", e, params, want)
		}
	}
}

// TestConstantsAttentionWGMMABackwardCatchDrift edits the real source in
// memory and requires checkAttentionWGMMABwd to report each drift.
func TestConstantsAttentionWGMMABackwardCatchDrift(t *testing.T) {
	cases := []driftCase{
		{"box", "AWB_BOX = 64;", "AWB_BOX = 32;",
			[]string{attnWGMMABwdFile, "AWB_BOX is 32", "ptx.AttentionWGMMABackwardBoxRows is 64"}},
		{"stages", "AWB_STAGES = 5;", "AWB_STAGES = 4;",
			[]string{attnWGMMABwdFile, "AWB_DKDV_SMEM is", "ptx.AttentionWGMMABackwardDKDVSharedBytes is 118368"}},
		{"threads", "AWB_THREADS = 384;", "AWB_THREADS = 512;",
			[]string{attnWGMMABwdFile, "AWB_THREADS is 512", "ptx.AttentionWGMMABackwardThreads is 384"}},
		{"registers", "AWB_CONSUMER_REGS = 232;", "AWB_CONSUMER_REGS = 240;",
			[]string{attnWGMMABwdFile, "setmaxnreg", "240"}},
		{"new constant", "static constexpr int AWB_STAGES", "static constexpr int AWB_EXTRA = 2;\nstatic constexpr int AWB_STAGES",
			[]string{attnWGMMABwdFile, "AWB_EXTRA", "not accounted for"}},
		{"target", "// ptx-target: sm_90a", "// sm_90a",
			[]string{attnWGMMABwdFile, "ptx-target"}},
		{"bounds", "__launch_bounds__(AWB_THREADS, 1)\n    attention_backward_dq_wgmma", "__launch_bounds__(AWB_THREADS)\n    attention_backward_dq_wgmma",
			[]string{attnWGMMABwdFile, "attention_backward_dq_wgmma", "__launch_bounds__"}},
	}
	requireDriftCaught(t, attnWGMMABwdFile, checkAttentionWGMMABwd, cases)
}
