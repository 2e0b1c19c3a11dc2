"""The temporal convolution's backward on the CPU: oneDNN's weight gradient against TimeConv's batched matmuls.

TimeConv runs a 1D conv over t as a (k, 1) Conv2d over the (b c t (h w)) view; on time-major memory the training step
takes its weight gradient from k batched matmuls (lumiere_pl/models/kernels.py). One process, glibc's allocator tuned
as every lumiere-* command tunes it, the two ways alternated round by round:
  shapes  the weight gradient alone, on each temporal conv shape of bench_stunet.py's STUNet (clip (2, 3, 16, 64, 64))
  train   one train step of that STUNet (forward, backward, AdamW), kernels.time_conv_weight_grad off / on
Then a profile of one train step each way (self CPU seconds of the temporal convs, the other matmul-like ops and the
memory-bound ops), the share of the matmul ceiling the step could reach with its memory-bound ops as they are, and
the time those ops would have to fit in for 55 % with the convolutions as they are.
  python -m bench.bench_time_conv [--rounds 6] [--width 32]   (--width: the train step's and profile's STUNet)
"""
from __future__ import annotations

import argparse
import statistics
import time


# (b c t s), stride: the temporal convs of bench_stunet's STUNet (levels 0 / 1 / 2; the 64-channel level-0 conv is the
# temporal upsampling after the up path's concatenation; stride 2 the temporal downsampling)
SHAPES = [((2, 32, 16, 4096), 1), ((2, 64, 16, 4096), 1), ((2, 32, 16, 4096), 2), ((2, 64, 8, 1024), 1),
          ((2, 64, 4, 256), 1)]


