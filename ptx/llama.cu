// llama.cu: the layers LLaMA has and GPT-2 has not, and the two small
// kernels of token generation. N = B·T rows throughout.
//
// embedding_forward: out[n,:] = wte[tokens[n],:] (no position table: the
//   positions enter through RoPE).
// rmsnorm_forward: rstd = 1/sqrt(mean_c(x²) + eps), out = x·rstd·w; rstd (N)
//   is saved for the backward.
// rmsnorm_backward_input / _params, with norm = x·rstd and dnorm = w·dout:
//   dinp += (dnorm − norm·mean_c(dnorm·norm))·rstd   (ACCUMULATED: dinp is
//           the residual stream's gradient)
//   dw    = Σ_n dout·norm                            (OVERWRITTEN)
//   as layernorm.cu's backward: partial column sums per chunk of
//   RMS_BWD_ROWS rows into a scratch buffer, added in a fixed order by the
//   second kernel. No atomics: every result is bitwise repeatable.
// rope_forward / rope_backward: rotary position embeddings on the packed
//   rows of qkv, [q (NH·hs) | k (NKV·hs) | v (NKV·hs)], in place. The pair
//   (x[2i], x[2i+1]) of every q and k head of row (b,t) turns by the angle
//   (pos0+t)·theta^(−2i/hs) (Meta's interleaved pairs, model/ref.RopeRotate);
//   the backward turns the gradient back by the opposite angle. The forward
//   can also write the rotated k and the v of each row into a KV cache.
// swiglu_forward / swiglu_backward: the gate of the SwiGLU MLP on rows
//   [h1 (H) | h3 (H)] of the packed w13 product: out = silu(h1)·h3, and
//   dh1 = silu'(h1)·h3·dout, dh3 = silu(h1)·dout (OVERWRITTEN).
// argmax: the index of each row's largest logit, the greedy next token.
// gather_rows: out[b,:] = inp[b·T + t,:], one position of each sequence.
//
// The kernels are templates over the storage type S of the tensors
// (elem.cuh): this file's entries store floats, those of llama_bf16.cu
// (which includes it) bf16s, suffixed _bf16. rstd and the partials are
// floats and the ids ints in both; all arithmetic is in float (RoPE's angle
// in double, see rope_angle), and each stored S is rounded once.
#include "common.cuh"
#include "elem.cuh"

// ---------------------------------------------------------------------------
// Row copies: embedding_forward and gather_rows.

// copy_rows: out[n,:] = src[r(n),:] for n < N, where r(n) = tokens[n] when
// tokens is non-null, else n·T + t. A pure copy: the bits move as they
// are, 16 bytes a thread when C·sizeof(S) is a multiple of 16 and both
// pointers are 16-byte aligned (a uniform branch; every row then starts on
// a vector boundary), one element a thread otherwise. Grid-stride loops
// cover any grid.
template <typename S>
__device__ __forceinline__ void copy_rows_t(S* out, const S* src, const int* tokens, int N, int C, int T, int t) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    const int stride = gridDim.x * blockDim.x;
    constexpr int per = 16 / sizeof(S);
    if (C % per == 0 && is_aligned16(out) && is_aligned16(src)) {
        const int CV = C / per;
        const int total = N * CV;
        for (int i = tid; i < total; i += stride) {
            const int n = i / CV;
            const int cv = i - n * CV;
            const int r = tokens != nullptr ? tokens[n] : n * T + t;
            reinterpret_cast<uint4*>(out + n * C)[cv] = reinterpret_cast<const uint4*>(src + r * C)[cv];
        }
    } else {
        const int total = N * C;
        for (int i = tid; i < total; i += stride) {
            const int n = i / C;
            const int c = i - n * C;
            const int r = tokens != nullptr ? tokens[n] : n * T + t;
            out[i] = src[r * C + c];
        }
    }
}

// ---------------------------------------------------------------------------
// RMSNorm.

