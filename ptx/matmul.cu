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
// tile choice.
//
// A product whose output has few tiles next to a long K (the weight
// gradient's K is the N rows: 384×128 over 512 rows in the tiny model, 12
// tiles for 132 SMs; the tiny model's 512×128 outputs over K = 512 are 16
// tiles) may be split by the launcher into S slices of K (split-K, grid
// tiles × S), in any of the three layouts: each block runs its tile's chain
// over one slice into a partial tile in a scratch buffer, and the last block
// to finish a tile, elected with an integer counter, adds the S partials in
// slice order (then the bias, in the forward) and writes C. See
// split_epilogue for why that is deterministic. S = 1 is the plain path:
// one block per tile, the whole chain, C written directly.
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
//
// The tile code takes the pad as a template argument (P, PAD by default)
// so that matmul_forward_nopad (--flaw=bank-conflicts) can build the same
// GEMM with P = 0: rows of BM floats, both k-quads of a store in the same
// 16 banks, a 2-way conflict on every transposing store. The pad changes
// only where a value sits in shared memory, never which values are
// multiplied or in what order, so both entries give the same bits.
constexpr int PAD = 4;

// FINE_BK is the K depth of the fine tile's one shared stage (gemm_fine):
// 32, so that a block waits on global memory once per 32 k instead of once
// per 8.
constexpr int FINE_BK = 32;

// The static shared memory of every entry is the larger of the tiles'
// needs: 2 stages × (A + B) × BK × (128 + PAD) floats = 16896 bytes for
// the 128×128 tile, 1 stage × (A + B) × FINE_BK × (64 + PAD) = 17408
// bytes for the fine tile.
constexpr int MAX_TILE = 128;
constexpr int FINE_TILE = 64;
constexpr int SMEM_FLOATS = 2 * 2 * BK * (MAX_TILE + PAD) > 2 * FINE_BK * (FINE_TILE + PAD)
                                ? 2 * 2 * BK * (MAX_TILE + PAD)
                                : 2 * FINE_BK * (FINE_TILE + PAD);

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
constexpr int TILE_64x64_FINE = 3; // gemm_fine: 256 threads of 4×4 outputs
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

// The split-K epilogue's memory operations, inline PTX for the same
// reason, and because the CUDA headers' atomicAdd has internal linkage.
//
// ldcg4 reads a partial tile through L2 only (ld.global.cg), predicated
// like ldg4. The partials are written by other blocks of the same launch,
// so the read-only path (ld.global.nc) is not allowed, and skipping L1
// keeps a stale line out of the question. volatile keeps the reads after
// the barrier that publishes the election.
__device__ __forceinline__ float4 ldcg4(const float* p, bool pred) {
    float4 v;
    asm volatile("{\n\t"
                 ".reg .pred q;\n\t"
                 "setp.ne.b32 q, %5, 0;\n\t"
                 "mov.f32 %0, 0f00000000;\n\t"
                 "mov.f32 %1, 0f00000000;\n\t"
                 "mov.f32 %2, 0f00000000;\n\t"
                 "mov.f32 %3, 0f00000000;\n\t"
                 "@q ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];\n\t"
                 "}"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "l"(p), "r"((int)pred)
                 : "memory");
    return v;
}

// fence_gpu is __threadfence(): this thread's earlier writes are visible
// to the whole GPU before its later ones.
__device__ __forceinline__ void fence_gpu() { asm volatile("membar.gl;" ::: "memory"); }

// atom_add returns *p and adds v to it, atomically (atomicAdd).
__device__ __forceinline__ unsigned atom_add(int* p, unsigned v) {
    unsigned old;
    asm volatile("atom.global.add.u32 %0, [%1], %2;" : "=r"(old) : "l"(p), "r"(v) : "memory");
    return old;
}

__device__ __forceinline__ void stg_u32(int* p, unsigned v) {
    asm volatile("st.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ void sts_u32(unsigned addr, unsigned v) {
    asm volatile("st.shared.u32 [%0], %1;" ::"r"(addr), "r"(v) : "memory");
}

__device__ __forceinline__ unsigned lds_u32(unsigned addr) {
    unsigned v;
    asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(addr) : "memory");
    return v;
}

