// layernorm.cu: LayerNorm over the C channels of each of N rows.
//
// Forward: mean = Σx/C, var = Σ(x-mean)²/C (biased), rstd = 1/sqrt(var+1e-5),
//   out = (x-mean)·rstd·w + b; mean and rstd (N) are saved for the backward.
// Backward, with norm = (x-mean)·rstd and dnorm = w·dout:
//   dinp += (dnorm - mean_c(dnorm) - norm·mean_c(dnorm·norm))·rstd   (ACCUMULATED:
//           dinp is the residual stream's gradient)
//   dw    = Σ_n dout·norm,  db = Σ_n dout                            (OVERWRITTEN)
// The backward is two launches: layernorm_backward_input writes dinp and,
// per chunk of LN_BWD_ROWS rows, the partial column sums of dw and db into a
// scratch buffer; layernorm_backward_params adds the partials in a fixed
// order. No atomics, so every result is bitwise repeatable.
//
// The kernels are templates over the storage type S of inp, out, weight,
// bias, dout, dinp, dw and db (elem.cuh): this file's entries store floats,
// those of layernorm_bf16.cu (which includes it) bf16s, suffixed _bf16.
// mean, rstd and the partials are floats in both, and all arithmetic is in
// float; each stored S is rounded once (dinp: read, add in float, round).
#include "common.cuh"
#include "elem.cuh"

#define LN_EPS 1e-5f

// layernorm_forward: one warp per row (blockDim.x/32 rows per block), so the
// row statistics need only warp shuffles, no shared memory or block syncs.
// Two passes over the row for the variance (subtract the mean, then square)
// avoid the cancellation of E[x²]-E[x]²; the second and third passes hit L1.
// mean and rstd may be null.
template <typename S>
__device__ __forceinline__ void layernorm_forward_t(S* out, float* mean, float* rstd, const S* inp, const S* weight,
                                                    const S* bias, int N, int C) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int row = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    if (row >= N) return; // the whole warp leaves together; no block syncs follow
    const S* x = inp + row * C;
    S* o = out + row * C;
    // 16-byte vectors (Pack<S>) when every row starts aligned; uniform over
    // the grid. The scalar loop is the fallback for other C.
    const bool vec = (C & (Pack<S>::N - 1)) == 0 && is_aligned16(out) && is_aligned16(inp) &&
                     is_aligned16(weight) && is_aligned16(bias);
    const int nv = C >> Pack<S>::LOG2N;
    float m, s;
    if (vec) {
        float sum = 0.0f;
        for (int i = lane; i < nv; i += WARP_SIZE) {
            Pack<S> v;
            v.load(x, i);
#pragma unroll
            for (int k = 0; k < Pack<S>::N; k++) sum += v.v[k];
        }
        m = warp_sum(sum) / (float)C;
        float sq = 0.0f;
        for (int i = lane; i < nv; i += WARP_SIZE) {
            Pack<S> v;
            v.load(x, i);
#pragma unroll
            for (int k = 0; k < Pack<S>::N; k++) sq += (v.v[k] - m) * (v.v[k] - m);
        }
        s = 1.0f / sqrtf(warp_sum(sq) / (float)C + LN_EPS); // IEEE sqrt and division, not rsqrtf
        for (int i = lane; i < nv; i += WARP_SIZE) {
            Pack<S> v, w, b;
            v.load(x, i);
            w.load(weight, i);
            b.load(bias, i);
#pragma unroll
            for (int k = 0; k < Pack<S>::N; k++) v.v[k] = (v.v[k] - m) * s * w.v[k] + b.v[k];
            v.store(o, i);
        }
    } else {
        float sum = 0.0f;
        for (int c = lane; c < C; c += WARP_SIZE) sum += to_float(x[c]);
        m = warp_sum(sum) / (float)C;

        float sq = 0.0f;
        for (int c = lane; c < C; c += WARP_SIZE) {
            const float d = to_float(x[c]) - m;
            sq += d * d;
        }
        const float var = warp_sum(sq) / (float)C;
        s = 1.0f / sqrtf(var + LN_EPS); // IEEE sqrt and division, not rsqrtf

        for (int c = lane; c < C; c += WARP_SIZE) {
            o[c] = from_float<S>((to_float(x[c]) - m) * s * to_float(weight[c]) + to_float(bias[c]));
        }
    }
    if (lane == 0) {
        if (mean != nullptr) mean[row] = m;
        if (rstd != nullptr) rstd[row] = s;
    }
}

