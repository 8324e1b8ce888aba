// attention.cu: causal grouped-query self-attention, forward and backward,
// in the flash-attention-2 style, fp32.
//
// qkv is (B,T,W) row-major, W = (NH+2·NKV)·hs, each row [q (NH·hs) |
// k (NKV·hs) | v (NKV·hs)]; query head h uses columns h*hs..(h+1)*hs of q
// and key/value head h/(NH/NKV) of k and v, so NH/NKV consecutive query
// heads share one (NKV = NH is multi-head attention, W = 3C). hs = C/NH,
// scale = 1/sqrt(hs). Query t attends keys 0..t.
//
//   attention_forward              out (B,T,C) = softmax(scale·q·kᵀ, causal)·v,
//                                  heads concatenated; lse (B,NH,T) = natural-log
//                                  logsumexp of each query row's scaled scores.
//   attention_backward_preprocess  D (B,NH,T) = Σ_d dout·out over each head row.
//   attention_backward_dkdv        dk, dv parts of dqkv (overwritten); the
//                                  gradient of a kv head sums over its group.
//   attention_backward_dq          q part of dqkv (overwritten).
//
// Nothing of size T×T ever touches global memory: the forward keeps a running
// max and sum per query row (online softmax) and stores only lse; the backward
// recomputes the probabilities P = exp(scale·q·k − lse) tile by tile. That is
// what keeps attention's peak memory O(B·T·C) instead of O(B·NH·T²).
//
// Determinism without atomics: each output element is owned by exactly one
// thread of one block, which accumulates it in a fixed order. The price is
// that the backward recomputes P (and dP) twice: once in the dkdv kernel
// (blocks own key tiles and sum over queries) and once in the dq kernel
// (blocks own query tiles and sum over keys). A single pass would need dq to be
// summed across key-tile blocks with float atomics, whose order, and so whose
// rounding, changes from run to run. For the same reason a dkdv block owns a
// key tile of one kv head and loops over all the query heads of its group
// itself, in head order, rather than one block per query head adding into
// the shared dk and dv.
//
// Tiling. Every kernel runs 128 threads as a 16×8 grid: ty = tid/8 picks rows
// (row ty + 16·i), tx = tid%8 picks columns (column tx + 8·j of a score tile,
// float4 column group tx + 8·j of a head-size tile). The 8 threads that share
// rows are 8 consecutive lanes, so row reductions are 3 fixed xor-shuffles.
// Tiles of hs-wide rows are stored in shared memory padded to D (the compiled
// maximum head size: 32, 64 or 128, chosen at run time from hs) with zeros, so
// any hs <= 128 works, including ones that are not multiples of 4, and dot
// products run on float4s. Row strides are D+4 floats: the 8 lanes of a
// quarter-warp then read 8 different rows in 8 different 16-byte bank groups.
// Score tiles have a stride of (columns+8) floats, which makes the scalar
// stores of 4 row groups × 8 columns of a warp hit 32 different banks.
// Tile sizes per D (rows × columns of the score tile) keep static shared
// memory under 48 KB; kernels/attention.go mirrors them to size the grid.
#include "common.cuh"

#define ATT_THREADS 128
#define ATT_TX 8
#define ATT_TY 16
// The largest supported head size; kernels/attention.go rejects larger ones.
#define ATT_HS_MAX 128

// Tile configurations. R: rows of the block's own tile (query rows for the
// forward and dq, key rows for dkdv); S: rows of the tiles it loops over.
// R sets only the grid, never the order of a row's sums (each query row's
// online softmax runs over key tiles of S, each key row's dk and dv over
// query tiles of S), so it does not change the bits. D = 32 keeps R at 16
// rows: its models are the small ones (tiny: T = 64, 4 heads, batch 8),
// where R = 64 made 32 blocks for 132 SMs, each waiting on its loads.