// Split is a product's split-K: the slice count and the scratch. splits =
// 1 (a product the launcher does not split) stores the tile directly and
// touches neither buffer.
struct Split {
    float* partials; // [splits][gridDim.x] tiles of BM·BN floats
    int* counters;   // [gridDim.x], zero between launches
    int splits;
};

// Operand is one input of the GEMM: a BR×D tile (BR = BM for A, BN for B;
// D the stage's K depth, BK or FINE_BK) staged as s[k][r] (r contiguous)
// so that a thread's fragment is float4 reads. KCONTIG says the global
// matrix is row-major R×K (k contiguous, element (r,k) at p[r*ld + k]);
// otherwise it is K×R (element (r,k) at p[k*ld + r]).
//
// Each thread moves LOADS float4 groups a stage. The BR·D/4 groups of a
// stage are numbered g = tid + i·THREADS, with Q = D/4 k-quads a row:
//   K-contiguous: r = g/Q, k = (g%Q)·4 .. +3 — a thread reads 4 k's of one
//     row and stores them transposed, s[k+j][r]; at D = 8 the 32 lanes of
//     a warp cover 16 rows × 2 k-quads, which with the PAD land in 32
//     distinct banks (with P = 0, in 16 banks twice: a 2-way conflict).
//     At FINE_BK they cover 4 rows × 8 k-quads, a 4-way conflict on stores
//     that come once per 32 k.
//   R-contiguous: k = g/(BR/4), r = (g%(BR/4))·4 .. +3 — a float4 read and a
//     float4 store, a warp covering 128 consecutive floats of one k row.
template <int BR, int THREADS, bool KCONTIG, int P, int D = BK>
struct Operand {
    static constexpr int Q = D / 4; // k-quads in a row of the stage
    static constexpr int LOADS = BR * Q / THREADS;
    static constexpr int LD = BR + P; // shared row length
    static_assert(D % 4 == 0 && LOADS >= 1 && LOADS * THREADS == BR * Q, "tile and thread count do not match");

    // Slot i covers the global row (K-contiguous) or k (R-contiguous) SLOT
    // rows after slot 0's, so one offset locates every slot.
    static constexpr int SLOT = KCONTIG ? THREADS / Q : THREADS / (BR / 4);
    static_assert(KCONTIG ? THREADS % Q == 0 : THREADS % (BR / 4) == 0, "slots must be whole rows apart");

    // Addressing is 32-bit element offsets from one base pointer (buffers
    // hold < 2^31 elements), to leave the registers to the accumulators.
    // Unsigned, so that running past the end after the last stage wraps
    // harmlessly instead of overflowing: out-of-range offsets are never
    // dereferenced.
    const float* p;
    unsigned off;        // slot 0's first float in the current stage
    unsigned slot_step;  // SLOT·ld
    unsigned stage_step; // K-contiguous: D; R-contiguous: D·ld
    int idx;             // contiguous coordinate of slot 0: k (moves) or r (fixed)
    int fix;             // the other one: row r (fixed) or k (moves)
    int R, K;
    bool vec;
    float4 reg[LOADS]; // the stage in flight between fetch and stash