// LN_BWD_ROWS rows make one chunk: one block of layernorm_backward_input and
// one row of partial sums in the scratch buffer. 32 rows keep the scratch
// small (2·ceil(N/32)·C floats) while leaving N/32 blocks of parallelism.
// kernels/layernorm.go repeats this constant for the scratch size.
#define LN_BWD_ROWS 32
// LN_BWD_GROUPS bounds the row groups a block of layernorm_backward_input
// splits a chunk into when its rows are narrow; LN_BWD_SMEM_COLS holds their
// column sums: G·C floats, at most the 256 threads' 8 bf16 columns each.
#define LN_BWD_GROUPS 8
#define LN_BWD_SMEM_COLS 2048

// layernorm_backward_input: block b handles rows [32b, 32b+32).
//  1. Each warp takes rows (warp, warp+8, ...) and reduces mean(dnorm) and
//     mean(dnorm·norm) over its row with shuffles, into shared memory.
//  2. Then the threads go column-parallel: thread c walks the chunk's rows in
//     increasing order, updates dinp[n,c] and sums dout·norm and dout for its
//     column. Consecutive threads take consecutive c, so all loads and stores
//     are coalesced, and the column sums come out in a fixed order.
// Partials go to scratch: dw partials at scratch[chunk·C + c], db partials at
// scratch[(chunks + chunk)·C + c], chunks = ceil(N/32).
// The block must have a multiple of 32 threads.
template <typename S>
__device__ __forceinline__ void layernorm_backward_input_t(S* dinp, float* scratch, const S* dout, const S* inp,
                                                           const S* weight, const float* mean, const float* rstd,
                                                           int N, int C) {
    __shared__ float s_mean[LN_BWD_ROWS];
    __shared__ float s_rstd[LN_BWD_ROWS];
    __shared__ float s_dmean[LN_BWD_ROWS];  // mean over c of dnorm
    __shared__ float s_dnmean[LN_BWD_ROWS]; // mean over c of dnorm·norm
    // The row groups' column sums (vector path, G > 1): G·C ≤ blockDim·N
    // floats each, G·nv ≤ blockDim.
    __shared__ float s_gdw[LN_BWD_SMEM_COLS];
    __shared__ float s_gdb[LN_BWD_SMEM_COLS];
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    const int warps = blockDim.x / WARP_SIZE;
    const int chunk = blockIdx.x;
    const int chunks = (N + LN_BWD_ROWS - 1) / LN_BWD_ROWS;
    const int row0 = chunk * LN_BWD_ROWS;
    if (row0 >= N) return; // uniform over the block
    const int rows = min(LN_BWD_ROWS, N - row0);

    // 16-byte vectors (Pack<S>) when every row starts aligned; uniform over
    // the grid. Scalar loads left the kernel at a third of the bandwidth.
    const bool vec = (C & (Pack<S>::N - 1)) == 0 && is_aligned16(dinp) && is_aligned16(dout) &&
                     is_aligned16(inp) && is_aligned16(weight);
    const int nv = C >> Pack<S>::LOG2N;

    for (int r = warp; r < rows; r += warps) {
        const int n = row0 + r;
        const float m = mean[n];
        const float s = rstd[n];
        const S* x = inp + n * C;
        const S* d = dout + n * C;
        float dsum = 0.0f, dnsum = 0.0f;
        // __fmul_rn: the same rounded dnorm as below, never fused into an
        // FMA there, so that dnorm - mean(dnorm) is exactly 0 when C is 1
        // (rstd ~ 316 would magnify the FMA's residue).
        if (vec) {
            for (int i = lane; i < nv; i += WARP_SIZE) {
                Pack<S> xv, dv, wv;
                xv.load(x, i);
                dv.load(d, i);
                wv.load(weight, i);
#pragma unroll
                for (int k = 0; k < Pack<S>::N; k++) {
                    const float norm = (xv.v[k] - m) * s;
                    const float dn = __fmul_rn(wv.v[k], dv.v[k]);
                    dsum += dn;
                    dnsum += dn * norm;
                }
            }
        } else {
            for (int c = lane; c < C; c += WARP_SIZE) {
                const float norm = (to_float(x[c]) - m) * s;
                const float dn = __fmul_rn(to_float(weight[c]), to_float(d[c]));
                dsum += dn;
                dnsum += dn * norm;
            }
        }
        dsum = warp_sum(dsum);
        dnsum = warp_sum(dnsum);
        if (lane == 0) {
            s_mean[r] = m;
            s_rstd[r] = s;
            s_dmean[r] = dsum / (float)C;
            s_dnmean[r] = dnsum / (float)C;
        }
    }
    __syncthreads();

    float* pdw = scratch + chunk * C;
    float* pdb = scratch + (chunks + chunk) * C;
    if (vec) {
        // Thread (g, i) owns the Pack<S>::N columns of vector i for the
        // rows of group g: the chunk's rows in G contiguous runs, G =
        // blockDim/nv (at most LN_BWD_GROUPS), so that a narrow row (tiny's
        // 128 floats are 32 vectors) still keeps the block's threads busy
        // instead of 32 of them walking all 32 rows. It walks its rows two
        // at a time, all loads first (dinp is written through a pointer the
        // compiler cannot prove distinct from dout and inp, so without the
        // batch every load would wait for the previous store), and the G
        // runs' column sums are then added in group order: a fixed order,
        // whatever the scheduling. Per column, the same operations in the
        // same row order as the scalar path within a run.
        const int G = max(1, min(min(LN_BWD_GROUPS, (int)blockDim.x / max(nv, 1)), LN_BWD_SMEM_COLS / C));
        const int per = (LN_BWD_ROWS + G - 1) / G;
        const int g = threadIdx.x / max(nv, 1);
        const int r_begin = min(g * per, rows), r_end = min(r_begin + per, rows);
        for (int i = G > 1 ? threadIdx.x % nv : threadIdx.x; i < nv && g < G; i += G > 1 ? nv : blockDim.x) {
            Pack<S> w;
            w.load(weight, i);
            float dw[Pack<S>::N], db[Pack<S>::N];
#pragma unroll
            for (int k = 0; k < Pack<S>::N; k++) dw[k] = db[k] = 0.0f;
            int r = G > 1 ? r_begin : 0;
            const int r_stop = G > 1 ? r_end : rows;
            for (; r + 2 <= r_stop; r += 2) {
                Pack<S> d[2], x[2], di[2];
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    const int row = (row0 + r + u) * nv + i;
                    d[u].load(dout, row);
                    x[u].load(inp, row);
                    di[u].load(dinp, row);
                }
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    const float s = s_rstd[r + u];
#pragma unroll
                    for (int k = 0; k < Pack<S>::N; k++) {
                        const float norm = (x[u].v[k] - s_mean[r + u]) * s;
                        di[u].v[k] += (__fmul_rn(w.v[k], d[u].v[k]) - s_dmean[r + u] - norm * s_dnmean[r + u]) * s;
                        dw[k] += d[u].v[k] * norm;
                        db[k] += d[u].v[k];
                    }
                    di[u].store(dinp, (row0 + r + u) * nv + i);
                }
            }
            for (; r < r_stop; r++) {
                Pack<S> d, x, di;
                const int row = (row0 + r) * nv + i;
                d.load(dout, row);
                x.load(inp, row);
                di.load(dinp, row);
                const float s = s_rstd[r];
#pragma unroll
                for (int k = 0; k < Pack<S>::N; k++) {
                    const float norm = (x.v[k] - s_mean[r]) * s;
                    di.v[k] += (__fmul_rn(w.v[k], d.v[k]) - s_dmean[r] - norm * s_dnmean[r]) * s;
                    dw[k] += d.v[k] * norm;
                    db[k] += d.v[k];
                }
                di.store(dinp, row);
            }
            if (G == 1) {
#pragma unroll
                for (int k = 0; k < Pack<S>::N; k++) {
                    pdw[i * Pack<S>::N + k] = dw[k];
                    pdb[i * Pack<S>::N + k] = db[k];
                }
            } else {
#pragma unroll
                for (int k = 0; k < Pack<S>::N; k++) {
                    s_gdw[g * C + i * Pack<S>::N + k] = dw[k];
                    s_gdb[g * C + i * Pack<S>::N + k] = db[k];
                }
            }
        }
        if (G > 1) {
            __syncthreads();
            for (int c = threadIdx.x; c < C; c += blockDim.x) {
                float a = s_gdw[c], b = s_gdb[c];
                for (int h = 1; h < G; h++) {
                    a += s_gdw[h * C + c];
                    b += s_gdb[h * C + c];
                }
                pdw[c] = a;
                pdb[c] = b;
            }
        }
        return;
    }
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float w = to_float(weight[c]);
        float dw = 0.0f, db = 0.0f;
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
                const float norm = (x[k] - s_mean[r + k]) * s;
                dinp[i] = from_float<S>(di[k] + (__fmul_rn(w, d[k]) - s_dmean[r + k] - norm * s_dnmean[r + k]) * s);
                dw += d[k] * norm;
                db += d[k];
            }
        }
        for (; r < rows; r++) {
            const int i = (row0 + r) * C + c;
            const float dd = to_float(dout[i]);
            const float s = s_rstd[r];
            const float norm = (to_float(inp[i]) - s_mean[r]) * s;
            dinp[i] = from_float<S>(to_float(dinp[i]) + (__fmul_rn(w, dd) - s_dmean[r] - norm * s_dnmean[r]) * s);
            dw += dd * norm;
            db += dd;
        }
        pdw[c] = dw;
        pdb[c] = db;
    }
}

