// matmul.cu: the linear layers of the model, fp32 on CUDA cores.
//
//   matmul_forward          out(N,OC)  = inp(N,C) · w(OC,C)ᵀ + bias(OC)   (bias may be null)
//   matmul_backward_input   dinp(N,C)  = dout(N,OC) · w(OC,C)              (overwrites)
//   matmul_backward_weight  dw(OC,C)   = dout(N,OC)ᵀ · inp(N,C)            (overwrites)
//   bias_backward           dbias(OC)  = Σ_n dout(n,oc)                    (overwrites)
//
// The three products are one register-tiled SGEMM, C(M,Nc) = A(M,K)·B(K,Nc),
// templated over where A and B keep their contiguous dimension:
//
//   product          M    Nc   K    A            B            layout
//   forward          N    OC   C    inp, K-contig w, K-contig  NT
//   backward_input   N    C    OC   dout, K-contig w, N-contig NN
//   backward_weight  OC   C    N    dout, M-contig inp, N-contig TN
//
// A block computes a BM×BN tile of C (128×128, 128×64 or 64×64, picked by
// the launcher so that small problems still fill the GPU), every thread an
// 8×8 micro-tile held in registers, stepping K by BK=8. Whatever the tile,
// every output element is the same chain of fmaf over k = 0, 1, ..., K-1
// (tail k's add fmaf(0,0,acc) = acc), so the result does not depend on the
// tile choice, and the weight gradient, a reduction over the N rows, is
// deterministic without split-K or atomics: one block owns each output tile
// and runs the whole reduction in its K loop.
//
// Reproducible PTX: TestFresh rebuilds this file elsewhere and wants the same
// bytes, so nothing here has internal linkage (nvcc names such code, in the
// -lineinfo debug strings too, with a hash of the source path): a named
// namespace, no __ldg or __shfl_*_sync from the CUDA headers, no
// common.cuh helpers built on them.