    // init starts the operand at row (or column) r0 of the tile and at k =
    // k0 (a split-K slice's start, a multiple of BK; 0 unsplit). K_ is where
    // k ends, the slice's end; ldk is the K-contiguous matrix's row length,
    // the whole K (the matrices are packed: a row is the contiguous extent).
    __device__ __forceinline__ void init(const float* p_, int R_, int K_, int r0, int k0, int ldk, int tid) {
        const int ld = KCONTIG ? ldk : R_;
        p = p_;
        R = R_;
        K = K_;
        vec = aligned16(p_, ld);
        if (KCONTIG) {
            fix = r0 + tid / Q;
            idx = k0 + (tid % Q) * 4;
        } else {
            fix = k0 + tid / (BR / 4);
            idx = r0 + (tid % (BR / 4)) * 4;
        }
        off = (unsigned)fix * (unsigned)ld + (unsigned)idx;
        slot_step = (unsigned)SLOT * (unsigned)ld;
        stage_step = KCONTIG ? D : (unsigned)D * (unsigned)ld;
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
            idx += D;
        } else {
            fix += D;
        }
    }

    // stash writes the fetched registers into the shared stage at byte
    // address s.
    __device__ __forceinline__ void stash(unsigned s, int tid) const {
#pragma unroll
        for (int i = 0; i < LOADS; ++i) {
            if (KCONTIG) {
                const int r = tid / Q + i * SLOT;
                const int k = (tid % Q) * 4;
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

// Place is where a thread's outputs lie: its block's tile starts at row
// m0, column n0 of C, and the thread (ty, tx) owns rows {ty·4+i,
// BM/2+ty·4+i} and columns {tx·4+j, BN/2+tx·4+j} of it (see gemm).
struct Place {
    int m0, n0, ty, tx;
};

// place locates tile `block` in grouped order (see GROUP_M) and thread tid
// in it.
template <int BM, int BN>
__device__ __forceinline__ Place tile_origin(int block, int M, int Nc) {
    const int tiles_m = (M + BM - 1) / BM;
    const int tiles_n = (Nc + BN - 1) / BN;
    const int per_group = GROUP_M * tiles_n;
    const int group = block / per_group;
    const int first_m = group * GROUP_M;
    const int group_rows = min(tiles_m - first_m, GROUP_M);
    const int in_group = block - group * per_group;
    Place pl;
    pl.m0 = (first_m + in_group % group_rows) * BM;
    pl.n0 = (in_group / group_rows) * BN;
    return pl;
}

template <int BM, int BN>
__device__ __forceinline__ Place place(int block, int tid, int M, int Nc) {
    constexpr int WARPS_N = BN / 64;
    Place pl = tile_origin<BM, BN>(block, M, Nc);
    const int lane = tid % 32, warp = tid / 32;
    pl.ty = (warp / WARPS_N) * 4 + lane / 8; // 0 .. BM/8-1
    pl.tx = (warp % WARPS_N) * 8 + lane % 8; // 0 .. BN/8-1
    return pl;
}

// ctaid_x and tid_x read blockIdx.x and threadIdx.x afresh (volatile), so
// that the split epilogue recomputes its Place after the K loop instead of
// keeping it in registers through the loop, where it would spill.
__device__ __forceinline__ int ctaid_x() {
    int v;
    asm volatile("mov.u32 %0, %%ctaid.x;" : "=r"(v));
    return v;
}

__device__ __forceinline__ int tid_x() {
    int v;
    asm volatile("mov.u32 %0, %%tid.x;" : "=r"(v));
    return v;
}

__device__ __forceinline__ int ctaid_y() {
    int v;
    asm volatile("mov.u32 %0, %%ctaid.y;" : "=r"(v));
    return v;
}

__device__ __forceinline__ int nctaid_x() {
    int v;
    asm volatile("mov.u32 %0, %%nctaid.x;" : "=r"(v));
    return v;
}

// add4 is a + b, elementwise.
__device__ __forceinline__ float4 add4(float4 a, float4 b) {
    return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

// store4 writes v[0..3] to crow[c..c+3], a row of C of length Nc: one
// float4 where vec_c and the four are all inside, else the ones inside.
__device__ __forceinline__ void store4(float* crow, int c, int Nc, bool vec_c, const float (&v)[4]) {
    if (vec_c && c + 3 < Nc) {
        stg4(crow + c, make_float4(v[0], v[1], v[2], v[3]));
    } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
            if (c + j < Nc) crow[c + j] = v[j];
    }
}

template <int BM, int BN>
__device__ __noinline__ void split_reduce(float* Cm, int M, int Nc, const float* partials, int splits,
                                          const float* bias);

// last_of_slices fences this thread's partial stores, counts the block's
// slice in the tile's counter and says, in every thread of the block,
// whether this block is the last of the tile's S slices (see
// split_epilogue). The K loop ended with a barrier, so the stages are free:
// their first word carries the election to the whole block.
__device__ __forceinline__ bool last_of_slices(const Split& sp, int tile, int tid, float* smem) {
    fence_gpu();
    const unsigned flag = smem_addr(smem);
    __syncthreads(); // every thread's partial is fenced before the count
    if (tid == 0) {
        int* counter = sp.counters + tile;
        const unsigned last = atom_add(counter, 1u) == (unsigned)(sp.splits - 1) ? 1u : 0u;
        if (last) {
            stg_u32(counter, 0u);
            fence_gpu(); // order the partials' reads after the count
        }
        sts_u32(flag, last);
    }
    __syncthreads();
    return lds_u32(flag) != 0;
}

// split_epilogue finishes one block of a split product (splits > 1;
// see gemm for the thread layout). blockIdx.x is the output tile,
// blockIdx.y the slice, and acc the tile's sum over that slice's rows.
//
// Why the result is deterministic: each block's partial is a fixed fmaf
// chain over its own slice, whatever the timing, and it goes to its own
// slot of the scratch. Each thread then fences its stores (__threadfence)
// and thread 0 increments the tile's counter; the block that finds S-1
// arrivals is the last of the S, and all S partials are visible to it (the
// CUDA threadFenceReduction pattern). That block adds the S partials in
// slice order 0, 1, ..., S-1, re-reading its own like the others, so every
// output is the same float sum whichever block comes last and in whatever
// order the others finished. The integer atomic only elects the reducer and
// adds no floats; float atomics into dW would add in arrival order, which
// changes from run to run. The reducer then sets the counter back to 0: all
// S blocks have counted, so nothing else touches it in this launch, and the
// next launch on the stream finds it zero, as the model left it once at
// allocation.
//
// Slot layout: the partial of (slice, tile) is BM·BN floats at partials +
// (slice·tiles + tile)·BM·BN, stored as the thread's 16 float4 in [q][tid]
// order (q = 2i + h: row i, column half h of the micro-tile), so that every
// store and every reducer load of a warp covers 512 contiguous bytes, and a
// reducer thread reads back exactly the outputs it owns in every slice.
//
// The reduction walks the thread's 8 rows and, for each, issues the loads
// of 8 slices at once (16 float4 in flight) before adding them in order:
// 8 rounds of L2 latency per 8 slices, in registers that the dead
// accumulators leave free.
template <int BM, int BN>
__device__ __forceinline__ void split_epilogue(float* Cm, int M, int Nc, const float (&acc)[8][8], const Split& sp,
                                               const float* bias, float* smem) {
    constexpr int THREADS = BM * BN / 64;
    constexpr int TILE = BM * BN;
    const int tid = tid_x(), tile = ctaid_x();
    const unsigned tiles = nctaid_x();
    float* slot = sp.partials + ((size_t)ctaid_y() * tiles + tile) * TILE + 4 * tid;
#pragma unroll
    for (int q = 0; q < 16; ++q) {
        const int i = q / 2, h = (q % 2) * 4;
        stg4(slot + q * 4 * THREADS, make_float4(acc[i][h], acc[i][h + 1], acc[i][h + 2], acc[i][h + 3]));
    }
    if (last_of_slices(sp, tile, tid, smem)) split_reduce<BM, BN>(Cm, M, Nc, sp.partials, sp.splits, bias);
}

// split_reduce is the last block's part of split_epilogue: C's tile is
// the sum of the S partials in slice order, plus bias(Nc) when it is not
// null (added last, as the unsplit epilogue adds it to the whole chain).
// It is a separate function
// (not inlined) so that its registers are allocated on their own: inlined
// into the six GEMM variants of matmul_backward_weight, it made ptxas
// spill in their K loops.
template <int BM, int BN>
__device__ __noinline__ void split_reduce(float* Cm, int M, int Nc, const float* partials, int splits,
                                          const float* bias) {
    constexpr int THREADS = BM * BN / 64;
    constexpr int TILE = BM * BN;
    const int tid = tid_x(), tile = ctaid_x();
    const unsigned tiles = nctaid_x();
    const Place pl = place<BM, BN>(tile, tid, M, Nc);
    const bool vec_c = aligned16(Cm, Nc);
    const float* mine = partials + (size_t)tile * TILE + 4 * tid; // slice 0's slot
    const size_t slice_stride = (size_t)tiles * TILE;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int row = pl.m0 + (i / 4) * (BM / 2) + pl.ty * 4 + i % 4;
        if (row >= M) continue;
        // v = p_0 + p_1 + ... + p_{S-1}, left to right, for the row's two
        // float4 (lo, hi).
        const float* p = mine + 2 * i * 4 * THREADS;
        float4 lo = ldcg4(p, true), hi = ldcg4(p + 4 * THREADS, true);
        for (int s0 = 1; s0 < splits; s0 += 8) {
            const float* q = p + (size_t)s0 * slice_stride;
            float4 t[8][2];
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                const bool ok = s0 + u < splits;
                t[u][0] = ldcg4(q + u * slice_stride, ok);
                t[u][1] = ldcg4(q + u * slice_stride + 4 * THREADS, ok);
            }
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                if (s0 + u < splits) {
                    lo = add4(lo, t[u][0]);
                    hi = add4(hi, t[u][1]);
                }
            }
        }
        float* crow = Cm + (size_t)row * Nc;
        float vlo[4] = {lo.x, lo.y, lo.z, lo.w};
        float vhi[4] = {hi.x, hi.y, hi.z, hi.w};
        const int clo = pl.n0 + pl.tx * 4, chi = pl.n0 + BN / 2 + pl.tx * 4;
        if (bias != nullptr) {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                if (clo + j < Nc) vlo[j] += bias[clo + j];
                if (chi + j < Nc) vhi[j] += bias[chi + j];
            }
        }
        store4(crow, clo, Nc, vec_c, vlo);
        store4(crow, chi, Nc, vec_c, vhi);
    }
}

