// attention_wgmma_bwd.cu: the causal grouped-query attention backward on Hopper's warpgroup tensor cores (wgmma), fed by TMA.
// nvcc-arch: compute_90
// ptx-target: sm_90a
//
//   attention_backward_dkdv_wgmma  the k and v parts of dqkv (overwritten),
//                                  a kv head's summed over the query heads
//                                  of its group, in their order.
//   attention_backward_dq_wgmma    the q part of dqkv (overwritten).
//
// The semantics of attention_mma.cu's attention_backward_dkdv_bf16 and
// attention_backward_dq_bf16, head size 64 only (ptx.AttentionWGMMAHeadSizeOK;
// the entries write nothing unless C = 64·NH): qkv (B,T,W) bf16 rows
// [q (NH·64) | k (NKV·64) | v (NKV·64)], dout (B,T,C) bf16, lse (B,NH,T)
// fp32 natural-log from either forward, d (B,NH,T) fp32 = Σ dout·out from
// attention_backward_preprocess_bf16 (which stays as it is). Query head h
// reads kv head h/(NH/NKV), scale 1/8, query t attends keys 0..t. bf16
// operands, fp32 sums; P and dS rounded to bf16 as the A operands of the
// products that follow, P = 2^(S·scale·log2e − lse·log2e) and
// dS = P∘(dP − d) from the fp32 P, as the mma kernels compute them; dK is
// stored ·scale. sm_90a only (scripts/ptx-target.sh, as attention_wgmma.cu).
//
// Design (FlashAttention-3's backward at hs = 64, as two kernels so that
// every element is summed by one thread: no atomics), and what each part
// is for:
//
// - Blocks: three warpgroups, warpgroup 0 the producer (one warp of it
//   works), 1 and 2 the consumers, each owning 64 rows (one m64 wgmma tile)
//   of the unit's 128: keys in dkdv, queries in dq. Persistent grid, units
//   heaviest first, taken in a snake, as attention_wgmma.cu's forward.
// - Loads: two TMA tensor maps, qkv as {W, B·T} and dout as {C, B·T}, both
//   in boxes of 64 columns (one head: one 128-byte swizzle row) × 64 rows.
//   lse and d rows cannot be TMA'd (T·4 bytes is no multiple of 16 for odd
//   T), so the producer warp's 32 lanes copy them with 4-byte cp.async,
//   each lane then arriving on the same full barrier as the TMA bytes
//   (cp.async.mbarrier.arrive.noinc): one barrier covers a stage.
// - Every product is a wgmma with A from registers (RS), so only B is read
//   from shared memory (half the traffic of both from shared memory, which
//   at n64 would be the 128 bytes a clock shared memory gives):
//     dkdv, a consumer's 64 keys against a 64-query tile:
//       Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ   A = K, V fragments, loaded every tile by
//                                ldmatrix; B = Q, dO tiles, K-major
//       dV += Pᵀ·dO, dK += dSᵀ·Q  A = Pᵀ, dSᵀ straight from the accumulators
//                                (the identity of attention_wgmma.cu's
//                                pack_p); B = dO, Q tiles, MN-major: the
//                                transpose bit, 16 rows (2048 bytes) a k-step
//     dq, a consumer's 64 queries against a 64-key tile:
//       S = Q·Kᵀ, dP = dO·Vᵀ     A = Q, dO fragments, loaded every tile
//       dQ += dS·K                A = dS; B = the K tile, MN-major
//   All m64n64k16. Registers (a consumer thread, dkdv): Sᵀ, dPᵀ, dK, dV 32
//   fp32 each, K and V fragments 16 each, packed Pᵀ and dSᵀ 16 each: 192;
//   dq: 160. That is why the streamed tiles are 64 rows: 128 would need 64
//   more in dkdv, past the 232 setmaxnreg leaves a consumer.
// - Overlap inside a warpgroup: a tile issues Sᵀ and dPᵀ as two commit
//   groups, waits for Sᵀ alone and runs the exponentials while dPᵀ
//   computes; dkdv then issues dV += Pᵀ·dO and forms dSᵀ while it runs;
//   the last product (dK, or dQ) is waited for at the end of the tile,
//   which then frees its stage. The two consumer warpgroups interleave on
//   top. Why the A fragments are loaded again every tile: loaded once a
//   unit and reused, every warpgroup's second tile of a unit came out
//   wrong on the H200 (the first matched the mma kernels bit for bit),
//   with every product waited for at once too; reloaded, all pass.
// - dkdv: a unit is 128 keys of one kv head; it loops over the group's
//   query heads in order and, for each, the 64-query tiles from the one
//   holding the unit's first key to the end (one sequence of stages, as
//   attention_mma.cu's dkdv). A consumer skips a tile whose queries all
//   precede its keys (the second warpgroup's first tile of each head) or
//   whose keys are all past T, and masks the diagonal tile (query < key)
//   and the tail tile (query ≥ T: those rows of Q and dO are the next
//   batch's, read by TMA; their P must be 0). dK·scale and dV are stored
//   from the accumulators, rows ≥ T never.
// - dq: a unit is 128 queries of one head; it loops over the 64-key tiles
//   from key 0 to the diagonal (ascending, as attention_mma.cu's dq). A
//   consumer skips a tile whose keys all follow its queries (the first
//   warpgroup's last tile) and masks the diagonal one (key > query). Keys
//   past T are the next batch's (or TMA's zeros) and only ever meet
//   queries ≥ T, whose rows are never stored: no tail mask. dQ·scale is
//   stored from the accumulators, rows ≥ T never.
// - Rings (mbarrier full/empty, parity as in attention_wgmma.cu): dkdv's
//   K and V tiles once a unit (freed at the unit's end), and a ring
//   of AWB_STAGES (Q, dO, lse, d) stages; dq's Q, dO, lse and d once a unit
//   and a ring of AWB_STAGES (K, V) stages. A consumer always waits for a
//   stage to land before it frees it, skipped or not, so no warpgroup can
//   arrive twice on one phase of an empty barrier. Where consumer threads
//   read a stage themselves (ldmatrix, lse and d) every consumer thread
//   arrives (count 256); where only wgmma reads it, one thread a warpgroup
//   (count 2) after wgmma.wait_group.
// - Registers: setmaxnreg 40 for the producer, 232 for the consumers, as
//   the forward; scripts/attn-bwd-check.sh asm checks spills and whether
//   ptxas serialised the wgmma.
//
// The estimate, at B=8, NH=NKV=12, T=1024 on an H200 (132 SMs, ~1.8 GHz),
// FLOPs as kernels/attention.go's attentionWork (4 products for dkdv, 25.8
// GFLOP; 3 for dq, 19.3 GFLOP): both kernels do 72 tile pairs (128 × 64)
// per (head, batch), 6912 in all, ~52 a block. A dkdv pair is 4.2 MFLOP
// (~1024 clocks of an SM's tensor cores at 4096 FLOP a clock), 8K ex2
// (~512 clocks of its special-function units) and ~8 FP32 instructions a
// score (~512 clocks); a dq pair 3.1 MFLOP (~768 clocks) with the same
// exponentials. With the exponentials under the other products and the
// other warpgroup, and m64n64 wgmma at ~70% of peak, a dkdv pair takes
// ~1.5K clocks and a dq pair ~1.1K: ~43 µs (≈ 600 TFLOP/s on paper) and
// ~32 µs plus launch and tail. Expected on the GPU: dkdv 50–65 µs (400–520
// TFLOP/s), dq 40–50 µs (390–480 TFLOP/s), against the mma kernels' 112.8
// and 86 µs (229 and 225 TFLOP/s); the pair ~90–115 µs against ~199. A
// result near the mma kernels' would mean the overlap does not happen
// (look for ptxas's "Performance Loss" note on the wgmma first).
//
// Determinism: every output element is summed by one thread in an order
// fixed by the shape alone (dkdv: query head, then query tile, then the 64
// queries inside the wgmma; dq: key tile, then its keys), whichever block
// runs the unit; no atomics. So any grid gives the same bits.

