"""The gpubench GPT-2 model in PyTorch (used by torch_check.py and torch_bench.py).

It is the model of model/ref (nanoGPT / llm.c GPT-2), layer for layer:

    x = wte[tok] + wpe[t]                              wte (V,C), wpe (MaxT,C)
    L pre-LN blocks:
        x += attproj(causal_attention(qkv(LN1(x))))    qkv: C -> 3C, [q | k | v]
        x += fcproj(gelu_tanh(fc(LN2(x))))             fc: C -> 4C, fcproj: 4C -> C
    logits = LNf(x) @ wte^T                            (tied, no bias)
    loss = mean cross-entropy

Linear weights are (out, in) as in nn.Linear, every Linear has a bias, and
LayerNorm has eps 1e-5 with weight and bias. Head h of q, k and v uses columns
h*hs:(h+1)*hs of each (hs = C/NH). There is no dropout, so train() and eval()
compute the same thing.

gpubench stores the parameters as 16 tensors in one flat array, per-layer
tensors stacked along a leading L axis (model/ref/params.go, Layout):

    wte (V,C), wpe (MaxT,C), ln1w (L,C), ln1b (L,C), qkvw (L,3C,C), qkvb (L,3C),
    attprojw (L,C,C), attprojb (L,C), ln2w (L,C), ln2b (L,C), fcw (L,4C,C),
    fcb (L,4C), fcprojw (L,C,4C), fcprojb (L,C), lnfw (C), lnfb (C)

GPT2 keeps ordinary per-layer nn.Linear / nn.LayerNorm modules (the layout a
PyTorch user would write, and the fair one to time); load_layout() and
load_flat() copy gpubench parameters in, layout_params() and layout_grads()
return them (and the gradients) in gpubench's named, stacked form.

The constants and shape helpers need no torch, so that the scripts' --help
works on a machine without it; building a model does.
"""

import math
from dataclasses import dataclass

try:
    import torch
    import torch.nn.functional as F
    from torch import nn

    _Module = nn.Module
    _TORCH_ERROR = None
except ImportError as _e:  # pragma: no cover - only on machines without torch
    torch = F = nn = None
    _Module = object
    _TORCH_ERROR = _e

# Parameter tensor names, in gpubench's layout order.
PARAM_NAMES = (
    "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb",
)
# Keys of a dump's config.json (model and batch dims, as config.Dims).
CONFIG_KEYS = ("V", "MaxT", "T", "L", "NH", "C", "B")
LN_EPS = 1e-5
INIT_STD = 0.02
ATTENTIONS = ("sdpa", "manual")

# gpubench's presets (internal/config/config.go); T is the context length and
# the default sequence length.
PRESETS = {
    "tiny": {"V": 512, "T": 64, "L": 2, "NH": 4, "C": 128},
    "small": {"V": 8192, "T": 256, "L": 6, "NH": 8, "C": 512},
    "gpt2-124m": {"V": 50257, "T": 1024, "L": 12, "NH": 12, "C": 768},
}


@dataclass(frozen=True)
class GPT2Config:
    """The model dims (the batch dims B and T are the input's)."""

    V: int     # vocabulary
    MaxT: int  # context: rows of wpe
    L: int     # blocks
    NH: int    # heads
    C: int     # channels, a multiple of NH

    def __post_init__(self):
        if min(self.V, self.MaxT, self.NH, self.C) <= 0 or self.L < 0:
            raise ValueError(f"invalid GPT2Config {self}: V, MaxT, NH, C must be > 0 and L >= 0")
        if self.C % self.NH != 0:
            raise ValueError(f"invalid GPT2Config {self}: C must be a multiple of NH")

    @classmethod
    def from_dict(cls, d):
        """From a dump's config (extra keys such as T and B are ignored)."""
        return cls(V=int(d["V"]), MaxT=int(d["MaxT"]), L=int(d["L"]), NH=int(d["NH"]), C=int(d["C"]))

    @classmethod
    def preset(cls, name):
        p = PRESETS[name]
        return cls(V=p["V"], MaxT=p["T"], L=p["L"], NH=p["NH"], C=p["C"])

    def as_dict(self):
        return {"V": self.V, "MaxT": self.MaxT, "L": self.L, "NH": self.NH, "C": self.C}


def _as_config(cfg):
    return cfg if isinstance(cfg, GPT2Config) else GPT2Config.from_dict(cfg)


def param_shapes(cfg):
    """name -> shape of each gpubench parameter tensor, in layout order."""
    c = _as_config(cfg)
    V, MaxT, L, C = c.V, c.MaxT, c.L, c.C
    return {
        "wte": (V, C), "wpe": (MaxT, C),
        "ln1w": (L, C), "ln1b": (L, C),
        "qkvw": (L, 3 * C, C), "qkvb": (L, 3 * C),
        "attprojw": (L, C, C), "attprojb": (L, C),
        "ln2w": (L, C), "ln2b": (L, C),
        "fcw": (L, 4 * C, C), "fcb": (L, 4 * C),
        "fcprojw": (L, C, 4 * C), "fcprojb": (L, C),
        "lnfw": (C,), "lnfb": (C,),
    }


