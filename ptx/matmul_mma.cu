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
// A block of 4 warps computes a 128×128 tile of C; each warp a 64×64
// quarter as 4×8 mma tiles (m16n8k16 bf16 or m16n8k8 tf32), 128 fp32
// accumulators a thread. A stage is 64 bytes of K (32 bf16 or 16 fp32) of
// both operands, 16 KB; STAGES = 3 stages are in flight through cp.async
// (48 KB of dynamic shared memory, the most a launch gets without
// cuFuncSetAttribute). Shared memory is XOR-swizzled in 16-byte chunks (see
// Tile), so that cp.async stores, ldmatrix and the TF32 32-bit reads are
// all free of bank conflicts without padding.
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

    // The block tile, its warps and its pipeline (gemmplan's MMA* constants
    // mirror them; ptx/constants_mma_test.go checks).
    constexpr int BM = 128;
    constexpr int BN = 128;
    constexpr int THREADS = 128;
    constexpr int STAGES = 3;
    // ROW_BYTES is a stage's K extent in bytes: 32 bf16 or 16 fp32, two mma
    // k-steps either way, and four 16-byte chunks per row of a K-contiguous
    // tile.
    constexpr int ROW_BYTES = 64;
    // One operand's stage: BM rows of ROW_BYTES, or ROW_BYTES/size rows of
    // BM elements; the same 8 KB (BM == BN).
    constexpr int TILE_BYTES = BM * ROW_BYTES;
    constexpr int SMEM_BYTES = STAGES * 2 * TILE_BYTES;
    static_assert(SMEM_BYTES <= 48 * 1024, "a launch gets more than 48 KB only after cuFuncSetAttribute");
    // Block-index swizzle: consecutive blocks walk GROUP_M row-tiles down one
    // column of tiles before moving right, so that the blocks resident at
    // one time share a few A and B panels in L2.
    constexpr int GROUP_M = 8;
    // bias_backward_bf16's block: BIAS_COLS columns (8 a thread, one 16-byte
    // load) times BIAS_ROWS row lanes.
    constexpr int BIAS_COLS = 32;
    constexpr int BIAS_ROWS = 256;

typedef __nv_bfloat16 bf16;

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

// Tile is one operand's stage in shared memory, in 16-byte chunks.
//
// K-contiguous (KC: global element (r,k) at p[r·ld + k]): BM rows of 4
// chunks (64 bytes of K). Chunk c of row r sits at chunk c ^ ((r/2)%4): the
// 8 rows that one ldmatrix phase reads (same logical chunk, rows r0..r0+7)
// then fall in 8 different 16-byte bank groups.
//
// R-contiguous (RC: element (r,k) at p[k·ld + r]): BK rows (one per k) of
// BM elements, 16 chunks (bf16) or 32 (fp32). bf16: chunk c of row k sits
// at c ^ (k%8), so the 8 k-rows of an ldmatrix.trans phase differ.
// fp32: at c ^ 2·(k%4): the TF32 fragment reads 4 k-rows (t = lane%4) × 8
// consecutive elements (two chunks, g = lane/4), which then land on 32
// different banks.
template <typename T, bool KC>
struct Tile {
    static constexpr int EPC = Elem<T>::PER_CHUNK;
    static constexpr int BK = Elem<T>::BK;
    static constexpr int ROWB = BM * (int)sizeof(T); // bytes of an RC row
    static constexpr int CPR = ROWB / 16;            // chunks of an RC row

    __device__ static __forceinline__ unsigned swz_rc(int k) { return sizeof(T) == 2 ? (k & 7) : ((k & 3) << 1); }

    // chunk is the byte offset of chunk q (0..511) of the stage, and the
    // tile coordinates it holds: (r, k) of its first element.
    __device__ static __forceinline__ unsigned chunk(int q, int& r, int& k) {
        if (KC) {
            r = q >> 2;
            const int c = q & 3;
            k = c * EPC;
            return (unsigned)(r * ROW_BYTES + ((c ^ ((r >> 1) & 3)) << 4));
        }
        k = q / CPR;
        const int c = q % CPR;
        r = c * EPC;
        return (unsigned)(k * ROWB + ((c ^ swz_rc(k)) << 4));
    }

    // elem is the byte offset of element (r, k) of an RC tile.
    __device__ static __forceinline__ unsigned elem_rc(int r, int k) {
        return (unsigned)(k * ROWB + (((r / EPC) ^ swz_rc(k)) << 4) + (r % EPC) * (int)sizeof(T));
    }
};

