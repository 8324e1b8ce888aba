// attention_wgmma.cu: the causal grouped-query attention forward on Hopper's warpgroup tensor cores (wgmma), fed by TMA.
// nvcc-arch: compute_90
// ptx-target: sm_90a
//
//   attention_forward_wgmma   out (B,T,C) bf16, heads concatenated; lse (B,NH,T)
//                             fp32, natural-log logsumexp of each query row's
//                             scaled scores.
//
// The semantics of attention_mma.cu's attention_forward_bf16, head size 64
// only (gpt2's; ptx.AttentionWGMMAHeadSizeOK refuses the others, and the
// entry writes nothing unless C = 64·NH): qkv (B,T,W) bf16 rows
// [q (NH·64) | k (NKV·64) | v (NKV·64)], W = (NH+2·NKV)·64, query head h
// reads kv head h/(NH/NKV), scale 1/8, query t attends keys 0..t. bf16
// operands, fp32 sums, P rounded to bf16 as the A operand of P·V, out
// rounded once. sm_90a only: `make ptx` rewrites nvcc 11.8's header to
// .version 8.0 / .target sm_90a (scripts/ptx-target.sh), and the driver
// JIT-compiles it.
//
// Design (FlashAttention-3's, at hs = 64), and what each part is for:
//
// - Work unit: 128 query rows of one (head, batch) against the key tiles
//   of 128 keys up to the diagonal: qt+1 tiles for query tile qt. The
//   block is three warpgroups: warpgroup 0 the producer, 1 and 2 the
//   consumers, each owning 64 of the rows (one m64 wgmma tile).
// - Loads: one TMA tensor map over qkv as a 2-D tensor {W columns, B·T
//   rows}, boxes of 64 columns (one head, 128 bytes: exactly one 128-byte
//   swizzle row) × 128 rows. Q, K and V tiles are all such boxes: q at
//   column h·64, k at (NH+kvh)·64, v at (NH+NKV+kvh)·64, rows from b·T. One
//   producer thread issues them; they complete on mbarriers (expect_tx).
//   Q is double-buffered across units, K and V go through a ring of
//   AW_STAGES stages with separate full/empty barriers for K and for V
//   (V is used one step after K). The producer runs ahead across units,
//   so a unit's Q and first K/V land while the previous unit finishes.
//   Predicted: the consumer warps issue no load instructions and no
//   address arithmetic (the mma kernel's cp.async and ldmatrix), and no
//   unit waits for its first tiles.
// - S = Q·Kᵀ: 4 wgmma m64n128k16 a consumer (k = 16 of hs each), A = Q
//   and B = K from shared memory, both K-major (hs contiguous): the
//   descriptor's start moves 32 bytes along the swizzled row per k-step.
// - Online softmax in fp32 registers, FlashAttention-2's: the scores are
//   scaled by log2(e)/8 so each exponential is one ex2.approx; the running
//   max m is of the raw scores, and lse = m/8 + ln(l) as the mma kernel
//   stores it. The key tiles run from the diagonal down to tile 0: only
//   the first (diagonal) tile is masked (key > query), and it leaves every
//   row a finite max (each row keeps its key 0 of the tile at least), so
//   no exponential sees −inf − (−inf).
// - O += P·V: 8 wgmma m64n64k16 with A = P from registers. The fp32
//   accumulator of S holds, in thread t of a warpgroup (warp w, lane
//   4·r + c), rows 16w + r and +8, columns 8j + 2c and +1 of each n8 block
//   j; the register A fragment of m64nNk16 holds per warp the rows of an
//   m16n8k16 A (16w + r and +8, k 2c, 2c+1, 2c+8, 2c+9). So blocks 2kk and
//   2kk+1 of S, rounded to bf16 pairs, are exactly the A registers of the
//   k-step kk (a_from_acc in attention_mma.cu is the same identity), and P
//   never touches shared memory. B = V from shared memory, [keys][hs]
//   with hs contiguous: MN-major for this product, so the transpose bit
//   is set and a k-step of 16 keys is 16 rows, 2048 bytes, on (the
//   descriptor matmul_wgmma.cu uses for its N-major operands, one box
//   wide).
// - Overlap inside a warpgroup (FlashAttention-3's intra-warpgroup
//   pipelining): step i issues S_i = Q·K_iᵀ and then O += P_{i−1}·V_{i−1},
//   waits for S_i only (wgmma.wait_group 1), and runs the softmax of S_i
//   while the tensor cores do P_{i−1}·V_{i−1}. At hs = 64 the ex2 of a
//   128×128 tile (16 a clock an SM) take as long as its two products
//   (4096 FLOP a clock an SM), so hiding one under the other is most of
//   the speed. The two consumer warpgroups interleave on top of that.
// - Registers: S 64 fp32, P 32, O 32, m/l 4, a consumer; setmaxnreg
//   gives the producer 40 and the consumers 232. ptxas 12.4 gives the
//   consumer path 184 registers and no spills, and keeps the wgmma
//   pipelined (no C7514 "serialized" note); scripts/wgmma-check.sh attn
//   checks both with the GPU machine's ptxas.
// - Epilogue: O/l rounded to bf16 and stored from the registers (4 bytes
//   a column pair), lse by one lane of each row's four; rows ≥ T are
//   never stored.
// - Schedule: persistent. The grid is min(units, SMs) blocks (the
//   launcher's), one an SM (~130 KB of shared memory, 384 threads at up
//   to 168 registers); units are numbered heaviest first (query tile
//   tiles−1, most keys, for every (head, batch) before tile tiles−2, ...),
//   and block b takes in round r the unit r·G + b for even r and
//   r·G + G−1−b for odd r (a snake), which evens out the triangle: at
//   B=8, NH=12, T=1024 on 132 SMs the busiest block does 27 tile pairs
//   against a mean of 26.2 (plain round robin: 30). Predicted: the launch
//   and prologue of ~6 blocks an SM (a few µs of a ~45 µs kernel) go.
//
// The estimate, at B=8, NH=12, T=1024 on an H200: a 128×128 tile pair is
// 4.2 MFLOP of products (~1024 clocks of an SM's tensor cores), 16K ex2
// (~1024 clocks of its special-function units) and ~5 FP32 instructions a
// score (~640 clocks). Fully overlapped that is ~1.1K clocks a pair, none
// overlapped ~2.7K; with step 0 and the epilogue unoverlapped, ~1.5–2K
// clocks × 27 pairs a block ≈ 22–30 µs at 1.8 GHz, plus the launch and
// the tail, against the mma kernel's ~60 µs (215 TFLOP/s of its 12.9
// GFLOP). That bounds this kernel at some 350–500 TFLOP/s on paper; the
// m64n64 products of P·V run below the tensor cores' peak, so ≥ 265
// (≤ 49 µs) is the target, and a result near the mma kernel's would mean
// the overlap does not happen (look for ptxas's C7514 note first).
//
// Edges: rows past B·T read as zeros (TMA's fill). A query tile that
// crosses the end of its batch reads the next batch's rows as queries
// (never stored) and keys (masked: every kept score has key ≤ query < T).
// Q tiles of rows ≥ T compute finite garbage that no store reads.
//
// Determinism: every output element is computed by one thread in a fixed
// order that depends on the shape alone, whichever block runs the unit;
// no atomics. So any grid gives the same bits.

