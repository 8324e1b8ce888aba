// matmul_mma.cu: the linear layers on tensor cores (mma.sync, sm_80 and later), in bf16 or TF32.
// nvcc-arch: compute_80
//
//   matmul_forward_{bf16,tf32}          out(N,OC)  = inp(N,C) · w(OC,C)ᵀ + bias(OC)   (bias may be null)
//   matmul_backward_input_{bf16,tf32}   dinp(N,C)  = dout(N,OC) · w(OC,C)              (overwrites)
//   matmul_backward_weight_{bf16,tf32}  dw(OC,C)   = dout(N,OC)ᵀ · inp(N,C)            (overwrites)
//   bias_backward_bf16                  dbias(OC)  = Σ_n dout(n,oc)                    (overwrites)
//
// The same semantics as matmul.cu's fp32 kernels, with two differences:
// the (N,OC) tensor (out, dout) has a row stride ld ≥ OC (the lm head's
// padded vocabulary: only its first OC columns are read or written), and
// the products run on tensor cores. bf16: bf16 operands, fp32 accumulation,
// the output rounded to bf16 once (round to nearest even). tf32: fp32
// operands rounded to TF32 (cvt.rna.tf32.f32, 10-bit mantissa, ties away)
// as they leave shared memory, fp32 accumulation and output.
//
// The three products are one GEMM, C(M,Nc) = A(M,K)·B(K,Nc), templated over
// where A and B keep their contiguous dimension:
//
//   product          M    Nc   K    A                    B                   mma operands from smem
//   forward          N    OC   C    inp,  K-contig (C)   w,   K-contig (C)   ldmatrix / ldmatrix
//   backward_input   N    C    OC   dout, K-contig (ld)  w,   N-contig (C)   ldmatrix / .trans
//   backward_weight  OC   C    N    dout, M-contig (ld)  inp, N-contig (C)   .trans   / .trans
//
// (TF32 cannot transpose 32-bit elements with ldmatrix: its N- and
// M-contiguous operands are read from shared memory with 32-bit loads.)
//
// A block of 8 warps (2 along M × 4 along N) computes a 128×BN tile of C,
// BN = 256 (the wide tile) or 192 (the narrow one, for C's of 768 columns:
// 256 tiles instead of 192 fill 132 SMs in two waves); each warp a 64×BN/4
// part as 4×(BN/32) mma tiles (m16n8k16 bf16 or m16n8k8 tf32), up to 128
// fp32 accumulators a thread, one block an SM. The entry's last parameter
// bn picks the tile (gemmplan.MMAPick). A stage is 128 bytes of K (64 bf16
// or 32 fp32, four mma k-steps) of both operands; STAGES = 4 stages are in
// flight through cp.async (216 or 180 KB of dynamic shared memory: the
// executor opts the entries in above 48 KB), one barrier a stage. The mma
// fragments are double-buffered in registers: k-step s+1's ldmatrix are
// issued before k-step s's mma. Shared-memory rows are padded (see Tile) so
// that cp.async stores, ldmatrix and the TF32 32-bit reads are all free of
// bank conflicts and every mainloop address is a lane's base plus a
// constant. The epilogue stages the rounded tile through shared memory
// (XOR-swizzled, swz_rc) and stores it in 16-byte chunks, whole rows a warp.
//
// Edges: a 16-byte chunk that runs past K, M or Nc is zero-filled by
// cp.async's src-size operand. That needs every chunk's global address
// 16-byte aligned: a row stride that is a multiple of 8 bf16 (4 fp32) and
// an aligned base. Any other operand is staged by plain loads, element by
// element with bounds, into the same shared layout (a slower path, chosen
// per operand and uniform over the grid), so any shape is correct.
//
// The weight gradient's K is the N rows, long next to its output (768×768
// over 8192 rows in gpt2-124m: 36 tiles for 132 SMs), so the launcher may
// split it into S slices (grid tiles × S): each block sums its slice into
// an fp32 partial tile in a workspace, and the last block to finish a tile,
// elected with an integer counter, adds the S partials in slice order
// 0..S−1 and writes dw. The order of every sum is fixed by the shape and
// the plan: deterministic, and no float atomics.

#include <cuda_bf16.h>

namespace mma {