// gemm computes one BM×BN tile of C(M,Nc) = A(M,K)·B(K,Nc) (+ bias(Nc)),
// summing over k in [k0, K): k0 is 0 except in a split-K slice, whose
// partial tile SPLIT hands to split_epilogue instead of storing it. ldk is
// the row length of a K-contiguous operand, the product's whole K.
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
template <int BM, int BN, bool TRANS_A, bool TRANS_B, bool SPLIT, int P>
__device__ __forceinline__ void gemm(float* __restrict__ Cm, const float* __restrict__ A,
                                     const float* __restrict__ B, const float* __restrict__ bias,
                                     int M, int Nc, int K, int k0, int ldk, float* smem, const Split& sp) {
    constexpr int THREADS = BM * BN / 64;
    static_assert(THREADS <= MAX_THREADS && BM <= MAX_TILE && BN <= MAX_TILE, "tile too large");
    const int tid = threadIdx.x;
    const Place pl = place<BM, BN>(blockIdx.x, tid, M, Nc);
    const int m0 = pl.m0, n0 = pl.n0, ty = pl.ty, tx = pl.tx;

    static_assert(P >= 0 && P <= PAD && P % 4 == 0, "a pad keeps rows 16-byte aligned and fits SMEM_FLOATS");
    Operand<BM, THREADS, !TRANS_A, P> a;
    a.init(A, M, K, m0, k0, ldk, tid);
    Operand<BN, THREADS, TRANS_B, P> b;
    b.init(B, Nc, K, n0, k0, ldk, tid);

    // Two stages each of A and B, as shared byte addresses: A stage s at
    // sa + s·STAGE_A, B stage s at sb + s·STAGE_B (offsets, not an array,
    // which a runtime index would put in local memory).
    constexpr unsigned STAGE_A = 4 * BK * (BM + P);
    constexpr unsigned STAGE_B = 4 * BK * (BN + P);
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

    const int stages = (K - k0 + BK - 1) / BK;
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
            const float4 a0 = lds4(as + 4 * (k * (BM + P)));
            const float4 a1 = lds4(as + 4 * (k * (BM + P) + BM / 2));
            const float4 b0 = lds4(bs + 4 * (k * (BN + P)));
            const float4 b1 = lds4(bs + 4 * (k * (BN + P) + BN / 2));
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

    // A split-K slice hands its partial tile to split_epilogue.
    if (SPLIT) {
        split_epilogue<BM, BN>(Cm, M, Nc, acc, sp, bias, smem);
        return;
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
            float v[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                v[j] = acc[i][h * 4 + j];
                if (bias != nullptr) v[j] += bv[h * 4 + j];
            }
            store4(crow, col[h * 4], Nc, vec_c, v);
        }
    }
}