namespace matmul {

// BK is the K depth of one shared-memory stage. With 8 a 128×128 stage is
// 8 KB (both operands), so two stages fit in 17 KB and two blocks per SM
// leave most of shared memory to L1; each stage still feeds every thread
// 8·64 = 512 FMAs per __syncthreads.
constexpr int BK = 8;

// PAD keeps the transposing stores of a K-contiguous operand free of bank
// conflicts: a row of a stage is BM+4 floats, so the two k-quads a warp
// stores at once land 16 banks apart (see Operand). It is 4, not 1, so
// that every row stays 16-byte aligned for the float4 fragment reads.
constexpr int PAD = 4;

// The largest tile fixes the static shared memory of every entry:
// 2 stages × (A + B) × BK × (128 + PAD) floats = 16896 bytes.
constexpr int MAX_TILE = 128;
constexpr int SMEM_FLOATS = 2 * 2 * BK * (MAX_TILE + PAD);

// 256 threads (the 128×128 tile) at two blocks per SM caps registers at 128
// a thread: 64 accumulators, 16 fragment values, 8 prefetched loads and the
// addressing. Smaller tiles use fewer threads a block and so fit 4 or 8
// blocks an SM at the same register count: always 16 warps an SM.
constexpr int MAX_THREADS = 256;
constexpr int MIN_BLOCKS = 2;

// Block-index swizzle: consecutive blocks walk GROUP_M row-tiles down one
// column of tiles before moving right, so the blocks resident at one time
// share a few A and B panels in L2 (for the lm head, B is 154 MB).
constexpr int GROUP_M = 8;

// Tile codes passed by the Go launchers (kernels/matmul.go, gemmTiles).
constexpr int TILE_128x128 = 0;
constexpr int TILE_128x64 = 1;
// anything else: 64×64

// ldg4 and ldg1 are read-only (ld.global.nc) loads predicated on pred,
// yielding zeros where it is false: the zero-fill of a tile's edges without
// a branch. They are inline PTX because nvcc 11.8 compiled the equivalent C
// (a zeroed float4 filled under ifs) to PTX that differed from run to run,
// which TestFresh cannot accept.
__device__ __forceinline__ float4 ldg4(const float* p, bool pred) {
    float4 v;
    asm("{\n\t"
        ".reg .pred q;\n\t"
        "setp.ne.b32 q, %5, 0;\n\t"
        "mov.f32 %0, 0f00000000;\n\t"
        "mov.f32 %1, 0f00000000;\n\t"
        "mov.f32 %2, 0f00000000;\n\t"
        "mov.f32 %3, 0f00000000;\n\t"
        "@q ld.global.nc.v4.f32 {%0, %1, %2, %3}, [%4];\n\t"
        "}"
        : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
        : "l"(p), "r"((int)pred));
    return v;
}

__device__ __forceinline__ float ldg1(const float* p, bool pred) {
    float v;
    asm("{\n\t"
        ".reg .pred q;\n\t"
        "setp.ne.b32 q, %2, 0;\n\t"
        "mov.f32 %0, 0f00000000;\n\t"
        "@q ld.global.nc.f32 %0, [%1];\n\t"
        "}"
        : "=f"(v)
        : "l"(p), "r"((int)pred));
    return v;
}

// load4 reads the 4 consecutive floats p[0..3], elements idx..idx+3 of a
// matrix row of length ld, as zeros where they fall outside the row or
// where the row itself is outside the matrix (!ok). vec says ld is a
// multiple of 4 and the base 16-byte aligned; idx is always a multiple of
// 4, so then the four are all in or all out and one float4 load does.
__device__ __forceinline__ float4 load4(const float* p, bool ok, int idx, int ld, bool vec) {
    if (vec) return ldg4(p, ok && idx < ld);
    return make_float4(ldg1(p, ok && idx < ld), ldg1(p + 1, ok && idx + 1 < ld),
                       ldg1(p + 2, ok && idx + 2 < ld), ldg1(p + 3, ok && idx + 3 < ld));
}

// aligned16 says whether a matrix with row length ld allows float4 access
// at every multiple-of-4 column.
__device__ __forceinline__ bool aligned16(const void* p, int ld) {
    return (ld % 4 == 0) && (reinterpret_cast<unsigned long long>(p) % 16 == 0);
}

// Shared memory is addressed with 32-bit shared-window byte addresses and
// read and written through inline PTX (lds4, sts1, sts4), for the same reason
// as ldg4: left to itself nvcc split the float4 fragment reads and re-merged
// them differently from run to run. volatile keeps them in program order
// with the barriers; ptxas still schedules them.
__device__ __forceinline__ unsigned smem_addr(const void* p) {
    unsigned a;
    asm("{\n\t"
        ".reg .u64 t;\n\t"
        "cvta.to.shared.u64 t, %1;\n\t"
        "cvt.u32.u64 %0, t;\n\t"
        "}"
        : "=r"(a)
        : "l"(p));
    return a;
}

__device__ __forceinline__ float4 lds4(unsigned addr) {
    float4 v;
    asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "r"(addr)
                 : "memory");
    return v;
}

__device__ __forceinline__ void sts1(unsigned addr, float v) {
    asm volatile("st.shared.f32 [%0], %1;" ::"r"(addr), "f"(v) : "memory");
}

__device__ __forceinline__ void sts4(unsigned addr, float4 v) {
    asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};" ::"r"(addr), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
                 : "memory");
}

// stg4 is the float4 global store of the epilogue, in PTX for the same
// reason.
__device__ __forceinline__ void stg4(float* p, float4 v) {
    asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
                 : "memory");
}

// Operand is one input of the GEMM: a BR×BK tile (BR = BM for A, BN for B)
// staged as s[k][r] (r contiguous) so that a thread's fragment is two
// float4 reads. KCONTIG says the global matrix is row-major R×K (k
// contiguous, element (r,k) at p[r*ld + k]); otherwise it is K×R (element
// (r,k) at p[k*ld + r]).
//
// Each thread moves LOADS float4 groups a stage. The 2·BR groups of a stage
// are numbered g = tid + i·THREADS:
//   K-contiguous: r = g/2, k = (g%2)·4 .. +3 — a thread reads 4 k's of one
//     row and stores them transposed, s[k+j][r]; the 32 lanes of a warp
//     cover 16 rows × 2 k-quads, which with the PAD land in 32 distinct
//     banks.
//   R-contiguous: k = g/(BR/4), r = (g%(BR/4))·4 .. +3 — a float4 read and a
//     float4 store, a warp covering 128 consecutive floats of one k row.
template <int BR, int THREADS, bool KCONTIG>
struct Operand {
    static constexpr int LOADS = 2 * BR / THREADS;
    static constexpr int LD = BR + PAD; // shared row length
    static_assert(LOADS >= 1 && LOADS * THREADS == 2 * BR, "tile and thread count do not match");

