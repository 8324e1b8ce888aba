// gemv.cu: the weight-streaming products of an LLM decode step, for a few
// rows (M ≤ GEMV_MAX_ROWS):
//
//   matvec_forward   out(M,OC) = inp(M,C) · w(OC,C)ᵀ  (+ residual(M,OC))
//
// out has a row stride ld ≥ OC; its columns OC..ld-1 are never touched.
// residual has out's layout and may be null, a separate tensor, or out
// itself (out += the product: the residual stream). No bias.
//
// At decode time M is the batch, 1 to 16 rows, so the product does ~2·M
// FLOPs per weight element: it is bound by reading w. The kernel reads
// every weight byte exactly once, with 16-byte loads that skip L1
// (ld.global.nc.L1::no_allocate), so that L1 keeps the small inp, which
// every warp of an SM reads (through L1, __ldg) at about the same place of
// C at about the same time; there is no shared-memory copy of inp, which
// would not fit for long rows (16 × 11008 fp32 is 704 KB), and so no
// barrier in the main loop.
//
// Work: a warp tile is GEMV_TILE = 16 consecutive output columns (rows of
// w) over one slice of C. A block of GEMV_WARPS = 8 warps is wc column
// tiles × wk slices of C (wc·wk = 8; wk ∈ {1, 2, 4, 8}). Slices are whole
// GEMV_STEP-column steps, contiguous, as even as the steps allow. With
// wk > 1 the block adds its warps' partial tiles in shared memory in slice
// order 0..wk-1 after one barrier; with wk = 1 a warp owns its tiles
// outright, and may run nt > 1 of them one after another (nt consecutive
// tiles, one contiguous stretch of w). Every sum has a fixed order (lane,
// then a shuffle tree, then slices), so the result is bitwise repeatable
// for one (wk, nt); kernels/gemv.go chooses them from OC, C and the SM
// count (a different choice may change the last bits).
//
// The inner product is written twice:
//   fp32 (this file's matvec_forward, compute_70): FMA. A lane owns 4
//     rows of the tile (rows 4·(lane/8) + j) and 4 consecutive columns
//     of a step (8 lanes cover a step's 32 columns, 128 bytes of a row);
//     it reuses each inp vector for its 4 rows.
//   bf16 (gemv_bf16.cu, compute_80): mma.sync m16n8k16 with w as the A
//     operand (the 16 rows of the tile are mma's M side) and inp as B (the
//     batch rows are mma's N side: one n8 tile for M ≤ 8, two for M ≤ 16).
//     The order of k inside one mma is free as long as A and B agree, so
//     a lane's A fragment comes from one 16-byte load per row: lane
//     (g = lane/4, t = lane%4) loads columns c0+8t .. c0+8t+7 of rows g
//     and g+8, which feed two mma's (k-slots 2t, 2t+1, 2t+8, 2t+9 are
//     columns c0+8t+4j+{0,1,2,3} in mma j), and its B fragment is the same
//     8 columns of batch row g: one 16-byte load too.
//
// Rows of w past OC, batch rows past M and columns past C load as zero. A
// C that is not a multiple of the 16-byte vector (4 fp32, 8 bf16), or a
// base that is not 16-byte aligned, takes the same loops with element
// loads (slower, any shape correct).
#include "common.cuh"
#include "elem.cuh"

// The block: GEMV_WARPS warps, at least GEMV_MIN_BLOCKS blocks resident on
// an SM (so at most 128 registers a thread); kernels/gemv.go sizes the
// grid in waves of them.
#define GEMV_THREADS 256
#define GEMV_WARPS (GEMV_THREADS / WARP_SIZE)
#define GEMV_MIN_BLOCKS 2
// The output columns of a warp tile, the most rows (M), and the columns of
// C one step of a warp covers (fp32: 8 lanes × 4; bf16: 4 lanes × 8).
#define GEMV_TILE 16
#define GEMV_MAX_ROWS 16
#define GEMV_STEP 32
// Steps a warp loads before it multiplies: 4 KB of w in flight a warp
// (fp32: 2 steps × 4 rows × 16 B × 32 lanes; bf16: 4 steps × 2 rows × 16 B
// × 32 lanes), 64 KB an SM at two blocks: enough to cover HBM latency.
#define GEMV_UNROLL_F32 2
#define GEMV_UNROLL_BF16 4

