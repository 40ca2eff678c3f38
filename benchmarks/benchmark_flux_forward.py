#!/usr/bin/env python3
"""One forward step of a Flux-architecture transformer with synthetic weights, standard
attention against Taylor attention (plain, and the local-exact hybrid for each --window
radius) through the ComfyUI-style node path.

    python benchmarks/benchmark_flux_forward.py --device cuda --dtype float16 --height 1024 --width 1024 --window 2,4

The model is written here from the architecture facts in COMFYUI.md (FLUX.1-dev sizes
by default: hidden 3072, 24 heads x 128, 19 double-stream and 38 single-stream blocks,
MLP ratio 4, QK RMSNorm, 3-axis RoPE with axes (16, 56, 56) and theta 10000, modulation
from the timestep/guidance/pooled-text vector, text tokens first). Weights are random.
The model takes a latent [B, 16, H/8, W/8] and patchifies it with patch 2 like Flux, and
each step is one model call made the way ComfyUI's sampler makes it (the stand-ins in
taylor_attention.dispatch): the node (comfy_node.apply_backend) installs the override and,
for the hybrid, its model-call wrapper, which reads the token layout (text length, latent
size, patch size) so that the window applies; every attention call goes through a
wrap_attn-style dispatch with the ``transformer_options`` of the call. Reports step time
(median after warm-up), peak memory, the relative L2 difference of each step's output
against the standard step, and the override's call summary (Taylor calls, hybrid calls,
fallbacks by reason).

Quick CPU run: --device cpu --dtype float32 --height 256 --width 256 --hidden 256
--heads 2 --depth 1 --depth-single 2 --txt-tokens 32 --context-dim 64 --vec-dim 32
"""

import argparse
import json
import math
import sys