    // Slot i covers the global row (K-contiguous) or k (R-contiguous) SLOT
    // rows after slot 0's, so one offset locates every slot.
    static constexpr int SLOT = KCONTIG ? THREADS / 2 : THREADS / (BR / 4);
    static_assert(KCONTIG ? THREADS % 2 == 0 : THREADS % (BR / 4) == 0, "slots must be whole rows apart");

    // Addressing is 32-bit element offsets from one base pointer (buffers
    // hold < 2^31 elements), to leave the registers to the accumulators.
    // Unsigned, so that running past the end after the last stage wraps
    // harmlessly instead of overflowing: out-of-range offsets are never
    // dereferenced.
    const float* p;
    unsigned off;        // slot 0's first float in the current stage
    unsigned slot_step;  // SLOT·ld
    unsigned stage_step; // K-contiguous: BK; R-contiguous: BK·ld
    int idx;             // contiguous coordinate of slot 0: k (moves) or r (fixed)
    int fix;             // the other one: row r (fixed) or k (moves)
    int R, K;
    bool vec;
    float4 reg[LOADS]; // the stage in flight between fetch and stash

    __device__ __forceinline__ void init(const float* p_, int R_, int K_, int r0, int tid) {
        const int ld = KCONTIG ? K_ : R_; // packed: a row is the contiguous extent
        p = p_;
        R = R_;
        K = K_;
        vec = aligned16(p_, ld);
        if (KCONTIG) {
            fix = r0 + tid / 2;
            idx = (tid % 2) * 4;
        } else {
            fix = tid / (BR / 4);
            idx = r0 + (tid % (BR / 4)) * 4;
        }
        off = (unsigned)fix * (unsigned)ld + (unsigned)idx;
        slot_step = (unsigned)SLOT * (unsigned)ld;
        stage_step = KCONTIG ? BK : (unsigned)BK * (unsigned)ld;
    }

    // fetch loads the next stage into registers, zero-filled outside R×K,
    // and moves on to the stage after.
    __device__ __forceinline__ void fetch() {
#pragma unroll
        for (int i = 0; i < LOADS; ++i) {
            const float* q = p + (off + i * slot_step);
            if (KCONTIG) {
                reg[i] = load4(q, fix + i * SLOT < R, idx, K, vec);
            } else {
                reg[i] = load4(q, fix + i * SLOT < K, idx, R, vec);
            }
        }
        off += stage_step;
        if (KCONTIG) {
            idx += BK;
        } else {
            fix += BK;
        }
    }

    // stash writes the fetched registers into the shared stage at byte
    // address s.
    __device__ __forceinline__ void stash(unsigned s, int tid) const {
#pragma unroll
        for (int i = 0; i < LOADS; ++i) {
            if (KCONTIG) {
                const int r = tid / 2 + i * SLOT;
                const int k = (tid % 2) * 4;
                const unsigned at = s + 4u * (unsigned)(k * LD + r);
                sts1(at + 0 * LD * 4, reg[i].x);
                sts1(at + 1 * LD * 4, reg[i].y);
                sts1(at + 2 * LD * 4, reg[i].z);
                sts1(at + 3 * LD * 4, reg[i].w);
            } else {
                const int k = tid / (BR / 4) + i * SLOT;
                const int r = (tid % (BR / 4)) * 4;
                sts4(s + 4u * (unsigned)(k * LD + r), reg[i]);
            }
        }
    }
};

