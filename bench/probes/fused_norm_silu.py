"""Probe (not in `make bench`): GroupNorm + scale-shift + SiLU fused into C++ kernels, against the eager chain.

The performance issue's floor (55 % of the matmul ceiling) needs the STUNet step's memory-bound passes cut 3-6x
(bench_time_conv.py prints the bound); their largest part is the chain silu(GroupNorm(x) * (1 + scale) + shift) of
every ResBlock and TemporalConv. This probe asks whether fusing that chain pays on the CPU: fused_norm_silu.cpp reads
x twice forward (moments; then y = silu(x a + b) with the norm, its affine and the scale-shift folded into per-sample
a, b) and twice backward (sums of g x and g with g = dy silu'(x a + b); then dx), against about ten passes in eager
PyTorch. It prints:
  chain   forward + backward of the chain alone at the level shapes of bench_stunet's STUNet, eager vs fused, and
          the fused op's largest difference from eager autograd over the output and every gradient (/ largest value)
  step    bench_stunet's train step (clip (2, 3, 16, 64, 64)) with ResBlock / TemporalConv patched (in this process
          only) to run the chain eager, fused, or not at all ("free": the bound any fusion of it could reach), the
          three alternated round by round, each with its share of the matmul ceiling measured in the same run
Needs a C++ compiler and ninja (`.venv/bin/pip install ninja`); the first run compiles for about a minute.
  python bench/probes/fused_norm_silu.py [--rounds 6]
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SHAPES = [(32, 32, 64, 64), (32, 64, 64, 64), (16, 64, 32, 32), (8, 64, 16, 16)]   # ((b t) c h w) per level


def build():
    """The compiled kernels."""
    from torch.utils.cpp_extension import load

    return load("lumiere_fused_norm_silu_probe", [str(HERE / "fused_norm_silu.cpp")],
                extra_cflags=["-O3", "-fno-math-errno", "-fopenmp-simd"])


def fused_op(K):
    import torch

    def nsc(x):                                            # (n c *s) -> (n (s) c), a view on channels-last memory
        return x.movedim(1, -1).reshape(x.shape[0], -1, x.shape[1])

    class GroupNormSiLU(torch.autograd.Function):
        """silu(GroupNorm(x) * (1 + scale) + shift); scale, shift (n c) or None. Coefficients in float64."""

        @staticmethod
        def forward(ctx, x, w, b, scale, shift, groups, eps):
            n, c = x.shape[:2]
            x3, rep = nsc(x), c // groups
            m = x3.shape[1] * rep                          # elements per group
            s1, s2 = K.moments(x3)                         # (n c) sums of x, x^2
            mean = s1.view(n, groups, -1).sum(2) / m       # (n g)
            rstd = (s2.view(n, groups, -1).sum(2) / m - mean ** 2).clamp_min(0).add(eps).rsqrt()
            mc, rc = (v.repeat_interleave(rep, 1) for v in (mean, rstd))
            k = 1 + scale.double() if scale is not None else torch.ones(1, c, dtype=torch.float64)
            a = rc * w.double() * k                        # y = silu(x a + b0)
            b0 = (b.double() - mc * rc * w.double()) * k + (shift.double() if shift is not None else 0)
            a, b0 = a.float().contiguous(), b0.float().contiguous()
            ctx.save_for_backward(x, w, b, mean, rstd, k, a, b0)
            ctx.groups, ctx.has = groups, (scale is not None, shift is not None)
            return K.affine_silu(x3, a, b0).view(n, *x.shape[2:], c).movedim(-1, 1)

        @staticmethod
        def backward(ctx, dy):
            x, w, b, mean, rstd, k, a, b0 = ctx.saved_tensors
            n, c, g = x.shape[0], x.shape[1], ctx.groups
            x3, dy3, rep = nsc(x), nsc(dy).contiguous(), c // g
            m = x3.shape[1] * rep
            sgx, sg = K.affine_silu_grad_sums(dy3, x3, a, b0)       # (n c) sums over s of g x, g
            mc, rc = (v.repeat_interleave(rep, 1) for v in (mean, rstd))
            sgn = rc * (sgx - mc * sg)                              # sum of g * normalized x
            we = w.double() * k                                     # (n c) effective weight
            ds_g, db_g = ((v * we).view(n, g, -1).sum(2) for v in (sgx, sg))
            c2 = (db_g * mean - ds_g) * rstd ** 3 / m               # dx = g c1 + x c2 + c3
            c3 = -c2 * mean - db_g * rstd / m
            coef = [rc * we] + [v.repeat_interleave(rep, 1) for v in (c2, c3)]
            dx3 = K.affine_silu_grad_input(dy3, x3, a, b0, *(v.float().contiguous() for v in coef))
            dscale = (w.double() * sgn + b.double() * sg).float() if ctx.has[0] else None
            dshift = sg.float() if ctx.has[1] else None
            return (dx3.view(n, *x.shape[2:], c).movedim(-1, 1), (k * sgn).sum(0).float(), (k * sg).sum(0).float(),
                    dscale, dshift, None, None)

    return GroupNormSiLU.apply


def main() -> None:
    import importlib.util

    from bench_time_conv import start

    args = start(__doc__)
    if importlib.util.find_spec("ninja") is None:
        sys.exit("fused_norm_silu.py: needs ninja to compile fused_norm_silu.cpp (.venv/bin/pip install ninja)")
    import torch
    import torch.nn.functional as F

    import _stunet_worker as W
    from bench_stunet import header
    from bench_time_conv import alternate, ratio_line
    from lumiere_pl.models import layers, temporal
    from lumiere_pl.models.group_norm import GroupNorm, is_channels_last
    from lumiere_pl.utils.flops import count_flops

    header(torch.get_num_threads())
    op = fused_op(build())
    g = torch.Generator().manual_seed(0)

    print(f"\nGroupNorm -> scale-shift -> SiLU, forward + backward, median of {args.rounds} rounds:")
    print(f"  {'((b t) c h w)':18s} {'eager':>9s} {'fused':>12s}   fused / eager (range)   largest difference")
    for shape in SHAPES:
        n, c = shape[:2]
        groups = 32 if c % 32 == 0 else c // 4
        norm = GroupNorm(groups, c, eps=1e-6)
        with torch.no_grad():
            norm.weight.normal_(generator=g)
            norm.bias.normal_(generator=g)
        x = torch.randn(*shape, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_()
        scale, shift = ((torch.randn(n, c, generator=g) * 0.1).requires_grad_() for _ in range(2))
        dy = torch.randn(*shape, generator=g).contiguous(memory_format=torch.channels_last)
        leaves = (x, norm.weight, norm.bias, scale, shift)

        def eager():
            y = F.silu(norm(x) * (1 + scale[:, :, None, None]) + shift[:, :, None, None])
            y.backward(dy)
            return y

        def fused():
            y = op(x, norm.weight, norm.bias, scale, shift, groups, 1e-6)
            y.backward(dy)
            return y

        got = []
        for fn in (eager, fused):
            for p in leaves:
                p.grad = None
            got.append([fn().detach()] + [p.grad.clone() for p in leaves])
        diff = max(float((u - v).abs().max() / u.abs().max()) for u, v in zip(*got))
        print(f"  {str(shape):18s} {ratio_line(alternate({'e': eager, 'f': fused}, args.rounds))}   {diff:.1e}")

    chain = ["eager"]                              # how the patched blocks run the chain: eager | fused | free

    def norm_silu(norm, x, scale=None, shift=None):
        if chain[0] == "free":                     # the chain skipped (its cost zero; same convolutions)
            return x
        if chain[0] == "fused" and is_channels_last(x) and torch.is_grad_enabled():
            flat = (None if v is None else v.reshape(x.shape[0], -1) for v in (scale, shift))
            return op(x, norm.weight, norm.bias, *flat, norm.num_groups, norm.eps)
        h = norm(x)
        return F.silu(h if scale is None else h * (1 + scale) + shift)

    def res_block(self, x, ctx):                   # layers.ResBlock.forward, the chain through norm_silu
        h = self.conv1(norm_silu(self.norm1, x))
        scale, shift = self.emb_proj(F.silu(ctx.emb))[:, :, None, None].chunk(2, dim=1)
        return self.skip(x) + self.conv2(self.dropout(norm_silu(self.norm2, h, scale, shift)))

    def temporal_conv(self, x, ctx):               # temporal.TemporalConv.forward, likewise
        h, scale, shift = self.conv1(norm_silu(self.norm1, x)), None, None
        if self.emb_proj is not None:
            scale, shift = self.emb_proj(F.silu(ctx.emb))[:, :, None, None, None].chunk(2, dim=1)
        return x + self.conv2(norm_silu(self.norm2, h, scale, shift))

    layers.ResBlock.forward, temporal.TemporalConv.forward = res_block, temporal_conv
    step = W.Session("ours", (2, 3, 16, 64, 64), torch.get_num_threads()).step

    def switched(way: str):
        def run():
            chain[0] = way
            step()
        return run

    ways = ("eager", "fused", "free")
    for way in ways:                               # warm-up (and AdamW state)
        switched(way)()
    times = alternate({way: switched(way) for way in ways}, args.rounds)
    chain[0] = "eager"
    flops, ceiling = count_flops(step) / 1e9, W.matmul_gflops()                                  # GFLOP, GFLOP/s
    print(f"\ntrain step, clip (2, 3, 16, 64, 64), {flops:.1f} GFLOP, matmul ceiling {ceiling:.1f} GFLOP/s, median of "
          f"{args.rounds} rounds (free: every chain skipped, its cost zero, the same convolutions):")
    print(f"  {'chain':6s} {'step':>9s}   / eager (range)    share of the matmul ceiling")
    for way in ways:
        r = [a / b for a, b in zip(times[way], times["eager"])]
        median = statistics.median(times[way])
        print(f"  {way:6s} {median * 1e3:6.0f} ms   {statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})   "
              f"{100 * flops / median / ceiling:.0f} %")


if __name__ == "__main__":
    main()
