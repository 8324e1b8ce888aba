// gelu.cu: the GELU activation of the MLP, tanh approximation (GPT-2's):
//   gelu(x) = 0.5·x·(1 + tanh(u)),  u = sqrt(2/π)·(x + 0.044715·x³)
// Forward: out = gelu(inp). Backward: dinp = gelu'(inp)·dout (OVERWRITTEN).
//
// Both are elementwise over n elements. They use the identity
// 0.5·(1 + tanh(u)) = σ(2u) = 1/(1 + e^(−2u)), which is the same function
// but avoids the cancellation of 1 + tanh(u) for very negative x (where
// tanh(u) → −1 and the float sum loses every significant digit). exp is
// taken of −2|u| only, so it never overflows.
//
// The kernels are templates over the storage type S of inp, out, dout and
// dinp (elem.cuh): this file's entries store floats, those of gelu_bf16.cu
// (which includes it) bf16s, suffixed _bf16. The math is in float; each
// output is rounded once.
#include "common.cuh"
#include "elem.cuh"

#define GELU_SCALE 0.7978845608028654f // sqrt(2/π)
#define GELU_COEF 0.044715f

// gelu_sigmoids returns p = σ(2u) and q = 1 − p = σ(−2u), both accurate.
__device__ __forceinline__ void gelu_sigmoids(float u, float* p, float* q) {
    const float e = expf(-2.0f * fabsf(u)); // in (0, 1]
    const float big = 1.0f / (1.0f + e);   // σ(2|u|)
    const float small = e * big;           // σ(−2|u|)
    *p = u >= 0.0f ? big : small;
    *q = u >= 0.0f ? small : big;
}

__device__ __forceinline__ float gelu(float x) {
    const float u = GELU_SCALE * (x + GELU_COEF * x * x * x);
    float p, q;
    gelu_sigmoids(u, &p, &q);
    return x * p;
}

// gelu' = 0.5(1+tanh u) + 0.5·x·sech²(u)·du/dx, with 0.5(1+tanh u) = p and
// sech²(u) = 1 − tanh²(u) = 4·p·q.
__device__ __forceinline__ float gelu_grad(float x) {
    const float x2 = x * x;
    const float u = GELU_SCALE * (x + GELU_COEF * x2 * x);
    float p, q;
    gelu_sigmoids(u, &p, &q);
    const float du = GELU_SCALE * (1.0f + 3.0f * GELU_COEF * x2);
    return p + 2.0f * x * p * q * du;
}

// gelu_forward: 16-byte vector loads and stores (4 floats, 8 bf16s) when
// both pointers are 16-byte aligned (a uniform branch), the tail of fewer
// than a vector element by element; otherwise all scalar. Grid-stride
// loops, so any grid covers any n. out may equal inp: every element is read
// and written by the same thread.
template <typename S>
__device__ __forceinline__ void gelu_forward_t(S* out, const S* inp, int n) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    const int stride = gridDim.x * blockDim.x;
    int done = 0;
    if (is_aligned16(out) && is_aligned16(inp)) {
        const int nv = n >> Pack<S>::LOG2N;
        for (int i = tid; i < nv; i += stride) {
            Pack<S> x;
            x.load(inp, i);
#pragma unroll
            for (int k = 0; k < Pack<S>::N; k++) x.v[k] = gelu(x.v[k]);
            x.store(out, i);
        }
        done = nv << Pack<S>::LOG2N;
    }
    for (int i = done + tid; i < n; i += stride) out[i] = from_float<S>(gelu(to_float(inp[i])));
}

// gelu_backward: dinp = gelu'(inp)·dout, same layout as gelu_forward. dinp
// may equal dout (in place): every element is read and written by the same
// thread.
template <typename S>
__device__ __forceinline__ void gelu_backward_t(S* dinp, const S* inp, const S* dout, int n) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    const int stride = gridDim.x * blockDim.x;
    int done = 0;
    if (is_aligned16(dinp) && is_aligned16(inp) && is_aligned16(dout)) {
        const int nv = n >> Pack<S>::LOG2N;
        for (int i = tid; i < nv; i += stride) {
            Pack<S> x, d;
            x.load(inp, i);
            d.load(dout, i);
#pragma unroll
            for (int k = 0; k < Pack<S>::N; k++) x.v[k] = gelu_grad(x.v[k]) * d.v[k];
            x.store(dinp, i);
        }
        done = nv << Pack<S>::LOG2N;
    }
    for (int i = done + tid; i < n; i += stride) dinp[i] = from_float<S>(gelu_grad(to_float(inp[i])) * to_float(dout[i]));
}

#ifndef GPUBENCH_BF16
extern "C" __global__ void gelu_forward(float* out, const float* inp, int n) {
    gelu_forward_t(out, inp, n);
}
extern "C" __global__ void gelu_backward(float* dinp, const float* inp, const float* dout, int n) {
    gelu_backward_t(dinp, inp, dout, n);
}
#else
extern "C" __global__ void gelu_forward_bf16(__nv_bfloat16* out, const __nv_bfloat16* inp, int n) {
    gelu_forward_t(out, inp, n);
}
extern "C" __global__ void gelu_backward_bf16(__nv_bfloat16* dinp, const __nv_bfloat16* inp,
                                              const __nv_bfloat16* dout, int n) {
    gelu_backward_t(dinp, inp, dout, n);
}
#endif