#include "attention_wgmma.cuh"

// The tile and the block (ptx/constants_wgmma_attention.go mirrors them;
// ptx/constants_wgmma_attention_test.go checks). One tensor map serves Q,
// K and V, so the query and key tiles are the same box: AW_BM = AW_BN.
static constexpr int AW_HS = 64;
static constexpr int AW_BM = 128;
static constexpr int AW_BN = 128;
static constexpr int AW_THREADS = 384;
static constexpr int AW_STAGES = 3;
static constexpr int AW_TILE_BYTES = AW_BN * AW_HS * 2;
// Shared memory: 1024 bytes of slack to align the tiles to the swizzle's
// 1024-byte period, two Q buffers and the K and V rings, then the
// mbarriers: Q full/empty (2 each), K and V full/empty (AW_STAGES each).
static constexpr int AW_SMEM = 1024 + (2 + 2 * AW_STAGES) * AW_TILE_BYTES + 8 * (4 + 4 * AW_STAGES);
// The registers setmaxnreg gives each role: 128·40 + 256·232 ≤ 64K.
static constexpr int AW_PRODUCER_REGS = 40;
static constexpr int AW_CONSUMER_REGS = 232;

static_assert(AW_BM == AW_BN, "one tensor map: the Q box is the K/V box");
static_assert(AW_BM == 2 * 64, "two consumer warpgroups of 64 rows");
static_assert(AW_HS * 2 == 128, "a head row is one 128-byte swizzle row");
static_assert(AW_SMEM <= 227 * 1024, "more than an H100/H200 block may opt in to");

