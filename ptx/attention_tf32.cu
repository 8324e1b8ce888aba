// nvcc-arch: compute_80
// attention_tf32.cu: causal grouped-query self-attention, forward and
// backward, fp32 in memory with every product on the TF32 tensor cores:
// mma.sync m16n8k8 .tf32 with fp32 accumulation, ldmatrix and cp.async, in
// the FlashAttention-2 style of attention_mma.cu. The sm_80 tier: it runs
// on Ampere and on every later GPU, Hopper included. It is --dtype=tf32's
// attention ("fp32 storage, products on tensor cores in TF32").
//
// Semantics, layouts and arguments are those of attention.cu, so the two
// modules' outputs mean the same and attention.cu's fp32
// attention_backward_preprocess (d = Σ dout·out per head row) serves this
// backward: grouped-query attention on qkv (B,T,W) fp32 rows [q (NH·hs) |
// k (NKV·hs) | v (NKV·hs)], W = (NH+2·NKV)·hs, query head h in columns
// h*hs..(h+1)*hs of q and key/value head h/(NH/NKV) of k and v, hs = C/NH,
// scale = 1/sqrt(hs), query t attends keys 0..t.
//
//   attention_forward_tf32         out (B,T,C) fp32, heads concatenated;
//                                  lse (B,NH,T) fp32, natural-log logsumexp
//                                  of each query row's scaled scores.
//   attention_backward_dkdv_tf32   the k and v parts of dqkv (overwritten),
//                                  a kv head's summed over its group.
//   attention_backward_dq_tf32     the q part of dqkv (overwritten).
//
// Head size 64 only (ATT_TF32_D); the Go side refuses others and the model
// runs attention.cu for them. Each product's operands are rounded to TF32
// (cvt.rna.tf32.f32: 10 mantissa bits, to nearest, ties away from zero),
// its sums are fp32; softmax statistics, lse and d stay fp32. As in
// FlashAttention the probabilities P (and dS in the backward) are rounded
// to TF32 to be the A operand of the next product. docs/attention.md
// derives the error that costs.
//
// Tensor-core fragments (PTX ISA, mma.m16n8k8 with .tf32): in a warp, lane
// = 4·g + t (g = lane/4, t = lane%4). The 16×8 accumulator holds rows g and
// g+8, columns 2t and 2t+1 (c0..c3 = (g,2t) (g,2t+1) (g+8,2t) (g+8,2t+1));
// the A operand (16×8) holds (g,t) (g+8,t) (g,t+4) (g+8,t+4); the B operand
// (8×8) holds (k t, n g) and (k t+4, n g). A 32-bit element is two b16s, so
// ldmatrix (.b16, no .trans) of an 8×8 b16 matrix, 8 rows of 4 floats,
// gives lane 4g+t row g, float t: exactly the A fragment of a tile stored
// [m][k] and the B fragment of one stored [n][k] (K in S = Q·Kᵀ, Q and dO
// in the backward's Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ).
//
// The accumulator's columns (2t, 2t+1) are not the A operand's (t, t+4),
// but a product's k index may be permuted freely if its B rows follow: the
// products that take P or dS as A (P·V, Pᵀ·dO, dSᵀ·Q, dS·K) give A's k
// slot t the accumulator's column 2t and slot t+4 its column 2t+1, and read
// the B operand's rows 2t and 2t+1 to match (b0 = X[2t][g], b1 = X[2t+1][g]
// of a tile X stored [k][n]). So P stays in registers, with no trip through
// shared memory; those B elements, one float a register, are scalar shared
// loads (ldmatrix .trans would transpose 16-bit halves).
//
// Shared tiles are rows of hs floats padded to ATT_TF32_ROW = hs+4 floats
// (272 bytes = 17 16-byte chunks): 8 consecutive rows at one chunk are 8
// different 16-byte bank groups (ldmatrix phases, cp.async stores), and the
// scalar loads X[2t][g], t < 4, g < 8, fall on banks 8t+g: all 32 distinct.
//
// Rounding. Every tile a block streams is rounded to TF32 once, in shared
// memory, by the threads whose cp.async copies filled it, between their
// wait and the barrier that publishes the tile (a thread sees its own
// copies after cp.async.wait_group). cvt.rna.tf32.f32 is three instructions
// on sm_80 and sm_90 (FSETP, IADD, LOP3); rounding each element once in
// shared memory costs a quarter of rounding it in every warp that loads it.
// P and dS are rounded in registers, once each.
//
// Pipelining, block order, determinism, edges: as attention_mma.cu. The
// streamed tiles are double-buffered with cp.async (tile j+1 issued right
// after the barrier that opens tile j), every output element is summed by
// one thread in a fixed order (no atomics; the backward recomputes P in
// both kernels), rows past T are zero-filled by the copies and never
// stored. Shared memory is dynamic (ATT_TF32_*_SMEM bytes, mirrored in
// ptx/constants_tf32_attention.go); the forward's is over 48 KB.
#include "common.cuh"

