"""AdamW's per-tensor loop against its fused kernel, which lumiere-train uses on the CPU and on CUDA.

The STUNet of `make train DATASET=shapes` (experiments/stunet_shapes.yaml: 16 px, its batch and frames; random T2I
weights) trains
only its temporal modules: many small tensors, where the per-tensor loop's dozen small ops per tensor cost more than
the arithmetic. One process, glibc's allocator tuned as every lumiere-* command tunes it, the two ways alternated
round by round (two AdamW over the same parameters, each with its own state):
  step    optimizer.step() alone, 20 calls per round
  train   a whole train step (forward, backward, optimizer.step())
  python bench/bench_optimizer.py [--rounds 6]
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    from bench_time_conv import start

    args = start(__doc__)
    import torch

    from bench_stunet import header
    from bench_time_conv import alternate, ratio_line
    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.diffusion import diffusion_loss
    from lumiere_pl.lit.module import DiffusionModule

    header(torch.get_num_threads())
    torch.manual_seed(0)
    cfg = load_config(str(ROOT / "experiments" / "stunet_shapes.yaml"), ["model.init_from=null"])
    module = DiffusionModule(to_dict(cfg))
    net = module.net.train()
    d = cfg.data
    shape = (d.batch_size, 3, d.frames, d.size, d.size)
    g = torch.Generator().manual_seed(0)
    cond = module.text_condition(["a red circle moving right"] * d.batch_size)
    x0 = torch.rand(shape, generator=g) * 2 - 1
    params = [p for p in net.parameters() if p.requires_grad]
    opts = {"loop": torch.optim.AdamW(params, lr=1e-4, foreach=False, fused=False),
            "fused": torch.optim.AdamW(params, lr=1e-4, fused=True)}
    print(f"\nmake train DATASET=shapes' STUNet (experiments/stunet_shapes.yaml), clip {shape}: {len(params)} "
          f"trainable tensors, {sum(p.numel() for p in params) / 1e6:.3f} M parameters")

    def steps(opt):
        def run():
            for _ in range(20):
                opt.step()
        return run

    def train(opt):
        def run():
            opt.zero_grad(set_to_none=True)
            diffusion_loss(net, x0, cond, module.logsnr, cfg.diffusion.prediction, generator=g).backward()
            opt.step()
        return run

    for opt in opts.values():                                   # warm-up (and AdamW state)
        train(opt)()
    print(f"\n{'':28s} {'loop':>12s} {'fused':>12s}   fused / loop (range), median of {args.rounds} rounds")
    for label, make in (("20 x optimizer.step()", steps), ("train step", train)):
        times = alternate({k: make(opt) for k, opt in opts.items()}, args.rounds)
        print(f"  {label:26s} {ratio_line(times)}")


if __name__ == "__main__":
    main()