// ldw16 reads 16 bytes of w that no other warp reads: read-only, and not
// kept in L1 (each byte is used once), so that L1 holds inp.
__device__ __forceinline__ uint4 ldw16(const void* p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

// GemvPartial is one warp's partial tile in shared memory: [column][row],
// the row dimension padded by one against bank conflicts.
typedef float GemvPartial[GEMV_TILE][GEMV_MAX_ROWS + 1];

#ifndef GPUBENCH_BF16

// load4 is 4 floats of row p from column c: one vector load when VEC, else
// element loads bounded by C; zeros unless ok.
template <bool VEC, bool W>
__device__ __forceinline__ float4 load4(const float* p, int c, int C, bool ok) {
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (VEC) {
        if (ok) {
            if (W) {
                const uint4 u = ldw16(p + c);
                v = make_float4(__uint_as_float(u.x), __uint_as_float(u.y), __uint_as_float(u.z), __uint_as_float(u.w));
            } else {
                v = __ldg(reinterpret_cast<const float4*>(p + c));
            }
        }
    } else if (ok) {
        v.x = __ldg(p + c);
        if (c + 1 < C) v.y = __ldg(p + c + 1);
        if (c + 2 < C) v.z = __ldg(p + c + 2);
        if (c + 3 < C) v.w = __ldg(p + c + 3);
    }
    return v;
}

// tile_f32 writes into part the partial products of rows row0..row0+15
// of w with the M rows of inp over steps [s0, s1) of C. MT ≥ M is the
// rows the registers hold.
template <int MT, bool VEC>
__device__ __forceinline__ void tile_f32(GemvPartial& part, const float* __restrict__ inp, const float* __restrict__ w,
                                         int row0, int s0, int s1, int M, int C, int OC) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int rg = lane >> 3, cl = lane & 7;
    // Rows past OC are never loaded (ok is false), so their pointers may
    // point anywhere.
    const float* wr = w + (size_t)(row0 + rg * 4) * C;
    bool rok[4];
#pragma unroll
    for (int j = 0; j < 4; j++) rok[j] = row0 + rg * 4 + j < OC;
    float acc[4][MT];
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int m = 0; m < MT; m++) acc[j][m] = 0.0f;

    // 16 rows of accumulators leave registers for one step of w only.
    constexpr int U = MT > 8 ? 1 : GEMV_UNROLL_F32;
    for (int s = s0; s < s1; s += U) {
        float4 wv[U][4];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = (s + u) * GEMV_STEP + cl * 4;
            const bool ok = s + u < s1 && c < C;
#pragma unroll
            for (int j = 0; j < 4; j++) wv[u][j] = load4<VEC, true>(wr + (size_t)j * C, c, C, ok && rok[j]);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = (s + u) * GEMV_STEP + cl * 4;
            const bool ok = s + u < s1 && c < C;
#pragma unroll
            for (int m = 0; m < MT; m++) {
                const float4 x = load4<VEC, false>(inp + m * C, c, C, ok && m < M);
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    float a = acc[j][m];
                    a = fmaf(wv[u][j].x, x.x, a);
                    a = fmaf(wv[u][j].y, x.y, a);
                    a = fmaf(wv[u][j].z, x.z, a);
                    a = fmaf(wv[u][j].w, x.w, a);
                    acc[j][m] = a;
                }
            }
        }
    }
    // The 8 lanes of a row group hold the row's partials of different
    // columns: a fixed butterfly adds them.
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int m = 0; m < MT; m++) {
            float a = acc[j][m];
            a += __shfl_xor_sync(0xffffffff, a, 4);
            a += __shfl_xor_sync(0xffffffff, a, 2);
            a += __shfl_xor_sync(0xffffffff, a, 1);
            acc[j][m] = a;
        }
    if (cl == 0) {
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int m = 0; m < MT; m++) part[rg * 4 + j][m] = acc[j][m];
    }
}

