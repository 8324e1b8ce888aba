// main.cpp: scripts/mmasim.sh's driver (its block scheduler and barriers are sched.h): the
// checks of every GEMM entry against a float64 reference.
#include "kern.cpp"
#include <random>
#include <string>
dim3 blockIdx, gridDim;
int g_early;
int g_block_threads = 256;
WarpBox mma::g_warp[8];
alignas(128) unsigned char mma::smem[240 * 1024];
#define SIM_BARRIERS 9
#include "sched.h"
// run one block of 256 threads of body.
static void run_block(const std::function<void()>& body) {
    memset(mma::smem, 0xff, sizeof(mma::smem)); // NaN in both types
    run_threads(256, 512 * 1024, body);
    for (auto& t : thr) if (!t.cur.empty() || !t.groups.empty()) {
        // unwaited copies: only empty groups are allowed
        for (auto& g : t.groups) if (!g.empty()) { fprintf(stderr, "thread exited with copies in flight\n"); abort(); }
    }
}
static void launch(int gx, int gy, const std::function<void()>& body) {
    gridDim.x = gx; gridDim.y = gy; gridDim.z = 1;
    for (int y = 0; y < gy; ++y) for (int x = 0; x < gx; ++x) { blockIdx.x = x; blockIdx.y = y; run_block(body); }
}

// ---- the test ----
static std::mt19937_64 rng(42);
static double nrm() { static std::normal_distribution<double> d; return d(rng); }
static inline int cdiv(int a, int b) { return (a + b - 1) / b; }
template <typename T> struct Buf {
    std::vector<unsigned char> raw; T* p; size_t n;
    Buf(size_t n_, int off = 0) : raw((n_ + off + 64) * sizeof(T) + 256), n(n_) {
        uintptr_t b = ((uintptr_t)raw.data() + 255) & ~(uintptr_t)255;
        p = (T*)b + off;
        memset(p, 0xff, n * sizeof(T));
    }
};
static double val(bf16 v) { return __bfloat162float(v); }
static double val(float v) { return v; }
static void setv(bf16& d, double x) { d = __float2bfloat16_rn((float)x); }
static void setv(float& d, double x) { d = (float)x; }
static double opv(bf16 v) { return val(v); }
static double opv(float v) { return __uint_as_float(tf32(__float_as_uint(v))); }

static int fails = 0;
static void check(const char* what, const std::vector<double>& got, const std::vector<double>& want, double tol) {
    double maxref = 0, maxerr = 0;
    for (size_t i = 0; i < want.size(); ++i) maxref = std::max(maxref, std::fabs(want[i]));
    for (size_t i = 0; i < want.size(); ++i) {
        double e = std::fabs(got[i] - want[i]);
        if (!(e == e)) e = INFINITY;
        maxerr = std::max(maxerr, e);
    }
    double rel = maxerr / std::max(maxref, 1e-30);
    bool ok = rel <= tol;
    if (!ok) fails++;
    printf("  %-40s rel %.2e %s\n", what, rel, ok ? "ok" : "FAIL");
}