// rmsnorm_forward: blockDim.x threads per row (a multiple of WARP_SIZE, up
// to 1024), blockDim.y rows per block. Prefill launches a warp or two a
// row, so the statistics need few block syncs; decode (a handful of rows)
// spreads each row over up to 1024 threads, so that its few blocks still
// keep many loads in flight. The launcher picks the shape
// (kernels.rmsNormShape); the warps of a row add their shuffle sums in warp
// order, so the bits depend on the shape, which the launcher derives from
// N and C alone. The second pass over the row hits L1 or L2. rstd may be
// null.
template <typename S>
__device__ __forceinline__ void rmsnorm_forward_t(S* out, float* rstd, const S* inp, const S* weight, int N, int C,
                                                  float eps) {
    __shared__ float partial[WARP_SIZE]; // one sum per warp; a block has at most 32 warps
    const int tx = threadIdx.x;
    const int tpr = blockDim.x;
    const int wpr = tpr / WARP_SIZE; // warps per row
    const int row = blockIdx.x * blockDim.y + threadIdx.y;
    const bool active = row < N; // no early return: the block syncs below
    const bool vec = (C & (Pack<S>::N - 1)) == 0 && is_aligned16(out) && is_aligned16(inp) && is_aligned16(weight);
    const S* x = inp + (active ? row : 0) * C;

    float sq = 0.0f;
    if (active) {
        if (vec) {
            const int CV = C >> Pack<S>::LOG2N;
            for (int i = tx; i < CV; i += tpr) {
                Pack<S> p;
                p.load(x, i);
#pragma unroll
                for (int k = 0; k < Pack<S>::N; k++) sq += p.v[k] * p.v[k];
            }
        } else {
            for (int c = tx; c < C; c += tpr) {
                const float v = to_float(x[c]);
                sq += v * v;
            }
        }
    }
    sq = warp_sum(sq);
    if (wpr > 1) { // uniform over the block
        float* mine = partial + threadIdx.y * wpr;
        if (tx % WARP_SIZE == 0) mine[tx / WARP_SIZE] = sq;
        __syncthreads();
        sq = mine[0];
        for (int w = 1; w < wpr; w++) sq += mine[w];
    }
    if (!active) return;
    const float s = 1.0f / sqrtf(sq / (float)C + eps); // IEEE sqrt and division, not rsqrtf

    S* o = out + row * C;
    if (vec) {
        const int CV = C >> Pack<S>::LOG2N;
        for (int i = tx; i < CV; i += tpr) {
            Pack<S> p, w;
            p.load(x, i);
            w.load(weight, i);
#pragma unroll
            for (int k = 0; k < Pack<S>::N; k++) p.v[k] = p.v[k] * s * w.v[k];
            p.store(o, i);
        }
    } else {
        for (int c = tx; c < C; c += tpr) o[c] = from_float<S>(to_float(x[c]) * s * to_float(weight[c]));
    }
    if (tx == 0 && rstd != nullptr) rstd[row] = s;
}

// RMS_BWD_ROWS rows make one chunk: one block of rmsnorm_backward_input and
// one row of partial dw sums in the scratch buffer (ceil(N/32)·C floats), as
// LN_BWD_ROWS in layernorm.cu. kernels/llama.go repeats it for the scratch
// size.
#define RMS_BWD_ROWS 32

