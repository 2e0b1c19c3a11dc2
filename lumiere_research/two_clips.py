"""Can a STUNet bind the caption's direction word to motion at all? (docs/results/2026-12-02-motion-diagnosis.md)

Overfits a tiny STUNet (every weight trainable, real MiniLM captions) on two clips that differ only by direction:
"a red circle moving left" and "... moving right", same start, same speed. Then, per training seed:
  - v-loss at fixed noise with the true captions, the swapped captions and the empty caption (a model that uses the
    direction word does much worse with the swapped ones);
  - 4 samples per caption (noise seeds 11..14) at guidance 1 and 3, and the share that move the caption's way.
Everything else about the set (192 captions, random starts) is removed, so this isolates the text -> motion path
and the noise levels it is learned at. About 2.5 minutes per seed and 600 steps on one CPU core.

  python -m lumiere_research.two_clips --steps 600 --seeds 0 1 2 [--set diffusion.shift_base=4 ...]
"""
from __future__ import annotations

import argparse
import platform

import torch

from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.data.synthetic import ShapeClip, render_clip
from lumiere_pl.diffusion.process import target
from lumiere_pl.diffusion.schedules import alpha_sigma
from lumiere_pl.lit import DiffusionModule
from lumiere_pl.utils.tensors import append_dims
from lumiere_pl.utils.video import from_uint8, to_uint8
from lumiere_research.shapes_motion import measure

BASE = ["model.name=stunet", "text.encoder=minilm", "model.temporal.freeze_spatial=false",
        "model.unet.channels=16", "model.unet.channel_mults=[1,2,2]", "model.unet.attn_levels=[2]",
        "model.unet.head_dim=8", "model.temporal.down_levels=[0]", "data.frames=8", "data.size=16",
        "diffusion.cond_drop=0.1", "sampler.steps=20"]
TIMES = (0.5, 0.9, 0.97)


def train(module: DiffusionModule, x0: torch.Tensor, captions: list, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([p for p in module.net.parameters() if p.requires_grad], lr=3e-3)
    drop = module.cfg.diffusion.cond_drop
    for _ in range(steps):
        idx = [0, 1, 0, 1]                                                   # batch 4: each clip twice
        cond = module.parts.text_condition([captions[i] if torch.rand(1, generator=g) >= drop else "" for i in idx])
        loss = module.parts.process.loss(module.net, x0[idx], cond, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def caption_losses(module: DiffusionModule, x0: torch.Tensor, captions: list) -> dict:
    module.net.eval()
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    out = {}
    for t in TIMES:
        process = module.parts.process
        logsnr = process.logsnr(torch.full((len(x0),), t))
        alpha, sigma = (append_dims(v, x0.ndim) for v in alpha_sigma(logsnr))
        z, tgt = alpha * x0 + sigma * eps, target(x0, eps, alpha, sigma, process.prediction)
        for name, caps in (("true", captions), ("swapped", captions[::-1]), ("empty", ["", ""])):
            pred = module.net(z, process.noise_cond(logsnr), module.parts.text_condition(caps)).float()
            out[(t, name)] = float((pred - tgt).pow(2).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                    help="config overrides, e.g. --set diffusion.shift_base=4")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread; steps {args.steps}; "
          f"overrides {args.overrides or 'none'}")
    clips = [ShapeClip("circle", "red", d, "quickly", 0.5, 0.5, False) for d in ("left", "right")]
    captions = [c.caption for c in clips]
    total = {1.0: 0, 3.0: 0}
    for seed in args.seeds:
        torch.manual_seed(seed)
        module = DiffusionModule(to_dict(load_config(None, BASE + args.overrides)))
        d = module.cfg.data
        x0 = torch.stack([from_uint8(render_clip(c, d.frames, d.size)) for c in clips])     # (2 3 t h w)
        train(module, x0, captions, args.steps, seed)
        losses = caption_losses(module, x0, captions)
        print(f"seed {seed}: v-loss true / swapped / empty caption: " + "; ".join(
            f"t={t}: {losses[(t, 'true')]:.4f} / {losses[(t, 'swapped')]:.4f} / {losses[(t, 'empty')]:.4f}"
            for t in TIMES))
        for guidance in total:
            for cap in captions:
                videos = module.pipeline()([cap] * 4, seeds=[11, 12, 13, 14], guidance=guidance
                                           ).videos          # the trained weights: no EMA here
                went = [measure(to_uint8(v), cap).direction for v in videos]
                total[guidance] += sum(w == cap.split()[-1] for w in went)
                print(f"  guidance {guidance:g}, '{cap}': samples move {went}")
    n = 8 * len(args.seeds)
    print("direction match: " + ", ".join(f"guidance {g:g} {k}/{n}" for g, k in total.items()))


if __name__ == "__main__":
    main()