    // The block tiles, their warps and the pipeline (gemmplan's MMA*
    // constants mirror them; ptx/constants_mma_test.go checks).
    constexpr int BM = 128;
    constexpr int BN_WIDE = 256;
    constexpr int BN_NARROW = 192;
    constexpr int THREADS = 256;
    // WARPS_N warps side by side along N, THREADS/32/WARPS_N = 2 along M,
    // each 64 rows.
    constexpr int WARPS_N = 4;
    // 4 stages (216 KB a block, wide) fit Hopper; ptx/matmul_mma3.cu builds
    // this file again with MMA_STAGES_3 for the GPUs whose blocks get less
    // (A100: 163 KB), at 3 stages (162 KB).
#ifdef MMA_STAGES_3
    constexpr int STAGES = 3;
#else
    constexpr int STAGES = 4;
#endif
    // ROW_BYTES is a stage's K extent in bytes: 64 bf16 or 32 fp32, four mma
    // k-steps (KSTEPS, 32 bytes of K each) either way, and eight 16-byte
    // chunks per row of a K-contiguous tile.
    constexpr int ROW_BYTES = 128;
    constexpr int KSTEPS = ROW_BYTES / 32;
    // KC_STRIDE is a K-contiguous tile's row in shared memory: ROW_BYTES
    // and 16 bytes of padding (see Tile).
    constexpr int KC_STRIDE = ROW_BYTES + 16;
    // A stage holds BM rows of A and BN rows of B, KC_STRIDE bytes each.
    constexpr int SMEM_WIDE = STAGES * (BM + BN_WIDE) * KC_STRIDE;
    constexpr int SMEM_NARROW = STAGES * (BM + BN_NARROW) * KC_STRIDE;
    static_assert(SMEM_WIDE <= 227 * 1024, "more than an H100/H200 block may opt in to");
    static_assert(SMEM_NARROW <= SMEM_WIDE, "the narrow tile needs less");
    // Block-index swizzle: consecutive blocks walk GROUP_M row-tiles down one
    // column of tiles before moving right, so that the blocks resident at
    // one time share a few A and B panels in L2.
    constexpr int GROUP_M = 8;
    // bias_backward_bf16's block: BIAS_COLS columns (8 a thread, one 16-byte
    // load, so a row's 64 columns are one 128-byte line) times BIAS_ROWS row
    // lanes.
    constexpr int BIAS_COLS = 64;
    constexpr int BIAS_ROWS = 32;

typedef __nv_bfloat16 bf16;

// Cfg is one block tile: 128×BN, warps of 64×WN, NI n8 tiles a warp.
template <int BN_>
struct Cfg {
    static constexpr int BN = BN_;
    static constexpr int WN = BN / WARPS_N;
    static constexpr int NI = WN / 8;
    static constexpr int STAGE_BYTES = (BM + BN) * KC_STRIDE;
    static_assert(NI % 2 == 0, "B fragments are loaded two n8 tiles at a time");
    static_assert(BM * BN * 4 <= STAGES * STAGE_BYTES, "the fp32 epilogue tile fits in the stages");
};

// Elem describes an element type: its 16-byte chunk holds PER_CHUNK
// elements and a stage BK of K.
template <typename T>
struct Elem;
template <>
struct Elem<bf16> {
    static constexpr int SIZE = 2, PER_CHUNK = 8, BK = ROW_BYTES / 2;
};
template <>
struct Elem<float> {
    static constexpr int SIZE = 4, PER_CHUNK = 4, BK = ROW_BYTES / 4;
};

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

// cp_async16 copies 16 bytes from global src to shared dst, of which the
// first bytes (0..16) are read and the rest zero-filled.
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

__device__ __forceinline__ void sts4(unsigned addr, unsigned a, unsigned b, unsigned c, unsigned d) {
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};" ::"r"(addr), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}
__device__ __forceinline__ void sts1(unsigned addr, unsigned a) {
    asm volatile("st.shared.b32 [%0], %1;" ::"r"(addr), "r"(a) : "memory");
}
__device__ __forceinline__ void sts2(unsigned addr, unsigned a, unsigned b) {
    asm volatile("st.shared.v2.b32 [%0], {%1, %2};" ::"r"(addr), "r"(a), "r"(b) : "memory");
}
__device__ __forceinline__ uint4 lds4(unsigned addr) {
    uint4 v;
    asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "r"(addr)
                 : "memory");
    return v;
}
__device__ __forceinline__ unsigned lds1(unsigned addr) {
    unsigned v;
    asm volatile("ld.shared.b32 %0, [%1];" : "=r"(v) : "r"(addr) : "memory");
    return v;
}
__device__ __forceinline__ void ldsm4(unsigned addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr)
                 : "memory");
}
__device__ __forceinline__ void ldsm4t(unsigned addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr)
                 : "memory");
}
__device__ __forceinline__ unsigned tf32(unsigned x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(__uint_as_float(x)));
    return r;
}