template <int D> struct FwdTiles;
template <> struct FwdTiles<32> { static constexpr int R = 16, S = 32; };
template <> struct FwdTiles<64> { static constexpr int R = 64, S = 32; };
template <> struct FwdTiles<128> { static constexpr int R = 32, S = 16; };

template <int D> struct DkdvTiles;
template <> struct DkdvTiles<32> { static constexpr int R = 16, S = 32; };
template <> struct DkdvTiles<64> { static constexpr int R = 32, S = 32; };
template <> struct DkdvTiles<128> { static constexpr int R = 16, S = 16; };

template <int D> struct DqTiles;
template <> struct DqTiles<32> { static constexpr int R = 16, S = 32; };
template <> struct DqTiles<64> { static constexpr int R = 32, S = 32; };
template <> struct DqTiles<128> { static constexpr int R = 16, S = 16; };

// Shared floats each kernel needs for a D; the entries allocate the maximum
// over D and every D's code carves its tiles out of that one buffer (static
// __shared__ arrays declared in each instantiation would be summed instead).
template <int D> __host__ __device__ constexpr int fwd_smem() {
    return FwdTiles<D>::R * (D + 4) + 2 * FwdTiles<D>::S * (D + 4) + FwdTiles<D>::R * (FwdTiles<D>::S + 8);
}
template <int D> __host__ __device__ constexpr int dkdv_smem() {
    return 2 * DkdvTiles<D>::R * (D + 4) + 2 * DkdvTiles<D>::S * (D + 4) +
           2 * DkdvTiles<D>::R * (DkdvTiles<D>::S + 8) + 2 * DkdvTiles<D>::S;
}
template <int D> __host__ __device__ constexpr int dq_smem() {
    return 2 * DqTiles<D>::R * (D + 4) + 2 * DqTiles<D>::S * (D + 4) + DqTiles<D>::R * (DqTiles<D>::S + 8);
}
__host__ __device__ constexpr int cmax3(int a, int b, int c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

#define FWD_SMEM cmax3(fwd_smem<32>(), fwd_smem<64>(), fwd_smem<128>())
#define DKDV_SMEM cmax3(dkdv_smem<32>(), dkdv_smem<64>(), dkdv_smem<128>())
#define DQ_SMEM cmax3(dq_smem<32>(), dq_smem<64>(), dq_smem<128>())
static_assert(FWD_SMEM * 4 <= 48 * 1024, "attention_forward: static shared memory over 48 KB");
static_assert(DKDV_SMEM * 4 <= 48 * 1024, "attention_backward_dkdv: static shared memory over 48 KB");
static_assert(DQ_SMEM * 4 <= 48 * 1024, "attention_backward_dq: static shared memory over 48 KB");

// kv_head is the key/value head that query head h reads: h/(NH/NKV). The
// division is unsigned because the signed one costs the dq kernel some 40
// registers (nvcc 11.8, sm_90), which is a block fewer per SM.
__device__ __forceinline__ int kv_head(int h, int NH, int NKV) {
    return static_cast<int>(static_cast<unsigned>(h) / static_cast<unsigned>(NH / NKV));
}

// load_tile copies rows row0..row0+ROWS of one head (src points at the head's
// column 0 of row 0, rows stride floats apart) into dst with row stride D+4.
// Rows at or past T and columns at or past hs are zero, so the float4 dot
// products over ceil(hs/4) groups and the sums over whole tiles need no
// further guards on the data.
template <int ROWS, int D>
__device__ __forceinline__ void load_tile(float* __restrict__ dst, const float* __restrict__ src, int row0, int T,
                                          int stride, int hs) {
    for (int i = threadIdx.x; i < ROWS * D; i += ATT_THREADS) {
        const int r = i / D, d = i % D;
        const int t = row0 + r;
        float v = 0.0f;
        if (t < T && d < hs) v = src[t * stride + d];
        dst[r * (D + 4) + d] = v;
    }
}

// lds4 loads a float4 from shared memory with one ld.shared.v4. Writing
// the load in PTX keeps nvcc from splitting float4 loads into scalars and
// re-vectorising them, which it does differently from run to run (the
// generated PTX would not be reproducible). volatile and the memory clobber
// keep it ordered with the barriers and the shared stores.
__device__ __forceinline__ float4 lds4(const float* p) {
    float4 v;
    const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
    asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "r"(a)
                 : "memory");
    return v;
}