// rmsnorm_backward_input: block b handles rows [32b, 32b+32), as
// layernorm_backward_input does:
//  1. each warp takes rows (warp, warp+warps, ...) and reduces
//     mean_c(dnorm·norm) over its row with shuffles, into shared memory;
//  2. then thread c walks the chunk's rows in increasing order, updates
//     dinp[n,c] and sums dout·norm for its column (coalesced, fixed order).
// The dw partial of chunk k goes to scratch[k·C + c]. The block must have a
// multiple of 32 threads.
template <typename S>
__device__ __forceinline__ void rmsnorm_backward_input_t(S* dinp, float* scratch, const S* dout, const S* inp,
                                                         const S* weight, const float* rstd, int N, int C) {
    __shared__ float s_rstd[RMS_BWD_ROWS];
    __shared__ float s_dnmean[RMS_BWD_ROWS]; // mean over c of dnorm·norm
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    const int warps = blockDim.x / WARP_SIZE;
    const int chunk = blockIdx.x;
    const int row0 = chunk * RMS_BWD_ROWS;
    if (row0 >= N) return; // uniform over the block
    const int rows = min(RMS_BWD_ROWS, N - row0);

    for (int r = warp; r < rows; r += warps) {
        const int n = row0 + r;
        const float s = rstd[n];
        const S* x = inp + n * C;
        const S* d = dout + n * C;
        float dnsum = 0.0f;
        for (int c = lane; c < C; c += WARP_SIZE) {
            dnsum += to_float(weight[c]) * to_float(d[c]) * (to_float(x[c]) * s);
        }
        dnsum = warp_sum(dnsum);
        if (lane == 0) {
            s_rstd[r] = s;
            s_dnmean[r] = dnsum / (float)C;
        }
    }
    __syncthreads();

    float* pdw = scratch + chunk * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float w = to_float(weight[c]);
        float dw = 0.0f;
        int r = 0;
        // Four rows at a time, all loads first: dinp is written through a
        // pointer the compiler cannot prove distinct from dout and inp, so
        // without the batch every load would wait for the previous store.
        for (; r + 4 <= rows; r += 4) {
            float d[4], x[4], di[4];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const int i = (row0 + r + k) * C + c;
                d[k] = to_float(dout[i]);
                x[k] = to_float(inp[i]);
                di[k] = to_float(dinp[i]);
            }
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const int i = (row0 + r + k) * C + c;
                const float s = s_rstd[r + k];
                const float norm = x[k] * s;
                dinp[i] = from_float<S>(di[k] + (w * d[k] - norm * s_dnmean[r + k]) * s);
                dw += d[k] * norm;
            }
        }
        for (; r < rows; r++) {
            const int i = (row0 + r) * C + c;
            const float dd = to_float(dout[i]);
            const float s = s_rstd[r];
            const float norm = to_float(inp[i]) * s;
            dinp[i] = from_float<S>(to_float(dinp[i]) + (w * dd - norm * s_dnmean[r]) * s);
            dw += dd * norm;
        }
        pdw[c] = dw;
    }
}

// Block shape of rmsnorm_backward_params: 32 columns × 16 chunk slices, as
// layernorm_backward_params.
#define RMS_PARAMS_COLS 32
#define RMS_PARAMS_SLICES 16

// rmsnorm_backward_params: dw[c] = the sum of the chunk partials of
// rmsnorm_backward_input. Thread (x, y) adds chunks y, y+16, ... of column
// x in increasing order, then thread (x, 0) adds the 16 slice sums in slice
// order: a fixed tree, whatever the scheduling.
template <typename S>
__device__ __forceinline__ void rmsnorm_backward_params_t(S* dw, const float* scratch, int N, int C) {
    __shared__ float s_dw[RMS_PARAMS_SLICES][RMS_PARAMS_COLS];
    const int chunks = (N + RMS_BWD_ROWS - 1) / RMS_BWD_ROWS;
    const int x = threadIdx.x;
    const int y = threadIdx.y;
    const int c = blockIdx.x * RMS_PARAMS_COLS + x;
    float a = 0.0f;
    if (c < C) {
        for (int k = y; k < chunks; k += RMS_PARAMS_SLICES) a += scratch[k * C + c];
    }
    s_dw[y][x] = a;
    __syncthreads();
    if (y == 0 && c < C) {
        a = s_dw[0][x];
#pragma unroll
        for (int k = 1; k < RMS_PARAMS_SLICES; k++) a += s_dw[k][x];
        dw[c] = from_float<S>(a);
    }
}

