"""DiffusionModule: the thin LightningModule that trains every model (T2I U-Net, STUNet, SSR, diffusers STUNet).

It owns the model's parts (lumiere_pl.parts.ModelParts: network, text encoder, VAE, diffusion process), the EMA, the
non-finite guard and the optimizer. The math lives in lumiere_pl.diffusion, how data meets the network in the parts,
sampling in lumiere_pl.pipeline: validation videos are rendered by a callback (lit/callbacks.py, ValidationSamples)
through the same LumierePipeline as every command.
"""
from __future__ import annotations

from typing import Optional

import lightning as L
import torch
from torch import Tensor

from lumiere_pl.conditioning import random_video_condition
from lumiere_pl.config import ExperimentConfig, from_dict, to_dict
from lumiere_pl.data.encoded import encoded_prompts
from lumiere_pl.lit.guard import NonFiniteGuard
from lumiere_pl.models import count_parameters
from lumiere_pl.models.ssr import downsample
from lumiere_pl.parts import ModelParts
from lumiere_pl.pipeline import LumierePipeline
from lumiere_pl.utils.ema import EMA
from lumiere_pl.utils.rng import StepRNG, step_rng

# devices with a fused AdamW kernel (one pass over all parameters; on the CPU 0.2x the time of the per-tensor loop
# for the temporal modules of the moving-shapes recipe: bench/bench_optimizer.py)
FUSED_ADAMW_DEVICES = ("cpu", "cuda")


