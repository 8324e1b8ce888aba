// decode_attention.cu: the attention of one new token per sequence against
// a KV cache (the decode step of generation), flash-decoding style.
//
// For each sequence b and query head h (key/value head g = h/(NH/NKV)):
//   out[b, h] = softmax(q·kᵀ/sqrt(hs))·v over the cache positions 0..pos,
// q the first NH·hs columns of the decode step's qkv row b (rows of
// (NH+2·NKV)·hs, already rotated), k and v rows t of kcache and vcache
// (B, MaxT, NKV·hs), whose positions 0..pos (the new token's own included)
// are valid. Nothing past pos is read.
//
//   decode_attention_split    each block: one sequence, one kv head, up to
//                             DEC_HEADS of its query heads, one chunk of
//                             positions; writes the chunk's max, sum and
//                             unnormalised output to scratch (f32).
//   decode_attention_combine  each block: one (b, h); merges the splits in
//                             split order and OVERWRITES out (B, NH·hs).
//
// Why split: at decode one query row a head leaves B·NH (or B·NKV) blocks,
// too few to keep 132 SMs' loads in flight at a small batch, and each
// would stream the whole cache alone. Cutting the positions into chunks
// gives B·NKV·splits blocks; the launcher (kernels/decode_attention.go)
// picks the split count from the shape and the SM count. The combine is a
// second launch, not atomics, so the result does not depend on which split
// finishes first: deterministic.
//
// The step is bound by the cache's bandwidth: each k and v row is read
// once per block, and a block serves every query head of the kv head's
// group (up to DEC_HEADS; larger groups take several blocks, each reading
// the rows again, mostly from L2 as they run side by side), so under GQA
// the cache is read once, not NH/NKV times.
//
// Inside a block. DEC_LPR consecutive lanes hold one cache row, each lane
// CPL = DEC_MAX_HS/DEC_LPR elements of it in CPL·sizeof(S)/16 16-byte
// chunks (chunk c + DEC_LPR·j; chunks past hs are zeros), so a warp works on
// WARP_SIZE/DEC_LPR rows at once and one warp load instruction reads whole
// 128-byte lines of DEC_LPR·16 bytes of each row. The 16 row slots of the
// block take positions slot, slot+16, ..., DEC_UNROLL rows a slot in
// flight before any arithmetic. Three phases:
//   1. scores: s = q·k·scale·log2(e) (q pre-scaled, held in registers),
//      summed over the row's DEC_LPR lanes by a fixed xor butterfly, into
//      shared memory (one row of chunk floats a head);
//   2. per head: m = max s, p = 2^(s−m) in place, l = Σ p (one warp a head,
//      fixed-order warp reductions);
//   3. o = Σ p·v in registers, then the slots of a warp meet in a xor
//      butterfly and the warps in shared memory, in warp order.
// Two passes over the chunk (k, then v) instead of an online softmax: no
// rescaling of the output per row, and the scores of a chunk fit in shared
// memory (the launcher bounds the chunk).
//
// The kernels are templates over the storage type S of qkv, the caches and
// out (elem.cuh): this file's entries are f32, those of
// decode_attention_bf16.cu (which includes it) bf16, suffixed _bf16. The
// scratch and all arithmetic are f32 in both; bf16 is plain FMA, as the
// step is bandwidth-bound. Rows must be 16-byte aligned: hs a multiple of
// 16/sizeof(S) and the views' offsets too (the launcher checks).
#include "common.cuh"
#include "elem.cuh"

// The block of decode_attention_split: 4 warps.
#define DEC_THREADS 128
#define DEC_WARPS (DEC_THREADS / WARP_SIZE)
// The query heads one block serves (one kv head's group, or a part of it).
#define DEC_HEADS 4
// Lanes that share one cache row, and the row slots of a warp and a block.
#define DEC_LPR 8
#define DEC_ROWS_PER_WARP (WARP_SIZE / DEC_LPR)
#define DEC_SLOTS (DEC_WARPS * DEC_ROWS_PER_WARP)
// Rows each slot loads before it computes (loads in flight).
#define DEC_UNROLL 4
// The largest head size: a lane holds DEC_MAX_HS/DEC_LPR = 16 elements of
// a row, whatever S, so one instantiation serves every head size and its
// registers are those of hs = 128 (a kernel's register count is the
// maximum over all its code; a second, wider instantiation in the same
// entry would cost hs = 128 its occupancy).
#define DEC_MAX_HS 128
// Blocks an SM must hold: the bf16 build fits 128 registers without
// spilling (4 blocks, 16 warps an SM); the f32 one, whose 16 elements a
// lane take twice the raw registers, does not, and is left unbounded.
#ifdef GPUBENCH_BF16
#define DEC_MIN_BLOCKS 4
#else
#define DEC_MIN_BLOCKS 1
#endif

