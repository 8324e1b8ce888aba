package ptx

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// These tests hold constants_mma_attention.go to attention_mma.cu, read as
// text like constants_test.go reads the fp32 sources (no toolkit, no GPU).
// attention_mma.cu names its constants `static constexpr int` (no #define
// and no top-level `constexpr int`, which constants_test.go's inventory
// would ask to be listed there); the inventory below accounts for each.

const attnMMAFile = "attention_mma.cu"

var (
	attnMMAConstexpr = regexp.MustCompile(`(?m)^static\s+constexpr\s+int\s+(\w+)\s*=\s*([^;]+);`)
	// template <> struct AttnMmaFwd<64> { static constexpr int R = 128, S = 64; };
	attnMMASpec = regexp.MustCompile(`template\s*<\s*>\s*struct\s+AttnMma(\w+?)\s*<\s*(\d+)\s*>\s*\{\s*static\s+constexpr\s+int\s+R\s*=\s*(\d+)\s*,\s*S\s*=\s*(\d+)\s*;\s*\}\s*;`)
	attnMMAAny  = regexp.MustCompile(`struct\s+AttnMma\w+\s*<\s*\d+\s*>`)
	// if (hs == 64) { forward_mma<64>(...
	attnMMABranch = regexp.MustCompile(`hs\s*==\s*(\d+)\s*\)\s*\{\s*(\w+)_mma\s*<\s*(\d+)\s*>`)
	attnMMABounds = regexp.MustCompile(`__launch_bounds__\s*\(\s*ATT_MMA_THREADS\s*(,\s*\w+\s*)?\)\s*(\w+)\s*\(`)
)

// attnMMAMirrors are the constants of attention_mma.cu that Go restates.
var attnMMAMirrors = map[string]struct {
	goName string
	value  int
}{
	"ATT_MMA_THREADS": {"ptx.AttentionMMAThreads", AttentionMMAThreads},
}

// attnMMACudaOnly are its constants that no Go code needs, with the reason.
var attnMMACudaOnly = map[string]string{
	"ATT_MMA_WARPS":     "ATT_MMA_THREADS / WARP_SIZE, the warps inside a block",
	"ATT_MMA_FWD_SMEM":  "static shared memory, fixed at compile time (static_assert ≤ 48 KB); no dynamic shared memory to pass",
	"ATT_MMA_DKDV_SMEM": "static shared memory, as ATT_MMA_FWD_SMEM",
	"ATT_MMA_DQ_SMEM":   "static shared memory, as ATT_MMA_FWD_SMEM",
}

// attnMMAEntries are the module's kernels, in file order.
var attnMMAEntries = []string{"attention_forward_bf16", "attention_backward_preprocess_bf16",
	"attention_backward_dkdv_bf16", "attention_backward_dq_bf16"}

