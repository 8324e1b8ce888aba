// attn_main.cpp: scripts/attnsim.sh's driver: a block of 128 cooperative
// threads (ucontext coroutines, random interleavings), and the checks of
// attention_tf32.cu's three entries against a float64 reference: out, lse,
// dq, dk, dv at odd T, grouped and multi-head, poisoned outputs whose
// other parts and tail must stay NaN, and both cp.async landings.
#include "kern.cpp"
#include <random>
#include <functional>
dim3 blockIdx, gridDim;
int g_early;
int g_block_threads = 128;
alignas(128) unsigned char smem[128 * 1024];
namespace attnsim {
ThrCopies copies[128];
Warp warps[4];
long mmas, rounded_checks;
}
#define SIM_BARRIERS 5
#include "sched.h"
static void run_block(const std::function<void()>& body) {
    for (auto& c : attnsim::copies) c = attnsim::ThrCopies();
    memset(smem, 0xff, sizeof(smem)); // NaN
    run_threads(128, 256 * 1024, body);
    for (auto& c : attnsim::copies)
        for (auto& g : c.groups)
            if (!g.empty()) { fprintf(stderr, "thread exited with copies in flight\n"); abort(); }
}
static void launch(int gx, int gy, int gz, const std::function<void()>& body) {
    gridDim.x = gx; gridDim.y = gy; gridDim.z = gz;
    for (int z = 0; z < gz; ++z) for (int y = 0; y < gy; ++y) for (int x = 0; x < gx; ++x) {
        blockIdx.x = x; blockIdx.y = y; blockIdx.z = z;
        run_block(body);
    }
}

static std::mt19937_64 rng(42);
static double nrm() { static std::normal_distribution<double> d; return d(rng); }
static int cdiv(int a, int b) { return (a + b - 1) / b; }
static const int TAIL = 64; // poisoned floats past every output, never to be written
static std::vector<float> poisoned(size_t n) { return std::vector<float>(n + TAIL, NAN); }
static int fails = 0;
// check compares ‖got − want‖/‖want‖ with tol, as kernels/gpu_test.go's
// relErr; NaN fails.
static void check(const char* what, const std::vector<double>& got, const std::vector<double>& want, double tol) {
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        double e = got[i] - want[i];
        if (!(e == e)) num = INFINITY;
        num += e * e; den += want[i] * want[i];
    }
    // A reference that is exactly zero (dq, dk at T = 1) is compared absolutely.
    double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    bool ok = rel <= tol;
    if (!ok) fails++;
    printf("  %-6s rel %.2e (tol %.0e) %s\n", what, rel, tol, ok ? "ok" : "FAIL");
}
// check_rms bounds the root mean square of got − want (lse: absolute, as
// kernels/attention_tf32_test.go's checkRMS); NaN fails.
static void check_rms(const char* what, const std::vector<double>& got, const std::vector<double>& want, double tol) {
    double num = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        double e = got[i] - want[i];
        num += e == e ? e * e : INFINITY;
    }
    double rms = std::sqrt(num / want.size());
    bool ok = rms <= tol;
    if (!ok) fails++;
    printf("  %-6s rms %.2e (tol %.0e) %s\n", what, rms, tol, ok ? "ok" : "FAIL");
}
static void tail_untouched(const char* what, const std::vector<float>& v, size_t n) {
    for (size_t i = n; i < v.size(); ++i)
        if (v[i] == v[i]) { printf("  %s: tail element %zu written FAIL\n", what, i - n); fails++; return; }
}