#include "attention_wgmma.cuh"

// The tiles and the blocks (ptx/constants_wgmma_attention_bwd.go mirrors
// them; ptx/constants_wgmma_attention_bwd_test.go checks). Both tensor maps
// load boxes of AWB_BOX rows of one head; a unit is two of them.
static constexpr int AWB_HS = 64;
static constexpr int AWB_BOX = 64;
static constexpr int AWB_UNIT_ROWS = 2 * AWB_BOX;
static constexpr int AWB_THREADS = 384;
static constexpr int AWB_STAGES = 5;
static constexpr int AWB_BOX_BYTES = AWB_BOX * AWB_HS * 2;
// Shared memory: 1024 bytes of slack to align the tiles to the swizzle's
// 1024-byte period; the unit's two tiles of 128 rows (dkdv: K and V; dq:
// Q and dO); the ring's two tiles a stage (dkdv: Q and dO; dq: K and V);
// lse and d (dkdv: 64 rows a stage; dq: the unit's 128 rows); then the
// mbarriers: the unit's full/empty and the ring's full/empty a stage.
static constexpr int AWB_DKDV_SMEM =
    1024 + (4 + 2 * AWB_STAGES) * AWB_BOX_BYTES + 2 * AWB_STAGES * AWB_BOX * 4 + 8 * (2 + 2 * AWB_STAGES);
static constexpr int AWB_DQ_SMEM =
    1024 + (4 + 2 * AWB_STAGES) * AWB_BOX_BYTES + 2 * AWB_UNIT_ROWS * 4 + 8 * (2 + 2 * AWB_STAGES);
// The registers setmaxnreg gives each role: 128·40 + 256·232 ≤ 64K.
static constexpr int AWB_PRODUCER_REGS = 40;
static constexpr int AWB_CONSUMER_REGS = 232;

static_assert(AWB_UNIT_ROWS == 2 * 64, "two consumer warpgroups of 64 rows");
static_assert(AWB_BOX == 64, "a consumer's rows are one box; the streamed tiles are m64n64 products");
static_assert(AWB_HS * 2 == 128, "a head row is one 128-byte swizzle row");
static_assert(AWB_DKDV_SMEM <= 227 * 1024 && AWB_DQ_SMEM <= 227 * 1024, "more than an H100/H200 block may opt in to");

