#!/usr/bin/env python3
"""PyTorch baseline for gpubench's speed table: the same GPT-2 step in eager PyTorch.

The model is gpt2_torch.GPT2 (beside this script), in float32 with TF32 off
(allow_tf32 False for matmul and cuDNN, float32 matmul precision 'highest');
with --dtype tf32, float32 with TF32 matmuls allowed; with --dtype bf16, the
whole model in bfloat16 (SDPA then takes the flash-attention kernel);
eager (or with --compile, through torch.compile), in train() mode, on random tokens and targets drawn
on the GPU. Each iteration is timed as gpubench times its own:

    model.zero_grad(set_to_none=True)    # outside the timed region, no GPU work
    start.record()
    logits, loss = model(tokens, targets) # forward, cross-entropy included
    fwd_end.record()
    loss.backward()                       # train mode only
    bwd_end.record()
    torch.cuda.synchronize()

forward = start->fwd_end, backward = fwd_end->bwd_end, step = start->bwd_end
(CUDA events, ms), wall = host clock from before start.record() to after the
synchronize. In infer mode the forward runs under torch.no_grad() and step =
forward. Warm-up iterations run the same way first and are not reported.

Attention: 'sdpa' is F.scaled_dot_product_attention(q, k, v, is_causal=True).
In fp32 neither flash nor cuDNN attention applies, so it runs the
memory-efficient (CUTLASS) kernel, which on sm80+ does its fp32 products as
3xTF32 tensor-core ops (fp32-level accuracy) whatever allow_tf32 says.
'manual' (explicit masked softmax, materialised T x T scores) keeps every
product in cuBLAS fp32 (FFMA, no tensor cores).

Statistics are gpubench's (internal/stats): median and p90 by linear
interpolation (numpy's default), std with Bessel's correction. tokens/s is
B*T / median step; TFLOP/s uses gpubench's counted FLOPs (internal/flops,
ported below), so the two tables compare like for like.

Memory (torch.cuda.max_memory_allocated, i.e. the caching allocator's live
tensor bytes, not its reservations nor the CUDA context):
  peak_bytes        over the whole run, from before the model is created to
                    the end: params + inputs + grads + activations +
                    workspaces. The number comparable to gpubench's
                    memory.peak_bytes (its own allocations, all made once).
  peak_timed_bytes  over the timed iterations only (peak stats reset after
                    warm-up); still includes what stays allocated across
                    them (params, inputs).
  plus params_bytes, grads_bytes, resident_bytes (allocated after model and
  inputs were created) and peak_reserved_bytes (max_memory_reserved, closer
  to what nvidia-smi shows).

Usage:
  python3 scripts/torch_bench.py --model small [--batch-size 8] [--iters 10] [--warmup 3]
        [--mode train|infer] [--attention sdpa|manual] [--json FILE]
  python3 scripts/torch_bench.py --all [--json FILE]     # tiny, small, gpt2-124m; train
"""

import argparse
import gc
import json
import math
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_torch import ATTENTIONS, PRESETS, GPT2, GPT2Config, num_params  # noqa: E402  (imports without torch)

SCHEMA_VERSION = 1
MIB = 1 << 20
TF32_SUSPECT = 1e-4  # fp32 matmul error above this means TF32 (10-bit mantissa)
# With TF32 on, a K=1024 product's worst element is off by ~1e-4 (measured
# 7.3e-5 on an H200); true fp32 stays near 1e-6. Under this, TF32 is off.
TF32_ON = 1e-5


# --- statistics (as internal/stats) ---------------------------------------

def percentile(sorted_xs, p):
    """p-th percentile of an ascending list, linear interpolation between closest ranks."""
    n = len(sorted_xs)
    if n == 1:
        return sorted_xs[0]
    h = (n - 1) * p / 100.0
    lo = math.floor(h)
    if lo >= n - 1:
        return sorted_xs[-1]
    return sorted_xs[lo] + (h - lo) * (sorted_xs[lo + 1] - sorted_xs[lo])


