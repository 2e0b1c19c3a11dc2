"""Training steps of the STUNet on one GPU through Lightning: throughput and peak memory (run by bench/gpu_check.sh).

  python -m bench.gpu_train_steps --label eager [--steps 15] [--warmup 5] [key=value ...]

Builds the experiment from the defaults and the overrides (the model from the config, synthetic moving shapes as
data: the step's cost does not depend on what the pixels show), trains --steps steps with no validation, checkpoint
or logger, and prints one line: the median time of the steps after --warmup (the warm-up ones include torch.compile
and cuDNN autotuning; their total is printed too), clips/s, and the peak CUDA memory allocated. Exit 0 with a
message when no GPU is present.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", required=True, help="name of this case in the printed line")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=5, help="first steps left out of the median (compile, autotune)")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides (trainer.strategy=fsdp, ...)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(f"{args.label}: no CUDA GPU visible (torch.cuda.is_available() is False); nothing measured")
        return 0

    import lightning as L

    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit import DiffusionModule

    cfg = load_config(None, [*args.overrides, f"train.max_steps={args.steps}", "train.val_prompts=[]",
                             "trainer.accelerator=gpu", "trainer.devices=1"])
    times: list = []

    class StepTimer(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if len(times) == args.warmup:
                torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t0)

    L.seed_everything(0, verbose=False)
    module = DiffusionModule(to_dict(cfg))
    tr = cfg.trainer
    trainer = L.Trainer(accelerator="gpu", devices=1, strategy=tr.strategy, precision=tr.precision,
                        max_steps=args.steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[StepTimer()])
    from lumiere_pl.data import build_datamodule

    trainer.fit(module, datamodule=build_datamodule(cfg.data))
    if len(times) <= args.warmup:
        print(f"{args.label}: only {len(times)} steps ran (warm-up {args.warmup}); nothing measured")
        return 1
    step = statistics.median(times[args.warmup:])
    b, d = cfg.data.batch_size, cfg.data
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"{args.label}: {step * 1e3:8.1f} ms/step  {b / step:7.2f} clips/s  peak {peak:6.1f} GiB"
          f"  (batch {b} x {d.frames} frames x {d.size}x{d.size}, {tr.precision}, strategy {tr.strategy}; "
          f"median of {len(times) - args.warmup} steps; the first {args.warmup} took {sum(times[:args.warmup]):.1f} s)",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