template <typename T>
static void test(int n, int c, int oc, int ld, int bn, int off, int splits) {
    const bool isbf = sizeof(T) == 2;
    printf("%s n=%d c=%d oc=%d ld=%d bn=%d off=%d splits=%d early=%d\n", isbf ? "bf16" : "tf32", n, c, oc, ld, bn, off, splits, g_early);
    Buf<T> inp(n * c, off), w(oc * c, off), bias(oc, 0), dout((size_t)n * ld, off);
    for (size_t i = 0; i < inp.n; ++i) setv(inp.p[i], nrm());
    for (size_t i = 0; i < w.n; ++i) setv(w.p[i], nrm());
    for (size_t i = 0; i < bias.n; ++i) setv(bias.p[i], nrm());
    for (int i = 0; i < n; ++i) for (int j = 0; j < ld; ++j) { if (j < oc) setv(dout.p[(size_t)i * ld + j], nrm()); else memset(&dout.p[(size_t)i * ld + j], 0xff, sizeof(T)); }
    const double tol = isbf ? 4e-3 : 1e-4;
    // forward
    {
        Buf<T> out((size_t)n * ld, off);
        const int tiles = cdiv(n, 128) * cdiv(oc, bn);
        launch(tiles, 1, [&] {
            if (isbf) matmul_forward_bf16((bf16*)out.p, (const bf16*)inp.p, (const bf16*)w.p, (const bf16*)bias.p, n, c, oc, ld, bn);
            else matmul_forward_tf32((float*)out.p, (const float*)inp.p, (const float*)w.p, (const float*)bias.p, n, c, oc, ld, bn);
        });
        std::vector<double> got, want;
        bool pad = true;
        for (int i = 0; i < n; ++i) for (int j = 0; j < ld; ++j) {
            double g = val(out.p[(size_t)i * ld + j]);
            if (j >= oc) { if (g == g) pad = false; continue; }
            double s = val(bias.p[j]);
            for (int k = 0; k < c; ++k) s += opv(inp.p[i * c + k]) * opv(w.p[j * c + k]);
            got.push_back(g); want.push_back(s);
        }
        check("forward", got, want, tol);
        if (!pad) { printf("  padding written FAIL\n"); fails++; }
    }
    // backward input
    {
        Buf<T> dinp(n * c, off);
        launch(cdiv(n, 128) * cdiv(c, bn), 1, [&] {
            if (isbf) matmul_backward_input_bf16((bf16*)dinp.p, (const bf16*)dout.p, (const bf16*)w.p, n, c, oc, ld, bn);
            else matmul_backward_input_tf32((float*)dinp.p, (const float*)dout.p, (const float*)w.p, n, c, oc, ld, bn);
        });
        std::vector<double> got, want;
        for (int i = 0; i < n; ++i) for (int j = 0; j < c; ++j) {
            double s = 0;
            for (int k = 0; k < oc; ++k) s += opv(dout.p[(size_t)i * ld + k]) * opv(w.p[k * c + j]);
            got.push_back(val(dinp.p[i * c + j])); want.push_back(s);
        }
        check("backward_input", got, want, tol);
    }
    // backward weight
    {
        Buf<T> dw(oc * c, off);
        int sliceK = n, S = 1;
        if (splits > 1) { sliceK = cdiv(cdiv(n, splits), 64) * 64; S = cdiv(n, sliceK); if (S == 1) sliceK = n; }
        const int tiles = cdiv(oc, 128) * cdiv(c, bn);
        std::vector<float> partials((size_t)std::max(S, 1) * tiles * 128 * bn + 4, NAN);
        std::vector<int> counters(tiles + 1, 0);
        launch(tiles, S, [&] {
            if (isbf) matmul_backward_weight_bf16((bf16*)dw.p, (const bf16*)dout.p, (const bf16*)inp.p, partials.data(), counters.data(), n, c, oc, ld, S, sliceK, bn);
            else matmul_backward_weight_tf32((float*)dw.p, (const float*)dout.p, (const float*)inp.p, partials.data(), counters.data(), n, c, oc, ld, S, sliceK, bn);
        });
        std::vector<double> got, want;
        for (int i = 0; i < oc; ++i) for (int j = 0; j < c; ++j) {
            double s = 0;
            for (int k = 0; k < n; ++k) s += opv(dout.p[(size_t)k * ld + i]) * opv(inp.p[k * c + j]);
            got.push_back(val(dw.p[i * c + j])); want.push_back(s);
        }
        char what[64]; snprintf(what, sizeof what, "backward_weight S=%d/%d", S, sliceK);
        check(what, got, want, tol);
        for (int x : counters) if (x) { printf("  counter not reset FAIL\n"); fails++; break; }
    }
}

int main(int argc, char** argv) {
    struct Sh { int n, c, oc, ld, off, splits; };
    std::vector<Sh> shapes = {
        {37, 100, 1003, 1010, 0, 1}, {67, 13, 45, 45, 0, 1}, {200, 72, 300, 320, 0, 1}, {129, 52, 130, 136, 0, 2},
        {300, 256, 384, 448, 0, 2}, {130, 136, 264, 272, 1, 2}, {64, 640, 64, 64, 0, 1}, {700, 64, 72, 72, 0, 3},
        {1100, 16, 40, 40, 0, 1}, {1, 1, 1, 1, 0, 1},
    };
    int which = argc > 1 ? atoi(argv[1]) : -1;
    for (int e = 0; e < 2; ++e) {
        g_early = e;
        for (size_t i = 0; i < shapes.size(); ++i) {
            if (which >= 0 && (int)i != which) continue;
            auto s = shapes[i];
            for (int bn : {256, 192}) {
                test<bf16>(s.n, s.c, s.oc, s.ld, bn, s.off, s.splits);
                test<float>(s.n, s.c, s.oc, s.ld, bn, s.off, s.splits);
            }
        }
    }
    printf("%s: %d failures\n", fails ? "FAIL" : "PASS", fails);
    return fails != 0;
}
