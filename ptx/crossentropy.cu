// crossentropy.cu: the softmax cross-entropy loss over a vocabulary of V.
//
// Forward:  losses[n] = logsumexp(logits[n,:]) − logits[n, targets[n]]
//           (crossentropy_forward, one block per row; it also saves the
//           row's logsumexp in lse[n] for the backward when lse is not null)
//           loss[0] = Σ_n losses[n] / N (loss_reduce, one block)
// Backward: dlogits[n,v] = (softmax(logits[n,:])[v] − [v == targets[n]])·scale
//           (crossentropy_backward, OVERWRITTEN; may run in place over logits)
//
// The logits are N rows of V columns, Vp ≥ V apart (a padded vocabulary):
// only the first V columns of a row are read or written, never the padding.
//
// Each row's reduction is a fixed tree (per-thread strided sums, then the
// block_max/block_sum of common.cuh), so every result is bitwise repeatable
// for a given block size, which the Go launchers fix as a function of V.
//
// The cross-entropy kernels are templates over the storage type S of the
// logits and their gradient (elem.cuh): this file's entries store floats,
// those of crossentropy_bf16.cu (which includes it) bf16s, suffixed _bf16.
// lse, the losses and the loss are floats in both, all arithmetic is in
// float, and each dlogit is rounded once. loss_reduce reads only floats, so
// it is in this file's module alone.
//
// None of the pointers is __restrict__: dlogits may alias logits.
#include "common.cuh"
#include "elem.cuh"

// row_logsumexp returns logsumexp(row[0..V)) to every thread of the block,
// reading the row ONCE: each thread keeps a running maximum m and the sum s
// of exp(x − m) over its strided elements (rescaling s when m grows), then
// the block takes the global maximum M and sums s·exp(m − M). At V = 50257
// the logits are the largest tensor of the model, so one pass instead of two
// halves this kernel's memory traffic. expf is the accurate one (no fast math).
template <typename S>
__device__ float row_logsumexp(const S* row, int V, float* scratch) {
    float m = -INFINITY, s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        const float x = to_float(row[v]);
        if (x > m) {
            s = s * expf(m - x) + 1.0f; // expf(-inf) = 0 on the first element
            m = x;
        } else {
            s += expf(x - m); // also propagates a NaN x
        }
    }
    const float M = block_max(m, scratch);
    s = m == -INFINITY ? 0.0f : s * expf(m - M); // threads that had no element
    const float sum = block_sum(s, scratch);
    return M + logf(sum);
}

// crossentropy_forward: one block per row. A target outside [0, V) gives a
// NaN loss rather than an out-of-bounds read. lse may be null.
template <typename S>
__device__ __forceinline__ void crossentropy_forward_t(float* losses, float* lse, const S* logits,
                                                       const int* targets, int N, int V, int Vp) {
    __shared__ float scratch[32];
    const int n = blockIdx.x;
    if (n >= N) return; // uniform over the block
    const S* row = logits + n * Vp;
    const float l = row_logsumexp(row, V, scratch);
    if (threadIdx.x == 0) {
        const int t = targets[n];
        losses[n] = (t >= 0 && t < V) ? l - to_float(row[t]) : NAN;
        if (lse != nullptr) lse[n] = l;
    }
}

// crossentropy_backward: one block per row. The row's logsumexp comes from
// lse (saved by crossentropy_forward) or, when lse is null, is recomputed
// here with one extra read of the row.
//
// In place (dlogits == logits) is safe: the recompute only reads, and its
// block reductions sync the whole block before any thread writes; in the
// writing loop every element is read and then overwritten by the same
// thread, and no thread ever reads another thread's element after that.
template <typename S>
__device__ __forceinline__ void crossentropy_backward_t(S* dlogits, const S* logits, const float* lse,
                                                        const int* targets, int N, int V, int Vp, float scale) {
    __shared__ float scratch[32];
    const int n = blockIdx.x;
    if (n >= N) return; // uniform over the block
    const S* row = logits + n * Vp;
    S* drow = dlogits + n * Vp;
    const float l = lse != nullptr ? lse[n] : row_logsumexp(row, V, scratch);
    const int t = targets[n];
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        const float p = expf(to_float(row[v]) - l);
        drow[v] = from_float<S>((p - (v == t ? 1.0f : 0.0f)) * scale);
    }
}

#ifndef GPUBENCH_BF16
extern "C" __global__ void crossentropy_forward(float* losses, float* lse, const float* logits,
                                                const int* targets, int N, int V, int Vp) {
    crossentropy_forward_t(losses, lse, logits, targets, N, V, Vp);
}

// loss_reduce: the mean of the N losses, by one block: thread i sums
// losses[i], losses[i + blockDim], ... in order, then block_sum. Fixed order,
// so the loss is bitwise repeatable.
extern "C" __global__ void loss_reduce(float* loss, const float* losses, int N) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (int i = threadIdx.x; i < N; i += blockDim.x) s += losses[i];
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) loss[0] = s / (float)N;
}

extern "C" __global__ void crossentropy_backward(float* dlogits, const float* logits, const float* lse,
                                                 const int* targets, int N, int V, int Vp, float scale) {
    crossentropy_backward_t(dlogits, logits, lse, targets, N, V, Vp, scale);
}
#else
extern "C" __global__ void crossentropy_forward_bf16(float* losses, float* lse, const __nv_bfloat16* logits,
                                                     const int* targets, int N, int V, int Vp) {
    crossentropy_forward_t(losses, lse, logits, targets, N, V, Vp);
}
extern "C" __global__ void crossentropy_backward_bf16(__nv_bfloat16* dlogits, const __nv_bfloat16* logits,
                                                      const float* lse, const int* targets, int N, int V, int Vp,
                                                      float scale) {
    crossentropy_backward_t(dlogits, logits, lse, targets, N, V, Vp, scale);
}
#endif
