// gelu.cu: the GELU activation of the MLP, tanh approximation (GPT-2's):
//   gelu(x) = 0.5·x·(1 + tanh(u)),  u = sqrt(2/π)·(x + 0.044715·x³)
// Forward: out = gelu(inp). Backward: dinp = gelu'(inp)·dout (OVERWRITTEN).
//
// Both are elementwise over n floats. They use the identity
// 0.5·(1 + tanh(u)) = σ(2u) = 1/(1 + e^(−2u)), which is the same function
// but avoids the cancellation of 1 + tanh(u) for very negative x (where
// tanh(u) → −1 and the float sum loses every significant digit). exp is
// taken of −2|u| only, so it never overflows.
#include "common.cuh"

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

__device__ __forceinline__ bool is_aligned16(const void* p) {
    return (reinterpret_cast<size_t>(p) & 15) == 0;
}

// gelu_forward: float4 loads and stores when both pointers are 16-byte
// aligned (a uniform branch), the n%4 tail element by element; otherwise all
// scalar. Grid-stride loops, so any grid covers any n. out may equal inp:
// every element is read and written by the same thread.
extern "C" __global__ void gelu_forward(float* out, const float* inp, int n) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    const int stride = gridDim.x * blockDim.x;
    int done = 0;
    if (is_aligned16(out) && is_aligned16(inp)) {
        const int n4 = n >> 2;
        for (int i = tid; i < n4; i += stride) {
            const float4 x = reinterpret_cast<const float4*>(inp)[i];
            reinterpret_cast<float4*>(out)[i] = make_float4(gelu(x.x), gelu(x.y), gelu(x.z), gelu(x.w));
        }
        done = n4 << 2;
    }
    for (int i = done + tid; i < n; i += stride) out[i] = gelu(inp[i]);
}

// gelu_backward: dinp = gelu'(inp)·dout, same layout as gelu_forward. dinp
// may equal dout (in place): every element is read and written by the same
// thread.
extern "C" __global__ void gelu_backward(float* dinp, const float* inp, const float* dout, int n) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    const int stride = gridDim.x * blockDim.x;
    int done = 0;
    if (is_aligned16(dinp) && is_aligned16(inp) && is_aligned16(dout)) {
        const int n4 = n >> 2;
        for (int i = tid; i < n4; i += stride) {
            const float4 x = reinterpret_cast<const float4*>(inp)[i];
            const float4 d = reinterpret_cast<const float4*>(dout)[i];
            reinterpret_cast<float4*>(dinp)[i] = make_float4(gelu_grad(x.x) * d.x, gelu_grad(x.y) * d.y,
                                                             gelu_grad(x.z) * d.z, gelu_grad(x.w) * d.w);
        }
        done = n4 << 2;
    }
    for (int i = done + tid; i < n; i += stride) dinp[i] = gelu_grad(inp[i]) * dout[i];
}
