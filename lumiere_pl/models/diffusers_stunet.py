"""A pretrained diffusers U-Net (DeepFloyd IF stage I, Stable Diffusion) inflated explicitly into a Space-Time U-Net.

The same inflation as models/stunet.py, over diffusers' UNet2DConditionModel: the U-Net is kept whole as
`self.unet` (its state_dict keys unchanged, frozen by default) and DiffusersSTUNet.forward walks its down_blocks,
mid_block and up_blocks itself (no hooks, no patched diffusers modules), running diffusers' resnets, attentions and
resamplers per frame, ((b t) c h w), and the temporal modules of models/temporal.py between them, (b c t h w).
`self.temporal` is keyed by where each module runs:
  "down{i}_res{j}" / "mid_res{j}" / "up{i}_res{j}"  after resnet j of a block: a TemporalConv (every level), then
                                                    "{key}_attn", a TemporalAttention, at model.temporal.attn_levels
  "down{i}_resample"  after the spatial downsampler of level i in down_levels: a TemporalDownsample
  "up{i}_resample"    after the spatial upsampler arriving at a level in down_levels: the mirror TemporalUpsample
  "mid_attn"          after the mid block's (last) spatial attention, the coarsest level: attn_layers TemporalAttention
Down block i is resolution level i; up block i is level (levels - 1 - i). The temporal modules see a TemporalContext:
the U-Net's time embedding `emb` as its resnets see it (after the added text embedding and time_embed_act), the text
encoder's tokens and mask. All start as the identity, so a still video gives the U-Net's output on every frame.

The network's noise input is the U-Net's own (fractional) training timestep; diffusion/discrete.py bridges it to the
log-SNR of our samplers. A U-Net with learned variance (IF: out_channels = 2 x in_channels) returns only its first
in_channels: the eps (or v) prediction our samplers use. The text mask goes to the temporal modules only: the
diffusers U-Net's cross-attention sees every token, padding included, as the IF and SD pipelines run it.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lumiere_pl.config import TemporalConfig
from lumiere_pl.models.layers import zero_
from lumiere_pl.models.temporal import TemporalContext, TemporalModules, temporal_halvings
from lumiere_pl.errors import InputError
from lumiere_pl.utils.tensors import fold_time, unfold_time

SUPPORTED_DOWN = ("DownBlock2D", "CrossAttnDownBlock2D", "ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D")
SUPPORTED_MID = ("UNetMidBlock2DCrossAttn", "UNetMidBlock2DSimpleCrossAttn")
SUPPORTED_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "ResnetUpsampleBlock2D", "SimpleCrossAttnUpBlock2D")
TEMPORAL_HEAD_DIM = 64          # channels per head of the new temporal attention (diffusers' attention_head_dim is
                                # a head count in SD's configs and a head width in IF's, so it is not reused)


def text_width(unet_config) -> int:
    """Width of the text tokens the U-Net takes (before its own encoder_hid_proj, if any). cross_attention_dim may
    list one width per down block (diffusers allows it): one text encoder feeds them all, so they must agree."""
    hid = unet_config.get("encoder_hid_dim") if isinstance(unet_config, dict) else unet_config.encoder_hid_dim
    cross = unet_config["cross_attention_dim"] if isinstance(unet_config, dict) else unet_config.cross_attention_dim
    if isinstance(cross, (list, tuple)):
        if len(set(cross)) != 1:
            raise InputError(f"diffusers U-Net cross_attention_dim={list(cross)}: its blocks take text of different "
                             f"widths; the STUNet feeds them one text encoder's tokens (expected one width)")
        cross = cross[0]
    return int(hid if hid is not None else cross)


def check_unet_config(c) -> None:
    """Refuse, by name, a U-Net this inflation does not walk (ValueError); c: its config.json as a dict."""
    blocks = [(f"down_blocks.{i}", n, SUPPORTED_DOWN) for i, n in enumerate(c.get("down_block_types", ()))]
    blocks += [("mid_block", c.get("mid_block_type", "UNetMidBlock2DCrossAttn"), SUPPORTED_MID)]
    blocks += [(f"up_blocks.{i}", n, SUPPORTED_UP) for i, n in enumerate(c.get("up_block_types", ()))]
    for where, name, ok in blocks:
        if name not in ok:
            raise InputError(f"diffusers U-Net {where} is a {name}, which the STUNet inflation does not support; "
                             f"supported here: {', '.join(ok)}")
    for key, allowed in (("class_embed_type", (None,)), ("addition_embed_type", (None, "text")),
                         ("encoder_hid_dim_type", (None, "text_proj")), ("time_cond_proj_dim", (None,)),
                         ("attention_type", ("default", None)), ("dual_cross_attention", (False, None))):
        if c.get(key) not in allowed:
            raise InputError(f"diffusers U-Net config {key}={c.get(key)!r} is not supported by the STUNet "
                             f"inflation (supported: {list(allowed)})")
    text_width(c)                                  # one text width for every block


def check_unet(unet: nn.Module) -> None:
    """check_unet_config on a built U-Net, and on its blocks' class names."""
    check_unet_config(dict(unet.config))
    for blocks, ok in ((unet.down_blocks, SUPPORTED_DOWN), ([unet.mid_block], SUPPORTED_MID),
                       (unet.up_blocks, SUPPORTED_UP)):
        for block in blocks:
            if type(block).__name__ not in ok:
                raise InputError(f"diffusers U-Net block {type(block).__name__} is not supported; supported here: "
                                 f"{', '.join(ok)}")