from _common import environment, fmt_bytes, import_package, parse_dtype, peak_memory, pick_device, time_fn


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float16")
    p.add_argument("--height", type=int, default=1024, help="image height in pixels (tokens: H/16 * W/16)")
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--txt-tokens", type=int, default=256)
    p.add_argument("--hidden", type=int, default=3072)
    p.add_argument("--heads", type=int, default=24)
    p.add_argument("--depth", type=int, default=19, help="double-stream blocks")
    p.add_argument("--depth-single", type=int, default=38, help="single-stream blocks")
    p.add_argument("--mlp-ratio", type=float, default=4.0)
    p.add_argument("--context-dim", type=int, default=4096, help="text encoder width (T5)")
    p.add_argument("--vec-dim", type=int, default=768, help="pooled text width (CLIP)")
    p.add_argument("--axes-dim", default="16,56,56", help="RoPE axes; must sum to hidden/heads "
                   "(scaled proportionally when it does not)")
    p.add_argument("--theta", type=float, default=10000.0)
    p.add_argument("--P", type=int, default=4)
    p.add_argument("--sub-head-blocks", type=int, default=4)
    p.add_argument("--qk-normalize", action="store_true")
    p.add_argument("--min-tokens", type=int, default=100)
    p.add_argument("--window", default="4", help="comma-separated window radii of the hybrid runs "
                   "(plain Taylor always runs; 0 entries are ignored)")
    p.add_argument("--quality-check", action="store_true", help="run the sampled quality check on every call")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def build(args, device, dtype):
    """The model classes need torch: defined here so --help works without it."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    ta = import_package()
    from taylor_attention.dispatch import BaseModelStandIn, RegistryModelPatcherStandIn, attention_pytorch

    def rope_table(ids, axes, theta):
        """ids [B, L, 3] -> (cos, sin) [B, 1, L, D/2]: each axis rotates its own pairs."""
        cos, sin = [], []
        for i, dim in enumerate(axes):
            freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=ids.device) / dim)
            angles = ids[..., i].double().unsqueeze(-1) * freqs
            cos.append(angles.cos())
            sin.append(angles.sin())
        return torch.cat(cos, -1).float().unsqueeze(1), torch.cat(sin, -1).float().unsqueeze(1)

    def apply_rope(x, pe):
        cos, sin = pe
        xf = x.float().unflatten(-1, (-1, 2))
        x0, x1 = xf[..., 0], xf[..., 1]
        out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)
        return out.to(x.dtype)

    def attention(q, k, v, pe, heads, options):
        """What Flux's attention does: RoPE on q and k, then the dispatched backend with
        skip_reshape=True; returns [B, L, H*D]."""
        q, k = apply_rope(q, pe), apply_rope(k, pe)
        return attention_pytorch(q, k, v, heads, skip_reshape=True, transformer_options=options)

    class RMSNorm(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            xf = x.float()
            return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * self.scale

    class QKNorm(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.q, self.k = RMSNorm(dim), RMSNorm(dim)

    class Modulation(nn.Module):
        def __init__(self, dim, double):
            super().__init__()
            self.n = 6 if double else 3
            self.lin = nn.Linear(dim, self.n * dim)

        def forward(self, vec):
            return self.lin(F.silu(vec)).unsqueeze(1).chunk(self.n, dim=-1)

    def modulate(norm_x, shift, scale):
        return (1 + scale) * norm_x + shift

    class MLP(nn.Sequential):
        def __init__(self, dim, hidden):
            super().__init__(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

    class DoubleBlock(nn.Module):
        def __init__(self, dim, heads, mlp_hidden):
            super().__init__()
            self.heads, self.head_dim = heads, dim // heads
            for s in ("img", "txt"):
                setattr(self, f"{s}_mod", Modulation(dim, True))
                setattr(self, f"{s}_norm1", nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6))
                setattr(self, f"{s}_qkv", nn.Linear(dim, 3 * dim))
                setattr(self, f"{s}_qknorm", QKNorm(self.head_dim))
                setattr(self, f"{s}_proj", nn.Linear(dim, dim))
                setattr(self, f"{s}_norm2", nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6))
                setattr(self, f"{s}_mlp", MLP(dim, mlp_hidden))

        def _qkv(self, s, x, mod):
            shift, scale, _ = mod
            qkv = getattr(self, f"{s}_qkv")(modulate(getattr(self, f"{s}_norm1")(x), shift, scale))
            q, k, v = qkv.unflatten(-1, (3, self.heads, self.head_dim)).permute(2, 0, 3, 1, 4)
            norm = getattr(self, f"{s}_qknorm")
            return norm.q(q), norm.k(k), v

        def forward(self, img, txt, vec, pe, options):
            img_mod = self.img_mod(vec)
            txt_mod = self.txt_mod(vec)
            iq, ik, iv = self._qkv("img", img, img_mod[:3])
            tq, tk, tv = self._qkv("txt", txt, txt_mod[:3])
            q, k, v = (torch.cat(pair, dim=2) for pair in ((tq, iq), (tk, ik), (tv, iv)))
            attn = attention(q, k, v, pe, self.heads, options)
            t_attn, i_attn = attn[:, :txt.shape[1]], attn[:, txt.shape[1]:]
            for s, x, a, mod in (("img", img, i_attn, img_mod), ("txt", txt, t_attn, txt_mod)):
                x = x + mod[2] * getattr(self, f"{s}_proj")(a)
                x = x + mod[5] * getattr(self, f"{s}_mlp")(modulate(getattr(self, f"{s}_norm2")(x), mod[3], mod[4]))
                if s == "img":
                    img = x
                else:
                    txt = x
            return img, txt

    class SingleBlock(nn.Module):
        def __init__(self, dim, heads, mlp_hidden):
            super().__init__()
            self.heads, self.head_dim, self.dim, self.mlp_hidden = heads, dim // heads, dim, mlp_hidden
            self.linear1 = nn.Linear(dim, 3 * dim + mlp_hidden)  # one fused linear for qkv + mlp
            self.linear2 = nn.Linear(dim + mlp_hidden, dim)
            self.qknorm = QKNorm(self.head_dim)
            self.pre_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.mod = Modulation(dim, False)

        def forward(self, x, vec, pe, options):
            shift, scale, gate = self.mod(vec)
            fused = self.linear1(modulate(self.pre_norm(x), shift, scale))
            qkv, mlp = fused.split([3 * self.dim, self.mlp_hidden], dim=-1)
            # q, k, v are views of the fused projection: v stays a permuted, non-contiguous view
            q, k, v = qkv.unflatten(-1, (3, self.heads, self.head_dim)).permute(2, 0, 3, 1, 4)
            q, k = self.qknorm.q(q), self.qknorm.k(k)
            attn = attention(q, k, v, pe, self.heads, options)
            return x + gate * self.linear2(torch.cat((attn, F.gelu(mlp, approximate="tanh")), dim=-1))

    def timestep_embedding(t, dim, max_period=10000.0, time_factor=1000.0):
        t = time_factor * t
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args_ = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args_), torch.sin(args_)], dim=-1)

    class Flux(nn.Module):
        def __init__(self, a):
            super().__init__()
            self.hidden, self.heads = a.hidden, a.heads
            head_dim = a.hidden // a.heads
            axes = [int(x) for x in a.axes_dim.split(",")]
            if sum(axes) != head_dim:  # keep the proportions, even sizes
                axes = [max(2, 2 * round(x * head_dim / sum(axes) / 2)) for x in axes]
                axes[-1] = head_dim - sum(axes[:-1])
            self.axes, self.theta = axes, a.theta
            mlp_hidden = int(a.hidden * a.mlp_ratio)
            self.patch_size = 2  # what the node reads to turn the latent size into tokens
            self.img_in = nn.Linear(16 * 4, a.hidden)  # patch 2 over a 16-channel latent
            self.time_in = nn.Sequential(nn.Linear(256, a.hidden), nn.SiLU(), nn.Linear(a.hidden, a.hidden))
            self.guidance_in = nn.Sequential(nn.Linear(256, a.hidden), nn.SiLU(), nn.Linear(a.hidden, a.hidden))
            self.vector_in = nn.Sequential(nn.Linear(a.vec_dim, a.hidden), nn.SiLU(), nn.Linear(a.hidden, a.hidden))
            self.txt_in = nn.Linear(a.context_dim, a.hidden)
            # each block converted as it is made: FLUX.1-dev in fp32 would not fit next to fp16
            self.double_blocks = nn.ModuleList(DoubleBlock(a.hidden, a.heads, mlp_hidden).to(dtype)
                                               for _ in range(a.depth))
            self.single_blocks = nn.ModuleList(SingleBlock(a.hidden, a.heads, mlp_hidden).to(dtype)
                                               for _ in range(a.depth_single))
            self.final_norm = nn.LayerNorm(a.hidden, elementwise_affine=False, eps=1e-6)
            self.final_mod = nn.Linear(a.hidden, 2 * a.hidden)
            self.final_linear = nn.Linear(a.hidden, 16 * 4)

        def forward(self, x, timestep, context=None, y=None, guidance=None, control=None,
                    transformer_options=None, **kwargs):
            """ComfyUI's diffusion-model signature: latent x [B, 16, H, W] -> same shape."""
            B, C, H, W = x.shape
            p = self.patch_size
            x = F.pad(x, (0, (-W) % p, 0, (-H) % p))
            h, w = x.shape[-2] // p, x.shape[-1] // p
            img = x.view(B, C, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C * p * p)
            img_ids = torch.zeros(B, h * w, 3, device=x.device)
            img_ids[..., 1] = torch.arange(h, device=x.device).repeat_interleave(w).float()
            img_ids[..., 2] = torch.arange(w, device=x.device).repeat(h).float()
            txt_ids = torch.zeros(B, context.shape[1], 3, device=x.device)
            out = self.forward_tokens(img, img_ids, context, txt_ids, timestep, y, guidance,
                                      transformer_options or {})
            out = out.view(B, h, w, C, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, C, h * p, w * p)
            return out[:, :, :H, :W]

        def forward_tokens(self, img, img_ids, txt, txt_ids, timesteps, y, guidance, transformer_options):
            img = self.img_in(img)
            vec = self.time_in(timestep_embedding(timesteps, 256).to(img.dtype))
            vec = vec + self.guidance_in(timestep_embedding(guidance, 256).to(img.dtype))
            vec = vec + self.vector_in(y)
            txt = self.txt_in(txt)
            pe = rope_table(torch.cat((txt_ids, img_ids), dim=1), self.axes, self.theta)
            total = len(self.double_blocks) + len(self.single_blocks)
            opts = dict(transformer_options)
            opts["total_blocks"] = total
            for i, block in enumerate(self.double_blocks):
                opts.update(block_type="double", block_index=i)
                img, txt = block(img, txt, vec, pe, opts)
            x = torch.cat((txt, img), dim=1)
            for i, block in enumerate(self.single_blocks):
                opts.update(block_type="single", block_index=i)
                x = block(x, vec, pe, opts)
            img = x[:, txt.shape[1]:]
            shift, scale = self.final_mod(F.silu(vec)).unsqueeze(1).chunk(2, dim=-1)
            return self.final_linear(modulate(self.final_norm(img), shift, scale))

    torch.manual_seed(args.seed)
    with torch.device(device):
        model = Flux(args).to(dtype).eval()
    return RegistryModelPatcherStandIn(BaseModelStandIn(model)), model, ta


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    device = pick_device(args.device)
    dtype = parse_dtype(args.dtype)
    if args.hidden % args.heads:
        raise SystemExit("--hidden must be divisible by --heads")
    windows = [int(r) for r in args.window.split(",") if r.strip() and int(r) > 0]
    patcher, model, ta = build(args, device, dtype)
    from taylor_attention import comfy_node, override as ov_mod
    from taylor_attention.dispatch import run_model

    B = args.batch
    lh, lw = args.height // 8, args.width // 8  # the latent; patch 2 -> H/16 x W/16 tokens
    n_img, n_txt = -(-lh // 2) * -(-lw // 2), args.txt_tokens
    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
    x = torch.randn(B, 16, lh, lw, generator=gen).to(device, dtype)
    txt = torch.randn(B, n_txt, args.context_dim, generator=gen).to(device, dtype)
    y = torch.randn(B, args.vec_dim, generator=gen).to(device, dtype)
    t = torch.full((B,), 0.5, device=device)
    guidance = torch.full((B,), 3.5, device=device)

    node_params = dict(P=args.P, sub_head_blocks=args.sub_head_blocks, qk_normalize=args.qk_normalize,
                       min_tokens=args.min_tokens, quality_check=args.quality_check,
                       log_shapes=False, log_fallbacks=False, memory_reserve=False)

    def step(m):
        with torch.inference_mode():
            return run_model(m, x, t, c_crossattn=txt, y=y, guidance=guidance)

    params = sum(p.numel() for p in model.parameters())
    env = environment(device)
    print(f"# Flux-architecture step, synthetic weights ({params / 1e6:,.1f} M parameters), "
          f"{args.height}x{args.width} -> {n_img} image + {n_txt} text tokens, B={B}, {args.dtype}, "
          f"P={args.P} G={args.sub_head_blocks}, {env.get('gpu', env['cpu'])}")
    out_std = step(patcher)
    t_std = time_fn(lambda: step(patcher), device, args.iters, args.warmup)
    m_std = peak_memory(lambda: step(patcher), device)
    print(f"{'variant':<14} {'step ms':>10} {'vs standard':>12} {'peak':>10} {'rel L2 vs std':>14}  attention calls")
    print(f"{'standard':<14} {t_std['median_ms']:>10.2f} {'1.00x':>12} {fmt_bytes(m_std):>10} {0.0:>14.4f}")
    variants = []
    for radius in [0] + windows:
        name = "taylor" if radius == 0 else f"hybrid r={radius}"
        m = comfy_node.apply_backend(patcher, "taylor", window_radius=radius, **node_params)
        state = m.model_options["transformer_options"][ov_mod.CONFIG_KEY]
        state.summary_every = 0
        out = step(m)
        calls_per_step = state.calls
        diff = float((out.double() - out_std.double()).norm() / out_std.double().norm())
        timing = time_fn(lambda: step(m), device, args.iters, args.warmup)
        memory = peak_memory(lambda: step(m), device)
        summary = state.summary()
        variants.append({"name": name, "window_radius": radius, "step_ms": timing["median_ms"],
                         "step_min_ms": timing["min_ms"], "peak_bytes": memory,
                         "rel_l2_vs_standard": diff, "attention_calls_per_step": calls_per_step,
                         "override_summary": summary})
        calls = (f"taylor {summary['by_backend'].get('taylor', 0)}, standard "
                 f"{summary['by_backend'].get('standard', 0)}, fallbacks {summary['by_reason'] or 'none'}")
        if radius:
            calls += f", hybrid {summary['window_calls']}, window off {summary['window_off'] or 'never'}"
        print(f"{name:<14} {timing['median_ms']:>10.2f} {timing['median_ms'] / t_std['median_ms']:>11.2f}x "
              f"{fmt_bytes(memory):>10} {diff:>14.4f}  {calls}")
    plain = variants[0]
    result = {
        "benchmark": "flux_forward", "args": vars(args), "environment": env,
        "parameters": params, "image_tokens": n_img, "text_tokens": n_txt,
        "attention_calls_per_step": plain["attention_calls_per_step"],
        "standard_ms": t_std["median_ms"], "standard_peak_bytes": m_std,
        "taylor_ms": plain["step_ms"], "taylor_peak_bytes": plain["peak_bytes"],
        "rel_l2_taylor_vs_standard": plain["rel_l2_vs_standard"],
        "override_summary": plain["override_summary"],
        "variants": variants,
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