namespace aw {

// TMA, mbarriers, wgmma groups, descriptors, ex2, pack_bf16, Ring and
// unit_at are attention_wgmma.cuh's, the forward's. Beside them: ldsm_x4
// and cp_async4 are attention_mma.cu's ldmatrix and cp.async, and
// cp_async_arrive the PTX ISA's cp.async.mbarrier.arrive.

// cp_async4 copies 4 bytes from global src to shared dst, or writes 4 zero
// bytes without reading src when valid is false.
__device__ __forceinline__ void cp_async4(unsigned dst, const void* src, bool valid) {
    const int bytes = valid ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}
// cp_async_arrive makes an arrival on bar once every cp.async this thread
// issued has landed (.noinc: the barrier's count includes the arrival).
__device__ __forceinline__ void cp_async_arrive(unsigned bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

// ldsm_x4 loads four 8×8 bf16 matrices; lanes 8i..8i+7 give the row
// addresses of matrix i, and register i of lane 4g+t holds matrix i's row
// g, columns 2t and 2t+1.
__device__ __forceinline__ void ldsm_x4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

// wgmma_rs: d(64×64) = a(64×16)·b(16×64) (+ d when accumulate), a from
// registers (the m64nNk16 A fragment), b through its descriptor: K-major
// for TRANS = 0 (a tile stored [n][k], k contiguous: Q, dO, K, V as the B
// of Sᵀ, dPᵀ, S, dP), MN-major for TRANS = 1 (stored [k][n]: dO, Q, K as
// the B of dV, dK, dQ).
template <int TRANS>
__device__ __forceinline__ void wgmma_rs(float (&d)[32], const unsigned (&a)[4], unsigned long long db,
                                         int accumulate) {
    asm volatile("{\n\t"
                 ".reg .pred p;\n\t"
                 "setp.ne.b32 p, %37, 0;\n\t"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n\t"
                 "}"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate), "n"(TRANS));
}

// Smem is the block's shared-memory layout (addresses in the shared
// window, and ls/ds also as pointers): the unit's two 128-row tiles a and
// b (two boxes each), the ring's tiles x and y (one box a stage each),
// lse and d, the barriers.
struct Smem {
    unsigned a, b, x, y, lsa, dsa, bars;
    const float *ls, *ds;
    __device__ __forceinline__ unsigned unit_full() const { return bars; }
    __device__ __forceinline__ unsigned unit_empty() const { return bars + 8; }
    __device__ __forceinline__ unsigned full(int s) const { return bars + 8 * (2 + s); }
    __device__ __forceinline__ unsigned empty(int s) const { return bars + 8 * (2 + AWB_STAGES + s); }
};

// carve lays Smem out over the dynamic shared memory, lse_floats floats
// each of lse and d.
__device__ __forceinline__ Smem carve(unsigned char* raw, int lse_floats) {
    const unsigned r = smem_addr(raw);
    const unsigned base = (r + 1023) & ~1023u;
    Smem sm;
    sm.a = base;
    sm.b = sm.a + 2 * AWB_BOX_BYTES;
    sm.x = sm.b + 2 * AWB_BOX_BYTES;
    sm.y = sm.x + AWB_STAGES * AWB_BOX_BYTES;
    sm.lsa = sm.y + AWB_STAGES * AWB_BOX_BYTES;
    sm.dsa = sm.lsa + 4 * lse_floats;
    sm.bars = sm.dsa + 4 * lse_floats;
    sm.ls = reinterpret_cast<const float*>(raw + (sm.lsa - r));
    sm.ds = reinterpret_cast<const float*>(raw + (sm.dsa - r));
    return sm;
}

// load_a loads a warp's m64nNk16 A fragments of one 64-row box (rows
// 16w..16w+15 of it, all 64 columns: k-steps ks = 0..3) with ldmatrix:
// lane l gives row 16w + l%16 at 16-byte chunk 2ks + l/16, whose place in
// the 128-byte-swizzled box is chunk ^ (row % 8). Registers: (row, k 2c),
// (row+8, 2c), (row, 2c+8), (row+8, 2c+8), as attention_mma.cu's a_addr.
__device__ __forceinline__ void load_a(unsigned (&f)[4][4], unsigned box, int w, int lane) {
    const int row = 16 * w + (lane & 15);
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
        const int chunk = 2 * ks + (lane >> 4);
        ldsm_x4(f[ks], box + row * 128 + ((chunk ^ (row & 7)) << 4));
    }
}