// mma_k is one k-step of a 16×8 output: m16n8k16 for bf16, m16n8k8 for
// tf32, d += a·b in fp32.
__device__ __forceinline__ void mma_k(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2], bf16) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma_k(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2], float) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// The split-K epilogue's global memory operations. ldcg4 reads through L2
// only: the partials were written by other blocks of this launch.
__device__ __forceinline__ float4 ldcg4(const float* p) {
    float4 v;
    asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "l"(p)
                 : "memory");
    return v;
}
__device__ __forceinline__ void stg4(float* p, float4 v) {
    asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
                 : "memory");
}
__device__ __forceinline__ void stg4u(void* p, uint4 v) {
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
                 : "memory");
}
__device__ __forceinline__ void fence_gpu() { asm volatile("membar.gl;" ::: "memory"); }
__device__ __forceinline__ unsigned atom_add(int* p, unsigned v) {
    unsigned old;
    asm volatile("atom.global.add.u32 %0, [%1], %2;" : "=r"(old) : "l"(p), "r"(v) : "memory");
    return old;
}
__device__ __forceinline__ void stg_u32(int* p, unsigned v) {
    asm volatile("st.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ bool aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15) == 0;
}

// bits16 is element i of a row as its bits, 0 past valid (the fallback
// path's zero-fill).
__device__ __forceinline__ unsigned bits_of(const bf16* p, int i, int valid) {
    return i < valid ? (unsigned)reinterpret_cast<const unsigned short*>(p)[i] : 0u;
}
__device__ __forceinline__ unsigned bits_of(const float* p, int i, int valid) {
    return i < valid ? __float_as_uint(p[i]) : 0u;
}

// swz_rc is the chunk swizzle of the epilogue's tile (rows of T, a
// multiple of 128 bytes each), for row k: chunk c of row k sits at chunk
// c ^ swz_rc(k), which stays inside c's aligned group of 8 chunks (128
// bytes, the 32 banks). bf16: k%8, so that the 8 rows one warp writes at
// one logical chunk (a fragment's rows g = 0..7, 4 bytes from each of 4
// lanes) hit 8 different chunks. fp32: 2·(k%4), so that the 4 rows a
// half-warp writes at an aligned pair of chunks (8 bytes from each of 4
// lanes) hit 8 different chunks. A row's 8 consecutive chunks (one read
// phase) are permuted within their group: conflict-free too.
template <typename T>
__device__ __forceinline__ int swz_rc(int k) {
    return sizeof(T) == 2 ? (k & 7) : ((k & 3) << 1);
}

// Tile is one operand's stage in shared memory, ROWS rows of the operand
// (BM for A, BN for B), in 16-byte chunks, with rows padded so that every
// address the mainloop forms is a lane's base plus a constant (no swizzle
// to compute) and every access is still free of bank conflicts:
//
// K-contiguous (KC: global element (r,k) at p[r·ld + k]): ROWS rows of 8
// chunks (128 bytes of K), KC_STRIDE = 144 bytes apart. The 8 rows of one
// ldmatrix phase (same chunk, rows r0..r0+7) start 4 banks apart: 32 banks.
//
// R-contiguous (RC: element (r,k) at p[k·ld + r]): BK rows (one per k) of
// ROWS elements, RC_STRIDE apart: ROWS·size + 16 bytes for bf16 (the 8
// k-rows of an ldmatrix.trans phase start 4 banks apart), + 32 for fp32
// (the TF32 fragment reads 4 k-rows × 8 consecutive elements: 8 banks
// apart). Either fits in ROWS·KC_STRIDE bytes (BK·RC_STRIDE = 128·ROWS +
// 1024 ≤ 144·ROWS for ROWS ≥ 64).
//
// cp.async writes a row's consecutive chunks from consecutive threads,
// 128 contiguous bytes a phase: conflict-free in both layouts.
template <typename T, bool KC, int ROWS>
struct Tile {
    static constexpr int EPC = Elem<T>::PER_CHUNK;
    static constexpr int BK = Elem<T>::BK;
    static constexpr int CPR = ROWS * (int)sizeof(T) / 16; // chunks of an RC row
    static constexpr int RC_STRIDE = ROWS * (int)sizeof(T) + 8 * (int)sizeof(T);
    static constexpr int CHUNKS = ROWS * ROW_BYTES / 16;
    static constexpr int BYTES = ROWS * KC_STRIDE; // the slot, either layout
    static_assert(BK * RC_STRIDE <= BYTES, "an RC stage fits in the slot");
    static_assert(CHUNKS % THREADS == 0, "every thread loads the same number of chunks");
    static_assert(KC || CPR % 8 == 0, "a phase of 8 chunks stays in one RC row");

    // elem_rc is the byte offset of element (r, k) of an RC tile.
    __device__ static __forceinline__ unsigned elem_rc(int r, int k) {
        return (unsigned)(k * RC_STRIDE + r * (int)sizeof(T));
    }
};

// Operand stages one input of the GEMM: rows [r0, r0+ROWS) of its R rows
// (M for A, Nc for B), over k in [k, kend). Each thread owns a fixed set of
// chunks of the tile, the same every stage:
//   KC: row lr + 32·i (i < ROWS/32), chunk tid%8 of it (lr = tid/8);
//   RC: k-row lk + PASS_K·i (i < PASSES, lk + PASS_K·i < BK), chunk
//       tid%CPR of it (lk = tid/CPR, PASS_K = THREADS/CPR k-rows a pass;
//       the threads past PASS_K·CPR, when CPR does not divide THREADS,
//       load nothing).
// so that a stage's addresses are a per-thread base plus i times a step.
template <typename T, bool KC, int ROWS>
struct Operand {
    typedef Tile<T, KC, ROWS> L;
    static constexpr int EPC = L::EPC;
    static constexpr int PASS_K = THREADS / L::CPR;
    static constexpr int PASSES = KC ? ROWS / 32 : (L::BK + PASS_K - 1) / PASS_K;
    const T* p;     // the matrix (a safe address for an empty chunk)
    const T* first; // this thread's first chunk at k = 0 (KC) or k-row lk (RC), unchecked
    size_t step;    // elements from one of its chunks to the next (32 or PASS_K rows)
    unsigned soff;  // its first chunk's offset in the stage
    int ld, kend;
    int lk;         // RC: its first k-row in the tile
    int kc;         // KC: its chunk's first k in the tile
    int fixed;      // KC: bit i set where row lr+32·i is inside R; RC: elements of its chunk inside R
    bool vec;       // every chunk 16-byte aligned: cp.async

    __device__ __forceinline__ void init(const T* p_, int ld_, int R, int r0, int kend_, int tid) {
        p = p_;
        ld = ld_;
        kend = kend_;
        vec = aligned16(p_) && ld_ % EPC == 0;
        if (KC) {
            const int lr = tid >> 3;
            kc = (tid & 7) * EPC;
            lk = 0;
            first = p_ + (size_t)(r0 + lr) * (size_t)ld_ + kc;
            step = (size_t)32 * (size_t)ld_;
            soff = (unsigned)(lr * KC_STRIDE + (tid & 7) * 16);
            fixed = 0;
#pragma unroll
            for (int i = 0; i < PASSES; ++i) fixed |= (r0 + lr + 32 * i < R ? 1 : 0) << i;
        } else {
            const int rc = (tid % L::CPR) * EPC;
            kc = 0;
            lk = tid / L::CPR;
            first = p_ + (size_t)lk * (size_t)ld_ + (size_t)(r0 + rc);
            step = (size_t)PASS_K * (size_t)ld_;
            soff = (unsigned)(lk * L::RC_STRIDE + (tid % L::CPR) * 16);
            fixed = tid < PASS_K * L::CPR ? min(max(R - (r0 + rc), 0), EPC) : 0;
        }
    }

    // load stages K from k0 into the tile at shared byte address s.
    __device__ __forceinline__ void load(unsigned s, int k0) const {
        if (!KC && PASS_K * L::CPR < THREADS && lk >= PASS_K) return; // an idle thread (see above)
        const T* src0 = first + (KC ? (size_t)k0 : (size_t)k0 * (size_t)ld);
        const int kvalid = KC ? min(max(kend - (k0 + kc), 0), EPC) : 0;
#pragma unroll
        for (int i = 0; i < PASSES; ++i) {
            if (!KC && PASSES * PASS_K > L::BK && lk + PASS_K * i >= L::BK) break; // past the tile
            int valid; // elements of the chunk inside the matrix
            if (KC) {
                valid = (fixed >> i) & 1 ? kvalid : 0;
            } else {
                valid = k0 + lk + PASS_K * i < kend ? fixed : 0;
            }
            const unsigned at = s + soff + (unsigned)(i * (KC ? 32 * KC_STRIDE : PASS_K * L::RC_STRIDE));
            const T* src = valid > 0 ? src0 + (size_t)i * step : p;
            if (vec) {
                cp_async16(at, src, valid * (int)sizeof(T));
            } else {
                unsigned w[4];
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    if (sizeof(T) == 2) {
                        w[j] = bits_of(src, 2 * j, valid) | (bits_of(src, 2 * j + 1, valid) << 16);
                    } else {
                        w[j] = bits_of(src, j, valid);
                    }
                }
                sts4(at, w[0], w[1], w[2], w[3]);
            }
        }
    }
};

