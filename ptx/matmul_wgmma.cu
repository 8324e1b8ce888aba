// matmul_wgmma.cu: the linear layers' bf16 and tf32 products on Hopper's warpgroup tensor cores (wgmma), fed by the tensor memory accelerator (TMA).
// nvcc-arch: compute_90
// ptx-target: sm_90a
//
//   matmul_forward_wgmma          out(N,OC)  = inp(N,C) · w(OC,C)ᵀ + bias(OC)   (bias may be null)
//   matmul_backward_input_wgmma   dinp(N,C)  = dout(N,OC) · w(OC,C)              (overwrites)
//   matmul_backward_weight_wgmma  dw(OC,C)   = dout(N,OC)ᵀ · inp(N,C)            (overwrites)
//
// (The tf32 entries, matmul_*_wgmma_tf32, and their transposes are at the
// end of this file.) The semantics of matmul_mma.cu's bf16 entries: bf16 operands, fp32
// accumulation, the output rounded to bf16 once (round to nearest even);
// the (N,OC) tensor has a row stride ld ≥ OC. These entries exist only on
// sm_90a: `make ptx` rewrites nvcc 11.8's header (.version 7.8, .target
// sm_90) to .version 8.0 / .target sm_90a, which the CUDA 12+ driver JIT
// compiles (see "ptx-target" in the Makefile).
//
// One GEMM, C(M,Nc) = A(M,K)·B(K,Nc), in the three layouts:
//
//   product          M    Nc   K    A (tensor map)        B (tensor map)
//   forward          N    OC   C    inp,  K-major          w,   K-major
//   backward_input   N    C    OC   dout, K-major (ld)     w,   N-major
//   backward_weight  OC   C    N    dout, M-major (ld)     inp, N-major
//
// The operands are read only through their TMA tensor maps (made on the
// host with cuTensorMapEncodeTiled, passed by value as __grid_constant__
// parameters): boxes of 64 elements (128 bytes) along the contiguous
// dimension, 128-byte swizzled, which is the layout wgmma reads through a
// shared-memory descriptor. A K-major operand comes as one box of 64 k ×
// rows, an M/N-major one as boxes of 64 rows (m or n) × 64 k. Out-of-bounds
// elements land as zeros, so the K, M and N tails need no code; the C tile
// goes out through TMA stores too, which clip it at M and Nc. TMA needs 16-byte-aligned rows (a row stride that
// is a multiple of 8 bf16) and base: the launcher takes matmul_mma where a
// shape does not allow it.
//
// A block is three warpgroups of 128 threads and computes a 128×BN tile of
// C, BN = 256 (wide) or 128 (narrow, for grids the wide tile leaves short of
// the SMs). Warpgroup 0 is the producer: one thread issues the TMA loads of
// a stage (64 of K: A's 128×64 and B's BN×64) into a ring of STAGES, each
// completing on its own "full" mbarrier; it waits on the stage's "empty"
// mbarrier before refilling it. Warpgroups 1 and 2 are the consumers, rows
// 0–63 and 64–127: per stage each issues four m64nBNk16 wgmma (k = 16 each)
// into BN/2 fp32 accumulators a thread, keeps one stage's group in flight
// (wgmma.wait_group 1) and frees the previous stage. setmaxnreg gives the
// producer 40 registers and the consumers 232.
//
// The grid is persistent: at most one block an SM, each taking work units
// blockIdx.x, blockIdx.x + gridDim.x, ...; the producer runs ahead across
// units, so a unit's first loads overlap the previous unit's last products
// and epilogue. Split-K, on every product: a unit is one tile over one of S
// slices of K rows, s·slice_k .. min(K, (s+1)·slice_k), summed into an fp32
// partial tile; the last unit of a tile to arrive (an integer counter,
// which it resets) adds the S partials in slice order 0..S−1, adds the
// bias and stores C, rounded once. The order of every sum is fixed by the shape and the plan:
// deterministic, and no float atomics.

#include <cuda_bf16.h>

#include "hopper.cuh"

