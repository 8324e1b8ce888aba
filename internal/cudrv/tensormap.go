package cudrv

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>

// cuTensorMapEncodeTiled came with CUDA 12; cuda.h of the 11.8 toolkit that
// builds gpubench does not declare it, so it is looked up in the driver at
// run time. The enum values are CUDA 12's (cuda.h, CUtensorMap*).
typedef int (*encode_tiled_fn)(void* map, int dtype, uint32_t rank, void* addr, const uint64_t* dims,
                               const uint64_t* strides, const uint32_t* box, const uint32_t* elem_strides,
                               int interleave, int swizzle, int l2promotion, int oob_fill);

static encode_tiled_fn encode_tiled;

static int load_encode_tiled(void) {
	if (encode_tiled != 0) return 1;
	void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
	if (h == 0) h = dlopen("libcuda.so.1", RTLD_LAZY);
	if (h == 0) return 0;
	encode_tiled = (encode_tiled_fn)dlsym(h, "cuTensorMapEncodeTiled");
	return encode_tiled != 0;
}

static int encode_2d(void* map, int dtype, uint64_t addr, uint64_t inner, uint64_t outer, uint64_t stride_bytes,
                     uint32_t box_inner, uint32_t box_outer) {
	uint64_t dims[2] = {inner, outer};
	uint64_t strides[1] = {stride_bytes};
	uint32_t box[2] = {box_inner, box_outer};
	uint32_t elem[2] = {1, 1};
	// INTERLEAVE_NONE, SWIZZLE_128B, L2_PROMOTION_L2_256B, FLOAT_OOB_FILL_NONE (zeros).
	return encode_tiled(map, dtype, 2, (void*)(uintptr_t)addr, dims, strides, box, elem, 0, 3, 3, 0);
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// TensorMap is a CUtensorMap: 128 opaque bytes that a kernel takes by
// value (a __grid_constant__ parameter) and its TMA loads read.
type TensorMap [16]uint64

// The element types of a tensor map (CUtensorMapDataType).
const (
	TensorMapF32  = 7 // CU_TENSOR_MAP_DATA_TYPE_FLOAT32
	TensorMapBF16 = 9 // CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
)

// EncodeTensorMap2D fills m (cuTensorMapEncodeTiled) for outer rows of
// inner elements of dtype at addr, strideBytes apart, loaded in boxes of
// boxInner × boxOuter elements with the 128-byte swizzle, elements out of
// bounds filled with zeros. It fails with the driver's result, or when the
// driver has no cuTensorMapEncodeTiled (before CUDA 12).
func EncodeTensorMap2D(m *TensorMap, dtype int, addr uint64, inner, outer, strideBytes uint64, boxInner, boxOuter int) error {
	if C.load_encode_tiled() == 0 {
		return fmt.Errorf("cuTensorMapEncodeTiled: not in this driver's libcuda.so.1 (TMA needs a CUDA 12 or later driver)")
	}
	r := C.encode_2d(unsafe.Pointer(m), C.int(dtype), C.uint64_t(addr), C.uint64_t(inner), C.uint64_t(outer),
		C.uint64_t(strideBytes), C.uint32_t(boxInner), C.uint32_t(boxOuter))
	if r != 0 {
		return &Error{Op: fmt.Sprintf("cuTensorMapEncodeTiled(%dx%d, stride %d B, box %dx%d)", inner, outer, strideBytes, boxInner, boxOuter), Code: int(r)}
	}
	return nil
}