// load16 reads one 16-byte chunk of a row as 4 raw words (4 floats or 8
// bf16s), through the read-only path: nothing writes the caches or qkv
// while the kernel runs. widen turns the words into 16/sizeof(S) floats.
__device__ __forceinline__ uint4 load16(const void* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }

__device__ __forceinline__ void widen(const uint4& w, float (&v)[4]) {
    v[0] = __uint_as_float(w.x);
    v[1] = __uint_as_float(w.y);
    v[2] = __uint_as_float(w.z);
    v[3] = __uint_as_float(w.w);
}

// A bf16 is the upper half of the float of the same value; the element at
// the lower address is the word's lower half.
__device__ __forceinline__ void widen(const uint4& w, float (&v)[8]) {
    const unsigned u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        v[2 * k] = __uint_as_float(u[k] << 16);
        v[2 * k + 1] = __uint_as_float(u[k] & 0xffff0000u);
    }
}

// row8_sum adds v over the DEC_LPR = 8 lanes of a row, every lane getting
// the same bits (float addition is commutative).
__device__ __forceinline__ float row8_sum(float v) {
    v += __shfl_xor_sync(0xffffffff, v, 4);
    v += __shfl_xor_sync(0xffffffff, v, 2);
    return v + __shfl_xor_sync(0xffffffff, v, 1);
}
static_assert(DEC_LPR == 8, "row8_sum reduces 8 lanes");
static_assert(DEC_ROWS_PER_WARP == 4, "the slot butterfly of phase 3 crosses lane bits 3 and 4");

// The scratch of a launch with `splits` splits: o (B·NH, splits, hs), then
// m (B·NH, splits), then l (B·NH, splits); kernels/decode_attention.go
// sizes it.