namespace wg {

using namespace hopper;

// The tile, the warpgroups and the ring (gemmplan's WGMMA* constants
// mirror them; ptx/constants_test.go checks).
constexpr int BM = 128;
constexpr int BN_WIDE = 256;
constexpr int BN_NARROW = 128;
constexpr int BK = 64; // one 128-byte swizzle row of bf16
constexpr int BK_TF32 = 32; // and of fp32 (the tf32 entries' stage)
constexpr int THREADS = 384;
constexpr int GROUP_M = 8;
// SMEM_LIMIT is the shared memory an H100/H200 block may opt in to. A
// block holds the ring of stages and the C tile staged for its TMA stores
// (OUT_*: BM × BN bf16), 1024 bytes of slack to align both to the
// swizzle's 1024-byte period, a full and an empty mbarrier a stage and
// the split's flag; the ring takes as many stages as fit: 3 wide, 6 narrow.
constexpr int SMEM_LIMIT = 227 * 1024;
// BOX_BYTES is one box of 64 × 64 bf16 (an M/N-major operand's unit, and
// one TMA store of C), and the distance between the 64-row halves of A:
// consumer g's rows.
constexpr int BOX_BYTES = 64 * BK * 2;
constexpr int A_BYTES = BM * BK * 2;
constexpr int OUT_WIDE = BM * BN_WIDE * 2;
constexpr int OUT_NARROW = BM * BN_NARROW * 2;
constexpr int STAGES_WIDE = (SMEM_LIMIT - 2048 - OUT_WIDE) / ((BM + BN_WIDE) * BK * 2);
constexpr int STAGES_NARROW = (SMEM_LIMIT - 2048 - OUT_NARROW) / ((BM + BN_NARROW) * BK * 2);
constexpr int SMEM_WIDE = 1024 + STAGES_WIDE * (BM + BN_WIDE) * BK * 2 + OUT_WIDE + 16 * STAGES_WIDE + 16;
constexpr int SMEM_NARROW = 1024 + STAGES_NARROW * (BM + BN_NARROW) * BK * 2 + OUT_NARROW + 16 * STAGES_NARROW + 16;
// The tf32 entries' stages hold the same bytes (128-byte rows of 32 fp32
// instead of 64 bf16); their fp32 C tile goes out from the registers (a
// staged fp32 tile would leave the wide ring 2 stages), so the ring takes
// the C tile's room too: 4 stages wide, 7 narrow.
constexpr int STAGES_WIDE_TF32 = (SMEM_LIMIT - 2048) / ((BM + BN_WIDE) * BK * 2);
constexpr int STAGES_NARROW_TF32 = (SMEM_LIMIT - 2048) / ((BM + BN_NARROW) * BK * 2);
constexpr int SMEM_WIDE_TF32 = 1024 + STAGES_WIDE_TF32 * (BM + BN_WIDE) * BK * 2 + 16 * STAGES_WIDE_TF32 + 16;
constexpr int SMEM_NARROW_TF32 = 1024 + STAGES_NARROW_TF32 * (BM + BN_NARROW) * BK * 2 + 16 * STAGES_NARROW_TF32 + 16;
// The registers setmaxnreg gives each role: 128·40 + 256·232 ≤ 64K.
constexpr int PRODUCER_REGS = 40;
constexpr int CONSUMER_REGS = 232;

typedef __nv_bfloat16 bf16;


// Elem is what the element type changes: a stage's K in elements (one
// 128-byte row), and whether C is staged in shared memory for TMA stores
// (bf16) or stored from the registers (fp32).
template <typename T>
struct Elem;
template <>
struct Elem<bf16> {
    static constexpr int BKE = BK;
    static constexpr bool TF32 = false;
};
template <>
struct Elem<float> {
    static constexpr int BKE = BK_TF32;
    static constexpr bool TF32 = true;
};

template <int BN_, typename T>
struct Cfg {
    static constexpr int BN = BN_;
    static constexpr int BKE = Elem<T>::BKE;
    static constexpr int B_BYTES = BN * BK * 2;
    static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
    static constexpr int STAGES = Elem<T>::TF32 ? (BN == BN_WIDE ? STAGES_WIDE_TF32 : STAGES_NARROW_TF32)
                                                : (BN == BN_WIDE ? STAGES_WIDE : STAGES_NARROW);
    static constexpr int SMEM = Elem<T>::TF32 ? (BN == BN_WIDE ? SMEM_WIDE_TF32 : SMEM_NARROW_TF32)
                                              : (BN == BN_WIDE ? SMEM_WIDE : SMEM_NARROW);
    static constexpr int OUT_BYTES = Elem<T>::TF32 ? 0 : BM * BN * 2;
    static constexpr int ACC = BN / 2;
    static_assert(1024 + STAGES * STAGE_BYTES + OUT_BYTES + 2 * STAGES * 8 + 16 <= SMEM, "the block's layout fits");
    static_assert(SMEM <= 227 * 1024, "more than an H100/H200 block may opt in to");
};

// desc is the wgmma shared-memory descriptor of a 128-byte-swizzled tile
// whose rows of 128 bytes start at addr (the swizzle's 1024-byte atoms are
// 8 such rows: the stride byte offset). For an M/N-major tile the leading
// byte offset is the distance between its boxes of 64 rows (m or n); a
// K-major tile's is unused (16).
__device__ __forceinline__ unsigned long long desc(unsigned addr, bool mn_major) {
    const unsigned long long lbo = mn_major ? BOX_BYTES : 16;
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | ((lbo >> 4) << 16) | ((1024ull >> 4) << 32) | (1ull << 62);
}

// The accumulator operands of one wgmma: WG_D64(d, i) are d[i..i+63],
// read and written; WG_REGS64 and WG_REGS128 name 64 and 128 of them.
#define WG_D8(d, i) \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), \
        "+f"(d[i + 7])
#define WG_D64(d, i) \
    WG_D8(d, i), WG_D8(d, i + 8), WG_D8(d, i + 16), WG_D8(d, i + 24), WG_D8(d, i + 32), WG_D8(d, i + 40), \
        WG_D8(d, i + 48), WG_D8(d, i + 56)
#define WG_REGS64 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define WG_REGS128 WG_REGS64 ", %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"

// WG_MMA is one wgmma of shape and types SHAPE ("m64n256k16.f32.bf16.bf16")
// with the accumulators REGS (operands 0..ACC-1, the list OPS), the
// descriptors da and db (operands ACC, ACC+1: A, B), scale-d from operand
// SCALE (1: accumulate) and the tail TAIL after the immediate scale-a and
// scale-b (bf16: the transposes, operands TA and TB; tf32 has none), the
// accumulators' constraints the rest (OPS).
#define WG_MMA(SHAPE, REGS, DESCS, SCALE, TAIL, ...)                                                          \
    asm volatile("{\n\t"                                                                                    \
                 ".reg .pred p;\n\t"                                                                        \
                 "setp.ne.b32 p, " SCALE ", 0;\n\t"                                                         \
                 "wgmma.mma_async.sync.aligned." SHAPE " {" REGS "}, " DESCS ", p, 1, 1" TAIL ";\n\t"       \
                 "}"                                                                                        \
                 : __VA_ARGS__                                                                              \
                 : "l"(da), "l"(db), "r"(1), "n"(TA), "n"(TB))

// wg_mma: d(64×BN) += a(64×k)·b(k×BN) for the warpgroup, a and b in shared
// memory through their descriptors, BN = 256 (d of 128) or 128 (d of 64),
// k = 16 for bf16 and 8 for tf32 (32 bytes of a K-major row either way).
// TA, TB = 1 for an M- or N-major operand (bf16 only: the PTX ISA has no
// transpose for tf32, whose operands are both K-major). The accumulators
// are read and written (scale-d = 1). The last argument picks the type.
template <int TA, int TB>
__device__ __forceinline__ void wg_mma(float (&d)[128], unsigned long long da, unsigned long long db, bf16) {
    WG_MMA("m64n256k16.f32.bf16.bf16", WG_REGS128, "%128, %129", "%130", ", %131, %132", WG_D64(d, 0), WG_D64(d, 64));
}
template <int TA, int TB>
__device__ __forceinline__ void wg_mma(float (&d)[64], unsigned long long da, unsigned long long db, bf16) {
    WG_MMA("m64n128k16.f32.bf16.bf16", WG_REGS64, "%64, %65", "%66", ", %67, %68", WG_D64(d, 0));
}
template <int TA, int TB>
__device__ __forceinline__ void wg_mma(float (&d)[128], unsigned long long da, unsigned long long db, float) {
    static_assert(TA == 0 && TB == 0, "tf32 wgmma reads K-major operands only");
    WG_MMA("m64n256k8.f32.tf32.tf32", WG_REGS128, "%128, %129", "%130", "", WG_D64(d, 0), WG_D64(d, 64));
}
template <int TA, int TB>
__device__ __forceinline__ void wg_mma(float (&d)[64], unsigned long long da, unsigned long long db, float) {
    static_assert(TA == 0 && TB == 0, "tf32 wgmma reads K-major operands only");
    WG_MMA("m64n128k8.f32.tf32.tf32", WG_REGS64, "%64, %65", "%66", "", WG_D64(d, 0));
}

// Split is the split-K of a launch: the slice count and its workspace.
struct Split {
    float* partials; // [splits][tiles] tiles of BM·BN floats
    int* counters;   // [tiles], zero between launches
    int splits;
    int slice_k;
};

// Unit is one work unit of a launch: a 128×BN tile of C (in grouped
// order, GROUP_M row-tiles down a column of tiles before moving right, so
// that the blocks at work at one time share A and B panels in L2) over one
// K slice. Unit u is slice u % splits of tile u / splits: the S slices of
// a tile run side by side, and their partials meet in L2.
struct Unit {
    int tile, slice, m0, n0, k0, kt; // kt: the slice's stages of BK
};

template <int BN, int BKE>
__device__ __forceinline__ Unit unit_of(int u, int M, int Nc, int K, const Split& sp) {
    const int tiles_m = (M + BM - 1) / BM, tiles_n = (Nc + BN - 1) / BN;
    Unit w;
    w.tile = u / sp.splits;
    w.slice = u % sp.splits;
    const int per_group = GROUP_M * tiles_n;
    const int first_m = (w.tile / per_group) * GROUP_M;
    const int gsize = min(tiles_m - first_m, GROUP_M);
    const int in_group = w.tile % per_group;
    w.m0 = (first_m + in_group % gsize) * BM;
    w.n0 = (in_group / gsize) * BN;
    w.k0 = w.slice * sp.slice_k;
    const int kend = min(K, w.k0 + sp.slice_k);
    w.kt = kend > w.k0 ? (kend - w.k0 + BKE - 1) / BKE : 0;
    return w;
}

// Ring is a position in the ring of stages: the stage and the parity of
// its current phase. The producer and the consumers walk the same
// sequence of stages (every unit's k-tiles in order), each with its own.
struct Ring {
    int stage;
    unsigned phase;
    template <int STAGES>
    __device__ __forceinline__ void next() {
        if (++stage == STAGES) {
            stage = 0;
            phase ^= 1;
        }
    }
};

// epilogue stores consumer g's 64 rows of a unit's C tile, in bf16: thread
// t holds, for each n8 block j, columns 8j + 2(t%4) and +1 of rows
// 16(t/32) + (t%32)/4 and +8 (the wgmma accumulator layout). Add the bias
// in fp32, round once into the staged tile at out, 128-byte swizzled as
// TMA reads it (16-byte chunk c of row r at c ^ r%8: a warp's 8 rows of
// one chunk hit 8 different bank groups), then one thread stores its
// boxes with TMA, which clips the tile at M and Nc and runs on while this
// warpgroup starts its next unit. Before writing the staged tile again,
// that thread waits until its last stores have read it.
template <int BN, int TA, int TB>
__device__ __forceinline__ void epilogue(float (&acc)[BN / 2], bf16* __restrict__ Cm, const bf16* __restrict__ bias,
                                         const TensorMap* tc, int ldc, int M, int Nc, const Unit& w, unsigned out,
                                         int g, int t) {
    // TMA stores whole 16-byte chunks of a row: C's map ends at Nc8,
    // the last whole chunk, and the columns Nc8..Nc−1 (fewer than 8)
    // are stored from the registers.
    // Only the forward has such a tail: the backward products' C has
    // C columns, a multiple of 8 (and no pointer).
    const int Nc8 = (!TA && !TB) ? (Nc & ~7) : Nc;
    // The bias pairs, all loaded before any is used (and before the
    // barrier): loaded where they were added, each load's latency came
    // one after another, 15-20% of a forward with bias on an H200.
    // col is even and bias 16-byte aligned (WGMMAFits), so a pair is
    // one 4-byte load; the lower half is the lower column.
    unsigned bpair[BN / 8];
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
        const int col = w.n0 + 8 * j + 2 * (t & 3);
        bpair[j] = 0u;
        if (bias != nullptr) {
            if (col + 1 < Nc)
                bpair[j] = __ldg(reinterpret_cast<const unsigned*>(bias + col));
            else if (col < Nc)
                bpair[j] = (unsigned)__ldg(reinterpret_cast<const unsigned short*>(bias + col));
        }
    }
    if (t == 0) bulk_wait_read();
    asm volatile("bar.sync %0, 128;" ::"r"(2 + g) : "memory");
    const int rl = 16 * (t >> 5) + ((t & 31) >> 2);
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
        const int col = w.n0 + 8 * j + 2 * (t & 3);
        const float b0 = __uint_as_float(bpair[j] << 16);
        const float b1 = __uint_as_float(bpair[j] & 0xffff0000u);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = rl + 8 * h;
            const __nv_bfloat162 v = __floats2bfloat162_rn(acc[4 * j + 2 * h] + b0, acc[4 * j + 2 * h + 1] + b1);
            if (col < Nc8) {
                const unsigned addr =
                    out + (j >> 3) * BOX_BYTES + row * 128 + (((j & 7) ^ (row & 7)) << 4) + 4 * (t & 3);
                asm volatile("st.shared.b32 [%0], %1;" ::"r"(addr), "r"(*reinterpret_cast<const unsigned*>(&v))
                             : "memory");
            } else if (!TA && !TB && col < Nc && w.m0 + 64 * g + row < M) {
                bf16* dst = Cm + (size_t)(w.m0 + 64 * g + row) * ldc + col;
                dst[0] = v.x;
                if (col + 1 < Nc) dst[1] = v.y;
            }
        }
    }
    // What TMA (the async proxy) reads must be visible to it.
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    asm volatile("bar.sync %0, 128;" ::"r"(2 + g) : "memory");
    if (t == 0 && w.m0 + 64 * g < M) {
#pragma unroll
        for (int jb = 0; jb < BN / 64; ++jb)
            if (w.n0 + 64 * jb < Nc8) tma_store(tc, out + jb * BOX_BYTES, w.n0 + 64 * jb, w.m0 + 64 * g);
        bulk_commit();
    }
}