__device__ __forceinline__ void tile_partial(GemvPartial& part, const float* inp, const float* w, bool vec, int row0,
                                             int s0, int s1, int M, int C, int OC) {
    if (vec) {
        if (M <= 4) tile_f32<4, true>(part, inp, w, row0, s0, s1, M, C, OC);
        else if (M <= 8) tile_f32<8, true>(part, inp, w, row0, s0, s1, M, C, OC);
        else tile_f32<16, true>(part, inp, w, row0, s0, s1, M, C, OC);
    } else {
        if (M <= 4) tile_f32<4, false>(part, inp, w, row0, s0, s1, M, C, OC);
        else if (M <= 8) tile_f32<8, false>(part, inp, w, row0, s0, s1, M, C, OC);
        else tile_f32<16, false>(part, inp, w, row0, s0, s1, M, C, OC);
    }
}

#else // GPUBENCH_BF16

// load8 is 8 bf16s of row p from column c as 4 words (the lower column
// in each word's lower half): one vector load when VEC, else element
// loads bounded by C; zeros unless ok.
template <bool VEC, bool W>
__device__ __forceinline__ uint4 load8(const __nv_bfloat16* p, int c, int C, bool ok) {
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (VEC) {
        if (ok) v = W ? ldw16(p + c) : __ldg(reinterpret_cast<const uint4*>(p + c));
    } else if (ok) {
        const unsigned short* q = reinterpret_cast<const unsigned short*>(p) + c;
        unsigned e[8];
#pragma unroll
        for (int i = 0; i < 8; i++) e[i] = c + i < C ? (unsigned)__ldg(q + i) : 0u;
        v = make_uint4(e[0] | e[1] << 16, e[2] | e[3] << 16, e[4] | e[5] << 16, e[6] | e[7] << 16);
    }
    return v;
}

__device__ __forceinline__ void mma_bf16(float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                                         unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// tile_bf16 is tile_f32 on tensor cores: NT n8 tiles of batch rows.
template <int NT, bool VEC>
__device__ __forceinline__ void tile_bf16(GemvPartial& part, const __nv_bfloat16* __restrict__ inp,
                                          const __nv_bfloat16* __restrict__ w, int row0, int s0, int s1, int M, int C,
                                          int OC) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int g = lane >> 2, t = lane & 3;
    const bool ok0 = row0 + g < OC, ok1 = row0 + g + 8 < OC;
    const __nv_bfloat16* w0 = w + (size_t)min(row0 + g, OC - 1) * C;
    const __nv_bfloat16* w1 = w + (size_t)min(row0 + g + 8, OC - 1) * C;
    const __nv_bfloat16* x[NT];
    bool okx[NT];
#pragma unroll
    for (int n = 0; n < NT; n++) {
        okx[n] = g + 8 * n < M;
        x[n] = inp + min(g + 8 * n, M - 1) * C;
    }
    float acc[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

    for (int s = s0; s < s1; s += GEMV_UNROLL_BF16) {
        uint4 a0[GEMV_UNROLL_BF16], a1[GEMV_UNROLL_BF16];
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL_BF16; u++) {
            const int c = (s + u) * GEMV_STEP + t * 8;
            const bool ok = s + u < s1 && c < C;
            a0[u] = load8<VEC, true>(w0, c, C, ok && ok0);
            a1[u] = load8<VEC, true>(w1, c, C, ok && ok1);
        }
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL_BF16; u++) {
            const int c = (s + u) * GEMV_STEP + t * 8;
            const bool ok = s + u < s1 && c < C;
#pragma unroll
            for (int n = 0; n < NT; n++) {
                const uint4 b = load8<VEC, false>(x[n], c, C, ok && okx[n]);
                mma_bf16(acc[n], a0[u].x, a1[u].x, a0[u].y, a1[u].y, b.x, b.y);
                mma_bf16(acc[n], a0[u].z, a1[u].z, a0[u].w, a1[u].w, b.z, b.w);
            }
        }
    }
    // D fragment: rows g and g+8 of the tile, batch rows 8n + 2t, 2t+1.
#pragma unroll
    for (int n = 0; n < NT; n++) {
        part[g][8 * n + 2 * t] = acc[n][0];
        part[g][8 * n + 2 * t + 1] = acc[n][1];
        part[g + 8][8 * n + 2 * t] = acc[n][2];
        part[g + 8][8 * n + 2 * t + 1] = acc[n][3];
    }
}

