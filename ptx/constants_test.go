package ptx

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/gemmplan"
)

// These tests hold constants.go (and internal/gemmplan's tile table) to the
// CUDA sources they mirror. They read the .cu and .cuh files as text, so
// they need no toolkit and no GPU and run on CI with the rest.
//
// Each check returns its problems as one-line messages naming the .cu
// file, the macro or table entry, and both values; TestConstantsCatchDrift
// feeds the checks edited sources to prove that they do fail.

// cuFile is one parsed CUDA source: its text without comments, its
// includes, and its named integer-looking constants (#define lines and the
// namespace-level `constexpr int` of matmul.cu) as unevaluated expressions.
type cuFile struct {
	name     string
	text     string
	includes []string
	consts   map[string]string // name -> expression text
	kinds    map[string]string // name -> "#define" or "constexpr"
}

type cuSources map[string]*cuFile

var (
	lineComment  = regexp.MustCompile(`//[^\n]*`)
	blockComment = regexp.MustCompile(`(?s)/\*.*?\*/`)
	includeLine  = regexp.MustCompile(`(?m)^\s*#\s*include\s+"([^"]+)"`)
	defineLine   = regexp.MustCompile(`(?m)^\s*#\s*define\s+(\w+)(\(?)[ \t]*(.*?)\s*$`)
	constexprTop = regexp.MustCompile(`(?m)^constexpr\s+int\s+(\w+)\s*=\s*([^;]+);`)
)

// parseCU parses file texts by name. Comments go first, so that no
// regular expression below can match prose.
func parseCU(texts map[string]string) cuSources {
	s := cuSources{}
	for name, raw := range texts {
		text := blockComment.ReplaceAllString(raw, "")
		text = lineComment.ReplaceAllString(text, "")
		f := &cuFile{name: name, text: text, consts: map[string]string{}, kinds: map[string]string{}}
		for _, m := range includeLine.FindAllStringSubmatch(text, -1) {
			f.includes = append(f.includes, m[1])
		}
		for _, m := range defineLine.FindAllStringSubmatch(text, -1) {
			if m[2] == "(" {
				f.consts[m[1]] = "(function-like macro)"
			} else {
				f.consts[m[1]] = m[3]
			}
			f.kinds[m[1]] = "#define"
		}
		for _, m := range constexprTop.FindAllStringSubmatch(text, -1) {
			f.consts[m[1]] = strings.TrimSpace(m[2])
			f.kinds[m[1]] = "constexpr"
		}
		s[name] = f
	}
	return s
}

// readCU reads every .cu and .cuh file of this package.
func readCU(t *testing.T) map[string]string {
	t.Helper()
	names, _ := filepath.Glob("*.cu")
	headers, _ := filepath.Glob("*.cuh")
	names = append(names, headers...)
	if len(names) == 0 {
		t.Fatal("no CUDA sources in ptx/")
	}
	texts := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		texts[n] = string(b)
	}
	return texts
}

// value evaluates the integer constant name as file sees it: its own
// definitions first, then those of the headers it includes. The
// expressions are C integer arithmetic, which Go's expression syntax
// parses the same way; anything else (floats, calls) is an error.
func (s cuSources) value(file, name string) (int, error) {
	return s.eval(file, name, map[string]bool{})
}

func (s cuSources) eval(file, name string, seen map[string]bool) (int, error) {
	f, ok := s[file]
	if !ok {
		return 0, fmt.Errorf("%s: no such source", file)
	}
	expr, ok := f.consts[name]
	if !ok {
		for _, inc := range f.includes {
			if v, err := s.eval(inc, name, seen); err == nil {
				return v, nil
			}
		}
		return 0, fmt.Errorf("%s: %s is not defined", file, name)
	}
	key := file + ":" + name
	if seen[key] {
		return 0, fmt.Errorf("%s: %s is defined in terms of itself", file, name)
	}
	seen[key] = true
	defer delete(seen, key)
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return 0, fmt.Errorf("%s: %s = %q is not an integer expression", file, name, expr)
	}
	v, err := s.evalExpr(file, e, seen)
	if err != nil {
		return 0, fmt.Errorf("%s: %s = %q: %v", file, name, expr, err)
	}
	return v, nil
}

func (s cuSources) evalExpr(file string, e ast.Expr, seen map[string]bool) (int, error) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.INT {
			return 0, fmt.Errorf("%s is not an integer", e.Value)
		}
		v, err := strconv.ParseInt(e.Value, 0, 64)
		return int(v), err
	case *ast.Ident:
		return s.eval(file, e.Name, seen)
	case *ast.ParenExpr:
		return s.evalExpr(file, e.X, seen)
	case *ast.UnaryExpr:
		v, err := s.evalExpr(file, e.X, seen)
		if err != nil || e.Op != token.SUB {
			return 0, fmt.Errorf("unsupported %v (%v)", e.Op, err)
		}
		return -v, nil
	case *ast.BinaryExpr:
		a, err := s.evalExpr(file, e.X, seen)
		if err != nil {
			return 0, err
		}
		b, err := s.evalExpr(file, e.Y, seen)
		if err != nil {
			return 0, err
		}
		switch e.Op {
		case token.ADD:
			return a + b, nil
		case token.SUB:
			return a - b, nil
		case token.MUL:
			return a * b, nil
		case token.QUO, token.REM:
			if b == 0 {
				return 0, fmt.Errorf("division by zero")
			}
			if e.Op == token.QUO {
				return a / b, nil
			}
			return a % b, nil
		case token.SHL:
			return a << b, nil
		}
		return 0, fmt.Errorf("unsupported operator %v", e.Op)
	}
	return 0, fmt.Errorf("unsupported expression %T", e)
}

// mirror is one CUDA constant with the Go value that must equal it.
type mirror struct {
	file, macro string
	goName      string
	goValue     int
}

