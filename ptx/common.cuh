// common.cuh: small device helpers shared by gpubench's kernels.
//
// Every kernel is compiled to PTX for compute_70 (see the Makefile's ptx
// target), so only features of Volta and later are used here.
#pragma once

#define WARP_SIZE 32

// warp_sum returns the sum of v over the 32 lanes of the calling warp to
// every lane. The butterfly order is fixed, so the result is deterministic.
__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        v += __shfl_xor_sync(0xffffffff, v, offset);
    }
    return v;
}

// warp_max returns the maximum of v over the warp to every lane.
__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, offset));
    }
    return v;
}

// block_sum returns the sum of v over the whole block to every thread. The
// block must have a multiple of 32 threads and at most 1024. It uses a fixed
// reduction tree, so repeated launches give bitwise-identical results.
// scratch must hold 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    const int warps = blockDim.x / WARP_SIZE;
    v = warp_sum(v);
    __syncthreads(); // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

// block_max is block_sum's twin for the maximum.
__device__ __forceinline__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    const int warps = blockDim.x / WARP_SIZE;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : -INFINITY;
    return warp_max(v);
}
