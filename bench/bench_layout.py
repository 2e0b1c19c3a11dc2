"""The STUNet's memory layout: time-major channels-last ((b t h w c) in memory, the default) against (b c t h w).

One process, one network per figure, the layout switched round by round (STUNet.time_major), so both layouts run the
same weights under the same load; glibc's allocator tuned as every lumiere-* command tunes it.
  train   one train step (forward, backward, AdamW) of bench_stunet.py's STUNet, clip (2, 3, 16, 64, 64)
  call    one network call of that STUNet without grad, 2 clips with guidance's unconditional half (4 in the batch)
  sample  one guided DDIM call per video of `make train`'s STUNet (experiments/real/stunet.yaml, 32 px, 16 frames),
          batch 8 (16 with guidance's unconditional half), as make eval renders
  recipes a train step and guided sampling (batch 4) of make train's two recipes, experiments/real/stunet.yaml
          (32 px frames) and experiments/shapes/stunet.yaml (16 px): where the layout pays decides
          kernels.time_major_min_pixels
Then a profile of one train step in each layout, by kind of op (self CPU time): what the layout changed.
  python -m bench.bench_layout [--rounds 6]
"""
from __future__ import annotations

import collections
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

KINDS = [("conv", ("convolution",)), ("group norm", ("group_norm", "GroupNorm")),
         ("copies", ("copy_", "clone", "contiguous", "repeat_interleave", "cat")),
         ("attention + linear", ("attention", "mm", "addmm", "bmm", "layer_norm")),
         ("elementwise + reductions", ("mul", "add", "silu", "gelu", "sum", "addcmul", "sub", "div", "pow", "rsqrt"))]


def kind_of(op: str) -> str:
    for kind, keys in KINDS:
        if any(k in op for k in keys):
            return kind
    return "other"


def set_layout(model, time_major: bool) -> None:
    """Every STUNet inside model (the module's network and its EMA copy) to one layout."""
    from lumiere_pl.models.stunet import STUNet

    for m in model.modules():
        if isinstance(m, STUNet):
            m.time_major = time_major


def interleave(fn, model, rounds: int) -> dict:
    """fn() timed with the layout (b c t h w) and time-major, alternating which goes first."""
    times: dict = {False: [], True: []}
    for r in range(rounds):
        for tm in ((True, False) if r % 2 else (False, True)):
            set_layout(model, tm)
            t0 = time.perf_counter()
            fn()
            times[tm].append(time.perf_counter() - t0)
    return times


def report(name: str, unit: str, times: dict, per: int, diff: float) -> None:
    old, new = (statistics.median(times[k]) / per for k in (False, True))
    ratios = [a / b for a, b in zip(times[True], times[False])]
    print(f"\n{name} ({unit}), median of {len(times[True])} rounds:")
    print(f"  (b c t h w)      {old:.3f} s")
    print(f"  time-major       {new:.3f} s")
    agree = "" if diff != diff else f"; outputs differ by at most {diff:.1e} of their largest value"   # nan: unchecked
    print(f"  time-major / (b c t h w): {statistics.median(ratios):.2f}x median per round "
          f"({min(ratios):.2f}-{max(ratios):.2f}){agree}")


def by_kind(events) -> collections.Counter:
    """Self CPU seconds by kind of op; a GroupNorm's backward counts whole (its own ops are group norm's cost)."""
    out: collections.Counter = collections.Counter()

    def walk(e) -> None:
        if "GroupNorm" in e.name:
            out["group norm"] += e.cpu_time_total / 1e6
            return
        if e.name.startswith("aten::"):
            out[kind_of(e.name)] += e.self_cpu_time_total / 1e6
        for child in e.cpu_children:
            walk(child)

    for e in events:
        if e.cpu_parent is None:
            walk(e)
    return out


def profile_step(step, model) -> dict:
    from torch.profiler import ProfilerActivity, profile

    out = {}
    for tm in (False, True):
        set_layout(model, tm)
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        out[tm] = by_kind(prof.events())
    return out