// mirrors lists every CUDA constant that Go restates by value.
var mirrors = []mirror{
	{"matmul_wgmma.cu", "BM", "gemmplan.MMABlockM", gemmplan.MMABlockM},
	{"matmul_wgmma.cu", "BN_WIDE", "gemmplan.WGMMABlockNWide", gemmplan.WGMMABlockNWide},
	{"matmul_wgmma.cu", "BN_NARROW", "gemmplan.WGMMABlockNNarrow", gemmplan.WGMMABlockNNarrow},
	{"matmul_wgmma.cu", "BK", "gemmplan.WGMMABlockK", gemmplan.WGMMABlockK},
	{"matmul_wgmma.cu", "THREADS", "gemmplan.WGMMAThreads", gemmplan.WGMMAThreads},
	{"matmul_wgmma.cu", "SMEM_LIMIT", "gemmplan.WGMMASharedLimit", gemmplan.WGMMASharedLimit},
	{"matmul_wgmma.cu", "STAGES_WIDE", "gemmplan.WGMMAStages(WGMMABlockNWide)", gemmplan.WGMMAStages(gemmplan.WGMMABlockNWide)},
	{"matmul_wgmma.cu", "STAGES_NARROW", "gemmplan.WGMMAStages(WGMMABlockNNarrow)", gemmplan.WGMMAStages(gemmplan.WGMMABlockNNarrow)},
	{"matmul_wgmma.cu", "SMEM_WIDE", "gemmplan.WGMMASharedBytes(WGMMABlockNWide)", gemmplan.WGMMASharedBytes(gemmplan.WGMMABlockNWide)},
	{"matmul_wgmma.cu", "SMEM_NARROW", "gemmplan.WGMMASharedBytes(WGMMABlockNNarrow)", gemmplan.WGMMASharedBytes(gemmplan.WGMMABlockNNarrow)},
	{"matmul_wgmma.cu", "TR_TILE", "gemmplan.TransposeTile", gemmplan.TransposeTile},
	{"matmul_wgmma.cu", "TR_ROWS", "gemmplan.TransposeRows", gemmplan.TransposeRows},
	{"matmul_wgmma.cu", "BK_TF32", "gemmplan.WGMMABlockKTF32", gemmplan.WGMMABlockKTF32},
	{"matmul_wgmma.cu", "STAGES_WIDE_TF32", "gemmplan.WGMMAStagesTF32(WGMMABlockNWide)", gemmplan.WGMMAStagesTF32(gemmplan.WGMMABlockNWide)},
	{"matmul_wgmma.cu", "STAGES_NARROW_TF32", "gemmplan.WGMMAStagesTF32(WGMMABlockNNarrow)", gemmplan.WGMMAStagesTF32(gemmplan.WGMMABlockNNarrow)},
	{"matmul_wgmma.cu", "SMEM_WIDE_TF32", "gemmplan.WGMMASharedBytesTF32(WGMMABlockNWide)", gemmplan.WGMMASharedBytesTF32(gemmplan.WGMMABlockNWide)},
	{"matmul_wgmma.cu", "SMEM_NARROW_TF32", "gemmplan.WGMMASharedBytesTF32(WGMMABlockNNarrow)", gemmplan.WGMMASharedBytesTF32(gemmplan.WGMMABlockNNarrow)},
	{"common.cuh", "WARP_SIZE", "ptx.WarpSize", WarpSize},
	{"layernorm.cu", "LN_BWD_ROWS", "ptx.LayerNormBwdRows", LayerNormBwdRows},
	{"layernorm.cu", "LN_PARAMS_COLS", "ptx.LayerNormParamsCols", LayerNormParamsCols},
	{"layernorm.cu", "LN_PARAMS_SLICES", "ptx.LayerNormParamsSlices", LayerNormParamsSlices},
	{"encoder.cu", "WTE_COLS", "ptx.EncoderWTECols", EncoderWTECols},
	{"encoder.cu", "WTE_WARPS", "ptx.EncoderWTEWarps", EncoderWTEWarps},
	{"attention.cu", "ATT_THREADS", "ptx.AttentionThreads", AttentionThreads},
	{"attention.cu", "ATT_HS_MAX", "ptx.AttentionMaxHeadSize", AttentionMaxHeadSize},
	{"decode_attention.cu", "DEC_THREADS", "ptx.DecodeThreads", DecodeThreads},
	{"decode_attention.cu", "DEC_WARPS", "ptx.DecodeWarps", DecodeWarps},
	{"decode_attention.cu", "DEC_HEADS", "ptx.DecodeHeads", DecodeHeads},
	{"decode_attention.cu", "DEC_MAX_HS", "ptx.DecodeMaxHeadSize", DecodeMaxHeadSize},
	{"matmul.cu", "BK", "gemmplan.BK", gemmplan.BK},
	{"matmul.cu", "FINE_BK", "gemmplan.FineBK", gemmplan.FineBK},
	{"llama.cu", "RMS_BWD_ROWS", "ptx.RMSNormBwdRows", RMSNormBwdRows},
	{"llama.cu", "RMS_PARAMS_COLS", "ptx.RMSNormParamsCols", RMSNormParamsCols},
	{"llama.cu", "RMS_PARAMS_SLICES", "ptx.RMSNormParamsSlices", RMSNormParamsSlices},
	{"llama.cu", "ARGMAX_THREADS", "ptx.ArgmaxThreads", ArgmaxThreads},
	{"gemv.cu", "GEMV_THREADS", "ptx.GemvThreads", GemvThreads},
	{"gemv.cu", "GEMV_WARPS", "ptx.GemvWarps", GemvWarps},
	{"gemv.cu", "GEMV_MIN_BLOCKS", "ptx.GemvMinBlocks", GemvMinBlocks},
	{"gemv.cu", "GEMV_TILE", "ptx.GemvTile", GemvTile},
	{"gemv.cu", "GEMV_MAX_ROWS", "ptx.GemvMaxRows", GemvMaxRows},
	{"gemv.cu", "GEMV_STEP", "ptx.GemvStep", GemvStep},
}