__device__ __forceinline__ float dot4(float acc, float4 a, float4 b) {
    acc = fmaf(a.x, b.x, acc);
    acc = fmaf(a.y, b.y, acc);
    acc = fmaf(a.z, b.z, acc);
    return fmaf(a.w, b.w, acc);
}

__device__ __forceinline__ void axpy4(float4& acc, float a, float4 x) {
    acc.x = fmaf(a, x.x, acc.x);
    acc.y = fmaf(a, x.y, acc.y);
    acc.z = fmaf(a, x.z, acc.z);
    acc.w = fmaf(a, x.w, acc.w);
}

__device__ __forceinline__ float comp(float4 v, int c) { return c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w; }

// row8_max/row8_sum reduce over the 8 consecutive lanes that share a row.
// Float max and add are commutative, so every lane gets the same bits.
__device__ __forceinline__ float row8_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, 4));
    v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, 2));
    return fmaxf(v, __shfl_xor_sync(0xffffffff, v, 1));
}
__device__ __forceinline__ float row8_sum(float v) {
    v += __shfl_xor_sync(0xffffffff, v, 4);
    v += __shfl_xor_sync(0xffffffff, v, 2);
    return v + __shfl_xor_sync(0xffffffff, v, 1);
}

// store_row writes the OCV float4 column groups of one head row, scaled by
// mul, skipping columns at or past hs (rows of dst are not 16-byte aligned
// in general, so the stores are scalar).
template <int OCV>
__device__ __forceinline__ void store_row(float* dst, const float4 (&v)[OCV], float mul, int tx, int hs) {
#pragma unroll
    for (int jo = 0; jo < OCV; jo++) {
        const int d = 4 * (tx + ATT_TX * jo);
#pragma unroll
        for (int e = 0; e < 4; e++) {
            if (d + e < hs) dst[d + e] = comp(v[jo], e) * mul;
        }
    }
}

// ---------------------------------------------------------------------------
// Forward. One block per (query tile, head, batch). The query tile stays in
// shared memory; key/value tiles stream through it up to the diagonal. Each
// thread owns RM query rows × OCV·4 output columns and keeps the running max
// m and sum l of its rows (identical in the 8 lanes of a row).
// accumulate_rows adds P·M to this thread's output rows: for its rows i of
// P (ty + ATT_TY·i, row stride LP, BC columns) and its float4 columns jo of
// M (tx + ATT_TX·jo, row stride LD), acc[i][jo] += Σ_c P[i][c]·M[c][jo],
// with c in order, 4 at a time. The forward uses it for o += P·V, the dq
// kernel for dq += dS·K.
template <int R, int OCV, int BC, int LP, int LD>
__device__ __forceinline__ void accumulate_rows(float4 (&acc)[R][OCV], const float* P, const float* M, int ty,
                                                int tx) {
#pragma unroll 2
    for (int c = 0; c < BC; c += 4) {
        float4 pv[R];
#pragma unroll
        for (int i = 0; i < R; i++) pv[i] = lds4(&P[(ty + ATT_TY * i) * LP + c]);
#pragma unroll
        for (int cc = 0; cc < 4; cc++) {
#pragma unroll
            for (int jo = 0; jo < OCV; jo++) {
                const float4 mv = lds4(&M[(c + cc) * LD + 4 * (tx + ATT_TX * jo)]);
#pragma unroll
                for (int i = 0; i < R; i++) axpy4(acc[i][jo], comp(pv[i], cc), mv);
            }
        }
    }
}