NORMS = (nn.GroupNorm, nn.LayerNorm)       # keep float32 affine weights under model.frozen_dtype (see store_frozen)


@torch.no_grad()
def store_frozen(unet: nn.Module, dtype: torch.dtype) -> List[str]:
    """Store the frozen (requires_grad=False) weights of `unet` in `dtype`, in place; what trains is float32, and so
    are the normalisation layers' affine weights: 0.02% of SD 1.5's U-Net (bench/bench_frozen_dtype.py), which CPU
    autocast does not cast for layer_norm (a bf16 weight beside float32 input fails there; CUDA casts it to float32
    anyway). Returns the names of the float32 weights that arrived narrower (a U-Net read straight into bf16): their
    values are rounded, and the caller reads them again at full precision."""
    widened = []
    for prefix, module in unet.named_modules():
        for name, p in module.named_parameters(recurse=False):
            want = torch.float32 if isinstance(module, NORMS) or p.requires_grad else dtype
            if p.dtype != want:
                if want == torch.float32:
                    widened.append(f"{prefix}.{name}" if prefix else name)
                p.data = p.data.to(want)
    return widened


class _PerFrame:
    """The per-clip embedding and text states repeated for every frame, ((b t) ...), cached per frame count."""

    def __init__(self, emb: Tensor, text: Tensor):
        self.clip = (emb, text)
        self._cache: Dict[int, Tuple[Tensor, Tensor]] = {}

    def __call__(self, t: int) -> Tuple[Tensor, Tensor]:
        if t not in self._cache:
            self._cache[t] = tuple(v.repeat_interleave(t, dim=0) for v in self.clip)   # frame-major (fold_time)
        return self._cache[t]