// ---------------------------------------------------------------------------
// RoPE.

// rope_angle returns the sine and cosine of pos·theta^(−2i/hs). The angle
// reaches 8191 radians at llama3's longest contexts, where a float's ulp is
// 5e-4 radians, and theta^(−2i/hs) itself carries the relative error of
// an fp32 exp2 of an argument up to log2(5e5) ≈ 19: either alone would
// turn the result by 1e-3 or more. So the frequency and the angle are
// computed in double and the angle reduced into [−π, π] there; only the
// reduced angle (exact to 1e-12 radians) goes to float for sincosf. One
// double exp2 per pair is cheap next to the pair's memory traffic.
__device__ __forceinline__ void rope_angle(int pos, int i, int hs, double log2_theta, float* sn, float* cs) {
    const double two_pi = 6.283185307179586;
    const double a = (double)pos * exp2(-(double)(2 * i) / (double)hs * log2_theta);
    const double r = a - rint(a * (1.0 / two_pi)) * two_pi;
    sincosf((float)r, sn, cs);
}

// rope_t rotates, in place, every q and k head of the B·T rows of qkv by
// sign·(pos0+t), one thread per pair (the pair's two elements are read and
// written by that thread alone; adjacent threads take adjacent pairs, so
// the accesses coalesce). Grid-stride loops cover any grid. With a KV
// cache (kcache and vcache both non-null, the forward's decode and
// prefill), the thread of a k pair also stores it into cache row
// (b, pos0+t) of kcache (B, MaxT, NKV·hs), and a second loop copies each
// row's v into vcache; the other cache rows are untouched.
template <typename S>
__device__ __forceinline__ void rope_t(S* qkv, S* kcache, S* vcache, int B, int T, int pos0, int NH, int NKV,
                                       int hs, int MaxT, float theta, float sign) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    const int stride = gridDim.x * blockDim.x;
    const int half = hs / 2;
    const int W = (NH + 2 * NKV) * hs;
    const int KV = NKV * hs;
    const int pairs = (NH + NKV) * half; // per row
    const int total = B * T * pairs;
    const double log2_theta = log2((double)theta);
    for (int i = tid; i < total; i += stride) {
        const int row = i / pairs;
        const int j = i - row * pairs;
        const int head = j / half;
        const int p = j - head * half;
        const int t = row % T;
        float sn, cs;
        rope_angle(pos0 + t, p, hs, log2_theta, &sn, &cs);
        sn *= sign;
        S* x = qkv + row * W + head * hs + 2 * p;
        const float x0 = to_float(x[0]), x1 = to_float(x[1]);
        const S y0 = from_float<S>(x0 * cs - x1 * sn);
        const S y1 = from_float<S>(x0 * sn + x1 * cs);
        x[0] = y0;
        x[1] = y1;
        if (kcache != nullptr && head >= NH) {
            S* k = kcache + ((row / T) * MaxT + pos0 + t) * KV + (head - NH) * hs + 2 * p;
            k[0] = y0;
            k[1] = y1;
        }
    }
    if (kcache == nullptr) return;
    const int vtotal = B * T * KV;
    for (int i = tid; i < vtotal; i += stride) {
        const int row = i / KV;
        const int e = i - row * KV;
        vcache[((row / T) * MaxT + pos0 + row % T) * KV + e] = qkv[row * W + (NH + NKV) * hs + e];
    }
}

// ---------------------------------------------------------------------------
// SwiGLU.