// score_pair computes the two products both backward kernels need, over
// the head dimension (n4 float4 columns) of shared-memory tiles with row
// stride LD: s[i][j] = A_i·B_j and dp[i][j] = G_i·W_j, for this thread's
// rows i of A and G (ty + ATT_TY·i) and rows j of B and W (tx + ATT_TX·j).
// dkdv passes (K, V; Q, dO), dq passes (Q, dO; K, V).
template <int R, int S, int LD>
__device__ __forceinline__ void score_pair(float (&s)[R][S], float (&dp)[R][S], const float* A, const float* G,
                                           const float* B, const float* W, int n4, int ty, int tx) {
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int j = 0; j < S; j++) s[i][j] = dp[i][j] = 0.0f;
#pragma unroll 2
    for (int d4 = 0; d4 < n4; d4++) {
        float4 av[R], gv[R];
#pragma unroll
        for (int i = 0; i < R; i++) {
            av[i] = lds4(&A[(ty + ATT_TY * i) * LD + 4 * d4]);
            gv[i] = lds4(&G[(ty + ATT_TY * i) * LD + 4 * d4]);
        }
#pragma unroll
        for (int j = 0; j < S; j++) {
            const float4 bv = lds4(&B[(tx + ATT_TX * j) * LD + 4 * d4]);
            const float4 wv = lds4(&W[(tx + ATT_TX * j) * LD + 4 * d4]);
#pragma unroll
            for (int i = 0; i < R; i++) {
                s[i][j] = dot4(s[i][j], av[i], bv);
                dp[i][j] = dot4(dp[i][j], gv[i], wv);
            }
        }
    }
}

template <int D>
__device__ __forceinline__ void forward_tile(float* smem, float* out, float* lse, const float* qkv, int T, int C, int NH,
                                             int NKV, int hs) {
    constexpr int BR = FwdTiles<D>::R, BC = FwdTiles<D>::S;
    constexpr int RM = BR / ATT_TY, SC = BC / ATT_TX, OCV = D / (4 * ATT_TX);
    constexpr int LD = D + 4, LP = BC + 8;
    float* Qs = smem;
    float* Ks = Qs + BR * LD;
    float* Vs = Ks + BC * LD;
    float* Ps = Vs + BC * LD;

    // The causal triangle makes late query tiles the most work: they get the
    // lowest block indices so they start first and the short ones fill in.
    const int qt = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z;
    const int q0 = qt * BR;
    const int tx = threadIdx.x % ATT_TX, ty = threadIdx.x / ATT_TX;
    const int W = (NH + 2 * NKV) * hs, kvh = kv_head(h, NH, NKV);
    const float* base = qkv + b * T * W + h * hs;
    const float* kbase = qkv + b * T * W + (NH + kvh) * hs;
    const float* vbase = kbase + NKV * hs;
    const float scale = 1.0f / sqrtf((float)hs);
    const int n4 = (hs + 3) / 4;

    load_tile<BR, D>(Qs, base, q0, T, W, hs);

    float m[RM], l[RM];
    float4 o[RM][OCV];
#pragma unroll
    for (int i = 0; i < RM; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int jo = 0; jo < OCV; jo++) o[i][jo] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }

    // Keys at or past min(q0+BR, T) are seen by no query of this tile below
    // T. Rows past T (tail) attend zero-filled keys up to themselves, which
    // keeps their arithmetic finite; they are never stored.
    const int kend = min(q0 + BR, T);
    for (int k0 = 0; k0 < kend; k0 += BC) {
        __syncthreads(); // the previous tile's Ks, Vs, Ps are no longer read
        load_tile<BC, D>(Ks, kbase, k0, T, W, hs);
        load_tile<BC, D>(Vs, vbase, k0, T, W, hs);
        __syncthreads();

        float s[RM][SC];
#pragma unroll
        for (int i = 0; i < RM; i++)
#pragma unroll
            for (int j = 0; j < SC; j++) s[i][j] = 0.0f;
#pragma unroll 4
        for (int d4 = 0; d4 < n4; d4++) {
            float4 qv[RM];
#pragma unroll
            for (int i = 0; i < RM; i++) qv[i] = lds4(&Qs[(ty + ATT_TY * i) * LD + 4 * d4]);
#pragma unroll
            for (int j = 0; j < SC; j++) {
                const float4 kv = lds4(&Ks[(tx + ATT_TX * j) * LD + 4 * d4]);
#pragma unroll
                for (int i = 0; i < RM; i++) s[i][j] = dot4(s[i][j], qv[i], kv);
            }
        }

        // Online softmax. Key tile 0 holds key 0, which every row attends, so
        // m is finite from the first tile on and no exp sees inf − inf.
#pragma unroll
        for (int i = 0; i < RM; i++) {
            const int q = q0 + ty + ATT_TY * i;
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < SC; j++) {
                const int k = k0 + tx + ATT_TX * j;
                s[i][j] = k <= q ? s[i][j] * scale : -INFINITY;
                mx = fmaxf(mx, s[i][j]);
            }
            const float mnew = fmaxf(m[i], row8_max(mx));
            const float corr = expf(m[i] - mnew); // 0 on the first tile
            float rs = 0.0f;
#pragma unroll
            for (int j = 0; j < SC; j++) {
                const float p = expf(s[i][j] - mnew); // masked: exp(−inf) = 0
                rs += p;
                Ps[(ty + ATT_TY * i) * LP + tx + ATT_TX * j] = p;
            }
            l[i] = l[i] * corr + row8_sum(rs);
            m[i] = mnew;
#pragma unroll
            for (int jo = 0; jo < OCV; jo++) {
                o[i][jo].x *= corr;
                o[i][jo].y *= corr;
                o[i][jo].z *= corr;
                o[i][jo].w *= corr;
            }
        }
        __syncthreads(); // Ps complete

        // o += P·V over the tile's keys.
        accumulate_rows<RM, OCV, BC, LP, LD>(o, Ps, Vs, ty, tx);
    }