// checkedElsewhere are CUDA constants that a structural check below holds
// Go to, rather than one Go constant.
var checkedElsewhere = map[string]string{
	"matmul.cu:TILE_128x128":    "checkGEMM: gemmplan.Tiles' codes and shapes",
	"matmul.cu:TILE_128x64":     "checkGEMM: gemmplan.Tiles' codes and shapes",
	"matmul.cu:TILE_64x64_FINE": "checkGEMM: gemmplan.Tiles' codes and shapes",
	"matmul.cu:FINE_TILE":       "checkGEMM: the fine tile's shape in gemmplan.Tiles",
	"matmul.cu:MAX_TILE":        "checkGEMM: no gemmplan tile is larger",
	"matmul.cu:MAX_THREADS":     "checkGEMM: gemmplan.ResidentWarps and the tiles' thread counts",
	"matmul.cu:MIN_BLOCKS":      "checkGEMM: gemmplan.ResidentWarps",
}

// cudaOnly are CUDA constants that no Go code needs, with the reason.
var cudaOnly = map[string]string{
	"matmul_wgmma.cu:A_BYTES":                "a stage's A tile, BM·BK bf16, inside the kernel",
	"matmul_wgmma.cu:OUT_WIDE":               "the staged C tile; Go sees it inside SMEM_WIDE",
	"matmul_wgmma.cu:OUT_NARROW":             "the staged C tile; Go sees it inside SMEM_NARROW",
	"matmul_wgmma.cu:BOX_BYTES":              "one TMA box of 64×64 bf16 in shared memory; Go sets the boxes' element counts",
	"matmul_wgmma.cu:GROUP_M":                "the tiles' order inside the kernel; the grid is persistent whatever it is",
	"matmul_wgmma.cu:PRODUCER_REGS":          "setmaxnreg's register split between the warpgroups, inside the kernel",
	"matmul_wgmma.cu:CONSUMER_REGS":          "setmaxnreg's register split between the warpgroups, inside the kernel",
	"matmul_wgmma.cu:WG_D8":                  "a wgmma's accumulator operand list, inside the kernel",
	"matmul_wgmma.cu:WG_D64":                 "a wgmma's accumulator operand list, inside the kernel",
	"matmul_wgmma.cu:WG_REGS64":              "a wgmma's accumulator register names (asm text), inside the kernel",
	"matmul_wgmma.cu:WG_REGS128":             "a wgmma's accumulator register names (asm text), inside the kernel",
	"matmul_wgmma.cu:WG_MMA":                 "the wgmma asm statement of both element types, inside the kernel",
	"crossentropy_bf16.cu:GPUBENCH_BF16":     "selects the bf16 instantiations of crossentropy.cu for this module; no value",
	"encoder_bf16.cu:GPUBENCH_BF16":          "selects the bf16 instantiations of encoder.cu for this module; no value",
	"gelu_bf16.cu:GPUBENCH_BF16":             "selects the bf16 instantiations of gelu.cu for this module; no value",
	"layernorm_bf16.cu:GPUBENCH_BF16":        "selects the bf16 instantiations of layernorm.cu for this module; no value",
	"residual_bf16.cu:GPUBENCH_BF16":         "selects the bf16 instantiations of residual.cu for this module; no value",
	"llama_bf16.cu:GPUBENCH_BF16":            "selects the bf16 instantiations of llama.cu for this module; no value",
	"gemv_bf16.cu:GPUBENCH_BF16":             "selects the bf16 (mma.sync) instantiation of gemv.cu for this module; no value",
	"unfused_bf16.cu:GPUBENCH_BF16":          "selects the bf16 instantiations of unfused.cu for this module; no value",
	"crossentropy.cu:CE_UNROLL":              "vectors a thread loads before it uses any (loads in flight); inside the kernel",
	"gemv.cu:GEMV_UNROLL_F32":                "steps of w a warp loads before it multiplies (registers in flight); inside the kernel",
	"gemv.cu:GEMV_UNROLL_BF16":               "as GEMV_UNROLL_F32, for the bf16 build",
	"matmul_mma3.cu:MMA_STAGES_3":            "selects matmul_mma.cu's 3-stage pipeline for this module (gemmplan.MMAStagesLow); no value",
	"layernorm.cu:LN_BWD_GROUPS":             "row groups inside a layernorm_backward_input block; the grid and the scratch do not depend on them",
	"layernorm.cu:LN_BWD_SMEM_COLS":          "static shared memory of the row groups' column sums, inside the kernel",
	"layernorm.cu:LN_EPS":                    "model math: model/ref.LNEps restates it and the GPU tests compare against model/ref",
	"gelu.cu:GELU_SCALE":                     "model math, checked like LN_EPS",
	"gelu.cu:GELU_COEF":                      "model math, checked like LN_EPS",
	"encoder.cu:WTE_PER_LANE":                "derived inside the kernel from WTE_COLS and WARP_SIZE",
	"attention.cu:ATT_TX":                    "thread layout inside a block; Go launches ATT_THREADS",
	"attention.cu:ATT_TY":                    "thread layout inside a block; Go launches ATT_THREADS",
	"attention.cu:FWD_SMEM":                  "static shared memory, fixed at compile time (static_assert ≤ 48 KB); no dynamic shared memory to pass",
	"attention.cu:DKDV_SMEM":                 "static shared memory, as FWD_SMEM",
	"attention.cu:DQ_SMEM":                   "static shared memory, as FWD_SMEM",
	"matmul.cu:PAD":                          "shared-memory row padding inside the kernel",
	"matmul.cu:SMEM_FLOATS":                  "static shared memory, fixed at compile time",
	"matmul.cu:GROUP_M":                      "block-index swizzle inside the kernel; the grid is the tile count whatever it is",
	"decode_attention_bf16.cu:GPUBENCH_BF16": "selects the bf16 instantiations of decode_attention.cu for this module; no value",
	"decode_attention.cu:DEC_LPR":            "thread layout inside a block (lanes a cache row); Go launches DEC_THREADS",
	"decode_attention.cu:DEC_ROWS_PER_WARP":  "thread layout inside a block, from DEC_LPR",
	"decode_attention.cu:DEC_SLOTS":          "thread layout inside a block, from DEC_LPR and DEC_WARPS",
	"decode_attention.cu:DEC_UNROLL":         "rows a slot loads before it computes, inside the kernel",
	"decode_attention.cu:DEC_MIN_BLOCKS":     "__launch_bounds__ occupancy hint of each build; no launch parameter",
}

