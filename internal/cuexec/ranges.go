package cuexec

import (
	"strings"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/nvtx"
)

// RangeClass is the colour and category of a kind of NVTX range, so the
// timeline sets phases, parts of the model and kinds of operation apart,
// and a tool can filter on the category.
type RangeClass struct {
	Name     string // the category's name
	Color    nvtx.Color
	Category nvtx.Category
}

// RangeClasses are the classes in category order (category i+1): the
// template's ranges, the model's parts, then one per kernel family for the
// operations' ranges (--nvtx=op). NameCategories names them for a tool.
var RangeClasses = []RangeClass{
	{"iteration", nvtx.RGB(0x76, 0xb9, 0x00), 1}, // NVIDIA green
	{"forward", nvtx.RGB(0x1f, 0x77, 0xb4), 2},
	{"backward", nvtx.RGB(0xd6, 0x27, 0x28), 3},
	{"part", nvtx.RGB(0x94, 0x67, 0xbd), 4},
	{"layer", nvtx.RGB(0x17, 0xbe, 0xcf), 5},
	{"attention", nvtx.RGB(0xff, 0x7f, 0x0e), 6},
	{"mlp", nvtx.RGB(0x2c, 0xa0, 0x2c), 7},
	{"matmul", nvtx.RGB(0x8c, 0x56, 0x4b), 8},
	{"attention kernel", nvtx.RGB(0xff, 0xbb, 0x78), 9},
	{"normalisation", nvtx.RGB(0xe3, 0x77, 0xc2), 10},
	{"elementwise", nvtx.RGB(0xbc, 0xbd, 0x22), 11},
	{"loss", nvtx.RGB(0xc5, 0xb0, 0xd5), 12},
	{"embedding", nvtx.RGB(0x9e, 0xda, 0xe5), 13},
	{"memset", nvtx.RGB(0x7f, 0x7f, 0x7f), 14},
	{"other", nvtx.RGB(0x7f, 0x7f, 0x7f), 15},
	// generate mode's passes (added last, so the categories above keep
	// their numbers)
	{"prefill", nvtx.RGB(0x1f, 0x77, 0xb4), 16},
	{"decode", nvtx.RGB(0xe3, 0x77, 0xc2), 17},
	// a data-parallel backward's all-reduce of one bucket (--gpus)
	{"allreduce", nvtx.RGB(0x00, 0x33, 0x99), 18},
}

func class(name string) RangeClass {
	for _, c := range RangeClasses {
		if c.Name == name {
			return c
		}
	}
	if name == "other" {
		panic("cuexec: no range class other")
	}
	return class("other")
}

// RangeClassOf is the class of range r: from its kind, and for an
// operation's range from the module of its operation (the kernel family).
func RangeClassOf(r *program.Range) RangeClass {
	switch r.Kind {
	case "":
		if r.Name == program.IterationTemplate || strings.HasPrefix(r.Name, program.IterationPrefix) {
			return class("iteration")
		}
		return class("other")
	case program.PassRange:
		switch {
		case r.Name == program.Backward:
			return class("backward")
		case r.Name == program.Prefill:
			return class("prefill")
		case strings.HasPrefix(r.Name, program.DecodePrefix):
			return class("decode")
		}
		return class("forward")
	case program.PartRange:
		return class("part")
	case program.LayerRange:
		return class("layer")
	case program.HalfRange:
		return class(r.Name) // attention or mlp
	case program.AllReduceRange:
		return class("allreduce")
	case program.OpRange:
		for _, it := range r.Items {
			if it.Op != nil {
				return opClass(it.Op)
			}
		}
	}
	return class("other")
}

// opClass is the class of an operation: memsets and the like by kind,
// kernels by the family of their module (matmul_mma is a matmul).
func opClass(op *program.Op) RangeClass {
	if op.Kind != program.Kernel {
		return class("memset")
	}
	family := op.Module
	if i := strings.IndexByte(family, '_'); i > 0 {
		family = family[:i]
	}
	switch family {
	case "matmul":
		return class("matmul")
	case "attention":
		return class("attention kernel")
	case "layernorm":
		return class("normalisation")
	case "gelu", "residual", "common", "unfused":
		return class("elementwise")
	case "crossentropy":
		return class("loss")
	case "encoder":
		return class("embedding")
	case "llama":
		return class("normalisation") // RMSNorm, RoPE, SwiGLU, argmax: LLaMA's elementwise and row kernels
	case "gemv":
		return class("matmul")
	case "decode":
		return class("attention kernel")
	}
	return class("other")
}

// NameCategories names every range class's category in the executor's
// domain, so nsys shows the names rather than numbers.
func (x *Executor) NameCategories() error {
	for _, c := range RangeClasses {
		if err := x.Domain.NameCategory(c.Category, c.Name); err != nil {
			return err
		}
	}
	return nil
}
