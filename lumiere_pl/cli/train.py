"""lumiere-train: train a T2I U-Net, a STUNet or an SSR model from an experiment config.

  lumiere-train --config experiments/shapes/stunet.yaml [key=value ...] [--dry-run] [--resume [PATH|last]]

The config is resolved and checked before anything heavy is built; the run folder {out_dir}/{name} receives
config.yaml, checkpoints/, tb/ (TensorBoard), samples/ (MP4s written at each validation) and train_loss.csv.
--resume (= --resume last) continues a killed or preempted run exactly (docs/ROBUSTNESS.md).
Exit codes: 0 done, 1 internal error, 2 bad config, bad or missing checkpoint (model.init_from, --resume), a run
that exists without --resume, an output that cannot be written; 3 stopped by train.max_bad_steps non-finite steps in
a row (README, "Exit codes"). --debug or LUMIERE_DEBUG=1: the traceback of an error too.
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import List, Optional

from lumiere_pl.cli.errors import DEBUG_HELP, ArgumentParser, command
from lumiere_pl.config import RANDOM_INIT, ExperimentConfig, read_config, save_config, to_dict
from lumiere_pl.config_checks import check_files, check_init, random_t2i, validate
from lumiere_pl.errors import InputError
from lumiere_pl.utils.atomic import check_writable


def inherit_t2i(cfg: ExperimentConfig) -> tuple[ExperimentConfig, Optional[dict]]:
    """With model.init_from, the STUNet inflates exactly what was pretrained: its U-Net and text configs are taken
    from the T2I checkpoint (a differing value in the experiment is reported, then replaced)."""
    if not cfg.model.init_from or cfg.model.init_from == RANDOM_INIT:
        return cfg, None
    if cfg.model.name == "diffusers_stunet":          # a diffusers folder: schedule, prediction, VAE from it
        from lumiere_pl.models.diffusers_folder import resolve
        return resolve(cfg), None
    from lumiere_pl.checkpoint import load_t2i

    t2i_cfg, state = load_t2i(cfg.model.init_from)
    for section in ("unet", "text"):
        ours = cfg.model.unet if section == "unet" else cfg.text
        theirs = t2i_cfg.model.unet if section == "unet" else t2i_cfg.text
        if ours != theirs:
            print(f"note: {section} config taken from {cfg.model.init_from} (the experiment's differed)")
    keep = cfg.model.unet
    cfg.model.unet, cfg.text = t2i_cfg.model.unet, t2i_cfg.text
    cfg.model.unet.cond_channels, cfg.model.unet.aug_embedding = keep.cond_channels, keep.aug_embedding
    return cfg, state


def _rank_zero() -> bool:
    """Before Lightning starts: rank 0 of a launcher's processes (torchrun, SLURM), or the only process."""
    import os

    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def resume_path(cfg: ExperimentConfig, resume: str) -> Optional[str]:
    """--resume PATH, or 'last': the newer of the run's last.ckpt and on_exception.ckpt. None: no such file."""
    if resume != "last":
        return resume if Path(resume).is_file() else None
    ckpt_dir = cfg.run_dir / "checkpoints"
    found = [p for p in (ckpt_dir / "last.ckpt", ckpt_dir / "on_exception.ckpt") if p.is_file()]
    return str(max(found, key=lambda p: p.stat().st_mtime_ns)) if found else None


def check_resume(cfg: ExperimentConfig, path: str) -> dict:
    """The checkpoint to resume is a lumiere-pl checkpoint of the model this run trains (read with mmap: cheap),
    checked before anything is built; Lightning's own loading would report a bad file with torch's message.
    Returns it (mapped) for resume_fits."""
    from lumiere_pl.checkpoint import check_model, load_checkpoint
    from lumiere_pl.errors import CheckpointError

    ckpt = load_checkpoint(path, mmap=True)
    check_model(path, ckpt, [cfg.model.name], f" (model.name={cfg.model.name!r} in the config being resumed)")
    missing = [k for k in ("pytorch-lightning_version", "loops", "optimizer_states") if k not in ckpt]
    if missing:
        raise CheckpointError(f"--resume {path}: a checkpoint without the training state ({', '.join(missing)}): it "
                              "can be sampled or inflated (model.init_from), not resumed; expected a checkpoint "
                              "written during training (checkpoints/last.ckpt)")
    return ckpt


def resume_fits(module, ckpt: dict, path: str) -> None:
    """The checkpoint's weights have the shapes of the module this run's config built (its network, EMA, all but
    the frozen pretrained weights a diffusers_stunet reads from its folder): checked before the run folder's
    config.yaml is written, so resuming with a config of another model changes nothing."""
    from lumiere_pl.checkpoint import compare_shapes

    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if hasattr(v, "shape")}
    compare_shapes(expected, stored, f"--resume {path}", "the model this run's config builds",
                   optional=frozenset(f"net.{k}" for k in module.parts.pretrained_keys))

RUN_ENTRIES = {"config.yaml", "checkpoints", "tb", "samples", "train_loss.csv"}     # what lumiere-train writes