def start(doc: str, width: bool = False) -> argparse.Namespace:
    """The --rounds option of the benches that alternate two ways round by round (this one, bench_layout,
    bench_optimizer), --width where asked, and glibc's allocator tuned as every lumiere-* command tunes it
    (before torch loads)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    if width:
        ap.add_argument("--width", type=int, default=32, help="base width of the STUNet of the train step and profile")
    args = ap.parse_args()
    from lumiere_pl.utils.allocator import keep_freed_memory

    keep_freed_memory()
    return args


def alternate(fns: dict, rounds: int) -> dict:
    """Each fn timed once per round, the order reversed every other round."""
    times: dict = {k: [] for k in fns}
    for r in range(rounds):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def ratio_line(times: dict) -> str:
    old, new = (statistics.median(v) for v in times.values())
    ratios = [b / a for a, b in zip(*times.values())]
    return (f"{old * 1e3:9.1f} ms {new * 1e3:9.1f} ms   {statistics.median(ratios):.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f})")


MATMUL_LIKE = ("convolution", "mm", "bmm", "addmm", "attention", "linear")     # what torch's FLOP counter counts


def split_seconds(events) -> dict:
    """Self CPU seconds of one profiled step: temporal convs (ops under TimeConv's autograd function, or a convolution
    whose weight is (o, i, k, 1) with k > 1), other matmul-like ops (spatial convs, linear, attention: the ops that
    carry the counted FLOPs) and memory-bound ops (norms, activations, elementwise, reductions, copies)."""
    out = {"temporal convs": 0.0, "other matmul-like": 0.0, "memory-bound": 0.0}

    def is_time_conv(e) -> bool:
        return "convolution" in e.name and any(len(s) == 4 and s[3] == 1 and s[2] > 1 for s in e.input_shapes)

    def walk(e, under: bool) -> None:
        under = under or "TimeConvFunction" in e.name or is_time_conv(e)
        if e.name.startswith("aten::"):
            kind = ("temporal convs" if under and any(k in e.name for k in MATMUL_LIKE + ("sum",)) else
                    "other matmul-like" if any(k in e.name for k in MATMUL_LIKE) else "memory-bound")
            out[kind] += e.self_cpu_time_total / 1e6
        for child in e.cpu_children:
            walk(child, under)

    for e in events:
        if e.cpu_parent is None:
            walk(e, False)
    return out


def main() -> None:
    args = start(__doc__, width=True)
    import torch
    from torch.profiler import ProfilerActivity, profile

    from bench import _stunet_worker as W
    from bench.bench_stunet import header
    from lumiere_pl.models.kernels import time_conv_weight_grad, using
    from lumiere_pl.utils.flops import count_flops

    header(torch.get_num_threads())
    g = torch.Generator().manual_seed(0)

    print(f"\nweight gradient of one temporal conv (kernel 3), median of {args.rounds} rounds:")
    print(f"  {'(b c t (h w)), stride':28s} {'oneDNN':>12s} {'matmuls':>12s}   matmuls / oneDNN (range)   max diff")
    for (b, c, t, s), stride in SHAPES:
        x = torch.randn(b, t, s, c, generator=g).permute(0, 3, 1, 2)               # time-major memory
        w = torch.randn(c, c, 3, 1, generator=g) * 0.1
        t_out = (t + 2 - 3) // stride + 1
        dy = torch.randn(b, t_out, s, c, generator=g).permute(0, 3, 1, 2)

        def onednn():
            return torch.ops.aten.convolution_backward(dy, x, w, None, [stride, 1], [1, 0], [1, 1], False, [0, 0], 1,
                                                       [False, True, False])[1]

        def matmuls():
            return time_conv_weight_grad(x, dy, 3, stride, 1)

        want = onednn()
        diff = float((matmuls() - want).abs().max() / want.abs().max())
        label = f"{(b, c, t, s)}, {stride}"
        print(f"  {label:28s} {ratio_line(alternate({'o': onednn, 'm': matmuls}, args.rounds))}   {diff:.1e}")

    step = W.Session("ours", (2, 3, 16, 64, 64), torch.get_num_threads(), args.width).step  # bench_stunet's step

    def switched(on: bool):
        def run():
            with using(time_conv_weight_grad=on):
                step()
        return run

    for on in (False, True):                                    # warm-up (and AdamW state)
        switched(on)()
    times = alternate({"off": switched(False), "on": switched(True)}, args.rounds)
    print(f"\ntrain step, clip (2, 3, 16, 64, 64), base width {args.width}, forward + backward + AdamW, median of "
          f"{args.rounds} rounds:")
    print(f"  {'oneDNN backward':>15s} {'matmul weight grad':>20s}   on / off (range)")
    print(f"  {ratio_line(times)}")

    print("\nprofile of one train step, self CPU seconds:")
    print(f"  {'':20s} {'temporal convs':>15s} {'other matmul-like':>18s} {'memory-bound':>13s} {'total':>7s}")
    split = {}
    for on in (False, True):
        with using(time_conv_weight_grad=on):
            step()
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                step()
        split[on] = split_seconds(prof.events())
        print(f"  {'matmul weight grad' if on else 'oneDNN backward':20s} " + " ".join(
            f"{v:{w}.3f}" for v, w in zip(split[on].values(), (15, 18, 13))) + f" {sum(split[on].values()):7.3f}")
    flops, ceiling = count_flops(step) / 1e9, W.matmul_gflops()           # GFLOP, GFLOP/s
    mem, matmul_like = split[True]["memory-bound"], split[True]["temporal convs"] + split[True]["other matmul-like"]
    overhead = max(0.0, sum(split[True].values()) - statistics.median(times["on"]))   # the profiler's own time
    bound = [flops / (flops + ceiling * m) for m in (mem, max(0.0, mem - overhead))]
    efficiency = flops / matmul_like / ceiling
    print(f"\n{flops:.1f} GFLOP; matmul ceiling {ceiling:.1f} GFLOP/s; the matmul-like ops ran at "
          f"{100 * efficiency:.0f} % of it ({flops:.1f} GFLOP in {matmul_like:.3f} s)")
    print(f"share of the ceiling the step could reach with every matmul-like op at the ceiling and the memory-bound "
          f"ops as they are ({mem:.3f} s, or {mem - overhead:.3f} s if all the profiler's {overhead:.3f} s were "
          f"theirs): {100 * bound[0]:.0f}-{100 * bound[1]:.0f} %")
    print(f"for 55 % with the matmul-like ops as they are, the memory-bound ops would have to take "
          f"{max(0.0, flops / (0.55 * ceiling) - matmul_like):.3f} s")


if __name__ == "__main__":
    main()
