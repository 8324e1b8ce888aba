// nvcc-arch: compute_80
// attention_mma.cu: causal grouped-query self-attention, forward and backward,
// bf16 on tensor cores: mma.sync m16n8k16 with fp32 accumulation, ldmatrix
// and cp.async, in the FlashAttention-2 style. The sm_80 tier: it runs on
// Ampere and on every later GPU, Hopper included.
//
// Semantics are those of attention.cu, in bf16: grouped-query attention on
// qkv (B,T,W) rows [q (NH·hs) | k (NKV·hs) | v (NKV·hs)], W = (NH+2·NKV)·hs,
// query head h in columns h*hs..(h+1)*hs of q and key/value head
// h/(NH/NKV) of k and v, hs = C/NH, scale = 1/sqrt(hs), query t attends
// keys 0..t.
//
//   attention_forward_bf16              out (B,T,C) bf16, heads concatenated;
//                                       lse (B,NH,T) fp32, natural-log
//                                       logsumexp of each query row's scaled
//                                       scores.
//   attention_backward_preprocess_bf16  d (B,NH,T) fp32 = Σ dout·out per head row.
//   attention_backward_dkdv_bf16        the k and v parts of dqkv (overwritten),
//                                       a kv head's summed over its group.
//   attention_backward_dq_bf16          the q part of dqkv (overwritten).
//
// Head sizes 32, 64 and 128 only (each has its own tiles, below); the Go
// side (ptx.AttentionMMAHeadSizeOK) refuses others before anything runs.
// Every product's operands are bf16 and its sums fp32; softmax statistics,
// lse and d are fp32. Following FlashAttention, the probabilities P (and
// dS in the backward) are rounded to bf16 to be the A operand of the next
// product; docs/attention.md derives the error that costs.
//
// Tensor-core fragments (PTX ISA, mma.m16n8k16 with .bf16): in a warp,
// lane = 4·g + t (g = lane/4 "group", t = lane%4). The accumulator of a
// 16×8 tile holds rows g and g+8, columns 2t and 2t+1; the A operand
// (16×16) holds the same rows with columns 2t, 2t+1, 2t+8, 2t+9. So an
// accumulator pair of 8-column tiles, rounded to bf16 pairwise, is exactly
// the A operand of the next product over those 16 columns: S = Q·Kᵀ turns
// into P in registers and P·V needs no trip through shared memory. The
// backward keeps the same trick by computing the products in the
// orientation that puts the summed-over index in the columns: the dkdv
// kernel computes Sᵀ = K·Qᵀ (keys in rows), so Pᵀ and dSᵀ are A operands
// of dV += Pᵀ·dO and dK += dSᵀ·Q.
//
// Shared tiles are bf16 rows of hs elements, 16-byte chunks XOR-swizzled
// by row (tile_off), so that the 8 row addresses of each ldmatrix phase and
// the cp.async stores hit 8 different 16-byte bank groups with no padding.
// ldmatrix reads B operands stored [n][k] (K for Q·Kᵀ) as they lie, and
// with .trans those stored [k][n] (V for P·V, dO and Q in the backward).
//
// Pipelining: the tiles a block streams (K and V in the forward and dq,
// Q, dO, lse and d in dkdv) are double-buffered with cp.async: the copy of
// tile j+1 is issued right after the barrier that opens tile j, and lands
// while tile j computes. One barrier per tile.
//
// Determinism without atomics, as in attention.cu: every output element
// is summed by one thread in a fixed order. The backward recomputes P from
// qkv and lse twice, once per kernel: the dkdv kernel owns key tiles of one
// kv head and loops over the queries of every query head of its group, head
// by head; the dq kernel owns query tiles and loops over keys.
//
// Shared memory is static and at most 48 KB in every entry, so no launch
// needs a cuFuncSetAttribute. Edges: rows past T are zero-filled by the
// copies (cp.async with a source size of 0), which keeps their arithmetic
// finite and their contributions zero; they are never stored.
#include <cuda_bf16.h>

#include "common.cuh"

typedef __nv_bfloat16 bf16;

// The block of the forward, dkdv and dq entries: 4 warps, each owning
// 16·MT rows of the block's own tile.
static constexpr int ATT_MMA_THREADS = 128;
static constexpr int ATT_MMA_WARPS = ATT_MMA_THREADS / WARP_SIZE;

