"""A tiny Flux-shaped diffusion model with random weights (tests only), written from the
facts in COMFYUI.md: the latent [B, C, H, W] is padded to the patch size and patchified
row-major, reference latents are patchified the same way and appended after it, text
tokens come first; one double-stream and one single-stream block each make one joint
attention call through the stand-in dispatch with ``skip_reshape=True`` (in the single
block v is a permuted, non-contiguous view). ``extra_tokens`` adds tokens inside the
model (as some patches do), so the recorded layout no longer matches."""

import torch
import torch.nn.functional as F

from taylor_attention.dispatch import attention_pytorch


class TinyFlux(torch.nn.Module):
    def __init__(self, channels=4, hidden=64, heads=2, context_dim=32, patch_size=2,
                 declare_patch_size=True, extra_tokens=0, qk_gain=0.5, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)

        def linear(i, o):
            lin = torch.nn.Linear(i, o)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(o, i, generator=g) / i ** 0.5)
                lin.bias.zero_()
            return lin

        self.p, self.heads, self.hidden = patch_size, heads, hidden
        if declare_patch_size:
            self.patch_size = patch_size
        self.extra_tokens, self.qk_gain = extra_tokens, qk_gain
        self.img_in = linear(channels * patch_size ** 2, hidden)
        self.txt_in = linear(context_dim, hidden)
        self.img_qkv, self.txt_qkv, self.single_qkv = (linear(hidden, 3 * hidden) for _ in range(3))
        self.out = linear(hidden, channels * patch_size ** 2)
        self.attention_calls = []  # (block_type, N) of every call

    def patchify(self, x):
        p = self.p
        B, C, H, W = x.shape
        x = F.pad(x, (0, (-W) % p, 0, (-H) % p))
        h, w = x.shape[-2] // p, x.shape[-1] // p
        return x.view(B, C, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C * p * p), (h, w)

    def _heads(self, qkv):
        B, N, _ = qkv.shape
        q, k, v = qkv.view(B, N, 3, self.heads, self.hidden // self.heads).permute(2, 0, 3, 1, 4)
        norm = lambda t: t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * self.qk_gain  # noqa: E731
        return norm(q), norm(k), v

    def _attention(self, q, k, v, options, block_type):
        opts = dict(options, block_type=block_type, block_index=0)
        self.attention_calls.append((block_type, q.shape[2]))
        return attention_pytorch(q, k, v, self.heads, skip_reshape=True, transformer_options=opts)

    def forward(self, x, timestep, context=None, y=None, guidance=None, ref_latents=None, control=None,
                transformer_options=None, **kwargs):
        options = transformer_options or {}
        B, C, H, W = x.shape
        img, (h, w) = self.patchify(x)
        n_img = img.shape[1]
        for ref in ref_latents or ():
            img = torch.cat((img, self.patchify(ref)[0]), dim=1)
        img = self.img_in(img)
        txt = self.txt_in(context)
        if self.extra_tokens:
            txt = torch.cat((txt, txt[:, :1].expand(B, self.extra_tokens, -1)), dim=1)
        T = txt.shape[1]
        tq, tk, tv = self._heads(self.txt_qkv(txt))
        iq, ik, iv = self._heads(self.img_qkv(img))
        q, k, v = (torch.cat(pair, dim=2) for pair in ((tq, iq), (tk, ik), (tv, iv)))
        xs = torch.cat((txt, img), dim=1) + self._attention(q, k, v, options, "double")
        q, k, v = self._heads(self.single_qkv(xs))
        xs = xs + self._attention(q, k, v, options, "single")
        out = self.out(xs[:, T:T + n_img])
        p = self.p
        out = out.view(B, h, w, C, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, C, h * p, w * p)
        return out[:, :, :H, :W]