__device__ __forceinline__ void tile_partial(GemvPartial& part, const __nv_bfloat16* inp, const __nv_bfloat16* w,
                                             bool vec, int row0, int s0, int s1, int M, int C, int OC) {
    if (vec) {
        if (M <= 8) tile_bf16<1, true>(part, inp, w, row0, s0, s1, M, C, OC);
        else tile_bf16<2, true>(part, inp, w, row0, s0, s1, M, C, OC);
    } else {
        if (M <= 8) tile_bf16<1, false>(part, inp, w, row0, s0, s1, M, C, OC);
        else tile_bf16<2, false>(part, inp, w, row0, s0, s1, M, C, OC);
    }
}

#endif // GPUBENCH_BF16

// matvec_forward_t: block b, warp = k·wc + i (k the slice, i the column
// tile). With wk > 1 (then nt = 1) the block's wc tiles are b·wc + i; with
// wk = 1 warp i runs tiles (b·wc + i)·nt + r, r = 0..nt-1.
template <typename S>
__device__ __forceinline__ void matvec_forward_t(S* out, const S* __restrict__ inp, const S* __restrict__ w,
                                                 const S* residual, int M, int C, int OC, int ld, int wk, int nt) {
    __shared__ GemvPartial part[GEMV_WARPS];
    const int warp = threadIdx.x / WARP_SIZE;
    const int lane = threadIdx.x % WARP_SIZE;
    const int wc = GEMV_WARPS / wk;
    const int i = warp % wc, k = warp / wc;
    const int steps = (C + GEMV_STEP - 1) / GEMV_STEP;
    const int s0 = k * steps / wk, s1 = (k + 1) * steps / wk;
    const bool vec = C % Pack<S>::N == 0 && is_aligned16(inp) && is_aligned16(w);

    for (int r = 0; r < nt; r++) {
        const int tile = (blockIdx.x * wc + i) * nt + r;
        if (tile * GEMV_TILE < OC) tile_partial(part[warp], inp, w, vec, tile * GEMV_TILE, s0, s1, M, C, OC);
        if (wk == 1) {
            // The warp's own tile: no other warp to wait for.
            __syncwarp();
            for (int e = lane; e < GEMV_TILE * M; e += WARP_SIZE) {
                const int m = e / GEMV_TILE, col = e % GEMV_TILE, oc = tile * GEMV_TILE + col;
                if (oc < OC) {
                    float v = part[warp][col][m];
                    if (residual != nullptr) v += to_float(residual[m * ld + oc]);
                    out[m * ld + oc] = from_float<S>(v);
                }
            }
            __syncwarp();
        }
    }
    if (wk > 1) {
        __syncthreads();
        const int cols = wc * GEMV_TILE;
        for (int e = threadIdx.x; e < cols * M; e += GEMV_THREADS) {
            const int m = e / cols, col = e % cols;
            const int ti = col / GEMV_TILE, cc = col % GEMV_TILE;
            const int oc = (blockIdx.x * wc + ti) * GEMV_TILE + cc;
            if (oc < OC) {
                float v = 0.0f;
                for (int kk = 0; kk < wk; kk++) v += part[kk * wc + ti][cc][m];
                if (residual != nullptr) v += to_float(residual[m * ld + oc]);
                out[m * ld + oc] = from_float<S>(v);
            }
        }
    }
}

#ifndef GPUBENCH_BF16
extern "C" __global__ void __launch_bounds__(GEMV_THREADS, GEMV_MIN_BLOCKS)
    matvec_forward(float* out, const float* inp, const float* w, const float* residual, int M, int C, int OC, int ld,
                   int wk, int nt) {
    matvec_forward_t(out, inp, w, residual, M, C, OC, ld, wk, nt);
}
#else
extern "C" __global__ void __launch_bounds__(GEMV_THREADS, GEMV_MIN_BLOCKS)
    matvec_forward_bf16(__nv_bfloat16* out, const __nv_bfloat16* inp, const __nv_bfloat16* w,
                        const __nv_bfloat16* residual, int M, int C, int OC, int ld, int wk, int nt) {
    matvec_forward_t(out, inp, w, residual, M, C, OC, ld, wk, nt);
}
#endif
