// Package ptx holds gpubench's kernels: their CUDA C sources (*.cu) and the
// PTX that `make ptx` generates from them with nvcc -arch=compute_70.
//
// The PTX is committed and embedded into the binary, so building gpubench
// needs no nvcc, and the driver JIT-compiles it for whatever GPU it finds.
// Each layer of the model has one source file (layernorm.cu, matmul.cu, ...)
// and so one PTX module, loaded by package kernels under the same name.
package ptx

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

//go:embed *.ptx
var files embed.FS

// Module returns the PTX text of the named module (the file name without
// .ptx), NUL-terminated as cuModuleLoadDataEx requires.
func Module(name string) (string, error) {
	b, err := files.ReadFile(name + ".ptx")
	if err != nil {
		return "", fmt.Errorf("ptx: no module %q (have %s)", name, strings.Join(Modules(), ", "))
	}
	return string(b) + "\x00", nil
}

// Modules lists the embedded module names in order.
func Modules() []string {
	entries, _ := fs.Glob(files, "*.ptx")
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = strings.TrimSuffix(e, ".ptx")
	}
	slices.Sort(names)
	return names
}

// entries parses the kernel entries of a PTX text: for each, its name and
// its parameters' PTX types (u64, u32, s32, f32, ...), in file order. It
// uses package strings alone, not regexp: package kernels imports ptx, and
// everything that startup (which must initialise before gorgonia.org/cu)
// reaches may only import what cu imports too.
func entries(text string) (names []string, params [][]string) {
	const decl = ".visible .entry "
	for {
		i := strings.Index(text, decl)
		if i < 0 {
			return names, params
		}
		text = text[i+len(decl):]
		open := strings.IndexByte(text, '(')
		end := strings.IndexByte(text, ')')
		if open < 0 || end < open {
			return names, params
		}
		names = append(names, strings.TrimSpace(text[:open]))
		types := []string{}
		for _, p := range strings.Split(text[open+1:end], ",") {
			f := strings.Fields(p)
			switch {
			case len(f) >= 5 && f[0] == ".param" && f[1] == ".align":
				// A by-value struct: ".param .align 64 .b8 name[128]" is
				// a TMA tensor map (TensorMapParam).
				size := ""
				if i := strings.IndexByte(f[4], '['); i >= 0 {
					size = f[4][i:]
				}
				types = append(types, strings.TrimPrefix(f[3], ".")+size)
			case len(f) >= 2 && f[0] == ".param":
				types = append(types, strings.TrimPrefix(f[1], "."))
			}
		}
		params = append(params, types)
		text = text[end:]
	}
}

// TensorMapParam is the PTX type Params gives a CUtensorMap passed by
// value (a __grid_constant__ parameter of 128 bytes, 64-byte aligned).
const TensorMapParam = "b8[128]"

// Entries lists the kernel entry points of the named module, in file order.
func Entries(module string) []string {
	b, err := files.ReadFile(module + ".ptx")
	if err != nil {
		return nil
	}
	names, _ := entries(string(b))
	return names
}

// Params returns the PTX types (u64, u32, s32, f32, ...) of the parameters
// of kernel entry in module, and whether the entry exists. Launches pass
// untyped 8-byte slots, so the compiler cannot catch an argument list that
// does not match the kernel; tests compare every launch with this.
func Params(module, entry string) ([]string, bool) {
	b, err := files.ReadFile(module + ".ptx")
	if err != nil {
		return nil, false
	}
	names, params := entries(string(b))
	for i, n := range names {
		if n == entry {
			return params[i], true
		}
	}
	return nil, false
}

// Target is the GPU architecture a module's PTX is written for, from its
// .target directive: SM is 70 for sm_70, 80 for sm_80, 90 for sm_90a, and
// ArchSpecific marks the "a" targets (sm_90a), whose instructions (wgmma,
// setmaxnreg) exist on that architecture alone, not on its successors.
type Target struct {
	SM           int
	ArchSpecific bool
}

// ModuleTarget reads the .target of the named module; ok is false when the
// module does not exist or names no sm_ target.
func ModuleTarget(module string) (t Target, ok bool) {
	b, err := files.ReadFile(module + ".ptx")
	if err != nil {
		return Target{}, false
	}
	return parseTarget(string(b))
}

func parseTarget(text string) (Target, bool) {
	const decl = "\n.target sm_"
	i := strings.Index(text, decl)
	if i < 0 {
		return Target{}, false
	}
	rest := text[i+len(decl):]
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 {
		return Target{}, false
	}
	sm := 0
	for _, c := range rest[:n] {
		sm = sm*10 + int(c-'0')
	}
	return Target{SM: sm, ArchSpecific: n < len(rest) && rest[n] == 'a'}, true
}

// Runs says whether a GPU of compute capability major.minor can load PTX
// of target t: any later architecture for a plain target, exactly that
// architecture for an arch-specific one.
func (t Target) Runs(major, minor int) bool {
	cc := major*10 + minor
	if t.ArchSpecific {
		return cc/10 == t.SM/10 && cc >= t.SM
	}
	return cc >= t.SM
}

func (t Target) String() string {
	s := fmt.Sprintf("sm_%d", t.SM)
	if t.ArchSpecific {
		s += "a"
	}
	return s
}