def num_params(cfg):
    """V*C + MaxT*C + L*(12C^2 + 13C) + 2C (as internal/flops.NumParams)."""
    return sum(math.prod(s) for s in param_shapes(cfg).values())


def require_torch():
    if torch is None:
        raise ImportError(f"this needs PyTorch, which could not be imported: {_TORCH_ERROR}")


# Where each per-layer gpubench tensor lives in a Block: (submodule, attribute).
_BLOCK_PARAMS = {
    "ln1w": ("ln1", "weight"), "ln1b": ("ln1", "bias"),
    "qkvw": ("attn.qkv", "weight"), "qkvb": ("attn.qkv", "bias"),
    "attprojw": ("attn.proj", "weight"), "attprojb": ("attn.proj", "bias"),
    "ln2w": ("ln2", "weight"), "ln2b": ("ln2", "bias"),
    "fcw": ("mlp.fc", "weight"), "fcb": ("mlp.fc", "bias"),
    "fcprojw": ("mlp.proj", "weight"), "fcprojb": ("mlp.proj", "bias"),
}


class CausalSelfAttention(_Module):
    def __init__(self, cfg, attention="sdpa", **factory):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention {attention!r}: want one of {', '.join(ATTENTIONS)}")
        self.nh, self.c, self.attention = cfg.NH, cfg.C, attention
        self.qkv = nn.Linear(cfg.C, 3 * cfg.C, **factory)
        self.proj = nn.Linear(cfg.C, cfg.C, **factory)

    def forward(self, x):
        B, T, C = x.shape
        nh, hs = self.nh, C // self.nh
        q, k, v = self.qkv(x).split(C, dim=-1)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B,NH,T,hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)
        v = v.view(B, T, nh, hs).transpose(1, 2)
        if self.attention == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
            y = att @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.proj(y)