// The block of every entry: 4 warps, each owning 16 rows of the block's
// own tile.
static constexpr int ATT_TF32_THREADS = 128;
static constexpr int ATT_TF32_WARPS = ATT_TF32_THREADS / WARP_SIZE;
// The one head size, and a shared tile row in floats (padded, see above).
static constexpr int ATT_TF32_D = 64;
static constexpr int ATT_TF32_ROW = ATT_TF32_D + 4;

// Tiles. R: rows of the block's own tile (query rows for the forward and
// dq, key rows for dkdv), which sets the grid's x = ceil(T/R); S: rows of
// each tile it streams (keys, or queries for dkdv). Every kernel keeps
// 16 rows a warp: a 16×64 fp32 operand held in registers (Q in the
// forward; K and V in dkdv; Q and dO in dq) takes 32 of them and so does
// an accumulator, which leaves room for 32- or 64-key score tiles: the
// forward and dq fit 168 registers (3 blocks an SM), dkdv, with four such
// arrays, ~230 (2). On an H200, 32-key forward tiles at 4 blocks an SM
// and dkdv forced to 3 blocks (spilling) were both slower
// (docs/attention.md).
static constexpr int ATT_TF32_FWD_R = 64;
static constexpr int ATT_TF32_FWD_S = 64;
static constexpr int ATT_TF32_DKDV_R = 64;
static constexpr int ATT_TF32_DKDV_S = 32;
static constexpr int ATT_TF32_DQ_R = 64;
static constexpr int ATT_TF32_DQ_S = 32;

// Dynamic shared bytes. forward: K and V double-buffered; the Q tile is
// staged in buffer 1 (its rows = a K tile's), read into registers before
// tile 1 is issued there.
static constexpr int ATT_TF32_FWD_SMEM = 4 * ATT_TF32_FWD_S * ATT_TF32_ROW * 4;
// dkdv: the ring of two (Q, dO) slots, which first stages K and V (their
// fragments then live in registers); then lse and d of both slots.
static constexpr int ATT_TF32_DKDV_SMEM = 2 * 2 * ATT_TF32_DKDV_S * ATT_TF32_ROW * 4 + 2 * 2 * ATT_TF32_DKDV_S * 4;
// dq: the ring of two (K, V) slots, which first stages Q and dO.
static constexpr int ATT_TF32_DQ_SMEM = 2 * 2 * ATT_TF32_DQ_S * ATT_TF32_ROW * 4;

static_assert(ATT_TF32_FWD_R == 16 * ATT_TF32_WARPS && ATT_TF32_DKDV_R == 16 * ATT_TF32_WARPS &&
                  ATT_TF32_DQ_R == 16 * ATT_TF32_WARPS,
              "16 rows a warp");
static_assert(3 * ATT_TF32_FWD_SMEM <= 227 * 1024 && 3 * ATT_TF32_DQ_SMEM <= 227 * 1024 &&
                  2 * ATT_TF32_DKDV_SMEM <= 227 * 1024,
              "the blocks an SM the __launch_bounds__ ask for fit its 227 KB");
static_assert(ATT_TF32_FWD_R <= ATT_TF32_FWD_S, "forward: Q is staged in a K buffer");
static_assert(2 * ATT_TF32_DKDV_R <= 2 * 2 * ATT_TF32_DKDV_S, "dkdv: K and V staged in the ring");
static_assert(2 * ATT_TF32_DQ_R <= 2 * 2 * ATT_TF32_DQ_S, "dq: Q and dO staged in the ring");

// ---------------------------------------------------------------------------
// PTX wrappers: ampere.cuh's shared ones, then TF32's own
// (scripts/attnsim.sh replaces this section, the include with it, by host
// emulations). volatile keeps the shared accesses in program order with
// each other and the barriers; mma and cvt are pure.
// BEGIN PTX WRAPPERS

#include "ampere.cuh"

__device__ __forceinline__ unsigned lds32(unsigned addr) {
    unsigned v;
    asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(addr));
    return v;
}
__device__ __forceinline__ float4 lds128(unsigned addr) {
    float4 v;
    asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];\n" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "r"(addr));
    return v;
}
__device__ __forceinline__ void sts128(unsigned addr, unsigned x, unsigned y, unsigned z, unsigned w) {
    asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(x), "r"(y), "r"(z), "r"(w) : "memory");
}

