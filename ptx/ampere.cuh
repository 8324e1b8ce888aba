// ampere.cuh: the PTX wrappers the sm_80 tier's attention modules share
// (attention_mma.cu for bf16, attention_tf32.cu for TF32): shared-memory
// addresses, cp.async with its groups, ldmatrix, and the special-function
// unit's 2^x. One copy, so that the two cannot drift apart; each module
// keeps only the wrappers of its own element type (its mma, its packs and
// conversions). volatile keeps the copies, waits and shared loads in
// program order with each other and with the barriers; ex2 is pure and
// left to the scheduler. scripts/attnsim.sh replaces attention_tf32.cu's
// wrapper section, this include with it, by host emulations.
#pragma once

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// cp_async16 copies 16 bytes from global src to shared dst, or writes 16
// zero bytes without reading src when valid is false.
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, bool valid) {
    const int bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}

// cp_async4 is cp_async16 for one 4-byte word (lse and d entries).
__device__ __forceinline__ void cp_async4(unsigned dst, const void* src, bool valid) {
    const int bytes = valid ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// cp_async_wait_all waits for every copy this thread issued; the barrier
// after it makes every thread's copies visible to the block.
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// ldsm_x4 loads four 8×8 matrices of b16 (8 rows of 16 bytes); lanes
// 8i..8i+7 give the row addresses of matrix i, and register i of lane 4g+t
// holds bytes 4t..4t+3 of matrix i's row g: two bf16 (columns 2t, 2t+1) or
// one fp32 (column t).
__device__ __forceinline__ void ldsm_x4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// ex2 is 2^x by the special-function unit (ex2.approx: 2 ulp; 2^-inf = 0).
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