// gemm computes one BM×BN tile of C(M,Nc) = A(M,K)·B(K,Nc) (+ bias(Nc)).
// A is (M,K) row-major when !TRANS_A, (K,M) row-major when TRANS_A; B is
// (Nc,K) row-major when TRANS_B, (K,Nc) row-major when !TRANS_B. C is (M,Nc)
// row-major. All three are packed (a row's length is its matrix's second
// dimension), as the model's tensors are.
//
// Thread layout: THREADS = BM·BN/64 threads, (BM/8)×(BN/8) of them, thread
// (ty,tx) owning rows {ty·4+i, BM/2+ty·4+i} and columns {tx·4+j,
// BN/2+tx·4+j}, i,j < 4. The two halves (rather than 8 adjacent rows) make
// every fragment read a float4 that a warp shares: a warp is 4 ty × 8 tx, so
// per k it reads 4 distinct float4 of A (64 B) and 8 of B (128 B), each one
// shared-memory wavefront with broadcast.
template <int BM, int BN, bool TRANS_A, bool TRANS_B>
__device__ __forceinline__ void gemm(float* __restrict__ Cm, const float* __restrict__ A,
                                     const float* __restrict__ B, const float* __restrict__ bias,
                                     int M, int Nc, int K, float* smem) {
    constexpr int THREADS = BM * BN / 64;
    constexpr int WARPS_N = BN / 64;
    static_assert(THREADS <= MAX_THREADS && BM <= MAX_TILE && BN <= MAX_TILE, "tile too large");
    const int tid = threadIdx.x;

    // Which tile: grouped order, see GROUP_M.
    const int tiles_m = (M + BM - 1) / BM;
    const int tiles_n = (Nc + BN - 1) / BN;
    const int per_group = GROUP_M * tiles_n;
    const int group = blockIdx.x / per_group;
    const int first_m = group * GROUP_M;
    const int group_rows = min(tiles_m - first_m, GROUP_M);
    const int in_group = blockIdx.x - group * per_group;
    const int m0 = (first_m + in_group % group_rows) * BM;
    const int n0 = (in_group / group_rows) * BN;

    const int lane = tid % 32, warp = tid / 32;
    const int ty = (warp / WARPS_N) * 4 + lane / 8; // 0 .. BM/8-1
    const int tx = (warp % WARPS_N) * 8 + lane % 8; // 0 .. BN/8-1

    Operand<BM, THREADS, !TRANS_A> a;
    a.init(A, M, K, m0, tid);
    Operand<BN, THREADS, TRANS_B> b;
    b.init(B, Nc, K, n0, tid);

    // Two stages each of A and B, as shared byte addresses: A stage s at
    // sa + s·STAGE_A, B stage s at sb + s·STAGE_B (offsets, not an array,
    // which a runtime index would put in local memory).
    constexpr unsigned STAGE_A = 4 * BK * (BM + PAD);
    constexpr unsigned STAGE_B = 4 * BK * (BN + PAD);
    const unsigned sa = smem_addr(smem);
    const unsigned sb = sa + 2 * STAGE_A;
    // This thread's fragment addresses within a stage, for k = 0.
    const unsigned frag_a = 4u * (unsigned)(ty * 4);
    const unsigned frag_b = 4u * (unsigned)(tx * 4);

    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

    const int stages = (K + BK - 1) / BK;
    a.fetch();
    b.fetch();
    a.stash(sa, tid);
    b.stash(sb, tid);
    __syncthreads();

    // Double buffering: the next stage's global loads are issued before the
    // current stage's FMAs and stored to the other buffer after them, so
    // their latency hides behind 512 FMAs; one barrier a stage suffices
    // because a buffer is written only after the barrier that ends its reads.
    for (int st = 0; st < stages; ++st) {
        const int cur = st & 1;
        const bool more = st + 1 < stages;
        if (more) {
            a.fetch();
            b.fetch();
        }
        const unsigned as = sa + cur * STAGE_A + frag_a;
        const unsigned bs = sb + cur * STAGE_B + frag_b;
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            const float4 a0 = lds4(as + 4 * (k * (BM + PAD)));
            const float4 a1 = lds4(as + 4 * (k * (BM + PAD) + BM / 2));
            const float4 b0 = lds4(bs + 4 * (k * (BN + PAD)));
            const float4 b1 = lds4(bs + 4 * (k * (BN + PAD) + BN / 2));
            const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        if (more) {
            a.stash(sa + (cur ^ 1) * STAGE_A, tid);
            b.stash(sb + (cur ^ 1) * STAGE_B, tid);
        }
        __syncthreads();
    }

    // Epilogue: add the bias and store, float4 where the row allows it.
    const bool vec_c = aligned16(Cm, Nc);
    int col[8];
    float bv[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        col[j] = n0 + (j / 4) * (BN / 2) + tx * 4 + j % 4;
        bv[j] = (bias != nullptr && col[j] < Nc) ? bias[col[j]] : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int row = m0 + (i / 4) * (BM / 2) + ty * 4 + i % 4;
        if (row >= M) continue;
        float* crow = Cm + (size_t)row * Nc;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int c = col[h * 4];
            float v[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                v[j] = acc[i][h * 4 + j];
                if (bias != nullptr) v[j] += bv[h * 4 + j];
            }
            if (vec_c && c + 3 < Nc) {
                stg4(crow + c, make_float4(v[0], v[1], v[2], v[3]));
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    if (c + j < Nc) crow[c + j] = v[j];
            }
        }
    }
}