static void test(int B, int T, int NH, int NKV) {
    const int D = 64, C = NH * D, W = (NH + 2 * NKV) * D, group = NH / NKV;
    printf("B=%d T=%d NH=%d NKV=%d early=%d\n", B, T, NH, NKV, g_early);
    std::vector<float> qkv((size_t)B * T * W), dout((size_t)B * T * C);
    for (auto& x : qkv) x = (float)nrm();
    for (auto& x : dout) x = (float)nrm();
    auto Q = [&](int b, int t, int h, int i) -> double { return qkv[((size_t)b * T + t) * W + h * D + i]; };
    auto K = [&](int b, int t, int h, int i) -> double { return qkv[((size_t)b * T + t) * W + (NH + h) * D + i]; };
    auto V = [&](int b, int t, int h, int i) -> double { return qkv[((size_t)b * T + t) * W + (NH + NKV + h) * D + i]; };
    // float64 reference.
    const double sc = 1.0 / std::sqrt((double)D);
    std::vector<double> rout((size_t)B * T * C), rlse((size_t)B * NH * T), rd((size_t)B * T * W, 0.0);
    for (int b = 0; b < B; ++b) for (int h = 0; h < NH; ++h) {
        const int kh = h / group;
        for (int t = 0; t < T; ++t) {
            std::vector<double> s(t + 1), p(t + 1), dp(t + 1);
            double mx = -INFINITY;
            for (int k = 0; k <= t; ++k) {
                double a = 0;
                for (int i = 0; i < D; ++i) a += Q(b, t, h, i) * K(b, k, kh, i);
                s[k] = a * sc; mx = std::max(mx, s[k]);
            }
            double l = 0;
            for (int k = 0; k <= t; ++k) l += std::exp(s[k] - mx);
            rlse[((size_t)b * NH + h) * T + t] = mx + std::log(l);
            for (int k = 0; k <= t; ++k) p[k] = std::exp(s[k] - mx) / l;
            double dsum = 0;
            for (int i = 0; i < D; ++i) {
                double o = 0;
                for (int k = 0; k <= t; ++k) o += p[k] * V(b, k, kh, i);
                rout[((size_t)b * T + t) * C + h * D + i] = o;
                dsum += o * dout[((size_t)b * T + t) * C + h * D + i];
            }
            for (int k = 0; k <= t; ++k) {
                double a = 0;
                for (int i = 0; i < D; ++i) a += dout[((size_t)b * T + t) * C + h * D + i] * V(b, k, kh, i);
                dp[k] = a;
            }
            for (int k = 0; k <= t; ++k) {
                const double ds = p[k] * (dp[k] - dsum);
                for (int i = 0; i < D; ++i) {
                    rd[((size_t)b * T + t) * W + h * D + i] += ds * sc * K(b, k, kh, i);
                    rd[((size_t)b * T + k) * W + (NH + kh) * D + i] += ds * sc * Q(b, t, h, i);
                    rd[((size_t)b * T + k) * W + (NH + NKV + kh) * D + i] += p[k] * dout[((size_t)b * T + t) * C + h * D + i];
                }
            }
        }
    }
    // forward
    auto out = poisoned((size_t)B * T * C), lse = poisoned((size_t)B * NH * T);
    launch(cdiv(T, ATT_TF32_FWD_R), NH, B, [&] { attention_forward_tf32(out.data(), lse.data(), qkv.data(), B, T, C, NH, NKV); });
    check("out", std::vector<double>(out.begin(), out.end() - TAIL), rout, 2e-3);
    check_rms("lse", std::vector<double>(lse.begin(), lse.end() - TAIL), rlse, 2e-3);
    tail_untouched("out", out, out.size() - TAIL);
    tail_untouched("lse", lse, lse.size() - TAIL);
    // d = Σ dout·out per head row from the kernel's out, in fp32 like attention.cu's preprocess.
    std::vector<float> d((size_t)B * NH * T);
    for (int b = 0; b < B; ++b) for (int t = 0; t < T; ++t) for (int h = 0; h < NH; ++h) {
        float a = 0;
        for (int i = 0; i < D; ++i) a += out[((size_t)b * T + t) * C + h * D + i] * dout[((size_t)b * T + t) * C + h * D + i];
        d[((size_t)b * NH + h) * T + t] = a;
    }
    // backward: dkdv and dq into one poisoned dqkv, then the three parts.
    auto dqkv = poisoned((size_t)B * T * W);
    launch(cdiv(T, ATT_TF32_DKDV_R), NKV, B, [&] { attention_backward_dkdv_tf32(dqkv.data(), d.data(), dout.data(), qkv.data(), lse.data(), B, T, C, NH, NKV); });
    size_t qnan = 0;
    for (int r = 0; r < B * T; ++r) for (int i = 0; i < NH * D; ++i) qnan += dqkv[(size_t)r * W + i] != dqkv[(size_t)r * W + i];
    if (qnan != (size_t)B * T * NH * D) { printf("  dkdv wrote the q part FAIL\n"); fails++; }
    launch(cdiv(T, ATT_TF32_DQ_R), NH, B, [&] { attention_backward_dq_tf32(dqkv.data(), d.data(), dout.data(), qkv.data(), lse.data(), B, T, C, NH, NKV); });
    tail_untouched("dqkv", dqkv, dqkv.size() - TAIL);
    const char* names[3] = {"dq", "dk", "dv"};
    const int lo[3] = {0, NH * D, (NH + NKV) * D}, hi[3] = {NH * D, (NH + NKV) * D, W};
    for (int p = 0; p < 3; ++p) {
        std::vector<double> got, want;
        for (int r = 0; r < B * T; ++r) for (int i = lo[p]; i < hi[p]; ++i) {
            got.push_back(dqkv[(size_t)r * W + i]); want.push_back(rd[(size_t)r * W + i]);
        }
        check(names[p], got, want, 3e-3);
    }
}

int main(int argc, char** argv) {
    struct Sh { int b, t, nh, nkv; };
    std::vector<Sh> shapes = {{1, 1, 1, 1}, {2, 37, 2, 1}, {1, 65, 2, 2}, {1, 130, 4, 2}, {2, 63, 1, 1}, {1, 200, 2, 1}};
    int which = argc > 1 ? atoi(argv[1]) : -1;
    for (int e = 0; e < 2; ++e) {
        g_early = e;
        for (size_t i = 0; i < shapes.size(); ++i) {
            if (which >= 0 && (int)i != which) continue;
            test(shapes[i].b, shapes[i].t, shapes[i].nh, shapes[i].nkv);
        }
    }
    printf("%s: %d failures, %ld warp mma\n", fails ? "FAIL" : "PASS", fails, attnsim::mmas);
    return fails != 0;
}