// mma1688 is d += a·b for a 16×8 tf32 A, an 8×8 tf32 B, a 16×8 fp32 d.
__device__ __forceinline__ void mma1688(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// to_tf32 rounds x to TF32 (to nearest, ties away; NaN and Inf kept), the
// 32-bit pattern the mma reads.
__device__ __forceinline__ unsigned to_tf32(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}

// END PTX WRAPPERS
// ---------------------------------------------------------------------------

// The scores are scaled by scale·log2(e) so that every exponential is one
// ex2: exp(scale·(s − m)) = 2^(s·sl2 − m·sl2).
__device__ __forceinline__ float log2e() { return 1.4426950408889634f; }

// tf32_off is the byte offset of float col of row r in a padded tile.
__device__ __forceinline__ unsigned tf32_off(int r, int col) {
    return static_cast<unsigned>((r * ATT_TF32_ROW + col) * 4);
}

// tile_bytes is the shared size of a padded tile of rows rows.
__host__ __device__ constexpr unsigned tile_bytes(int rows) { return static_cast<unsigned>(rows * ATT_TF32_ROW * 4); }

// The 16-byte chunks of a tile of ROWS rows, spread over the block: thread
// threadIdx.x copies and rounds chunk threadIdx.x % CH (floats 4c..4c+3)
// of rows threadIdx.x / CH + STEP·it, it < PASSES. load_tile and
// round_tile use the same map, so each thread rounds what it copied.
template <int ROWS> struct TileChunks {
    static constexpr int CH = ATT_TF32_D / 4, STEP = ATT_TF32_THREADS / CH, PASSES = ROWS / STEP;
    static_assert(ATT_TF32_THREADS % CH == 0 && ROWS % STEP == 0, "whole passes of the block");
};

// load_tile issues the cp.async copies of rows row0..row0+ROWS-1 of one
// head into the tile at shared address dst: src points at column 0 of the
// head in row 0, rows stride floats apart. Rows at or past T are zeros
// (their copies read nothing; the address given is src's, in bounds). One
// 64-bit multiply a call, then a pointer step a pass.
template <int ROWS>
__device__ __forceinline__ void load_tile(unsigned dst, const float* src, int row0, int T, long long stride) {
    using TC = TileChunks<ROWS>;
    const int r = threadIdx.x / TC::CH, c = threadIdx.x % TC::CH;
    const float* p = src + (row0 + r) * stride + 4 * c;
    const long long step = TC::STEP * stride;
    const unsigned d = dst + tf32_off(r, 4 * c);
#pragma unroll
    for (int it = 0; it < TC::PASSES; it++) {
        const bool ok = row0 + r + TC::STEP * it < T;
        cp_async16(d + tf32_off(TC::STEP * it, 0), ok ? p : src, ok);
        p += step;
    }
}

// round_tile rounds to TF32, in place, the chunks of the tile at dst that
// this thread's load_tile copied; call it after cp_async_wait_all and
// before the barrier that hands the tile to the other warps.
template <int ROWS> __device__ __forceinline__ void round_tile(unsigned dst) {
    using TC = TileChunks<ROWS>;
    const unsigned d = dst + tf32_off(threadIdx.x / TC::CH, 4 * (threadIdx.x % TC::CH));
#pragma unroll
    for (int it = 0; it < TC::PASSES; it++) {
        const unsigned a = d + tf32_off(TC::STEP * it, 0);
        const float4 v = lds128(a);
        sts128(a, to_tf32(v.x), to_tf32(v.y), to_tf32(v.z), to_tf32(v.w));
    }
}

// a_addr: lane's ldmatrix row address for the A fragment of k-step ks
// (floats 8ks..8ks+7) of rows row0..row0+15 of a tile stored [m][k]:
// matrices (rows 0-7, k 0-3), (rows 8-15, k 0-3), (rows 0-7, k 4-7),
// (rows 8-15, k 4-7) = a0..a3.
__device__ __forceinline__ unsigned a_addr(unsigned tile, int row0, int ks, int lane) {
    return tile + tf32_off(row0 + (lane & 15), 8 * ks + 4 * (lane >> 4));
}
// b_addr: B fragments of two 8-wide n tiles (rows n0..n0+15) at k-step ks
// of a tile stored [n][k]: matrices (n 0-7, k 0-3), (n 0-7, k 4-7),
// (n 8-15, k 0-3), (n 8-15, k 4-7) = b0, b1 of tile n0 and of n0+8.
__device__ __forceinline__ unsigned b_addr(unsigned tile, int n0, int ks, int lane) {
    return tile + tf32_off(n0 + (lane & 7) + ((lane >> 4) << 3), 8 * ks + 4 * ((lane >> 3) & 1));
}
// bk_addr: lane's address of b0 = X[k0 + 2t][n0 + g] of a tile X stored
// [k][n], for a product whose k index is permuted as the accumulator's
// columns (b1 is the next row, ATT_TF32_ROW floats on).
__device__ __forceinline__ unsigned bk_addr(unsigned tile, int k0, int n0, int lane) {
    return tile + tf32_off(k0 + 2 * (lane & 3), n0 + (lane >> 2));
}

// a_from_acc turns the accumulator of an 8-column tile into the A operand
// (rounded to TF32) of a product over those 8 columns, k permuted: slot t
// is column 2t, slot t+4 column 2t+1.
__device__ __forceinline__ void a_from_acc(unsigned (&a)[4], const float (&c)[4]) {
    a[0] = to_tf32(c[0]);
    a[1] = to_tf32(c[2]);
    a[2] = to_tf32(c[1]);
    a[3] = to_tf32(c[3]);
}

// mma_acc_b accumulates, for every 8-wide n tile ot of the head, d[ot] +=
// A·X[k0..k0+7][8ot..8ot+7] with A from a_from_acc and X stored [k][n].
__device__ __forceinline__ void mma_acc_b(float (&d)[ATT_TF32_D / 8][4], const unsigned (&a)[4], unsigned x, int k0,
                                          int lane) {
    const unsigned p = bk_addr(x, k0, 0, lane);
#pragma unroll
    for (int ot = 0; ot < ATT_TF32_D / 8; ot++) {
        const unsigned b0 = lds32(p + 4 * 8 * ot), b1 = lds32(p + 4 * (8 * ot + ATT_TF32_ROW));
        mma1688(d[ot], a, b0, b1);
    }
}

// block_order maps a block of the grid (tiles, heads, B) to its (tile,
// head, batch) with the tile index varying slowest in launch order, as in
// attention_mma.cu: with the longest tiles numbered 0, every head's
// longest tile starts before any shorter one.
__device__ __forceinline__ void block_order(int& tile, int& h, int& b) {
    const int heads = gridDim.y * gridDim.z;
    const int lin = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    tile = lin / heads;
    h = lin % heads % gridDim.y;
    b = lin % heads / gridDim.y;
}

// store_rows writes a warp's 16×D accumulator rows (row0 + g, row0 + g + 8)
// times mul to dst (row r at dst + r·stride), rows at or past T skipped;
// each lane its column pairs as 8-byte words.
__device__ __forceinline__ void store_rows(float* dst, long long stride, const float (&acc)[ATT_TF32_D / 8][4],
                                           float mul, int row0, int T, int lane) {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int rh = 0; rh < 2; rh++) {
        const int r = row0 + g + 8 * rh;
        if (r >= T) continue;
        float* p = dst + r * stride + 2 * t;
#pragma unroll
        for (int ot = 0; ot < ATT_TF32_D / 8; ot++)
            *reinterpret_cast<float2*>(p + 8 * ot) = make_float2(acc[ot][2 * rh] * mul, acc[ot][2 * rh + 1] * mul);
    }
}