// Split is the weight gradient's split-K: the slice count and the workspace.
struct Split {
    float* partials; // [splits][gridDim.x] tiles of BM·BN floats
    int* counters;   // [gridDim.x], zero between launches
    int splits;
};

// frags_a and frags_b load the mma fragments of one k-step (ks = 0..3 of a
// stage) for a warp's 64×WN: A for its 4 m16 tiles, B for its NI n8 tiles,
// following the PTX ISA's fragment layouts (g = lane/4, t = lane%4):
//   bf16 m16n8k16: a0 (g, 2t..2t+1), a1 (g+8, ..), a2 (g, 2t+8..), a3 (g+8, 2t+8..); b0 (k 2t.., n g), b1 (k 2t+8..)
//   tf32 m16n8k8:  a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4);            b0 (k t, n g),   b1 (k t+4)
// ldmatrix.x4 lane l gives the row address of matrix l/8, row l%8; in
// chunks both types address alike (a k-step is two chunks of K). (An 8×8
// b16 matrix is an 8×4 fp32 one: exactly the TF32 fragment.)
template <typename T, bool KC>
__device__ __forceinline__ void frags_a(unsigned (&a)[4][4], unsigned s, int ks, int wm, int lane) {
    typedef Tile<T, KC, BM> L;
    const int j = lane >> 3, l8 = lane & 7;
    if (KC) {
        // matrices: (m 0-7, k-chunk 0), (m 8-15, 0), (m 0-7, 1), (m 8-15, 1)
        const int r = wm * 64 + (j & 1) * 8 + l8;
        const int c = ks * 2 + (j >> 1);
        const unsigned at = s + r * KC_STRIDE + c * 16;
#pragma unroll
        for (int mi = 0; mi < 4; ++mi) ldsm4(at + mi * 16 * KC_STRIDE, a[mi][0], a[mi][1], a[mi][2], a[mi][3]);
    } else if (sizeof(T) == 2) {
        // .trans matrices: (k 0-7, m 0-7), (k 0-7, m 8-15), (k 8-15, m 0-7), (k 8-15, m 8-15)
        const int k = ks * 16 + (j >> 1) * 8 + l8;
#pragma unroll
        for (int mi = 0; mi < 4; ++mi) {
            const int c = wm * 8 + mi * 2 + (j & 1);
            ldsm4t(s + k * L::RC_STRIDE + c * 16, a[mi][0], a[mi][1], a[mi][2], a[mi][3]);
        }
    } else {
        const int g = lane >> 2, t = lane & 3;
        const int k = ks * 8 + t;
#pragma unroll
        for (int mi = 0; mi < 4; ++mi) {
            const int m = wm * 64 + mi * 16 + g;
            a[mi][0] = lds1(s + L::elem_rc(m, k));
            a[mi][1] = lds1(s + L::elem_rc(m + 8, k));
            a[mi][2] = lds1(s + L::elem_rc(m, k + 4));
            a[mi][3] = lds1(s + L::elem_rc(m + 8, k + 4));
        }
    }
    if (sizeof(T) == 4) {
#pragma unroll
        for (int mi = 0; mi < 4; ++mi)
#pragma unroll
            for (int q = 0; q < 4; ++q) a[mi][q] = tf32(a[mi][q]);
    }
}