def main() -> None:
    from bench.bench_time_conv import start

    args = start(__doc__)
    import torch

    from bench import _stunet_worker as W
    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit import DiffusionModule

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, python {platform.python_version()}")

    session = W.Session("ours", (2, 3, 16, 64, 64), torch.get_num_threads())      # bench_stunet's train step
    net, step = session.net, session.step

    def moved(model) -> None:
        """Every weight off its init (zero-initialised outputs would make both layouts return 0 alike)."""
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)

    def max_diff(fn, model) -> float:
        outs = []
        for tm in (False, True):
            set_layout(model, tm)
            with torch.no_grad():
                outs.append(fn())
        return float((outs[0] - outs[1]).abs().max() / outs[0].abs().max())

    moved(net)
    x, c = torch.randn(2, 3, 16, 64, 64), torch.tensor([0.3, 0.7])
    cond = {"text": torch.randn(2, 16, 384), "text_mask": torch.ones(2, 16, dtype=torch.bool)}
    diff = max_diff(lambda: net(x, c, cond), net)
    step()                                                     # warm-up (and AdamW state)
    report("train step", "clip (2, 3, 16, 64, 64), forward + backward + AdamW", interleave(step, net, args.rounds),
           1, diff)

    x4, c4 = torch.cat([x, x]), torch.cat([c, c])                # guidance's batch: conditional + unconditional
    cond4 = {k: torch.cat([v, v]) for k, v in cond.items()}

    def call():
        with torch.no_grad():
            net(x4, c4, cond4)
    report("network call without grad", "bench_stunet's STUNet, 2 clips x 2 for guidance, (3, 16, 64, 64)",
           interleave(call, net, args.rounds), 1, diff)

    module = DiffusionModule(to_dict(load_config(str(ROOT / "experiments" / "real" / "stunet.yaml")))).eval()
    prompts, calls = ["a person riding a horse on a beach"] * 8, 4
    moved(module)
    diff = max_diff(lambda: module.pipeline()(prompts, steps=calls, seed=0).videos, module)
    report("guided sampling", f"per network call per video, batch {len(prompts)}, 32 px, 16 frames",
           interleave(lambda: module.pipeline()(prompts, steps=calls, seed=0).videos, module, args.rounds),
           len(prompts) * calls, diff)

    for name in ("real/stunet", "shapes/stunet"):              # make train's two recipes: 32 px and 16 px frames
        small, loss_fn, shape = W.build_recipe(name, torch.Generator().manual_seed(0))
        opt, prompts = small.configure_optimizers()["optimizer"], ["a red circle moving right"] * 4

        def small_step(loss_fn=loss_fn, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss_fn().backward()
            opt.step()
        small_step()                                           # warm-up (and AdamW state)
        report("train step", f"experiments/{name}.yaml's STUNet, clip {shape}, forward + backward + AdamW",
               interleave(small_step, small, args.rounds), 1, float("nan"))
        small.eval()
        moved(small)
        diff = max_diff(lambda: small.pipeline()(prompts, steps=3, seed=0).videos, small)
        report("guided sampling", f"per network call per video, batch 4, experiments/{name}.yaml ({shape[3]} px, "
               f"{shape[2]} frames)", interleave(lambda: small.pipeline()(prompts, steps=3, seed=0).videos, small,
                                                 args.rounds), 4 * 3, diff)

    prof = profile_step(step, net)                             # the train net, off its init after the rounds
    print("\nprofile of one train step, self CPU seconds by kind of op:")
    print(f"  {'kind':26s} {'(b c t h w)':>12s} {'time-major':>11s}")
    for kind in [k for k, _ in KINDS] + ["other"]:
        print(f"  {kind:26s} {prof[False][kind]:12.3f} {prof[True][kind]:11.3f}")
    print(f"  {'total':26s} {sum(prof[False].values()):12.3f} {sum(prof[True].values()):11.3f}")


if __name__ == "__main__":
    main()