// Tiles per head size D. R: rows of the block's own tile (query rows for
// the forward and dq, key rows for dkdv), which sets the grid's x =
// ceil(T/R); S: rows of each tile it streams (keys, or queries for dkdv).
// ptx/constants_mma_attention.go mirrors them. The forward's R = 128 gives
// each warp 32 query rows (two m16 tiles), which halves the shared-memory
// reads of K and V per product against 16 rows; head size 128 takes 64
// rows and 32-key tiles to stay within 255 registers and 48 KB.
template <int D> struct AttnMmaFwd;
template <> struct AttnMmaFwd<32> { static constexpr int R = 128, S = 64; };
template <> struct AttnMmaFwd<64> { static constexpr int R = 128, S = 64; };
template <> struct AttnMmaFwd<128> { static constexpr int R = 64, S = 32; };

template <int D> struct AttnMmaDkdv;
template <> struct AttnMmaDkdv<32> { static constexpr int R = 64, S = 64; };
template <> struct AttnMmaDkdv<64> { static constexpr int R = 64, S = 64; };
template <> struct AttnMmaDkdv<128> { static constexpr int R = 64, S = 16; };

template <int D> struct AttnMmaDq;
template <> struct AttnMmaDq<32> { static constexpr int R = 64, S = 64; };
template <> struct AttnMmaDq<64> { static constexpr int R = 64, S = 64; };
template <> struct AttnMmaDq<128> { static constexpr int R = 64, S = 32; };

__host__ __device__ constexpr int mma_max(int a, int b) { return a > b ? a : b; }

// Shared bytes of each kernel for a D (bf16 tiles are 2·rows·D bytes).
// forward: Q, then K and V double-buffered.
template <int D> __host__ __device__ constexpr int fwd_mma_smem() {
    return 2 * D * (AttnMmaFwd<D>::R + 4 * AttnMmaFwd<D>::S);
}
// dkdv: K and V staged once (their fragments then live in registers),
// aliased by the ring of two (Q, dO) slots; then lse and d of both slots.
template <int D> __host__ __device__ constexpr int dkdv_mma_main() {
    return mma_max(2 * 2 * D * AttnMmaDkdv<D>::R, 2 * 2 * 2 * D * AttnMmaDkdv<D>::S);
}
template <int D> __host__ __device__ constexpr int dkdv_mma_smem() {
    return dkdv_mma_main<D>() + 2 * 2 * 4 * AttnMmaDkdv<D>::S;
}
// dq: Q and dO staged once, aliased by the ring of two (K, V) slots.
template <int D> __host__ __device__ constexpr int dq_mma_smem() {
    return mma_max(2 * 2 * D * AttnMmaDq<D>::R, 2 * 2 * 2 * D * AttnMmaDq<D>::S);
}

// Each entry allocates the maximum over D and every D's code carves its
// tiles from that one buffer.
static constexpr int ATT_MMA_FWD_SMEM = mma_max(fwd_mma_smem<32>(), mma_max(fwd_mma_smem<64>(), fwd_mma_smem<128>()));
static constexpr int ATT_MMA_DKDV_SMEM =
    mma_max(dkdv_mma_smem<32>(), mma_max(dkdv_mma_smem<64>(), dkdv_mma_smem<128>()));
static constexpr int ATT_MMA_DQ_SMEM = mma_max(dq_mma_smem<32>(), mma_max(dq_mma_smem<64>(), dq_mma_smem<128>()));
static_assert(ATT_MMA_FWD_SMEM <= 48 * 1024, "attention_forward_bf16: static shared memory over 48 KB");
static_assert(ATT_MMA_DKDV_SMEM <= 48 * 1024, "attention_backward_dkdv_bf16: static shared memory over 48 KB");
static_assert(ATT_MMA_DQ_SMEM <= 48 * 1024, "attention_backward_dq_bf16: static shared memory over 48 KB");

// ---------------------------------------------------------------------------
// PTX wrappers: ampere.cuh's shared ones (smem_addr, cp.async, ldmatrix,
// ex2), then bf16's own. The mma and conversions are pure and left to the
// scheduler.
#include "ampere.cuh"

