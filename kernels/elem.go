package kernels

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/program"
)

// The kernels of ptx/{encoder,layernorm,gelu,residual,crossentropy}.cu are
// written once over the type their tensors are stored in (ptx/elem.cuh):
// module <layer> holds the fp32 entries, module <layer>_bf16 the bf16 ones,
// named <entry>_bf16. Their launchers take the storage type from the views
// they are given, so the same call builds either step's launch.

// storage is the element type of the stored tensors of a launch of entry:
// F32 or BF16, the same for every non-null view. Anything else is a bug in
// the program that built the launch, and panics.
func storage(entry string, views ...program.View) program.Elem {
	var e program.Elem
	for _, v := range views {
		if v.IsNull() {
			continue
		}
		switch {
		case v.Buf.Elem != program.F32 && v.Buf.Elem != program.BF16:
			panic(fmt.Sprintf("kernels: %s: %s holds %s, not f32 or bf16", entry, v, v.Buf.Elem))
		case e == "":
			e = v.Buf.Elem
		case v.Buf.Elem != e:
			panic(fmt.Sprintf("kernels: %s: %s holds %s, the other tensors %s", entry, v, v.Buf.Elem, e))
		}
	}
	if e == "" {
		panic(fmt.Sprintf("kernels: %s: no tensor to take the storage type from", entry))
	}
	return e
}

// require panics unless every non-null view holds e: the tensors that have
// one type in both steps (fp32 statistics and partials, int32 ids).
func require(entry string, e program.Elem, views ...program.View) {
	for _, v := range views {
		if !v.IsNull() && v.Buf.Elem != e {
			panic(fmt.Sprintf("kernels: %s: %s holds %s, want %s", entry, v, v.Buf.Elem, e))
		}
	}
}

// stored is kernel for an entry of a layer written for both storage types:
// the launch of module/entry for fp32 storage, of module_bf16/entry_bf16
// for bf16.
func stored(s program.Elem, module, entry string, grid, block program.Dim3, args ...program.Arg) program.Op {
	if s == program.BF16 {
		module, entry = module+"_bf16", entry+"_bf16"
	}
	return kernel(module, entry, grid, block, args...)
}

// vector is the elements of type s that the elementwise kernels move in
// one 16-byte access (ptx/elem.cuh's Pack: 4 floats, 8 bf16s).
func vector(s program.Elem) int { return 16 / int(s.Size()) }