// gemm_fine is gemm for products too small to fill the GPU with 8×8
// micro-tiles (tile code TILE_64x64_FINE): a 64×64 tile of 256 threads,
// each owning a 4×4 block of outputs (rows ty·4+i, columns tx·4+j; ty =
// tid/16, tx = tid%16), over one shared stage of FINE_BK = 32 k whose
// successor's global loads are in flight, in registers, while the stage is
// read. Against the 64×64 tile of gemm it has 4× the warps a tile and a
// quarter of the global round trips a k, which is what bounds a product of
// a few dozen tiles over a K of 128 to 512: there one SM holds one block,
// and gemm's two warps wait on a global load every 8 k. Every output is
// the same k-ordered fmaf chain over the slice as in gemm (tail k's are
// zeros), and a split's partials are added in the same slice order, so
// both give the same bits for the same plan.
//
// A warp is 2 ty × 16 tx: per k it reads 2 distinct float4 of A (one
// wavefront, broadcast) and 16 of B (256 contiguous bytes, two wavefronts)
// for 16 FMAs a thread.
//
// Not inlined, for the reason split_reduce is not: inlined beside gemm's
// variants, it made ptxas spill in their K loops (ptxas -v: 250-310 bytes
// an entry); apart it keeps its own registers and theirs spill nothing.
template <bool TRANS_A, bool TRANS_B, bool SPLIT, int P>
__device__ __noinline__ void gemm_fine(float* __restrict__ Cm, const float* __restrict__ A,
                                        const float* __restrict__ B, const float* __restrict__ bias, int M, int Nc,
                                        int K, int k0, int ldk, float* smem, const Split& sp) {
    constexpr int BM = FINE_TILE, BN = FINE_TILE;
    constexpr int THREADS = BM * BN / 16;
    static_assert(THREADS <= MAX_THREADS, "tile too large");
    static_assert(2 * FINE_BK * (FINE_TILE + P) <= SMEM_FLOATS, "the fine stage must fit SMEM_FLOATS");
    const int tid = threadIdx.x;
    const Place pl = tile_origin<BM, BN>(blockIdx.x, M, Nc);
    const int ty = tid / 16, tx = tid % 16;

    Operand<BM, THREADS, !TRANS_A, P, FINE_BK> a;
    a.init(A, M, K, pl.m0, k0, ldk, tid);
    Operand<BN, THREADS, TRANS_B, P, FINE_BK> b;
    b.init(B, Nc, K, pl.n0, k0, ldk, tid);

    constexpr unsigned STAGE_A = 4 * FINE_BK * (BM + P);
    const unsigned sa = smem_addr(smem);
    const unsigned sb = sa + STAGE_A;
    const unsigned fa = sa + 16u * (unsigned)ty;
    const unsigned fb = sb + 16u * (unsigned)tx;

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    const int stages = (K - k0 + FINE_BK - 1) / FINE_BK;
    a.fetch();
    b.fetch();
    // One stage: stash what is in registers, then (after the barrier) send
    // the next stage's loads out before reading this one, and end with a
    // barrier before the stage is overwritten.
    for (int st = 0; st < stages; ++st) {
        a.stash(sa, tid);
        b.stash(sb, tid);
        __syncthreads();
        if (st + 1 < stages) {
            a.fetch();
            b.fetch();
        }
#pragma unroll
        for (int k = 0; k < FINE_BK; ++k) {
            const float4 a4 = lds4(fa + 4 * (k * (BM + P)));
            const float4 b4 = lds4(fb + 4 * (k * (BN + P)));
            const float av[4] = {a4.x, a4.y, a4.z, a4.w};
            const float bv[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }

    const bool vec_c = aligned16(Cm, Nc);
    const int c0 = pl.n0 + tx * 4;
    if (SPLIT) {
        // The partial of (slice, tile) is the tile's 4096 floats at partials
        // + (slice·tiles + tile)·4096, stored as the thread's 4 float4 in
        // [i][tid] order: every store and reducer load of a warp is 512
        // contiguous bytes, and a thread reads back only its own outputs.
        const int tile = blockIdx.x;
        const size_t slice_stride = (size_t)gridDim.x * BM * BN;
        float* mine = sp.partials + (size_t)tile * BM * BN + 4 * tid;
#pragma unroll
        for (int i = 0; i < 4; ++i)
            stg4(mine + blockIdx.y * slice_stride + i * 4 * THREADS,
                 make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));
        if (!last_of_slices(sp, tile, tid, smem)) return;
        // The last block: v = p_0 + p_1 + ... + p_{S-1}, left to right, 8
        // slices' loads in flight at a time.
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float* p = mine + i * 4 * THREADS;
            float4 v = ldcg4(p, true);
            for (int s0 = 1; s0 < sp.splits; s0 += 8) {
                float4 t[8];
#pragma unroll
                for (int u = 0; u < 8; ++u) t[u] = ldcg4(p + (size_t)(s0 + u) * slice_stride, s0 + u < sp.splits);
#pragma unroll
                for (int u = 0; u < 8; ++u)
                    if (s0 + u < sp.splits) v = add4(v, t[u]);
            }
            acc[i][0] = v.x;
            acc[i][1] = v.y;
            acc[i][2] = v.z;
            acc[i][3] = v.w;
        }
    }

    // Epilogue: add the bias (after the whole sum, as gemm does) and store.
    float bv[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) bv[j] = (bias != nullptr && c0 + j < Nc) ? bias[c0 + j] : 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int row = pl.m0 + ty * 4 + i;
        if (row >= M) continue;
        float v[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            v[j] = acc[i][j];
            if (bias != nullptr) v[j] += bv[j];
        }
        store4(Cm + (size_t)row * Nc, c0, Nc, vec_c, v);
    }
}