// Block shape of layernorm_backward_params: 32 columns × 16 chunk slices.
#define LN_PARAMS_COLS 32
#define LN_PARAMS_SLICES 16

// layernorm_backward_params: dw[c] and db[c] = the sums of the chunk partials
// of layernorm_backward_input. Block (32, 16) owns 32 columns: thread (x, y)
// adds chunks y, y+16, y+32, ... of column x in increasing order, then thread
// (x, 0) adds the 16 slice sums in slice order. A fixed tree, so the result
// does not depend on scheduling; loads along x are coalesced.
template <typename S>
__device__ __forceinline__ void layernorm_backward_params_t(S* dw, S* db, const float* scratch, int N, int C) {
    __shared__ float s_dw[LN_PARAMS_SLICES][LN_PARAMS_COLS];
    __shared__ float s_db[LN_PARAMS_SLICES][LN_PARAMS_COLS];
    const int chunks = (N + LN_BWD_ROWS - 1) / LN_BWD_ROWS;
    const int x = threadIdx.x;
    const int y = threadIdx.y;
    const int c = blockIdx.x * LN_PARAMS_COLS + x;
    float a = 0.0f, b = 0.0f;
    if (c < C) {
        for (int k = y; k < chunks; k += LN_PARAMS_SLICES) {
            a += scratch[k * C + c];
            b += scratch[(chunks + k) * C + c];
        }
    }
    s_dw[y][x] = a;
    s_db[y][x] = b;
    __syncthreads();
    if (y == 0 && c < C) {
        a = s_dw[0][x];
        b = s_db[0][x];
#pragma unroll
        for (int k = 1; k < LN_PARAMS_SLICES; k++) {
            a += s_dw[k][x];
            b += s_db[k][x];
        }
        dw[c] = from_float<S>(a);
        db[c] = from_float<S>(b);
    }
}