// dispatch runs gemm with the tile the launcher chose. The branch is uniform
// over the grid; every variant shares the entry's static shared memory.
template <bool TRANS_A, bool TRANS_B>
__device__ __forceinline__ void dispatch(int tile, float* Cm, const float* A, const float* B, const float* bias,
                                         int M, int Nc, int K, float* smem) {
    if (tile == TILE_128x128) {
        gemm<128, 128, TRANS_A, TRANS_B>(Cm, A, B, bias, M, Nc, K, smem);
    } else if (tile == TILE_128x64) {
        gemm<128, 64, TRANS_A, TRANS_B>(Cm, A, B, bias, M, Nc, K, smem);
    } else {
        gemm<64, 64, TRANS_A, TRANS_B>(Cm, A, B, bias, M, Nc, K, smem);
    }
}

} // namespace matmul

using namespace matmul;

// matmul_forward: out(N,OC) = inp(N,C)·w(OC,C)ᵀ + bias(OC); bias may be
// null. Launch: 1-D grid of tiles, block = tile threads (see matmul.go).
extern "C" __global__ void __launch_bounds__(MAX_THREADS, MIN_BLOCKS)
    matmul_forward(float* out, const float* inp, const float* w, const float* bias, int N, int C, int OC, int tile) {
    __shared__ __align__(16) float smem[SMEM_FLOATS];
    dispatch<false, true>(tile, out, inp, w, bias, N, OC, C, smem);
}

// matmul_backward_input: dinp(N,C) = dout(N,OC)·w(OC,C), overwritten.
extern "C" __global__ void __launch_bounds__(MAX_THREADS, MIN_BLOCKS)
    matmul_backward_input(float* dinp, const float* dout, const float* w, int N, int C, int OC, int tile) {
    __shared__ __align__(16) float smem[SMEM_FLOATS];
    dispatch<false, false>(tile, dinp, dout, w, nullptr, N, C, OC, smem);
}

// matmul_backward_weight: dw(OC,C) = dout(N,OC)ᵀ·inp(N,C), overwritten. The
// sum over the N rows is the GEMM's K loop inside one block, in k order:
// deterministic.
extern "C" __global__ void __launch_bounds__(MAX_THREADS, MIN_BLOCKS)
    matmul_backward_weight(float* dw, const float* dout, const float* inp, int N, int C, int OC, int tile) {
    __shared__ __align__(16) float smem[SMEM_FLOATS];
    dispatch<true, false>(tile, dw, dout, inp, nullptr, OC, C, N, smem);
}

// bias_backward: dbias(OC) = Σ_n dout(n,oc), overwritten.
//
// Block (32, 32) owns 32 adjacent columns, so every warp reads 128
// contiguous bytes of one row. Thread (x,y) sums rows y, y+32, y+64, ...
// of column x into four accumulators (rows 128 apart each, for four loads
// in flight), combined as (s0+s1)+(s2+s3); the 32 partial sums of a column
// are then added by a fixed tree in shared memory. The order depends only
// on N, so the result is bitwise reproducible. Launch: grid ceil(OC/32),
// block (32, 32).
extern "C" __global__ void __launch_bounds__(1024)
    bias_backward(float* dbias, const float* dout, int N, int OC) {
    __shared__ float part[32][32];
    const int x = threadIdx.x, y = threadIdx.y;
    const int col = blockIdx.x * 32 + x;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    if (col < OC) {
        const float* p = dout + col;
        int n = y;
        for (; n + 96 < N; n += 128) {
            s0 += p[(size_t)n * OC];
            s1 += p[(size_t)(n + 32) * OC];
            s2 += p[(size_t)(n + 64) * OC];
            s3 += p[(size_t)(n + 96) * OC];
        }
        for (; n < N; n += 32) s0 += p[(size_t)n * OC];
    }
    part[y][x] = (s0 + s1) + (s2 + s3);
    __syncthreads();
    // Row-lane y adds row-lane y+h's partials, h = 16, 8, 4, 2, 1; a warp
    // works on one row of part, so there are no bank conflicts.
#pragma unroll
    for (int h = 16; h > 0; h /= 2) {
        if (y < h) part[y][x] += part[y + h][x];
        __syncthreads();
    }
    if (y == 0 && col < OC) dbias[col] = part[0][x];
}
