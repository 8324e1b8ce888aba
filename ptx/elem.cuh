// elem.cuh: the storage types of the kernels written once for both steps.
//
// The encoder, LayerNorm, GELU, residual and cross-entropy kernels are
// templates over S, the type their tensors are stored in: float for the
// fp32 step, __nv_bfloat16 for the bf16 step. All their arithmetic is in
// float: a load widens (to_float, exact), a store rounds once (from_float:
// round to nearest, ties to even). For S = float both are no-ops, so the
// fp32 kernels compute exactly what they computed before the templates.
//
// A layer's source instantiates its fp32 entries (module <layer>, entries
// as named before) unless GPUBENCH_BF16 is defined; ptx/<layer>_bf16.cu
// defines it and includes the source, which then instantiates the bf16
// entries instead (module <layer>_bf16, entries <name>_bf16). bf16 needs
// compute_80, so only the _bf16 modules include cuda_bf16.h.
#pragma once

#ifdef GPUBENCH_BF16
#include <cuda_bf16.h>
#endif

__device__ __forceinline__ float to_float(float x) { return x; }

// from_float<S>(v) is v stored as an S.
template <typename S>
__device__ __forceinline__ S from_float(float v);

template <>
__device__ __forceinline__ float from_float<float>(float v) {
    return v;
}

// is_aligned16 tells whether p can be read as one 16-byte vector.
__device__ __forceinline__ bool is_aligned16(const void* p) {
    return (reinterpret_cast<size_t>(p) & 15) == 0;
}

// Pack<S> is the 16 bytes one vector load or store moves (4 floats or 8
// bf16s), held widened to N floats; load and store move the i-th vector
// from p, which must be 16-byte aligned. LOG2N is log2(N).
template <typename S>
struct Pack;

template <>
struct Pack<float> {
    static constexpr int N = 4;
    static constexpr int LOG2N = 2;
    float v[N];
    __device__ __forceinline__ void load(const float* p, int i) {
        const float4 x = reinterpret_cast<const float4*>(p)[i];
        v[0] = x.x;
        v[1] = x.y;
        v[2] = x.z;
        v[3] = x.w;
    }
    __device__ __forceinline__ void store(float* p, int i) const {
        reinterpret_cast<float4*>(p)[i] = make_float4(v[0], v[1], v[2], v[3]);
    }
};

#ifdef GPUBENCH_BF16
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

// A bf16 is the upper half of the float of the same value, so widening is
// a shift; the element at the lower address is the word's lower half.
template <>
struct Pack<__nv_bfloat16> {
    static constexpr int N = 8;
    static constexpr int LOG2N = 3;
    float v[N];
    __device__ __forceinline__ void load(const __nv_bfloat16* p, int i) {
        const uint4 x = reinterpret_cast<const uint4*>(p)[i];
        const unsigned w[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            v[2 * k] = __uint_as_float(w[k] << 16);
            v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
        }
    }
    __device__ __forceinline__ void store(__nv_bfloat16* p, int i) const {
        unsigned w[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]); // .x is the lower half
            w[k] = *reinterpret_cast<const unsigned*>(&h);
        }
        reinterpret_cast<uint4*>(p)[i] = make_uint4(w[0], w[1], w[2], w[3]);
    }
};
#endif

// binary_t applies f, a float function of two floats, to (a[i], b[i])
// into out[i] for i < n: the elementwise kernels' one loop. It moves
// 16-byte vectors when every pointer is aligned (a uniform branch over the
// grid, so it never diverges) and the tail of fewer than a vector element
// by element; grid-stride, so any grid covers any n. out may equal a or b
// (in place: each element is read and written by the same thread), and b
// may be a (unary operations pass the input twice and ignore the second).
template <typename S, typename F>
__device__ __forceinline__ void binary_t(S* out, const S* a, const S* b, int n, F f) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    const int stride = gridDim.x * blockDim.x;
    int done = 0;
    if (is_aligned16(out) && is_aligned16(a) && is_aligned16(b)) {
        const int nv = n >> Pack<S>::LOG2N;
        for (int i = tid; i < nv; i += stride) {
            Pack<S> x, y;
            x.load(a, i);
            y.load(b, i);
#pragma unroll
            for (int k = 0; k < Pack<S>::N; k++) x.v[k] = f(x.v[k], y.v[k]);
            x.store(out, i);
        }
        done = nv << Pack<S>::LOG2N;
    }
    for (int i = done + tid; i < n; i += stride) out[i] = from_float<S>(f(to_float(a[i]), to_float(b[i])));
}