// pack_a rounds an m64n64 fp32 accumulator to bf16 as the A fragments of
// the next product over its 64 columns: k-step kk is n8 blocks 2kk and
// 2kk+1, in the order (row, 2c..), (row+8, 2c..), (row, 2c+8..),
// (row+8, 2c+8..) (attention_wgmma.cu's pack_p).
__device__ __forceinline__ void pack_a(unsigned (&p)[4][4], const float (&s)[32]) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        p[kk][0] = pack_bf16(s[8 * kk], s[8 * kk + 1]);
        p[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
        p[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
        p[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
    }
}

// first_products issues, for a warpgroup, s = a·bsᵀ and then p = c·bpᵀ as
// two commit groups (4 k-steps of 16 each, 32 bytes along the B tiles'
// swizzled rows a step: +2 in the descriptors).
__device__ __forceinline__ void first_products(float (&s)[32], float (&p)[32], unsigned (&a)[4][4],
                                               unsigned (&c)[4][4], unsigned long long bs, unsigned long long bp) {
    keep_all(s);
    keep_all(p);
    keep_frags(a);
    keep_frags(c);
    wg_fence();
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) wgmma_rs<0>(s, a[ks], bs + 2 * ks, ks);
    wg_commit();
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) wgmma_rs<0>(p, c[ks], bp + 2 * ks, ks);
    wg_commit();
}

// accumulate issues, for a warpgroup, o += a·b as one commit group: 4
// k-steps of 16 rows of the MN-major B tile, 2048 bytes (+128) a step.
__device__ __forceinline__ void accumulate(float (&o)[32], unsigned (&a)[4][4], unsigned long long b) {
    keep_all(o);
    keep_frags(a);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) wgmma_rs<1>(o, a[kk], b + 128 * kk, 1);
    wg_commit();
}

// store_rows writes a warpgroup's m64n64 accumulator times mul as bf16:
// element 4j + e of acc is row row0 + 8·(e/2), column 8j + 2c + e%2 of
// dst (row q at dst + q·stride); rows ≥ T are skipped.
__device__ __forceinline__ void store_rows(bf16* dst, long long stride, const float (&acc)[32], float mul, int row0,
                                           int T, int lc) {
#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
        const int q = row0 + 8 * rh;
        if (q >= T) continue;
        unsigned* p = reinterpret_cast<unsigned*>(dst + q * stride + 2 * lc);
#pragma unroll
        for (int j = 0; j < 8; ++j) p[4 * j] = pack_bf16(acc[4 * j + 2 * rh] * mul, acc[4 * j + 2 * rh + 1] * mul);
    }
}

// ---------------------------------------------------------------------------
// dK and dV. Unit u: key tile kt = u/(NKV·B) (128 keys from kt·128; tile
// 0, which sees the most queries, first), kv head u%NKV, batch
// u%(NKV·B)/NKV. Its sequence of stages is query tile 2kt + i%ntq (64
// queries each) of query head kvh·group + i/ntq, ntq = ceil(T/64) − 2kt.

struct DkdvUnit {
    int kt, kvh, b, ntq, n;
};

__device__ __forceinline__ DkdvUnit dkdv_unit(int u, int T, int NH, int NKV, int B) {
    const int heads = NKV * B, rest = u % heads;
    DkdvUnit w;
    w.kt = u / heads;
    w.kvh = rest % NKV;
    w.b = rest / NKV;
    w.ntq = (T + AWB_BOX - 1) / AWB_BOX - 2 * w.kt;
    w.n = NH / NKV * w.ntq;
    return w;
}

// dkdv_producer: the producer warp's 32 lanes walk every unit's loads in
// the consumers' order; lane 0 issues the TMA, every lane copies two rows
// of lse and of d (zeros past T) and arrives (count 1 + 32).
__device__ __forceinline__ void dkdv_producer(const Smem& sm, const TensorMap* qkv, const TensorMap* dout,
                                              const float* __restrict__ lse, const float* __restrict__ dvec, int B,
                                              int T, int NH, int NKV, int units) {
    const int G = gridDim.x, bid = blockIdx.x, lane = threadIdx.x;
    const int group = NH / NKV;
    Ring rg{0, 0};
    unsigned uph = 0;
    for (int r = 0; r * G < units; ++r) {
        const int u = unit_at(r, G, bid);
        if (u >= units) continue;
        const DkdvUnit w = dkdv_unit(u, T, NH, NKV, B);
        const int row0 = w.b * T, k0 = w.kt * AWB_UNIT_ROWS;
        mbar_wait(sm.unit_empty(), uph ^ 1);
        if (lane == 0) {
            mbar_expect_tx(sm.unit_full(), 4 * AWB_BOX_BYTES);
            for (int g = 0; g < 2; ++g) {
                tma_load(sm.a + g * AWB_BOX_BYTES, qkv, (NH + w.kvh) * AWB_HS, row0 + k0 + g * AWB_BOX, sm.unit_full());
                tma_load(sm.b + g * AWB_BOX_BYTES, qkv, (NH + NKV + w.kvh) * AWB_HS, row0 + k0 + g * AWB_BOX,
                         sm.unit_full());
            }
        }
        uph ^= 1;
        for (int i = 0; i < w.n; ++i, rg.next<AWB_STAGES>()) {
            const int h = w.kvh * group + i / w.ntq, q0 = (2 * w.kt + i % w.ntq) * AWB_BOX;
            mbar_wait(sm.empty(rg.stage), rg.phase ^ 1);
            if (lane == 0) {
                mbar_expect_tx(sm.full(rg.stage), 2 * AWB_BOX_BYTES);
                tma_load(sm.x + rg.stage * AWB_BOX_BYTES, qkv, h * AWB_HS, row0 + q0, sm.full(rg.stage));
                tma_load(sm.y + rg.stage * AWB_BOX_BYTES, dout, h * AWB_HS, row0 + q0, sm.full(rg.stage));
            }
            const long long at = ((long long)w.b * NH + h) * T;
#pragma unroll
            for (int m = 0; m < AWB_BOX / 32; ++m) {
                const int x = lane + 32 * m, q = q0 + x;
                const bool ok = q < T;
                const unsigned off = 4 * (rg.stage * AWB_BOX + x);
                cp_async4(sm.lsa + off, lse + at + (ok ? q : 0), ok);
                cp_async4(sm.dsa + off, dvec + at + (ok ? q : 0), ok);
            }
            cp_async_arrive(sm.full(rg.stage));
        }
    }
    cp_async_wait_all();
}