template <typename T, bool KC, int BN, int NI>
__device__ __forceinline__ void frags_b(unsigned (&b)[NI][2], unsigned s, int ks, int wn, int lane) {
    typedef Tile<T, KC, BN> L;
    const int WN = NI * 8;
    const int j = lane >> 3, l8 = lane & 7;
    if (KC) {
        // matrices: (n 0-7, chunk 0), (n 0-7, 1), (n 8-15, 0), (n 8-15, 1)
        const int r = wn * WN + (j >> 1) * 8 + l8;
        const int c = ks * 2 + (j & 1);
        const unsigned at = s + r * KC_STRIDE + c * 16;
#pragma unroll
        for (int p = 0; p < NI / 2; ++p)
            ldsm4(at + p * 16 * KC_STRIDE, b[2 * p][0], b[2 * p][1], b[2 * p + 1][0], b[2 * p + 1][1]);
    } else if (sizeof(T) == 2) {
        // .trans matrices: (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15)
        const int k = ks * 16 + (j & 1) * 8 + l8;
#pragma unroll
        for (int p = 0; p < NI / 2; ++p) {
            const int c = wn * (WN / 8) + p * 2 + (j >> 1);
            ldsm4t(s + k * L::RC_STRIDE + c * 16, b[2 * p][0], b[2 * p][1], b[2 * p + 1][0],
                   b[2 * p + 1][1]);
        }
    } else {
        const int g = lane >> 2, t = lane & 3;
        const int k = ks * 8 + t;
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
            const int n = wn * WN + ni * 8 + g;
            b[ni][0] = lds1(s + L::elem_rc(n, k));
            b[ni][1] = lds1(s + L::elem_rc(n, k + 4));
        }
    }
    if (sizeof(T) == 4) {
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
            b[ni][0] = tf32(b[ni][0]);
            b[ni][1] = tf32(b[ni][1]);
        }
    }
}

__device__ __forceinline__ float to_float(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(float v) { return v; }

// put2 writes the outputs (row, col), (row, col+1) of the epilogue's tile
// (rows of BN elements, col even) rounded to T, at their swizzled place.
template <int BN>
__device__ __forceinline__ void put2(unsigned s, int row, int col, float v0, float v1, bf16) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(v0, v1);
    sts1(s + row * (BN * 2) + (((col >> 3) ^ swz_rc<bf16>(row)) << 4) + (col & 7) * 2,
         *reinterpret_cast<const unsigned*>(&v));
}
template <int BN>
__device__ __forceinline__ void put2(unsigned s, int row, int col, float v0, float v1, float) {
    sts2(s + row * (BN * 4) + (((col >> 2) ^ swz_rc<float>(row)) << 4) + (col & 3) * 4, __float_as_uint(v0),
         __float_as_uint(v1));
}

// store_elems writes the first n (< PER_CHUNK) elements of chunk v to c.
__device__ __forceinline__ void store_elems(bf16* c, uint4 v, int n) {
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
    unsigned short* d = reinterpret_cast<unsigned short*>(c);
#pragma unroll
    for (int j = 0; j < 8; ++j)
        if (j < n) d[j] = (unsigned short)(j & 1 ? w[j >> 1] >> 16 : w[j >> 1] & 0xffffu);
}
__device__ __forceinline__ void store_elems(float* c, uint4 v, int n) {
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 4; ++j)
        if (j < n) c[j] = __uint_as_float(w[j]);
}

