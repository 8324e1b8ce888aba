package cudrv

/*
#include <cuda.h>
*/
import "C"

import "unsafe"

// SetMaxDynamicShared lets a kernel launch with up to bytes of dynamic
// shared memory (cuFuncSetAttribute with
// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES): above 48 KB a launch
// fails without it. fn points to a gorgonia.org/cu Function, a struct
// holding one CUfunction, which cu gives no way to set this on.
func SetMaxDynamicShared(fn unsafe.Pointer, bytes int) error {
	f := *(*C.CUfunction)(fn)
	return check("cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)",
		C.cuFuncSetAttribute(f, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, C.int(bytes)))
}