func checkMirrors(s cuSources) []string {
	var problems []string
	for _, m := range mirrors {
		v, err := s.value(m.file, m.macro)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s, which %s mirrors, cannot be read: %v", m.file, m.macro, m.goName, err))
			continue
		}
		if v != m.goValue {
			problems = append(problems, fmt.Sprintf("%s: %s is %d, but %s is %d", m.file, m.macro, v, m.goName, m.goValue))
		}
	}
	return problems
}

// checkInventory makes every constant of the CUDA sources a decision: it is
// mirrored, checked structurally, or listed as CUDA-only with a reason. A
// new macro therefore fails here until someone says which.
func checkInventory(s cuSources) []string {
	var problems []string
	known := map[string]bool{}
	for _, m := range mirrors {
		known[m.file+":"+m.macro] = true
	}
	for k := range checkedElsewhere {
		known[k] = true
	}
	for k := range cudaOnly {
		known[k] = true
	}
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := s[n]
		consts := make([]string, 0, len(f.consts))
		for c := range f.consts {
			consts = append(consts, c)
		}
		sort.Strings(consts)
		for _, c := range consts {
			if !known[n+":"+c] {
				problems = append(problems, fmt.Sprintf("%s: %s %s = %s is not accounted for: mirror it in ptx/constants.go (and the mirrors table), or list it in constants_test.go's cudaOnly with the reason Go does not need it",
					n, f.kinds[c], c, f.consts[c]))
			}
		}
	}
	for k := range known {
		file, name, _ := strings.Cut(k, ":")
		if f, ok := s[file]; !ok {
			problems = append(problems, fmt.Sprintf("%s: listed in constants_test.go but there is no such source", file))
		} else if _, ok := f.consts[name]; !ok {
			problems = append(problems, fmt.Sprintf("%s: %s is listed in constants_test.go but no longer defined there", file, name))
		}
	}
	sort.Strings(problems)
	return problems
}

var (
	// template <> struct FwdTiles<32> { static constexpr int R = 64, S = 32; };
	tileSpec = regexp.MustCompile(`template\s*<\s*>\s*struct\s+(\w+)Tiles\s*<\s*(\d+)\s*>\s*\{\s*static\s+constexpr\s+int\s+R\s*=\s*(\d+)\s*,\s*S\s*=\s*(\d+)\s*;\s*\}\s*;`)
	tileAny  = regexp.MustCompile(`struct\s+(\w+)Tiles\s*<\s*\d+\s*>`)
	// if (hs <= 32) { forward_tile<32>(...
	tileBranch = regexp.MustCompile(`hs\s*<=\s*(\w+)\s*\)\s*\{\s*(\w+)_tile\s*<\s*(\d+)\s*>`)
)

// checkAttentionTiles holds AttentionConfigs and AttentionTiles to
// attention.cu's FwdTiles, DkdvTiles and DqTiles specialisations and to
// the entries' `hs <= ...` branches that pick among them.
func checkAttentionTiles(s cuSources) []string {
	const file = "attention.cu"
	f := s[file]
	if f == nil {
		return []string{file + ": missing"}
	}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	goTiles := map[string]map[int]AttentionTile{"Fwd": {}, "Dkdv": {}, "Dq": {}}
	var goDs []int
	for _, c := range AttentionConfigs() {
		goDs = append(goDs, c.D)
		goTiles["Fwd"][c.D], goTiles["Dkdv"][c.D], goTiles["Dq"][c.D] = c.Fwd, c.DKDV, c.DQ
	}
	goField := map[string]string{"Fwd": "Fwd", "Dkdv": "DKDV", "Dq": "DQ"}

	specs := tileSpec.FindAllStringSubmatch(f.text, -1)
	if n := len(tileAny.FindAllString(f.text, -1)); n != len(specs) {
		add("%s: %d Tiles specialisations, of which only %d have the form `template <> struct XTiles<D> { static constexpr int R = .., S = ..; };` this test reads", file, n, len(specs))
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
		g, ok := goTiles[kind]
		if !ok {
			add("%s: %sTiles<%d> is a table ptx.AttentionConfig has no field for", file, kind, d)
			continue
		}
		want, ok := g[d]
		if !ok {
			add("%s: %sTiles<%d> exists, but ptx.AttentionConfigs() has no D = %d", file, kind, d, d)
			continue
		}
		if want.R != r {
			add("%s: %sTiles<%d>::R is %d, but ptx.AttentionConfigs()[D=%d].%s.R is %d", file, kind, d, r, d, goField[kind], want.R)
		}
		if want.S != sv {
			add("%s: %sTiles<%d>::S is %d, but ptx.AttentionConfigs()[D=%d].%s.S is %d", file, kind, d, sv, d, goField[kind], want.S)
		}
	}
	for kind, g := range goTiles {
		for d := range g {
			if _, ok := cuTiles[kind][d]; !ok {
				add("%s: ptx.AttentionConfigs() has D = %d, but there is no %sTiles<%d>", file, d, kind, d)
			}
		}
	}

	// The branches: each entry's `hs <= X) { kind_tile<D>` must run every
	// hs with the smallest D ≥ hs, the rule AttentionConfigFor follows, up
	// to ATT_HS_MAX.
	type branch struct {
		src      string // the threshold as written
		limit, d int
	}
	branches := map[string][]branch{} // by kernel
	for _, m := range tileBranch.FindAllStringSubmatch(f.text, -1) {
		limit, err := s.value(file, m[1])
		if err != nil {
			if limit, err = strconv.Atoi(m[1]); err != nil {
				add("%s: branch hs <= %s: %v", file, m[1], err)
				continue
			}
		}
		d, _ := strconv.Atoi(m[3])
		branches[m[2]] = append(branches[m[2]], branch{m[1], limit, d})
	}
	hsMax, err := s.value(file, "ATT_HS_MAX")
	if err != nil {
		add("%v", err)
	}
	for _, kernel := range []string{"forward", "dkdv", "dq"} {
		bs := branches[kernel]
		if len(bs) != len(goDs) {
			add("%s: %s_tile has %d `hs <= ...` branches, but ptx.AttentionConfigs() has %d head sizes %v", file, kernel, len(bs), len(goDs), goDs)
			continue
		}
		for i, b := range bs {
			if b.limit != b.d || b.d != goDs[i] {
				add("%s: branch %d of %s_tile, `hs <= %s` (hs <= %d), runs D = %d, but ptx.AttentionConfigFor uses D = %d up to hs = %d", file, i, kernel, b.src, b.limit, b.d, goDs[i], goDs[i])
			}
		}
		if last := bs[len(bs)-1].limit; last != hsMax {
			add("%s: %s_tile's last branch is hs <= %d, but ATT_HS_MAX is %d", file, kernel, last, hsMax)
		}
	}
	if len(goDs) > 0 && goDs[len(goDs)-1] != AttentionMaxHeadSize {
		add("ptx.AttentionConfigs()'s largest D is %d, but ptx.AttentionMaxHeadSize is %d", goDs[len(goDs)-1], AttentionMaxHeadSize)
	}
	if !slices.IsSorted(goDs) {
		add("ptx.AttentionConfigs() is not by increasing D: %v", goDs)
	}
	return problems
}

