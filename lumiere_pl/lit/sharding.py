"""trainer.strategy=fsdp: FSDP2 (torch's fully_shard) through Lightning's ModelParallelStrategy (docs/SCALING.md).

The strategy launches the processes and builds a 1-D data-parallel mesh over all of them; the LightningModule's
configure_model calls `shard` to wrap the network (the classes in trainer.fsdp.shard_modules, then the whole net) and
to shard the EMA like the parameters. Checkpoints are single files with full tensors (gathered on rank 0), so they
resume under any strategy and load in one process for sampling and export.
"""
from __future__ import annotations

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn

from lumiere_pl.config import ConfigError, FSDPConfig, TrainerConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class FSDP2Strategy(ModelParallelStrategy):
    """ModelParallelStrategy with every process in the data-parallel dimension (no tensor parallelism) and
    full-file checkpoints: FSDP over trainer.devices x trainer.num_nodes processes."""

    def __init__(self, fsdp: FSDPConfig):
        super().__init__(save_distributed_checkpoint=False)
        self.fsdp = fsdp

    def setup_environment(self) -> None:
        # the world size is known here (devices may have been "auto"): all of it is data-parallel
        self._data_parallel_size, self._tensor_parallel_size = self.num_nodes * self.num_processes, 1
        super().setup_environment()


def build_strategy(tr: TrainerConfig):
    """Lightning's `strategy` argument: our FSDP2 strategy for "fsdp", the name itself otherwise (auto, ddp, ...)."""
    return FSDP2Strategy(tr.fsdp) if tr.strategy == "fsdp" else tr.strategy


def is_sharded(net: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(net, FSDPModule)


def shard(net: nn.Module, ema, cfg: FSDPConfig, mesh) -> None:
    """fully_shard each module of a class in cfg.shard_modules, then net itself (the rest of its weights), on `mesh`
    (1-D: FSDP; 2-D (replicate, shard): HSDP); then the EMA buffers as DTensors placed like the parameters."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if is_sharded(net):                                  # configure_model runs again in a later fit/validate
        return
    units = [m for m in net.modules() if type(m).__name__ in cfg.shard_modules]
    if cfg.shard_modules and not units:
        found = sorted({type(m).__name__ for m in net.modules()})
        raise ConfigError(f"trainer.fsdp.shard_modules={list(cfg.shard_modules)}: no module of {type(net).__name__} "
                          f"is of these classes; its classes are {found}")
    policy = MixedPrecisionPolicy(param_dtype=DTYPES[cfg.param_dtype], reduce_dtype=DTYPES[cfg.reduce_dtype])
    for m in reversed(units):                            # innermost first: a unit's weights leave its parent's unit
        fully_shard(m, mesh=mesh, mp_policy=policy, reshard_after_forward=cfg.reshard_after_forward)
    fully_shard(net, mesh=mesh, mp_policy=policy, reshard_after_forward=cfg.reshard_after_forward)
    ema.shard_like(net)


def device_mesh(strategy: FSDP2Strategy):
    """The mesh the weights are sharded on: all processes (trainer.fsdp.shard_size 0 or the world size), or
    (world / shard_size replicas) x (shard_size shards) for HSDP."""
    from torch.distributed.device_mesh import init_device_mesh

    world, size = strategy.world_size, strategy.fsdp.shard_size
    if size in (0, world):
        return strategy.device_mesh["data_parallel"]
    if world % size:
        raise ConfigError(f"trainer.fsdp.shard_size={size} does not divide the {world} processes")
    return init_device_mesh(strategy.root_device.type, (world // size, size), mesh_dim_names=("replicate", "shard"))
