// encoder.cu: the embedding layer of the GPT-2 model.
//
// Forward: out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:], out (B,T,C).
// Backward: both embedding gradients are ACCUMULATED (+=), as in llm.c:
//   dwpe[t,:] += sum over b of dout[b,t,:]         (encoder_backward_wpe)
//   dwte[v,:] += sum over positions p with tokens[p] == v of dout[p,:]
//                                                  (encoder_backward_wte)
// The lm head's matmul backward writes dwte first (the weights are tied) and
// encoder_backward_wte adds the embedding's part on top.
//
// Neither backward uses atomics: each output element is summed by exactly one
// thread (or one block, in a fixed tree), so results are bitwise repeatable.
//
// The kernels are templates over the storage type S of every tensor but the
// int32 ids (elem.cuh): this file's entries store floats, those of
// encoder_bf16.cu (which includes it) bf16s, suffixed _bf16. Sums are in
// float; an accumulated gradient is read, added to in float and rounded
// once.
#include "common.cuh"
#include "elem.cuh"

// encoder_forward: one thread per output element, or per 16-byte vector
// (4 floats, 8 bf16s) when C is a multiple of the vector and every pointer
// is 16-byte aligned (a row of wte or wpe then starts on a vector boundary
// too). The choice is uniform over the grid, so there is no divergence. The
// grid-stride loops cover any grid size.
template <typename S>
__device__ __forceinline__ void encoder_forward_t(S* out, const int* tokens, const S* wte, const S* wpe,
                                                  int B, int T, int C) {
    const int N = B * T;
    const int stride = gridDim.x * blockDim.x;
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    if ((C & (Pack<S>::N - 1)) == 0 && is_aligned16(out) && is_aligned16(wte) && is_aligned16(wpe)) {
        const int CV = C >> Pack<S>::LOG2N;
        const int total = N * CV; // < 2^31: N*C is validated
        for (int i = tid; i < total; i += stride) {
            const int n = i / CV;
            const int cv = i - n * CV;
            const int t = n % T;
            const int tok = tokens[n];
            Pack<S> we, pe;
            we.load(wte + tok * C, cv);
            pe.load(wpe + t * C, cv);
#pragma unroll
            for (int k = 0; k < Pack<S>::N; k++) we.v[k] += pe.v[k];
            we.store(out + n * C, cv);
        }
    } else {
        const int total = N * C;
        for (int i = tid; i < total; i += stride) {
            const int n = i / C;
            const int c = i - n * C;
            const int t = n % T;
            out[i] = from_float<S>(to_float(wte[tokens[n] * C + c]) + to_float(wpe[t * C + c]));
        }
    }
}

// encoder_backward_wpe: one thread per (t, c) sums over b in increasing
// order, starting from the current dwpe value, which is exactly the order of
// the reference's accumulation. Consecutive threads take consecutive c, so
// every load of dout is coalesced.
template <typename S>
__device__ __forceinline__ void encoder_backward_wpe_t(S* dwpe, const S* dout, int B, int T, int C) {
    const int total = T * C;
    const int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        float acc = to_float(dwpe[i]);
        for (int b = 0; b < B; b++) {
            acc += to_float(dout[b * total + i]); // dout[b,t,c] with i = t*C + c
        }
        dwpe[i] = from_float<S>(acc);
    }
}

// WTE_WARPS warps split one bucket's positions; WTE_COLS columns per block
// (each lane owns WTE_COLS/32 of them, 32 apart, so each warp load is one
// coalesced row segment whatever C's alignment).
#define WTE_WARPS 4
#define WTE_COLS 128
#define WTE_PER_LANE (WTE_COLS / WARP_SIZE)