#pragma unroll
    for (int i = 0; i < RM; i++) {
        const int q = q0 + ty + ATT_TY * i;
        if (q >= T) continue;
        store_row<OCV>(out + (b * T + q) * C + h * hs, o[i], 1.0f / l[i], tx, hs);
        if (tx == 0) lse[(b * NH + h) * T + q] = m[i] + logf(l[i]);
    }
}

// attention_forward: grid (ceil(T/R), NH, B) with R = FwdTiles<D>::R, 128
// threads. hs = C/NH <= 128 picks D (uniform over the grid, so no divergence).
extern "C" __global__ void __launch_bounds__(ATT_THREADS)
    attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH, int NKV) {
    __shared__ __align__(16) float smem[FWD_SMEM];
    const int hs = C / NH;
    if (hs <= 32) {
        forward_tile<32>(smem, out, lse, qkv, T, C, NH, NKV, hs);
    } else if (hs <= 64) {
        forward_tile<64>(smem, out, lse, qkv, T, C, NH, NKV, hs);
    } else if (hs <= ATT_HS_MAX) {
        forward_tile<128>(smem, out, lse, qkv, T, C, NH, NKV, hs);
    }
}

// ---------------------------------------------------------------------------
// attention_backward_preprocess: D[b,h,t] = Σ_d dout[b,t,h·hs+d]·out[b,t,h·hs+d]
// (= Σ_k P·dP of the row, the softmax-backward term). One warp per (b,t,h),
// h fastest so neighbouring warps read neighbouring head slices; the warp's
// butterfly sum is fixed, so D is deterministic. Grid ceil(B·T·NH/8), 256
// threads.
extern "C" __global__ void attention_backward_preprocess(float* d, const float* dout, const float* out, int B, int T,
                                                         int C, int NH) {
    const int hs = C / NH;
    const int row = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    const int lane = threadIdx.x % WARP_SIZE;
    if (row >= B * T * NH) return; // the whole warp leaves together
    const int h = row % NH, bt = row / NH;
    const float* o = out + bt * C + h * hs;
    const float* g = dout + bt * C + h * hs;
    float acc = 0.0f;
    for (int i = lane; i < hs; i += WARP_SIZE) acc = fmaf(o[i], g[i], acc);
    acc = warp_sum(acc);
    if (lane == 0) {
        const int b = bt / T, t = bt % T;
        d[(b * NH + h) * T + t] = acc;
    }
}

