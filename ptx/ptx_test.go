package ptx

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// These tests run on CI, where there is no GPU: they check the PTX with the
// toolkit's own assembler and compiler, so a bad or stale PTX file fails
// here rather than as a JIT error on a GPU.

// tool finds a CUDA toolkit binary under CUDA_HOME or on PATH. A missing
// toolkit is a failure: `make test` installs it (scripts/install-cuda.sh).
func tool(t *testing.T, name string) string {
	t.Helper()
	if home := os.Getenv("CUDA_HOME"); home != "" {
		p := filepath.Join(home, "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found under $CUDA_HOME/bin or on PATH: run scripts/install-cuda.sh (make test does)", name)
	}
	return p
}

func ptxFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.ptx")
	if err != nil || len(files) == 0 {
		t.Fatalf("no PTX files found (%v)", err)
	}
	return files
}

// TestAssemble assembles every PTX file for Volta, Ampere and Hopper.
func TestAssemble(t *testing.T) {
	ptxas := tool(t, "ptxas")
	for _, f := range ptxFiles(t) {
		target, ok := parseTarget(string(must(os.ReadFile(f))))
		if !ok {
			t.Errorf("%s names no .target sm_", f)
			continue
		}
		if target.ArchSpecific {
			// ptxas 11.8 knows no sm_90a (nor PTX ISA 8.0): these modules
			// are assembled on the GPU machine, by the CUDA 13 ptxas
			// (scripts/wgmma-check.sh). TestRetargeted checks their header.
			t.Run(f+"/sm_90a", func(t *testing.T) {
				t.Skipf("%s targets %s: this toolkit's ptxas cannot assemble it (the device scripts do)", f, target)
			})
			continue
		}
		for _, arch := range []string{"sm_70", "sm_80", "sm_90"} {
			if !target.Runs(int(arch[3]-'0'), int(arch[4]-'0')) {
				continue // an sm_80 module does not assemble for Volta
			}
			t.Run(f+"/"+arch, func(t *testing.T) {
				out, err := exec.Command(ptxas, "-arch="+arch, "-o", os.DevNull, f).CombinedOutput()
				if err != nil {
					t.Fatalf("ptxas -arch=%s %s: %v\n%s", arch, f, err, out)
				}
				if len(bytes.TrimSpace(out)) > 0 {
					t.Errorf("ptxas -arch=%s %s printed:\n%s", arch, f, out)
				}
			})
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// nvccArchLine is the line by which a source asks for an architecture
// other than the Makefile's NVCC_ARCH (its nvcc_arch function reads it).
var nvccArchLine = regexp.MustCompile(`(?m)^// nvcc-arch: *(compute_[0-9a-z]+)`)

// archFlag is the -arch flag `make ptx` compiles src with.
func archFlag(t *testing.T, src []byte) string {
	if m := nvccArchLine.FindSubmatch(src); m != nil {
		return "-arch=" + string(m[1])
	}
	return "-arch=" + makeVar(t, "NVCC_ARCH")
}

// makeVar reads a variable from the Makefile, so this test compiles
// exactly as `make ptx` does: with the same flags.
func makeVar(t *testing.T, name string) string {
	t.Helper()
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + name + `\s*:?=\s*(.+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatalf("Makefile has no %s line", name)
	}
	return strings.TrimSpace(string(m[1]))
}

// Freshness: is the committed PTX what nvcc makes of the committed .cu?
//
// nvcc 11.8 is deterministic: the same source compiled at the same absolute
// path gives the same PTX, byte for byte. What the folder changes is exactly
// two things, and normalizePTX makes both neutral, in the committed PTX and
// in a fresh build alike:
//
//  1. The .file directives (-lineinfo) hold the absolute paths of the source
//     and of every header it includes (/usr/include/cuda_bf16.hpp here,
//     /usr/local/cuda/include/... elsewhere). They are cut to the file name.
//
//  2. Entities with internal linkage are named in a namespace
//     _INTERNAL_<h>_<n>_<file>_cu_<...>, anonymous namespaces also
//     _GLOBAL__N__<h>_..., where <h> is 8 hex digits: the CRC-32 of the
//     absolute path of the source (crc32("/tmp/gpubench-ptx/attention.cu")
//     is the 2577b5a7 of attention.ptx; TestFresh checks this on every
//     build). That covers static and anonymous-namespace functions and
//     variables, and every static inline function of the CUDA headers:
//     __shfl_xor_sync, __ldg, __cvta_generic_to_shared, atomicAdd, all of
//     cuda_bf16.h (__float2bfloat16, __hmul2, ...), the wmma calls of mma.h.
//     Such names appear in the code when not inlined (.func, .global, call
//     targets) and, inlined, in the -lineinfo .debug_str section, which
//     spells each name as decimal .b8 bytes. Those bytes are decoded to a
//     quoted string first; then <h> becomes xxxxxxxx everywhere.
//
// Nothing else is touched: code, register names, line numbers, the header's
// compiler build, the other hash in the namespace (which does not depend on
// the path) all still have to match. The .b8 decoding changes only the
// layout of the strings, the same way on both sides.
//
// Before this the check had to compile in the one folder `make ptx` uses,
// since any internal-linkage name compiled elsewhere made the PTX look
// stale; matmul.cu avoids the headers' intrinsics for that reason. Now the
// check builds in a new folder each time, so the masking is exercised on
// every run. Compiling the same source 8 to 10 times, each in a different
// folder, gave no other difference (all of ptx/*.cu, and matmul.cu with
// its inline PTX loads and stores rewritten as plain C with __ldg).
// TestFreshCheckBF16 shows an ordinary CUDA C kernel with cuda_bf16.h and
// mma.h passing from another folder, and failing once its body changes.
var (
	fileDirective = regexp.MustCompile(`\.file(\s+\d+) "[^"]*/([^/"]+)"`)
	pathHash      = regexp.MustCompile(`(_INTERNAL_|_GLOBAL__N__)([0-9a-f]{8})_`)
	releaseLine   = regexp.MustCompile(`release (\d+\.\d+)`)
	b8Line        = regexp.MustCompile(`^\.b8 \d+(,\d+)*$`)
)

// decodeB8 rewrites every run of bare `.b8 n,n,...` lines (the .debug_str
// strings) as one line `.b8 "text"`.
func decodeB8(ptx []byte) []byte {
	var out, run []byte
	flush := func() {
		if run != nil {
			out = append(out, ".b8 "...)
			out = strconv.AppendQuote(out, string(run))
			out = append(out, '\n')
			run = nil
		}
	}
	for _, line := range strings.SplitAfter(string(ptx), "\n") {
		if b, ok := b8Bytes(strings.TrimRight(line, "\r\n")); ok {
			run = append(run, b...)
			continue
		}
		flush()
		out = append(out, line...)
	}
	flush()
	return out
}

// b8Bytes reads the bytes of a bare `.b8 n,n,...` line.
func b8Bytes(line string) ([]byte, bool) {
	if !b8Line.MatchString(line) {
		return nil, false
	}
	var b []byte
	for _, n := range strings.Split(strings.TrimPrefix(line, ".b8 "), ",") {
		v, err := strconv.Atoi(n)
		if err != nil || v > 255 {
			return nil, false
		}
		b = append(b, byte(v))
	}
	return b, true
}

// normalizePTX makes the folder-dependent parts of nvcc's PTX neutral (see
// above) and returns the result and the path hashes it replaced.
func normalizePTX(ptx []byte) ([]byte, map[string]bool) {
	ptx = fileDirective.ReplaceAll(ptx, []byte(`.file$1 "$2"`))
	ptx = decodeB8(ptx)
	hashes := map[string]bool{}
	for _, m := range pathHash.FindAllSubmatch(ptx, -1) {
		hashes[string(m[2])] = true
	}
	return pathHash.ReplaceAll(ptx, []byte("${1}xxxxxxxx_")), hashes
}

// comparePTX is the freshness check: nil if the two PTX texts are the same
// once normalised, else an error naming the first line that differs.
func comparePTX(committed, fresh []byte) error {
	a, _ := normalizePTX(committed)
	b, _ := normalizePTX(fresh)
	if bytes.Equal(a, b) {
		return nil
	}
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := 0; ; i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y || i >= len(al) || i >= len(bl) {
			return fmt.Errorf("normalised line %d differs: committed %q, fresh %q", i+1, cut(x), cut(y))
		}
	}
}

func cut(s string) string {
	if len(s) > 160 {
		return s[:160] + "..."
	}
	return s
}

// retarget runs scripts/ptx-target.sh, as `make ptx` does, on the PTX
// nvcc made of src.
func retarget(t *testing.T, src string, ptx []byte) []byte {
	t.Helper()
	cmd := exec.Command("bash", "../scripts/ptx-target.sh", src)
	cmd.Stdin = bytes.NewReader(ptx)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/ptx-target.sh %s: %v\n%s", src, err, errb.Bytes())
	}
	return out
}

// ptxTargetLine is the line by which a source asks for an
// architecture-specific target (scripts/ptx-target.sh reads it).
var ptxTargetLine = regexp.MustCompile(`(?m)^// ptx-target: *(sm_[0-9]+a)\b`)

// TestRetargeted: every source that asks for an architecture-specific
// target has committed PTX of exactly that target at ISA 8.0 (what the
// driver needs to accept wgmma and setmaxnreg), the rewrite leaves every
// other source's PTX alone, and a header it cannot rewrite is caught.
func TestRetargeted(t *testing.T) {
	sources, _ := filepath.Glob("*.cu")
	n := 0
	for _, src := range sources {
		m := ptxTargetLine.FindSubmatch(must(os.ReadFile(src)))
		committed := must(os.ReadFile(strings.TrimSuffix(src, ".cu") + ".ptx"))
		if m == nil {
			if got := retarget(t, src, committed); !bytes.Equal(got, committed) {
				t.Errorf("%s asks for no ptx-target, but the rewrite changed its PTX", src)
			}
			continue
		}
		n++
		want := string(m[1])
		tg, ok := parseTarget(string(committed))
		if !ok || tg.String() != want {
			t.Errorf("%s asks for %s; its PTX targets %v", src, want, tg)
		}
		if !bytes.Contains(committed, []byte("\n.version 8.0\n")) {
			t.Errorf("%s: its PTX is not at ISA 8.0, which %s's instructions need", src, want)
		}
	}
	if n == 0 {
		t.Error("no source asks for an architecture-specific target: the Hopper tier (matmul_wgmma.cu) is gone?")
	}
	// The rewrite on a header of nvcc 11.8's form.
	in := []byte("//\n.version 7.8\n.target sm_90\n.address_size 64\n")
	got := string(retarget(t, "matmul_wgmma.cu", in))
	if got != "//\n.version 8.0\n.target sm_90a\n.address_size 64\n" {
		t.Errorf("rewrite of an nvcc 11.8 header gave %q", got)
	}
}

// compile runs nvcc with flags on src in dir and returns the PTX. The
// folder is resolved first, as nvcc sees it (its hash is of that path).
func compile(t *testing.T, nvcc string, flags []string, dir, src string) []byte {
	t.Helper()
	out := strings.TrimSuffix(src, ".cu") + ".ptx"
	args := append(append([]string{}, flags...), src, "-o", out)
	cmd := exec.Command(nvcc, args...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nvcc %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, b)
	}
	ptx, err := os.ReadFile(filepath.Join(dir, out))
	if err != nil {
		t.Fatal(err)
	}
	return ptx
}

// checkPathHash checks that the only path hash in PTX compiled from
// dir/src is the CRC-32 of that absolute path, which is what normalizePTX
// relies on to mask it and nothing else.
func checkPathHash(t *testing.T, ptx []byte, dir, src string) {
	t.Helper()
	abs := filepath.Join(dir, src)
	want := fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(abs)))
	_, hashes := normalizePTX(ptx)
	for h := range hashes {
		if h != want {
			t.Errorf("PTX of %s names internal-linkage code with hash %s, not crc32(%q) = %s: normalizePTX's premise no longer holds", src, h, abs, want)
		}
	}
}

// buildDir is a fresh folder, symlinks resolved as nvcc resolves them.
func buildDir(t *testing.T, parts ...string) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(append([]string{dir}, parts...)...)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func nvccRelease(t *testing.T, nvcc string) string {
	t.Helper()
	version, err := exec.Command(nvcc, "--version").Output()
	if err != nil {
		t.Fatalf("nvcc --version: %v", err)
	}
	release := releaseLine.FindSubmatch(version)
	if release == nil {
		t.Fatalf("cannot read the release from nvcc --version:\n%s", version)
	}
	return string(release[1])
}

// TestFresh recompiles every .cu file, in a new folder, and compares the
// result with the committed PTX (comparePTX), so that a source edited
// without `make ptx` fails CI.
func TestFresh(t *testing.T) {
	nvcc := tool(t, "nvcc")
	release := nvccRelease(t, nvcc)
	sources, _ := filepath.Glob("*.cu")
	if len(sources) == 0 {
		t.Fatal("no .cu sources")
	}
	tmp := buildDir(t, "ptx")
	headers, _ := filepath.Glob("*.cuh")
	for _, f := range append(sources, headers...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	flags := strings.Fields(makeVar(t, "NVCCFLAGS"))
	for _, src := range sources {
		ptxName := strings.TrimSuffix(src, ".cu") + ".ptx"
		t.Run(src, func(t *testing.T) {
			t.Parallel()
			committed, err := os.ReadFile(ptxName)
			if err != nil {
				t.Fatalf("%s has no %s: run make ptx", src, ptxName)
			}
			// PTX from another nvcc release differs in its header and code;
			// only the release the PTX was made with can judge it.
			if want := "release " + release; !bytes.Contains(committed, []byte("Cuda compilation tools, "+want)) {
				msg := fmt.Sprintf("%s was not made by nvcc %s (this toolkit's): cannot compare", ptxName, release)
				if os.Getenv("CI") != "" {
					t.Fatal(msg)
				}
				t.Skip(msg)
			}
			fresh := compile(t, nvcc, append([]string{archFlag(t, must(os.ReadFile(src)))}, flags...), tmp, src)
			checkPathHash(t, fresh, tmp, src)
			fresh = retarget(t, src, fresh)
			if err := comparePTX(committed, fresh); err != nil {
				t.Errorf("%s is stale against %s (%v): run make ptx and commit the result", ptxName, src, err)
			}
		})
	}
	for _, f := range ptxFiles(t) {
		if _, err := os.Stat(strings.TrimSuffix(f, ".ptx") + ".cu"); err != nil {
			t.Errorf("%s has no source %s", f, strings.TrimSuffix(f, ".ptx")+".cu")
		}
	}
}

// bf16Kernel is ordinary CUDA C of the kind the bf16 kernels will be:
// cuda_bf16.h arithmetic and an mma.h tensor-core product, all of it
// static inline header code with internal linkage. bf16 arithmetic and
// bf16 wmma need compute_80.
const bf16Kernel = `#include <cuda_bf16.h>
#include <mma.h>

extern "C" __global__ void bf16_scale_mma(const float* a, const __nv_bfloat16* x, const __nv_bfloat16* w,
                                          float* c, __nv_bfloat16* o, float s, int n) {
    using namespace nvcuda;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        __nv_bfloat162 v = __floats2bfloat162_rn(a[i], s);
        __nv_bfloat162 p = __hmul2(v, v);
        o[i] = __hadd(__low2bfloat16(p), __float2bfloat16(s));
    }
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    wmma::load_matrix_sync(fa, x, 16);
    wmma::load_matrix_sync(fb, w, 16);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}
`

// TestFreshCheckBF16 is the experiment behind comparePTX, kept so that it
// keeps holding: bf16Kernel compiled in two folders gives PTX that differs
// byte for byte (the .file paths and the path hash in its internal-linkage
// names) yet passes the check, and fails it once its body changes.
func TestFreshCheckBF16(t *testing.T) {
	nvcc := tool(t, "nvcc")
	if r := nvccRelease(t, nvcc); r != "11.8" {
		t.Skipf("nvcc %s: the experiment is about nvcc 11.8", r)
	}
	flags := append([]string{"-arch=compute_80"}, strings.Fields(makeVar(t, "NVCCFLAGS"))...)
	build := func(dir, body string) []byte {
		if err := os.WriteFile(filepath.Join(dir, "bf16.cu"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		ptx := compile(t, nvcc, flags, dir, "bf16.cu")
		checkPathHash(t, ptx, dir, "bf16.cu")
		return ptx
	}
	dirA := buildDir(t, "a")
	dirB := buildDir(t, "b", "a-longer-folder")
	a := build(dirA, bf16Kernel)
	b := build(dirB, bf16Kernel)
	if !bytes.Contains(a, []byte("mma.sync")) {
		t.Fatal("bf16.cu compiled without a tensor-core mma.sync: not the experiment intended")
	}
	if _, hashes := normalizePTX(a); len(hashes) != 1 {
		t.Fatalf("bf16.cu's PTX has path hashes %v, want exactly one (its internal-linkage header code)", hashes)
	}
	if bytes.Equal(a, b) {
		t.Error("bf16.cu compiled in two folders gave identical PTX: the normalisation would not be needed")
	}
	if err := comparePTX(a, b); err != nil {
		t.Errorf("bf16.cu compiled in two folders fails the freshness check: %v", err)
	}
	changed := strings.Replace(bf16Kernel, "__hmul2(v, v)", "__hmul2(v, __floats2bfloat162_rn(s, s))", 1)
	if changed == bf16Kernel {
		t.Fatal("the body change did not apply")
	}
	if err := comparePTX(a, build(dirB, changed)); err == nil {
		t.Error("bf16.cu with a changed body passes the freshness check against the old PTX")
	} else {
		t.Logf("changed body, as wanted: %v", err)
	}
}

func TestModule(t *testing.T) {
	src, err := Module("common")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(src, "\x00") || !strings.Contains(src, ".entry fill_f32") {
		t.Errorf("Module(common) is not the NUL-terminated common.ptx")
	}
	if _, err := Module("no-such-module"); err == nil || !strings.Contains(err.Error(), "common") {
		t.Errorf("Module(no-such-module) error %v does not list the modules", err)
	}
}

func TestModuleTarget(t *testing.T) {
	for _, m := range Modules() {
		tg, ok := ModuleTarget(m)
		if !ok {
			t.Errorf("module %s: no .target sm_ directive", m)
			continue
		}
		if !tg.Runs(tg.SM/10, tg.SM%10) {
			t.Errorf("module %s: target %s does not run on its own architecture", m, tg)
		}
	}
	cases := []struct {
		text         string
		t            Target
		major, minor int
		runs         bool
	}{
		{"x\n.target sm_70\n", Target{70, false}, 9, 0, true},
		{"x\n.target sm_80\n", Target{80, false}, 7, 5, false},
		{"x\n.target sm_80, debug\n", Target{80, false}, 8, 6, true},
		{"x\n.target sm_90a\n", Target{90, true}, 9, 0, true},
		{"x\n.target sm_90a\n", Target{90, true}, 10, 0, false},
	}
	for _, c := range cases {
		got, ok := parseTarget(c.text)
		if !ok || got != c.t {
			t.Errorf("parseTarget(%q) = %v, %v; want %v", c.text, got, ok, c.t)
		}
		if r := got.Runs(c.major, c.minor); r != c.runs {
			t.Errorf("%v.Runs(%d.%d) = %v, want %v", got, c.major, c.minor, r, c.runs)
		}
	}
	if _, ok := parseTarget("no target here"); ok {
		t.Error("parseTarget found a target in text without one")
	}
}