// gemm computes one BM×BN tile of C(M,Nc) = A(M,K)·B(K,Nc) (+ bias(Nc)) over
// k in [k0, kend), C with row stride ldc. A_KC: A is (M,K) with row stride
// lda, else (K,M); B_KC: B is (Nc,K) with row stride ldb, else (K,Nc). A
// SPLIT block (the weight gradient's slice) hands its partial tile to the
// split epilogue instead of storing it.
template <typename T, bool A_KC, bool B_KC, bool SPLIT, int BN>
__device__ __forceinline__ void gemm(T* __restrict__ Cm, const T* __restrict__ A, const T* __restrict__ B,
                                     const T* __restrict__ bias, int M, int Nc, int lda, int ldb, int ldc, int k0,
                                     int kend, const Split& sp, unsigned char* smem) {
    typedef Cfg<BN> CF;
    const int NI = CF::NI, WN = CF::WN, SB = CF::STAGE_BYTES;
    if (M <= 0 || Nc <= 0) return;
    const int BK = Elem<T>::BK; // a compile-time constant
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WARPS_N, wn = warp % WARPS_N;

    // Tile placement in grouped order (GROUP_M).
    const int tiles_m = (M + BM - 1) / BM, tiles_n = (Nc + BN - 1) / BN;
    const int per_group = GROUP_M * tiles_n;
    const int block = blockIdx.x;
    const int first_m = (block / per_group) * GROUP_M;
    const int gsize = min(tiles_m - first_m, GROUP_M);
    const int in_group = block % per_group;
    const int m0 = (first_m + in_group % gsize) * BM;
    const int n0 = (in_group / gsize) * BN;

    Operand<T, A_KC, BM> a;
    a.init(A, lda, M, m0, kend, tid);
    Operand<T, B_KC, BN> b;
    b.init(B, ldb, Nc, n0, kend, tid);

    // Stage s: A at base + s·SB, B BM·KC_STRIDE after it.
    const unsigned base = smem_addr(smem);
    const int B_OFF = BM * KC_STRIDE;

    float acc[4][NI][4];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[mi][ni][q] = 0.0f;

    const int stages = kend > k0 ? (kend - k0 + BK - 1) / BK : 0;
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < stages) {
            a.load(base + s * SB, k0 + s * BK);
            b.load(base + s * SB + B_OFF, k0 + s * BK);
        }
        cp_async_commit();
    }

    // The pipeline. Stage it lives in slot it % STAGES. Before the last
    // k-step of stage it, wait_group(STAGES−2) lands stage it+1 (one group
    // is committed every stage, empty or not, so that the count stays
    // exact) and the barrier publishes it; the same barrier retires every
    // read of stage it−1's slot, which the first k-step of stage it+1 then
    // refills with stage it+STAGES. Each k-step loads the next k-step's
    // fragments (of this stage, or after the barrier of the next) into the
    // other register buffer before its own mma.
    if (stages > 0) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        unsigned af[2][4][4], bfr[2][NI][2];
        frags_a<T, A_KC>(af[0], base, 0, wm, lane);
        frags_b<T, B_KC, BN, NI>(bfr[0], base + B_OFF, 0, wn, lane);
        int slot = 0;
        for (int it = 0; it < stages; ++it) {
            const int next = slot == STAGES - 1 ? 0 : slot + 1;
#pragma unroll
            for (int ks = 0; ks < KSTEPS; ++ks) {
                if (ks == KSTEPS - 1) {
                    cp_async_wait<STAGES - 2>();
                    __syncthreads();
                }
                const unsigned fs = base + (ks == KSTEPS - 1 ? next : slot) * SB;
                frags_a<T, A_KC>(af[(ks + 1) & 1], fs, (ks + 1) % KSTEPS, wm, lane);
                frags_b<T, B_KC, BN, NI>(bfr[(ks + 1) & 1], fs + B_OFF, (ks + 1) % KSTEPS, wn, lane);
                if (ks == 0) {
                    // Refill the slot of stage it−1 (= it+STAGES−1 mod STAGES).
                    const int fill = slot == 0 ? STAGES - 1 : slot - 1;
                    if (it + STAGES - 1 < stages) {
                        const int kn = k0 + (it + STAGES - 1) * BK;
                        a.load(base + fill * SB, kn);
                        b.load(base + fill * SB + B_OFF, kn);
                    }
                    cp_async_commit();
                }
#pragma unroll
                for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                    for (int ni = 0; ni < NI; ++ni) mma_k(acc[mi][ni], af[ks & 1][mi], bfr[ks & 1][ni], T());
            }
            slot = next;
        }
    }
    cp_async_wait<0>();

    if (SPLIT) {
        // Store this slice's partial tile, thread-major in float4 (coalesced),
        // then count the slice in. The last of the S blocks of the tile
        // resets the counter, sums the S partials in slice order into acc and
        // stores dw below. The fence before the count makes this block's
        // partial visible before its arrival; the reducer's fence after it
        // orders its reads after every other block's arrival.
        const int tile = blockIdx.x;
        const size_t slice_stride = (size_t)gridDim.x * (BM * BN);
        float* mine = sp.partials + (size_t)blockIdx.y * slice_stride + (size_t)tile * (BM * BN) + 4 * tid;
#pragma unroll
        for (int mi = 0; mi < 4; ++mi)
#pragma unroll
            for (int ni = 0; ni < NI; ++ni)
                stg4(mine + (mi * NI + ni) * 4 * THREADS,
                     make_float4(acc[mi][ni][0], acc[mi][ni][1], acc[mi][ni][2], acc[mi][ni][3]));
        fence_gpu();
        __syncthreads(); // every thread's partial is fenced before the count; smem is free
        volatile unsigned* flag = reinterpret_cast<volatile unsigned*>(smem);
        if (tid == 0) {
            int* counter = sp.counters + tile;
            const unsigned last = atom_add(counter, 1u) == (unsigned)(sp.splits - 1) ? 1u : 0u;
            if (last) {
                stg_u32(counter, 0u);
                fence_gpu();
            }
            *flag = last;
        }
        __syncthreads();
        if (*flag == 0) return;
        const float* first = sp.partials + (size_t)tile * (BM * BN) + 4 * tid;
#pragma unroll
        for (int mi = 0; mi < 4; ++mi)
#pragma unroll
            for (int ni = 0; ni < NI; ++ni)
#pragma unroll
                for (int q = 0; q < 4; ++q) acc[mi][ni][q] = 0.0f;
        for (int s = 0; s < sp.splits; ++s) {
            const float* ps = first + (size_t)s * slice_stride;
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                for (int ni = 0; ni < NI; ++ni) {
                    const float4 v = ldcg4(ps + (mi * NI + ni) * 4 * THREADS);
                    acc[mi][ni][0] += v.x;
                    acc[mi][ni][1] += v.y;
                    acc[mi][ni][2] += v.z;
                    acc[mi][ni][3] += v.w;
                }
        }
    }

    // Epilogue: add the bias in fp32, round once into a BM×BN tile of T in
    // shared memory (rows of BN elements, chunk c of row r at c ^ swz_rc(r):
    // the fragment writes, 8 rows × one chunk a warp, and the row reads
    // below are free of bank conflicts), then store it row by row in 16-byte
    // chunks where C's rows allow, element by element at the edges. The
    // barrier first retires every warp's reads of the stages (and the split
    // flag's).
    __syncthreads();
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
        const int cl = wn * WN + ni * 8 + 2 * t, col = n0 + cl;
        const float b0 = (bias != nullptr && col < Nc) ? to_float(bias[col]) : 0.0f;
        const float b1 = (bias != nullptr && col + 1 < Nc) ? to_float(bias[col + 1]) : 0.0f;
#pragma unroll
        for (int mi = 0; mi < 4; ++mi)
#pragma unroll
            for (int h = 0; h < 2; ++h)
                put2<BN>(base, wm * 64 + mi * 16 + h * 8 + g, cl, acc[mi][ni][2 * h] + b0, acc[mi][ni][2 * h + 1] + b1,
                         T());
    }
    __syncthreads();
    const int EPC = Elem<T>::PER_CHUNK, CPR = BN * (int)sizeof(T) / 16;
    const bool vec = aligned16(Cm) && ldc % EPC == 0;