// dispatch runs gemm with the tile the launcher chose. The branch is uniform
// over the grid; every variant shares the entry's static shared memory.
// SPLIT (sp.splits > 1) is a template argument, so that the plain path
// keeps no split state live through its K loop. P is the shared rows' pad
// (PAD, or 0 for matmul_forward_nopad).
template <bool TRANS_A, bool TRANS_B, bool SPLIT, int P = PAD>
__device__ __forceinline__ void dispatch(int tile, float* Cm, const float* A, const float* B, const float* bias,
                                         int M, int Nc, int K, int k0, int ldk, float* smem, const Split& sp) {
    if (tile == TILE_128x128) {
        gemm<128, 128, TRANS_A, TRANS_B, SPLIT, P>(Cm, A, B, bias, M, Nc, K, k0, ldk, smem, sp);
    } else if (tile == TILE_64x64_FINE) {
        gemm_fine<TRANS_A, TRANS_B, SPLIT, P>(Cm, A, B, bias, M, Nc, K, k0, ldk, smem, sp);
    } else if (tile == TILE_128x64) {
        gemm<128, 64, TRANS_A, TRANS_B, SPLIT, P>(Cm, A, B, bias, M, Nc, K, k0, ldk, smem, sp);
    } else {
        gemm<64, 64, TRANS_A, TRANS_B, SPLIT, P>(Cm, A, B, bias, M, Nc, K, k0, ldk, smem, sp);
    }
}