namespace aw {

// wgmma_qk: d(64×128) = a(64×16)·b(16×128) (+ d when accumulate), a = Q
// and b = Kᵀ through their descriptors, both K-major.
__device__ __forceinline__ void wgmma_qk(float (&d)[64], unsigned long long da, unsigned long long db, int accumulate) {
    asm volatile("{\n\t"
                 ".reg .pred p;\n\t"
                 "setp.ne.b32 p, %66, 0;\n\t"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                 "}, %64, %65, p, 1, 1, 0, 0;\n\t"
                 "}"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                   "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                   "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                   "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                   "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da), "l"(db), "r"(accumulate));
}

// wgmma_pv: d(64×64) += a(64×16)·b(16×64), a = P from registers (the
// m64nNk16 A fragment), b = V through its descriptor, MN-major (the
// transpose bit: V is stored [keys][hs], hs contiguous).
__device__ __forceinline__ void wgmma_pv(float (&d)[32], const unsigned (&a)[4], unsigned long long db) {
    asm volatile("{\n\t"
                 ".reg .pred p;\n\t"
                 "setp.ne.b32 p, %37, 0;\n\t"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n\t"
                 "}"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

// Unit is one work unit: query tile qt (rows qt·AW_BM ..) of head h of
// batch b, and its n = qt+1 key tiles. Units are numbered heaviest first:
// unit u is query tile tiles−1−u/(NH·B), head u%NH, batch u%(NH·B)/NH.
struct Unit {
    int qt, h, b, n;
};

__device__ __forceinline__ Unit unit_of(int u, int tiles, int NH, int B) {
    const int heads = NH * B, rank = u / heads, rest = u - rank * heads;
    Unit w;
    w.qt = tiles - 1 - rank;
    w.h = rest % NH;
    w.b = rest / NH;
    w.n = w.qt + 1;
    return w;
}

// Smem is the block's shared-memory layout (addresses in the shared
// window): two Q buffers, the K and V rings, and the barriers.
struct Smem {
    unsigned q, k, v, bars;
    __device__ __forceinline__ unsigned q_full(int s) const { return bars + 8 * s; }
    __device__ __forceinline__ unsigned q_empty(int s) const { return bars + 8 * (2 + s); }
    __device__ __forceinline__ unsigned k_full(int s) const { return bars + 8 * (4 + s); }
    __device__ __forceinline__ unsigned k_empty(int s) const { return bars + 8 * (4 + AW_STAGES + s); }
    __device__ __forceinline__ unsigned v_full(int s) const { return bars + 8 * (4 + 2 * AW_STAGES + s); }
    __device__ __forceinline__ unsigned v_empty(int s) const { return bars + 8 * (4 + 3 * AW_STAGES + s); }
};

// producer: one thread issues every unit's loads in the order the
// consumers use them: Q, then K and V of each key tile from the diagonal
// down. It refills a buffer once both consumers have freed it (the empty
// barrier's phase before this use: on the first lap, the phase before the
// first, which counts as complete).
__device__ __forceinline__ void producer(const Smem& sm, const TensorMap* map, int B, int T, int NH, int NKV,
                                         int tiles, int units) {
    const int G = gridDim.x, bid = blockIdx.x;
    Ring qr{0, 0}, kv{0, 0};
    for (int r = 0; r * G < units; ++r) {
        const int u = unit_at(r, G, bid);
        if (u >= units) continue;
        const Unit w = unit_of(u, tiles, NH, B);
        const int kvh = w.h / (NH / NKV), row0 = w.b * T;
        const int kcol = (NH + kvh) * AW_HS, vcol = (NH + NKV + kvh) * AW_HS;
        mbar_wait(sm.q_empty(qr.stage), qr.phase ^ 1);
        mbar_expect_tx(sm.q_full(qr.stage), AW_TILE_BYTES);
        tma_load(sm.q + qr.stage * AW_TILE_BYTES, map, w.h * AW_HS, row0 + w.qt * AW_BM, sm.q_full(qr.stage));
        qr.next<2>();
        for (int i = 0; i < w.n; ++i, kv.next<AW_STAGES>()) {
            const int k0 = row0 + (w.n - 1 - i) * AW_BN;
            mbar_wait(sm.k_empty(kv.stage), kv.phase ^ 1);
            mbar_expect_tx(sm.k_full(kv.stage), AW_TILE_BYTES);
            tma_load(sm.k + kv.stage * AW_TILE_BYTES, map, kcol, k0, sm.k_full(kv.stage));
            mbar_wait(sm.v_empty(kv.stage), kv.phase ^ 1);
            mbar_expect_tx(sm.v_full(kv.stage), AW_TILE_BYTES);
            tma_load(sm.v + kv.stage * AW_TILE_BYTES, map, vcol, k0, sm.v_full(kv.stage));
        }
    }
}

// softmax turns the scores s of one key tile into probabilities in place
// (2^(s·sl2 − m·sl2), unrounded) and updates the running max m and the
// thread's part of the row sums l; corr is each row's rescale of the
// earlier tiles (0 on the first: m was −inf). Element 4j + e of s is row
// e/2 (of the thread's two), column 8j + 2c + e%2. A row's max is reduced
// over the four lanes that hold it, so they rescale alike.
__device__ __forceinline__ void softmax(float (&s)[64], float (&m)[2], float (&l)[2], float (&corr)[2], float sl2) {
#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < AW_BN / 8; ++j) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * rh], s[4 * j + 2 * rh + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
        const float mnew = fmaxf(m[rh], mx);
        corr[rh] = ex2((m[rh] - mnew) * sl2);
        const float msc = mnew * sl2;
        float rs = 0.0f;
#pragma unroll
        for (int j = 0; j < AW_BN / 8; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const float p = ex2(fmaf(s[4 * j + 2 * rh + e], sl2, -msc)); // masked: 2^-inf = 0
                s[4 * j + 2 * rh + e] = p;
                rs += p;
            }
        l[rh] = l[rh] * corr[rh] + rs;
        m[rh] = mnew;
    }
}

// qk issues S = Q·Kᵀ for a warpgroup: 4 k-steps of 16 of hs, each 32
// bytes further along both operands' swizzled rows (+2 in the
// descriptors' address field, which counts 16 bytes); the first
// overwrites S.
__device__ __forceinline__ void qk(float (&s)[64], unsigned long long dq, unsigned long long dk) {
#pragma unroll
    for (int ks = 0; ks < AW_HS / 16; ++ks) wgmma_qk(s, dq + 2 * ks, dk + 2 * ks, ks);
}

// pv issues O += P·V for a warpgroup: 8 k-steps of 16 keys, each 16 rows
// (2048 bytes, +128 in the descriptor) further down the V tile.
__device__ __forceinline__ void pv(float (&o)[32], const unsigned (&p)[AW_BN / 16][4], unsigned long long dv) {
#pragma unroll
    for (int kk = 0; kk < AW_BN / 16; ++kk) wgmma_pv(o, p[kk], dv + 128 * kk);
}

// pack_p rounds the probabilities to bf16 as the A fragments of P·V: the
// k-step kk (keys 16kk..16kk+15) is n8 blocks 2kk and 2kk+1 of S, in the
// order (row, keys 2c, 2c+1), (row+8, 2c..), (row, 2c+8..), (row+8, 2c+8..).
__device__ __forceinline__ void pack_p(unsigned (&p)[AW_BN / 16][4], const float (&s)[64]) {
#pragma unroll
    for (int kk = 0; kk < AW_BN / 16; ++kk) {
        p[kk][0] = pack_bf16(s[8 * kk], s[8 * kk + 1]);
        p[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
        p[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
        p[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
    }
}

// release_k gives the K stage back to the producer (one arrival per
// warpgroup), and the Q buffer too after the unit's last S; every thread
// moves on in the ring.
__device__ __forceinline__ void release_k(const Smem& sm, Ring& kr, const Ring& qr, int t, bool last) {
    if (t == 0) {
        mbar_arrive(sm.k_empty(kr.stage));
        if (last) mbar_arrive(sm.q_empty(qr.stage));
    }
    kr.next<AW_STAGES>();
}

// release_v gives the V stage back to the producer.
__device__ __forceinline__ void release_v(const Smem& sm, Ring& vr, int t) {
    if (t == 0) mbar_arrive(sm.v_empty(vr.stage));
    vr.next<AW_STAGES>();
}

// overlap_step is a step past the first: with K_i landed, it issues
// S_i = Q·K_iᵀ, then (V_{i−1} landed) O += P_{i−1}·V_{i−1}, waits for S_i
// alone (wgmma.wait_group 1), frees K_i (and Q after the unit's last S),
// and runs the softmax of S_i while the tensor cores do P_{i−1}·V_{i−1}.
__device__ __forceinline__ void overlap_step(const Smem& sm, float (&s)[64], float (&o)[32],
                                             unsigned (&p)[AW_BN / 16][4], float (&m)[2], float (&l)[2],
                                             float (&corr)[2], unsigned long long dq, Ring& kr, Ring& vr,
                                             const Ring& qr, int t, bool last, float sl2) {
    keep_all(s);
    keep_all(o);
    keep_frags(p);
    wg_fence();
    qk(s, dq, desc(sm.k + kr.stage * AW_TILE_BYTES));
    wg_commit();
    mbar_wait(sm.v_full(vr.stage), vr.phase);
    pv(o, p, desc(sm.v + vr.stage * AW_TILE_BYTES));
    wg_commit();
    wg_wait<1>(); // S_i is done; P_{i−1}·V_{i−1} runs on
    keep_all(s);
    release_k(sm, kr, qr, t, last);
    softmax(s, m, l, corr, sl2);
}

// finish_pv waits for the P·V in flight, frees its V stage, rescales O by
// the newer tile's corr and packs that tile's P.
__device__ __forceinline__ void finish_pv(const Smem& sm, const float (&s)[64], float (&o)[32],
                                          unsigned (&p)[AW_BN / 16][4], const float (&corr)[2], Ring& vr, int t) {
    wg_wait<0>();
    keep_all(o);
    keep_frags(p);
    release_v(sm, vr, t);
#pragma unroll
    for (int j = 0; j < 32; ++j) o[j] *= corr[(j >> 1) & 1];
    pack_p(p, s);
}

// consumer: warpgroup g (0 or 1) owns rows 64g..64g+63 of each unit's
// query tile. Step i of a unit (key tile n−1−i) issues S_i = Q·K_iᵀ, then
// O += P_{i−1}·V_{i−1}, waits for S_i alone, frees K_i, and runs the
// softmax of S_i under the P·V product; then waits for that, frees
// V_{i−1}, rescales O and packs P_i. The last P·V follows the loop.
__device__ __forceinline__ void consumer(const Smem& sm, bf16* __restrict__ out, float* __restrict__ lse, int B,
                                         int T, int C, int NH, int tiles, int units) {
    const int G = gridDim.x, bid = blockIdx.x;
    const int ct = threadIdx.x - 128, g = ct >> 7, t = ct & 127;
    const int lane = t & 31, lq = lane >> 2, lc = lane & 3;
    const int row = 64 * g + 16 * (t >> 5) + lq; // the thread's first row in the tile; its second is row + 8
    const float scale = 0.125f, sl2 = scale * 1.4426950408889634f;
    Ring qr{0, 0}, kr{0, 0}, vr{0, 0};
    float s[64], o[32];
    unsigned p[AW_BN / 16][4];
#pragma unroll
    for (int i = 0; i < 64; ++i) s[i] = 0.0f;
    for (int r = 0; r * G < units; ++r) {
        const int u = unit_at(r, G, bid);
        if (u >= units) continue;
        const Unit w = unit_of(u, tiles, NH, B);
        const unsigned long long dq = desc(sm.q + qr.stage * AW_TILE_BYTES + g * (64 * 128));
        float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, corr[2];
#pragma unroll
        for (int i = 0; i < 32; ++i) o[i] = 0.0f;
        mbar_wait(sm.q_full(qr.stage), qr.phase);

        // Step 0: the diagonal tile (key tile qt), alone: nothing to overlap
        // yet. Key 8j + 2c + e%2 of the tile meets query row + 8·(e/2) of it.
        mbar_wait(sm.k_full(kr.stage), kr.phase);
        keep_all(s);
        wg_fence();
        qk(s, dq, desc(sm.k + kr.stage * AW_TILE_BYTES));
        wg_commit();
        wg_wait<0>();
        keep_all(s);
        release_k(sm, kr, qr, t, w.n == 1);
#pragma unroll
        for (int j = 0; j < AW_BN / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                if (8 * j + 2 * lc + (e & 1) > row + 8 * (e >> 1)) s[4 * j + e] = -INFINITY;
        softmax(s, m, l, corr, sl2);
        pack_p(p, s);

        // Steps 1..n−1: key tiles qt−1 down to 0, unmasked, each overlapped
        // with the previous tile's P·V (overlap_step). The wait for that
        // P·V (finish_pv) is placed after the next K tile's barrier wait,
        // at the top of the next step, not right after the softmax: ptxas
        // schedules wgmma.wait_group, an instruction without operands, as
        // early as its basic block allows, which put the wait above the
        // softmax and every ex2 after it (seen in ptxas 12.4's SASS). The
        // barrier's spin loop ends the softmax's block, so the wait cannot
        // move up into it.
        if (w.n > 1) {
            mbar_wait(sm.k_full(kr.stage), kr.phase);
            overlap_step(sm, s, o, p, m, l, corr, dq, kr, vr, qr, t, w.n == 2, sl2);
            for (int i = 2; i < w.n; ++i) {
                mbar_wait(sm.k_full(kr.stage), kr.phase);
                finish_pv(sm, s, o, p, corr, vr, t);
                overlap_step(sm, s, o, p, m, l, corr, dq, kr, vr, qr, t, i == w.n - 1, sl2);
            }
            finish_pv(sm, s, o, p, corr, vr, t);
        }

        // The last P·V.
        mbar_wait(sm.v_full(vr.stage), vr.phase);
        keep_all(o);
        keep_frags(p);
        wg_fence();
        pv(o, p, desc(sm.v + vr.stage * AW_TILE_BYTES));
        wg_commit();
        wg_wait<0>();
        keep_all(o);
        keep_frags(p);
        release_v(sm, vr, t);
        qr.next<2>();

        // Epilogue: element 4j + e of o is row row + 8·(e/2), column
        // 8j + 2c + e%2 of the head.
        const int q0 = w.qt * AW_BM;
        bf16* obase = out + (long long)w.b * T * C + w.h * AW_HS + 2 * lc;
        float* lrow = lse + ((long long)w.b * NH + w.h) * T;
#pragma unroll
        for (int rh = 0; rh < 2; ++rh) {
            float lt = l[rh];
            lt += __shfl_xor_sync(0xffffffff, lt, 1);
            lt += __shfl_xor_sync(0xffffffff, lt, 2);
            const float inv = 1.0f / lt;
            const int q = q0 + row + 8 * rh;
            if (q >= T) continue;
            if (lc == 0) lrow[q] = m[rh] * scale + logf(lt);
            unsigned* dst = reinterpret_cast<unsigned*>(obase + (long long)q * C);
#pragma unroll
            for (int j = 0; j < AW_HS / 8; ++j) dst[4 * j] = pack_bf16(o[4 * j + 2 * rh] * inv, o[4 * j + 2 * rh + 1] * inv);
        }
    }
}

} // namespace aw

using namespace aw;

// attention_forward_wgmma: grid min(units, SMs) blocks, units =
// ceil(T/AW_BM)·NH·B (any grid covers every unit, with the same bits),
// AW_THREADS threads, AW_SMEM bytes of dynamic shared memory. qkv is the
// tensor map of qkv as {W, B·T} bf16 (row stride W) in boxes of 64 ×
// AW_BM. C must be 64·NH and NKV divide NH; else nothing is written.
extern "C" __global__ void __launch_bounds__(AW_THREADS, 1)
    attention_forward_wgmma(const __grid_constant__ TensorMap qkv, bf16* out, float* lse, int B, int T, int C, int NH,
                            int NKV) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    if (C != NH * AW_HS || NKV <= 0 || NH % NKV != 0 || T <= 0) return;
    const int tiles = (T + AW_BM - 1) / AW_BM, units = tiles * NH * B;
    Smem sm;
    sm.q = (smem_addr(smem_raw) + 1023) & ~1023u;
    sm.k = sm.q + 2 * AW_TILE_BYTES;
    sm.v = sm.k + AW_STAGES * AW_TILE_BYTES;
    sm.bars = sm.v + AW_STAGES * AW_TILE_BYTES;
    const int tid = threadIdx.x;
    if (tid == 0) {
        for (int s = 0; s < 2; ++s) {
            mbar_init(sm.q_full(s), 1);  // the producer's expect_tx
            mbar_init(sm.q_empty(s), 2); // one arrival per consumer warpgroup
        }
        for (int s = 0; s < AW_STAGES; ++s) {
            mbar_init(sm.k_full(s), 1);
            mbar_init(sm.k_empty(s), 2);
            mbar_init(sm.v_full(s), 1);
            mbar_init(sm.v_empty(s), 2);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        tma_prefetch(&qkv);
    }
    __syncthreads();
    if (tid < 128) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(AW_PRODUCER_REGS));
        if (tid == 0) producer(sm, &qkv, B, T, NH, NKV, tiles, units);
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(AW_CONSUMER_REGS));
    consumer(sm, out, lse, B, T, C, NH, tiles, units);
}