// ldsm_x4_t is ldsm_x4 transposed: register i of lane 4g+t holds rows 2t
// and 2t+1 of column g of matrix i.
__device__ __forceinline__ void ldsm_x4_t(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// mma16816 is d += a·b for a 16×16 bf16 A, a 16×8 bf16 B, a 16×8 fp32 d.
__device__ __forceinline__ void mma16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// pack_bf16 rounds lo and hi to bf16 (to nearest even) and packs them, lo
// in the low half: the element with the smaller column index, as both the
// mma operands and memory order want.
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ float bf16_lo(unsigned v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bf16_hi(unsigned v) { return __uint_as_float(v & 0xffff0000u); }

// The scores are scaled by scale·log2(e) so that every exponential is one
// ex2: exp(scale·(s − m)) = 2^(s·sl2 − m·sl2).
__device__ __forceinline__ float log2e() { return 1.4426950408889634f; }

// ---------------------------------------------------------------------------
// Shared tiles.

// tile_off is the byte offset of 16-byte chunk c (columns 8c..8c+7) of row
// r in a tile of D-wide bf16 rows. The chunk index is XORed with bits of
// the row so that 8 consecutive rows at one chunk land in 8 different
// 16-byte bank groups: for D ≥ 64 (a row spans ≥ 128 bytes) with r mod 8,
// for D = 32 (two rows per 128 bytes) with (r/2) mod 4.
template <int D> __device__ __forceinline__ unsigned tile_off(int r, int c) {
    constexpr int CH = D / 8;
    static_assert(CH == 4 || CH >= 8, "tile_off: rows of 4 or ≥ 8 chunks");
    const int sc = CH >= 8 ? (c ^ (r & 7)) : (c ^ ((r >> 1) & 3));
    return static_cast<unsigned>((r * CH + sc) * 16);
}

// load_tile issues the cp.async copies of rows row0..row0+ROWS-1 of one
// head into the tile at shared address dst: src points at column 0 of the
// head in row 0, rows stride elements apart. Rows at or past T are zeros.
template <int ROWS, int D>
__device__ __forceinline__ void load_tile(unsigned dst, const bf16* src, int row0, int T, long long stride) {
    constexpr int CH = D / 8, N = ROWS * CH;
    static_assert(N % ATT_MMA_THREADS == 0, "load_tile: whole passes of the block");
#pragma unroll
    for (int it = 0; it < N / ATT_MMA_THREADS; it++) {
        const int i = it * ATT_MMA_THREADS + threadIdx.x;
        const int r = i / CH, c = i % CH;
        const int t = row0 + r;
        const bool ok = t < T;
        cp_async16(dst + tile_off<D>(r, c), src + (ok ? t : 0) * stride + c * 8, ok);
    }
}

// Fragment addresses. a_addr: lane's row address for the A operand of the
// 16×16 block at (row0, chunk pair kc) of a tile stored [m][k]: matrices
// (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15,
// k 8-15) = a0..a3.
template <int D> __device__ __forceinline__ unsigned a_addr(unsigned tile, int row0, int ks, int lane) {
    return tile + tile_off<D>(row0 + (lane & 15), 2 * ks + (lane >> 4));
}
// b_addr: B operands of two 8-wide n tiles (rows n0..n0+15) over k chunk
// pair ks of a tile stored [n][k]: matrices (n 0-7, k 0-7), (n 0-7, k 8-15),
// (n 8-15, k 0-7), (n 8-15, k 8-15) = b0, b1 of tile n0 and b0, b1 of n0+8.
template <int D> __device__ __forceinline__ unsigned b_addr(unsigned tile, int n0, int ks, int lane) {
    return tile + tile_off<D>(n0 + (lane & 7) + ((lane >> 4) << 3), 2 * ks + ((lane >> 3) & 1));
}
// bt_addr: B operands, with ldsm_x4_t, of the 16 k rows k0..k0+15 and two
// 8-wide n tiles (chunks 2·np and 2·np+1) of a tile stored [k][n]:
// matrices (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15).
template <int D> __device__ __forceinline__ unsigned bt_addr(unsigned tile, int k0, int np, int lane) {
    return tile + tile_off<D>(k0 + (lane & 7) + (((lane >> 3) & 1) << 3), 2 * np + (lane >> 4));
}

// block_order maps a block of the grid (tiles, NH, B) to its (tile, head,
// batch) so that the tile index varies slowest in launch order: blocks are
// dispatched in linear index order, so every head's tile 0 starts before
// any head's tile 1. Each kernel numbers its tiles so that tile 0 is the
// most work (the causal triangle's long rows), which makes the dispatch
// longest-first across all heads. Plain (x, head, batch) order would start
// the last heads' longest tiles at the end of the launch, a tail of up to
// one whole longest tile.
__device__ __forceinline__ void block_order(int& tile, int& h, int& b) {
    const int heads = gridDim.y * gridDim.z;
    const int lin = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    tile = lin / heads;
    h = lin % heads % gridDim.y;
    b = lin % heads / gridDim.y;
}

// a_from_acc packs the accumulators of 8-column tiles 2kk and 2kk+1 into
// the A operand of the 16 columns they cover.
__device__ __forceinline__ void a_from_acc(unsigned (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
    a[0] = pack_bf16(lo[0], lo[1]);
    a[1] = pack_bf16(lo[2], lo[3]);
    a[2] = pack_bf16(hi[0], hi[1]);
    a[3] = pack_bf16(hi[2], hi[3]);
}

// store_rows writes a warp's 16×D accumulator rows (row0 + g, row0 + g + 8)
// times mul as bf16 to dst (row r at dst + r·stride), rows at or past T
// skipped. Each lane writes its column pairs as 4-byte words.
template <int D>
__device__ __forceinline__ void store_rows(bf16* dst, long long stride, const float (&acc)[D / 8][4], float mul,
                                           int row0, int T, int lane) {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int rh = 0; rh < 2; rh++) {
        const int r = row0 + g + 8 * rh;
        if (r >= T) continue;
        unsigned* p = reinterpret_cast<unsigned*>(dst + r * stride + 2 * t);
#pragma unroll
        for (int ot = 0; ot < D / 8; ot++) p[4 * ot] = pack_bf16(acc[ot][2 * rh] * mul, acc[ot][2 * rh + 1] * mul);
    }
}

// ---------------------------------------------------------------------------
// Forward. One block per (query tile, head, batch); the query tile's Q
// fragments stay in registers, K and V tiles stream through shared memory
// up to the diagonal. (That takes 255 registers, so 2 blocks, 8 warps, an
// SM. Re-reading Q from shared memory each tile, with 3 blocks an SM at
// 168 registers, measured 22% slower on an H200: docs/attention.md.) Each warp owns 16·MT query rows and keeps, per row,
// the running max m (of the raw scores), the running sum l (each lane its
// own columns' part, summed over the row's 4 lanes at the end) and the
// output accumulator o.
template <int D>
__device__ __forceinline__ void forward_mma(unsigned char* smem, bf16* __restrict__ out, float* __restrict__ lse,
                                            const bf16* __restrict__ qkv, int T, int C, int NH, int NKV) {
    constexpr int BM = AttnMmaFwd<D>::R, BN = AttnMmaFwd<D>::S;
    constexpr int MT = BM / (16 * ATT_MMA_WARPS);
    static_assert(MT * 16 * ATT_MMA_WARPS == BM, "forward: the warps cover the query tile");
    constexpr int KS = D / 16, NT = BN / 8, OT = D / 8;
    constexpr unsigned QBYTES = 2 * BM * D, KBYTES = 2 * BN * D;
    const unsigned sQ = smem_addr(smem), sK = sQ + QBYTES, sV = sK + 2 * KBYTES;

    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    const int g = lane >> 2, tq = lane & 3;
    // The causal triangle makes late query tiles the most work: they start
    // first, those of every head before any shorter one (block_order).
    int qt, h, b;
    block_order(qt, h, b);
    qt = gridDim.x - 1 - qt;
    const int q0 = qt * BM;
    const long long W = static_cast<long long>(NH + 2 * NKV) * D;
    const int kvh = h / (NH / NKV);
    const bf16* qbase = qkv + b * T * W + h * D;
    const bf16* kbase = qkv + b * T * W + (NH + kvh) * D;
    const bf16* vbase = kbase + NKV * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float sl2 = scale * log2e();
    const int wq0 = q0 + warp * 16 * MT; // the warp's first query row
    const int wq1 = wq0 + 16 * MT - 1;   // and its last

    // Keys at or past min(q0+BM, T) are seen by no query of this tile below T.
    const int ntiles = (min(q0 + BM, T) + BN - 1) / BN;

    load_tile<BM, D>(sQ, qbase, q0, T, W);
    load_tile<BN, D>(sK, kbase, 0, T, W);
    load_tile<BN, D>(sV, vbase, 0, T, W);
    cp_async_commit();

    unsigned qf[MT][KS][4];
    float o[MT][OT][4], m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int rh = 0; rh < 2; rh++) {
            m[mt][rh] = -INFINITY;
            l[mt][rh] = 0.0f;
        }
#pragma unroll
        for (int ot = 0; ot < OT; ot++)
#pragma unroll
            for (int e = 0; e < 4; e++) o[mt][ot][e] = 0.0f;
    }

    for (int j = 0; j < ntiles; j++) {
        cp_async_wait_all();
        __syncthreads(); // tile j landed; every warp is done with tile j-1's buffers
        if (j == 0) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int ks = 0; ks < KS; ks++) ldsm_x4(qf[mt][ks], a_addr<D>(sQ, warp * 16 * MT + 16 * mt, ks, lane));
        }
        if (j + 1 < ntiles) {
            const unsigned nb = ((j + 1) & 1) * KBYTES;
            load_tile<BN, D>(sK + nb, kbase, (j + 1) * BN, T, W);
            load_tile<BN, D>(sV + nb, vbase, (j + 1) * BN, T, W);
        }
        cp_async_commit();

        const int k0 = j * BN;
        // Keys all past the warp's rows, or rows all past T: nothing to add.
        // (Tile 0 always runs for a warp with a row below T, so m is finite
        // from then on and no exponential below sees −inf − −inf.)
        if (k0 > wq1 || wq0 >= T) continue;
        const unsigned kb = sK + (j & 1) * KBYTES, vb = sV + (j & 1) * KBYTES;

        // S = Q·Kᵀ.
        float s[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[mt][nt][e] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ks++) {
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                unsigned kf[4];
                ldsm_x4(kf, b_addr<D>(kb, 16 * np, ks, lane));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma16816(s[mt][2 * np], qf[mt][ks], kf[0], kf[1]);
                    mma16816(s[mt][2 * np + 1], qf[mt][ks], kf[2], kf[3]);
                }
            }
        }

        // Causal mask, only where the tile crosses the warp's diagonal.
        if (k0 + BN - 1 > wq0) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int q = wq0 + 16 * mt + g + 8 * (e >> 1);
                        const int k = k0 + 8 * nt + 2 * tq + (e & 1);
                        if (k > q) s[mt][nt][e] = -INFINITY;
                    }
        }

        // Online softmax. A row's max is reduced over its 4 lanes, so all
        // four rescale by the same factor.
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int rh = 0; rh < 2; rh++) {
                float mx = -INFINITY;
#pragma unroll
                for (int nt = 0; nt < NT; nt++) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * rh], s[mt][nt][2 * rh + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
                const float mnew = fmaxf(m[mt][rh], mx);
                const float corr = ex2((m[mt][rh] - mnew) * sl2); // 0 on the first tile
                const float msc = mnew * sl2;
                float rs = 0.0f;
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const float p = ex2(fmaf(s[mt][nt][2 * rh + e], sl2, -msc)); // masked: 2^-inf = 0
                        s[mt][nt][2 * rh + e] = p;
                        rs += p;
                    }
                l[mt][rh] = l[mt][rh] * corr + rs;
                m[mt][rh] = mnew;
