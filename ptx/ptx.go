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
	"sort"
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
	sort.Strings(names)
	return names
}