var (
	// if (tile == TILE_128x128) { gemm<128, 128, ...
	gemmBranch = regexp.MustCompile(`tile\s*==\s*(\w+)\s*\)\s*\{\s*gemm\s*<\s*(\d+)\s*,\s*(\d+)\s*,`)
	gemmElse   = regexp.MustCompile(`\}\s*else\s*\{\s*gemm\s*<\s*(\d+)\s*,\s*(\d+)\s*,`)
	// } else if (tile == TILE_64x64_FINE) { gemm_fine<TRANS_A, ...
	gemmFineBranch = regexp.MustCompile(`tile\s*==\s*(\w+)\s*\)\s*\{\s*gemm_fine\s*<`)
	// constexpr int BM = FINE_TILE, BN = FINE_TILE;
	gemmFineShape = regexp.MustCompile(`constexpr\s+int\s+BM\s*=\s*(\w+)\s*,\s*BN\s*=\s*(\w+)\s*;`)
	// constexpr int THREADS = BM * BN / 64;
	gemmThreads = regexp.MustCompile(`constexpr\s+int\s+THREADS\s*=\s*BM\s*\*\s*BN\s*/\s*(\d+)\s*;`)
	gemmBounds  = regexp.MustCompile(`__launch_bounds__\s*\(\s*MAX_THREADS\s*,\s*MIN_BLOCKS\s*\)\s*(\w+)\s*\(`)
)

// funcBody returns the text of the function whose definition starts at the
// first match of head, up to its closing brace at the start of a line.
func funcBody(text string, head *regexp.Regexp) string {
	loc := head.FindStringIndex(text)
	if loc == nil {
		return ""
	}
	rest := text[loc[0]:]
	if end := strings.Index(rest, "\n}"); end >= 0 {
		return rest[:end+2]
	}
	return rest
}

// checkGEMM holds internal/gemmplan's tile table and residency to
// matmul.cu: the tile codes of dispatch and the shapes they run, the
// threads of a tile, and the launch bounds.
func checkGEMM(s cuSources) []string {
	const file = "matmul.cu"
	f := s[file]
	if f == nil {
		return []string{file + ": missing"}
	}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	dispatch := funcBody(f.text, regexp.MustCompile(`void\s+dispatch\s*\(`))
	if dispatch == "" {
		return []string{file + ": no dispatch function to read the tile codes from"}
	}
	type shape struct{ bm, bn, threadsDiv, depth int }
	named := map[int]shape{} // code -> shape
	codeName := map[int]string{}
	// gemm's threads a tile and stage depth, and gemm_fine's, read from
	// their bodies.
	readThreads := func(fn string) int {
		body := funcBody(f.text, regexp.MustCompile(`void\s+`+fn+`\s*\(`))
		m := gemmThreads.FindStringSubmatch(body)
		if m == nil {
			add("%s: no `constexpr int THREADS = BM * BN / n;` in %s", file, fn)
			return 0
		}
		per, _ := strconv.Atoi(m[1])
		return per
	}
	bk, errBK := s.value(file, "BK")
	fineBK, errFine := s.value(file, "FINE_BK")
	for _, err := range []error{errBK, errFine} {
		if err != nil {
			add("%v", err)
		}
	}
	gemmPer := readThreads("gemm")
	for _, m := range gemmFineBranch.FindAllStringSubmatch(dispatch, -1) {
		code, err := s.value(file, m[1])
		if err != nil {
			add("%v", err)
			continue
		}
		body := funcBody(f.text, regexp.MustCompile(`void\s+gemm_fine\s*\(`))
		ms := gemmFineShape.FindStringSubmatch(body)
		if ms == nil {
			add("%s: gemm_fine has no `constexpr int BM = .., BN = ..;` this test reads", file)
			continue
		}
		bm, err1 := s.value(file, ms[1])
		bn, err2 := s.value(file, ms[2])
		if err1 != nil || err2 != nil {
			add("%s: gemm_fine's tile %s×%s: %v %v", file, ms[1], ms[2], err1, err2)
			continue
		}
		named[code] = shape{bm, bn, readThreads("gemm_fine"), fineBK}
		codeName[code] = m[1]
	}
	for _, m := range gemmBranch.FindAllStringSubmatch(dispatch, -1) {
		code, err := s.value(file, m[1])
		if err != nil {
			add("%v", err)
			continue
		}
		bm, _ := strconv.Atoi(m[2])
		bn, _ := strconv.Atoi(m[3])
		named[code] = shape{bm, bn, gemmPer, bk}
		codeName[code] = m[1]
	}
	var other *shape
	if m := gemmElse.FindStringSubmatch(dispatch); m != nil {
		bm, _ := strconv.Atoi(m[1])
		bn, _ := strconv.Atoi(m[2])
		other = &shape{bm, bn, gemmPer, bk}
	}
	if len(named) == 0 || other == nil {
		add("%s: dispatch does not have the `if (tile == TILE_..) { gemm<BM, BN, ..` / `} else { gemm<BM, BN, ..` form this test reads", file)
		return problems
	}
	if want := len(named) + 1; len(gemmplan.Tiles) != want {
		add("%s: dispatch runs %d tiles (%d codes and the else branch), but gemmplan.Tiles has %d", file, want, len(named), len(gemmplan.Tiles))
	}
	elseCodes := 0
	for i, t := range gemmplan.Tiles {
		want, ok := named[t.Code]
		where := codeName[t.Code]
		if !ok {
			want, where = *other, "the else branch"
			elseCodes++
		}
		if t.BM != want.bm || t.BN != want.bn {
			add("%s: tile code %d (%s) runs gemm<%d, %d>, but gemmplan.Tiles[%d] is %dx%d", file, t.Code, where, want.bm, want.bn, i, t.BM, t.BN)
		}
		if want.threadsDiv > 0 {
			if n := t.BM * t.BN / want.threadsDiv; t.Threads() != n {
				add("%s: THREADS = BM*BN/%d is %d for %v (%s), but gemmplan.Tiles[%d].Threads() is %d", file, want.threadsDiv, n, t, where, i, t.Threads())
			}
		}
		if t.Depth != want.depth {
			add("%s: tile code %d (%s) stages %d k, but gemmplan.Tiles[%d].Depth is %d", file, t.Code, where, want.depth, i, t.Depth)
		}
	}
	if elseCodes != 1 {
		add("%s: %d of gemmplan.Tiles' codes fall to dispatch's else branch (want exactly 1)", file, elseCodes)
	}
	maxThreads, err1 := s.value(file, "MAX_THREADS")
	minBlocks, err2 := s.value(file, "MIN_BLOCKS")
	maxTile, err3 := s.value(file, "MAX_TILE")
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			add("%v", err)
		}
	}
	for i, t := range gemmplan.Tiles {
		if t.Threads() > maxThreads {
			add("%s: MAX_THREADS is %d, but gemmplan.Tiles[%d] (%v) has %d threads", file, maxThreads, i, t, t.Threads())
		}
		if t.BM > maxTile || t.BN > maxTile {
			add("%s: MAX_TILE is %d, but gemmplan.Tiles[%d] is %v", file, maxTile, i, t)
		}
	}
	if want := maxThreads * minBlocks / WarpSize; gemmplan.ResidentWarps != want {
		add("%s: __launch_bounds__(MAX_THREADS = %d, MIN_BLOCKS = %d) gives %d resident warps, but gemmplan.ResidentWarps is %d", file, maxThreads, minBlocks, want, gemmplan.ResidentWarps)
	}
	var bounded []string
	for _, m := range gemmBounds.FindAllStringSubmatch(f.text, -1) {
		bounded = append(bounded, m[1])
	}
	for _, entry := range []string{"matmul_forward", "matmul_forward_nopad", "matmul_backward_input", "matmul_backward_weight"} {
		if !slices.Contains(bounded, entry) {
			add("%s: %s is not declared __launch_bounds__(MAX_THREADS, MIN_BLOCKS), which gemmplan.ResidentWarps assumes", file, entry)
		}
	}
	return problems
}

