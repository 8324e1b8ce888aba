// Host versions of attention_tf32.cu's PTX wrappers (its section between
// BEGIN and END PTX WRAPPERS), for scripts/attnsim.sh. Shared memory starts
// as NaN; cp.async lands at issue or only at the wait (g_early); ldmatrix,
// mma.sync and shuffles are warp collectives whose last arriving lane does
// the work for all 32.
extern unsigned char smem[];
extern int g_early;
namespace attnsim {
struct Copy4 { unsigned dst; unsigned n; unsigned char data[16]; };
struct ThrCopies { std::vector<Copy4> cur; std::vector<std::vector<Copy4>> groups; };
extern ThrCopies copies[128];
struct Warp {
    unsigned addr[32], out[32][4];
    unsigned a[32][4], b[32][2];
    float d[32][4], f[32];
    int kind, arg; // 0 ldmatrix x4, 1 mma tf32, 2 shuffle xor
};
extern Warp warps[4];
extern long mmas, rounded_checks;
inline void apply(const Copy4& c) { memcpy(smem + c.dst, c.data, c.n); }
inline bool is_tf32(unsigned u) { return (u & 0x1fff) == 0 || (u & 0x7f800000) == 0x7f800000; }
inline void warp_compute(int w) {
    Warp& B = warps[w];
    if (B.kind == 0) {
        for (int l = 0; l < 32; ++l)
            if (B.addr[l] % 16) { fprintf(stderr, "unaligned ldmatrix row\n"); abort(); }
        for (int l = 0; l < 32; ++l)
            for (int m = 0; m < 4; ++m) memcpy(&B.out[l][m], smem + B.addr[8 * m + l / 4] + 4 * (l % 4), 4);
        return;
    }
    if (B.kind == 2) {
        float f[32];
        for (int l = 0; l < 32; ++l) f[l] = B.f[l ^ B.arg];
        for (int l = 0; l < 32; ++l) B.f[l] = f[l];
        return;
    }
    float A[16][8], Bm[8][8];
    auto chk = [](unsigned u) {
        if (!is_tf32(u)) { fprintf(stderr, "tf32 operand not rounded: %08x\n", u); abort(); }
        return __uint_as_float(u);
    };
    for (int l = 0; l < 32; ++l) {
        const int g = l / 4, t = l % 4;
        A[g][t] = chk(B.a[l][0]); A[g + 8][t] = chk(B.a[l][1]); A[g][t + 4] = chk(B.a[l][2]); A[g + 8][t + 4] = chk(B.a[l][3]);
        Bm[t][g] = chk(B.b[l][0]); Bm[t + 4][g] = chk(B.b[l][1]);
    }
    for (int l = 0; l < 32; ++l) {
        const int g = l / 4, t = l % 4;
        for (int q = 0; q < 4; ++q) {
            const int r = g + 8 * (q / 2), c = 2 * t + (q % 2);
            float s = B.d[l][q];
            for (int k = 0; k < 8; ++k) s += A[r][k] * Bm[k][c];
            B.d[l][q] = s;
        }
    }
    mmas++;
}
inline void warp_fn(int w) { warp_compute(w); }
inline int lane_() { return threadIdx.x & 31; }
inline int warp_() { return threadIdx.x >> 5; }
inline void collective() { sim_barrier(1 + warp_(), 32, warp_fn, warp_()); }
} // namespace attnsim

__device__ __forceinline__ unsigned smem_addr(const void* p) { return (unsigned)((const unsigned char*)p - smem); }
inline void cp_async_n(unsigned dst, const void* src, bool valid, unsigned n) {
    attnsim::Copy4 c; c.dst = dst; c.n = n; memset(c.data, 0, 16);
    if (dst % n) { fprintf(stderr, "unaligned cp.async dst %u\n", dst); abort(); }
    if (valid) {
        if ((reinterpret_cast<uintptr_t>(src) % n)) { fprintf(stderr, "unaligned cp.async src\n"); abort(); }
        memcpy(c.data, src, n);
    }
    if (g_early) attnsim::apply(c); else attnsim::copies[threadIdx.x].cur.push_back(c);
}
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, bool valid) { cp_async_n(dst, src, valid, 16); }
__device__ __forceinline__ void cp_async4(unsigned dst, const void* src, bool valid) { cp_async_n(dst, src, valid, 4); }
__device__ __forceinline__ void cp_async_commit() {
    auto& t = attnsim::copies[threadIdx.x];
    t.groups.push_back(t.cur); t.cur.clear();
}
__device__ __forceinline__ void cp_async_wait_all() {
    auto& t = attnsim::copies[threadIdx.x];
    for (auto& g : t.groups) for (auto& c : g) attnsim::apply(c);
    t.groups.clear();
}
__device__ __forceinline__ void ldsm_x4(unsigned (&r)[4], unsigned addr) {
    auto& B = attnsim::warps[attnsim::warp_()];
    B.kind = 0; B.addr[attnsim::lane_()] = addr;
    attnsim::collective();
    for (int i = 0; i < 4; ++i) r[i] = B.out[attnsim::lane_()][i];
}
__device__ __forceinline__ unsigned lds32(unsigned a) { if (a % 4) abort(); unsigned v; memcpy(&v, smem + a, 4); return v; }
__device__ __forceinline__ float4 lds128(unsigned a) { if (a % 16) abort(); float4 v; memcpy(&v, smem + a, 16); return v; }
__device__ __forceinline__ void sts128(unsigned a, unsigned x, unsigned y, unsigned z, unsigned w) {
    if (a % 16) abort();
    unsigned v[4] = {x, y, z, w}; memcpy(smem + a, v, 16);
}
__device__ __forceinline__ void mma1688(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    auto& B = attnsim::warps[attnsim::warp_()];
    const int l = attnsim::lane_();
    B.kind = 1;
    for (int i = 0; i < 4; ++i) { B.a[l][i] = a[i]; B.d[l][i] = d[i]; }
    B.b[l][0] = b0; B.b[l][1] = b1;
    attnsim::collective();
    for (int i = 0; i < 4; ++i) d[i] = B.d[l][i];
}
// cvt.rna.tf32.f32: to nearest, ties away from zero; NaN and Inf kept.
__device__ __forceinline__ unsigned to_tf32(float x) {
    unsigned u = __float_as_uint(x);
    if ((u & 0x7f800000) != 0x7f800000) u = (u + 0x1000) & ~0x1fffu;
    return u;
}
__device__ __forceinline__ float ex2(float x) { return exp2f(x); }
inline float __shfl_xor_sync(unsigned, float v, int m) {
    auto& B = attnsim::warps[attnsim::warp_()];
    B.kind = 2; B.arg = m; B.f[attnsim::lane_()] = v;
    attnsim::collective();
    return B.f[attnsim::lane_()];
}
