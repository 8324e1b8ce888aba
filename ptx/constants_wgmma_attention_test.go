package ptx

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// These tests hold constants_wgmma_attention.go to attention_wgmma.cu, read
// as text (no toolkit, no GPU). Like attention_mma.cu, the source names its
// constants `static constexpr int` (attnMMAConstexpr reads them), so
// constants_test.go's inventory does not see them; the inventory below
// accounts for each.

const attnWGMMAFile = "attention_wgmma.cu"

var attnWGMMABounds = regexp.MustCompile(`__launch_bounds__\s*\(\s*AW_THREADS\s*,\s*1\s*\)\s*attention_forward_wgmma\s*\(`)

// attnWGMMAMirrors are the constants of attention_wgmma.cu that Go restates.
var attnWGMMAMirrors = map[string]constMirror{
	"AW_HS":      {"ptx.AttentionWGMMAHeadSize", AttentionWGMMAHeadSize},
	"AW_BM":      {"ptx.AttentionWGMMARows", AttentionWGMMARows},
	"AW_THREADS": {"ptx.AttentionWGMMAThreads", AttentionWGMMAThreads},
	"AW_SMEM":    {"ptx.AttentionWGMMASharedBytes", AttentionWGMMASharedBytes},
}

// attnWGMMACudaOnly are its constants that no Go code needs, with the reason.
var attnWGMMACudaOnly = map[string]string{
	"AW_BN":            "the key tile; one tensor map serves Q, K and V, so it equals AW_BM (checked below), the box rows Go sets",
	"AW_STAGES":        "the K/V ring's depth; Go sees it inside AW_SMEM",
	"AW_TILE_BYTES":    "one 128-row tile of one head in shared memory, inside the kernel",
	"AW_PRODUCER_REGS": "setmaxnreg's register split between the warpgroups, inside the kernel",
	"AW_CONSUMER_REGS": "setmaxnreg's register split between the warpgroups, inside the kernel",
}

// constMirror is a source constant that Go restates: its Go name and value.
type constMirror struct {
	goName string
	value  int
}

// constModule is what checkModuleConstants needs of a module whose
// constants are `static constexpr int` (attnMMAConstexpr reads them): its
// source, the Go file that mirrors it, the test that lists them, every
// constant either mirrored or CUDA-only with the reason, and the
// architecture lines the source must carry, with why (target is empty for
// a module without an architecture-specific target).
type constModule struct {
	file, goFile, testFile string
	mirrors                map[string]constMirror
	cudaOnly               map[string]string
	arch, archWhy          string
	target, targetWhy      string
}

// hopperModule is a constModule of the sm_90a tier.
func hopperModule(file, goFile, testFile string, mirrors map[string]constMirror, cudaOnly map[string]string) constModule {
	return constModule{file, goFile, testFile, mirrors, cudaOnly,
		"compute_90", "wgmma, TMA and setmaxnreg need sm_90", "sm_90a", "wgmma and setmaxnreg exist on sm_90a only"}
}

// constantsCheck gathers a module's problems; value reads one of its
// constants as the source sees it (nil when the source is missing), adding
// a problem when it cannot.
type constantsCheck struct {
	problems []string
	value    func(name string) (int, bool)
}