// Operand stages one input of the GEMM: rows [r0, r0+BM) of its R rows (M
// for A, Nc for B), over k in [k, kend).
template <typename T, bool KC>
struct Operand {
    typedef Tile<T, KC> L;
    const T* p;
    int ld, R, r0, kend;
    bool vec; // every chunk 16-byte aligned: cp.async

    __device__ __forceinline__ void init(const T* p_, int ld_, int R_, int r0_, int kend_) {
        p = p_;
        ld = ld_;
        R = R_;
        r0 = r0_;
        kend = kend_;
        vec = aligned16(p_) && ld_ % L::EPC == 0;
    }

    // load stages K from k0 into the tile at shared byte address s: chunk
    // q = tid + i·THREADS for i < 4 (512 chunks of 16 bytes).
    __device__ __forceinline__ void load(unsigned s, int k0, int tid) const {
#pragma unroll
        for (int i = 0; i < TILE_BYTES / 16 / THREADS; ++i) {
            int r, k;
            const unsigned at = s + L::chunk(tid + i * THREADS, r, k);
            r += r0;
            k += k0;
            int valid; // elements of the chunk inside the matrix
            if (KC) {
                valid = r < R ? min(max(kend - k, 0), L::EPC) : 0;
            } else {
                valid = k < kend ? min(max(R - r, 0), L::EPC) : 0;
            }
            const T* src = valid > 0 ? p + (KC ? (unsigned)r * (unsigned)ld + (unsigned)k
                                               : (unsigned)k * (unsigned)ld + (unsigned)r)
                                     : p;
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

// Frags loads the mma fragments of one k-step (ks = 0, 1 of a stage) for
// a warp's 64×64: A for its 4 m16 tiles, B for its 8 n8 tiles, following
// the PTX ISA's fragment layouts (g = lane/4, t = lane%4):
//   bf16 m16n8k16: a0 (g, 2t..2t+1), a1 (g+8, ..), a2 (g, 2t+8..), a3 (g+8, 2t+8..); b0 (k 2t.., n g), b1 (k 2t+8..)
//   tf32 m16n8k8:  a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4);            b0 (k t, n g),   b1 (k t+4)
// ldmatrix.x4 lane l gives the row address of matrix l/8, row l%8; in
// chunks both types address alike (a k-step is two chunks of K).
template <typename T, bool KC>
__device__ __forceinline__ void frags_a(unsigned (&a)[4][4], unsigned s, int ks, int wm, int lane) {
    typedef Tile<T, KC> L;
    const int j = lane >> 3, l8 = lane & 7;
    if (KC) {
        // matrices: (m 0-7, k-chunk 0), (m 8-15, 0), (m 0-7, 1), (m 8-15, 1)
        const int r = wm * 64 + (j & 1) * 8 + l8;
        const int c = ks * 2 + (j >> 1);
        const unsigned at = s + r * ROW_BYTES + ((c ^ ((r >> 1) & 3)) << 4);
#pragma unroll
        for (int mi = 0; mi < 4; ++mi) ldsm4(at + mi * 16 * ROW_BYTES, a[mi][0], a[mi][1], a[mi][2], a[mi][3]);
    } else if (sizeof(T) == 2) {
        // .trans matrices: (k 0-7, m 0-7), (k 0-7, m 8-15), (k 8-15, m 0-7), (k 8-15, m 8-15)
        const int k = ks * 16 + (j >> 1) * 8 + l8;
#pragma unroll
        for (int mi = 0; mi < 4; ++mi) {
            const int c = wm * 8 + mi * 2 + (j & 1);
            ldsm4t(s + k * L::ROWB + ((c ^ L::swz_rc(k)) << 4), a[mi][0], a[mi][1], a[mi][2], a[mi][3]);
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

template <typename T, bool KC>
__device__ __forceinline__ void frags_b(unsigned (&b)[8][2], unsigned s, int ks, int wn, int lane) {
    typedef Tile<T, KC> L;
    const int j = lane >> 3, l8 = lane & 7;
    if (KC) {
        // matrices: (n 0-7, chunk 0), (n 0-7, 1), (n 8-15, 0), (n 8-15, 1)
        const int r = wn * 64 + (j >> 1) * 8 + l8;
        const int c = ks * 2 + (j & 1);
        const unsigned at = s + r * ROW_BYTES + ((c ^ ((r >> 1) & 3)) << 4);
#pragma unroll
        for (int p = 0; p < 4; ++p) ldsm4(at + p * 16 * ROW_BYTES, b[2 * p][0], b[2 * p][1], b[2 * p + 1][0], b[2 * p + 1][1]);
    } else if (sizeof(T) == 2) {
        // .trans matrices: (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15)
        const int k = ks * 16 + (j & 1) * 8 + l8;
#pragma unroll
        for (int p = 0; p < 4; ++p) {
            const int c = wn * 8 + p * 2 + (j >> 1);
            ldsm4t(s + k * L::ROWB + ((c ^ L::swz_rc(k)) << 4), b[2 * p][0], b[2 * p][1], b[2 * p + 1][0],
                   b[2 * p + 1][1]);
        }
    } else {
        const int g = lane >> 2, t = lane & 3;
        const int k = ks * 8 + t;
#pragma unroll
        for (int ni = 0; ni < 8; ++ni) {
            const int n = wn * 64 + ni * 8 + g;
            b[ni][0] = lds1(s + L::elem_rc(n, k));
            b[ni][1] = lds1(s + L::elem_rc(n, k + 4));
        }
    }
    if (sizeof(T) == 4) {
#pragma unroll
        for (int ni = 0; ni < 8; ++ni) {
            b[ni][0] = tf32(b[ni][0]);
            b[ni][1] = tf32(b[ni][1]);
        }
    }
}

__device__ __forceinline__ float to_float(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(float v) { return v; }

// store2 writes the outputs (row, col) and (row, col+1) of C, those inside
// Nc; pair says the two may be written as one aligned word.
__device__ __forceinline__ void store2(bf16* c, int col, int Nc, bool pair, float v0, float v1) {
    if (pair && col + 1 < Nc) {
        *reinterpret_cast<__nv_bfloat162*>(c) = __floats2bfloat162_rn(v0, v1);
    } else {
        if (col < Nc) c[0] = __float2bfloat16_rn(v0);
        if (col + 1 < Nc) c[1] = __float2bfloat16_rn(v1);
    }
}
__device__ __forceinline__ void store2(float* c, int col, int Nc, bool pair, float v0, float v1) {
    if (pair && col + 1 < Nc) {
        *reinterpret_cast<float2*>(c) = make_float2(v0, v1);
    } else {
        if (col < Nc) c[0] = v0;
        if (col + 1 < Nc) c[1] = v1;
    }
}

// gemm computes one BM×BN tile of C(M,Nc) = A(M,K)·B(K,Nc) (+ bias(Nc)) over
// k in [k0, kend), C with row stride ldc. A_KC: A is (M,K) with row stride
// lda, else (K,M); B_KC: B is (Nc,K) with row stride ldb, else (K,Nc). A
// SPLIT block (the weight gradient's slice) hands its partial tile to the
// split epilogue instead of storing it.
template <typename T, bool A_KC, bool B_KC, bool SPLIT>
__device__ __forceinline__ void gemm(T* __restrict__ Cm, const T* __restrict__ A, const T* __restrict__ B,
                                     const T* __restrict__ bias, int M, int Nc, int lda, int ldb, int ldc, int k0,
                                     int kend, const Split& sp, unsigned char* smem) {
    if (M <= 0 || Nc <= 0) return;
    const int BK = Elem<T>::BK; // a compile-time constant
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 1, wn = warp & 1;

    // Tile placement in grouped order (GROUP_M).
    const int tiles_m = (M + BM - 1) / BM, tiles_n = (Nc + BN - 1) / BN;
    const int per_group = GROUP_M * tiles_n;
    const int block = blockIdx.x;
    const int first_m = (block / per_group) * GROUP_M;
    const int gsize = min(tiles_m - first_m, GROUP_M);
    const int in_group = block % per_group;
    const int m0 = (first_m + in_group % gsize) * BM;
    const int n0 = (in_group / gsize) * BN;

    Operand<T, A_KC> a;
    a.init(A, lda, M, m0, kend);
    Operand<T, B_KC> b;
    b.init(B, ldb, Nc, n0, kend);

    // Stage s: A at base + s·2·TILE_BYTES, B TILE_BYTES after it.
    const unsigned base = smem_addr(smem);

    float acc[4][8][4];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 8; ++ni)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[mi][ni][q] = 0.0f;

    const int stages = kend > k0 ? (kend - k0 + BK - 1) / BK : 0;
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < stages) {
            a.load(base + s * 2 * TILE_BYTES, k0 + s * BK, tid);
            b.load(base + s * 2 * TILE_BYTES + TILE_BYTES, k0 + s * BK, tid);
        }
        cp_async_commit();
    }

    // The pipeline: at iteration it, stage it has landed (wait_group leaves
    // the STAGES−2 younger groups in flight) and the barrier publishes it and
    // retires every read of the buffer the next load overwrites (the one
    // computed on at it−1). One group is committed every iteration, empty
    // or not, so that the count stays exact.
    int cur = 0, nxt = STAGES - 1;
    for (int it = 0; it < stages; ++it) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        if (it + STAGES - 1 < stages) {
            const int kn = k0 + (it + STAGES - 1) * BK;
            a.load(base + nxt * 2 * TILE_BYTES, kn, tid);
            b.load(base + nxt * 2 * TILE_BYTES + TILE_BYTES, kn, tid);
        }
        cp_async_commit();
        const unsigned sa = base + cur * 2 * TILE_BYTES, sb = sa + TILE_BYTES;
#pragma unroll
        for (int ks = 0; ks < 2; ++ks) {
            unsigned af[4][4], bfr[8][2];
            frags_a<T, A_KC>(af, sa, ks, wm, lane);
            frags_b<T, B_KC>(bfr, sb, ks, wn, lane);
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                for (int ni = 0; ni < 8; ++ni) mma_k(acc[mi][ni], af[mi], bfr[ni], T());
        }
        cur = cur == STAGES - 1 ? 0 : cur + 1;
        nxt = nxt == STAGES - 1 ? 0 : nxt + 1;
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
            for (int ni = 0; ni < 8; ++ni)
                stg4(mine + (mi * 8 + ni) * 4 * THREADS,
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
            for (int ni = 0; ni < 8; ++ni)
#pragma unroll
                for (int q = 0; q < 4; ++q) acc[mi][ni][q] = 0.0f;
        for (int s = 0; s < sp.splits; ++s) {
            const float* ps = first + (size_t)s * slice_stride;
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                for (int ni = 0; ni < 8; ++ni) {
                    const float4 v = ldcg4(ps + (mi * 8 + ni) * 4 * THREADS);
                    acc[mi][ni][0] += v.x;
                    acc[mi][ni][1] += v.y;
                    acc[mi][ni][2] += v.z;
                    acc[mi][ni][3] += v.w;
                }
        }
    }

    // Epilogue: add the bias in fp32, round once, store the pairs a thread
    // owns (rows g and g+8 of each m16 tile, columns 2t, 2t+1 of each n8).
    const int g = lane >> 2, t = lane & 3;
    const bool pair = ldc % 2 == 0 && (reinterpret_cast<unsigned long long>(Cm) % (2 * sizeof(T))) == 0;
    float bv[8][2];
#pragma unroll
    for (int ni = 0; ni < 8; ++ni) {
        const int col = n0 + wn * 64 + ni * 8 + 2 * t;
        bv[ni][0] = (bias != nullptr && col < Nc) ? to_float(bias[col]) : 0.0f;
        bv[ni][1] = (bias != nullptr && col + 1 < Nc) ? to_float(bias[col + 1]) : 0.0f;
    }
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = m0 + wm * 64 + mi * 16 + h * 8 + g;
            if (row >= M) continue;
            T* crow = Cm + (size_t)row * ldc;
#pragma unroll
            for (int ni = 0; ni < 8; ++ni) {
                const int col = n0 + wn * 64 + ni * 8 + 2 * t;
                if (col >= Nc) continue;
                store2(crow + col, col, Nc, pair, acc[mi][ni][2 * h] + bv[ni][0], acc[mi][ni][2 * h + 1] + bv[ni][1]);
            }
        }
}

__device__ __forceinline__ Split unsplit() { return Split{nullptr, nullptr, 1}; }

// The entries of one element type. Launch: grid (tiles, 1) or, for a split
// weight gradient, (tiles, splits); block THREADS; SMEM_BYTES of dynamic
// shared memory.
template <typename T>
__device__ __forceinline__ void forward(T* out, const T* inp, const T* w, const T* bias, int N, int C, int OC, int ld) {
    extern __shared__ __align__(128) unsigned char smem[];
    gemm<T, true, true, false>(out, inp, w, bias, N, OC, C, C, ld, 0, C, unsplit(), smem);
}

template <typename T>
__device__ __forceinline__ void backward_input(T* dinp, const T* dout, const T* w, int N, int C, int OC, int ld) {
    extern __shared__ __align__(128) unsigned char smem[];
    gemm<T, true, false, false>(dinp, dout, w, nullptr, N, C, ld, C, C, 0, OC, unsplit(), smem);
}

// backward_weight: block (x, y) sums rows [y·slice_k, min((y+1)·slice_k, N))
// of tile x; slice_k is a multiple of both types' BK (the launcher's
// gemmplan.MMAWeightGrad). splits = 1 is the plain GEMM and touches neither
// partials nor counters (they may be null).
template <typename T>
__device__ __forceinline__ void backward_weight(T* dw, const T* dout, const T* inp, float* partials, int* counters,
                                                int N, int C, int OC, int ld, int splits, int slice_k) {
    extern __shared__ __align__(128) unsigned char smem[];
    const Split sp{partials, counters, splits};
    if (splits > 1) {
        const int k0 = blockIdx.y * slice_k;
        gemm<T, false, false, true>(dw, dout, inp, nullptr, OC, C, ld, C, C, k0, min(k0 + slice_k, N), sp, smem);
    } else {
        gemm<T, false, false, false>(dw, dout, inp, nullptr, OC, C, ld, C, C, 0, N, sp, smem);
    }
}

} // namespace mma

using namespace mma;

extern "C" __global__ void __launch_bounds__(THREADS, 2)
    matmul_forward_bf16(bf16* out, const bf16* inp, const bf16* w, const bf16* bias, int N, int C, int OC, int ld) {
    forward<bf16>(out, inp, w, bias, N, C, OC, ld);
}

extern "C" __global__ void __launch_bounds__(THREADS, 2)
    matmul_forward_tf32(float* out, const float* inp, const float* w, const float* bias, int N, int C, int OC, int ld) {
    forward<float>(out, inp, w, bias, N, C, OC, ld);
}

extern "C" __global__ void __launch_bounds__(THREADS, 2)
    matmul_backward_input_bf16(bf16* dinp, const bf16* dout, const bf16* w, int N, int C, int OC, int ld) {
    backward_input<bf16>(dinp, dout, w, N, C, OC, ld);
}

extern "C" __global__ void __launch_bounds__(THREADS, 2)
    matmul_backward_input_tf32(float* dinp, const float* dout, const float* w, int N, int C, int OC, int ld) {
    backward_input<float>(dinp, dout, w, N, C, OC, ld);
}

extern "C" __global__ void __launch_bounds__(THREADS, 2)
    matmul_backward_weight_bf16(bf16* dw, const bf16* dout, const bf16* inp, float* partials, int* counters, int N,
                                int C, int OC, int ld, int splits, int slice_k) {
    backward_weight<bf16>(dw, dout, inp, partials, counters, N, C, OC, ld, splits, slice_k);
}

extern "C" __global__ void __launch_bounds__(THREADS, 2)
    matmul_backward_weight_tf32(float* dw, const float* dout, const float* inp, float* partials, int* counters, int N,
                                int C, int OC, int ld, int splits, int slice_k) {
    backward_weight<float>(dw, dout, inp, partials, counters, N, C, OC, ld, splits, slice_k);
}

// bias_backward_bf16: dbias(OC) = Σ_n dout(n*ld + oc), bf16 in and out, fp32
// sums. Block (BIAS_COLS/8, BIAS_ROWS): thread (x, y) owns the 8 columns
// blockIdx.x·BIAS_COLS + 8x.. (one 16-byte load a row where the row allows)
// and sums rows y, y+BIAS_ROWS, ... into two accumulators (alternate rows,
// for two loads in flight), added at the end; the BIAS_ROWS partials of a
// column are then added by a fixed tree in shared memory and rounded once.
// The order depends only on N: bitwise reproducible. Launch: grid
// ceil(OC/BIAS_COLS), block (BIAS_COLS/8, BIAS_ROWS).
extern "C" __global__ void __launch_bounds__(BIAS_COLS / 8 * BIAS_ROWS)
    bias_backward_bf16(bf16* dbias, const bf16* dout, int N, int OC, int ld) {
    __shared__ float part[BIAS_ROWS][BIAS_COLS];
    const int x = threadIdx.x, y = threadIdx.y;
    const int col0 = blockIdx.x * BIAS_COLS + x * 8;
    const bool vec = aligned16(dout) && ld % 8 == 0 && col0 + 8 <= OC;
    float s[8], u[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j] = u[j] = 0.0f;
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
        int n = y;
        for (; n + BIAS_ROWS < N; n += 2 * BIAS_ROWS) {
            add8(s, n);
            add8(u, n + BIAS_ROWS);
        }
        if (n < N) add8(s, n);
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) part[y][x * 8 + j] = s[j] + u[j];
    __syncthreads();
#pragma unroll
    for (int h = BIAS_ROWS / 2; h > 0; h /= 2) {
        if (y < h) {
#pragma unroll
            for (int j = 0; j < 8; ++j) part[y][x * 8 + j] += part[y + h][x * 8 + j];
        }
        __syncthreads();
    }
    if (y == 0) {
#pragma unroll
        for (int j = 0; j < 8; ++j)
            if (col0 + j < OC) dbias[col0 + j] = __float2bfloat16_rn(part[0][x * 8 + j]);
    }
}