// release frees a stage of a ring whose consumers' threads all read it
// (count 256), and moves on.
__device__ __forceinline__ void release_all(const Smem& sm, const Ring& at) { mbar_arrive(sm.empty(at.stage)); }

// dkdv_probabilities turns a warpgroup's Sᵀ (keys × 64 queries) into Pᵀ =
// 2^(Sᵀ·sl2 − lse·log2e) in place, lse of the tile's queries at ls. With
// MASK, the element of query column col and key row krow + 8·(e/2) is 0
// unless kmin + 8·(e/2) ≤ col < lim (kmin: the thread's first key row
// less the tile's first query; lim: T less it): the query precedes the
// key, or is past T.
template <bool MASK>
__device__ __forceinline__ void dkdv_probabilities(float (&s)[32], const float* ls, int lc, int kmin, int lim,
                                                   float sl2) {
    const float l2e = 1.4426950408889634f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        const float2 l = *reinterpret_cast<const float2*>(ls + 8 * j + 2 * lc);
        const float lsc[2] = {l.x * l2e, l.y * l2e};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            float p = ex2(fmaf(s[4 * j + e], sl2, -lsc[e & 1]));
            const int col = 8 * j + 2 * lc + (e & 1);
            if (MASK && (col < kmin + 8 * (e >> 1) || col >= lim)) p = 0.0f;
            s[4 * j + e] = p;
        }
    }
}

// dkdv_consumer: warpgroup g (0 or 1) owns keys 64g..64g+63 of each unit.
// Per streamed query tile (64 queries):
//   Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ                      (issued; wait for Sᵀ)
//   Pᵀ = 2^(Sᵀ·sl2 − lse·log2e), masked          (under dPᵀ)
//   dV += Pᵀ·dO                                  (issued; wait for dPᵀ)
//   dSᵀ = Pᵀ∘(dPᵀ − d)                           (under dV)
//   dK += dSᵀ·Q                                  (waited for)
// Element 4j + e of an accumulator is key row krow + 8·(e/2), query column
// 8j + 2c + e%2 of the tile.
__device__ __forceinline__ void dkdv_consumer(const Smem& sm, bf16* __restrict__ dqkv, int B, int T, int NH,
                                              int NKV, int units) {
    const int G = gridDim.x, bid = blockIdx.x;
    const int ct = threadIdx.x - 128, g = ct >> 7, t = ct & 127, w = t >> 5;
    const int lane = t & 31, lc = lane & 3;
    const int krow = 16 * w + (lane >> 2); // the thread's first key row of the warpgroup's 64; its second is +8
    const float scale = 0.125f, l2e = 1.4426950408889634f, sl2 = scale * l2e;
    const long long W = (long long)(NH + 2 * NKV) * AWB_HS;
    Ring rg{0, 0};
    unsigned uph = 0;
    float s[32], dp[32], dk[32], dv[32];
    unsigned kf[4][4], vf[4][4], pa[4][4], sa[4][4];
    for (int r = 0; r * G < units; ++r) {
        const int u = unit_at(r, G, bid);
        if (u >= units) continue;
        const DkdvUnit wu = dkdv_unit(u, T, NH, NKV, B);
        const int wk0 = wu.kt * AWB_UNIT_ROWS + 64 * g; // the warpgroup's first key

        // The unit's K and V boxes stay until its end (load_a every tile).
        mbar_wait(sm.unit_full(), uph);
        uph ^= 1;
#pragma unroll
        for (int i = 0; i < 32; ++i) {
            dk[i] = 0.0f;
            dv[i] = 0.0f;
        }

        for (int i = 0; i < wu.n; ++i, rg.next<AWB_STAGES>()) {
            const int q0 = (2 * wu.kt + i % wu.ntq) * AWB_BOX;
            mbar_wait(sm.full(rg.stage), rg.phase);
            if (q0 < wk0 || wk0 >= T) {
                // Every query before every key, or every key past T: no
                // contribution. Waited for all the same (see the header).
                release_all(sm, rg);
                continue;
            }
            const unsigned long long dqt = desc(sm.x + rg.stage * AWB_BOX_BYTES);
            const unsigned long long dot = desc(sm.y + rg.stage * AWB_BOX_BYTES);
            // K and V fragments from the unit's boxes, every tile.
            load_a(kf, sm.a + g * AWB_BOX_BYTES, w, lane);
            load_a(vf, sm.b + g * AWB_BOX_BYTES, w, lane);
            first_products(s, dp, kf, vf, dqt, dot);
            wg_wait<1>(); // Sᵀ done; dPᵀ runs on
            keep_all(s);

            const float* ls = sm.ls + rg.stage * AWB_BOX;
            const float* ds = sm.ds + rg.stage * AWB_BOX;
            // The diagonal tile (q0 == wk0) and the tail one (rows ≥ T
            // hold the next batch's Q and dO) are masked; the others take
            // the unmasked copy of the loop.
            if (q0 == wk0 || q0 + AWB_BOX > T) {
                dkdv_probabilities<true>(s, ls, lc, wk0 - q0 + krow, T - q0, sl2);
            } else {
                dkdv_probabilities<false>(s, ls, lc, 0, 0, sl2);
            }
            pack_a(pa, s);
            accumulate(dv, pa, dot);
            wg_wait<1>(); // dPᵀ done; dV runs on
            keep_all(dp);
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const float2 dd = *reinterpret_cast<const float2*>(ds + 8 * j + 2 * lc);
#pragma unroll
                for (int e = 0; e < 4; ++e) dp[4 * j + e] = s[4 * j + e] * (dp[4 * j + e] - ((e & 1) ? dd.y : dd.x));
            }
            pack_a(sa, dp);
            accumulate(dk, sa, dqt);
            // No product stays in flight into the next tile (see the
            // header): dV and dK end here, and the stage goes back.
            wg_wait<0>();
            keep_all(dk);
            keep_all(dv);
            keep_frags(pa);
            keep_frags(sa);
            release_all(sm, rg);
        }

        mbar_arrive(sm.unit_empty()); // the unit's K and V boxes are the producer's again
        // Epilogue: rows wk0 + krow (+8) of the kv head's k and v columns.
        bf16* rows = dqkv + (long long)wu.b * T * W + (NH + wu.kvh) * AWB_HS;
        store_rows(rows, W, dk, scale, wk0 + krow, T, lc);
        store_rows(rows + NKV * AWB_HS, W, dv, 1.0f, wk0 + krow, T, lc);
    }
}