// ---------------------------------------------------------------------------
// Forward. One block per (query tile, head, batch); each warp keeps its 16
// query rows' Q fragments in registers with, per row, the running max m
// (of the raw scores), the running sum l (each lane its own columns' part,
// summed over the row's 4 lanes at the end) and the output accumulator o.
// K and V tiles stream through shared memory up to the diagonal.
__device__ __forceinline__ void forward_tf32(unsigned char* smem, float* __restrict__ out, float* __restrict__ lse,
                                             const float* __restrict__ qkv, int T, int C, int NH, int NKV) {
    constexpr int D = ATT_TF32_D, BM = ATT_TF32_FWD_R, BN = ATT_TF32_FWD_S;
    constexpr int KS = D / 8, NT = BN / 8, OT = D / 8;
    constexpr unsigned TB = tile_bytes(BN);
    const unsigned base = smem_addr(smem);
    // Buffer j&1 holds K at base + 2·TB·(j&1) and V right after it.
    const unsigned sQ = base + 2 * TB;

    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    const int g = lane >> 2, tq = lane & 3;
    // Late query tiles see the most keys; they start first (block_order).
    int qt, h, b;
    block_order(qt, h, b);
    qt = gridDim.x - 1 - qt;
    const int q0 = qt * BM;
    const long long W = static_cast<long long>(NH + 2 * NKV) * D;
    const int kvh = h / (NH / NKV);
    const float* qbase = qkv + b * T * W + h * D;
    const float* kbase = qkv + b * T * W + (NH + kvh) * D;
    const float* vbase = kbase + NKV * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float sl2 = scale * log2e();
    const int wq0 = q0 + warp * 16; // the warp's first query row

    // Keys at or past min(q0+BM, T) are seen by no query of this tile below T.
    const int ntiles = (min(q0 + BM, T) + BN - 1) / BN;

    load_tile<BM>(sQ, qbase, q0, T, W);
    load_tile<BN>(base, kbase, 0, T, W);
    load_tile<BN>(base + TB, vbase, 0, T, W);
    cp_async_commit();

    unsigned qf[KS][4];
    float o[OT][4], m[2], l[2];
#pragma unroll
    for (int rh = 0; rh < 2; rh++) {
        m[rh] = -INFINITY;
        l[rh] = 0.0f;
    }
#pragma unroll
    for (int ot = 0; ot < OT; ot++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[ot][e] = 0.0f;

    for (int j = 0; j < ntiles; j++) {
        const unsigned kb = base + (j & 1) * 2 * TB, vb = kb + TB;
        cp_async_wait_all();
        if (j == 0) round_tile<BM>(sQ);
        round_tile<BN>(kb);
        round_tile<BN>(vb);
        __syncthreads(); // tile j landed, rounded; every warp is done with tile j-1's buffers
        if (j == 0) {
#pragma unroll
            for (int ks = 0; ks < KS; ks++) ldsm_x4(qf[ks], a_addr(sQ, warp * 16, ks, lane));
            __syncthreads(); // Q's buffer becomes tile 1's
        }
        if (j + 1 < ntiles) {
            const unsigned nb = base + ((j + 1) & 1) * 2 * TB;
            load_tile<BN>(nb, kbase, (j + 1) * BN, T, W);
            load_tile<BN>(nb + TB, vbase, (j + 1) * BN, T, W);
        }
        cp_async_commit();

        const int k0 = j * BN;
        // Keys all past the warp's rows, or rows all past T: nothing to add.
        // (Tile 0 always runs for a warp with a row below T, so m is finite
        // from then on and no exponential below sees −inf − −inf.)
        if (k0 > wq0 + 15 || wq0 >= T) continue;

        // S = Q·Kᵀ.
        float s[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[nt][e] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ks++) {
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                unsigned kf[4];
                ldsm_x4(kf, b_addr(kb, 16 * np, ks, lane));
                mma1688(s[2 * np], qf[ks], kf[0], kf[1]);
                mma1688(s[2 * np + 1], qf[ks], kf[2], kf[3]);
            }
        }

        // Causal mask, only where the tile crosses the warp's diagonal.
        if (k0 + BN - 1 > wq0) {
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int q = wq0 + g + 8 * (e >> 1);
                    const int k = k0 + 8 * nt + 2 * tq + (e & 1);
                    if (k > q) s[nt][e] = -INFINITY;
                }
        }

        // Online softmax. A row's max is reduced over its 4 lanes, so all
        // four rescale by the same factor.
#pragma unroll
        for (int rh = 0; rh < 2; rh++) {
            float mx = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) mx = fmaxf(mx, fmaxf(s[nt][2 * rh], s[nt][2 * rh + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
            const float mnew = fmaxf(m[rh], mx);
            const float corr = ex2((m[rh] - mnew) * sl2); // 0 on the first tile
            const float msc = mnew * sl2;
            float rs = 0.0f;
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const float p = ex2(fmaf(s[nt][2 * rh + e], sl2, -msc)); // masked: 2^-inf = 0
                    s[nt][2 * rh + e] = p;
                    rs += p;
                }
            l[rh] = l[rh] * corr + rs;
            m[rh] = mnew;
#pragma unroll
            for (int ot = 0; ot < OT; ot++) {
                o[ot][2 * rh] *= corr;
                o[ot][2 * rh + 1] *= corr;
            }
        }

        // o += P·V, P rounded to TF32 in registers, 8 keys a k-step.
#pragma unroll
        for (int kk = 0; kk < NT; kk++) {
            unsigned pa[4];
            a_from_acc(pa, s[kk]);
            mma_acc_b(o, pa, vb, 8 * kk, lane);
        }
    }

    float* lrow = lse + (static_cast<long long>(b) * NH + h) * T;
    float inv[2];
#pragma unroll
    for (int rh = 0; rh < 2; rh++) {
        float lt = l[rh];
        lt += __shfl_xor_sync(0xffffffff, lt, 1);
        lt += __shfl_xor_sync(0xffffffff, lt, 2);
        inv[rh] = 1.0f / lt;
        const int q = wq0 + g + 8 * rh;
        if (tq == 0 && q < T) lrow[q] = m[rh] * scale + logf(lt);
    }
#pragma unroll
    for (int ot = 0; ot < OT; ot++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[ot][e] *= inv[e >> 1];
    store_rows(out + b * T * static_cast<long long>(C) + h * D, C, o, 1.0f, wq0, T, lane);
}

// attention_forward_tf32: grid (ceil(T/ATT_TF32_FWD_R), NH, B),
// ATT_TF32_THREADS threads, ATT_TF32_FWD_SMEM bytes of dynamic shared
// memory. hs = C/NH must be ATT_TF32_D (other head sizes write nothing).
extern "C" __global__ void __launch_bounds__(ATT_TF32_THREADS, 3)
    attention_forward_tf32(float* out, float* lse, const float* qkv, int B, int T, int C, int NH, int NKV) {
    extern __shared__ __align__(128) unsigned char smem[];
    if (C / NH != ATT_TF32_D) return;
    forward_tf32(smem, out, lse, qkv, T, C, NH, NKV);
}

// ---------------------------------------------------------------------------
// dK and dV. One block per (key tile, kv head, batch); each warp owns 16
// keys and keeps their K and V fragments in registers (A operands) with the
// dK and dV accumulators. The block loops over the query heads of the kv
// head's group in order, and for each over the query tiles from the one
// that holds query k0 to T: one sequence of tiles, (Q, dO, lse, d)
// double-buffered across the heads too, and per tile
//   Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ                       (keys × queries)
//   Pᵀ = 2^(Sᵀ·sl2 − lse·log2e), masked where query < key
//   dSᵀ = Pᵀ∘(dPᵀ − d)
//   dV += Pᵀ·dO, dK += dSᵀ·Q                       (Pᵀ, dSᵀ rounded to TF32)
// and stores dK·scale and dV. Each element is summed by one lane, in
// (head, query) order.
__device__ __forceinline__ void dkdv_tf32(unsigned char* smem, float* __restrict__ dqkv, const float* __restrict__ dvec,
                                          const float* __restrict__ dout, const float* __restrict__ qkv,
                                          const float* __restrict__ lse, int T, int C, int NH, int NKV) {
    constexpr int D = ATT_TF32_D, BK = ATT_TF32_DKDV_R, BQ = ATT_TF32_DKDV_S;
    static_assert(BQ % 16 == 0 && BQ <= ATT_TF32_THREADS, "dkdv: pairs of n tiles of queries, one lse copy a thread");
    constexpr int KS = D / 8, NT = BQ / 8, OT = D / 8;
    constexpr unsigned TB = tile_bytes(BQ), KVB = tile_bytes(BK);
    const unsigned base = smem_addr(smem);
    float* Ls = reinterpret_cast<float*>(smem + 4 * TB); // [2][BQ]
    float* Ds = Ls + 2 * BQ;                              // [2][BQ]

    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    const int g = lane >> 2, tq = lane & 3;
    // Early key tiles see the most queries; they start first (block_order).
    int kt, kvh, b;
    block_order(kt, kvh, b);
    const int k0 = kt * BK, group = NH / NKV;
    const long long W = static_cast<long long>(NH + 2 * NKV) * D;
    const float* kbase = qkv + b * T * W + (NH + kvh) * D;
    const float* vbase = kbase + NKV * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float sl2 = scale * log2e();
    const int wk0 = k0 + warp * 16; // the warp's first key

    // K and V once, rounded, into registers.
    load_tile<BK>(base, kbase, k0, T, W);
    load_tile<BK>(base + KVB, vbase, k0, T, W);
    cp_async_commit();
    cp_async_wait_all();
    round_tile<BK>(base);
    round_tile<BK>(base + KVB);
    __syncthreads();
    unsigned kf[KS][4], vf[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        ldsm_x4(kf[ks], a_addr(base, warp * 16, ks, lane));
        ldsm_x4(vf[ks], a_addr(base + KVB, warp * 16, ks, lane));
    }
    __syncthreads(); // the staging area becomes the ring

    float dk[OT][4], dv[OT][4];
#pragma unroll
    for (int ot = 0; ot < OT; ot++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            dk[ot][e] = 0.0f;
            dv[ot][e] = 0.0f;
        }

    // Queries before k0 attend none of these keys. Tile i of the sequence
    // is query tile i % ntiles of the group's query head i / ntiles.
    const int qstart = (k0 / BQ) * BQ;
    const int ntiles = (T - qstart + BQ - 1) / BQ;
    auto issue = [&](int i) {
        const int slot = i & 1, qq0 = qstart + i % ntiles * BQ;
        const int h = kvh * group + i / ntiles;
        const float* qbase = qkv + b * T * W + h * D;
        const float* gbase = dout + b * T * static_cast<long long>(C) + h * D;
        const float* lrow = lse + (static_cast<long long>(b) * NH + h) * T;
        const float* drow = dvec + (static_cast<long long>(b) * NH + h) * T;
        const unsigned sQ = base + slot * 2 * TB;
        load_tile<BQ>(sQ, qbase, qq0, T, W);
        load_tile<BQ>(sQ + TB, gbase, qq0, T, C);
        if (threadIdx.x < BQ) {
            // Rows past T get lse = d = 0: their zero Q and dO rows then
            // give P = 1 but dP = 0 and no contribution to dV or dK.
            const int q = qq0 + threadIdx.x;
            const bool ok = q < T;
            cp_async4(smem_addr(&Ls[slot * BQ + threadIdx.x]), lrow + (ok ? q : 0), ok);
            cp_async4(smem_addr(&Ds[slot * BQ + threadIdx.x]), drow + (ok ? q : 0), ok);
        }
    };
    issue(0);
    cp_async_commit();

    for (int i = 0; i < group * ntiles; i++) {
        const int qq0 = qstart + i % ntiles * BQ, slot = i & 1;
        const unsigned sQ = base + slot * 2 * TB, sG = sQ + TB;
        cp_async_wait_all();
        round_tile<BQ>(sQ);
        round_tile<BQ>(sG);
        __syncthreads();
        if (i + 1 < group * ntiles) issue(i + 1);
        cp_async_commit();

        // Queries all before the warp's keys, or keys all past T.
        if (qq0 + BQ - 1 < wk0 || wk0 >= T) continue;
        const float* ls = Ls + slot * BQ;
        const float* ds = Ds + slot * BQ;

        float st[NT][4], dpt[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                st[nt][e] = 0.0f;
                dpt[nt][e] = 0.0f;
            }
#pragma unroll
        for (int ks = 0; ks < KS; ks++) {
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                unsigned qb[4], gb[4];
                ldsm_x4(qb, b_addr(sQ, 16 * np, ks, lane));
                mma1688(st[2 * np], kf[ks], qb[0], qb[1]);
                mma1688(st[2 * np + 1], kf[ks], qb[2], qb[3]);
                ldsm_x4(gb, b_addr(sG, 16 * np, ks, lane));
                mma1688(dpt[2 * np], vf[ks], gb[0], gb[1]);
                mma1688(dpt[2 * np + 1], vf[ks], gb[2], gb[3]);
            }
        }

        const bool masked = qq0 < wk0 + 15; // some query before some key
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int ce = 0; ce < 2; ce++) {
                const int c = 8 * nt + 2 * tq + ce;
                const float lsc = ls[c] * log2e(), dd = ds[c];
#pragma unroll
                for (int rh = 0; rh < 2; rh++) {
                    const int e = 2 * rh + ce;
                    float p = ex2(fmaf(st[nt][e], sl2, -lsc));
                    if (masked && qq0 + c < wk0 + g + 8 * rh) p = 0.0f;
                    st[nt][e] = p;
                    dpt[nt][e] = p * (dpt[nt][e] - dd);
                }
            }

#pragma unroll
        for (int kk = 0; kk < NT; kk++) {
            unsigned pa[4], sa[4];
            a_from_acc(pa, st[kk]);
            a_from_acc(sa, dpt[kk]);
            mma_acc_b(dv, pa, sG, 8 * kk, lane);
            mma_acc_b(dk, sa, sQ, 8 * kk, lane);
        }
    }

    float* rows = dqkv + b * T * W + (NH + kvh) * D;
    store_rows(rows, W, dk, scale, wk0, T, lane);
    store_rows(rows + NKV * D, W, dv, 1.0f, wk0, T, lane);
}