// ---------------------------------------------------------------------------
// dK and dV. One block per (key tile, kv head, batch): the block holds its K
// and V tiles and loops over the query heads of the kv head's group, in
// order, and for each over the query tiles from the diagonal on, recomputing
//   Sᵀ = K·Qᵀ, P = exp(scale·S − lse), dPᵀ = V·dOᵀ, dS = P∘(dP − D)
// in registers (thread layout: key rows × query columns), then through
// shared memory
//   dV += Pᵀ·dO,  dK += dSᵀ·Q   (× scale when stored).
// Each dK/dV element belongs to one thread, summed over queries in order.
template <int D>
__device__ __forceinline__ void dkdv_tile(float* smem, float* dqkv, const float* dvec, const float* dout,
                                          const float* qkv, const float* lse, int T, int C, int NH, int NKV, int hs) {
    constexpr int BK = DkdvTiles<D>::R, BQ = DkdvTiles<D>::S;
    constexpr int RK = BK / ATT_TY, SQ = BQ / ATT_TX, OCV = D / (4 * ATT_TX);
    constexpr int LD = D + 4, LP = BQ + 8;
    float* Ks = smem;
    float* Vs = Ks + BK * LD;
    float* Qs = Vs + BK * LD;
    float* Gs = Qs + BQ * LD; // dO
    float* Pt = Gs + BQ * LD; // Pᵀ (key rows × query columns)
    float* St = Pt + BK * LP; // dSᵀ
    float* Ls = St + BK * LP; // lse of the query tile
    float* Ds = Ls + BQ;      // D of the query tile

    // Early key tiles see the most queries; they have the lowest indices.
    const int kt = blockIdx.x;
    const int kvh = blockIdx.y, b = blockIdx.z;
    const int group = NH / NKV;
    const int k0 = kt * BK;
    const int tx = threadIdx.x % ATT_TX, ty = threadIdx.x / ATT_TX;
    const int W = (NH + 2 * NKV) * hs;
    const float* kbase = qkv + b * T * W + (NH + kvh) * hs;
    const float* vbase = kbase + NKV * hs;
    const float scale = 1.0f / sqrtf((float)hs);
    const int n4 = (hs + 3) / 4;

    load_tile<BK, D>(Ks, kbase, k0, T, W, hs);
    load_tile<BK, D>(Vs, vbase, k0, T, W, hs);

    float4 dk[RK][OCV], dv[RK][OCV];
#pragma unroll
    for (int i = 0; i < RK; i++)
#pragma unroll
        for (int jo = 0; jo < OCV; jo++) {
            dk[i][jo] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            dv[i][jo] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }

    // The group's query heads in order, so that dk and dv sum over them in
    // a fixed order. Queries before k0 attend none of these keys: start at
    // the query tile holding query k0.
    for (int gh = 0; gh < group; gh++) {
        const int h = kvh * group + gh;
        const float* base = qkv + b * T * W + h * hs;
        const float* gbase = dout + b * T * C + h * hs;
        const float* lrow = lse + (b * NH + h) * T;
        const float* drow = dvec + (b * NH + h) * T;
        for (int q0 = (k0 / BQ) * BQ; q0 < T; q0 += BQ) {
            __syncthreads(); // the previous query tile is no longer read
            load_tile<BQ, D>(Qs, base, q0, T, W, hs);
            load_tile<BQ, D>(Gs, gbase, q0, T, C, hs);
            for (int r = threadIdx.x; r < BQ; r += ATT_THREADS) {
                const int q = q0 + r;
                // Rows past T get P = exp(−inf) = 0 and dS = 0.
                Ls[r] = q < T ? lrow[q] : INFINITY;
                Ds[r] = q < T ? drow[q] : 0.0f;
            }
            __syncthreads();

            float s[RK][SQ], dp[RK][SQ];
            score_pair<RK, SQ, LD>(s, dp, Ks, Vs, Qs, Gs, n4, ty, tx); // S = K·Qᵀ, dP = V·dOᵀ
#pragma unroll
            for (int i = 0; i < RK; i++) {
                const int k = k0 + ty + ATT_TY * i;
#pragma unroll
                for (int j = 0; j < SQ; j++) {
                    const int c = tx + ATT_TX * j;
                    const float p = k <= q0 + c ? expf(s[i][j] * scale - Ls[c]) : 0.0f;
                    Pt[(ty + ATT_TY * i) * LP + c] = p;
                    St[(ty + ATT_TY * i) * LP + c] = p * (dp[i][j] - Ds[c]);
                }
            }
            __syncthreads(); // Pt, St complete

#pragma unroll 2
            for (int c = 0; c < BQ; c += 4) {
                float4 pv[RK], sv[RK];
#pragma unroll
                for (int i = 0; i < RK; i++) {
                    pv[i] = lds4(&Pt[(ty + ATT_TY * i) * LP + c]);
                    sv[i] = lds4(&St[(ty + ATT_TY * i) * LP + c]);
                }
#pragma unroll
                for (int cc = 0; cc < 4; cc++) {
#pragma unroll
                    for (int jo = 0; jo < OCV; jo++) {
                        const int col = (c + cc) * LD + 4 * (tx + ATT_TX * jo);
                        const float4 gv = lds4(&Gs[col]);
                        const float4 qv = lds4(&Qs[col]);
#pragma unroll
                        for (int i = 0; i < RK; i++) {
                            axpy4(dv[i][jo], comp(pv[i], cc), gv);
                            axpy4(dk[i][jo], comp(sv[i], cc), qv);
                        }
                    }
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < RK; i++) {
        const int k = k0 + ty + ATT_TY * i;
        if (k >= T) continue;
        float* row = dqkv + (b * T + k) * W + (NH + kvh) * hs;
        store_row<OCV>(row, dk[i], scale, tx, hs);
        store_row<OCV>(row + NKV * hs, dv[i], 1.0f, tx, hs);
    }
}

// attention_backward_dkdv: grid (ceil(T/R), NKV, B) with R = DkdvTiles<D>::R,
// 128 threads. d is the output of attention_backward_preprocess.
extern "C" __global__ void __launch_bounds__(ATT_THREADS)
    attention_backward_dkdv(float* dqkv, const float* d, const float* dout, const float* qkv, const float* lse, int B,
                            int T, int C, int NH, int NKV) {
    __shared__ __align__(16) float smem[DKDV_SMEM];
    const int hs = C / NH;
    if (hs <= 32) {
        dkdv_tile<32>(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV, hs);
    } else if (hs <= 64) {
        dkdv_tile<64>(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV, hs);
    } else if (hs <= ATT_HS_MAX) {
        dkdv_tile<128>(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV, hs);
    }
}

// ---------------------------------------------------------------------------
// dQ. One block per (query tile, head, batch): the block holds its Q and dO
// tiles and loops over the key tiles up to the diagonal, recomputing P, dP
// and dS exactly as the dkdv kernel does (thread layout: query rows × key
// columns), then dQ += dS·K (× scale when stored).
template <int D>
__device__ __forceinline__ void dq_tile(float* smem, float* dqkv, const float* dvec, const float* dout, const float* qkv,
                                        const float* lse, int T, int C, int NH, int NKV, int hs) {
    constexpr int BR = DqTiles<D>::R, BC = DqTiles<D>::S;
    constexpr int RM = BR / ATT_TY, SC = BC / ATT_TX, OCV = D / (4 * ATT_TX);
    constexpr int LD = D + 4, LP = BC + 8;
    float* Qs = smem;
    float* Gs = Qs + BR * LD; // dO
    float* Ks = Gs + BR * LD;
    float* Vs = Ks + BC * LD;
    float* Ss = Vs + BC * LD; // dS (query rows × key columns)

    // Late query tiles see the most keys; they have the lowest indices.
    const int qt = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z;
    const int q0 = qt * BR;
    const int tx = threadIdx.x % ATT_TX, ty = threadIdx.x / ATT_TX;
    const int W = (NH + 2 * NKV) * hs, kvh = kv_head(h, NH, NKV);
    const float* base = qkv + b * T * W + h * hs;
    const float* kbase = qkv + b * T * W + (NH + kvh) * hs;
    const float* vbase = kbase + NKV * hs;
    const float scale = 1.0f / sqrtf((float)hs);
    const int n4 = (hs + 3) / 4;

    load_tile<BR, D>(Qs, base, q0, T, W, hs);
    load_tile<BR, D>(Gs, dout + b * T * C + h * hs, q0, T, C, hs);

    float lr[RM], dr[RM];
    float4 dq[RM][OCV];
#pragma unroll
    for (int i = 0; i < RM; i++) {
        const int q = q0 + ty + ATT_TY * i;
        // Rows past T get P = exp(−inf) = 0 and dS = 0.
        lr[i] = q < T ? lse[(b * NH + h) * T + q] : INFINITY;
        dr[i] = q < T ? dvec[(b * NH + h) * T + q] : 0.0f;
#pragma unroll
        for (int jo = 0; jo < OCV; jo++) dq[i][jo] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }

    const int kend = min(q0 + BR, T);
    for (int k0 = 0; k0 < kend; k0 += BC) {
        __syncthreads(); // the previous key tile is no longer read
        load_tile<BC, D>(Ks, kbase, k0, T, W, hs);
        load_tile<BC, D>(Vs, vbase, k0, T, W, hs);
        __syncthreads();

        float s[RM][SC], dp[RM][SC];
        score_pair<RM, SC, LD>(s, dp, Qs, Gs, Ks, Vs, n4, ty, tx); // S = Q·Kᵀ, dP = dO·Vᵀ
#pragma unroll
        for (int i = 0; i < RM; i++) {
            const int q = q0 + ty + ATT_TY * i;
#pragma unroll
            for (int j = 0; j < SC; j++) {
                const int k = k0 + tx + ATT_TX * j;
                const float p = k <= q ? expf(s[i][j] * scale - lr[i]) : 0.0f;
                Ss[(ty + ATT_TY * i) * LP + tx + ATT_TX * j] = p * (dp[i][j] - dr[i]);
            }
        }
        __syncthreads(); // Ss complete

        accumulate_rows<RM, OCV, BC, LP, LD>(dq, Ss, Ks, ty, tx); // dq += dS·K
    }

#pragma unroll
    for (int i = 0; i < RM; i++) {
        const int q = q0 + ty + ATT_TY * i;
        if (q >= T) continue;
        store_row<OCV>(dqkv + (b * T + q) * W + h * hs, dq[i], scale, tx, hs);
    }
}

// attention_backward_dq: grid (ceil(T/R), NH, B) with R = DqTiles<D>::R, 128
// threads. d is the output of attention_backward_preprocess.
extern "C" __global__ void __launch_bounds__(ATT_THREADS)
    attention_backward_dq(float* dqkv, const float* d, const float* dout, const float* qkv, const float* lse, int B,
                          int T, int C, int NH, int NKV) {
    __shared__ __align__(16) float smem[DQ_SMEM];
    const int hs = C / NH;
    if (hs <= 32) {
        dq_tile<32>(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV, hs);
    } else if (hs <= 64) {
        dq_tile<64>(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV, hs);
    } else if (hs <= ATT_HS_MAX) {
        dq_tile<128>(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV, hs);
    }
}