class DiffusionModule(L.LightningModule):
    def __init__(self, config: dict, t2i_state: Optional[dict] = None):
        """config: the resolved experiment config as a plain dict (to_dict), so checkpoints load weights_only.
        t2i_state: the pretrained T2I weights to inflate (model.init_from, read by lumiere-train)."""
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg: ExperimentConfig = from_dict(config)
        # data.encoded: the run trains from encoded shards (lumiere-train checked their key): no text encoder and
        # no VAE encoder are built, the prompts file beside the shards stands in for the encoder
        prompts = str(encoded_prompts(self.cfg.data)) if self.cfg.data.encoded else None
        self.parts = ModelParts.build(self.cfg, t2i_state, prompts)
        self.net, self.text_encoder, self.codec = self.parts.net, self.parts.text_encoder, self.parts.codec
        self.ema = EMA(self.net, self.cfg.train.ema_decay)
        self.guard = NonFiniteGuard(self.cfg.train.max_bad_steps)
        if self.parts.pretrained_keys:        # read from model.init_from, not from checkpoints (parts.py)
            self.register_load_state_dict_post_hook(_pretrained_weights_not_missing)

    def configure_model(self) -> None:
        """Called by Trainer.fit under the strategy. trainer.strategy=fsdp: shard the network and its EMA (FSDP2)
        first; then train.compile compiles the network in place (nn.Module.compile: parameters, state_dict keys and
        the EMA's pairing unchanged)."""
        from lumiere_pl.lit.sharding import FSDP2Strategy, device_mesh, shard

        strategy = self._trainer.strategy if self._trainer is not None else None
        if isinstance(strategy, FSDP2Strategy):
            shard(self.net, self.ema, self.cfg.trainer.fsdp, device_mesh(strategy))
        if self.cfg.train.compile and getattr(self.net, "_compiled_call_impl", None) is None:
            self.net.compile()

    @property
    def is_video(self) -> bool:
        return self.parts.is_video

    def pipeline(self) -> LumierePipeline:
        """A LumierePipeline over this module's parts (the live weights; wrap the call in ema.apply_to for the
        EMA's). Every process of a sharded run must call it together: the forward gathers weights."""
        return LumierePipeline(self.parts)

    # --- the loss -----------------------------------------------------------------------------------------------
    def condition(self, batch: dict, train: bool, rng: Optional[StepRNG] = None) -> dict:
        """The network's conditioning for a batch {"pixels": (b 3 [t] h w) in [-1, 1], "caption": [b]}, or one of
        encoded shards ({"text": (b L d), "text_mask": (b L), "latent_mean", ...}): the text (dropped with
        probability diffusion.cond_drop in training), a conditional STUNet's <C, M> of a task drawn per clip, an
        SSR's noise-augmented low-res clip. rng: the step's generators (None: the global RNG)."""
        host, dev = (rng.host, rng.device) if rng is not None else (None, None)
        p, drop = self.parts, self.cfg.diffusion.cond_drop if train else 0.0
        if "text" in batch:                                  # encoded shards: the states stored with each clip
            cond = p.stored_text_condition(batch["text"], batch["text_mask"], drop, host)
        else:
            cond = p.text_condition(batch["caption"], drop, host)
        if "pixels" not in batch:                            # a latent model's encoded shards (never conditional)
            return cond
        pixels = batch["pixels"]
        if p.conditional:
            t = self.cfg.model.temporal
            mask = random_video_condition(pixels, host, t.tasks, t.keyframe_stride)["cond_mask"]
            cond.update(p.video_condition(pixels, mask))
        if p.is_ssr:                 # the clip averaged down by model.upscale, augmented at t ~ U(0, cond_aug_max)
            b = pixels.shape[0]
            t_aug = (torch.rand(b, generator=host).to(pixels.device) * self.cfg.diffusion.cond_aug_max if train
                     else torch.zeros(b, device=pixels.device))
            cond.update(p.lowres_condition(downsample(pixels, self.cfg.model.upscale), t_aug, generator=dev))
        return cond

    def loss(self, batch: dict, rng: StepRNG, train: bool, t: Optional[float] = None) -> Tensor:
        """The diffusion loss at a drawn time (t given: at that time); every draw from rng."""
        x0 = self.parts.x0(batch, rng.device)
        return self.parts.process.loss(self.net, x0, self.condition(batch, train, rng), generator=rng.device, t=t)

    def step_loss(self, batch: dict, batch_idx: int, rank: int) -> Tensor:
        """The training loss of `batch` as process `rank` draws it: every draw is a function of (seed, epoch, batch,
        rank), so resumed runs repeat them exactly."""
        return self.loss(batch, step_rng(self.cfg.train.seed, self.current_epoch, batch_idx, rank, self.device), True)

    def training_step(self, batch: dict, batch_idx: int) -> Optional[Tensor]:
        loss = self.step_loss(batch, batch_idx, self.global_rank)
        if not self.guard.loss_ok(loss, self.trainer.strategy):
            return None                                                  # Lightning skips backward and the update
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["caption"]))
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        self.guard.check_grads(self.net.parameters(), self.trainer.strategy)   # non-finite: drop them, skip the step

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)     # runs training_step and backward (the closure), then steps
        if self.guard.applied:
            self.ema.update(self.net)               # here, not in on_train_batch_end: checkpoints are written first

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.guard.end_step(self)                   # counts skipped steps; raises after train.max_bad_steps in a row

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """val/loss at drawn times, and val/loss_t{t} at each of train.val_loss_times: the same held-out clips and
        the same noise every validation (seeded by the batch), so the curves show the model alone changing."""
        b = len(batch["caption"])
        with self.ema.apply_to(self.net):
            for t in [None, *self.cfg.train.val_loss_times]:
                rng = StepRNG(torch.Generator().manual_seed(batch_idx),
                              torch.Generator(device=self.device).manual_seed(batch_idx))
                loss = self.loss(batch, rng, train=False, t=t)
                name = "val/loss" if t is None else f"val/loss_t{t:g}"
                self.log(name, loss, prog_bar=t is None, sync_dist=True, batch_size=b)

    def configure_optimizers(self):
        t = self.cfg.train
        params = [p for p in self.net.parameters() if p.requires_grad]
        # fused where the kernel exists; not under *-mixed precision with clipping, which Lightning refuses for a
        # fused optimizer (it would unscale the gradients itself). None: torch's default
        clipped_mixed = str(self.cfg.trainer.precision).endswith("-mixed") and t.grad_clip > 0
        fused = (not clipped_mixed and all(p.device.type in FUSED_ADAMW_DEVICES for p in params)) or None
        opt = torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay, fused=fused)
        warmup = max(1, t.warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- checkpoints --------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        for k in self.parts.pretrained_keys:
            checkpoint["state_dict"].pop(f"net.{k}", None)

    # --- summaries ----------------------------------------------------------------------------------------------
    def example_condition(self, shape: tuple) -> dict:
        """Conditioning of a forward pass on zeros of `shape` (b c [t] h w, the network's space), text excluded."""
        p, cond = self.parts, {}
        if p.conditional:
            t = self.cfg.model.temporal
            cond.update(random_video_condition(torch.zeros(shape), None, t.tasks, t.keyframe_stride))
        if p.is_ssr:
            b, _, t, _, _ = shape
            cond.update(p.lowres_condition(torch.zeros(b, 3, t, p.low_size, p.low_size), torch.zeros(b)))
        return cond

    @torch.no_grad()
    def forward_flops(self) -> tuple[tuple, int]:
        """(input shape, FLOPs) of one forward pass of the network on one sample (data.frames frames at data.size):
        the dry run and the model summary print it."""
        from lumiere_pl.utils.flops import forward_flops

        shape = (1, *self.parts.sample_shape(self.cfg.data.frames))
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):          # the example conditioning draws: training RNG untouched
            cond = {**self.parts.text_condition([""]), **self.example_condition(shape)}   # "": every encoder has it
            cond = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in cond.items()}
            x, level = torch.zeros(shape, device=self.device), torch.full((1,), 500.0, device=self.device)
            return shape, forward_flops(self.net, x, level, cond)

    def summary(self) -> dict:
        return {"model": self.cfg.model.name, **count_parameters(self.net), "text_encoder": self.text_encoder.name,
                "text_dim": self.text_encoder.dim}

    def export_config(self) -> dict:
        return to_dict(self.cfg)


def _pretrained_weights_not_missing(module: DiffusionModule, incompatible) -> None:
    """load_state_dict post-hook: the frozen pretrained weights are already loaded from model.init_from."""
    keys = {f"net.{k}" for k in module.parts.pretrained_keys}
    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if k not in keys]