// attention_backward_dkdv_tf32: grid (ceil(T/ATT_TF32_DKDV_R), NKV, B),
// ATT_TF32_THREADS threads, ATT_TF32_DKDV_SMEM bytes of dynamic shared
// memory. d is the output of attention.cu's attention_backward_preprocess,
// lse that of attention_forward_tf32.
extern "C" __global__ void __launch_bounds__(ATT_TF32_THREADS)
    attention_backward_dkdv_tf32(float* dqkv, const float* d, const float* dout, const float* qkv, const float* lse,
                                 int B, int T, int C, int NH, int NKV) {
    extern __shared__ __align__(128) unsigned char smem[];
    if (C / NH != ATT_TF32_D) return;
    dkdv_tf32(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV);
}

// ---------------------------------------------------------------------------
// dQ. One block per (query tile, head, batch); each warp owns 16 queries
// and keeps their Q and dO fragments, lse and d in registers with the dQ
// accumulator. The block loops over key tiles up to the diagonal, (K, V)
// double-buffered, and per tile
//   S = Q·Kᵀ, dP = dO·Vᵀ, P = 2^(S·sl2 − lse·log2e) (masked), dS = P∘(dP − d)
//   dQ += dS·K                                     (dS rounded to TF32)
// and stores dQ·scale.
__device__ __forceinline__ void dq_tf32(unsigned char* smem, float* __restrict__ dqkv, const float* __restrict__ dvec,
                                        const float* __restrict__ dout, const float* __restrict__ qkv,
                                        const float* __restrict__ lse, int T, int C, int NH, int NKV) {
    constexpr int D = ATT_TF32_D, BQ = ATT_TF32_DQ_R, BK = ATT_TF32_DQ_S;
    static_assert(BK % 16 == 0, "dq: pairs of n tiles of keys");
    constexpr int KS = D / 8, NT = BK / 8, OT = D / 8;
    constexpr unsigned TB = tile_bytes(BK), QB = tile_bytes(BQ);
    const unsigned base = smem_addr(smem);

    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    const int g = lane >> 2, tq = lane & 3;
    // Late query tiles see the most keys; they start first (block_order).
    int qt, h, b;
    block_order(qt, h, b);
    qt = gridDim.x - 1 - qt;
    const int q0 = qt * BQ;
    const long long W = static_cast<long long>(NH + 2 * NKV) * D;
    const int kvh = h / (NH / NKV);
    const float* qbase = qkv + b * T * W + h * D;
    const float* kbase = qkv + b * T * W + (NH + kvh) * D;
    const float* vbase = kbase + NKV * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float sl2 = scale * log2e();
    const int wq0 = q0 + warp * 16; // the warp's first query

    // Q and dO once, rounded, into registers.
    load_tile<BQ>(base, qbase, q0, T, W);
    load_tile<BQ>(base + QB, dout + b * T * static_cast<long long>(C) + h * D, q0, T, C);
    cp_async_commit();
    float lsc[2], dd[2];
#pragma unroll
    for (int rh = 0; rh < 2; rh++) {
        // Rows past T: lse = d = 0, with zero Q and dO rows, add nothing.
        const int q = wq0 + g + 8 * rh;
        const long long at = (static_cast<long long>(b) * NH + h) * T + q;
        lsc[rh] = q < T ? lse[at] * log2e() : 0.0f;
        dd[rh] = q < T ? dvec[at] : 0.0f;
    }
    cp_async_wait_all();
    round_tile<BQ>(base);
    round_tile<BQ>(base + QB);
    __syncthreads();
    unsigned qf[KS][4], gf[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        ldsm_x4(qf[ks], a_addr(base, warp * 16, ks, lane));
        ldsm_x4(gf[ks], a_addr(base + QB, warp * 16, ks, lane));
    }
    __syncthreads(); // the staging area becomes the ring

    float dq[OT][4];
#pragma unroll
    for (int ot = 0; ot < OT; ot++)
#pragma unroll
        for (int e = 0; e < 4; e++) dq[ot][e] = 0.0f;

    const int ntiles = (min(q0 + BQ, T) + BK - 1) / BK;
    load_tile<BK>(base, kbase, 0, T, W);
    load_tile<BK>(base + TB, vbase, 0, T, W);
    cp_async_commit();

    for (int j = 0; j < ntiles; j++) {
        const unsigned sK = base + (j & 1) * 2 * TB, sV = sK + TB;
        cp_async_wait_all();
        round_tile<BK>(sK);
        round_tile<BK>(sV);
        __syncthreads();
        if (j + 1 < ntiles) {
            const unsigned nb = base + ((j + 1) & 1) * 2 * TB;
            load_tile<BK>(nb, kbase, (j + 1) * BK, T, W);
            load_tile<BK>(nb + TB, vbase, (j + 1) * BK, T, W);
        }
        cp_async_commit();

        const int k0 = j * BK;
        if (k0 > wq0 + 15 || wq0 >= T) continue;

        float s[NT][4], dp[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                s[nt][e] = 0.0f;
                dp[nt][e] = 0.0f;
            }
#pragma unroll
        for (int ks = 0; ks < KS; ks++) {
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                unsigned kb[4], vb[4];
                ldsm_x4(kb, b_addr(sK, 16 * np, ks, lane));
                mma1688(s[2 * np], qf[ks], kb[0], kb[1]);
                mma1688(s[2 * np + 1], qf[ks], kb[2], kb[3]);
                ldsm_x4(vb, b_addr(sV, 16 * np, ks, lane));
                mma1688(dp[2 * np], gf[ks], vb[0], vb[1]);
                mma1688(dp[2 * np + 1], gf[ks], vb[2], vb[3]);
            }
        }

        const bool masked = k0 + BK - 1 > wq0; // some key past some query
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int rh = e >> 1;
                float p = ex2(fmaf(s[nt][e], sl2, -lsc[rh]));
                if (masked && k0 + 8 * nt + 2 * tq + (e & 1) > wq0 + g + 8 * rh) p = 0.0f;
                s[nt][e] = p * (dp[nt][e] - dd[rh]);
            }

#pragma unroll
        for (int kk = 0; kk < NT; kk++) {
            unsigned sa[4];
            a_from_acc(sa, s[kk]);
            mma_acc_b(dq, sa, sK, 8 * kk, lane);
        }
    }

    store_rows(dqkv + b * T * W + h * D, W, dq, scale, wq0, T, lane);
}

// attention_backward_dq_tf32: grid (ceil(T/ATT_TF32_DQ_R), NH, B),
// ATT_TF32_THREADS threads, ATT_TF32_DQ_SMEM bytes of dynamic shared
// memory. d is the output of attention.cu's attention_backward_preprocess,
// lse that of attention_forward_tf32.
extern "C" __global__ void __launch_bounds__(ATT_TF32_THREADS, 3)
    attention_backward_dq_tf32(float* dqkv, const float* d, const float* dout, const float* qkv, const float* lse, int B,
                               int T, int C, int NH, int NKV) {
    extern __shared__ __align__(128) unsigned char smem[];
    if (C / NH != ATT_TF32_D) return;
    dq_tf32(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV);
}