// epilogue stores consumer g's 64 rows of a unit's C tile, in fp32 (the
// tf32 entries), from the registers: the layout is the bf16 epilogue's; a
// quad's two columns each of 4 threads are 32 contiguous bytes of a row,
// whole sectors, so the stores go straight to global memory (no staged
// tile, whose 128 KB would halve the wide ring) and clip at M and Nc. The
// bias pairs of 8 n8 blocks are loaded before any is used (see the bf16
// epilogue); col is even and ldc, bias and C 32-byte aligned (WGMMAFits),
// so a pair is one 8-byte access.
template <int BN, int TA, int TB>
__device__ __forceinline__ void epilogue(float (&acc)[BN / 2], float* __restrict__ Cm, const float* __restrict__ bias,
                                         const TensorMap*, int ldc, int M, int Nc, const Unit& w, unsigned, int g,
                                         int t) {
    const int rl = 16 * (t >> 5) + ((t & 31) >> 2);
#pragma unroll
    for (int jb = 0; jb < BN / 64; ++jb) {
        float2 bp[8];
#pragma unroll
        for (int jj = 0; jj < 8; ++jj) {
            const int col = w.n0 + 8 * (8 * jb + jj) + 2 * (t & 3);
            bp[jj] = make_float2(0.0f, 0.0f);
            if (bias != nullptr) {
                if (col + 1 < Nc)
                    bp[jj] = __ldg(reinterpret_cast<const float2*>(bias + col));
                else if (col < Nc)
                    bp[jj].x = __ldg(bias + col);
            }
        }
#pragma unroll
        for (int jj = 0; jj < 8; ++jj) {
            const int j = 8 * jb + jj;
            const int col = w.n0 + 8 * j + 2 * (t & 3);
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = w.m0 + 64 * g + rl + 8 * h;
                if (row >= M || col >= Nc) continue;
                float* dst = Cm + (size_t)row * ldc + col;
                const float v0 = acc[4 * j + 2 * h] + bp[jj].x, v1 = acc[4 * j + 2 * h + 1] + bp[jj].y;
                if (col + 1 < Nc)
                    asm volatile("st.global.v2.f32 [%0], {%1, %2};" ::"l"(dst), "f"(v0), "f"(v1) : "memory");
                else
                    dst[0] = v0;
            }
        }
    }
}