// ---------------------------------------------------------------------------
// dQ. Unit u: query tile qt = tiles−1−u/(NH·B) (128 queries from qt·128;
// the last, which sees the most keys, first), head u%NH, batch
// u%(NH·B)/NH. Its sequence of stages is key tiles 0..nk−1 (64 keys each),
// nk = ceil(min(qt·128 + 128, T)/64).

struct DqUnit {
    int qt, h, b, nk;
};

__device__ __forceinline__ DqUnit dq_unit(int u, int T, int NH, int B) {
    const int heads = NH * B, rest = u % heads, tiles = (T + AWB_UNIT_ROWS - 1) / AWB_UNIT_ROWS;
    DqUnit w;
    w.qt = tiles - 1 - u / heads;
    w.h = rest % NH;
    w.b = rest / NH;
    w.nk = (min(w.qt * AWB_UNIT_ROWS + AWB_UNIT_ROWS, T) + AWB_BOX - 1) / AWB_BOX;
    return w;
}

// dq_producer: lane 0 issues the TMA, every lane copies four rows of lse
// and of d for the unit (zeros past T) and arrives on the unit's barrier
// (count 1 + 32); the K/V ring is TMA alone (count 1).
__device__ __forceinline__ void dq_producer(const Smem& sm, const TensorMap* qkv, const TensorMap* dout,
                                            const float* __restrict__ lse, const float* __restrict__ dvec, int B,
                                            int T, int NH, int NKV, int units) {
    const int G = gridDim.x, bid = blockIdx.x, lane = threadIdx.x;
    Ring rg{0, 0};
    unsigned uph = 0;
    for (int r = 0; r * G < units; ++r) {
        const int u = unit_at(r, G, bid);
        if (u >= units) continue;
        const DqUnit w = dq_unit(u, T, NH, B);
        const int kvh = w.h / (NH / NKV), row0 = w.b * T, q0 = w.qt * AWB_UNIT_ROWS;
        mbar_wait(sm.unit_empty(), uph ^ 1);
        if (lane == 0) {
            mbar_expect_tx(sm.unit_full(), 4 * AWB_BOX_BYTES);
            for (int g = 0; g < 2; ++g) {
                tma_load(sm.a + g * AWB_BOX_BYTES, qkv, w.h * AWB_HS, row0 + q0 + g * AWB_BOX, sm.unit_full());
                tma_load(sm.b + g * AWB_BOX_BYTES, dout, w.h * AWB_HS, row0 + q0 + g * AWB_BOX, sm.unit_full());
            }
        }
        const long long at = ((long long)w.b * NH + w.h) * T;
#pragma unroll
        for (int m = 0; m < AWB_UNIT_ROWS / 32; ++m) {
            const int x = lane + 32 * m, q = q0 + x;
            const bool ok = q < T;
            cp_async4(sm.lsa + 4 * x, lse + at + (ok ? q : 0), ok);
            cp_async4(sm.dsa + 4 * x, dvec + at + (ok ? q : 0), ok);
        }
        cp_async_arrive(sm.unit_full());
        uph ^= 1;
        const int kcol = (NH + kvh) * AWB_HS, vcol = (NH + NKV + kvh) * AWB_HS;
        for (int j = 0; j < w.nk; ++j, rg.next<AWB_STAGES>()) {
            mbar_wait(sm.empty(rg.stage), rg.phase ^ 1);
            if (lane == 0) {
                mbar_expect_tx(sm.full(rg.stage), 2 * AWB_BOX_BYTES);
                tma_load(sm.x + rg.stage * AWB_BOX_BYTES, qkv, kcol, row0 + j * AWB_BOX, sm.full(rg.stage));
                tma_load(sm.y + rg.stage * AWB_BOX_BYTES, qkv, vcol, row0 + j * AWB_BOX, sm.full(rg.stage));
            }
        }
    }
    cp_async_wait_all();
}

