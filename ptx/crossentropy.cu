// crossentropy.cu: the softmax cross-entropy loss over a vocabulary of V.
//
// Forward:  losses[n] = logsumexp(logits[n,:]) − logits[n, targets[n]]
//           (crossentropy_forward, one block per row; it also saves the
//           row's logsumexp in lse[n] for the backward when lse is not null)
//           loss[0] = Σ_n losses[n] / N (loss_reduce, one block)
// Backward: dlogits[n,v] = (softmax(logits[n,:])[v] − [v == targets[n]])·scale
//           (crossentropy_backward, OVERWRITTEN; may run in place over logits)
//
// Each row's reduction is a fixed tree (per-thread strided sums, then the
// block_max/block_sum of common.cuh), so every result is bitwise repeatable
// for a given block size, which the Go launchers fix as a function of V.
//
// None of the pointers is __restrict__: dlogits may alias logits.
#include "common.cuh"

// row_logsumexp returns logsumexp(row[0..V)) to every thread of the block,
// reading the row ONCE: each thread keeps a running maximum m and the sum s
// of exp(x − m) over its strided elements (rescaling s when m grows), then
// the block takes the global maximum M and sums s·exp(m − M). At V = 50257
// the logits are the largest tensor of the model, so one pass instead of two
// halves this kernel's memory traffic. expf is the accurate one (no fast math).
__device__ float row_logsumexp(const float* row, int V, float* scratch) {
    float m = -INFINITY, s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        const float x = row[v];
        if (x > m) {
            s = s * expf(m - x) + 1.0f; // expf(-inf) = 0 on the first element
            m = x;
        } else {
            s += expf(x - m); // also propagates a NaN x
        }
    }
    const float M = block_max(m, scratch);
    s = m == -INFINITY ? 0.0f : s * expf(m - M); // threads that had no element
    const float S = block_sum(s, scratch);
    return M + logf(S);
}

// crossentropy_forward: one block per row. A target outside [0, V) gives a
// NaN loss rather than an out-of-bounds read. lse may be null.
extern "C" __global__ void crossentropy_forward(float* losses, float* lse, const float* logits,
                                                const int* targets, int N, int V) {
    __shared__ float scratch[32];
    const int n = blockIdx.x;
    if (n >= N) return; // uniform over the block
    const float* row = logits + n * V;
    const float l = row_logsumexp(row, V, scratch);
    if (threadIdx.x == 0) {
        const int t = targets[n];
        losses[n] = (t >= 0 && t < V) ? l - row[t] : NAN;
        if (lse != nullptr) lse[n] = l;
    }
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

// crossentropy_backward: one block per row. The row's logsumexp comes from
// lse (saved by crossentropy_forward) or, when lse is null, is recomputed
// here with one extra read of the row.
//
// In place (dlogits == logits) is safe: the recompute only reads, and its
// block reductions sync the whole block before any thread writes; in the
// writing loop every element is read and then overwritten by the same
// thread, and no thread ever reads another thread's element after that.
extern "C" __global__ void crossentropy_backward(float* dlogits, const float* logits, const float* lse,
                                                 const int* targets, int N, int V, float scale) {
    __shared__ float scratch[32];
    const int n = blockIdx.x;
    if (n >= N) return; // uniform over the block
    const float* row = logits + n * V;
    float* drow = dlogits + n * V;
    const float l = lse != nullptr ? lse[n] : row_logsumexp(row, V, scratch);
    const int t = targets[n];
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        const float p = expf(row[v] - l);
        drow[v] = (p - (v == t ? 1.0f : 0.0f)) * scale;
    }
}
