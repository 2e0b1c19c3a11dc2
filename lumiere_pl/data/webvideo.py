"""WebVideoDataModule: WebDataset shards of real video streamed, decoded with PyAV in the workers, correct under DDP.

Per epoch, each DDP rank gets the same number of batches:
  * non-resampled (cfg.epoch_length == 0): every rank sees the same seeded shard order (reshuffled each epoch).
    The first (num_shards // world) * world shards are split whole across ranks (shard i -> rank i % world); the
    remaining (num_shards % world) shards are read by every rank, which keeps their samples j with
    (j + i) % world == rank. No sample is served twice in an epoch. Sample counts per shard come from the
    manifest.json written by `lumiere-shards`; every rank stops after the smallest rank's count (whole batches
    in training), so at most a few samples per epoch are left out. Under DDP a manifest is required.
  * resampled (cfg.epoch_length > 0): each rank and worker draws shards with replacement (seeded by
    seed, epoch, rank, worker); every rank yields exactly epoch_length batches.
Within a rank, shards are split across DataLoader workers; samples are shuffled in a buffer (cfg.shuffle_buffer)
before decoding. Bad samples are skipped, warned about and counted (lumiere_pl.data.health); if that leaves a rank
short of its batch count the stream restarts to fill it (a warning says so), so no rank ever waits on another.
Validation: no shuffling, centred frames and crops, all ranks capped to the same count, last batch may be partial.
data.augment=false: training takes that fixed view too (the view encoded shards hold: lumiere_pl/data/encoded.py,
whose samples this module serves as well, with their stored encodings in place of pixels).

Exact resume: an epoch's stream is a pure function of (seed, epoch, rank, num_workers): shard order, shuffle buffer
and resampled shard draws are seeded per (seed, epoch, rank, worker), and each sample's start frame and crop per
its position in its worker's stream. On fit start from a checkpoint, the training loader starts at the checkpoint's
epoch and drops the batches already trained in it (EpochLoader.start_at), so the next batch is the one the
uninterrupted run would have trained on. When the checkpoint records that no sample of that pass was skipped as bad
(WebVideoDataModule.state_dict, summed over ranks), the workers pass over the trained samples reading their bytes
without decoding them; otherwise the batches are decoded and dropped (at most one epoch's worth).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import random
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch.utils.data._utils.collate import default_collate

from lumiere_pl.data.config import DataConfig, data_limits
from lumiere_pl.data.health import SkipCounter
from lumiere_pl.data.sample_decode import decode_sample
from lumiere_pl.data.shard_check import check_shards
from lumiere_pl.data.tar_reader import expand, iter_shard, manifest_counts
from lumiere_pl.utils.rng import step_seed
from lumiere_pl.utils.sampler import resume_position

log = logging.getLogger("lumiere_pl.data")

Assignment = List[Tuple[int, str, bool]]   # (position in the epoch's shard order, url, shared: keep every world-th)


def assign_shards(urls: List[str], rank: int, world: int, order_seed: Optional[int]) -> Assignment:
    """This rank's shards for one epoch (see the module docstring). order_seed None keeps the given order."""
    order = list(urls)
    if order_seed is not None:
        random.Random(order_seed).shuffle(order)
    whole = (len(order) // world) * world
    mine = [(i, u, False) for i, u in enumerate(order[:whole]) if i % world == rank]
    return mine + [(i, u, True) for i, u in enumerate(order) if i >= whole]


def worker_samples(urls: List[str], counts: List[int], rank: int, world: int, order_seed: Optional[int],
                   num_workers: int) -> List[int]:
    """Samples in each DataLoader worker's stream of this rank for one epoch (WebVideoDataset._raw's split)."""
    by_url, out = dict(zip(urls, counts)), [0] * num_workers
    for n, (i, u, shared) in enumerate(assign_shards(urls, rank, world, order_seed)):
        out[n % num_workers] += sum(1 for j in range(by_url[u]) if (j + i) % world == rank) if shared else by_url[u]
    return out


def samples_per_rank(urls: List[str], counts: List[int], world: int, order_seed: Optional[int]) -> int:
    """The smallest rank's sample count for an epoch: the cap every rank stops at."""
    by_url = dict(zip(urls, counts))
    totals = []
    for r in range(world):
        n = 0
        for i, u, shared in assign_shards(urls, r, world, order_seed):
            n += sum(1 for j in range(by_url[u]) if (j + i) % world == r) if shared else by_url[u]
        totals.append(n)
    return min(totals)


class WebVideoDataset(IterableDataset):
    """Decoded examples of one rank's share of the shards, split across DataLoader workers."""

    def __init__(self, urls: List[str], cfg: DataConfig, train: bool, skips: SkipCounter,
                 rank: int = 0, world: int = 1, resampled: bool = False):
        self.urls, self.cfg, self.train, self.skips = urls, cfg, train, skips
        self.rank, self.world, self.resampled = rank, world, resampled
        # set by EpochLoader before each pass; shared memory, so persistent workers read the current pass
        self._epoch = multiprocessing.Value("q", 0, lock=False)
        # resume without decoding (EpochLoader.start_at): in pass `_skip_epoch` only, logical worker w passes over
        # the first _skip[w] samples of its stream undecoded, and DataLoader worker i plays logical worker
        # (i + _rotate) % num_workers, so the batches come in the order the interrupted pass would have served them
        self._skip_epoch = multiprocessing.Value("q", -1, lock=False)
        self._rotate = multiprocessing.Value("q", 0, lock=False)
        self._skip = multiprocessing.Array("q", max(1, cfg.num_workers), lock=False)

    @property
    def epoch(self) -> int:
        return self._epoch.value

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.value = value

    @staticmethod
    def order_seed_for(cfg: DataConfig, train: bool, epoch: int) -> Optional[int]:
        """The shard-order seed: shared by all ranks (it decides which rank owns which shard)."""
        return hash((cfg.seed, epoch)) if train else None

    def order_seed(self) -> Optional[int]:
        return self.order_seed_for(self.cfg, self.train, self.epoch)

    def _raw(self, wid: int, nw: int, rng: random.Random) -> Iterator[Dict[str, object]]:
        if self.resampled:
            while True:
                yield from iter_shard(rng.choice(self.urls), self.skips, data_limits(self.cfg))
        for n, (i, url, shared) in enumerate(assign_shards(self.urls, self.rank, self.world, self.order_seed())):
            if n % nw != wid:
                continue
            for j, raw in enumerate(iter_shard(url, self.skips, data_limits(self.cfg))):
                if not shared or (j + i) % self.world == self.rank:
                    yield raw

    def _shuffled(self, it: Iterator, rng: random.Random) -> Iterator:
        size = self.cfg.shuffle_buffer if self.train else 0
        buf: list = []
        for x in it:
            if size <= 1:
                yield x
                continue
            buf.append(x)
            if len(buf) >= size:
                k = rng.randrange(len(buf))
                buf[k], buf[-1] = buf[-1], buf[k]
                yield buf.pop()
        rng.shuffle(buf)
        yield from buf

    def skip_ahead(self, epoch: int, samples: List[int], rotate: int) -> None:
        """In pass `epoch` only: logical worker w skips its first samples[w] samples without decoding them."""
        self._skip_epoch.value, self._rotate.value = epoch, rotate
        self._skip[:] = samples

    def __iter__(self) -> Iterator[Dict[str, object]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        skip = 0
        if self.epoch == self._skip_epoch.value:
            wid = (wid + self._rotate.value) % nw                # the logical worker: its shards, seeds, views
            skip = self._skip[wid]
        rng = random.Random(hash((self.cfg.seed, self.epoch, self.rank, wid, self.train)))
        for n, raw in enumerate(self._shuffled(self._raw(wid, nw, rng), rng)):
            if n < skip:
                continue                                         # trained before the resume: read, not decoded
            # start frame and crop: a function of the sample's position in this worker's stream, nothing else
            view = None
            if self.train and self.cfg.augment:
                view = np.random.default_rng(step_seed(self.cfg.seed, self.epoch, self.rank, wid, n))
            ex = decode_sample(raw, self.cfg, view, self.skips)
            if ex is not None:
                yield ex


def _split_batch(batch: Dict[str, object]) -> List[Dict[str, object]]:
    n = len(batch["caption"])
    return [{k: v[i] for k, v in batch.items()} for i in range(n)]


class EpochLoader:
    """Iterates a DataLoader and yields exactly num_samples(epoch) samples (None: all) in batches of batch_size.

    Worker batches are re-batched in the main process, so partial batches at worker ends do not change the count.
    drop_last: whole batches only (training). When the stream runs dry early (bad data), it restarts to fill.
    start_at(epoch, batches): the next pass is epoch `epoch` without its first `batches` batches (exact resume).
    worker_samples(epoch): samples in each worker's stream of that pass (None: endless, resampled; unknown: None).
    """

    def __init__(self, loader: DataLoader, dataset: WebVideoDataset, batch_size: int,
                 num_samples: Callable[[int], Optional[int]], drop_last: bool,
                 worker_samples: Optional[Callable[[int], Optional[List[Optional[int]]]]] = None):
        self.loader, self.dataset, self.batch_size = loader, dataset, batch_size
        self.num_samples_fn, self.drop_last, self.epoch = num_samples, drop_last, 0
        self.worker_samples = worker_samples
        self._skip = 0                          # batches to drop at the start of the next pass (decoded)
        self._done = 0                          # samples of the next pass already trained (skipped undecoded)
        self.pass_epoch, self.skips_at_start = -1, 0   # the pass in progress; the bad-sample count when it began

    def start_at(self, epoch: int, batches: int, undecoded: bool = False) -> None:
        """Resume: the next pass is `epoch`, skipping the `batches` batches a checkpoint already trained on; a
        checkpoint that closed its epoch (batches == the epoch's count) starts the next epoch.

        undecoded: the caller knows no sample of those batches was skipped as bad (so each worker served whole
        batches of consecutive samples): the workers then pass over them without decoding, when every skipped
        batch was a full batch of the DataLoader's round-robin over workers; otherwise they are decoded and
        dropped (still exact, slower)."""
        n = self.num_samples(epoch)
        if batches and n is not None and batches >= -(-n // self.batch_size):
            epoch, batches = epoch + 1, 0
        self.epoch, self._skip, self._done = epoch, batches, 0
        samples = self._undecoded_skip(epoch, batches) if undecoded and batches else None
        if samples is not None:
            self.dataset.skip_ahead(epoch, samples, batches % len(samples))
            self._skip, self._done = 0, batches * self.batch_size

    def _undecoded_skip(self, epoch: int, batches: int) -> Optional[List[int]]:
        """Samples each logical worker skips so that the first `batches` batches are gone: batch k came from worker
        k % nw, full, while every worker had a full batch left. None when that does not hold or is unknown."""
        nw = max(1, self.loader.num_workers)
        caps = self.worker_samples(epoch) if self.worker_samples is not None else None
        if caps is None or len(caps) != nw:
            return None
        b, per = self.batch_size, [0] * nw
        for k in range(batches):
            per[k % nw] += b
            if caps[k % nw] is not None and per[k % nw] > caps[k % nw]:
                return None                                      # a partial batch was among them: decode instead
        return per

    def num_samples(self, epoch: int) -> Optional[int]:
        n = self.num_samples_fn(epoch)
        return (n // self.batch_size) * self.batch_size if n is not None and self.drop_last else n

    def __len__(self) -> int:
        n = self.num_samples(self.epoch)
        if n is None:
            raise TypeError("stream length unknown (no manifest): iterate to the end")
        return -(-n // self.batch_size)

    def _stream(self, num: Optional[int]) -> Iterator[Dict[str, object]]:
        restarts = 0
        while True:
            got = 0
            for batch in self.loader:
                got += 1
                yield batch
            if num is None:
                return
            if got == 0:
                raise RuntimeError(f"no usable sample in shards {self.dataset.urls[:3]} (all skipped)")
            restarts += 1
            log.warning("rank %d ran out of samples (bad data skipped); restarting its stream (%d) to keep "
                        "every rank at %d samples", self.dataset.rank, restarts, num)
            self.dataset.epoch += 1_000_003     # a different order for the refill

    def __iter__(self) -> Iterator[Dict[str, object]]:
        skip, self._skip = self._skip, 0
        for i, batch in enumerate(self._epoch()):
            if i >= skip:                       # the batches before are the same decoded ones, already trained on
                yield batch

    def _epoch(self) -> Iterator[Dict[str, object]]:
        num, b = self.num_samples(self.epoch), self.batch_size
        self.dataset.epoch = self.epoch
        self.pass_epoch, self.skips_at_start = self.epoch, self.dataset.skips.total
        self.epoch += 1
        emitted, self._done, pending = self._done, 0, []        # emitted: samples of this pass trained or served
        if num == 0 or (num is not None and emitted >= num):
            return
        for batch in self._stream(num):
            if not pending and len(batch["caption"]) == b and (num is None or emitted + b <= num):
                emitted += b
                yield batch                                     # the common case: a worker's full batch
            else:
                pending += _split_batch(batch)
                while len(pending) >= b and (num is None or emitted + b <= num):
                    out, pending = pending[:b], pending[b:]
                    emitted += b
                    yield default_collate(out)
            if num is not None and num - emitted < b and (self.drop_last or len(pending) >= num - emitted):
                break
        rest = len(pending) if num is None else min(len(pending), num - emitted)
        if pending and rest > 0 and not self.drop_last:
            yield default_collate(pending[:rest])


def _rank_world(trainer: Optional[L.Trainer]) -> Tuple[int, int]:
    if trainer is not None:
        return trainer.global_rank, trainer.world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class WebVideoDataModule(L.LightningDataModule):
    """Real-video shards (cfg.train_shards, cfg.val_shards) in the batch contract of lumiere_pl.data."""

    def __init__(self, cfg: DataConfig):
        super().__init__()
        if not cfg.train_shards:
            raise ValueError("data.name=webdataset needs data.train_shards (a path, brace pattern or URL)")
        self.cfg = cfg
        self.skips: Optional[SkipCounter] = None
        self._skips_pid = -1
        self._train_loader: Optional[EpochLoader] = None
        self._resumed_state: Dict[str, int] = {}                # state_dict of the checkpoint resumed from
        self._checked = False                                   # check_shards ran (its notes printed once)

    @property
    def batch_size(self) -> int:
        """data.batch_size (Lightning's batch-size tuner reads and sets it here: data.batch_size=auto)."""
        return self.cfg.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.cfg.batch_size = int(value)

    def setup(self, stage: Optional[str] = None) -> None:
        if self._skips_pid != os.getpid():      # one counter per process (DDP rank), shared with its workers
            self.skips, self._skips_pid = SkipCounter(), os.getpid()
        if not self._checked:                   # the shards' manifest against data.size / fps / frames
            notes, self._checked = check_shards(self.cfg), True
            if _rank_world(self.trainer)[0] == 0:
                for note in notes:
                    print(note)

    def _loader(self, pattern: str, train: bool) -> EpochLoader:
        if self.skips is None:
            self.setup()
        c = self.cfg
        rank, world = _rank_world(self.trainer)
        urls = expand(pattern)
        resampled = train and c.epoch_length > 0
        ds = WebVideoDataset(urls, c, train, self.skips, rank, world, resampled)
        counts = None if resampled else manifest_counts(urls)
        if not resampled and counts is None and world > 1:
            raise ValueError(f"shards {pattern!r} have no manifest.json with sample counts: under DDP set "
                             f"data.epoch_length > 0 (resampled mode) or write the shards with lumiere-shards")

        def num(epoch: int) -> Optional[int]:
            if resampled:
                return c.epoch_length * c.batch_size
            if counts is None:
                return None
            return samples_per_rank(urls, counts, world, WebVideoDataset.order_seed_for(c, train, epoch))

        def per_worker(epoch: int) -> Optional[List[Optional[int]]]:
            nw = max(1, c.num_workers)
            if resampled:
                return [None] * nw                                        # endless streams
            if counts is None:
                return None
            return worker_samples(urls, counts, rank, world, WebVideoDataset.order_seed_for(c, train, epoch), nw)
        loader = DataLoader(ds, batch_size=c.batch_size, num_workers=c.num_workers,  # workers kept across passes
                            persistent_workers=c.num_workers > 0, prefetch_factor=4 if c.num_workers > 0 else None)
        return EpochLoader(loader, ds, c.batch_size, num, drop_last=train, worker_samples=per_worker)

    def train_dataloader(self) -> EpochLoader:
        """A resumed fit starts at its checkpoint's epoch and batch (resume_position reads the restored loops); the
        trained batches are skipped without decoding when the checkpoint says no sample of that pass was bad."""
        loader = self._loader(self.cfg.train_shards, train=True)
        epoch, batches = resume_position(self.trainer)
        saved = self._resumed_state
        loader.start_at(epoch, batches, undecoded=saved.get("epoch") == epoch and saved.get("bad_samples") == 0)
        self._train_loader = loader
        return loader

    def state_dict(self) -> Dict[str, int]:
        """In every checkpoint: the training pass in progress and how many samples were skipped as bad in it, summed
        over ranks (called on every rank, as saving is). 0 lets a resume skip the pass's trained samples undecoded."""
        loader = self._train_loader
        if loader is None or loader.pass_epoch < 0 or self.skips is None:
            return {}
        bad = self.skips.total - loader.skips_at_start
        if self.trainer is not None and self.trainer.world_size > 1:
            strategy = self.trainer.strategy
            bad = int(strategy.reduce(torch.tensor(float(bad), device=strategy.root_device), reduce_op="sum"))
        return {"epoch": loader.pass_epoch, "bad_samples": bad}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self._resumed_state = dict(state)

    def val_dataloader(self) -> EpochLoader:
        return self._loader(self.cfg.val_shards or self.cfg.train_shards, train=False)
