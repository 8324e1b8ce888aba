#!/usr/bin/env python3
"""Hold a gpubench LLaMA dump to Hugging Face transformers.

gpubench --model=llama-... --mode=generate --dump DIR writes DIR/config.json
and DIR/model.safetensors in Hugging Face's Llama layout, and
DIR/gpubench_outputs.safetensors with what the GPU computed from them:

  tokens     (B,T) int32   the prompts
  logits     (B,V) float32 each prompt's last position (the prefill's head)
  generated  (B,N) int32   the greedy tokens (generate mode only)

This script loads DIR with LlamaForCausalLM.from_pretrained on the GPU, in
the dump's dtype (float32 runs with TF32 off), and checks:

  logits     max|HF - gpubench| / max|HF| <= 1e-4 (float32) or 3e-2 (bfloat16)
  generated  HF's greedy generation (use_cache=True) gives the same tokens.
             In float32 every token must match. In bfloat16 the two may part
             at a near-tie: the check passes up to the first step where they
             differ if HF's own top two logits there are within
             2e-2 * max|logit| (the step is reported), and fails otherwise.

One line per check, a summary last; exit 0 when every check passed, 1 when
one failed, 2 on bad usage.

Usage: HF_HUB_OFFLINE=1 python3 scripts/llama_hf_check.py DIR
"""

import json
import os
import sys


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        print("usage: llama_hf_check.py DIR (a gpubench --dump of a LLaMA)", file=sys.stderr)
        sys.exit(2)
    d = sys.argv[1]
    import torch
    from safetensors.torch import load_file
    from transformers import LlamaForCausalLM

    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    bf16 = cfg.get("torch_dtype") == "bfloat16"
    dtype = torch.bfloat16 if bf16 else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = LlamaForCausalLM.from_pretrained(d, torch_dtype=dtype).cuda().eval()
    out = load_file(os.path.join(d, "gpubench_outputs.safetensors"))
    tokens = out["tokens"].long().cuda()
    ours = out["logits"].float().cuda()
    B, T = tokens.shape
    results = []

    def verdict(name, ok, detail):
        results.append(ok)
        print(f"{'ok  ' if ok else 'FAIL'}  {name}: {detail}")

    with torch.inference_mode():
        hf = model(tokens).logits[:, -1, :].float()
        err = ((hf - ours).abs().max() / hf.abs().max()).item()
        tol = 3e-2 if bf16 else 1e-4
        verdict("last-position logits", err <= tol, f"max|HF-gpubench|/max|HF| = {err:.2e} (limit {tol:g}), B={B} T={T}")

        if "generated" in out:
            gen = out["generated"].long().cuda()
            N = gen.shape[1]
            g = model.generate(tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=N, min_new_tokens=N,
                               do_sample=False, use_cache=True, eos_token_id=None, pad_token_id=0,
                               output_logits=True, return_dict_in_generate=True)
            hf_tok = g.sequences[:, T:]
            for b in range(B):
                diff = (hf_tok[b] != gen[b]).nonzero()
                if len(diff) == 0:
                    verdict(f"sequence {b} tokens", True, f"all {N} match")
                    continue
                j = diff[0].item()
                lg = g.logits[j][b].float()
                top2 = lg.topk(2).values
                gap = (top2[0] - top2[1]).item()
                near = gap <= 2e-2 * lg.abs().max().item()
                ok = bf16 and near
                verdict(f"sequence {b} tokens", ok,
                        f"first {j} of {N} match; at step {j} HF {hf_tok[b, j].item()} vs gpubench {gen[b, j].item()}, "
                        f"HF's top-2 gap {gap:.3g} ({'a near-tie' if near else 'not a tie'})")
    failed = results.count(False)
    print(f"llama_hf_check {d}: {len(results) - failed} of {len(results)} checks passed"
          f" ({'bfloat16' if bf16 else 'float32'}, transformers {__import__('transformers').__version__})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