#pragma unroll 4
    for (int q = tid; q < BM * CPR; q += THREADS) {
        const int r = q / CPR, c = q % CPR;
        const int row = m0 + r, col = n0 + c * EPC;
        if (row >= M || col >= Nc) continue;
        const uint4 v = lds4(base + r * (BN * (int)sizeof(T)) + ((c ^ swz_rc<T>(r)) << 4));
        T* dst = Cm + (size_t)row * ldc + col;
        if (vec && col + EPC <= Nc) {
            stg4u(dst, v);
        } else {
            store_elems(dst, v, min(Nc - col, EPC));
        }
    }
}

__device__ __forceinline__ Split unsplit() { return Split{nullptr, nullptr, 1}; }

// The entries of one element type. Launch: grid (tiles, 1) or, for a split
// weight gradient, (tiles, splits); block THREADS; SMEM_WIDE or SMEM_NARROW
// bytes of dynamic shared memory for bn = BN_WIDE or BN_NARROW (any other
// bn is taken as BN_WIDE).
template <typename T>
__device__ __forceinline__ void forward(T* out, const T* inp, const T* w, const T* bias, int N, int C, int OC, int ld,
                                        int bn) {
    extern __shared__ __align__(128) unsigned char smem[];
    if (bn == BN_NARROW) {
        gemm<T, true, true, false, BN_NARROW>(out, inp, w, bias, N, OC, C, C, ld, 0, C, unsplit(), smem);
    } else {
        gemm<T, true, true, false, BN_WIDE>(out, inp, w, bias, N, OC, C, C, ld, 0, C, unsplit(), smem);
    }
}

template <typename T>
__device__ __forceinline__ void backward_input(T* dinp, const T* dout, const T* w, int N, int C, int OC, int ld,
                                               int bn) {
    extern __shared__ __align__(128) unsigned char smem[];
    if (bn == BN_NARROW) {
        gemm<T, true, false, false, BN_NARROW>(dinp, dout, w, nullptr, N, C, ld, C, C, 0, OC, unsplit(), smem);
    } else {
        gemm<T, true, false, false, BN_WIDE>(dinp, dout, w, nullptr, N, C, ld, C, C, 0, OC, unsplit(), smem);
    }
}

// backward_weight: block (x, y) sums rows [y·slice_k, min((y+1)·slice_k, N))
// of tile x; slice_k is a multiple of both types' BK (the launcher's
// gemmplan.MMAWeightGrad). splits = 1 is the plain GEMM and touches neither
// partials nor counters (they may be null).
template <typename T, int BN>
__device__ __forceinline__ void backward_weight_bn(T* dw, const T* dout, const T* inp, const Split& sp, int N, int C,
                                                   int OC, int ld, int slice_k, unsigned char* smem) {
    if (sp.splits > 1) {
        const int k0 = blockIdx.y * slice_k;
        gemm<T, false, false, true, BN>(dw, dout, inp, nullptr, OC, C, ld, C, C, k0, min(k0 + slice_k, N), sp, smem);
    } else {
        gemm<T, false, false, false, BN>(dw, dout, inp, nullptr, OC, C, ld, C, C, 0, N, sp, smem);
    }
}

template <typename T>
__device__ __forceinline__ void backward_weight(T* dw, const T* dout, const T* inp, float* partials, int* counters,
                                                int N, int C, int OC, int ld, int splits, int slice_k, int bn) {
    extern __shared__ __align__(128) unsigned char smem[];
    const Split sp{partials, counters, splits};
    if (bn == BN_NARROW) {
        backward_weight_bn<T, BN_NARROW>(dw, dout, inp, sp, N, C, OC, ld, slice_k, smem);
    } else {
        backward_weight_bn<T, BN_WIDE>(dw, dout, inp, sp, N, C, OC, ld, slice_k, smem);
    }
}

} // namespace mma

using namespace mma;

extern "C" __global__ void __launch_bounds__(THREADS, 1)
    matmul_forward_bf16(bf16* out, const bf16* inp, const bf16* w, const bf16* bias, int N, int C, int OC, int ld,
                        int bn) {
    forward<bf16>(out, inp, w, bias, N, C, OC, ld, bn);
}