var (
	biasBounds = regexp.MustCompile(`__launch_bounds__\s*\(\s*(\d+)\s*\)\s*bias_backward\s*\(`)
	biasPart   = regexp.MustCompile(`__shared__\s+float\s+part\s*\[\s*(\d+)\s*\]\s*\[\s*(\d+)\s*\]`)
	biasCol    = regexp.MustCompile(`blockIdx\.x\s*\*\s*(\d+)\s*\+\s*x\b`)
)

// checkBiasBackward holds BiasBackwardCols and BiasBackwardRows to
// bias_backward, whose block shape is written as literals: part[rows][cols],
// column blockIdx.x·cols + x, and __launch_bounds__(rows·cols).
func checkBiasBackward(s cuSources) []string {
	const file = "matmul.cu"
	f := s[file]
	if f == nil {
		return []string{file + ": missing"}
	}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	fn := funcBody(f.text, regexp.MustCompile(`bias_backward\s*\(`))
	mb, mp, mc := biasBounds.FindStringSubmatch(f.text), biasPart.FindStringSubmatch(fn), biasCol.FindStringSubmatch(fn)
	if mb == nil || mp == nil || mc == nil {
		return []string{file + ": bias_backward no longer has the __launch_bounds__(n), part[rows][cols] and blockIdx.x * cols + x this test reads"}
	}
	bound, _ := strconv.Atoi(mb[1])
	rows, _ := strconv.Atoi(mp[1])
	cols, _ := strconv.Atoi(mp[2])
	step, _ := strconv.Atoi(mc[1])
	if rows != BiasBackwardRows {
		add("%s: bias_backward's part[%d][%d] has %d row lanes, but ptx.BiasBackwardRows is %d", file, rows, cols, rows, BiasBackwardRows)
	}
	if cols != BiasBackwardCols {
		add("%s: bias_backward's part[%d][%d] has %d columns, but ptx.BiasBackwardCols is %d", file, rows, cols, cols, BiasBackwardCols)
	}
	if step != BiasBackwardCols {
		add("%s: bias_backward's column is blockIdx.x * %d + x, but ptx.BiasBackwardCols is %d", file, step, BiasBackwardCols)
	}
	if bound != BiasBackwardRows*BiasBackwardCols {
		add("%s: bias_backward's __launch_bounds__(%d), but ptx.BiasBackwardRows·BiasBackwardCols is %d", file, bound, BiasBackwardRows*BiasBackwardCols)
	}
	return problems
}

var scratchDecl = regexp.MustCompile(`__shared__\s+float\s+scratch\s*\[\s*(\w+)\s*\]`)