// gemm computes C(M,Nc) = A·B over the launch's units, persistently: block
// b takes units b, b + gridDim.x, ... The producer runs ahead across units,
// so the next unit's first stages land while the consumers finish this
// unit's mainloop and epilogue. TA, TB: A is M-major, B is N-major (else
// K-major).
template <typename T, int BN, int TA, int TB>
__device__ __forceinline__ void gemm(const TensorMap* ta, const TensorMap* tb, const TensorMap* tc,
                                     T* __restrict__ Cm, int ldc, const T* __restrict__ bias, int M, int Nc, int K,
                                     const Split& sp) {
    typedef Cfg<BN, T> CF;
    constexpr int STAGES = CF::STAGES, ACC = CF::ACC, BKE = CF::BKE;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    if (M <= 0 || Nc <= 0) return;
    const int tiles = ((M + BM - 1) / BM) * ((Nc + BN - 1) / BN);
    const int units = tiles * sp.splits;

    // The ring, aligned to the swizzle's 1024 bytes; the C tile staged for
    // the TMA stores (consumer g's 64 rows at outs + g·OUT_BYTES/2, in
    // boxes of 64 columns); then the barriers: full[s] at bars + 8s,
    // empty[s] at bars + 8(STAGES + s); the flag.
    const unsigned raw = smem_addr(smem_raw);
    const unsigned ring = (raw + 1023) & ~1023u;
    const unsigned outs = ring + STAGES * CF::STAGE_BYTES;
    const unsigned bars = outs + CF::OUT_BYTES;
    const unsigned flag_addr = bars + 16 * STAGES;
    const int tid = threadIdx.x;
    if (tid == 0) {
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(bars + 8 * s, 1);            // the producer's expect_tx
            mbar_init(bars + 8 * (STAGES + s), 2); // one arrival per consumer warpgroup
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        tma_prefetch(ta);
        tma_prefetch(tb);
        if (!Elem<T>::TF32) tma_prefetch(tc);
    }
    __syncthreads();

    if (tid < 128) {
        // Producer: one thread. It refills a stage once both consumers have
        // freed it (the empty barrier's phase before this use: on the first
        // lap, the phase before the first, which counts as complete).
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(PRODUCER_REGS));
        if (tid == 0) {
            Ring r{0, 0};
            for (int u = blockIdx.x; u < units; u += gridDim.x) {
                const Unit w = unit_of<BN, BKE>(u, M, Nc, K, sp);
                for (int kt = 0; kt < w.kt; ++kt, r.next<STAGES>()) {
                    mbar_wait(bars + 8 * (STAGES + r.stage), r.phase ^ 1);
                    const unsigned full = bars + 8 * r.stage;
                    mbar_expect_tx(full, CF::STAGE_BYTES);
                    const unsigned a = ring + r.stage * CF::STAGE_BYTES, b = a + A_BYTES;
                    const int k = w.k0 + kt * BKE;
                    if (TA) {
#pragma unroll
                        for (int i = 0; i < BM / 64; ++i) tma_load(a + i * BOX_BYTES, ta, w.m0 + 64 * i, k, full);
                    } else {
                        tma_load(a, ta, k, w.m0, full);
                    }
                    if (TB) {
#pragma unroll
                        for (int j = 0; j < BN / 64; ++j) tma_load(b + j * BOX_BYTES, tb, w.n0 + 64 * j, k, full);
                    } else {
                        tma_load(b, tb, k, w.n0, full);
                    }
                }
            }
        }
        return;
    }

    // Consumers: warpgroup g = 0, 1 owns rows 64g..64g+63 of each tile.
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(CONSUMER_REGS));
    const int ct = tid - 128, g = ct >> 7, t = ct & 127;
    Ring r{0, 0};
    int prev = 0; // the stage of the previous k-tile, freed one k-tile late
    for (int u = blockIdx.x; u < units; u += gridDim.x) {
        const Unit w = unit_of<BN, BKE>(u, M, Nc, K, sp);
        float acc[ACC];
#pragma unroll
        for (int i = 0; i < ACC; ++i) acc[i] = 0.0f;
        for (int kt = 0; kt < w.kt; ++kt, r.next<STAGES>()) {
            mbar_wait(bars + 8 * r.stage, r.phase);
            const unsigned a = ring + r.stage * CF::STAGE_BYTES + g * BOX_BYTES,
                           b = ring + r.stage * CF::STAGE_BYTES + A_BYTES;
            wg_fence();
#pragma unroll
            for (int ks = 0; ks < 4; ++ks) {
                // A stage's 128-byte rows are four wgmma k-steps: 32 bytes
                // along a K-major row (k16 of bf16, k8 of tf32); in a bf16
                // M/N-major box, 16 rows (2048 bytes).
                const unsigned da = a + (TA ? ks * 2048 : ks * 32), db = b + (TB ? ks * 2048 : ks * 32);
                wg_mma<TA, TB>(acc, desc(da, TA), desc(db, TB), T());
            }
            wg_commit();
            // One k-tile's products stay in flight: the previous one's are
            // done, and its stage goes back to the producer.
            wg_wait<1>();
            if (kt > 0 && t == 0) mbar_arrive(bars + 8 * (STAGES + prev));
            prev = r.stage;
        }
        wg_wait<0>();
        if (w.kt > 0 && t == 0) mbar_arrive(bars + 8 * (STAGES + prev));
#pragma unroll
        for (int i = 0; i < ACC; ++i) keep(acc[i]);

        if (sp.splits > 1) {
            // This slice's partial tile, consumer-thread-major in float4
            // (coalesced); then the count. The last of the S units of the
            // tile resets the counter and sums the S partials in slice
            // order. The fence before the count makes this unit's partial
            // visible before its arrival; the reducer's fence after it
            // orders its reads after every other unit's arrival.
            const size_t slice_stride = (size_t)tiles * (BM * BN);
            float* mine = sp.partials + (size_t)w.slice * slice_stride + (size_t)w.tile * (BM * BN) + 4 * ct;
#pragma unroll
            for (int q = 0; q < ACC / 4; ++q) {
                asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(mine + q * 4 * 256), "f"(acc[4 * q]),
                             "f"(acc[4 * q + 1]), "f"(acc[4 * q + 2]), "f"(acc[4 * q + 3])
                             : "memory");
            }
            asm volatile("membar.gl;" ::: "memory");
            asm volatile("bar.sync 1, 256;" ::: "memory");
            if (ct == 0) {
                int* counter = sp.counters + w.tile;
                unsigned old;
                asm volatile("atom.global.add.u32 %0, [%1], 1;" : "=r"(old) : "l"(counter) : "memory");
                const unsigned last = old == (unsigned)(sp.splits - 1) ? 1u : 0u;
                if (last) {
                    asm volatile("st.global.u32 [%0], 0;" ::"l"(counter) : "memory");
                    asm volatile("membar.gl;" ::: "memory");
                }
                asm volatile("st.shared.u32 [%0], %1;" ::"r"(flag_addr), "r"(last) : "memory");
            }
            asm volatile("bar.sync 1, 256;" ::: "memory");
            unsigned last;
            asm volatile("ld.shared.u32 %0, [%1];" : "=r"(last) : "r"(flag_addr) : "memory");
            if (last == 0) continue; // uniform over the consumers
#pragma unroll
            for (int i = 0; i < ACC; ++i) acc[i] = 0.0f;
            const float* first = sp.partials + (size_t)w.tile * (BM * BN) + 4 * ct;
            for (int s = 0; s < sp.splits; ++s) {
                const float* ps = first + (size_t)s * slice_stride;
#pragma unroll
                for (int q = 0; q < ACC / 4; ++q) {
                    float4 v;
                    asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
                                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                                 : "l"(ps + q * 4 * 256)
                                 : "memory");
                    acc[4 * q] += v.x;
                    acc[4 * q + 1] += v.y;
                    acc[4 * q + 2] += v.z;
                    acc[4 * q + 3] += v.w;
                }
            }
        }

        epilogue<BN, TA, TB>(acc, Cm, bias, tc, ldc, M, Nc, w, outs + g * (CF::OUT_BYTES / 2), g, t);
    }
    // The last stores must finish before the block (and its shared memory)
    // goes.
    if (t == 0) bulk_wait();
}