extern "C" __global__ void __launch_bounds__(THREADS, 1) matmul_forward_tf32(float* out, const float* inp,
                                                                             const float* w, const float* bias, int N,
                                                                             int C, int OC, int ld, int bn) {
    forward<float>(out, inp, w, bias, N, C, OC, ld, bn);
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
    matmul_backward_input_bf16(bf16* dinp, const bf16* dout, const bf16* w, int N, int C, int OC, int ld, int bn) {
    backward_input<bf16>(dinp, dout, w, N, C, OC, ld, bn);
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
    matmul_backward_input_tf32(float* dinp, const float* dout, const float* w, int N, int C, int OC, int ld, int bn) {
    backward_input<float>(dinp, dout, w, N, C, OC, ld, bn);
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
    matmul_backward_weight_bf16(bf16* dw, const bf16* dout, const bf16* inp, float* partials, int* counters, int N,
                                int C, int OC, int ld, int splits, int slice_k, int bn) {
    backward_weight<bf16>(dw, dout, inp, partials, counters, N, C, OC, ld, splits, slice_k, bn);
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
    matmul_backward_weight_tf32(float* dw, const float* dout, const float* inp, float* partials, int* counters, int N,
                                int C, int OC, int ld, int splits, int slice_k, int bn) {
    backward_weight<float>(dw, dout, inp, partials, counters, N, C, OC, ld, splits, slice_k, bn);
}

// bias_backward_bf16: dbias(OC) = Σ_n dout(n*ld + oc), bf16 in and out, fp32
// sums. Grid (ceil(OC/BIAS_COLS), splits), block (BIAS_COLS/8, BIAS_ROWS):
// block (x, s) sums rows [s·slice_rows, (s+1)·slice_rows) of its BIAS_COLS
// columns. Thread (x, y) owns 8 columns (one 16-byte load a row where the
// row allows) and sums rows y, y+BIAS_ROWS, ... of the slice into four
// accumulators (rows in turn, for four loads in flight), added at the end;
// the BIAS_ROWS partials of a column are then added by a fixed tree in
// shared memory.
//
// One column block alone cannot pull its rows at the GPU's bandwidth (a
// 768-column bias was 12 blocks for 132 SMs), so the rows are split: with
// splits > 1 each block stores its slice's sums in partials[s·OC + oc] and
// counts itself in on counters[x]; the last of the column block's splits
// resets the counter and adds the partials in slice order 0..splits−1.
// With splits = 1 the block stores dbias directly (partials and counters
// may be null). Every order depends only on (N, OC, splits, slice_rows):
// bitwise reproducible, no float atomics.
extern "C" __global__ void __launch_bounds__(BIAS_COLS / 8 * BIAS_ROWS)
    bias_backward_bf16(bf16* dbias, const bf16* dout, float* partials, int* counters, int N, int OC, int ld,
                       int splits, int slice_rows) {
    __shared__ float part[BIAS_ROWS][BIAS_COLS];
    __shared__ unsigned last;
    const int x = threadIdx.x, y = threadIdx.y;
    const int col0 = blockIdx.x * BIAS_COLS + x * 8;
    const int n0 = blockIdx.y * slice_rows, n1 = min(N, n0 + slice_rows);
    const bool vec = aligned16(dout) && ld % 8 == 0 && col0 + 8 <= OC;
    float s[8], u[8], v[8], w[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j] = u[j] = v[j] = w[j] = 0.0f;
    const unsigned short* p = reinterpret_cast<const unsigned short*>(dout) + col0;
    // add8 adds row n's 8 columns into acc.
    auto add8 = [&](float(&acc)[8], int n) {
        const unsigned short* q = p + (size_t)n * ld;
        if (vec) {
            const uint4 v = *reinterpret_cast<const uint4*>(q);
            const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                acc[2 * j] += __uint_as_float(w[j] << 16);
                acc[2 * j + 1] += __uint_as_float(w[j] & 0xffff0000u);
            }
        } else {
#pragma unroll
            for (int j = 0; j < 8; ++j)
                if (col0 + j < OC) acc[j] += __uint_as_float((unsigned)q[j] << 16);
        }
    };
    if (col0 < OC) {
        int n = n0 + y;
        for (; n + 3 * BIAS_ROWS < n1; n += 4 * BIAS_ROWS) {
            add8(s, n);
            add8(u, n + BIAS_ROWS);
            add8(v, n + 2 * BIAS_ROWS);
            add8(w, n + 3 * BIAS_ROWS);
        }
        for (; n < n1; n += BIAS_ROWS) add8(s, n);
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) part[y][x * 8 + j] = (s[j] + u[j]) + (v[j] + w[j]);
    __syncthreads();
#pragma unroll
    for (int h = BIAS_ROWS / 2; h > 0; h /= 2) {
        if (y < h) {
#pragma unroll
            for (int j = 0; j < 8; ++j) part[y][x * 8 + j] += part[y + h][x * 8 + j];
        }
        __syncthreads();
    }
    if (splits > 1) {
        // The slice's sums to partials, fenced before the count; the last
        // block's fence after it orders its reads after every arrival.
        if (y == 0) {
#pragma unroll
            for (int j = 0; j < 8; ++j)
                if (col0 + j < OC) partials[(size_t)blockIdx.y * OC + col0 + j] = part[0][x * 8 + j];
            fence_gpu();
        }
        __syncthreads();
        if (x == 0 && y == 0) {
            int* counter = counters + blockIdx.x;
            last = atom_add(counter, 1u) == (unsigned)(splits - 1) ? 1u : 0u;
            if (last) {
                stg_u32(counter, 0u);
                fence_gpu();
            }
        }
        __syncthreads();
        if (!last) return;
        // Slices in order, one (column, slice-lane) pair a thread: thread
        // (x, y) adds the 8 columns' slices y, y+BIAS_ROWS, ... in order,
        // then the same tree as above adds the lanes.
        float t[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) t[j] = 0.0f;
        if (col0 < OC) {
            for (int sl = y; sl < splits; sl += BIAS_ROWS) {
                const float* ps = partials + (size_t)sl * OC + col0;
#pragma unroll
                for (int j = 0; j < 8; ++j)
                    if (col0 + j < OC) t[j] += __ldcg(ps + j);
            }
        }
        __syncthreads(); // the tree's last reads of part are done
#pragma unroll
        for (int j = 0; j < 8; ++j) part[y][x * 8 + j] = t[j];
        __syncthreads();
#pragma unroll
        for (int h = BIAS_ROWS / 2; h > 0; h /= 2) {
            if (y < h) {
#pragma unroll
                for (int j = 0; j < 8; ++j) part[y][x * 8 + j] += part[y + h][x * 8 + j];
            }
            __syncthreads();
        }
    }
    if (y == 0) {
#pragma unroll
        for (int j = 0; j < 8; ++j)
            if (col0 + j < OC) dbias[col0 + j] = __float2bfloat16_rn(part[0][x * 8 + j]);
    }
}
