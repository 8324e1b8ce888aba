#!/usr/bin/env python3
"""cuBLAS, through PyTorch, on the linear layers' three products.

The baseline of docs/matmul.md's tables: for each shape (n, c, oc, ld) the
forward F.linear(inp, w, bias), the input gradient dout @ w and the weight
gradient dout.t() @ inp, with dout an (n, oc) view of an (n, ld) tensor as
gpubench keeps the lm head's padded vocabulary, and 8192^3. Median of 30
bursts of 10 back-to-back launches between CUDA events (per launch), after
5 warm-up ones, on random inputs.
Run it in the same device call as kernels.test's BenchmarkMatmulWGMMA and
BenchmarkMatmulMMA:

    python3 scripts/cublas_bench.py [--dtype bf16|tf32]
"""
import argparse
import statistics

import torch
import torch.nn.functional as F

SHAPES = [
    ("qkv", 8192, 768, 2304, 2304),
    ("attproj", 8192, 768, 768, 768),
    ("fc", 8192, 768, 3072, 3072),
    ("fcproj", 8192, 3072, 768, 768),
    ("lmhead", 8192, 768, 50257, 50304),
    ("8192^3", 8192, 8192, 8192, 8192),
    ("s.qkv", 2048, 512, 1536, 1536),
    ("s.fc", 2048, 512, 2048, 2048),
    ("s.fcproj", 2048, 2048, 512, 512),
]


def median_seconds(f, reps=30, warmup=5, burst=10):
    """The median over reps of a burst of back-to-back launches between two
    events, divided by the burst: PyTorch's per-call host cost (~10-20 us)
    would otherwise bound the small products, whose kernels take less."""
    for _ in range(warmup):
        f()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for s, e in zip(starts, ends):
        s.record()
        for _ in range(burst):
            f()
        e.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends)) / 1e3 / burst


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=["bf16", "tf32"], default="bf16")
    args = ap.parse_args()
    dt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = args.dtype == "tf32"
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(1)
    print(f"# cuBLAS through torch {torch.__version__} on {torch.cuda.get_device_name()}, {args.dtype}")
    for name, n, c, oc, ld in SHAPES:
        inp = torch.randn(n, c, device=dev, dtype=dt, generator=g)
        w = torch.randn(oc, c, device=dev, dtype=dt, generator=g)
        b = torch.randn(oc, device=dev, dtype=dt, generator=g)
        dout = torch.randn(n, ld, device=dev, dtype=dt, generator=g)[:, :oc]
        flop = 2 * n * c * oc
        for prod, f in (
            ("forward", lambda: F.linear(inp, w, b)),
            ("backward_input", lambda: dout @ w),
            ("backward_weight", lambda: dout.t() @ inp),
        ):
            sec = median_seconds(f)
            print(f"CUBLAS {args.dtype} {name:<8} {prod:<16} n={n} c={c} oc={oc} ld={ld}  {sec * 1e6:8.1f} us  {flop / sec / 1e12:6.1f} TFLOP/s")
        del inp, w, b, dout
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