def check_run_folder(cfg: ExperimentConfig) -> None:
    """A new run goes into a folder that does not exist, or holds only what lumiere-train (and the sweep runner and
    lumiere-export's default outputs beside it) write: a folder of other files is refused, not written into."""
    run = cfg.run_dir
    if not run.is_dir():
        return
    ours = RUN_ENTRIES | {cfg.name, f"{cfg.name}.safetensors", f"{cfg.name}.yaml"}
    foreign = sorted(p.name for p in run.iterdir() if p.name not in ours and not p.name.startswith("sweep_"))
    if foreign:
        raise InputError(f"{run}: exists and holds files lumiere-train did not write ({', '.join(foreign[:3])}"
                         f"{', ...' if len(foreign) > 3 else ''}); expected a new run folder: another name=... or "
                         "out_dir=...")


def dry_run(module, cfg: ExperimentConfig) -> None:
    from lumiere_pl.utils.memory import memory_table, training_memory

    shape, flops = module.forward_flops()
    s = module.summary()
    print(f"model: {s['model']}   input {tuple(shape)}   text encoder: {s['text_encoder']} ({s['text_dim']}-d)")
    print(f"parameters: trainable {s['trainable']:,}   frozen {s['frozen']:,}")
    print(f"forward GFLOPs per {'clip' if module.is_video else 'image'}: {flops / 1e9:.3f}")
    tr = cfg.trainer
    devices = tr.num_nodes * (tr.devices if isinstance(tr.devices, int) else len(tr.devices) if
                              isinstance(tr.devices, (list, tuple)) else 1)
    shards = (tr.fsdp.shard_size or devices) if tr.strategy == "fsdp" else 1
    if cfg.data.batch_size == "auto":                   # found on the GPU when training starts: shown per clip
        module.cfg.data.batch_size = 1
        print("data.batch_size=auto: activations per clip below (batch 1); the batch is found when training starts")
    print(memory_table(training_memory(module, shards), cfg.model.checkpointing, module.cfg.data.batch_size, shards))
    if cfg.data.encoded:
        print(f"  text encoder, VAE encoder: not loaded (encoded shards, data.encoded={cfg.data.encoded})")


def build_trainer(cfg: ExperimentConfig):
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import TensorBoardLogger

    from lumiere_pl.lit.callbacks import training_callbacks
    from lumiere_pl.lit.checkpoint_io import AtomicCheckpointIO
    from lumiere_pl.lit.sharding import build_strategy

    t, tr = cfg.train, cfg.trainer
    run = cfg.run_dir
    return L.Trainer(
        accelerator=tr.accelerator, devices=tr.devices, num_nodes=tr.num_nodes, strategy=build_strategy(tr),
        precision=tr.precision, max_steps=t.max_steps, gradient_clip_val=t.grad_clip or None,
        accumulate_grad_batches=tr.accumulate_grad_batches, log_every_n_steps=tr.log_every_n_steps,
        val_check_interval=min(t.val_every_n_steps, t.max_steps), check_val_every_n_epoch=None,
        logger=TensorBoardLogger(str(run), name="tb", version="", default_hp_metric=False),
        callbacks=[*training_callbacks(cfg), LearningRateMonitor(logging_interval="step")],
        plugins=[AtomicCheckpointIO()],                   # write to <path>.tmp, fsync, rename: kills never truncate
        enable_progress_bar=tr.enable_progress_bar, default_root_dir=str(run), deterministic=False,
    )


def validate_at_end(trainer, module, datamodule, cfg: ExperimentConfig) -> None:
    """Lightning validates every train.val_every_n_steps; when max_steps is not a multiple of it, the last steps
    would leave no samples: validate once more at the end. Not again for a finished run resumed (its samples exist);
    rank 0 decides, so every process of a multi-node run takes part or none."""
    step, every = trainer.global_step, min(cfg.train.val_every_n_steps, cfg.train.max_steps)
    missing = ((bool(cfg.train.val_prompts) or cfg.train.val_captions > 0) and step > 0 and step % every != 0
               and not (cfg.run_dir / "samples" / f"step_{step:07d}").is_dir())
    if trainer.strategy.broadcast(missing, src=0):
        trainer.validate(module, datamodule=datamodule, verbose=False)