// checkLaunchShapes checks the launchers' own block sizes (those with no
// macro) against what the kernels require of them.
func checkLaunchShapes(s cuSources) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	warpMultiple := []struct {
		name  string
		v     int
		needs string
	}{
		{"ptx.LayerNormBlock", LayerNormBlock, "layernorm_forward runs a warp a row"},
		{"ptx.AttentionPreprocessBlock", AttentionPreprocessBlock, "attention_backward_preprocess runs a warp a row"},
		{"ptx.LossReduceBlock", LossReduceBlock, "loss_reduce uses block_sum"},
		{"ptx.CrossEntropyMaxBlock", CrossEntropyMaxBlock, "the cross-entropy kernels use block_sum and block_max"},
		{"ptx.EncoderWTEThreads", EncoderWTEThreads, "encoder_backward_wte splits the block into warps"},
		{"ptx.AttentionThreads", AttentionThreads, "the attention kernels use warp shuffles"},
		{"ptx.LlamaBlock", LlamaBlock, "the grid-stride kernels of llama.cu take whole warps"},
		{"ptx.RMSNormBlock", RMSNormBlock, "rmsnorm_backward_input runs a warp a row, rmsnorm_forward whole warps a row"},
		{"ptx.ArgmaxThreads", ArgmaxThreads, "argmax reduces with warp shuffles, one shared slot a warp"},
	}
	for _, w := range warpMultiple {
		if w.v <= 0 || w.v%WarpSize != 0 || w.v > MaxBlockThreads {
			add("%s is %d, but %s: it must be a multiple of WARP_SIZE %d up to %d", w.name, w.v, w.needs, WarpSize, MaxBlockThreads)
		}
	}
	for _, v := range []int{1, 2, 31, 32, 33, 100, 511, 512, 513, 8192, 50257} {
		b := CrossEntropyBlock(v)
		if b%WarpSize != 0 || b < WarpSize || b > CrossEntropyMaxBlock || (b > WarpSize && b-WarpSize >= v) {
			add("ptx.CrossEntropyBlock(%d) is %d: want a multiple of %d, at most %d, and no whole warp past V", v, b, WarpSize, CrossEntropyMaxBlock)
		}
	}
	// block_sum and block_max keep one float a warp in the callers'
	// scratch: the blocks of crossentropy.cu may not have more warps.
	if f := s["crossentropy.cu"]; f != nil {
		ms := scratchDecl.FindAllStringSubmatch(f.text, -1)
		if len(ms) == 0 {
			add("crossentropy.cu: no __shared__ float scratch[n] to check the block sizes against")
		}
		for _, m := range ms {
			n, err := strconv.Atoi(m[1])
			if err != nil {
				if n, err = s.value("crossentropy.cu", m[1]); err != nil {
					add("%v", err)
					continue
				}
			}
			for _, b := range []struct {
				name string
				v    int
			}{{"ptx.LossReduceBlock", LossReduceBlock}, {"ptx.CrossEntropyMaxBlock", CrossEntropyMaxBlock}} {
				if b.v > n*WarpSize {
					add("crossentropy.cu: scratch[%d] holds %d warps' partials, but %s is %d threads", n, n, b.name, b.v)
				}
			}
		}
	}
	// encoder_backward_wte's thread x finishes column x of its WTE_COLS.
	if cols, err := s.value("encoder.cu", "WTE_COLS"); err != nil {
		add("%v", err)
	} else if EncoderWTEThreads != cols {
		add("encoder.cu: encoder_backward_wte needs blockDim.x == WTE_COLS = %d, but ptx.EncoderWTEThreads is %d", cols, EncoderWTEThreads)
	}
	if n := LayerNormParamsCols * LayerNormParamsSlices; n > MaxBlockThreads {
		add("ptx.LayerNormParamsCols·LayerNormParamsSlices is %d threads, over %d", n, MaxBlockThreads)
	}
	return problems
}

// reportProblems fails t with each problem.
func reportProblems(t *testing.T, problems []string) {
	t.Helper()
	for _, p := range problems {
		t.Error(p)
	}
}

func TestConstantsMirrorCUDA(t *testing.T) { reportProblems(t, checkMirrors(parseCU(readCU(t)))) }
func TestConstantsInventory(t *testing.T)  { reportProblems(t, checkInventory(parseCU(readCU(t)))) }
func TestConstantsAttentionTiles(t *testing.T) {
	reportProblems(t, checkAttentionTiles(parseCU(readCU(t))))
}
func TestConstantsGEMMTiles(t *testing.T) { reportProblems(t, checkGEMM(parseCU(readCU(t)))) }
func TestConstantsBiasBackward(t *testing.T) {
	reportProblems(t, checkBiasBackward(parseCU(readCU(t))))
}
func TestConstantsLaunchShapes(t *testing.T) {
	reportProblems(t, checkLaunchShapes(parseCU(readCU(t))))
}

// TestConstantsAttentionConfigFor: every head size 1..ATT_HS_MAX gets the
// tiles of the smallest D ≥ hs, and anything else panics.
func TestConstantsAttentionConfigFor(t *testing.T) {
	configs := AttentionConfigs()
	for hs := 1; hs <= AttentionMaxHeadSize; hs++ {
		i := slices.IndexFunc(configs, func(c AttentionConfig) bool { return hs <= c.D })
		want := configs[i]
		fwd, dkdv, dq := AttentionTiles(hs)
		if got := AttentionConfigFor(hs); got != want || fwd != want.Fwd.R || dkdv != want.DKDV.R || dq != want.DQ.R {
			t.Errorf("head size %d: got %+v (%d, %d, %d), want %+v", hs, got, fwd, dkdv, dq, want)
		}
	}
	for _, hs := range []int{0, -1, AttentionMaxHeadSize + 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AttentionConfigFor(%d) did not panic", hs)
				}
			}()
			AttentionConfigFor(hs)
		}()
	}
	configs[0].D = -1 // a copy: the table must not change
	if AttentionConfigs()[0].D == -1 {
		t.Error("AttentionConfigs returned the table itself")
	}
}

