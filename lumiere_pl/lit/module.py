"""DiffusionModule: the thin LightningModule shared by the T2I U-Net and the STUNet (the SSR subclasses it).

It owns the network, the EMA, the loss and the sampler; the math lives in lumiere_pl.diffusion.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import List, Optional

import lightning as L
import torch
from torch import Tensor

from lumiere_pl.config import ExperimentConfig, from_dict, to_dict
from lumiere_pl.diffusion import SAMPLERS, Denoiser, c_noise, diffusion_loss, get_sigmas, guided, make_schedule
from lumiere_pl.diffusion.multidiffusion import multidiffusion
from lumiere_pl.diffusion.process import NoiseCond
from lumiere_pl.diffusion.schedules import LogSNR
from lumiere_pl.diffusion.thresholding import dynamic_threshold
from lumiere_pl.lit.conditioning import condition_from, random_video_condition
from lumiere_pl.lit.guard import NonFiniteGuard
from lumiere_pl.models import build_model, count_parameters
from lumiere_pl.text import build_text_encoder
from lumiere_pl.utils.ema import EMA
from lumiere_pl.utils.rng import StepRNG, step_rng
from lumiere_pl.utils.video import log_video, to_uint8, write_mp4


NOISE_SEED_OFFSET = 7_919_993          # the stochastic sampler noise of clip seed k is seeded k + this
# devices with a fused AdamW kernel (one pass over all parameters; on the CPU 0.2x the time of the per-tensor
# loop for the temporal modules of `make train DATASET=shapes`: bench/bench_optimizer.py)
FUSED_ADAMW_DEVICES = ("cpu", "cuda")


class DiffusionModule(L.LightningModule):
    def __init__(self, config: dict, t2i_state: Optional[dict] = None):
        """config: the resolved experiment config as a plain dict (to_dict), so checkpoints load weights_only."""
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg: ExperimentConfig = from_dict(config)
        self.text_encoder = build_text_encoder(self.cfg.text,          # frozen, not part of the state_dict
                                               getattr(torch, self.cfg.model.frozen_dtype))
        self.net = build_model(self.cfg, self.text_encoder.dim, t2i_state)
        self.logsnr, self.noise_cond = self.diffusion_schedule()
        self.denoiser = Denoiser(self.net, self.cfg.diffusion.prediction, self.noise_cond)
        self.ema = EMA(self.net, self.cfg.train.ema_decay)
        self.guard = NonFiniteGuard(self.cfg.train.max_bad_steps)

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

    def diffusion_schedule(self) -> tuple[LogSNR, NoiseCond]:
        """The schedule (log-SNR of t in [0, 1]) and the network's noise input of a log-SNR (DiffusersModule: the
        pretrained model's own discrete schedule and timestep)."""
        d = self.cfg.diffusion
        return make_schedule(d.schedule, d.logsnr_min, d.logsnr_max, self.cfg.data.size, d.shift_base), c_noise

    # --- the space the diffusion runs in (pixels here; DiffusersModule: a VAE's latents) ------------------------
    def encode(self, pixels: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Clips / images in [-1, 1] -> what the network denoises."""
        return pixels

    def decode(self, x: Tensor) -> Tensor:
        """The inverse of encode: samples -> pixels in [-1, 1] (MP4s, TensorBoard, eval see RGB)."""
        return x

    def sample_shape(self, frames: Optional[int] = None) -> tuple:
        """Shape of one sample the network denoises: (c t h w) for videos, (c h w) for images."""
        d = self.cfg.data
        return (3, frames or d.frames, d.size, d.size) if self.is_video else (3, d.size, d.size)

    # --- conditioning -------------------------------------------------------------------------------------------
    @property
    def is_video(self) -> bool:
        return self.cfg.model.name != "t2i"

    def text_condition(self, captions: List[str], drop: float = 0.0,
                       generator: Optional[torch.Generator] = None) -> dict:
        """Encode captions (replaced by "" with probability `drop`, for classifier-free guidance) and the null one."""
        if drop > 0:
            keep = torch.rand(len(captions), generator=generator).ge(drop).tolist()
            captions = [c if k else "" for c, k in zip(captions, keep)]
        text, mask = self.text_encoder(list(captions) + [""], device=self.device)
        b = len(captions)
        return {"text": text[:b], "text_mask": mask[:b],
                "null_text": text[b:].expand(b, -1, -1), "null_text_mask": mask[b:].expand(b, -1)}

    def condition(self, batch: dict, train: bool, rng: Optional[StepRNG] = None) -> dict:
        """rng: the step's generators (None: the global RNG)."""
        host = rng.host if rng is not None else None
        cond = self.text_condition(batch["caption"], self.cfg.diffusion.cond_drop if train else 0.0, host)
        if self.is_video and self.cfg.model.temporal.conditional:
            t = self.cfg.model.temporal
            mask = random_video_condition(batch["pixels"], host, t.tasks, t.keyframe_stride)["cond_mask"]
            cond.update(self.video_condition(batch["pixels"], mask))
        return cond

    def video_condition(self, video: Tensor, known: Tensor) -> dict:
        """Lumiere's <C, M> from a pixel clip (b 3 t h w) in [-1, 1] and its mask (b 1 t h w), 1 = known, in the
        space the network denoises (DiffusersModule with a VAE: latents, models/latent.py)."""
        return condition_from(video, known)

    # --- training -----------------------------------------------------------------------------------------------
    def step_loss(self, batch: dict, batch_idx: int, rank: int) -> Tensor:
        """The training loss of `batch` as process `rank` draws it: every draw is a function of (seed, epoch, batch,
        rank), so resumed runs repeat them exactly."""
        rng = step_rng(self.cfg.train.seed, self.current_epoch, batch_idx, rank, self.device)
        x0 = self.encode(batch["pixels"], rng.device)
        return diffusion_loss(self.net, x0, self.condition(batch, train=True, rng=rng), self.logsnr,
                              self.cfg.diffusion.prediction, generator=rng.device, noise_cond=self.noise_cond)

    def training_step(self, batch: dict, batch_idx: int) -> Optional[Tensor]:
        loss = self.step_loss(batch, batch_idx, self.global_rank)
        if not self.guard.loss_ok(loss, self.trainer.strategy):
            return None                                                  # Lightning skips backward and the update
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["pixels"].shape[0])
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
        rng = StepRNG(torch.Generator().manual_seed(batch_idx),                       # same noise every validation
                      torch.Generator(device=self.device).manual_seed(batch_idx))
        with self.ema.apply_to(self.net):
            loss = diffusion_loss(self.net, self.encode(batch["pixels"], rng.device),
                                  self.condition(batch, train=False, rng=rng), self.logsnr,
                                  self.cfg.diffusion.prediction, generator=rng.device, noise_cond=self.noise_cond)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=batch["pixels"].shape[0])

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self.cfg.train.val_prompts:
            return
        videos = self.generate(self.cfg.train.val_prompts, seed=self.cfg.train.seed)   # (b c [t] h w)
        if not self.trainer.is_global_zero:
            return
        out_dir = Path(self.cfg.run_dir) / "samples" / f"step_{self.global_step:07d}"
        logger = self.logger.experiment if self.logger is not None else None
        for i, (prompt, v) in enumerate(zip(self.cfg.train.val_prompts, videos)):
            frames = to_uint8(v)                                                     # (t h w 3)
            write_mp4(out_dir / f"{i:02d}.mp4", frames, fps=self.cfg.data.fps)
            if logger is not None and hasattr(logger, "file_writer"):
                if self.is_video:
                    log_video(logger, f"samples/{i:02d}", frames, self.global_step, fps=self.cfg.data.fps)
                else:
                    logger.add_image(f"samples/{i:02d}", frames[0], self.global_step, dataformats="HWC")
                logger.add_text(f"samples/{i:02d}/prompt", prompt, self.global_step)

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

    # --- sampling -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts: List[str], frames: Optional[int] = None, steps: Optional[int] = None,
                 guidance: Optional[float] = None, seed: int = 0, seeds: Optional[List[int]] = None,
                 use_ema: bool = True, progress: bool = False, extra_cond: Optional[dict] = None) -> Tensor:
        """Sample one clip per prompt: (b 3 t h w) videos (or (b 3 h w) images for t2i) in [-1, 1].

        Clip i starts from noise seeded by seeds[i] (default seed + i), so a clip does not depend on its batch.
        A conditional STUNet without extra_cond samples the task none (C = 0, M = 0: plain text-to-video; the
        validation samples of a keyframes-only TSR are therefore out of its training tasks, a preview only).
        """
        s = self.cfg.sampler
        item = self.sample_shape(frames)
        seeds = seeds if seeds is not None else [seed + i for i in range(len(prompts))]
        sigmas = get_sigmas(self.logsnr, steps or s.steps, self.device)
        x = torch.stack([torch.randn(item, generator=torch.Generator().manual_seed(int(k))) for k in seeds])
        x = x.to(self.device) * sigmas[0]
        cond = {**self.text_condition(prompts), **(extra_cond or {})}
        if self.is_video and self.cfg.model.temporal.conditional and "cond_video" not in cond:
            cond.update(condition_from(x.new_zeros(x.shape), x.new_zeros(x[:, :1].shape)))   # task none: M = 0
        denoise = guided(self.denoiser, s.guidance if guidance is None else guidance)
        denoise = self.wrap_denoiser(dynamic_threshold(denoise, s.threshold, s.threshold_max))
        # eta > 0 noise: one generator per clip, seeded apart from its initial noise (no clip depends on its batch)
        g = [torch.Generator(device=self.device).manual_seed(int(k) + NOISE_SEED_OFFSET) for k in seeds]
        was_training = self.net.training
        self.net.eval()
        try:
            with self.ema.apply_to(self.net) if use_ema else nullcontext():
                x = SAMPLERS[s.name](denoise, x, sigmas, cond, eta=s.eta, generator=g, progress=progress)
            return self.decode(x)
        finally:
            self.net.train(was_training)

    def wrap_denoiser(self, denoise):
        """Temporal MultiDiffusion around the denoiser when sampler.window > 0 (videos); identity otherwise."""
        s = self.cfg.sampler
        return multidiffusion(denoise, s.window, s.stride, s.window_batch) if self.is_video else denoise

    def example_condition(self, shape: tuple) -> dict:
        """Extra conditioning a forward pass on zeros of `shape` needs (dry-run FLOPs); subclasses add theirs."""
        if self.is_video and self.cfg.model.temporal.conditional:
            t = self.cfg.model.temporal
            return random_video_condition(torch.zeros(shape), None, t.tasks, t.keyframe_stride)
        return {}

    # --- summaries ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def forward_flops(self) -> tuple[tuple, int]:
        """(input shape, FLOPs) of one forward pass of the network on one sample (data.frames frames at data.size):
        the dry run and the model summary print it."""
        from lumiere_pl.utils.flops import forward_flops

        shape = (1, *self.sample_shape(self.cfg.data.frames))
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):          # the example conditioning draws: training RNG untouched
            cond = {**self.text_condition(["a test caption"]), **self.example_condition(shape)}
            cond = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in cond.items()}
            x, level = torch.zeros(shape, device=self.device), torch.full((1,), 500.0, device=self.device)
            return shape, forward_flops(self.net, x, level, cond)

    def summary(self) -> dict:
        return {"model": self.cfg.model.name, **count_parameters(self.net), "text_encoder": self.text_encoder.name,
                "text_dim": self.text_encoder.dim}

    def export_config(self) -> dict:
        return to_dict(self.cfg)