class DiffusersSTUNet(nn.Module):
    """forward(x (b c t h w), timestep (b,), cond) -> (b c t h w); cond["text"] (b L text_dim) as the U-Net takes it.

    With cfg.conditional, cond["cond_video"] (b c t h w) and cond["cond_mask"] (b 1 t h w) form Lumiere's <J, C, M>
    input (latent U-Nets: C and M on the latent grid, models/latent.py); they enter through a new zero-initialised
    conv added to the pretrained conv_in. frozen_dtype: storage dtype of the frozen U-Net weights (bf16: run under
    bf16 autocast, entered by forward when the caller has not).
    """

    def __init__(self, unet: nn.Module, cfg: TemporalConfig, text_dim: int, grad_checkpointing: bool = False,
                 frozen_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.grad_checkpointing = grad_checkpointing        # recompute the 2D layers in backward (activation memory)
        check_unet(unet)
        if text_dim != text_width(unet.config):
            raise InputError(f"the text encoder gives {text_dim}-d tokens, the diffusers U-Net expects "
                             f"{text_width(unet.config)}-d (its encoder_hid_dim or cross_attention_dim)")
        self.cfg, self.unet = cfg, unet
        c = unet.config
        self.in_channels = c.in_channels
        self.learned_variance = c.out_channels == 2 * c.in_channels
        make = TemporalModules(cfg, unet.time_embedding.linear_2.out_features, text_dim, TEMPORAL_HEAD_DIM)
        self.temporal = nn.ModuleDict()
        down, attn_levels = set(cfg.down_levels), set(cfg.attn_levels)
        levels = len(unet.down_blocks)

        def after_resnets(prefix: str, block: nn.Module, level: int) -> int:
            for j, resnet in enumerate(block.resnets):
                self.temporal[f"{prefix}_res{j}"] = make.conv(resnet.out_channels)
                if level in attn_levels:
                    self.temporal[f"{prefix}_res{j}_attn"] = make.attn(resnet.out_channels)
            return block.resnets[-1].out_channels

        for i, block in enumerate(unet.down_blocks):
            ch = after_resnets(f"down{i}", block, i)
            if block.downsamplers is not None and i in down:
                self.temporal[f"down{i}_resample"] = make.down(ch)
        ch = after_resnets("mid", unet.mid_block, levels - 1)
        if cfg.attn_layers:
            self.temporal["mid_attn"] = make.attn(ch, cfg.attn_layers)
        for i, block in enumerate(unet.up_blocks):
            ch = after_resnets(f"up{i}", block, levels - 1 - i)
            if block.upsamplers is not None and levels - 2 - i in down:
                self.temporal[f"up{i}_resample"] = make.up(ch)
        conv_in = unet.conv_in
        self.cond_in = (zero_(nn.Conv2d(c.in_channels + 1, conv_in.out_channels, conv_in.kernel_size,
                                        padding=conv_in.padding)) if cfg.conditional else None)
        make.finish(self.temporal)
        make.freeze(self.unet, SPATIAL_GROUPS)
        self.frozen_dtype = frozen_dtype            # model.frozen_dtype: storage of the frozen U-Net weights
        self.widened = store_frozen(self.unet, frozen_dtype)   # U-Net weights widened to float32 (build reads them)

    # --- shapes -------------------------------------------------------------------------------------------------
    @property
    def temporal_halvings(self) -> int:
        return temporal_halvings(self.temporal)

    def coarsest_frames(self, t: int) -> int:
        return t // 2 ** self.temporal_halvings

    def check_frames(self, t: int) -> None:
        k = self.temporal_halvings
        if t % 2 ** k:
            raise ValueError(f"{t} frames cannot be halved {k} times (model.temporal.down_levels="
                             f"{list(self.cfg.down_levels)}); use a multiple of {2 ** k}")

    def check_resolution(self, h: int, w: int) -> None:
        k = self.unet.num_upsamplers
        if h % 2 ** k or w % 2 ** k:
            raise ValueError(f"resolution {h}x{w} cannot be halved {k} times by this U-Net; use a multiple of {2 ** k}")

    # --- forward ------------------------------------------------------------------------------------------------
    def embed(self, x: Tensor, timestep: Tensor, text: Tensor) -> Tuple[Tensor, Tensor]:
        """The U-Net's per-clip time embedding (as its resnets see it) and cross-attention states, by its own
        helpers: (b emb_dim), (b L d)."""
        unet = self.unet
        sample = x[:, :, 0]                                         # (b c h w): batch, dtype, device for the helpers
        emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)
        aug = unet.get_aug_embed(emb=emb, encoder_hidden_states=text, added_cond_kwargs={})
        if aug is not None:
            emb = emb + aug                                          # IF: attention-pooled text (addition_embed_type)
        if unet.time_embed_act is not None:
            emb = unet.time_embed_act(emb)
        return emb, unet.process_encoder_hidden_states(encoder_hidden_states=text, added_cond_kwargs={})

    def _2d(self, fn, *args) -> Tensor:
        """A pretrained 2D layer on ((b t) ...) frames; recomputed in backward with grad_checkpointing."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def _temporal(self, key: str, h: Tensor, t: int, ctx: TemporalContext) -> Tuple[Tensor, int]:
        for k in (key, key + "_attn"):
            if k in self.temporal:
                v = self.temporal[k](unfold_time(h, t), ctx)        # (b c t' h w)
                h, t = fold_time(v), v.shape[2]
        return h, t

    @staticmethod
    def _attend(attn: nn.Module, h: Tensor, text: Tensor) -> Tensor:
        """A spatial attention of a block, per frame: Transformer2DModel (CrossAttn*) or Attention (SimpleCrossAttn*)."""
        if type(attn).__name__ == "Transformer2DModel":
            return attn(h, encoder_hidden_states=text, return_dict=False)[0]
        return attn(h, encoder_hidden_states=text)

    @staticmethod
    def _resample(layer: nn.Module, h: Tensor, emb: Tensor) -> Tensor:
        """Downsample2D / Upsample2D, or a ResnetBlock2D with down / up (ResnetDownsample*, SimpleCrossAttn*)."""
        return layer(h, emb) if type(layer).__name__ == "ResnetBlock2D" else layer(h)

    def forward(self, x: Tensor, timestep: Tensor, cond: dict) -> Tensor:
        """Frozen weights stored in bf16 (model.frozen_dtype) compute under bf16 autocast: Lightning's bf16-mixed
        opens it in training; sampling, export and the dry run outside Lightning get it here."""
        if self.frozen_dtype != torch.float32 and not torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, dtype=self.frozen_dtype):
                return self._forward(x, timestep, cond)
        return self._forward(x, timestep, cond)

    def _forward(self, x: Tensor, timestep: Tensor, cond: dict) -> Tensor:
        if x.ndim != 5:
            raise ValueError(f"DiffusersSTUNet expects videos (b c t h w), got shape {tuple(x.shape)}")
        b, _, t, hh, ww = x.shape
        self.check_frames(t)
        self.check_resolution(hh, ww)
        unet, text = self.unet, cond["text"]
        emb, states = self.embed(x, timestep, text)
        ctx = TemporalContext(emb=emb, text=text, text_mask=cond.get("text_mask"))
        frame = _PerFrame(emb, states)                              # frame(t) -> ((b t) emb_dim), ((b t) L d)
        h = fold_time(x)                                            # ((b t) c h w)
        if unet.config.center_input_sample:
            h = 2 * h - 1.0
        h = unet.conv_in(h)
        if self.cond_in is not None:
            cm = torch.cat([cond["cond_video"], cond["cond_mask"]], dim=1)       # (b c+1 t h w)
            h = h + self.cond_in(fold_time(cm.to(h.dtype)))
        skips: List[Tuple[Tensor, int]] = [(h, t)]
        for i, block in enumerate(unet.down_blocks):
            attns = getattr(block, "attentions", None) or [None] * len(block.resnets)
            for j, resnet in enumerate(block.resnets):
                h = self._2d(resnet, h, frame(t)[0])
                h, t = self._temporal(f"down{i}_res{j}", h, t, ctx)
                if attns[j] is not None:
                    h = self._2d(self._attend, attns[j], h, frame(t)[1])
                skips.append((h, t))
            if block.downsamplers is not None:
                for layer in block.downsamplers:
                    h = self._2d(self._resample, layer, h, frame(t)[0])
                h, t = self._temporal(f"down{i}_resample", h, t, ctx)   # (b*T/2 ...) at a down level
                skips.append((h, t))
        mid = unet.mid_block                                        # coarsest level: T / 2^k frames
        h = self._2d(mid.resnets[0], h, frame(t)[0])
        h, t = self._temporal("mid_res0", h, t, ctx)
        for k, (attn, resnet) in enumerate(zip(mid.attentions, mid.resnets[1:])):
            h = self._2d(self._attend, attn, h, frame(t)[1])
            if k == len(mid.attentions) - 1:
                h, t = self._temporal("mid_attn", h, t, ctx)
            h = self._2d(resnet, h, frame(t)[0])
            h, t = self._temporal(f"mid_res{k + 1}", h, t, ctx)
        for i, block in enumerate(unet.up_blocks):
            attns = getattr(block, "attentions", None) or [None] * len(block.resnets)
            for j, resnet in enumerate(block.resnets):
                skip, t_skip = skips.pop()
                assert t_skip == t, f"skip at {t_skip} frames meets features at {t} frames"
                h = self._2d(resnet, torch.cat([h, skip], dim=1), frame(t)[0])
                h, t = self._temporal(f"up{i}_res{j}", h, t, ctx)
                if attns[j] is not None:
                    h = self._2d(self._attend, attns[j], h, frame(t)[1])
            if block.upsamplers is not None:
                for layer in block.upsamplers:
                    h = self._2d(self._resample, layer, h, frame(t)[0])
                h, t = self._temporal(f"up{i}_resample", h, t, ctx)
        if unet.conv_norm_out is not None:
            h = unet.conv_act(unet.conv_norm_out(h))
        h = unet.conv_out(h)                                        # ((b t) out h w)
        if self.learned_variance:
            h = h[:, : self.in_channels]                            # eps (or v); the variance half is not used
        return unfold_time(h, t)                                    # (b c t h w)


def _text_layers(unet: nn.Module) -> List[nn.Module]:
    """The layers that carry the caption into the U-Net: its text projection and pooling, every cross-attention."""
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.attention_processor import Attention

    pooled = getattr(unet, "add_embedding", None) if unet.config.addition_embed_type == "text" else None
    layers = [m for m in (unet.encoder_hid_proj, pooled) if m is not None]
    for m in unet.modules():
        if isinstance(m, BasicTransformerBlock) and m.attn2 is not None:
            layers += [m.norm2, m.attn2]                              # CrossAttn*: the text cross-attention
        elif isinstance(m, Attention) and m.added_kv_proj_dim is not None:
            layers += [m.add_k_proj, m.add_v_proj] + ([m.norm_cross] if m.norm_cross is not None else [])
    return layers


SPATIAL_GROUPS = {
    "text": _text_layers,        # model.temporal.unfreeze=[text]: the U-Net's text conditioning trains too
}
