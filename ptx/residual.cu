// residual.cu: the residual connection, out = a + b over n floats.
//
// Purely bandwidth-bound, so it moves float4s (one 16-byte load per operand
// per thread) whenever all three pointers are 16-byte aligned, and the n%4
// tail element by element. out may equal a or b (in place): every element
// is read and written by the same thread.
#include "common.cuh"

__device__ __forceinline__ bool is_aligned16(const void* p) {
    return (reinterpret_cast<size_t>(p) & 15) == 0;
}

// residual_forward: grid-stride loops, so any grid covers any n. The aligned
// test is uniform over the grid, so the branch never diverges.
extern "C" __global__ void residual_forward(float* out, const float* a, const float* b, int n) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    const int stride = gridDim.x * blockDim.x;
    int done = 0;
    if (is_aligned16(out) && is_aligned16(a) && is_aligned16(b)) {
        const int n4 = n >> 2;
        for (int i = tid; i < n4; i += stride) {
            const float4 x = reinterpret_cast<const float4*>(a)[i];
            const float4 y = reinterpret_cast<const float4*>(b)[i];
            reinterpret_cast<float4*>(out)[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
        }
        done = n4 << 2;
    }
    for (int i = done + tid; i < n; i += stride) out[i] = a[i] + b[i];
}
