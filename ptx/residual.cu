// residual.cu: the residual connection, out = a + b over n elements.
//
// Purely bandwidth-bound, so it moves 16-byte vectors (one load per operand
// per thread: 4 floats, 8 bf16s) whenever all three pointers are 16-byte
// aligned, and the tail of fewer than a vector element by element. out may
// equal a or b (in place): every element is read and written by the same
// thread.
//
// The kernel is a template over the storage type S (elem.cuh): this file's
// entry stores floats, that of residual_bf16.cu (which includes it) bf16s,
// suffixed _bf16. The sum is in float, rounded once.
#include "common.cuh"
#include "elem.cuh"

// residual_forward: out = a + b, binary_t's vectorised grid-stride loop.
struct AddOp {
    __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};

template <typename S>
__device__ __forceinline__ void residual_forward_t(S* out, const S* a, const S* b, int n) {
    binary_t(out, a, b, n, AddOp{});
}

// residual_forward_strided (--flaw=uncoalesced): the same sum, written the
// way a CPU loop is split over threads. Each thread adds one contiguous
// chunk of ⌈n/threads⌉ elements, one element a step, so at every step the
// 32 lanes of a warp read and write addresses a whole chunk apart: 32
// sectors of 4 used bytes each a request, where every byte of residual_forward's
// are used (ncu's UncoalescedGlobalAccess rule). Each element is one add,
// rounded once, by one thread: bit for bit residual_forward's result, in
// place too. The chunk comes from the grid, so any grid covers any n.
template <typename S>
__device__ __forceinline__ void residual_forward_strided_t(S* out, const S* a, const S* b, int n) {
    const long long threads = (long long)gridDim.x * blockDim.x;
    const long long chunk = (n + threads - 1) / threads;
    const long long begin = (long long)(blockIdx.x * blockDim.x + threadIdx.x) * chunk;
    const long long end = min(begin + chunk, (long long)n);
    for (long long i = begin; i < end; i++) out[i] = from_float<S>(to_float(a[i]) + to_float(b[i]));
}

#ifndef GPUBENCH_BF16
extern "C" __global__ void residual_forward(float* out, const float* a, const float* b, int n) {
    residual_forward_t(out, a, b, n);
}

extern "C" __global__ void residual_forward_strided(float* out, const float* a, const float* b, int n) {
    residual_forward_strided_t(out, a, b, n);
}
#else
extern "C" __global__ void residual_forward_bf16(__nv_bfloat16* out, const __nv_bfloat16* a, const __nv_bfloat16* b,
                                                 int n) {
    residual_forward_t(out, a, b, n);
}

extern "C" __global__ void residual_forward_strided_bf16(__nv_bfloat16* out, const __nv_bfloat16* a,
                                                         const __nv_bfloat16* b, int n) {
    residual_forward_strided_t(out, a, b, n);
}
#endif
