package cudrv

/*
#include <cuda.h>
#include <stdlib.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// paramAlign is the alignment of each kernel parameter's copy: a TMA
// tensor map (CUtensorMap) is 64-byte aligned.
const paramAlign = 64

// Launch enqueues a kernel (cuLaunchKernel) whose parameter i is the
// sizes[i] bytes at params[i]. gorgonia.org/cu's Function.Launch copies 8
// bytes of every parameter, which cannot pass a by-value struct such as a
// TMA tensor map (128 bytes); this copies each parameter whole into C
// memory first, as cgo requires. fn points to a gorgonia.org/cu Function.
func Launch(fn unsafe.Pointer, gx, gy, gz, bx, by, bz, shared int, s Stream, params []unsafe.Pointer, sizes []int) error {
	if len(params) != len(sizes) {
		return fmt.Errorf("cuLaunchKernel: %d parameters, %d sizes", len(params), len(sizes))
	}
	n := len(params)
	total := 0
	offs := make([]int, n)
	for i, sz := range sizes {
		total = (total + paramAlign - 1) / paramAlign * paramAlign
		offs[i] = total
		total += sz
	}
	buf := C.aligned_alloc(paramAlign, C.size_t(max((total+paramAlign-1)/paramAlign*paramAlign, paramAlign)))
	argp := C.malloc(C.size_t(max(n, 1)) * C.size_t(unsafe.Sizeof(uintptr(0))))
	if buf == nil || argp == nil {
		C.free(buf)
		C.free(argp)
		return fmt.Errorf("cuLaunchKernel: no host memory for %d bytes of parameters", total)
	}
	defer C.free(buf)
	defer C.free(argp)
	ptrs := unsafe.Slice((*unsafe.Pointer)(argp), max(n, 1))
	for i := range params {
		dst := unsafe.Add(buf, offs[i])
		// Copied in Go: the parameters live inside Go structs that hold Go
		// pointers, which cgo may not be handed.
		copy(unsafe.Slice((*byte)(dst), sizes[i]), unsafe.Slice((*byte)(params[i]), sizes[i]))
		ptrs[i] = dst
	}
	f := *(*C.CUfunction)(fn)
	return check("cuLaunchKernel", C.cuLaunchKernel(f, C.uint(gx), C.uint(gy), C.uint(gz), C.uint(bx), C.uint(by), C.uint(bz),
		C.uint(shared), s.s, (*unsafe.Pointer)(argp), nil))
}