// product runs gemm at the launch's width bn.
template <typename T, int TA, int TB>
__device__ __forceinline__ void product(const TensorMap* ta, const TensorMap* tb, const TensorMap* tc, T* c,
                                        int ldc, const T* bias, float* partials, int* counters, int M, int Nc,
                                        int K, int splits, int slice_k, int bn) {
    const Split sp{partials, counters, splits, splits > 1 ? slice_k : K};
    if (bn == BN_NARROW) {
        gemm<T, BN_NARROW, TA, TB>(ta, tb, tc, c, ldc, bias, M, Nc, K, sp);
    } else {
        gemm<T, BN_WIDE, TA, TB>(ta, tb, tc, c, ldc, bias, M, Nc, K, sp);
    }
}

} // namespace wg

using namespace wg;

// The entries. Launch: grid min(tiles·splits, SMs) (persistent: any grid
// covers every unit), block THREADS, Cfg<bn>::SMEM bytes of dynamic shared
// memory. a, b and the output's are the tensor maps of A, B and C (see the
// table at the top; C's boxes are 64 × 64, its columns end at the last
// whole 16 bytes, and its row stride may exceed its columns: the lm head's
// padding is never written). The forward's out (row stride ld) is where
// the columns past that go, fewer than 8 a row; the backward outputs'
// rows are whole 16-byte chunks (C a multiple of 8). bias is null for
// none. splits = 1 touches neither partials nor counters (they may be
// null).
extern "C" __global__ void __launch_bounds__(THREADS, 1)
    matmul_forward_wgmma(const __grid_constant__ TensorMap a, const __grid_constant__ TensorMap b,
                         const __grid_constant__ TensorMap out_map, bf16* out, const bf16* bias, float* partials,
                         int* counters, int N, int C, int OC, int ld, int splits, int slice_k, int bn) {
    product<bf16, 0, 0>(&a, &b, &out_map, out, ld, bias, partials, counters, N, OC, C, splits, slice_k, bn);
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
    matmul_backward_input_wgmma(const __grid_constant__ TensorMap a, const __grid_constant__ TensorMap b,
                                const __grid_constant__ TensorMap dinp, float* partials, int* counters, int N,
                                int C, int OC, int splits, int slice_k, int bn) {
    product<bf16, 0, 1>(&a, &b, &dinp, nullptr, C, nullptr, partials, counters, N, C, OC, splits, slice_k, bn);
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
    matmul_backward_weight_wgmma(const __grid_constant__ TensorMap a, const __grid_constant__ TensorMap b,
                                 const __grid_constant__ TensorMap dw, float* partials, int* counters, int N, int C,
                                 int OC, int splits, int slice_k, int bn) {
    product<bf16, 1, 1>(&a, &b, &dw, nullptr, C, nullptr, partials, counters, OC, C, N, splits, slice_k, bn);
}

// The tf32 entries: fp32 operands and output, products on TF32 tensor
// cores. wgmma reads tf32 operands K-major only, so each product is
// C = A·Bᵀ over K-major A and B, and the backward products take operands
// transposed beforehand (matmul_transpose_tf32):
//
//   entry                              A (M×K)               B (Nc×K)             C
//   matmul_forward_wgmma_tf32          inp (N×C)             w (OC×C)             out (N×OC, ld) + bias
//   matmul_backward_input_wgmma_tf32   dout (N×OC, ld)       wᵀ (C×OC, ldt)       dinp (N×C)
//   matmul_backward_weight_wgmma_tf32  doutᵀ (OC×N, ldn)     inpᵀ (C×N, ldn)      dw (OC×C)
//
// TF32 rounding: TMA copies the fp32 bits to shared memory and wgmma reads
// them there, so there is no cvt.rna pass (matmul_mma's tf32 entries
// round to nearest, ties away): the tensor core uses each operand's sign,
// exponent and top 10 mantissa bits, truncating the low 13 (toward zero),
// as Hopper TF32 GEMMs that feed fp32 from shared memory do. Each operand
// is then off by less than 1 ulp of TF32, a relative 2^-10 (against
// rounding's 2^-11), and biased toward zero; a product's relative error is
// below 2^-9 + 2^-20, accumulated in fp32. The outputs are written with
// register stores (no TMA store: see the fp32 epilogue), so C needs no
// tensor map and the forward has no column tail to treat apart.
extern "C" __global__ void __launch_bounds__(THREADS, 1)
    matmul_forward_wgmma_tf32(const __grid_constant__ TensorMap a, const __grid_constant__ TensorMap b, float* out,
                              const float* bias, float* partials, int* counters, int N, int C, int OC, int ld,
                              int splits, int slice_k, int bn) {
    product<float, 0, 0>(&a, &b, nullptr, out, ld, bias, partials, counters, N, OC, C, splits, slice_k, bn);
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
    matmul_backward_input_wgmma_tf32(const __grid_constant__ TensorMap a, const __grid_constant__ TensorMap b,
                                     float* dinp, float* partials, int* counters, int N, int C, int OC, int splits,
                                     int slice_k, int bn) {
    product<float, 0, 0>(&a, &b, nullptr, dinp, C, nullptr, partials, counters, N, C, OC, splits, slice_k, bn);
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
    matmul_backward_weight_wgmma_tf32(const __grid_constant__ TensorMap a, const __grid_constant__ TensorMap b,
                                      float* dw, float* partials, int* counters, int N, int C, int OC, int splits,
                                      int slice_k, int bn) {
    product<float, 0, 0>(&a, &b, nullptr, dw, C, nullptr, partials, counters, OC, C, N, splits, slice_k, bn);
}

// matmul_transpose_tf32 writes out(cols, rows), row stride ldo, the
// transpose of in(rows, cols), row stride ldi: the K-major operands of the
// tf32 backward products (wᵀ, doutᵀ, inpᵀ). A block moves a TR_TILE² tile
// through shared memory (one column of padding: the transposed reads of a
// warp hit 32 banks), reading and writing whole 128-byte rows of it.
constexpr int TR_TILE = 32;
constexpr int TR_ROWS = 8;

extern "C" __global__ void __launch_bounds__(TR_TILE* TR_ROWS)
    matmul_transpose_tf32(float* __restrict__ out, const float* __restrict__ in, int rows, int cols, int ldi,
                          int ldo) {
    __shared__ float tile[TR_TILE][TR_TILE + 1];
    const int c0 = blockIdx.x * TR_TILE, r0 = blockIdx.y * TR_TILE;
    const int tx = threadIdx.x, ty = threadIdx.y;
#pragma unroll
    for (int i = ty; i < TR_TILE; i += TR_ROWS) {
        const int r = r0 + i, c = c0 + tx;
        if (r < rows && c < cols) tile[i][tx] = __ldg(in + (size_t)r * ldi + c);
    }
    __syncthreads();
#pragma unroll
    for (int i = ty; i < TR_TILE; i += TR_ROWS) {
        const int c = c0 + i, r = r0 + tx;
        if (c < cols && r < rows) out[(size_t)c * ldo + r] = tile[tx][i];
    }
}