// product runs C(M,Nc) = A·B (+ bias) over K in splits slices of slice_k
// (grid y is the slice), or unsplit (splits = 1: the whole K, partials
// and counters untouched and possibly null). The slice is k in [k0, k_end):
// the GEMM starts its operands' offsets there rather than offsetting the
// pointers, which would hold two more 64-bit registers through the K loop
// (and spill). splits > 1 needs partials of splits·tiles·BM·BN floats and
// counters of tiles ints, zero on entry and left zero (split_epilogue).
// Either way the sum's order is fixed: deterministic.
template <bool TRANS_A, bool TRANS_B, int P = PAD>
__device__ __forceinline__ void product(int tile, float* Cm, const float* A, const float* B, const float* bias,
                                        int M, int Nc, int K, float* partials, int* counters, int splits,
                                        int slice_k, float* smem) {
    const Split sp{partials, counters, splits};
    if (splits > 1) {
        const int k0 = blockIdx.y * slice_k;
        const int k_end = min(k0 + slice_k, K);
        dispatch<TRANS_A, TRANS_B, true, P>(tile, Cm, A, B, bias, M, Nc, k_end, k0, K, smem, sp);
    } else {
        dispatch<TRANS_A, TRANS_B, false, P>(tile, Cm, A, B, bias, M, Nc, K, 0, K, smem, sp);
    }
}

} // namespace matmul