// silu_sigmoid is σ(x) = 1/(1 + e^−x) with the accurate expf. For x below
// about −88 e^−x overflows to +inf and σ is 0, which is the limit.
__device__ __forceinline__ float silu_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// swiglu_forward: out[n,j] = silu(h[n,j])·h[n,H+j], one thread per output
// element, or per 16-byte vector (4 floats, 8 bf16s) of it when H is a
// multiple of the vector and the pointers are aligned (every half-row then
// starts on a vector boundary). Grid-stride loops.
template <typename S>
__device__ __forceinline__ void swiglu_forward_t(S* out, const S* h, int N, int H) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    const int stride = gridDim.x * blockDim.x;
    if ((H & (Pack<S>::N - 1)) == 0 && is_aligned16(out) && is_aligned16(h)) {
        const int HV = H >> Pack<S>::LOG2N;
        const int total = N * HV;
        for (int i = tid; i < total; i += stride) {
            const int n = i / HV;
            const int j = i - n * HV;
            Pack<S> a, b;
            a.load(h + n * 2 * H, j);
            b.load(h + n * 2 * H + H, j);
#pragma unroll
            for (int k = 0; k < Pack<S>::N; k++) a.v[k] = a.v[k] * silu_sigmoid(a.v[k]) * b.v[k];
            a.store(out + n * H, j);
        }
    } else {
        const int total = N * H;
        for (int i = tid; i < total; i += stride) {
            const int n = i / H;
            const int j = i - n * H;
            const float a = to_float(h[n * 2 * H + j]);
            out[i] = from_float<S>(a * silu_sigmoid(a) * to_float(h[n * 2 * H + H + j]));
        }
    }
}

// swiglu_backward: dh1 = silu'(h1)·h3·dout, dh3 = silu(h1)·dout, with
// silu'(x) = σ(x)·(1 + x·(1 − σ(x))), laid out as swiglu_forward. dh may be
// h (the model overwrites the saved product with its gradient): a thread
// reads both halves of its elements before it writes either, and no other
// thread touches them.
template <typename S>
__device__ __forceinline__ void swiglu_backward_t(S* dh, const S* dout, const S* h, int N, int H) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    const int stride = gridDim.x * blockDim.x;
    if ((H & (Pack<S>::N - 1)) == 0 && is_aligned16(dh) && is_aligned16(dout) && is_aligned16(h)) {
        const int HV = H >> Pack<S>::LOG2N;
        const int total = N * HV;
        for (int i = tid; i < total; i += stride) {
            const int n = i / HV;
            const int j = i - n * HV;
            Pack<S> a, b, d;
            a.load(h + n * 2 * H, j);
            b.load(h + n * 2 * H + H, j);
            d.load(dout + n * H, j);
#pragma unroll
            for (int k = 0; k < Pack<S>::N; k++) {
                const float x = a.v[k];
                const float sg = silu_sigmoid(x);
                a.v[k] = sg * (1.0f + x * (1.0f - sg)) * b.v[k] * d.v[k];
                b.v[k] = x * sg * d.v[k];
            }
            a.store(dh + n * 2 * H, j);
            b.store(dh + n * 2 * H + H, j);
        }
    } else {
        const int total = N * H;
        for (int i = tid; i < total; i += stride) {
            const int n = i / H;
            const int j = i - n * H;
            const float x = to_float(h[n * 2 * H + j]);
            const float h3 = to_float(h[n * 2 * H + H + j]);
            const float d = to_float(dout[i]);
            const float sg = silu_sigmoid(x);
            dh[n * 2 * H + j] = from_float<S>(sg * (1.0f + x * (1.0f - sg)) * h3 * d);
            dh[n * 2 * H + H + j] = from_float<S>(x * sg * d);
        }
    }
}

// ---------------------------------------------------------------------------
// Argmax.

// ARGMAX_THREADS is the block of argmax: one block per row, 16 bytes a
// thread a load. The shared arrays hold one candidate per warp.
#define ARGMAX_THREADS 1024

