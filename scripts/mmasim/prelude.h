// Host emulation prelude for matmul_mma.cu and attention_tf32.cu: cooperative "threads" (ucontext), warp collectives.
#include <cstdint>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>
#include <ucontext.h>
#define __device__
#define __host__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__
using std::min; using std::max;
struct dim3 { unsigned x = 0, y = 0, z = 0; };
struct uint4 { unsigned x, y, z, w; };
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
inline float2 make_float2(float a, float b) { return {a, b}; }
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
struct __nv_bfloat16 { unsigned short x; };
struct __nv_bfloat162 { __nv_bfloat16 x, y; };
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffff) > 0x7f800000) return {(unsigned short)((u >> 16) | 0x40)};
    u += 0x7fff + ((u >> 16) & 1);
    return {(unsigned short)(u >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 b) { return __uint_as_float((unsigned)b.x << 16); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)}; }

struct Copy { unsigned dst; unsigned char data[16]; };
struct Thr {
    ucontext_t ctx;
    dim3 tidx;
    bool done = false;
    std::vector<Copy> cur;
    std::vector<std::vector<Copy>> groups;
};
extern Thr* g_cur;
extern dim3 blockIdx, gridDim;
#define threadIdx (g_cur->tidx)
extern int g_early; // cp.async lands at issue (1) or at the wait (0)
void sim_yield();
// barrier: id 0 = block, 1+w = warp w. The last arriver runs fn (if any) before releasing.
void sim_barrier(int id, int count, void (*fn)(int), int arg);
extern int g_block_threads; // the block size the driver runs
inline void __syncthreads() { sim_barrier(0, g_block_threads, nullptr, 0); }
namespace mma { extern unsigned char smem[]; struct WarpBox; }