using namespace matmul;

// Every product's launch: grid (tiles, splits), block = tile threads (see
// matmul.go and gemmplan). splits = 1 (slice_k = K) is the plain GEMM, one
// block per tile over the whole K; splits > 1 is split-K through partials
// and counters (product). The sum's order is fixed by the plan either way.

// matmul_forward: out(N,OC) = inp(N,C)·w(OC,C)ᵀ + bias(OC); bias may be
// null. K is C.
extern "C" __global__ void __launch_bounds__(MAX_THREADS, MIN_BLOCKS)
    matmul_forward(float* out, const float* inp, const float* w, const float* bias, float* partials, int* counters,
                   int N, int C, int OC, int tile, int splits, int slice_k) {
    __shared__ __align__(16) float smem[SMEM_FLOATS];
    product<false, true>(tile, out, inp, w, bias, N, OC, C, partials, counters, splits, slice_k, smem);
}

// matmul_forward_nopad (--flaw=bank-conflicts): matmul_forward with
// unpadded shared-memory rows, so that every transposing store of its two
// K-contiguous operands is a 2-way bank conflict (ncu's shared-store bank
// conflicts, the SharedMemoryConflicts rule). Same arguments, launch and
// bits as matmul_forward.
extern "C" __global__ void __launch_bounds__(MAX_THREADS, MIN_BLOCKS)
    matmul_forward_nopad(float* out, const float* inp, const float* w, const float* bias, float* partials,
                         int* counters, int N, int C, int OC, int tile, int splits, int slice_k) {
    __shared__ __align__(16) float smem[SMEM_FLOATS];
    product<false, true, 0>(tile, out, inp, w, bias, N, OC, C, partials, counters, splits, slice_k, smem);
}

// matmul_backward_input: dinp(N,C) = dout(N,OC)·w(OC,C), overwritten. K is
// OC.
extern "C" __global__ void __launch_bounds__(MAX_THREADS, MIN_BLOCKS)
    matmul_backward_input(float* dinp, const float* dout, const float* w, float* partials, int* counters, int N,
                          int C, int OC, int tile, int splits, int slice_k) {
    __shared__ __align__(16) float smem[SMEM_FLOATS];
    product<false, false>(tile, dinp, dout, w, nullptr, N, C, OC, partials, counters, splits, slice_k, smem);
}

// matmul_backward_weight: dw(OC,C) = dout(N,OC)ᵀ·inp(N,C), overwritten. The
// sum over the N rows is the GEMM's K loop.
extern "C" __global__ void __launch_bounds__(MAX_THREADS, MIN_BLOCKS)
    matmul_backward_weight(float* dw, const float* dout, const float* inp, float* partials, int* counters, int N,
                           int C, int OC, int tile, int splits, int slice_k) {
    __shared__ __align__(16) float smem[SMEM_FLOATS];
    product<true, false>(tile, dw, dout, inp, nullptr, OC, C, N, partials, counters, splits, slice_k, smem);
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
