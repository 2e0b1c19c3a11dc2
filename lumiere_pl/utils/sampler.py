"""A training sampler that can start in the middle of an epoch, for exact resume of map-style datasets.

Lightning 2.x restores its loop counters from a checkpoint but not the position of a plain DataLoader: a resumed run
would start the interrupted epoch over. ResumableSampler makes the order a function of (seed, epoch) (a seeded
permutation, the same on every rank, split by rank like DistributedSampler) and skips the batches the checkpoint had
already trained on. It subclasses DistributedSampler, so Lightning uses it under DDP as it is.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

from torch.utils.data import Dataset, DistributedSampler


def resume_position(trainer) -> Tuple[int, int]:
    """(epoch, batches of that epoch already trained) of a trainer whose loops were restored from a checkpoint;
    (0, 0) for a fresh run or no trainer. Read before the fit loop resets its counters, i.e. in train_dataloader()."""
    if trainer is None:
        return 0, 0
    loop = trainer.fit_loop
    return loop.epoch_progress.current.completed, loop.epoch_loop.batch_progress.current.processed


class ResumableSampler(DistributedSampler):
    """Seeded shuffle per epoch; `start_at(epoch, batches)` makes the next pass skip `batches` batches of `epoch`."""

    def __init__(self, dataset: Dataset, batch_size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 drop_last: bool = True):
        """drop_last: the DataLoader drops the last partial batch (also keeps every rank at the same count)."""
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=drop_last)
        self.batch_size, self.drop_last_batch = batch_size, drop_last
        self._skip: Optional[int] = None     # samples to skip at the start of the next pass

    def batches_per_epoch(self) -> int:
        return self.num_samples // self.batch_size if self.drop_last_batch else -(-self.num_samples // self.batch_size)

    def start_at(self, epoch: int, batches: int) -> None:
        if batches and batches >= self.batches_per_epoch():   # the checkpoint closed its epoch: start the next one
            epoch, batches = epoch + 1, 0
        self.set_epoch(epoch)
        self._skip = batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())               # this rank's share of permutation(seed + epoch)
        skip, self._skip = self._skip or 0, None
        return iter(indices[skip:])