// argmax_better tells whether candidate (v, i) beats (bv, bj): a NaN beats
// every number, a larger value a smaller one, and between equal values
// (or two NaNs) the lower index wins. That is a strict total order on
// candidates of distinct indices, so any reduction tree gives the same
// winner: the first NaN if there is one, else the first maximum.
__device__ __forceinline__ bool argmax_better(float v, int i, float bv, int bj) {
    const bool n = isnan(v), bn = isnan(bv);
    if (n || bn) return n && (!bn || i < bj);
    return v > bv || (v == bv && i < bj);
}

// argmax: next[b] = the index of the largest of the first V logits of row
// b (rows ld apart); if generated is non-null, also generated[b·newTokens +
// col] = next[b]. Each thread scans its vectors (every row starts on one
// when ld is a multiple of the vector and logits is aligned) and the tail,
// then the block reduces the candidates with shuffles and shared memory.
template <typename S>
__device__ __forceinline__ void argmax_t(int* next, int* generated, const S* logits, int B, int V, int ld, int col,
                                         int newTokens) {
    __shared__ float s_val[ARGMAX_THREADS / WARP_SIZE];
    __shared__ int s_idx[ARGMAX_THREADS / WARP_SIZE];
    const int b = blockIdx.x;
    if (b >= B) return; // uniform over the block
    const S* x = logits + b * ld;
    float best = -INFINITY;
    int bi = 0x7fffffff; // loses to every real index, so even a row of −inf has a winner
    int done = 0;
    if ((ld & (Pack<S>::N - 1)) == 0 && is_aligned16(logits)) {
        const int nv = V >> Pack<S>::LOG2N;
        for (int i = threadIdx.x; i < nv; i += blockDim.x) {
            Pack<S> p;
            p.load(x, i);
#pragma unroll
            for (int k = 0; k < Pack<S>::N; k++) {
                const int idx = (i << Pack<S>::LOG2N) + k;
                if (argmax_better(p.v[k], idx, best, bi)) {
                    best = p.v[k];
                    bi = idx;
                }
            }
        }
        done = nv << Pack<S>::LOG2N;
    }
    for (int i = done + threadIdx.x; i < V; i += blockDim.x) {
        const float v = to_float(x[i]);
        if (argmax_better(v, i, best, bi)) {
            best = v;
            bi = i;
        }
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffff, best, offset);
        const int oi = __shfl_xor_sync(0xffffffff, bi, offset);
        if (argmax_better(ov, oi, best, bi)) {
            best = ov;
            bi = oi;
        }
    }
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    if (lane == 0) {
        s_val[warp] = best;
        s_idx[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < blockDim.x / WARP_SIZE; w++) {
            if (argmax_better(s_val[w], s_idx[w], best, bi)) {
                best = s_val[w];
                bi = s_idx[w];
            }
        }
        next[b] = bi;
        if (generated != nullptr) generated[b * newTokens + col] = bi;
    }
}

// ---------------------------------------------------------------------------
// Entries.