#pragma unroll
                for (int ot = 0; ot < OT; ot++) {
                    o[mt][ot][2 * rh] *= corr;
                    o[mt][ot][2 * rh + 1] *= corr;
                }
            }
        }

        // o += P·V, P rounded to bf16 in registers.
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            unsigned pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) a_from_acc(pa[mt], s[mt][2 * kk], s[mt][2 * kk + 1]);
#pragma unroll
            for (int np = 0; np < OT / 2; np++) {
                unsigned vf[4];
                ldsm_x4_t(vf, bt_addr<D>(vb, 16 * kk, np, lane));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma16816(o[mt][2 * np], pa[mt], vf[0], vf[1]);
                    mma16816(o[mt][2 * np + 1], pa[mt], vf[2], vf[3]);
                }
            }
        }
    }

    bf16* obase = out + b * T * static_cast<long long>(C) + h * D;
    float* lrow = lse + (static_cast<long long>(b) * NH + h) * T;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float inv[2];
#pragma unroll
        for (int rh = 0; rh < 2; rh++) {
            float lt = l[mt][rh];
            lt += __shfl_xor_sync(0xffffffff, lt, 1);
            lt += __shfl_xor_sync(0xffffffff, lt, 2);
            inv[rh] = 1.0f / lt;
            const int q = wq0 + 16 * mt + g + 8 * rh;
            if (tq == 0 && q < T) lrow[q] = m[mt][rh] * scale + logf(lt);
        }
        // Each row's own reciprocal: scale the accumulators in place, then store.