// encoder_backward_wte sums dout over the positions of each token.
//
// A scatter-add with float atomics would be the obvious kernel, but its
// summation order would change from run to run. Instead the host groups the
// positions by token once per batch (internal/buckets; the tokens are fixed
// for a run): order lists the positions bucket by bucket (increasing within
// a bucket), bucket k covers order[seg_start[k] .. seg_start[k+1]) and
// belongs to token seg_token[k]. Every dwte row is then owned by exactly one
// bucket, so the kernel needs no atomics at all.
//
// Grid (num_buckets, ceil(C / 128)), block 128 = 4 warps. Block (k, j) owns
// columns [128j, 128j+128) of dwte[seg_token[k]]. Warp w sums positions
// w, w+4, w+8, ... of the bucket, so a frequent token's long bucket is split
// four ways; then thread x adds the four warp partials of its column in warp
// order and adds the result to dwte. Everything is in a fixed order, so the
// result is bitwise repeatable. The host puts the longest buckets first so
// that they start first and the short ones fill in around them.
template <typename S>
__device__ __forceinline__ void encoder_backward_wte_t(S* dwte, const S* dout, const int* order,
                                                       const int* seg_start, const int* seg_token,
                                                       int num_buckets, int C) {
    __shared__ float partial[WTE_WARPS][WTE_COLS];
    const int bucket = blockIdx.x;
    if (bucket >= num_buckets) return; // uniform over the block
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    const int c0 = blockIdx.y * WTE_COLS;
    const int start = seg_start[bucket];
    const int end = seg_start[bucket + 1];

    float acc[WTE_PER_LANE];
#pragma unroll
    for (int j = 0; j < WTE_PER_LANE; j++) acc[j] = 0.0f;
    for (int i = start + warp; i < end; i += WTE_WARPS) {
        const S* row = dout + order[i] * C;
#pragma unroll
        for (int j = 0; j < WTE_PER_LANE; j++) {
            const int c = c0 + lane + j * WARP_SIZE;
            if (c < C) acc[j] += to_float(row[c]);
        }
    }
#pragma unroll
    for (int j = 0; j < WTE_PER_LANE; j++) partial[warp][lane + j * WARP_SIZE] = acc[j];
    __syncthreads();

    // blockDim.x == WTE_COLS: thread x finishes column c0 + x.
    const int c = c0 + threadIdx.x;
    if (c < C) {
        float sum = partial[0][threadIdx.x];
#pragma unroll
        for (int w = 1; w < WTE_WARPS; w++) sum += partial[w][threadIdx.x];
        S* d = dwte + seg_token[bucket] * C + c;
        *d = from_float<S>(to_float(*d) + sum);
    }
}

#ifndef GPUBENCH_BF16
extern "C" __global__ void encoder_forward(float* out, const int* tokens, const float* wte,
                                           const float* wpe, int B, int T, int C) {
    encoder_forward_t(out, tokens, wte, wpe, B, T, C);
}
extern "C" __global__ void encoder_backward_wpe(float* dwpe, const float* dout, int B, int T, int C) {
    encoder_backward_wpe_t(dwpe, dout, B, T, C);
}
extern "C" __global__ void encoder_backward_wte(float* dwte, const float* dout, const int* order,
                                                const int* seg_start, const int* seg_token,
                                                int num_buckets, int C) {
    encoder_backward_wte_t(dwte, dout, order, seg_start, seg_token, num_buckets, C);
}
#else
extern "C" __global__ void encoder_forward_bf16(__nv_bfloat16* out, const int* tokens, const __nv_bfloat16* wte,
                                                const __nv_bfloat16* wpe, int B, int T, int C) {
    encoder_forward_t(out, tokens, wte, wpe, B, T, C);
}
extern "C" __global__ void encoder_backward_wpe_bf16(__nv_bfloat16* dwpe, const __nv_bfloat16* dout, int B, int T,
                                                     int C) {
    encoder_backward_wpe_t(dwpe, dout, B, T, C);
}
extern "C" __global__ void encoder_backward_wte_bf16(__nv_bfloat16* dwte, const __nv_bfloat16* dout,
                                                     const int* order, const int* seg_start,
                                                     const int* seg_token, int num_buckets, int C) {
    encoder_backward_wte_t(dwte, dout, order, seg_start, seg_token, num_buckets, C);
}
#endif