def summarize(xs):
    """n, median, mean, min, max, p90, std (Bessel) of a non-empty sample."""
    if not xs:
        raise ValueError("empty sample")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError("sample holds a value that is not finite")
    s = sorted(xs)
    n = len(s)
    mean = sum(s) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in s) / (n - 1)) if n > 1 else 0.0
    return {"n": n, "median": percentile(s, 50), "mean": mean, "min": s[0], "max": s[-1],
            "p90": percentile(s, 90), "std": std}


# --- counted FLOPs (as internal/flops.Count) ------------------------------

def counted_flops(V, T, L, NH, C, B):
    """(forward, backward) FLOPs of one iteration, by gpubench's counting rules."""
    N = B * T
    hs = C // NH
    BH = B * NH
    fwd = bwd = 0

    def elem(n, f, b):
        return n * f, n * b

    def linear(times, ic, oc, bias):
        mm = times * 2 * N * ic * oc
        extra = times * N * oc if bias else 0
        return mm + extra, 2 * mm + extra

    live = T * (T + 1) // 2
    causal_mm = 2 * hs * live * BH
    parts = [
        elem(N * C, 1, 2),                      # encoder
        elem(L * N * C, 8, 14),                 # ln1
        linear(L, C, 3 * C, True),              # qkv
        (L * 2 * causal_mm, L * 5 * causal_mm),  # attention matmuls
        (L * BH * (5 * live + T * (hs + 2)), L * BH * (6 * live + T * 2 * hs)),  # attention softmax
        linear(L, C, C, True),                  # attproj
        elem(2 * L * N * C, 1, 1),              # residuals
        elem(L * N * C, 8, 14),                 # ln2
        linear(L, C, 4 * C, True),              # fc
        elem(L * N * 4 * C, 9, 20),             # gelu
        linear(L, 4 * C, C, True),              # fcproj
        elem(N * C, 8, 14),                     # lnf
        linear(1, C, V, False),                 # lm_head
        elem(N * V, 4, 4),                      # cross-entropy
    ]
    for f, b in parts:
        fwd += f
        bwd += b
    return fwd, bwd


# --- the benchmark --------------------------------------------------------

