#!/usr/bin/env python3
"""Hugging Face baseline for gpubench's generate table: a LLaMA of a preset's
shape with random weights, greedy generation of a batch, timed as gpubench
times its own generate iteration.

The model is transformers' LlamaForCausalLM(LlamaConfig(...)) built without
a download (HF_HUB_OFFLINE=1), in bfloat16 (or float32 with TF32 off), on
random prompt tokens. Two measurements, each with CUDA events:

  prefill   model(prompt, use_cache=True) on the B prompts of T tokens: the
            forward that fills the cache (all T rows' logits, as HF does)
  decode    generate(max_new_tokens=N) minus its prefill, divided by its N-1
            decode steps, with
              --cache dynamic   the default DynamicCache, eager
              --cache static    cache_implementation="static", which
                                generate compiles (torch.compile) by itself

A warm-up generate runs first (it is where torch.compile spends its time)
and is not reported. Each measurement is the median of --iters runs.

Usage:
  HF_HUB_OFFLINE=1 python3 scripts/hf_llama_bench.py --model llama2-7b \
      [--batch-size 8] [--prompt-len 512] [--new-tokens 64] \
      [--cache dynamic|static] [--dtype bf16|fp32] [--iters 3] [--json FILE]
"""

import argparse
import json
import os
import statistics
import sys
import time

# The presets of internal/config (config.go), by name.
PRESETS = {
    "llama-tiny": dict(vocab_size=512, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=352, rms_norm_eps=1e-5, rope_theta=1e4,
                       max_position_embeddings=64),
    "llama2-7b": dict(vocab_size=32000, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32, intermediate_size=11008, rms_norm_eps=1e-5, rope_theta=1e4,
                      max_position_embeddings=4096),
    "llama3-8b": dict(vocab_size=128256, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, intermediate_size=14336, rms_norm_eps=1e-5, rope_theta=5e5,
                      max_position_embeddings=8192),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="llama2-7b", choices=sorted(PRESETS))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--cache", default="static", choices=["dynamic", "static"])
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.new_tokens < 2 or a.prompt_len < 1 or a.batch_size < 1 or a.iters < 1:
        print("hf_llama_bench: --new-tokens must be at least 2, the others at least 1", file=sys.stderr)
        sys.exit(2)

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    cfg = LlamaConfig(**PRESETS[a.model], tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                      bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(dtype).eval()
    prompt = torch.randint(0, cfg.vocab_size, (a.batch_size, a.prompt_len), device="cuda")
    gen_kw = dict(max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False, use_cache=True,
                  eos_token_id=None, pad_token_id=0)
    if a.cache == "static":
        gen_kw["cache_implementation"] = "static"

    def timed(fn):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        return s.elapsed_time(e)

    with torch.inference_mode():
        t0 = time.time()
        out = model.generate(prompt, **gen_kw)  # warm-up: compiles with the static cache
        warm_s = time.time() - t0
        assert out.shape[1] == a.prompt_len + a.new_tokens, out.shape
        prefill, total = [], []
        for _ in range(a.iters):
            prefill.append(timed(lambda: model(prompt, use_cache=True)))
            total.append(timed(lambda: model.generate(prompt, **gen_kw)))
    pre = statistics.median(prefill)
    tot = statistics.median(total)
    decode = (tot - pre) / (a.new_tokens - 1)
    res = dict(model=a.model, batch=a.batch_size, prompt_len=a.prompt_len, new_tokens=a.new_tokens, cache=a.cache,
               dtype=a.dtype, prefill_ms=pre, generate_ms=tot, decode_step_ms=decode, warmup_s=warm_s,
               torch=torch.__version__, transformers=__import__("transformers").__version__,
               device=torch.cuda.get_device_name(), peak_bytes=torch.cuda.max_memory_allocated())
    print(f"hf {a.model} {a.dtype} batch {a.batch_size} prompt {a.prompt_len} new {a.new_tokens} cache {a.cache}: "
          f"prefill {pre:.2f} ms, generate {tot:.1f} ms, decode step {decode:.3f} ms (warm-up {warm_s:.0f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