#pragma unroll
        for (int ot = 0; ot < OT; ot++)
#pragma unroll
            for (int e = 0; e < 4; e++) o[mt][ot][e] *= inv[e >> 1];
        store_rows<D>(obase, C, o[mt], 1.0f, wq0 + 16 * mt, T, lane);
    }
}

// attention_forward_bf16: grid (ceil(T/R), NH, B) with R = AttnMmaFwd<hs>::R,
// ATT_MMA_THREADS threads. hs = C/NH must be 32, 64 or 128.
extern "C" __global__ void __launch_bounds__(ATT_MMA_THREADS)
    attention_forward_bf16(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH, int NKV) {
    __shared__ __align__(128) unsigned char smem[ATT_MMA_FWD_SMEM];
    const int hs = C / NH;
    if (hs == 32) {
        forward_mma<32>(smem, out, lse, qkv, T, C, NH, NKV);
    } else if (hs == 64) {
        forward_mma<64>(smem, out, lse, qkv, T, C, NH, NKV);
    } else if (hs == 128) {
        forward_mma<128>(smem, out, lse, qkv, T, C, NH, NKV);
    }
}

// ---------------------------------------------------------------------------
// attention_backward_preprocess_bf16: d[b,h,t] = Σ_i dout[b,t,h·hs+i]·out[b,t,h·hs+i]
// in fp32 (the products of bf16 values are exact in fp32). One thread per
// 16-byte chunk (8 elements) of a head row, so hs/8 consecutive lanes (4,
// 8 or 16: they divide the warp) share a row, h fastest: a warp reads 512
// contiguous bytes of each tensor with one load a thread. The lanes' sums
// meet in a fixed xor butterfly, so d is deterministic. Grid
// ceil(B·T·NH·hs/8 / block), any block of whole warps (the launcher uses
// 256). hs must be a multiple of 8 that divides 256.
extern "C" __global__ void attention_backward_preprocess_bf16(float* d, const bf16* __restrict__ dout,
                                                              const bf16* __restrict__ out, int B, int T, int C,
                                                              int NH) {
    const int hs = C / NH, lanes = hs / 8;
    const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    const long long row = i / lanes, rows = static_cast<long long>(B) * T * NH;
    const int c = static_cast<int>(i % lanes);
    const int h = static_cast<int>(row % NH);
    const long long bt = row / NH;
    float acc = 0.0f;
    if (row < rows) {
        const long long off = bt * C + h * hs + 8 * c;
        const uint4 a = *reinterpret_cast<const uint4*>(out + off);
        const uint4 g = *reinterpret_cast<const uint4*>(dout + off);
        const unsigned av[4] = {a.x, a.y, a.z, a.w}, gv[4] = {g.x, g.y, g.z, g.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            acc = fmaf(bf16_lo(av[k]), bf16_lo(gv[k]), acc);
            acc = fmaf(bf16_hi(av[k]), bf16_hi(gv[k]), acc);
        }
    }
    // Every lane takes part in the shuffles, past the last row too.
    for (int o = lanes / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffff, acc, o);
    if (row < rows && c == 0) {
        const long long b = bt / T, t = bt % T;
        d[(b * NH + h) * T + t] = acc;
    }
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
//   dV += Pᵀ·dO, dK += dSᵀ·Q                       (Pᵀ, dSᵀ rounded to bf16)
// and stores dK·scale and dV. Each element is summed by one lane, in
// (head, query) order.
template <int D>
__device__ __forceinline__ void dkdv_mma(unsigned char* smem, bf16* __restrict__ dqkv, const float* __restrict__ dvec,
                                         const bf16* __restrict__ dout, const bf16* __restrict__ qkv,
                                         const float* __restrict__ lse, int T, int C, int NH, int NKV) {
    constexpr int BK = AttnMmaDkdv<D>::R, BQ = AttnMmaDkdv<D>::S;
    static_assert(BK == 16 * ATT_MMA_WARPS, "dkdv: 16 keys a warp");
    static_assert(BQ % 16 == 0 && BQ <= ATT_MMA_THREADS, "dkdv: whole k-steps of queries, one lse copy a thread");
    constexpr int KS = D / 16, NT = BQ / 8, OT = D / 8;
    constexpr unsigned TBYTES = 2 * BQ * D, KVBYTES = 2 * BK * D;
    const unsigned base = smem_addr(smem);
    float* Ls = reinterpret_cast<float*>(smem + dkdv_mma_main<D>()); // [2][BQ]
    float* Ds = Ls + 2 * BQ;                                          // [2][BQ]

    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    const int g = lane >> 2, tq = lane & 3;
    // Early key tiles see the most queries; they start first (block_order).
    int kt, kvh, b;
    block_order(kt, kvh, b);
    const int k0 = kt * BK, group = NH / NKV;
    const long long W = static_cast<long long>(NH + 2 * NKV) * D;
    const bf16* kbase = qkv + b * T * W + (NH + kvh) * D;
    const bf16* vbase = kbase + NKV * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float sl2 = scale * log2e();
    const int wk0 = k0 + warp * 16; // the warp's first key

    // K and V once, into registers.
    load_tile<BK, D>(base, kbase, k0, T, W);
    load_tile<BK, D>(base + KVBYTES, vbase, k0, T, W);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();
    unsigned kf[KS][4], vf[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        ldsm_x4(kf[ks], a_addr<D>(base, warp * 16, ks, lane));
        ldsm_x4(vf[ks], a_addr<D>(base + KVBYTES, warp * 16, ks, lane));
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
        const bf16* qbase = qkv + b * T * W + h * D;
        const bf16* gbase = dout + b * T * static_cast<long long>(C) + h * D;
        const float* lrow = lse + (static_cast<long long>(b) * NH + h) * T;
        const float* drow = dvec + (static_cast<long long>(b) * NH + h) * T;
        const unsigned sQ = base + slot * 2 * TBYTES;
        load_tile<BQ, D>(sQ, qbase, qq0, T, W);
        load_tile<BQ, D>(sQ + TBYTES, gbase, qq0, T, C);
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
        cp_async_wait_all();
        __syncthreads();
        if (i + 1 < group * ntiles) issue(i + 1);
        cp_async_commit();

        const int qq0 = qstart + i % ntiles * BQ, slot = i & 1;
        // Queries all before the warp's keys, or keys all past T.
        if (qq0 + BQ - 1 < wk0 || wk0 >= T) continue;
        const unsigned sQ = base + slot * 2 * TBYTES, sG = sQ + TBYTES;
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
                ldsm_x4(qb, b_addr<D>(sQ, 16 * np, ks, lane));
                mma16816(st[2 * np], kf[ks], qb[0], qb[1]);
                mma16816(st[2 * np + 1], kf[ks], qb[2], qb[3]);
                ldsm_x4(gb, b_addr<D>(sG, 16 * np, ks, lane));
                mma16816(dpt[2 * np], vf[ks], gb[0], gb[1]);
                mma16816(dpt[2 * np + 1], vf[ks], gb[2], gb[3]);
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
        for (int kk = 0; kk < BQ / 16; kk++) {
            unsigned pa[4], sa[4];
            a_from_acc(pa, st[2 * kk], st[2 * kk + 1]);
            a_from_acc(sa, dpt[2 * kk], dpt[2 * kk + 1]);
#pragma unroll
            for (int np = 0; np < OT / 2; np++) {
                unsigned gb[4], qb[4];
                ldsm_x4_t(gb, bt_addr<D>(sG, 16 * kk, np, lane));
                mma16816(dv[2 * np], pa, gb[0], gb[1]);
                mma16816(dv[2 * np + 1], pa, gb[2], gb[3]);
                ldsm_x4_t(qb, bt_addr<D>(sQ, 16 * kk, np, lane));
                mma16816(dk[2 * np], sa, qb[0], qb[1]);
                mma16816(dk[2 * np + 1], sa, qb[2], qb[3]);
            }
        }
    }

    bf16* rows = dqkv + b * T * W + (NH + kvh) * D;
    store_rows<D>(rows, W, dk, scale, wk0, T, lane);
    store_rows<D>(rows + NKV * D, W, dv, 1.0f, wk0, T, lane);
}

// attention_backward_dkdv_bf16: grid (ceil(T/R), NKV, B) with
// R = AttnMmaDkdv<hs>::R, ATT_MMA_THREADS threads. d is the output of
// attention_backward_preprocess_bf16, lse that of attention_forward_bf16.
extern "C" __global__ void __launch_bounds__(ATT_MMA_THREADS)
    attention_backward_dkdv_bf16(bf16* dqkv, const float* d, const bf16* dout, const bf16* qkv, const float* lse,
                                 int B, int T, int C, int NH, int NKV) {
    __shared__ __align__(128) unsigned char smem[ATT_MMA_DKDV_SMEM];
    const int hs = C / NH;
    if (hs == 32) {
        dkdv_mma<32>(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV);
    } else if (hs == 64) {
        dkdv_mma<64>(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV);
    } else if (hs == 128) {
        dkdv_mma<128>(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV);
    }
}

// ---------------------------------------------------------------------------
// dQ. One block per (query tile, head, batch); each warp owns 16 queries
// and keeps their Q and dO fragments, lse and d in registers with the dQ
// accumulator. The block loops over key tiles up to the diagonal, (K, V)
// double-buffered, and per tile
//   S = Q·Kᵀ, dP = dO·Vᵀ, P = 2^(S·sl2 − lse·log2e) (masked), dS = P∘(dP − d)
//   dQ += dS·K                                     (dS rounded to bf16)
// and stores dQ·scale.
template <int D>
__device__ __forceinline__ void dq_mma(unsigned char* smem, bf16* __restrict__ dqkv, const float* __restrict__ dvec,
                                       const bf16* __restrict__ dout, const bf16* __restrict__ qkv,
                                       const float* __restrict__ lse, int T, int C, int NH, int NKV) {
    constexpr int BQ = AttnMmaDq<D>::R, BK = AttnMmaDq<D>::S;
    static_assert(BQ == 16 * ATT_MMA_WARPS, "dq: 16 queries a warp");
    static_assert(BK % 16 == 0, "dq: whole k-steps of keys");
    constexpr int KS = D / 16, NT = BK / 8, OT = D / 8;
    constexpr unsigned TBYTES = 2 * BK * D, QBYTES = 2 * BQ * D;
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
    const bf16* qbase = qkv + b * T * W + h * D;
    const bf16* kbase = qkv + b * T * W + (NH + kvh) * D;
    const bf16* vbase = kbase + NKV * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float sl2 = scale * log2e();
    const int wq0 = q0 + warp * 16; // the warp's first query

    // Q and dO once, into registers.
    load_tile<BQ, D>(base, qbase, q0, T, W);
    load_tile<BQ, D>(base + QBYTES, dout + b * T * static_cast<long long>(C) + h * D, q0, T, C);
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
    __syncthreads();
    unsigned qf[KS][4], gf[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        ldsm_x4(qf[ks], a_addr<D>(base, warp * 16, ks, lane));
        ldsm_x4(gf[ks], a_addr<D>(base + QBYTES, warp * 16, ks, lane));
    }
    __syncthreads(); // the staging area becomes the ring

    float dq[OT][4];
#pragma unroll
    for (int ot = 0; ot < OT; ot++)
#pragma unroll
        for (int e = 0; e < 4; e++) dq[ot][e] = 0.0f;

    const int ntiles = (min(q0 + BQ, T) + BK - 1) / BK;
    load_tile<BK, D>(base, kbase, 0, T, W);
    load_tile<BK, D>(base + TBYTES, vbase, 0, T, W);
    cp_async_commit();

    for (int j = 0; j < ntiles; j++) {
        cp_async_wait_all();
        __syncthreads();
        if (j + 1 < ntiles) {
            const unsigned nb = base + ((j + 1) & 1) * 2 * TBYTES;
            load_tile<BK, D>(nb, kbase, (j + 1) * BK, T, W);
            load_tile<BK, D>(nb + TBYTES, vbase, (j + 1) * BK, T, W);
        }
        cp_async_commit();

        const int k0 = j * BK;
        if (k0 > wq0 + 15 || wq0 >= T) continue;
        const unsigned sK = base + (j & 1) * 2 * TBYTES, sV = sK + TBYTES;

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
                ldsm_x4(kb, b_addr<D>(sK, 16 * np, ks, lane));
                mma16816(s[2 * np], qf[ks], kb[0], kb[1]);
                mma16816(s[2 * np + 1], qf[ks], kb[2], kb[3]);
                ldsm_x4(vb, b_addr<D>(sV, 16 * np, ks, lane));
                mma16816(dp[2 * np], gf[ks], vb[0], vb[1]);
                mma16816(dp[2 * np + 1], gf[ks], vb[2], vb[3]);
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
        for (int kk = 0; kk < BK / 16; kk++) {
            unsigned sa[4];
            a_from_acc(sa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
            for (int np = 0; np < OT / 2; np++) {
                unsigned kb[4];
                ldsm_x4_t(kb, bt_addr<D>(sK, 16 * kk, np, lane));
                mma16816(dq[2 * np], sa, kb[0], kb[1]);
                mma16816(dq[2 * np + 1], sa, kb[2], kb[3]);
            }
        }
    }

    store_rows<D>(dqkv + b * T * W + h * D, W, dq, scale, wq0, T, lane);
}

// attention_backward_dq_bf16: grid (ceil(T/R), NH, B) with R = AttnMmaDq<hs>::R,
// ATT_MMA_THREADS threads. d is the output of
// attention_backward_preprocess_bf16, lse that of attention_forward_bf16.
extern "C" __global__ void __launch_bounds__(ATT_MMA_THREADS)
    attention_backward_dq_bf16(bf16* dqkv, const float* d, const bf16* dout, const bf16* qkv, const float* lse, int B,
                               int T, int C, int NH, int NKV) {
    __shared__ __align__(128) unsigned char smem[ATT_MMA_DQ_SMEM];
    const int hs = C / NH;
    if (hs == 32) {
        dq_mma<32>(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV);
    } else if (hs == 64) {
        dq_mma<64>(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV);
    } else if (hs == 128) {
        dq_mma<128>(smem, dqkv, d, dout, qkv, lse, T, C, NH, NKV);
    }
}