@command("lumiere-train")
def main(argv: List[str]) -> int:
    ap = ArgumentParser(prog="lumiere-train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="experiment YAML (default: the built-in defaults)")
    ap.add_argument("--dry-run", action="store_true", help="print the model summary (parameters, FLOPs) and exit")
    ap.add_argument("--resume", nargs="?", const="last", default=None,
                    help="resume from a checkpoint path, or 'last': the newer of the run's checkpoints/last.ckpt "
                         "and checkpoints/on_exception.ckpt; 'auto': like 'last' when the run has a checkpoint, "
                         "else start (a finished run is then a no-op: what `make train` uses)")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. train.max_steps=200")
    ap.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = ap.parse_args(argv)
    cfg = read_config(args.config, args.overrides)      # keys and types; ConfigError: one line, exit 2
    cfg, t2i_state = inherit_t2i(cfg)                   # the pretrained model's own U-Net / text / schedule
    validate(cfg)                                       # values, once, on the config the run will use
    if not args.dry_run:
        check_init(cfg)                       # a STUNet without model.init_from would train on a random frozen T2I
        check_files(cfg)                      # shards and local model folders exist: fail before building anything
        check_writable(cfg.run_dir, "the run folder (out_dir/name)")
        if random_t2i(cfg) and _rank_zero():
            print(f"note: model.init_from={RANDOM_INIT}: the {cfg.model.name}'s T2I U-Net is random, not pretrained")
    from lumiere_pl.data.encoded import check_encoded

    for note in check_encoded(cfg):           # encoded shards: their key against the run's, data.encoded set
        if _rank_zero():
            print(note)
    ckpt_path, resumed = None, None
    existing = resume_path(cfg, "last")
    if args.resume == "auto":
        args.resume = "last" if existing else None
    elif existing and not args.resume and not args.dry_run:
        raise InputError(f"{cfg.run_dir} already holds a run ({existing}); continue it with --resume, or start over "
                         f"under another name=... (or delete the folder)")
    if not args.resume and not args.dry_run:
        check_run_folder(cfg)
    if args.resume:
        ckpt_path = resume_path(cfg, args.resume)
        if ckpt_path is None:
            where = (f"{cfg.run_dir / 'checkpoints'}/{{last,on_exception}}.ckpt" if args.resume == "last"
                     else args.resume)
            raise InputError(f"--resume {args.resume}: no checkpoint at {where}")
        resumed = check_resume(cfg, ckpt_path)
    if cfg.data.batch_size == "auto" and not args.dry_run:     # on one GPU, or refused; a resume takes its own
        from lumiere_pl.checkpoint import config_of

        check_auto_from = to_dict(config_of(resumed, ckpt_path)) if resumed is not None else None
        from lumiere_pl.lit.batch_size import check_auto

        check_auto(cfg, check_auto_from)

    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from lumiere_pl.data import build_datamodule

    # known and harmless: the shard stream's __len__ is exact per rank and worker (docs/DATA.md); our loaders resume
    # mid-epoch from the restored loop counters (resume_position), which Lightning's check does not know; a
    # deprecation inside Lightning itself
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # FSDP2 warns of every unit whose output is a view (an in-place op on it would skip a gather): no caller of ours
    # modifies a unit's output in place; tests/test_fsdp.py checks the sharded run's updates against one process
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(\w+\) returned a view tensor")
    # Lightning's own lines on Ctrl-C and SIGTERM: the command says it once, in its words (lumiere_pl/cli/errors.py)
    for name, words in (("lightning.pytorch.utilities.rank_zero", "Detected KeyboardInterrupt"),
                        ("lightning.pytorch.trainer.connectors.signal_connector", "Received SIGTERM")):
        logging.getLogger(name).addFilter(lambda record, words=words: words not in record.getMessage())
    from lumiere_pl.lit import DiffusionModule
    from lumiere_pl.lit.guard import NonFiniteError

    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    module = DiffusionModule(to_dict(cfg), t2i_state)
    if resumed is not None:
        resume_fits(module, resumed, ckpt_path)         # before config.yaml is written
        del resumed
    if args.dry_run:
        dry_run(module, cfg)
        return 0
    datamodule = build_datamodule(cfg.data)
    try:
        trainer = build_trainer(cfg)
    except MisconfigurationException as err:      # e.g. trainer.accelerator=gpu on a machine without one
        tr = cfg.trainer
        raise InputError(f"trainer.accelerator={tr.accelerator} devices={tr.devices} strategy={tr.strategy} "
                         f"precision={tr.precision}: {err} (expected settings this machine supports)") from None
    if cfg.data.batch_size == "auto":
        from lumiere_pl.lit.batch_size import find_batch_size

        find_batch_size(trainer, module, datamodule, cfg)
    if trainer.is_global_zero:
        save_config(cfg, cfg.run_dir / "config.yaml")
    if ckpt_path and trainer.is_global_zero:
        print(f"resuming from {ckpt_path}")
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except NonFiniteError as err:
        print(f"lumiere-train: {err}", file=sys.stderr)
        return 3
    validate_at_end(trainer, module, datamodule, cfg)
    if trainer.is_global_zero:
        run = cfg.run_dir
        samples = sorted((run / "samples").glob("step_*"))
        print(f"\nDone: {cfg.name} ({trainer.global_step} steps)")
        print(f"  checkpoint : {run / 'checkpoints' / 'last.ckpt'}")
        print(f"  config     : {run / 'config.yaml'}")
        print(f"  samples    : {samples[-1] if samples else run / 'samples'}/*.mp4 (any video player)")
        print(f"  TensorBoard: tensorboard --logdir {run / 'tb'}   (scalars; samples under IMAGES)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
