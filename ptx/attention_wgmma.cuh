// attention_wgmma.cuh: the device helpers of the Hopper attention modules,
// attention_wgmma.cu (the forward) and attention_wgmma_bwd.cu (the
// backward): TMA, mbarriers, wgmma's fences and groups, the 128-byte-
// swizzle descriptor, ex2, bf16 packing, the ring of stages and the
// persistent grid's snake, over hopper.cuh's TMA, mbarriers and wgmma
// groups; one copy here keeps the two attention modules from drifting
// apart. sm_90a only: include it from a source that says
// "// ptx-target: sm_90a".
#pragma once

#include <cuda_bf16.h>

#include "hopper.cuh"

namespace aw {

typedef __nv_bfloat16 bf16;

using namespace hopper;

template <int N>
__device__ __forceinline__ void keep_all(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) keep(r[i]);
}
// keep_frags keeps N packed A fragments of four registers each.
template <int N>
__device__ __forceinline__ void keep_frags(unsigned (&p)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) keep(p[i][j]);
}

// desc is the wgmma shared-memory descriptor of a 128-byte-swizzled tile
// whose rows of 128 bytes start at addr: the stride byte offset is the
// swizzle atom of 8 rows (1024 bytes), the leading byte offset unused
// here (K-major operands, and an MN-major one a single 64-wide box).
__device__ __forceinline__ unsigned long long desc(unsigned addr) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | (1ull << 16) | ((1024ull >> 4) << 32) | (1ull << 62);
}

// ex2 is 2^x by the special-function unit (ex2.approx: 2 ulp; 2^-inf = 0).
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// pack_bf16 rounds lo and hi to bf16 (to nearest even) and packs them, lo
// in the low half: the element of the smaller column, as the A fragment
// and memory order want.
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// Ring is a position in a ring of stages: the stage and the parity of its
// current phase. The producer and the consumers walk the same sequence.
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

// unit_at is the unit of block b in round r of a grid of G blocks: a
// snake, left to right in even rounds and right to left in odd ones, so
// that a block with a heavy unit in one round gets a light one in the next.
__device__ __forceinline__ int unit_at(int r, int G, int b) { return r * G + ((r & 1) ? G - 1 - b : b); }

} // namespace aw
