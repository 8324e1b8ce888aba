#!/usr/bin/env python3
"""Check a gpubench dump against the same GPT-2 built in PyTorch (float64).

A dump directory holds one forward+backward step of the gpubench model:

    config.json          {"V", "MaxT", "T", "L", "NH", "C", "B"}
    params.safetensors   wte (V,C), wpe (MaxT,C), ln1w (L,C), ln1b (L,C),
                         qkvw (L,3C,C), qkvb (L,3C), attprojw (L,C,C),
                         attprojb (L,C), ln2w (L,C), ln2b (L,C), fcw (L,4C,C),
                         fcb (L,4C), fcprojw (L,C,4C), fcprojb (L,C),
                         lnfw (C), lnfb (C)                          [float32]
    inputs.safetensors   tokens, targets (B,T)                         [int32]
    outputs.safetensors  loss (scalar or [1]), logits (B,T,V)        [float32]
    grads.safetensors    the gradient of the mean loss, named as the params

This script loads the parameters, runs the model forward and backward in
float64 with autograd (on the GPU if there is one), and compares: the loss
(relative error), the logits (max |error| / max |logit|) and each gradient
tensor (||g - g_ref|| / ||g_ref||). It exits 1 if the loss or any gradient is
over its tolerance (or the logits, if --logits-tol is given), and 2 if the dump
is malformed.

The model (nanoGPT / llm.c GPT-2): x = wte[tok] + wpe[t]; L pre-LN blocks
x += attproj(causal_attention(qkv(LN1(x)))); x += fcproj(gelu_tanh(fc(LN2(x))));
logits = LNf(x) @ wte^T; loss = mean cross-entropy. Linear weights are
(out, in) as in nn.Linear; the qkv output is [q | k | v], head h using columns
h*hs:(h+1)*hs of each; LayerNorm eps is 1e-5. The model itself is
gpt2_torch.GPT2 (beside this script), with the explicit-softmax attention by
default (--attention sdpa uses torch's scaled_dot_product_attention).

A bf16 dump (BF16 params, logits and gradients, from --dtype=bf16) is held
to PyTorch's own bf16 step instead of fixed fp32 tolerances: the same model
is also run in torch.bfloat16 on the same parameters, both are compared
with the float64 reference, and each of gpubench's errors must be at most
--bf16-factor (default 2) times PyTorch's bf16 error, or under the
--bf16-floor (default 1e-2), whichever is larger.

Usage: python3 scripts/torch_check.py DUMP_DIR [--loss-tol 1e-5] [--grad-tol 1e-4]
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_torch import CONFIG_KEYS, GPT2, PARAM_NAMES, param_shapes  # noqa: E402  (imports without torch)


class DumpError(Exception):
    """The dump directory is missing something or is inconsistent."""


def load_config(dump_dir):
    path = os.path.join(dump_dir, "config.json")
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise DumpError(f"{path}: {e}") from e
    missing = [k for k in CONFIG_KEYS if k not in raw]
    if missing:
        raise DumpError(f"{path}: missing {', '.join(missing)}")
    cfg = {k: int(raw[k]) for k in CONFIG_KEYS}
    if cfg["T"] > cfg["MaxT"] or cfg["C"] % cfg["NH"] != 0:
        raise DumpError(f"{path}: inconsistent config {cfg}")
    return cfg


def load_tensors(dump_dir, name, load_file):
    path = os.path.join(dump_dir, name)
    if not os.path.exists(path):
        raise DumpError(f"{path}: no such file")
    return load_file(path)


def checked(tensors, file, name, shape):
    """tensors[name], whose shape must be `shape` (None: any)."""
    if name not in tensors:
        raise DumpError(f"{file}: no tensor {name!r}")
    t = tensors[name]
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise DumpError(f"{file}: {name} has shape {tuple(t.shape)}, want {tuple(shape)}")
    return t


def load_dump(dump_dir, torch, load_file):
    """Returns cfg, params, tokens, targets, loss, logits (or None), grads."""
    cfg = load_config(dump_dir)
    shapes = param_shapes(cfg)
    B, T, V = cfg["B"], cfg["T"], cfg["V"]

    params_st = load_tensors(dump_dir, "params.safetensors", load_file)
    grads_st = load_tensors(dump_dir, "grads.safetensors", load_file)
    params = {n: checked(params_st, "params.safetensors", n, shapes[n]) for n in PARAM_NAMES}
    grads = {n: checked(grads_st, "grads.safetensors", n, shapes[n]) for n in PARAM_NAMES}

    inputs = load_tensors(dump_dir, "inputs.safetensors", load_file)
    tokens = checked(inputs, "inputs.safetensors", "tokens", (B, T)).long()
    targets = checked(inputs, "inputs.safetensors", "targets", (B, T)).long()
    for name, t in (("tokens", tokens), ("targets", targets)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= V):
            raise DumpError(f"inputs.safetensors: {name} outside [0, {V})")

    outputs = load_tensors(dump_dir, "outputs.safetensors", load_file)
    loss_t = checked(outputs, "outputs.safetensors", "loss", None)
    if loss_t.numel() != 1:
        raise DumpError(f"outputs.safetensors: loss has shape {tuple(loss_t.shape)}, want [] or [1]")
    loss = float(loss_t.reshape(-1)[0].double())
    logits = None
    if "logits" in outputs:
        logits = checked(outputs, "outputs.safetensors", "logits", (B, T, V))
    return cfg, params, tokens, targets, loss, logits, grads


def reference(params, tokens, targets, cfg, device, torch, attention="manual"):
    """Float64 loss, logits and gradients (gpubench's layout) from autograd."""
    model = GPT2(cfg, attention=attention, device=device, dtype=torch.float64)
    model.load_layout(params)
    logits, loss = model(tokens.to(device), targets.to(device))
    loss.backward()
    return float(loss.detach()), logits.detach(), model.layout_grads()


def rel_norm_err(got, ref):
    """||got - ref|| / ||ref|| (the absolute error ||got|| if ref is all zero)."""
    diff = float((got - ref).norm())
    denom = float(ref.norm())
    return diff / denom if denom > 0 else diff


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump_dir", help="directory with config.json and the *.safetensors files")
    ap.add_argument("--loss-tol", type=float, default=1e-5, help="max loss relative error (default 1e-5)")
    ap.add_argument("--grad-tol", type=float, default=1e-4,
                    help="max per-tensor ||g - g_ref|| / ||g_ref|| (default 1e-4)")
    ap.add_argument("--logits-tol", type=float, default=None,
                    help="max logits error, max|l - l_ref| / max|l_ref| (default: report only)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    ap.add_argument("--attention", default="manual", choices=("manual", "sdpa"),
                    help="attention of the float64 model: manual (explicit softmax, default) or sdpa")
    ap.add_argument("--bf16-factor", type=float, default=2.0,
                    help="bf16 dump: allowed multiple of PyTorch bf16's own error (default 2)")
    ap.add_argument("--bf16-floor", type=float, default=1e-2,
                    help="bf16 dump: an error under this always passes (default 1e-2)")
    return ap.parse_args(argv)


def torch_bf16(params, tokens, targets, cfg, device, torch):
    """PyTorch's own bf16 step on the same (bf16) parameters: loss, logits
    and gradients, for the yardstick of a bf16 dump."""
    model = GPT2(cfg, attention="sdpa", device=device, dtype=torch.bfloat16)
    model.load_layout(params)
    logits, loss = model(tokens.to(device), targets.to(device))
    loss.backward()
    grads = {n: g.double() for n, g in model.layout_grads().items()}
    return float(loss.detach().double()), logits.detach().double(), grads


def main(argv=None):
    args = parse_args(argv)
    import torch
    from safetensors.torch import load_file

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)

    try:
        cfg, params, tokens, targets, loss, logits, grads = load_dump(args.dump_dir, torch, load_file)
    except DumpError as e:
        print(f"torch_check: bad dump: {e}", file=sys.stderr)
        return 2

    ref_loss, ref_logits, ref_grads = reference(params, tokens, targets, cfg, device, torch, args.attention)
    is_bf16 = params["wte"].dtype == torch.bfloat16
    print(f"config {cfg}, device {device}, attention {args.attention}, dump {'bf16' if is_bf16 else 'fp32'}")

    # tol(name, torch_err) is the bound for one compared quantity: fixed
    # for an fp32 dump; for a bf16 one, a multiple of PyTorch bf16's own
    # error against the same float64 reference (or the floor).
    yard = None
    if is_bf16:
        b_loss, b_logits, b_grads = torch_bf16(params, tokens, targets, cfg, device, torch)
        yard = {"loss": abs(b_loss - ref_loss) / abs(ref_loss) if ref_loss != 0 else abs(b_loss)}
        yard["logits"] = float((b_logits - ref_logits).abs().max()) / max(float(ref_logits.abs().max()), 1e-30)
        for name in PARAM_NAMES:
            yard[name] = rel_norm_err(b_grads[name], ref_grads[name])

    def tol(name, fixed):
        if yard is None:
            return fixed
        return max(args.bf16_factor * yard[name], args.bf16_floor)

    def yard_note(name):
        return "" if yard is None else f"  torch bf16 {yard[name]:.3e}"

    failed = []
    loss_err = abs(loss - ref_loss) / abs(ref_loss) if ref_loss != 0 else abs(loss)
    loss_tol = tol("loss", args.loss_tol)
    print(f"loss: dump {loss:.9g}  torch {ref_loss:.9g}  rel err {loss_err:.3e}{yard_note('loss')}  (tol {loss_tol:.3g})")
    if not loss_err <= loss_tol:
        failed.append("loss")

    if logits is not None:
        got = logits.to(device=device, dtype=torch.float64)
        max_abs = float((got - ref_logits).abs().max())
        scale = float(ref_logits.abs().max())
        logits_err = max_abs / scale if scale > 0 else max_abs
        lt = args.logits_tol if yard is None else tol("logits", None)
        shown = "" if lt is None else f"  (tol {lt:.3g})"
        print(f"logits: max abs err {max_abs:.3e}  max rel err (÷ max|logit| {scale:.3g}) {logits_err:.3e}{yard_note('logits')}{shown}")
        if lt is not None and not logits_err <= lt:
            failed.append("logits")
    else:
        print("logits: not in dump")

    head = f"(tol {args.grad_tol:g})" if yard is None else f"(tol max({args.bf16_factor:g}× torch bf16, {args.bf16_floor:g}))"
    print(f"{'grad':<10} {'||g_ref||':>12} {'rel err':>11} {'torch bf16' if yard else '':>11}   {head}")
    for name in PARAM_NAMES:
        got = grads[name].to(device=device, dtype=torch.float64)
        ref = ref_grads[name]
        err = rel_norm_err(got, ref)
        bad = not err <= tol(name, args.grad_tol)
        y = f"{yard[name]:11.3e}" if yard else ""
        print(f"{name:<10} {float(ref.norm()):12.4e} {err:11.3e} {y:>11}{'   FAIL' if bad else ''}")
        if bad:
            failed.append(name)

    if failed:
        print(f"torch_check: FAIL ({', '.join(failed)})")
        return 1
    print("torch_check: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