// release_one frees a stage that only wgmma read: one arrival a warpgroup
// (count 2), after its wgmma.wait_group.
__device__ __forceinline__ void release_one(const Smem& sm, const Ring& at, int t) {
    if (t == 0) mbar_arrive(sm.empty(at.stage));
}

// dq_probabilities turns a warpgroup's S (queries × 64 keys) into P =
// 2^(S·sl2 − lsc) in place, lsc the thread's two rows' lse·log2e. With
// MASK (the diagonal tile), the element of key column col and query row
// qrow + 8·(e/2) is 0 where col > qrow + 8·(e/2).
template <bool MASK>
__device__ __forceinline__ void dq_probabilities(float (&s)[32], const float (&lsc)[2], int lc, int qrow, float sl2) {
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            float p = ex2(fmaf(s[4 * j + e], sl2, -lsc[e >> 1]));
            if (MASK && 8 * j + 2 * lc + (e & 1) > qrow + 8 * (e >> 1)) p = 0.0f;
            s[4 * j + e] = p;
        }
}

// dq_consumer: warpgroup g owns queries 64g..64g+63 of each unit. Per key
// tile (64 keys):
//   S = Q·Kᵀ, dP = dO·Vᵀ                          (issued; wait for S)
//   P = 2^(S·sl2 − lse·log2e), masked              (under dP)
//   dS = P∘(dP − d)
//   dQ += dS·K                                     (waited for)
// Element 4j + e of an accumulator is query row qrow + 8·(e/2), key
// column 8j + 2c + e%2 of the tile.
__device__ __forceinline__ void dq_consumer(const Smem& sm, bf16* __restrict__ dqkv, int B, int T, int NH, int NKV,
                                            int units) {
    const int G = gridDim.x, bid = blockIdx.x;
    const int ct = threadIdx.x - 128, g = ct >> 7, t = ct & 127, w = t >> 5;
    const int lane = t & 31, lc = lane & 3;
    const int qrow = 16 * w + (lane >> 2); // the thread's first query row of the warpgroup's 64; its second is +8
    const float scale = 0.125f, l2e = 1.4426950408889634f, sl2 = scale * l2e;
    const long long W = (long long)(NH + 2 * NKV) * AWB_HS;
    Ring rg{0, 0};
    unsigned uph = 0;
    float s[32], dp[32], dq[32];
    unsigned qf[4][4], gf[4][4], sa[4][4];
    for (int r = 0; r * G < units; ++r) {
        const int u = unit_at(r, G, bid);
        if (u >= units) continue;
        const DqUnit wu = dq_unit(u, T, NH, B);
        const int wq0 = wu.qt * AWB_UNIT_ROWS + 64 * g; // the warpgroup's first query

        // lse and d into registers; Q and dO stay until the unit's end.
        mbar_wait(sm.unit_full(), uph);
        uph ^= 1;
        float lsc[2], dd[2];
#pragma unroll
        for (int rh = 0; rh < 2; ++rh) {
            lsc[rh] = sm.ls[64 * g + qrow + 8 * rh] * l2e;
            dd[rh] = sm.ds[64 * g + qrow + 8 * rh];
        }
#pragma unroll
        for (int i = 0; i < 32; ++i) dq[i] = 0.0f;

        for (int j = 0; j < wu.nk; ++j, rg.next<AWB_STAGES>()) {
            const int k0 = j * AWB_BOX;
            mbar_wait(sm.full(rg.stage), rg.phase);
            if (k0 > wq0 || wq0 >= T) {
                // Every key after every query, or every query past T.
                release_one(sm, rg, t);
                continue;
            }
            const unsigned long long dkt = desc(sm.x + rg.stage * AWB_BOX_BYTES);
            const unsigned long long dvt = desc(sm.y + rg.stage * AWB_BOX_BYTES);
            // Q and dO fragments from the unit's boxes, every tile.
            load_a(qf, sm.a + g * AWB_BOX_BYTES, w, lane);
            load_a(gf, sm.b + g * AWB_BOX_BYTES, w, lane);
            first_products(s, dp, qf, gf, dkt, dvt);
            wg_wait<1>(); // S done; dP runs on
            keep_all(s);

            if (k0 == wq0) {
                dq_probabilities<true>(s, lsc, lc, qrow, sl2); // the diagonal tile: key > query masked
            } else {
                dq_probabilities<false>(s, lsc, lc, qrow, sl2);
            }
            wg_wait<0>(); // dP done
            keep_all(dp);
#pragma unroll
            for (int i = 0; i < 32; ++i) dp[i] = s[i] * (dp[i] - dd[(i >> 1) & 1]);
            pack_a(sa, dp);
            accumulate(dq, sa, dkt);
            // No product stays in flight into the next tile (see the
            // header): dQ ends here, and the stage goes back.
            wg_wait<0>();
            keep_all(dq);
            keep_frags(sa);
            release_one(sm, rg, t);
        }

        mbar_arrive(sm.unit_empty()); // the unit's Q and dO boxes are the producer's again
        // Epilogue: rows wq0 + qrow (+8) of the head's q columns.
        bf16* rows = dqkv + (long long)wu.b * T * W + wu.h * AWB_HS;
        store_rows(rows, W, dq, scale, wq0 + qrow, T, lc);
    }
}

} // namespace aw

