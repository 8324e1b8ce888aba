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

// CE_UNROLL is how many 16-byte vectors a thread loads before it uses any:
// each load is issued before the first returns, so a block keeps
// CE_UNROLL·16 bytes a thread in flight (the rows are read once, from HBM,
// and one vector a thread in flight left the kernels at a third of the
// memory bandwidth).
#define CE_UNROLL 4

// row_vectors says whether a row can be moved in 16-byte vectors (Pack<S>):
// the whole logits tensor 16-byte aligned and the row stride Vp a multiple
// of the vector, so that every row starts aligned. The same for every block
// of a launch, so the branch never diverges.
template <typename S>
__device__ __forceinline__ bool row_vectors(const S* logits, int Vp) {
    return is_aligned16(logits) && (Vp & (Pack<S>::N - 1)) == 0;
}

// absorb adds the values x[0..k) to the running maximum m and sum s of
// exp(· − m): one rescale of s per call, by the new maximum. A NaN x makes
// s NaN (fmaxf skips it, its expf does not); while every value so far is
// −inf, m and s stay −inf and 0.
__device__ __forceinline__ void absorb(float& m, float& s, const float* x, int k) {
    float mx = m;
    for (int j = 0; j < k; ++j) mx = fmaxf(mx, x[j]);
    if (mx == -INFINITY) return;
    s *= expf(m - mx); // expf(-inf) = 0 on the first finite value
    for (int j = 0; j < k; ++j) s += expf(x[j] - mx);
    m = mx;
}

// row_logsumexp returns logsumexp(row[0..V)) to every thread of the block,
// reading the row ONCE: each thread keeps a running maximum m and the sum s
// of exp(x − m) over its strided vectors (rescaling s when m grows), then
// the block takes the global maximum M and sums s·exp(m − M). At V = 50257
// the logits are the largest tensor of the model, so one pass instead of two
// halves this kernel's memory traffic. Vectors cover the first V − V mod
// Pack<S>::N columns and the rest go one by one, so the padding past V is
// never read. expf is the accurate one (no fast math).
template <typename S>
__device__ float row_logsumexp(const S* row, int V, bool vec, float* scratch) {
    float m = -INFINITY, s = 0.0f;
    int done = 0;
    if (vec) {
        const int nv = V >> Pack<S>::LOG2N;
        int i = threadIdx.x;
        for (; i + (CE_UNROLL - 1) * (int)blockDim.x < nv; i += CE_UNROLL * blockDim.x) {
            Pack<S> x[CE_UNROLL];
#pragma unroll
            for (int u = 0; u < CE_UNROLL; ++u) x[u].load(row, i + u * blockDim.x);
#pragma unroll
            for (int u = 0; u < CE_UNROLL; ++u) absorb(m, s, x[u].v, Pack<S>::N);
        }
        for (; i < nv; i += blockDim.x) {
            Pack<S> x;
            x.load(row, i);
            absorb(m, s, x.v, Pack<S>::N);
        }
        done = nv << Pack<S>::LOG2N;
    }
    for (int v = done + threadIdx.x; v < V; v += blockDim.x) {
        const float x = to_float(row[v]);
        absorb(m, s, &x, 1);
    }
    const float M = block_max(m, scratch);
    s = m == -INFINITY ? 0.0f : s * expf(m - M); // threads that had no finite element
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
    const float l = row_logsumexp(row, V, row_vectors(logits, Vp), scratch);
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
    const bool vec = row_vectors(logits, Vp) && row_vectors(dlogits, Vp);
    const float l = lse != nullptr ? lse[n] : row_logsumexp(row, V, vec, scratch);
    const int t = targets[n];
    // grad is the gradient of column v whose logit is x.
    auto grad = [&](float x, int v) { return (expf(x - l) - (v == t ? 1.0f : 0.0f)) * scale; };
    int done = 0;
    if (vec) {
        const int nv = V >> Pack<S>::LOG2N;
        int i = threadIdx.x;
        for (; i + (CE_UNROLL - 1) * (int)blockDim.x < nv; i += CE_UNROLL * blockDim.x) {
            Pack<S> x[CE_UNROLL];
#pragma unroll
            for (int u = 0; u < CE_UNROLL; ++u) x[u].load(row, i + u * blockDim.x);
#pragma unroll
            for (int u = 0; u < CE_UNROLL; ++u) {
                const int v0 = (i + u * blockDim.x) << Pack<S>::LOG2N;
#pragma unroll
                for (int j = 0; j < Pack<S>::N; ++j) x[u].v[j] = grad(x[u].v[j], v0 + j);
                x[u].store(drow, i + u * blockDim.x);
            }
        }
        for (; i < nv; i += blockDim.x) {
            Pack<S> x;
            x.load(row, i);
            const int v0 = i << Pack<S>::LOG2N;
#pragma unroll
            for (int j = 0; j < Pack<S>::N; ++j) x.v[j] = grad(x.v[j], v0 + j);
            x.store(drow, i);
        }
        done = nv << Pack<S>::LOG2N;
    }
    for (int v = done + threadIdx.x; v < V; v += blockDim.x) drow[v] = from_float<S>(grad(to_float(row[v]), v));
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