// checkAttentionMMA returns the ways in which the Go side and the source
// raw (attention_mma.cu with its comments) disagree, given the parsed
// sources s (for the headers attention_mma.cu includes).
func checkAttentionMMA(s cuSources, raw string) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if m := nvccArchLine.FindStringSubmatch(raw); m == nil || m[1] != "compute_80" {
		add("%s: no `// nvcc-arch: compute_80` line: bf16 mma.sync, ldmatrix and cp.async need sm_80", attnMMAFile)
	}
	f := s[attnMMAFile]
	if f == nil {
		return append(problems, attnMMAFile+": missing")
	}

	// The constants: each mirrored or CUDA-only, evaluated as the source
	// sees them (WARP_SIZE comes from common.cuh).
	local := cuSources{}
	for k, v := range s {
		local[k] = v
	}
	g := *f
	g.consts = map[string]string{}
	for k, v := range f.consts {
		g.consts[k] = v
	}
	var names []string
	for _, m := range attnMMAConstexpr.FindAllStringSubmatch(f.text, -1) {
		g.consts[m[1]] = strings.TrimSpace(m[2])
		names = append(names, m[1])
	}
	local[attnMMAFile] = &g
	sort.Strings(names)
	for _, n := range names {
		if mir, ok := attnMMAMirrors[n]; ok {
			v, err := local.value(attnMMAFile, n)
			switch {
			case err != nil:
				add("%s: %s, which %s mirrors, cannot be read: %v", attnMMAFile, n, mir.goName, err)
			case v != mir.value:
				add("%s: %s is %d, but %s is %d", attnMMAFile, n, v, mir.goName, mir.value)
			}
		} else if _, ok := attnMMACudaOnly[n]; !ok {
			add("%s: static constexpr int %s = %s is not accounted for: mirror it in ptx/constants_mma_attention.go (and attnMMAMirrors), or list it in attnMMACudaOnly with the reason Go does not need it", attnMMAFile, n, g.consts[n])
		}
	}
	for _, list := range []map[string]bool{keysOf(attnMMAMirrors), keysOf(attnMMACudaOnly)} {
		for n := range list {
			if !slices.Contains(names, n) {
				add("%s: %s is listed in constants_mma_attention_test.go but no longer defined there", attnMMAFile, n)
			}
		}
	}

	// The tile tables.
	configs := AttentionMMAConfigs()
	goTiles := map[string]map[int]AttentionTile{"Fwd": {}, "Dkdv": {}, "Dq": {}}
	goField := map[string]string{"Fwd": "Fwd", "Dkdv": "DKDV", "Dq": "DQ"}
	var goDs []int
	for _, c := range configs {
		goDs = append(goDs, c.D)
		goTiles["Fwd"][c.D], goTiles["Dkdv"][c.D], goTiles["Dq"][c.D] = c.Fwd, c.DKDV, c.DQ
	}
	specs := attnMMASpec.FindAllStringSubmatch(f.text, -1)
	if n := len(attnMMAAny.FindAllString(f.text, -1)); n != len(specs) {
		add("%s: %d AttnMma specialisations, of which only %d have the form `template <> struct AttnMmaX<D> { static constexpr int R = .., S = ..; };` this test reads", attnMMAFile, n, len(specs))
	}
	cuTiles := map[string]map[int]AttentionTile{}
	for _, m := range specs {
		kind := m[1]
		d, _ := strconv.Atoi(m[2])
		r, _ := strconv.Atoi(m[3])
		sv, _ := strconv.Atoi(m[4])
		if cuTiles[kind] == nil {
			cuTiles[kind] = map[int]AttentionTile{}
		}
		cuTiles[kind][d] = AttentionTile{R: r, S: sv}
		want, ok := goTiles[kind]
		if !ok {
			add("%s: AttnMma%s<%d> is a table ptx.AttentionConfig has no field for", attnMMAFile, kind, d)
			continue
		}
		w, ok := want[d]
		if !ok {
			add("%s: AttnMma%s<%d> exists, but ptx.AttentionMMAConfigs() has no D = %d", attnMMAFile, kind, d, d)
			continue
		}
		if w.R != r {
			add("%s: AttnMma%s<%d>::R is %d, but ptx.AttentionMMAConfigs()[D=%d].%s.R is %d", attnMMAFile, kind, d, r, d, goField[kind], w.R)
		}
		if w.S != sv {
			add("%s: AttnMma%s<%d>::S is %d, but ptx.AttentionMMAConfigs()[D=%d].%s.S is %d", attnMMAFile, kind, d, sv, d, goField[kind], w.S)
		}
	}
	for kind, byD := range goTiles {
		for d := range byD {
			if _, ok := cuTiles[kind][d]; !ok {
				add("%s: ptx.AttentionMMAConfigs() has D = %d, but there is no AttnMma%s<%d>", attnMMAFile, d, kind, d)
			}
		}
	}
	// Block shapes the grids assume: dkdv and dq blocks own 16 rows a warp;
	// the forward a whole number of m16 tiles a warp.
	rowsPerM16 := 16 * AttentionMMAThreads / WarpSize
	for _, c := range configs {
		if c.Fwd.R%rowsPerM16 != 0 || c.DKDV.R != rowsPerM16 || c.DQ.R != rowsPerM16 {
			add("ptx.AttentionMMAConfigs()[D=%d]: Fwd.R %d must be a multiple of, DKDV.R %d and DQ.R %d equal to, 16 rows × %d warps", c.D, c.Fwd.R, c.DKDV.R, c.DQ.R, AttentionMMAThreads/WarpSize)
		}
	}
	if !slices.IsSorted(goDs) {
		add("ptx.AttentionMMAConfigs() is not by increasing D: %v", goDs)
	}

	// The branches: each entry runs exactly head sizes D with its D's code.
	branches := map[string][]int{}
	for _, m := range attnMMABranch.FindAllStringSubmatch(f.text, -1) {
		hs, _ := strconv.Atoi(m[1])
		d, _ := strconv.Atoi(m[3])
		if hs != d {
			add("%s: branch `hs == %d` runs %s_mma<%d>", attnMMAFile, hs, m[2], d)
		}
		branches[m[2]] = append(branches[m[2]], d)
	}
	for _, kernel := range []string{"forward", "dkdv", "dq"} {
		if !slices.Equal(branches[kernel], goDs) {
			add("%s: %s_mma runs head sizes %v, but ptx.AttentionMMAHeadSizes() is %v", attnMMAFile, kernel, branches[kernel], goDs)
		}
	}

	var bounded []string
	for _, m := range attnMMABounds.FindAllStringSubmatch(f.text, -1) {
		bounded = append(bounded, m[2])
	}
	for _, e := range []string{"attention_forward_bf16", "attention_backward_dkdv_bf16", "attention_backward_dq_bf16"} {
		if !slices.Contains(bounded, e) {
			add("%s: %s is not declared __launch_bounds__(ATT_MMA_THREADS[, n]), the block the launchers use", attnMMAFile, e)
		}
	}
	if AttentionMMAPreprocessBlock%WarpSize != 0 || AttentionMMAPreprocessBlock > MaxBlockThreads {
		add("ptx.AttentionMMAPreprocessBlock is %d: attention_backward_preprocess_bf16 runs a warp a row, so it must be a multiple of %d up to %d", AttentionMMAPreprocessBlock, WarpSize, MaxBlockThreads)
	}
	return problems
}

