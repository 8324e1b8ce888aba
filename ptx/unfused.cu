// unfused.cu: the tiny elementwise kernels of the planted flaw `unfused`
// (gpubench flaws), which runs the bias of each linear layer and the GELU
// as separate launches, the way a program written op by op does:
//
//   bias_add         out(n, ld)[r, c] += bias[c] for c < oc (after a
//                    matmul launched without its fused bias)
//   elem_mul         out = a · b
//   elem_axpby       out = alpha·a + beta·b
//   elem_tanh_scale  out = tanh(scale·inp)
//
// The GELU's tanh approximation, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))),
// becomes a chain of them (model/flaws.go): u = x·x, u = u·x,
// u = x + 0.044715·u, u = tanh(√(2/π)·u), u = x·u, out = 0.5·x + 0.5·u. Each
// launch reads and writes its whole tensor once, so the chain moves about
// ten times the bytes of gelu_forward and launches six kernels where the
// clean step launches one: the point of the lesson.
//
// Every kernel is elementwise with grid-stride loops (any grid covers any
// n) and may run in place (out equal to an input): each element is read
// and written by the same thread. They are templates over the storage type
// S (elem.cuh): this file's entries store floats, those of unfused_bf16.cu
// (which includes it) bf16s, suffixed _bf16. The math is in float; each
// output is rounded once to S, so a chain rounds at every step, as the
// separate kernels of a user's program do.
//
// The elementwise kernels move 16-byte vectors when every pointer is
// aligned (a uniform branch), like gelu_forward and residual_forward, so
// that the flaw's cost is the launches and the extra passes over memory,
// not a slower kernel. bias_add indexes rows and columns and stays scalar.
#include "common.cuh"
#include "elem.cuh"

// The operation of each elementwise kernel on one element.
struct MulOp {
    __device__ __forceinline__ float operator()(float a, float b) const { return a * b; }
};
struct AxpbyOp {
    float alpha, beta;
    __device__ __forceinline__ float operator()(float a, float b) const { return alpha * a + beta * b; }
};
struct TanhScaleOp {
    float scale;
    __device__ __forceinline__ float operator()(float x, float) const { return tanhf(scale * x); }
};

// bias_add_t: out[r·ld + c] += bias[c] for r < n, c < oc, one element a
// thread (grid-stride over the n·oc elements).
template <typename S>
__device__ __forceinline__ void bias_add_t(S* out, const S* bias, int n, int oc, int ld) {
    const int total = n * oc;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const int r = i / oc, c = i - r * oc;
        S* p = out + r * ld + c;
        *p = from_float<S>(to_float(*p) + to_float(bias[c]));
    }
}

#ifndef GPUBENCH_BF16
extern "C" __global__ void bias_add(float* out, const float* bias, int n, int oc, int ld) {
    bias_add_t(out, bias, n, oc, ld);
}
extern "C" __global__ void elem_mul(float* out, const float* a, const float* b, int n) {
    binary_t(out, a, b, n, MulOp{});
}
extern "C" __global__ void elem_axpby(float* out, const float* a, const float* b, float alpha, float beta, int n) {
    binary_t(out, a, b, n, AxpbyOp{alpha, beta});
}
extern "C" __global__ void elem_tanh_scale(float* out, const float* inp, float scale, int n) {
    binary_t(out, inp, inp, n, TanhScaleOp{scale});
}
#else
typedef __nv_bfloat16 bf16;
extern "C" __global__ void bias_add_bf16(bf16* out, const bf16* bias, int n, int oc, int ld) {
    bias_add_t(out, bias, n, oc, ld);
}
extern "C" __global__ void elem_mul_bf16(bf16* out, const bf16* a, const bf16* b, int n) {
    binary_t(out, a, b, n, MulOp{});
}
extern "C" __global__ void elem_axpby_bf16(bf16* out, const bf16* a, const bf16* b, float alpha, float beta, int n) {
    binary_t(out, a, b, n, AxpbyOp{alpha, beta});
}
extern "C" __global__ void elem_tanh_scale_bf16(bf16* out, const bf16* inp, float scale, int n) {
    binary_t(out, inp, inp, n, TanhScaleOp{scale});
}
#endif