def setup_precision(torch):
    """fp32 everywhere: no TF32 in cuBLAS matmuls or cuDNN.

    Only the legacy switches are written (allow_tf32 False, matmul precision
    'highest'): torch 2.9+ warns that they are deprecated but maps them onto
    its fp32_precision state, while writing both APIs can make either API's
    getters raise "mix of the legacy and new APIs". measure_matmul_error()
    checks the outcome.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 2.9+: legacy TF32 API deprecation notice
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")


def precision_state(torch):
    """What the TF32 switches read back (None where a getter is missing or refuses)."""
    import warnings

    def get(fn):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return fn()
        except Exception:  # noqa: BLE001 - a diagnostic read; old torch asserts on unknown names
            return None

    return {
        "matmul_allow_tf32": get(lambda: torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": get(lambda: torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": get(torch.get_float32_matmul_precision),
        "matmul_fp32_precision": get(lambda: torch.backends.cuda.matmul.fp32_precision),
        "cudnn_fp32_precision": get(lambda: torch.backends.cudnn.fp32_precision),
    }


def measure_matmul_error(torch, device, n=1024):
    """Max error of an fp32 matmul against float64, relative to |A|@|B|: about
    1e-7..1e-6 in true fp32, about 1e-3 if cuBLAS used TF32."""
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    a = torch.randn(n, n, device=device, generator=gen)
    b = torch.randn(n, n, device=device, generator=gen)
    got = (a @ b).double()
    ref = a.double() @ b.double()
    scale = a.double().abs() @ b.double().abs()
    return float(((got - ref).abs() / scale).max())


class CudaTimer:
    """Three CUDA events per iteration, read after the loop."""

    def __init__(self, torch, iters):
        self.torch = torch
        mk = lambda: [torch.cuda.Event(enable_timing=True) for _ in range(iters)]  # noqa: E731
        self.start, self.fwd_end, self.bwd_end = mk(), mk(), mk()

    def mark(self, which, i):
        getattr(self, which)[i].record()

    def sync(self):
        self.torch.cuda.synchronize()

    def elapsed(self, a, b, i):
        return getattr(self, a)[i].elapsed_time(getattr(self, b)[i])


class HostTimer:
    """perf_counter marks, for a CPU smoke run (--device cpu)."""

    def __init__(self, torch, iters):
        self.t = {k: [0.0] * iters for k in ("start", "fwd_end", "bwd_end")}

    def mark(self, which, i):
        self.t[which][i] = time.perf_counter()

    def sync(self):
        pass

    def elapsed(self, a, b, i):
        return (self.t[b][i] - self.t[a][i]) * 1e3


def run_preset(torch, preset, batch, iters, warmup, mode, attention, seed, device, graph=False, dtype="fp32", compile_=False):
    """One benchmark run; returns the result dict (JSON-ready). With graph,
    the whole step (gradients zeroed, forward, backward) is captured once as
    a torch.cuda.CUDAGraph and replayed: PyTorch's own answer to launch
    overhead. Only step_ms is then meaningful (the passes are one replay)."""
    p = PRESETS[preset]
    cfg = GPT2Config.preset(preset)
    B, T = batch, p["T"]
    train = mode == "train"
    cuda = device.type == "cuda"

    gc.collect()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)

    # bf16: the model's parameters in bfloat16 (as gpubench --dtype=bf16
    # stores them); fp32 and tf32: float32 parameters, tf32 with TF32
    # allowed in matmuls (set in main).
    model = GPT2(cfg, attention=attention, device=device,
                 dtype=torch.bfloat16 if dtype == "bf16" else torch.float32, seed=seed)
    model.train()
    if compile_:
        # torch.compile's default mode (Inductor, Triton kernels); the
        # warm-up iterations absorb the compilation.
        model = torch.compile(model)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed + 1)
    tokens = torch.randint(0, cfg.V, (B, T), device=device, generator=gen)
    targets = torch.randint(0, cfg.V, (B, T), device=device, generator=gen)
    params_bytes = sum(q.numel() * q.element_size() for q in model.parameters())
    if cuda:
        torch.cuda.synchronize(device)
        resident = torch.cuda.memory_allocated(device) - baseline

    def forward_backward(timer=None, i=0):
        model.zero_grad(set_to_none=True)  # outside the timed region
        if timer:
            timer.mark("start", i)
        if train:
            _, loss = model(tokens, targets)
            if timer:
                timer.mark("fwd_end", i)
            loss.backward()
            if timer:
                timer.mark("bwd_end", i)
        else:
            with torch.no_grad():
                _, loss = model(tokens, targets)
            if timer:
                timer.mark("fwd_end", i)
        return loss

    if graph:
        if not cuda:
            raise ValueError("--graph needs a CUDA device")

        def step_once():
            model.zero_grad(set_to_none=False)  # a kernel, so the graph holds it
            if train:
                _, l = model(tokens, targets)
                l.backward()
            else:
                with torch.no_grad():
                    _, l = model(tokens, targets)
            return l

        # Warm up on a side stream (the recipe of torch.cuda.graphs), so
        # the allocator and autograd state are settled before capture.
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(max(warmup, 3)):
                step_once()
        torch.cuda.current_stream(device).wait_stream(side)
        cuda_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cuda_graph):
            static_loss = step_once()

        def forward_backward(timer=None, i=0):  # noqa: F811 (the graph's step)
            if timer:
                timer.mark("start", i)
            cuda_graph.replay()
            if timer:
                timer.mark("fwd_end", i)
                if train:
                    timer.mark("bwd_end", i)
            return static_loss

        for _ in range(warmup):
            forward_backward()
    else:
        for _ in range(warmup):
            forward_backward()
    if cuda:
        torch.cuda.synchronize(device)
        peak_before_timed = torch.cuda.max_memory_allocated(device)
        reserved_before_timed = torch.cuda.max_memory_reserved(device)
        torch.cuda.reset_peak_memory_stats(device)

    timer = (CudaTimer if cuda else HostTimer)(torch, iters)
    walls, losses = [], []
    for i in range(iters):
        t0 = time.perf_counter()
        loss = forward_backward(timer, i)
        timer.sync()
        walls.append((time.perf_counter() - t0) * 1e3)
        losses.append(float(loss.detach()))

    grads_bytes = sum(q.grad.numel() * q.grad.element_size() for q in model.parameters() if q.grad is not None)
    iterations = []
    for i in range(iters):
        fwd = timer.elapsed("start", "fwd_end", i)
        it = {"index": i, "forward_ms": fwd, "step_ms": fwd, "wall_ms": walls[i], "loss": losses[i]}
        if train:
            it["backward_ms"] = timer.elapsed("fwd_end", "bwd_end", i)
            it["step_ms"] = timer.elapsed("start", "bwd_end", i)
        iterations.append(it)

    summary = {"forward_ms": summarize([it["forward_ms"] for it in iterations])}
    if train:
        summary["backward_ms"] = summarize([it["backward_ms"] for it in iterations])
    summary["step_ms"] = summarize([it["step_ms"] for it in iterations])
    summary["wall_ms"] = summarize([it["wall_ms"] for it in iterations])

    fl_fwd, fl_bwd = counted_flops(cfg.V, T, cfg.L, cfg.NH, cfg.C, B)
    flops_per_iter = fl_fwd + fl_bwd if train else fl_fwd
    step_s = summary["step_ms"]["median"] / 1e3
    memory = {"params_bytes": params_bytes, "grads_bytes": grads_bytes}
    if cuda:
        peak_timed = torch.cuda.max_memory_allocated(device)
        memory.update({
            "peak_bytes": max(peak_before_timed, peak_timed) - baseline,
            "peak_timed_bytes": peak_timed - baseline,
            "resident_bytes": resident,
            "peak_reserved_bytes": max(reserved_before_timed, torch.cuda.max_memory_reserved(device)),
            "baseline_bytes": baseline,
            "source": "torch.cuda.max_memory_allocated (live tensors; excludes the CUDA context "
                      "and allocator slack); peak_bytes spans the whole run incl. params, grads, "
                      "warm-up; peak_timed_bytes only the timed iterations (reset after warm-up)",
        })

    result = {
        "tool": "torch_bench",
        "schema_version": SCHEMA_VERSION,
        "config": {
            "model": preset,
            "dims": {"vocab": cfg.V, "context": cfg.MaxT, "seq_len": T, "layers": cfg.L,
                     "heads": cfg.NH, "channels": cfg.C, "batch_size": B},
            "mode": mode, "iters": iters, "warmup": warmup, "seed": seed,
            "attention": attention, "dtype": {"fp32": "float32", "tf32": "float32 (TF32 matmuls)", "bf16": "bfloat16"}[dtype],
            "gpubench_dtype": dtype, "compile": compile_, "train_module_mode": True,
            "cuda_graph": graph,
            "zero_grad": ("set_to_none=False inside the captured graph" if graph else
                          "set_to_none=True before each iteration, outside the timed region"),
        },
        "iterations": iterations,
        "summary": summary,
        "tokens_per_iter": B * T,
        "tokens_per_s": B * T / step_s if step_s > 0 else 0.0,
        "num_params": num_params(cfg),
        "flops_per_iter": flops_per_iter,
        "tflops": flops_per_iter / step_s / 1e12 if step_s > 0 else 0.0,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "memory": memory,
    }
    del model, tokens, targets, loss
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def environment(torch, device):
    env = {
        "versions": {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "python": platform.python_version(),
        },
        "precision": precision_state(torch),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["device"] = {"index": device.index if device.index is not None else torch.cuda.current_device(),
                         "name": props.name, "cc_major": props.major, "cc_minor": props.minor,
                         "sms": props.multi_processor_count, "memory_bytes": props.total_memory}
    else:
        env["device"] = {"name": f"cpu ({platform.processor() or platform.machine()})"}
    return env


# --- output ---------------------------------------------------------------

def print_run(r, env, out=sys.stdout):
    c, d = r["config"], r["config"]["dims"]
    w = lambda s: print(s, file=out)  # noqa: E731
    w(f"torch_bench {c['model']} {c['mode']}: V={d['vocab']} T={d['seq_len']} L={d['layers']} "
      f"H={d['heads']} C={d['channels']} B={d['batch_size']}, attention={c['attention']}, "
      f"fp32 (TF32 off), eager")
    v = env["versions"]
    w(f"device {env['device']['name']}, torch {v['torch']}, CUDA {v['cuda']}")
    n = r["summary"]["step_ms"]["n"]
    w(f"{'(ms, n=' + str(n) + ')':<14}{'median':>10}{'mean':>10}{'min':>10}{'max':>10}{'p90':>10}{'std':>10}")
    for key in ("forward_ms", "backward_ms", "step_ms", "wall_ms"):
        s = r["summary"].get(key)
        if s is None:
            continue
        w(f"{key[:-3]:<14}" + "".join(f"{s[k]:10.3f}" for k in ("median", "mean", "min", "max", "p90", "std")))
    w(f"tokens/s {r['tokens_per_s']:,.0f}   TFLOP/s {r['tflops']:.2f} (gpubench's counted FLOPs, "
      f"{r['flops_per_iter'] / 1e9:.2f} GFLOP/iter)   loss {r['loss_first']:.4f} -> {r['loss_last']:.4f}")
    m = r["memory"]
    if "peak_bytes" in m:
        w(f"memory: peak {m['peak_bytes'] / MIB:.1f} MiB (whole run: params+grads+activations+workspace; "
          f"compare gpubench peak), timed-iterations peak {m['peak_timed_bytes'] / MIB:.1f} MiB")
        w(f"        params {m['params_bytes'] / MIB:.1f} MiB, grads {m['grads_bytes'] / MIB:.1f} MiB, "
          f"resident before warm-up {m['resident_bytes'] / MIB:.1f} MiB, "
          f"allocator reserved peak {m['peak_reserved_bytes'] / MIB:.1f} MiB")


def print_combined(runs, env, out=sys.stdout):
    w = lambda s: print(s, file=out)  # noqa: E731
    v = env["versions"]
    w(f"torch_bench --all: device {env['device']['name']}, torch {v['torch']}, CUDA {v['cuda']}, "
      f"fp32 (TF32 off), eager, medians in ms")
    hdr = (f"{'model':<10}{'mode':>6}{'B':>4}{'T':>6}{'attn':>7}{'fwd':>11}{'bwd':>11}{'step':>11}"
           f"{'p90 step':>11}{'tokens/s':>13}{'TFLOP/s':>9}{'peak MiB':>10}{'timed MiB':>10}")
    w(hdr)
    w("-" * len(hdr))
    for r in runs:
        c, d, s, m = r["config"], r["config"]["dims"], r["summary"], r["memory"]
        bwd = s["backward_ms"]["median"] if "backward_ms" in s else float("nan")
        peak = f"{m['peak_bytes'] / MIB:10.1f}" if "peak_bytes" in m else f"{'-':>10}"
        timed = f"{m['peak_timed_bytes'] / MIB:10.1f}" if "peak_timed_bytes" in m else f"{'-':>10}"
        w(f"{c['model']:<10}{c['mode']:>6}{d['batch_size']:>4}{d['seq_len']:>6}{c['attention']:>7}"
          f"{s['forward_ms']['median']:11.3f}{bwd:11.3f}{s['step_ms']['median']:11.3f}"
          f"{s['step_ms']['p90']:11.3f}{r['tokens_per_s']:13,.0f}{r['tflops']:9.2f}{peak}{timed}")
    w("peak MiB: max_memory_allocated over the whole run (params+grads+activations), as gpubench's peak; "
      "timed MiB: over the timed iterations only")


# --- main -----------------------------------------------------------------

def positive(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} is not allowed (must be at least 1)")
    return v


def non_negative(s):
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} is not allowed (must be at least 0)")
    return v


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--model", default="small", choices=tuple(PRESETS), help="model preset (default small)")
    ap.add_argument("--all", action="store_true",
                    help="run tiny, small and gpt2-124m in sequence (train) and print one combined table")
    ap.add_argument("--batch-size", type=positive, default=8, help="sequences per batch (default 8)")
    ap.add_argument("--iters", type=positive, default=10, help="timed iterations (default 10)")
    ap.add_argument("--warmup", type=non_negative, default=3, help="untimed iterations first (default 3)")
    ap.add_argument("--mode", default="train", choices=("train", "infer"),
                    help="train: forward+backward; infer: forward under no_grad (default train)")
    ap.add_argument("--attention", default="sdpa", choices=ATTENTIONS,
                    help="sdpa: F.scaled_dot_product_attention(is_causal=True); manual: explicit softmax")
    ap.add_argument("--seed", type=int, default=1337, help="seed of the init and the random tokens")
    ap.add_argument("--device", default="cuda",
                    help="cuda, cuda:N, or cpu (a smoke test only: host-clock timings, no memory numbers)")
    ap.add_argument("--graph", action="store_true",
                    help="capture the whole step once as a CUDA graph and replay it (only step_ms is then meaningful)")
    ap.add_argument("--compile", action="store_true",
                    help="run the model through torch.compile (default mode) instead of eagerly; the warm-up absorbs the compilation")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "tf32", "bf16"),
                    help="fp32 (TF32 off, default), tf32 (fp32 model, TF32 matmuls allowed) or bf16 (bfloat16 model)")
    ap.add_argument("--json", metavar="FILE", help="write the result(s) as JSON here")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch
    except ImportError as e:
        print(f"torch_bench: needs PyTorch: {e}", file=sys.stderr)
        return 2

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("torch_bench: CUDA is not available (use --device cpu for a smoke test)", file=sys.stderr)
            return 2
        if device.index is not None:
            torch.cuda.set_device(device)
    if args.attention == "sdpa" and not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        print(f"torch_bench: torch {torch.__version__} has no scaled_dot_product_attention "
              "(use --attention manual)", file=sys.stderr)
        return 2
    setup_precision(torch)
    if args.dtype == "tf32":
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.set_float32_matmul_precision("high")
    env = environment(torch, device)
    err = measure_matmul_error(torch, device)
    env["precision"]["matmul_max_rel_error"] = err
    if args.dtype == "tf32" and err <= TF32_ON and device.type == "cuda":
        print(f"torch_bench: --dtype tf32 but an fp32 matmul has relative error {err:.2e}: TF32 is not on "
              f"({env['precision']}); refusing to report", file=sys.stderr)
        return 1
    if args.dtype == "fp32" and err > TF32_SUSPECT:
        print(f"torch_bench: an fp32 matmul has relative error {err:.2e} (> {TF32_SUSPECT:g}): TF32 seems "
              f"to be on ({env['precision']}); refusing to report", file=sys.stderr)
        return 1

    presets = list(PRESETS) if args.all else [args.model]
    mode = "train" if args.all else args.mode
    oom = getattr(torch.cuda, "OutOfMemoryError", MemoryError)
    runs = []
    for name in presets:
        try:
            r = run_preset(torch, name, args.batch_size, args.iters, args.warmup, mode,
                           args.attention, args.seed, device, graph=args.graph, dtype=args.dtype,
                           compile_=args.compile)
        except oom as e:
            print(f"torch_bench: {name}: {e}", file=sys.stderr)
            return 1
        r.update(env)
        runs.append(r)
        if not args.all:
            print_run(r, env)
        else:
            print(f"{name}: step median {r['summary']['step_ms']['median']:.3f} ms", file=sys.stderr)
    if args.all:
        print_combined(runs, env)

    if args.json:
        doc = {"tool": "torch_bench", "schema_version": SCHEMA_VERSION, "runs": runs, **env} if args.all else runs[0]
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