#ifndef GPUBENCH_BF16
extern "C" __global__ void embedding_forward(float* out, const int* tokens, const float* wte, int N, int C) {
    copy_rows_t(out, wte, tokens, N, C, 0, 0);
}
extern "C" __global__ void gather_rows(float* out, const float* inp, int B, int T, int C, int t) {
    copy_rows_t(out, inp, (const int*)nullptr, B, C, T, t);
}
extern "C" __global__ void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N,
                                           int C, float eps) {
    rmsnorm_forward_t(out, rstd, inp, weight, N, C, eps);
}
extern "C" __global__ void rmsnorm_backward_input(float* dinp, float* scratch, const float* dout, const float* inp,
                                                  const float* weight, const float* rstd, int N, int C) {
    rmsnorm_backward_input_t(dinp, scratch, dout, inp, weight, rstd, N, C);
}
extern "C" __global__ void rmsnorm_backward_params(float* dw, const float* scratch, int N, int C) {
    rmsnorm_backward_params_t(dw, scratch, N, C);
}
extern "C" __global__ void rope_forward(float* qkv, float* kcache, float* vcache, int B, int T, int pos0, int NH,
                                        int NKV, int hs, int MaxT, float theta) {
    rope_t(qkv, kcache, vcache, B, T, pos0, NH, NKV, hs, MaxT, theta, 1.0f);
}
extern "C" __global__ void rope_backward(float* dqkv, int B, int T, int pos0, int NH, int NKV, int hs,
                                         float theta) {
    rope_t(dqkv, (float*)nullptr, (float*)nullptr, B, T, pos0, NH, NKV, hs, 0, theta, -1.0f);
}
extern "C" __global__ void swiglu_forward(float* out, const float* h, int N, int H) {
    swiglu_forward_t(out, h, N, H);
}
extern "C" __global__ void swiglu_backward(float* dh, const float* dout, const float* h, int N, int H) {
    swiglu_backward_t(dh, dout, h, N, H);
}
extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS)
    argmax(int* next, int* generated, const float* logits, int B, int V, int ld, int col, int newTokens) {
    argmax_t(next, generated, logits, B, V, ld, col, newTokens);
}
#else
extern "C" __global__ void embedding_forward_bf16(__nv_bfloat16* out, const int* tokens, const __nv_bfloat16* wte,
                                                  int N, int C) {
    copy_rows_t(out, wte, tokens, N, C, 0, 0);
}
extern "C" __global__ void gather_rows_bf16(__nv_bfloat16* out, const __nv_bfloat16* inp, int B, int T, int C,
                                            int t) {
    copy_rows_t(out, inp, (const int*)nullptr, B, C, T, t);
}
extern "C" __global__ void rmsnorm_forward_bf16(__nv_bfloat16* out, float* rstd, const __nv_bfloat16* inp,
                                                const __nv_bfloat16* weight, int N, int C, float eps) {
    rmsnorm_forward_t(out, rstd, inp, weight, N, C, eps);
}
extern "C" __global__ void rmsnorm_backward_input_bf16(__nv_bfloat16* dinp, float* scratch,
                                                       const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                                                       const __nv_bfloat16* weight, const float* rstd, int N,
                                                       int C) {
    rmsnorm_backward_input_t(dinp, scratch, dout, inp, weight, rstd, N, C);
}
extern "C" __global__ void rmsnorm_backward_params_bf16(__nv_bfloat16* dw, const float* scratch, int N, int C) {
    rmsnorm_backward_params_t(dw, scratch, N, C);
}
extern "C" __global__ void rope_forward_bf16(__nv_bfloat16* qkv, __nv_bfloat16* kcache, __nv_bfloat16* vcache,
                                             int B, int T, int pos0, int NH, int NKV, int hs, int MaxT,
                                             float theta) {
    rope_t(qkv, kcache, vcache, B, T, pos0, NH, NKV, hs, MaxT, theta, 1.0f);
}
extern "C" __global__ void rope_backward_bf16(__nv_bfloat16* dqkv, int B, int T, int pos0, int NH, int NKV, int hs,
                                              float theta) {
    rope_t(dqkv, (__nv_bfloat16*)nullptr, (__nv_bfloat16*)nullptr, B, T, pos0, NH, NKV, hs, 0, theta, -1.0f);
}
extern "C" __global__ void swiglu_forward_bf16(__nv_bfloat16* out, const __nv_bfloat16* h, int N, int H) {
    swiglu_forward_t(out, h, N, H);
}
extern "C" __global__ void swiglu_backward_bf16(__nv_bfloat16* dh, const __nv_bfloat16* dout,
                                                const __nv_bfloat16* h, int N, int H) {
    swiglu_backward_t(dh, dout, h, N, H);
}
extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS)
    argmax_bf16(int* next, int* generated, const __nv_bfloat16* logits, int B, int V, int ld, int col,
                int newTokens) {
    argmax_t(next, generated, logits, B, V, ld, col, newTokens);
}
#endif
