// common.cu: kernels that belong to no layer.
//
// fill_f32 is the smallest kernel that proves the whole chain: CUDA C here,
// PTX embedded in the Go binary, JIT-compiled by the driver, launched from Go
// through the driver API. The tests and the model use it to poison buffers.
#include "common.cuh"

// fill_f32 sets dst[0..n) to value. A grid-stride loop lets any grid size
// cover any n.
extern "C" __global__ void fill_f32(float* dst, int n, float value) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        dst[i] = value;
    }
}
