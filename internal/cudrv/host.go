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

// HostAlloc allocates bytes of host memory outside the Go heap, for copies
// the driver reads or writes after the call returns: pinned (page-locked,
// cuMemAllocHost), which the GPU reaches directly and an asynchronous copy
// can overlap, or pageable (malloc), which a copy goes through a staging
// buffer for. Free it with HostFree and the same pinned.
func HostAlloc(bytes int64, pinned bool) (unsafe.Pointer, error) {
	if bytes <= 0 {
		bytes = 1
	}
	if !pinned {
		p := C.malloc(C.size_t(bytes))
		if p == nil {
			return nil, fmt.Errorf("malloc %d bytes of pageable host memory: out of memory", bytes)
		}
		return p, nil
	}
	var p unsafe.Pointer
	if err := check("cuMemAllocHost", C.cuMemAllocHost(&p, C.size_t(bytes))); err != nil {
		return nil, err
	}
	return p, nil
}

// HostFree frees memory from HostAlloc.
func HostFree(p unsafe.Pointer, pinned bool) error {
	if !pinned {
		C.free(p)
		return nil
	}
	return check("cuMemFreeHost", C.cuMemFreeHost(p))
}