func keysOf[V any](m map[string]V) map[string]bool {
	k := map[string]bool{}
	for n := range m {
		k[n] = true
	}
	return k
}

func TestConstantsAttentionMMA(t *testing.T) {
	texts := readCU(t)
	reportProblems(t, checkAttentionMMA(parseCU(texts), texts[attnMMAFile]))
}

// TestAttentionMMAModule: the embedded PTX is an sm_80 module (loaded only
// on GPUs that have it) with the four entries the launchers name.
func TestAttentionMMAModule(t *testing.T) {
	target, ok := ModuleTarget("attention_mma")
	if !ok || target != (Target{SM: 80}) {
		t.Errorf("attention_mma.ptx targets %v (%v), want sm_80", target, ok)
	}
	if got := Entries("attention_mma"); !slices.Equal(got, attnMMAEntries) {
		t.Errorf("attention_mma.ptx entries %v, want %v", got, attnMMAEntries)
	}
	for _, e := range attnMMAEntries {
		params, _ := Params("attention_mma", e)
		want := []string{"u64", "u64", "u64", "u32", "u32", "u32", "u32"} // (d, dout, out), B, T, C, NH
		switch {
		case strings.Contains(e, "forward"): // (out, lse, qkv), B, T, C, NH, NKV
			want = []string{"u64", "u64", "u64", "u32", "u32", "u32", "u32", "u32"}
		case strings.Contains(e, "dkdv") || strings.Contains(e, "_dq_"):
			want = []string{"u64", "u64", "u64", "u64", "u64", "u32", "u32", "u32", "u32", "u32"}
		}
		if !slices.Equal(params, want) {
			t.Errorf("%s: parameters %v, want %v", e, params, want)
		}
	}
}

func TestAttentionMMAHeadSizes(t *testing.T) {
	for hs := -1; hs <= 257; hs++ {
		ok := hs == 32 || hs == 64 || hs == 128
		if AttentionMMAHeadSizeOK(hs) != ok {
			t.Errorf("AttentionMMAHeadSizeOK(%d) = %v", hs, !ok)
		}
		func() {
			defer func() {
				if r := recover(); (r == nil) != ok {
					t.Errorf("AttentionMMAConfigFor(%d): panic %v", hs, r)
				}
			}()
			if c := AttentionMMAConfigFor(hs); c.D != hs {
				t.Errorf("AttentionMMAConfigFor(%d).D = %d", hs, c.D)
			}
		}()
	}
	c := AttentionMMAConfigs()
	c[0].D = -1
	if AttentionMMAConfigs()[0].D == -1 {
		t.Error("AttentionMMAConfigs returned the table itself")
	}
}

// TestConstantsAttentionMMACatchDrift edits the real source in memory and
// requires checkAttentionMMA to report each drift with the names and values.
func TestConstantsAttentionMMACatchDrift(t *testing.T) {
	cases := []driftCase{
		{"threads", "ATT_MMA_THREADS = 128;", "ATT_MMA_THREADS = 256;",
			[]string{attnMMAFile, "ATT_MMA_THREADS is 256", "ptx.AttentionMMAThreads is 128"}},
		{"fwd R", "AttnMmaFwd<64> { static constexpr int R = 128", "AttnMmaFwd<64> { static constexpr int R = 64",
			[]string{attnMMAFile, "AttnMmaFwd<64>::R is 64", "[D=64].Fwd.R is 128"}},
		{"dq S", "AttnMmaDq<128> { static constexpr int R = 64, S = 32", "AttnMmaDq<128> { static constexpr int R = 64, S = 16",
			[]string{attnMMAFile, "AttnMmaDq<128>::S is 16", "[D=128].DQ.S is 32"}},
		{"new D", "template <> struct AttnMmaDq<128>", "template <> struct AttnMmaDq<256> { static constexpr int R = 64, S = 16; };\ntemplate <> struct AttnMmaDq<128>",
			[]string{attnMMAFile, "AttnMmaDq<256>", "no D = 256"}},
		{"branch", "if (hs == 128) {\n        dq_mma<128>", "if (hs == 96) {\n        dq_mma<128>",
			[]string{attnMMAFile, "hs == 96", "dq_mma<128>"}},
		{"new constant", "static constexpr int ATT_MMA_WARPS", "static constexpr int ATT_MMA_STAGES = 2;\nstatic constexpr int ATT_MMA_WARPS",
			[]string{attnMMAFile, "ATT_MMA_STAGES", "not accounted for"}},
		{"arch", "// nvcc-arch: compute_80", "// compute_80",
			[]string{attnMMAFile, "nvcc-arch"}},
		{"bounds", "__launch_bounds__(ATT_MMA_THREADS)\n    attention_backward_dq_bf16", "\n    attention_backward_dq_bf16",
			[]string{attnMMAFile, "attention_backward_dq_bf16", "__launch_bounds__"}},
	}
	requireDriftCaught(t, attnMMAFile, checkAttentionMMA, cases)
}
