// sched.h: the block scheduler both emulator drivers share (main.cpp for
// mmasim, attn_main.cpp for attnsim): a block's threads as ucontext
// coroutines run in random interleavings, and the barriers whose last
// arriver does the collective's work. Include it after kern.cpp (Thr comes
// from the driver's prelude) with SIM_BARRIERS defined: the barrier ids the
// driver's intrinsics use (0 is __syncthreads, 1 + warp a warp's).
#pragma once
#include <functional>
#include <random>
#include <vector>

Thr* g_cur;
static std::vector<Thr> thr;
static ucontext_t sched_ctx;
struct Bar { int arrived = 0; long gen = 0; };
static Bar bars[SIM_BARRIERS];
static std::mt19937 sched_rng(1);
void sim_yield() { swapcontext(&g_cur->ctx, &sched_ctx); }
void sim_barrier(int id, int count, void (*fn)(int), int arg) {
    Bar& b = bars[id];
    long gen = b.gen;
    if (++b.arrived == count) {
        if (fn) fn(arg);
        b.arrived = 0; b.gen++;
        return;
    }
    while (b.gen == gen) sim_yield();
}
static std::function<void()> g_body;
static void tramp() { g_body(); g_cur->done = true; swapcontext(&g_cur->ctx, &sched_ctx); }
static std::vector<std::vector<char>> stacks;

// run_threads runs body on n fresh coroutines (stacks of stack_bytes),
// resuming them in a new random order every round until all are done.
static void run_threads(int n, size_t stack_bytes, const std::function<void()>& body) {
    g_body = body;
    thr.assign(n, Thr());
    if (stacks.empty()) stacks.assign(n, std::vector<char>(stack_bytes));
    for (auto& b : bars) b = Bar();
    for (int i = 0; i < n; ++i) {
        thr[i].tidx.x = i;
        getcontext(&thr[i].ctx);
        thr[i].ctx.uc_stack.ss_sp = stacks[i].data();
        thr[i].ctx.uc_stack.ss_size = stacks[i].size();
        thr[i].ctx.uc_link = nullptr;
        makecontext(&thr[i].ctx, tramp, 0);
    }
    int alive = n;
    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    while (alive > 0) {
        std::shuffle(order.begin(), order.end(), sched_rng); // random interleavings
        alive = 0;
        for (int i : order) {
            if (thr[i].done) continue;
            g_cur = &thr[i];
            swapcontext(&sched_ctx, &thr[i].ctx);
            if (!thr[i].done) alive++;
        }
    }
}