#ifndef GPUBENCH_BF16
extern "C" __global__ void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                             const float* weight, const float* bias, int N, int C) {
    layernorm_forward_t(out, mean, rstd, inp, weight, bias, N, C);
}
extern "C" __global__ void layernorm_backward_input(float* dinp, float* scratch, const float* dout,
                                                    const float* inp, const float* weight,
                                                    const float* mean, const float* rstd, int N, int C) {
    layernorm_backward_input_t(dinp, scratch, dout, inp, weight, mean, rstd, N, C);
}
extern "C" __global__ void layernorm_backward_params(float* dw, float* db, const float* scratch, int N, int C) {
    layernorm_backward_params_t(dw, db, scratch, N, C);
}
#else
extern "C" __global__ void layernorm_forward_bf16(__nv_bfloat16* out, float* mean, float* rstd,
                                                  const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                                                  const __nv_bfloat16* bias, int N, int C) {
    layernorm_forward_t(out, mean, rstd, inp, weight, bias, N, C);
}
extern "C" __global__ void layernorm_backward_input_bf16(__nv_bfloat16* dinp, float* scratch,
                                                         const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                                                         const __nv_bfloat16* weight, const float* mean,
                                                         const float* rstd, int N, int C) {
    layernorm_backward_input_t(dinp, scratch, dout, inp, weight, mean, rstd, N, C);
}
extern "C" __global__ void layernorm_backward_params_bf16(__nv_bfloat16* dw, __nv_bfloat16* db, const float* scratch,
                                                          int N, int C) {
    layernorm_backward_params_t(dw, db, scratch, N, C);
}
#endif