template <typename S>
__device__ __forceinline__ void decode_split(float* __restrict__ scratch, const S* __restrict__ qkv,
                                             const S* __restrict__ kcache, const S* __restrict__ vcache, int B,
                                             int pos, int NH, int NKV, int hs, int MaxT, int splits, int chunk) {
    constexpr int VEC = 16 / sizeof(S);          // elements of a 16-byte chunk
    constexpr int E = DEC_MAX_HS / DEC_LPR;      // elements of a row one lane holds
    constexpr int CPL = E / VEC;                 // its chunks
    static_assert(CPL * VEC * DEC_LPR == DEC_MAX_HS, "whole chunks a lane");
    extern __shared__ __align__(16) float smem[];
    float* ms = smem;               // [DEC_HEADS] chunk max of each head
    float* ls = ms + DEC_HEADS;     // [DEC_HEADS] chunk sum
    float* sc = ls + DEC_HEADS;     // [nh][chunk] scores, then probabilities
    float* red = sc;                // [DEC_WARPS][nh][hs] after phase 3

    const int group = NH / NKV, hchunks = (group + DEC_HEADS - 1) / DEC_HEADS;
    // The head chunks of one split are neighbours in launch order, so a
    // group larger than DEC_HEADS reads each row from L2 after the first.
    const int split = blockIdx.x / hchunks, hc = blockIdx.x % hchunks;
    const int g = blockIdx.y, b = blockIdx.z;
    const int h0 = g * group + hc * DEC_HEADS, nh = min(DEC_HEADS, group - hc * DEC_HEADS);
    const int t0 = split * chunk, n = min(chunk, pos + 1 - t0); // n >= 1: the launcher makes no empty split
    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    const int slot = warp * DEC_ROWS_PER_WARP + lane / DEC_LPR, c = lane % DEC_LPR;
    const int nch = hs / VEC;
    const long long KV = static_cast<long long>(NKV) * hs;
    const S* krow = kcache + (static_cast<long long>(b) * MaxT + t0) * KV + g * hs;
    const S* vrow = vcache + (static_cast<long long>(b) * MaxT + t0) * KV + g * hs;
    const float sl2 = 1.4426950408889634f / sqrtf((float)hs); // scale·log2(e): scores in base 2

    // This lane's chunks of each head's query, pre-scaled.
    float q[DEC_HEADS][E];
    const S* qrow = qkv + static_cast<long long>(b) * (NH + 2 * NKV) * hs + h0 * hs;
#pragma unroll
    for (int h = 0; h < DEC_HEADS; h++)
#pragma unroll
        for (int j = 0; j < CPL; j++) {
            const int ch = c + DEC_LPR * j;
            float v[VEC];
            widen(h < nh && ch < nch ? load16(qrow + h * hs + ch * VEC) : make_uint4(0, 0, 0, 0), v);
#pragma unroll
            for (int e = 0; e < VEC; e++) q[h][j * VEC + e] = v[e] * sl2;
        }

    // 1. Scores. The loop bounds are uniform over the block, so every lane
    // takes part in the butterflies; rows past n load zeros and store nothing.
    for (int base = 0; base < n; base += DEC_SLOTS * DEC_UNROLL) {
        uint4 raw[DEC_UNROLL][CPL];
#pragma unroll
        for (int u = 0; u < DEC_UNROLL; u++) {
            const int t = base + slot + DEC_SLOTS * u;
#pragma unroll
            for (int j = 0; j < CPL; j++) {
                const int ch = c + DEC_LPR * j;
                raw[u][j] = t < n && ch < nch ? load16(krow + t * KV + ch * VEC) : make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int u = 0; u < DEC_UNROLL; u++) {
            const int t = base + slot + DEC_SLOTS * u;
            float k[E];
#pragma unroll
            for (int j = 0; j < CPL; j++) {
                float v[VEC];
                widen(raw[u][j], v);
#pragma unroll
                for (int e = 0; e < VEC; e++) k[j * VEC + e] = v[e];
            }
#pragma unroll
            for (int h = 0; h < DEC_HEADS; h++) {
                if (h >= nh) break; // uniform
                float d = 0.0f;
#pragma unroll
                for (int e = 0; e < E; e++) d = fmaf(q[h][e], k[e], d);
                d = row8_sum(d);
                if (c == 0 && t < n) sc[h * chunk + t] = d;
            }
        }
    }
    __syncthreads();

    // 2. Softmax statistics of the chunk, one warp a head.
    for (int h = warp; h < nh; h += DEC_WARPS) {
        float* s = sc + h * chunk;
        float m = -INFINITY;
        for (int t = lane; t < n; t += WARP_SIZE) m = fmaxf(m, s[t]);
        m = warp_max(m);
        float l = 0.0f;
        for (int t = lane; t < n; t += WARP_SIZE) {
            const float p = exp2f(s[t] - m);
            s[t] = p;
            l += p;
        }
        l = warp_sum(l);
        if (lane == 0) {
            ms[h] = m;
            ls[h] = l;
        }
    }
    __syncthreads();

    // 3. o = Σ p·v over the slot's rows.
    float o[DEC_HEADS][E];
#pragma unroll
    for (int h = 0; h < DEC_HEADS; h++)
#pragma unroll
        for (int e = 0; e < E; e++) o[h][e] = 0.0f;
    for (int base = 0; base < n; base += DEC_SLOTS * DEC_UNROLL) {
        uint4 raw[DEC_UNROLL][CPL];
#pragma unroll
        for (int u = 0; u < DEC_UNROLL; u++) {
            const int t = base + slot + DEC_SLOTS * u;
#pragma unroll
            for (int j = 0; j < CPL; j++) {
                const int ch = c + DEC_LPR * j;
                raw[u][j] = t < n && ch < nch ? load16(vrow + t * KV + ch * VEC) : make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int u = 0; u < DEC_UNROLL; u++) {
            const int t = base + slot + DEC_SLOTS * u;
            if (t >= n) break; // the scores past n are stale; nothing below shuffles
            float v[E];
#pragma unroll
            for (int j = 0; j < CPL; j++) {
                float w[VEC];
                widen(raw[u][j], w);
#pragma unroll
                for (int e = 0; e < VEC; e++) v[j * VEC + e] = w[e];
            }
#pragma unroll
            for (int h = 0; h < DEC_HEADS; h++) {
                if (h >= nh) break;
                const float p = sc[h * chunk + t];
#pragma unroll
                for (int e = 0; e < E; e++) o[h][e] = fmaf(p, v[e], o[h][e]);
            }
        }
    }
    // The warp's 4 slots (lane bits 3 and 4) meet in a fixed butterfly.
#pragma unroll
    for (int h = 0; h < DEC_HEADS; h++)
#pragma unroll
        for (int e = 0; e < E; e++) {
            o[h][e] += __shfl_xor_sync(0xffffffff, o[h][e], 8);
            o[h][e] += __shfl_xor_sync(0xffffffff, o[h][e], 16);
        }
    __syncthreads(); // every warp is done with sc, which red aliases
    if (lane < DEC_LPR) {
#pragma unroll
        for (int h = 0; h < DEC_HEADS; h++) {
            if (h >= nh) break;
#pragma unroll
            for (int j = 0; j < CPL; j++) {
                const int ch = c + DEC_LPR * j;
                if (ch >= nch) continue;
#pragma unroll
                for (int e = 0; e < VEC; e++) red[(warp * nh + h) * hs + ch * VEC + e] = o[h][j * VEC + e];
            }
        }
    }
    __syncthreads();

    // The warps in order, then the split's partial to scratch.
    const long long rows = static_cast<long long>(B) * NH * splits;
    for (int i = threadIdx.x; i < nh * hs; i += DEC_THREADS) {
        const int h = i / hs, d = i % hs;
        float acc = red[h * hs + d];
#pragma unroll
        for (int w = 1; w < DEC_WARPS; w++) acc += red[(w * nh + h) * hs + d];
        scratch[((static_cast<long long>(b) * NH + h0 + h) * splits + split) * hs + d] = acc;
    }
    if (threadIdx.x < nh) {
        const long long at = (static_cast<long long>(b) * NH + h0 + threadIdx.x) * splits + split;
        scratch[rows * hs + at] = ms[threadIdx.x];
        scratch[rows * (hs + 1) + at] = ls[threadIdx.x];
    }
}


// decode_attention_combine: grid B·NH, any block of whole warps (the
// launcher's choice). For (b, h) = (blockIdx.x / NH, blockIdx.x % NH):
// M = max_s m_s, L = Σ_s l_s·2^(m_s−M), out = Σ_s o_s·2^(m_s−M) / L, the
// sums in split order.
template <typename S>
__device__ __forceinline__ void decode_combine(S* __restrict__ out, const float* __restrict__ scratch, int B, int NH,
                                               int hs, int splits) {
    const long long rows = static_cast<long long>(B) * NH * splits;
    const long long bh = blockIdx.x;
    const float* o = scratch + bh * splits * hs;
    const float* m = scratch + rows * hs + bh * splits;
    const float* l = scratch + rows * (hs + 1) + bh * splits;
    float M = -INFINITY;
    for (int s = 0; s < splits; s++) M = fmaxf(M, m[s]);
    float L = 0.0f;
    for (int s = 0; s < splits; s++) L = fmaf(l[s], exp2f(m[s] - M), L);
    const float inv = 1.0f / L;
    for (int d = threadIdx.x; d < hs; d += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < splits; s++) acc = fmaf(o[s * hs + d], exp2f(m[s] - M), acc);
        out[bh * hs + d] = from_float<S>(acc * inv);
    }
}

// decode_attention_split: grid (splits·ceil(G/DEC_HEADS), NKV, B), G =
// NH/NKV, DEC_THREADS threads, dynamic shared memory of
// 2·DEC_HEADS + max(nh·chunk, DEC_WARPS·nh·hs) floats (nh = min(G,
// DEC_HEADS)). Split s covers positions s·chunk .. min((s+1)·chunk, pos+1)−1.
// hs <= DEC_MAX_HS, a multiple of 16/sizeof(S).
#ifndef GPUBENCH_BF16
extern "C" __global__ void __launch_bounds__(DEC_THREADS, DEC_MIN_BLOCKS)
    decode_attention_split(float* scratch, const float* qkv, const float* kcache, const float* vcache, int B, int pos,
                           int NH, int NKV, int hs, int MaxT, int splits, int chunk) {
    decode_split<float>(scratch, qkv, kcache, vcache, B, pos, NH, NKV, hs, MaxT, splits, chunk);
}
extern "C" __global__ void decode_attention_combine(float* out, const float* scratch, int B, int NH, int hs,
                                                    int splits) {
    decode_combine<float>(out, scratch, B, NH, hs, splits);
}
#else
extern "C" __global__ void __launch_bounds__(DEC_THREADS, DEC_MIN_BLOCKS)
    decode_attention_split_bf16(float* scratch, const __nv_bfloat16* qkv, const __nv_bfloat16* kcache,
                                const __nv_bfloat16* vcache, int B, int pos, int NH, int NKV, int hs, int MaxT,
                                int splits, int chunk) {
    decode_split<__nv_bfloat16>(scratch, qkv, kcache, vcache, B, pos, NH, NKV, hs, MaxT, splits, chunk);
}
extern "C" __global__ void decode_attention_combine_bf16(__nv_bfloat16* out, const float* scratch, int B, int NH,
                                                         int hs, int splits) {
    decode_combine<__nv_bfloat16>(out, scratch, B, NH, hs, splits);
}
#endif