class MLP(_Module):
    def __init__(self, cfg, **factory):
        super().__init__()
        self.fc = nn.Linear(cfg.C, 4 * cfg.C, **factory)
        self.proj = nn.Linear(4 * cfg.C, cfg.C, **factory)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(_Module):
    def __init__(self, cfg, attention="sdpa", **factory):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.C, eps=LN_EPS, **factory)
        self.attn = CausalSelfAttention(cfg, attention, **factory)
        self.ln2 = nn.LayerNorm(cfg.C, eps=LN_EPS, **factory)
        self.mlp = MLP(cfg, **factory)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT2(_Module):
    """GPT2(cfg, attention='sdpa'|'manual', device=None, dtype=None, seed=None).

    cfg is a GPT2Config or a dict with V, MaxT, L, NH, C. The parameters are
    GPT-2-initialized (init_gpt2_) from a torch.Generator seeded with seed, or
    from torch's global generator if seed is None. forward(tokens, targets)
    returns (logits, loss); loss is None without targets.
    """

    def __init__(self, cfg, attention="sdpa", device=None, dtype=None, seed=None):
        require_torch()
        super().__init__()
        self.cfg = _as_config(cfg)
        factory = {"device": device, "dtype": dtype}
        c = self.cfg
        self.wte = nn.Embedding(c.V, c.C, **factory)
        self.wpe = nn.Embedding(c.MaxT, c.C, **factory)
        self.blocks = nn.ModuleList(Block(c, attention, **factory) for _ in range(c.L))
        self.lnf = nn.LayerNorm(c.C, eps=LN_EPS, **factory)
        self.init_gpt2_(seed)

    @property
    def attention(self):
        return self.blocks[0].attn.attention if len(self.blocks) else None

    def set_attention(self, attention):
        if attention not in ATTENTIONS:
            raise ValueError(f"attention {attention!r}: want one of {', '.join(ATTENTIONS)}")
        for b in self.blocks:
            b.attn.attention = attention

    def init_gpt2_(self, seed=None):
        """GPT-2 init: wte, wpe, qkv and fc weights N(0, 0.02); attproj and
        fcproj weights N(0, 0.02/sqrt(2L)); biases 0; LayerNorm weight 1,
        bias 0. Not bitwise equal to gpubench's init (a different RNG)."""
        with torch.no_grad():
            self._init_gpt2(seed)

    def _init_gpt2(self, seed):
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.wte.weight.device)
            gen.manual_seed(int(seed))
        proj_std = INIT_STD / math.sqrt(2 * self.cfg.L) if self.cfg.L > 0 else INIT_STD
        self.wte.weight.normal_(0.0, INIT_STD, generator=gen)
        self.wpe.weight.normal_(0.0, INIT_STD, generator=gen)
        for b in self.blocks:
            b.attn.qkv.weight.normal_(0.0, INIT_STD, generator=gen)
            b.attn.proj.weight.normal_(0.0, proj_std, generator=gen)
            b.mlp.fc.weight.normal_(0.0, INIT_STD, generator=gen)
            b.mlp.proj.weight.normal_(0.0, proj_std, generator=gen)
            for lin in (b.attn.qkv, b.attn.proj, b.mlp.fc, b.mlp.proj):
                lin.bias.zero_()
        for ln in self._layernorms():
            ln.weight.fill_(1.0)
            ln.bias.zero_()

    def _layernorms(self):
        for b in self.blocks:
            yield b.ln1
            yield b.ln2
        yield self.lnf

    def forward(self, tokens, targets=None):
        """tokens, targets: (B,T) integer tensors. Returns (logits (B,T,V), loss)."""
        B, T = tokens.shape
        if T > self.cfg.MaxT:
            raise ValueError(f"sequence length {T} is over the context {self.cfg.MaxT}")
        pos = torch.arange(T, device=tokens.device)
        x = self.wte(tokens) + self.wpe(pos)
        for b in self.blocks:
            x = b(x)
        x = self.lnf(x)
        logits = F.linear(x, self.wte.weight)  # tied lm_head
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    # --- gpubench layout -------------------------------------------------

    def _layout_tensors(self, name):
        """The module tensors (one, or one per layer) behind gpubench tensor name."""
        if name == "wte":
            return [self.wte.weight]
        if name == "wpe":
            return [self.wpe.weight]
        if name == "lnfw":
            return [self.lnf.weight]
        if name == "lnfb":
            return [self.lnf.bias]
        sub, attr = _BLOCK_PARAMS[name]
        return [getattr(b.get_submodule(sub), attr) for b in self.blocks]

    def _gather(self, get):
        out = {}
        shapes = param_shapes(self.cfg)
        for name in PARAM_NAMES:
            ts = [get(p) for p in self._layout_tensors(name)]
            if name in _BLOCK_PARAMS:
                if any(t is None for t in ts):
                    out[name] = None
                elif ts:
                    out[name] = torch.stack(ts)
                else:  # L == 0
                    p = self.wte.weight
                    out[name] = torch.zeros(shapes[name], device=p.device, dtype=p.dtype)
            else:
                out[name] = ts[0]
        return out

    def layout_params(self):
        """name -> parameter tensor in gpubench's named, stacked layout (copies
        for the per-layer tensors, the parameters themselves for the others)."""
        return {n: t.detach() for n, t in self._gather(lambda p: p).items()}

    def layout_grads(self):
        """name -> gradient in gpubench's layout (None where there is none)."""
        return {n: (None if t is None else t.detach()) for n, t in self._gather(lambda p: p.grad).items()}

    def load_layout(self, tensors):
        """Copy parameters from name -> tensor (gpubench's 16 named tensors, any
        float dtype or device; converted to the model's). Shapes are checked."""
        with torch.no_grad():
            self._load_layout(tensors)

    def _load_layout(self, tensors):
        shapes = param_shapes(self.cfg)
        missing = [n for n in PARAM_NAMES if n not in tensors]
        if missing:
            raise KeyError(f"load_layout: missing {', '.join(missing)}")
        for name in PARAM_NAMES:
            src = tensors[name]
            if tuple(src.shape) != shapes[name]:
                raise ValueError(f"load_layout: {name} has shape {tuple(src.shape)}, want {shapes[name]}")
            dst = self._layout_tensors(name)
            if name in _BLOCK_PARAMS:
                for l, p in enumerate(dst):
                    p.copy_(src[l])
            else:
                dst[0].copy_(src)

    def load_flat(self, flat):
        """Copy parameters from one flat 1-D array in gpubench's layout order
        (length num_params(cfg); a tensor or anything torch.as_tensor takes)."""
        flat = torch.as_tensor(flat).reshape(-1)
        self.load_layout(split_flat(flat, self.cfg))

    def flat_params(self):
        """The parameters as one flat 1-D tensor in gpubench's layout order."""
        p = self.layout_params()
        return torch.cat([p[n].reshape(-1) for n in PARAM_NAMES])


def split_flat(flat, cfg):
    """name -> view of a flat 1-D tensor, split and shaped as gpubench's layout."""
    shapes = param_shapes(cfg)
    want = sum(math.prod(s) for s in shapes.values())
    if flat.numel() != want:
        raise ValueError(f"flat parameter array has {flat.numel()} elements, want {want}")
    out, off = {}, 0
    for name in PARAM_NAMES:
        n = math.prod(shapes[name])
        out[name] = flat[off:off + n].view(shapes[name])
        off += n
    return out