// TestConstantsCatchDrift edits the real sources in memory, one drift at a
// time, and requires the checks to report it with the file, the name and
// both values: the tests above can fail.
func TestConstantsCatchDrift(t *testing.T) {
	cases := []struct {
		name      string
		file      string
		old, new  string
		check     func(cuSources) []string
		wantParts []string
	}{
		{"LN_BWD_ROWS", "layernorm.cu", "#define LN_BWD_ROWS 32", "#define LN_BWD_ROWS 16", checkMirrors,
			[]string{"layernorm.cu", "LN_BWD_ROWS is 16", "ptx.LayerNormBwdRows is 32"}},
		{"ATT_HS_MAX", "attention.cu", "#define ATT_HS_MAX 128", "#define ATT_HS_MAX 256", checkMirrors,
			[]string{"attention.cu", "ATT_HS_MAX is 256", "ptx.AttentionMaxHeadSize is 128"}},
		{"ATT_HS_MAX branch", "attention.cu", "#define ATT_HS_MAX 128", "#define ATT_HS_MAX 256", checkAttentionTiles,
			[]string{"attention.cu", "`hs <= ATT_HS_MAX` (hs <= 256), runs D = 128"}},
		{"WTE_COLS", "encoder.cu", "#define WTE_COLS 128", "#define WTE_COLS 256", checkLaunchShapes,
			[]string{"encoder.cu", "WTE_COLS = 256", "ptx.EncoderWTEThreads is 128"}},
		{"DqTiles R", "attention.cu", "DqTiles<64> { static constexpr int R = 32", "DqTiles<64> { static constexpr int R = 16", checkAttentionTiles,
			[]string{"attention.cu", "DqTiles<64>::R is 16", "ptx.AttentionConfigs()[D=64].DQ.R is 32"}},
		{"FwdTiles S", "attention.cu", "FwdTiles<128> { static constexpr int R = 32, S = 16", "FwdTiles<128> { static constexpr int R = 32, S = 8", checkAttentionTiles,
			[]string{"attention.cu", "FwdTiles<128>::S is 8", "ptx.AttentionConfigs()[D=128].Fwd.S is 16"}},
		{"new D", "attention.cu", "template <> struct DqTiles<128>", "template <> struct DqTiles<256> { static constexpr int R = 8, S = 8; };\ntemplate <> struct DqTiles<128>", checkAttentionTiles,
			[]string{"attention.cu", "DqTiles<256>", "no D = 256"}},
		{"BK", "matmul.cu", "constexpr int BK = 8;", "constexpr int BK = 16;", checkMirrors,
			[]string{"matmul.cu", "BK is 16", "gemmplan.BK is 8"}},
		{"GEMM tile shape", "matmul.cu", "gemm<128, 64, TRANS_A", "gemm<64, 128, TRANS_A", checkGEMM,
			[]string{"matmul.cu", "TILE_128x64", "gemm<64, 128>", "gemmplan.Tiles[1] is 128x64"}},
		{"GEMM tile code", "matmul.cu", "constexpr int TILE_128x64 = 1;", "constexpr int TILE_128x64 = 5;", checkGEMM,
			[]string{"matmul.cu", "else branch"}},
		{"fine tile threads", "matmul.cu", "constexpr int THREADS = BM * BN / 16;", "constexpr int THREADS = BM * BN / 32;", checkGEMM,
			[]string{"matmul.cu", "THREADS = BM*BN/32", "gemmplan.Tiles[3].Threads() is 256"}},
		{"fine tile code", "matmul.cu", "constexpr int TILE_64x64_FINE = 3;", "constexpr int TILE_64x64_FINE = 4;", checkGEMM,
			[]string{"matmul.cu", "else branch"}},
		{"GEMM residency", "matmul.cu", "constexpr int MIN_BLOCKS = 2;", "constexpr int MIN_BLOCKS = 1;", checkGEMM,
			[]string{"matmul.cu", "MIN_BLOCKS = 1", "gemmplan.ResidentWarps is 16"}},
		{"bias block", "matmul.cu", "__shared__ float part[32][32];", "__shared__ float part[16][32];", checkBiasBackward,
			[]string{"matmul.cu", "part[16][32]", "ptx.BiasBackwardRows is 32"}},
		{"scratch", "crossentropy.cu", "__shared__ float scratch[32];", "__shared__ float scratch[8];", checkLaunchShapes,
			[]string{"crossentropy.cu", "scratch[8]", "ptx.LossReduceBlock is 1024"}},
		{"new macro", "layernorm.cu", "#define LN_EPS 1e-5f", "#define LN_EPS 1e-5f\n#define LN_FWD_ROWS 8", checkInventory,
			[]string{"layernorm.cu", "LN_FWD_ROWS", "not accounted for"}},
		{"removed macro", "layernorm.cu", "#define LN_PARAMS_SLICES 16", "", checkInventory,
			[]string{"layernorm.cu", "LN_PARAMS_SLICES", "no longer defined"}},
	}
	orig := readCU(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if p := c.check(parseCU(orig)); len(p) > 0 {
				t.Fatalf("the unedited sources already fail: %v", p)
			}
			edited := map[string]string{}
			for k, v := range orig {
				edited[k] = v
			}
			if !strings.Contains(edited[c.file], c.old) {
				t.Fatalf("%s no longer contains %q: update this case", c.file, c.old)
			}
			edited[c.file] = strings.Replace(edited[c.file], c.old, c.new, 1)
			problems := c.check(parseCU(edited))
			for _, p := range problems {
				if containsAll(p, c.wantParts) {
					return
				}
			}
			t.Errorf("no problem reported mentions all of %q; got %q", c.wantParts, problems)
		})
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// driftCase is one edit of a source that its constants check must report:
// old replaced by new, and the parts one reported problem must contain.
type driftCase struct {
	name, old, new string
	wantParts      []string
}

// requireDriftCaught applies each case to file in memory, after the
// unedited sources pass check, and fails unless check reports the drift.
func requireDriftCaught(t *testing.T, file string, check func(cuSources, string) []string, cases []driftCase) {
	t.Helper()
	orig := readCU(t)
	if p := check(parseCU(orig), orig[file]); len(p) > 0 {
		t.Fatalf("the unedited sources already fail: %v", p)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			edited := map[string]string{}
			for k, v := range orig {
				edited[k] = v
			}
			if !strings.Contains(edited[file], c.old) {
				t.Fatalf("%s no longer contains %q: update this case", file, c.old)
			}
			edited[file] = strings.Replace(edited[file], c.old, c.new, 1)
			problems := check(parseCU(edited), edited[file])
			for _, p := range problems {
				if containsAll(p, c.wantParts) {
					return
				}
			}
			t.Errorf("no problem reported mentions all of %q; got %q", c.wantParts, problems)
		})
	}
}
