"""data.batch_size=auto: the largest batch that fits one GPU, found by Lightning's tuner before training starts.

Lightning's Tuner.scale_batch_size in its binsearch mode (the batch doubled until out-of-memory, then a binary search
between the last size that fitted and the first that did not, 5% taken off as a margin) runs a few training steps
at each size on the run's own module and data, with no checkpoint, log or sample written, then puts the module back
as it was: training starts at step 0 with the size found, which config.yaml records (a resumed run reads it from
its checkpoint). Refused, in one line, where it cannot work: on the CPU (an allocation too large is no error there:
Linux kills the process) and on more than one device (Lightning's tuner refuses distributed strategies: find it on
one GPU, then set it).
"""
from __future__ import annotations

from typing import Optional

import torch

from lumiere_pl.config import ExperimentConfig
from lumiere_pl.errors import InputError

AUTO = "auto"


def on_cuda(cfg: ExperimentConfig) -> bool:
    """Whether the run trains on CUDA GPUs (trainer.accelerator gpu / cuda, or auto with one visible)."""
    acc = cfg.trainer.accelerator
    return acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())


def check_auto(cfg: ExperimentConfig, resumed: Optional[dict] = None) -> None:
    """Before anything is built: data.batch_size=auto on the CPU or on several devices is refused; a resumed run
    takes the size its checkpoint trained with (resumed: that checkpoint's config)."""
    d, tr = cfg.data, cfg.trainer
    if d.batch_size != AUTO:
        return
    if resumed is not None:
        d.batch_size = int(resumed["data"]["batch_size"])
        print(f"note: data.batch_size=auto: the resumed run's {d.batch_size} (its checkpoint's config)")
        return
    if not on_cuda(cfg):
        raise InputError(f"data.batch_size=auto with trainer.accelerator={tr.accelerator} on "
                         f"{'a machine without a CUDA GPU' if not torch.cuda.is_available() else 'the CPU'}: the "
                         f"largest batch is found on a GPU (on the CPU an allocation too large is no error: Linux "
                         f"kills the process); expected an integer data.batch_size")
    devices = tr.devices if isinstance(tr.devices, int) else len(tr.devices) if isinstance(tr.devices, (list, tuple)) \
        else torch.cuda.device_count()
    if devices * tr.num_nodes != 1:
        raise InputError(f"data.batch_size=auto with trainer.devices={tr.devices} trainer.num_nodes={tr.num_nodes}: "
                         f"Lightning's tuner finds the batch on one device; run with trainer.devices=1 (it prints the "
                         f"size and config.yaml records it), then set data.batch_size to it")


def find_batch_size(trainer, module, datamodule, cfg: ExperimentConfig) -> int:
    """Run Lightning's tuner (binsearch) from a batch of 1 and make its size the run's: data.batch_size of cfg, of
    the module's config and of the config saved in its checkpoints."""
    from lightning.pytorch.tuner import Tuner

    datamodule.batch_size = 1
    size = Tuner(trainer).scale_batch_size(module, datamodule=datamodule, mode="binsearch", init_val=1,
                                           steps_per_trial=3)
    if not size or size < 1:
        raise InputError("data.batch_size=auto: Lightning's tuner found no batch that fits (not even 1 clip); "
                         "expected a model that fits this GPU (model.checkpointing=true, fewer data.frames)")
    size = int(size)
    datamodule.batch_size = size
    cfg.data.batch_size = module.cfg.data.batch_size = size
    module.hparams["config"]["data"]["batch_size"] = size
    if trainer.is_global_zero:
        print(f"data.batch_size=auto: {size}, the largest batch that fits (Lightning's tuner, binsearch, 5% margin)")
    return size