func (c *constantsCheck) add(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// checkModuleConstants checks module m's source raw (with its comments),
// given the parsed sources s: its architecture lines, each constant
// accounted for, each mirror equal to its Go value, and no listed constant
// gone.
func checkModuleConstants(s cuSources, raw string, m constModule) *constantsCheck {
	c := &constantsCheck{}
	if a := nvccArchLine.FindStringSubmatch(raw); a == nil || a[1] != m.arch {
		c.add("%s: no `// nvcc-arch: %s` line: %s", m.file, m.arch, m.archWhy)
	}
	if m.target != "" {
		if t := ptxTargetLine.FindStringSubmatch(raw); t == nil || t[1] != m.target {
			c.add("%s: no `// ptx-target: %s` line: %s", m.file, m.target, m.targetWhy)
		}
	}
	f := s[m.file]
	if f == nil {
		c.add("%s: missing", m.file)
		return c
	}
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
	for _, d := range attnMMAConstexpr.FindAllStringSubmatch(f.text, -1) {
		g.consts[d[1]] = strings.TrimSpace(d[2])
		names = append(names, d[1])
	}
	local[m.file] = &g
	sort.Strings(names)
	c.value = func(n string) (int, bool) {
		v, err := local.value(m.file, n)
		if err != nil {
			c.add("%s: %s cannot be read: %v", m.file, n, err)
			return 0, false
		}
		return v, true
	}
	for _, n := range names {
		if mir, ok := m.mirrors[n]; ok {
			if v, ok := c.value(n); ok && v != mir.value {
				c.add("%s: %s is %d, but %s is %d", m.file, n, v, mir.goName, mir.value)
			}
		} else if _, ok := m.cudaOnly[n]; !ok {
			c.add("%s: static constexpr int %s = %s is not accounted for: mirror it in ptx/%s (and the test's mirrors), or list it as CUDA-only in %s with the reason Go does not need it", m.file, n, g.consts[n], m.goFile, m.testFile)
		}
	}
	for _, list := range []map[string]bool{keysOf(m.mirrors), keysOf(m.cudaOnly)} {
		for n := range list {
			if !slices.Contains(names, n) {
				c.add("%s: %s is listed in %s but no longer defined there", m.file, n, m.testFile)
			}
		}
	}
	return c
}

var attnWGMMAModule = hopperModule(attnWGMMAFile, "constants_wgmma_attention.go", "constants_wgmma_attention_test.go", attnWGMMAMirrors, attnWGMMACudaOnly)

// checkAttentionWGMMA returns the ways in which the Go side and the source
// raw (attention_wgmma.cu with its comments) disagree, given the parsed
// sources s.
func checkAttentionWGMMA(s cuSources, raw string) []string {
	c := checkModuleConstants(s, raw, attnWGMMAModule)
	if c.value == nil {
		return c.problems
	}
	add, value := c.add, c.value

	// What the launcher and the kernel's shape assume of them.
	bm, ok1 := value("AW_BM")
	bn, ok2 := value("AW_BN")
	if ok1 && ok2 && bm != bn {
		add("%s: AW_BM is %d and AW_BN %d: one tensor map (boxes of AttentionWGMMARows rows) loads both Q and K/V tiles", attnWGMMAFile, bm, bn)
	}
	threads, ok3 := value("AW_THREADS")
	if ok1 && ok3 && threads != 128+2*bm {
		add("%s: AW_THREADS is %d: a producer warpgroup and one consumer warpgroup per 64 of AW_BM's %d rows make %d", attnWGMMAFile, threads, bm, 128+2*bm)
	}
	prod, ok4 := value("AW_PRODUCER_REGS")
	cons, ok5 := value("AW_CONSUMER_REGS")
	if ok3 && ok4 && ok5 && (prod%8 != 0 || cons%8 != 0 || prod < 24 || cons > 256 || 128*prod+(threads-128)*cons > 65536) {
		add("%s: setmaxnreg gives %d registers to 128 producer and %d to %d consumer threads: multiples of 8 in 24..256 that fit 64K", attnWGMMAFile, prod, cons, threads-128)
	}
	if smem, ok := value("AW_SMEM"); ok && smem > 227<<10 {
		add("%s: AW_SMEM is %d bytes, more than the 227 KB an H100/H200 block may opt in to", attnWGMMAFile, smem)
	}
	if !attnWGMMABounds.MatchString(s[attnWGMMAFile].text) {
		add("%s: attention_forward_wgmma is not declared __launch_bounds__(AW_THREADS, 1), the block and the one block an SM the launcher assumes", attnWGMMAFile)
	}
	return c.problems
}

func TestConstantsAttentionWGMMA(t *testing.T) {
	texts := readCU(t)
	reportProblems(t, checkAttentionWGMMA(parseCU(texts), texts[attnWGMMAFile]))
}

// TestAttentionWGMMAModule: the embedded PTX is an sm_90a module (loaded
// only on compute capability 9.0) with the entry the launcher names, whose
// first parameter is the qkv tensor map.
func TestAttentionWGMMAModule(t *testing.T) {
	target, ok := ModuleTarget("attention_wgmma")
	if !ok || target != (Target{SM: 90, ArchSpecific: true}) {
		t.Errorf("attention_wgmma.ptx targets %v (%v), want sm_90a", target, ok)
	}
	if got, want := Entries("attention_wgmma"), []string{"attention_forward_wgmma"}; !slices.Equal(got, want) {
		t.Errorf("attention_wgmma.ptx entries %v, want %v", got, want)
	}
	params, _ := Params("attention_wgmma", "attention_forward_wgmma")
	// qkv (tensor map), out, lse, B, T, C, NH, NKV
	want := []string{TensorMapParam, "u64", "u64", "u32", "u32", "u32", "u32", "u32"}
	if !slices.Equal(params, want) {
		t.Errorf("attention_forward_wgmma: parameters %v, want %v", params, want)
	}
}

func TestAttentionWGMMAHeadSizes(t *testing.T) {
	for hs := -1; hs <= 257; hs++ {
		if got := AttentionWGMMAHeadSizeOK(hs); got != (hs == 64) {
			t.Errorf("AttentionWGMMAHeadSizeOK(%d) = %v", hs, got)
		}
	}
}

// TestConstantsAttentionWGMMACatchDrift edits the real source in memory
// and requires checkAttentionWGMMA to report each drift with the names and
// values.
func TestConstantsAttentionWGMMACatchDrift(t *testing.T) {
	cases := []driftCase{
		{"rows", "AW_BM = 128;", "AW_BM = 192;",
			[]string{attnWGMMAFile, "AW_BM is 192", "ptx.AttentionWGMMARows is 128"}},
		{"key tile", "AW_BN = 128;", "AW_BN = 64;",
			[]string{attnWGMMAFile, "AW_BN 64", "one tensor map"}},
		{"stages", "AW_STAGES = 3;", "AW_STAGES = 4;",
			[]string{attnWGMMAFile, "AW_SMEM is 165024", "ptx.AttentionWGMMASharedBytes is 132224"}},
		{"threads", "AW_THREADS = 384;", "AW_THREADS = 512;",
			[]string{attnWGMMAFile, "AW_THREADS is 512", "ptx.AttentionWGMMAThreads is 384"}},
		{"registers", "AW_CONSUMER_REGS = 232;", "AW_CONSUMER_REGS = 240;",
			[]string{attnWGMMAFile, "setmaxnreg", "240"}},
		{"new constant", "static constexpr int AW_STAGES", "static constexpr int AW_Q_BUFS = 2;\nstatic constexpr int AW_STAGES",
			[]string{attnWGMMAFile, "AW_Q_BUFS", "not accounted for"}},
		{"arch", "// nvcc-arch: compute_90", "// compute_90",
			[]string{attnWGMMAFile, "nvcc-arch"}},
		{"target", "// ptx-target: sm_90a", "// sm_90a",
			[]string{attnWGMMAFile, "ptx-target"}},
		{"bounds", "__launch_bounds__(AW_THREADS, 1)", "__launch_bounds__(AW_THREADS)",
			[]string{attnWGMMAFile, "attention_forward_wgmma", "__launch_bounds__"}},
	}
	requireDriftCaught(t, attnWGMMAFile, checkAttentionWGMMA, cases)
}
