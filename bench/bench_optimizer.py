"""AdamW's per-tensor loop against its fused kernel, which lumiere-train uses on the CPU and on CUDA.

The STUNet of `make train DATASET=shapes` (experiments/shapes/stunet.yaml: 16 px, its batch and frames; random T2I
weights) trains
only its temporal modules: many small tensors, where the per-tensor loop's dozen small ops per tensor cost more than
the arithmetic. One process, glibc's allocator tuned as every lumiere-* command tunes it, the two ways alternated
round by round (two AdamW over the same parameters, each with its own state):
  step    optimizer.step() alone, 20 calls per round
  train   a whole train step (forward, backward, optimizer.step())
  python -m bench.bench_optimizer [--rounds 6]
"""
from __future__ import annotations


def main() -> None:
    from bench.bench_time_conv import start

    args = start(__doc__)
    import torch

    from bench import _stunet_worker as W
    from bench.bench_stunet import header
    from bench.bench_time_conv import alternate, ratio_line

    header(torch.get_num_threads())
    torch.manual_seed(0)
    module, loss_fn, shape = W.build_recipe("shapes/stunet", torch.Generator().manual_seed(0))
    params = [p for p in module.net.train().parameters() if p.requires_grad]
    opts = {"loop": torch.optim.AdamW(params, lr=1e-4, foreach=False, fused=False),
            "fused": torch.optim.AdamW(params, lr=1e-4, fused=True)}
    print(f"\nmake train DATASET=shapes' STUNet (experiments/shapes/stunet.yaml), clip {shape}: {len(params)} "
          f"trainable tensors, {sum(p.numel() for p in params) / 1e6:.3f} M parameters")

    def steps(opt):
        def run():
            for _ in range(20):
                opt.step()
        return run

    def train(opt):
        def run():
            opt.zero_grad(set_to_none=True)
            loss_fn().backward()
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