using namespace aw;

// attention_backward_dkdv_wgmma: grid min(units, SMs) blocks, units =
// ceil(T/AWB_UNIT_ROWS)·NKV·B (any grid covers every unit, with the same
// bits), AWB_THREADS threads, AWB_DKDV_SMEM bytes of dynamic shared
// memory. dout and qkv are the tensor maps of dout as {C, B·T} and qkv as
// {W, B·T} bf16 in boxes of 64 × AWB_BOX. d is the output of
// attention_backward_preprocess_bf16, lse that of either forward. C must
// be 64·NH and NKV divide NH; else nothing is written.
extern "C" __global__ void __launch_bounds__(AWB_THREADS, 1)
    attention_backward_dkdv_wgmma(bf16* dqkv, const float* d, const __grid_constant__ TensorMap dout,
                                  const __grid_constant__ TensorMap qkv, const float* lse, int B, int T, int C,
                                  int NH, int NKV) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    if (C != NH * AWB_HS || NKV <= 0 || NH % NKV != 0 || T <= 0) return;
    const int units = (T + AWB_UNIT_ROWS - 1) / AWB_UNIT_ROWS * NKV * B;
    const Smem sm = carve(smem_raw, AWB_STAGES * AWB_BOX);
    const int tid = threadIdx.x;
    if (tid == 0) {
        mbar_init(sm.unit_full(), 1);    // the producer's expect_tx
        mbar_init(sm.unit_empty(), 256); // every consumer thread, after the unit
        for (int s = 0; s < AWB_STAGES; ++s) {
            mbar_init(sm.full(s), 1 + 32);  // expect_tx, and the producer warp's cp.async of lse and d
            mbar_init(sm.empty(s), 256);    // every consumer thread: each reads lse and d
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        tma_prefetch(&qkv);
        tma_prefetch(&dout);
    }
    __syncthreads();
    if (tid < 128) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(AWB_PRODUCER_REGS));
        if (tid < 32) dkdv_producer(sm, &qkv, &dout, lse, d, B, T, NH, NKV, units);
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(AWB_CONSUMER_REGS));
    dkdv_consumer(sm, dqkv, B, T, NH, NKV, units);
}

// attention_backward_dq_wgmma: grid min(units, SMs) blocks, units =
// ceil(T/AWB_UNIT_ROWS)·NH·B, AWB_THREADS threads, AWB_DQ_SMEM bytes of
// dynamic shared memory; the arguments as attention_backward_dkdv_wgmma's.
extern "C" __global__ void __launch_bounds__(AWB_THREADS, 1)
    attention_backward_dq_wgmma(bf16* dqkv, const float* d, const __grid_constant__ TensorMap dout,
                                const __grid_constant__ TensorMap qkv, const float* lse, int B, int T, int C, int NH,
                                int NKV) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    if (C != NH * AWB_HS || NKV <= 0 || NH % NKV != 0 || T <= 0) return;
    const int units = (T + AWB_UNIT_ROWS - 1) / AWB_UNIT_ROWS * NH * B;
    const Smem sm = carve(smem_raw, AWB_UNIT_ROWS);
    const int tid = threadIdx.x;
    if (tid == 0) {
        mbar_init(sm.unit_full(), 1 + 32); // expect_tx, and the producer warp's cp.async of lse and d
        mbar_init(sm.unit_empty(), 256);   // every consumer thread, after the unit
        for (int s = 0; s < AWB_STAGES; ++s) {
            mbar_init(sm.full(s), 1);  // the producer's expect_tx
            mbar_init(sm.empty(s), 2); // one arrival per consumer warpgroup
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        tma_prefetch(&qkv);
        tma_prefetch(&dout);
    }
    __syncthreads();
    if (tid < 128) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(AWB_PRODUCER_REGS));
        if (tid < 32) dq_producer(sm, &qkv, &dout, lse, d, B, T, NH, NKV, units);
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(AWB_CONSUMER_REGS));
    dq_consumer(sm, dqkv, B, T, NH, NKV, units);
}
