"""diffusers_stunet end to end through the command lines, on tiny random pipelines saved with save_pretrained
(lumiere_research/tiny_diffusers.py): experiments/diffusers/if.yaml (pixels) and diffusers/sd.yaml (latents) train a few
steps with lumiere-train, sample with lumiere-sample, export a folder with lumiere-export that samples the same; bad
folders are refused before anything heavy, naming the missing file. With LUMIERE_IF_PATH / LUMIERE_SD_PATH pointing at
real weights, the same inflation and sampling run on them."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import av
import pytest
import torch
from lumiere_research.tiny_diffusers import if_like, sd_like
from safetensors.torch import load_file

from lumiere_pl.checkpoint import load_checkpoint
from lumiere_pl.pipeline import LumierePipeline
from lumiere_pl.cli import export as export_cli
from lumiere_pl.cli import sample as sample_cli
from lumiere_pl.cli import train as train_cli

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = ["text.max_length=8", "data.name=synthetic", "data.train_shards=null", "data.frames=8",
            "data.batch_size=2", "data.num_workers=0", "data.synthetic.num_videos=8",
            "data.synthetic.num_val_videos=2", "model.temporal.down_levels=[0,1]", "train.max_steps=3",
            "train.val_every_n_steps=3", "train.ckpt_every_n_steps=3", "train.warmup_steps=1", "train.lr=1e-2",
            "train.ema_decay=0.5", "train.val_prompts=[a red circle moving left]", "sampler.steps=2",
            "trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto", "trainer.precision=32-true",
            "model.frozen_dtype=float32",
            "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    return {"if": if_like(root / "if"), "sd": sd_like(root / "sd")}


def frames_of(mp4: Path):
    with av.open(str(mp4)) as f:
        return [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]


def run_experiment(kind: str, folder: Path, out: Path, *extra: str, resume: bool = False):
    """lumiere-train on experiments/diffusers/{kind}.yaml, tiny; returns the run folder."""
    size = {"if": 16, "sd": 32}[kind]
    rc = train_cli.main(["--resume"] * resume + ["--config", str(ROOT / f"experiments/diffusers/{kind}.yaml"),
                         f"model.init_from={folder}", f"data.size={size}", f"out_dir={out}", *TINY_RUN, *extra])
    assert rc == 0
    return out / f"stunet_{kind}"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["if", "sd"])
def test_train_sample_export_end_to_end(kind, pipelines, tmp_path, single_thread):
    """A few training steps and a sample, pixel (IF-like: T5, learned variance, thresholding) and latent (SD-like:
    CLIP, VAE, decoded in chunks): the schedule and prediction come from the folder; checkpoints hold what trains
    but not the frozen U-Net (which stays the folder's, bit for bit); samples are RGB MP4s at data.size; an exported
    folder samples exactly like the checkpoint's EMA."""
    folder = pipelines[kind]
    run = run_experiment(kind, folder, tmp_path, "model.diffusers.vae_chunk=3")
    config = (run / "config.yaml").read_text()
    assert {"if": "squaredcos_cap_v2", "sd": "scaled_linear"}[kind] in config and "prediction: eps" in config
    ckpt_path = run / "checkpoints" / "last.ckpt"
    state = load_checkpoint(ckpt_path)["state_dict"]
    assert not any(k.startswith("net.unet.") for k in state)                # frozen: read again from the folder
    assert any(k.startswith("net.temporal.") for k in state) and "net.temporal.mid_attn.0.pos" in state

    pipe = LumierePipeline.from_pretrained(ckpt_path)
    pretrained = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    for k, v in pipe.net.unet.state_dict().items():
        assert torch.equal(v, pretrained[k]), k
    moved = [p.abs().max() for n, p in pipe.net.temporal.named_parameters() if n.endswith("conv2.weight")]
    assert max(moved) > 0                                                    # the zero-initialised outputs trained
    assert pipe.parts.sample_shape() == ((3, 8, 16, 16) if kind == "if" else (4, 8, 16, 16))

    val = sorted((run / "samples").glob("step_*/00.mp4"))
    assert len(val) == 1 and len(frames_of(val[0])) == 8
    out = tmp_path / "sample.mp4"
    assert sample_cli.main(["--ckpt", str(ckpt_path), "--prompt", "a blue square moving up", "--out", str(out),
                            "--steps", "2", "--device", "cpu"]) == 0
    video = frames_of(out)
    size = {"if": 16, "sd": 32}[kind]
    assert len(video) == 8 and video[0].shape == (size, size, 3)

    export = tmp_path / "export"
    assert export_cli.main(["--ckpt", str(ckpt_path), "--out", str(export)]) == 0
    assert (export / "unet" / "config.json").is_file() and (export / "vae").is_dir() == (kind == "sd")
    for sub in ["unet"] + (["vae"] if kind == "sd" else []):                # the pretrained files, byte for byte
        name = "diffusion_pytorch_model.safetensors"
        assert (export / sub / name).read_bytes() == (folder / sub / name).read_bytes()
    loaded = LumierePipeline.from_pretrained(export)
    prompts = ["a red circle moving left"]
    torch.testing.assert_close(loaded(prompts, steps=2, seed=1).videos, pipe(prompts, steps=2, seed=1).videos,
                               atol=1e-5, rtol=0)
    assert sample_cli.main(["--ckpt", str(export), "--prompt", prompts[0], "--out", str(tmp_path / "e.mp4"),
                            "--steps", "2", "--device", "cpu"]) == 0
    if kind == "if":                  # resuming loads the checkpoint strictly, the frozen U-Net from the folder
        run_experiment(kind, folder, tmp_path, "model.diffusers.vae_chunk=3", "train.max_steps=4", resume=True)
        assert load_checkpoint(ckpt_path)["global_step"] == 4


def _train_rc(capsys, folder, *extra) -> tuple[int, str]:
    rc = train_cli.main(["--dry-run", "model.name=diffusers_stunet", f"model.init_from={folder}", "text.encoder=tiny",
                         "text.dim=16", "data.size=16", "data.frames=8", *extra])
    return rc, capsys.readouterr().err


def test_bad_folders_are_refused_naming_the_missing_file(pipelines, tmp_path, capsys):
    """Exit 2 and one line naming the problem, before any weights are read."""
    good = pipelines["if"]
    assert _train_rc(capsys, good)[0] == 0

    rc, err = _train_rc(capsys, tmp_path / "nowhere")
    assert rc == 2 and "no such folder" in err
    (tmp_path / "empty").mkdir()
    rc, err = _train_rc(capsys, tmp_path / "empty")
    assert rc == 2 and "neither a diffusers pipeline folder" in err and "unet/config.json" in err

    bad = tmp_path / "no_weights"
    shutil.copytree(good, bad)
    weights = bad / "unet" / "diffusion_pytorch_model.safetensors"
    weights.unlink()
    rc, err = _train_rc(capsys, bad)
    assert rc == 2 and f"missing {weights}" in err
    (bad / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"")
    rc, err = _train_rc(capsys, bad)
    assert rc == 2 and "pickle weights are not loaded" in err
    rc, err = _train_rc(capsys, bad / "unet")                                  # a unet folder alone, same check
    assert rc == 2 and f"missing {weights}" in err

    attn = tmp_path / "attn_blocks"
    shutil.copytree(good, attn)
    cfg = json.loads((attn / "unet" / "config.json").read_text())
    cfg["down_block_types"][1] = "AttnDownBlock2D"
    (attn / "unet" / "config.json").write_text(json.dumps(cfg))
    rc, err = _train_rc(capsys, attn)
    assert rc == 2 and "down_blocks.1 is a AttnDownBlock2D" in err

    zero = tmp_path / "zero_snr"
    shutil.copytree(good, zero)
    sched = json.loads((zero / "scheduler" / "scheduler_config.json").read_text())
    (zero / "scheduler" / "scheduler_config.json").write_text(json.dumps({**sched, "rescale_betas_zero_snr": True}))
    rc, err = _train_rc(capsys, zero)
    assert rc == 2 and "zero terminal SNR" in err

    rc, err = _train_rc(capsys, good, "text.dim=8")
    assert rc == 2 and "gives 8-d tokens" in err
    no_text = tmp_path / "no_text_weights"
    shutil.copytree(good, no_text)
    (no_text / "text_encoder" / "model.safetensors").unlink()
    rc, err = _train_rc(capsys, no_text, "text.encoder=t5", f"text.path={no_text}")
    assert rc == 2 and f"missing {no_text / 'text_encoder' / 'model.safetensors'}" in err
    rc, err = _train_rc(capsys, pipelines["sd"], "data.size=20")              # VAE x2, then 2 halvings
    assert rc == 2 and "data.size=20" in err and "divisible by 8" in err
    assert "Traceback" not in err


def test_latent_codec_decodes_in_chunks_of_vae_chunk_frames(pipelines):
    """Peak memory of decoding many frames is that of vae_chunk frames: the decoder never sees more, and the chunked
    result is the all-at-once one; latents are scaled by the VAE config's scaling_factor."""
    from lumiere_pl.models.diffusers_folder import load_vae
    from lumiere_pl.models.latent import LatentCodec

    vae = load_vae(str(pipelines["sd"] / "vae"))
    codec = LatentCodec(vae, chunk=3)
    seen = []
    vae.decoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    z = torch.randn(2, 4, 5, 8, 8)                                            # (b c t h w)
    video = codec.decode(z)
    assert video.shape == (2, 3, 5, 16, 16) and max(seen) == 3 and sum(seen) == 10
    with torch.no_grad():
        whole = vae.decode(z.transpose(1, 2).reshape(10, 4, 8, 8) / vae.config.scaling_factor).sample
    torch.testing.assert_close(video, whole.clamp(-1, 1).reshape(2, 5, 3, 16, 16).transpose(1, 2), atol=1e-5, rtol=0)
    g = torch.Generator().manual_seed(0)
    lat = codec.encode(video, g)
    with torch.no_grad():
        mean = vae.encode(video.transpose(1, 2).reshape(10, 3, 16, 16)).latent_dist.mean
    assert lat.shape == (2, 4, 5, 8, 8)
    # a posterior draw around the scaled mean
    assert (lat.transpose(1, 2).reshape(10, 4, 8, 8) / vae.config.scaling_factor - mean).abs().mean() < 1.0


def test_text_encoders_of_a_pipeline_folder(pipelines):
    """T5 (IF) and CLIP (SD) from the pipeline's text_encoder/ + tokenizer/, per-token states at the U-Net's width;
    the encoders move with .to() (dtype included) and their weights never enter a state_dict."""
    from lumiere_pl.config import TextConfig
    from lumiere_pl.text import build_text_encoder

    t5 = build_text_encoder(TextConfig(encoder="t5", path=str(pipelines["if"]), max_length=8))
    states, mask = t5(["a red circle", ""])
    assert states.shape == (2, 8, 16) and mask.sum(1).tolist() == [4, 1]         # words + </s>; "" is </s>
    clip = build_text_encoder(TextConfig(encoder="clip", path=str(pipelines["sd"]), max_length=8))
    s1, _ = clip(["a red circle"])
    ref = clip.model(input_ids=clip.tokenizer(["a red circle"], padding="max_length", max_length=8,
                                              return_tensors="pt")["input_ids"]).last_hidden_state
    torch.testing.assert_close(s1, ref)                                       # CLIP runs without the mask, as SD
    holder = torch.nn.Module()
    holder.enc = t5
    assert list(holder.state_dict()) == [] and list(holder.parameters()) == []
    holder.to(torch.bfloat16)
    assert t5.model.dtype == torch.bfloat16 and t5(["a dog"])[0].dtype == torch.bfloat16


def test_text_cache_is_bounded_in_bytes_least_recently_used_out():
    from lumiere_pl.text.encoders import TinyTextEncoder

    per_caption = 4 * 16 * 4 + 4                                              # (L d) float32 + (L,) bool
    enc = TinyTextEncoder(dim=16, max_length=4, cache_mib=2.5 * per_caption / 2 ** 20)   # room for two captions
    a, _ = enc(["a", "b"])
    enc(["a"])                                                                # "a" used last: "b" goes first
    enc(["c"])
    assert list(enc._cache) == ["a", "c"] and enc._cached_bytes == 2 * per_caption
    torch.testing.assert_close(enc(["b", "a"])[0], a.flip(0))                # recomputed, equal
    assert TinyTextEncoder(dim=16, max_length=4, cache_mib=0)(["a"])[0].shape == (1, 4, 16)


# ---------------------------------------------------------------------------------------------------------------------
# real weights: only where LUMIERE_IF_PATH / LUMIERE_SD_PATH point at local diffusers folders

REAL = {"if": os.environ.get("LUMIERE_IF_PATH"), "sd": os.environ.get("LUMIERE_SD_PATH")}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["if", "sd"])
def test_real_weights_inflate_and_sample(kind, tmp_path):
    """The real U-Net inflates with the init property (a still video gives its per-frame output) and samples."""
    if not REAL[kind]:
        pytest.skip(f"set LUMIERE_{kind.upper()}_PATH to a local diffusers folder of "
                    f"{'DeepFloyd IF-I' if kind == 'if' else 'Stable Diffusion'} to run")
    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit import DiffusionModule

    size = {"if": 64, "sd": 256}[kind]
    cfg = load_config(str(ROOT / f"experiments/diffusers/{kind}.yaml"),
                      [f"model.init_from={REAL[kind]}", "data.name=synthetic", "data.train_shards=null",
                       "data.frames=8", f"data.size={size}", "trainer.accelerator=auto",
                       "model.frozen_dtype=float32"])          # the init property in full float32
    cfg, _ = train_cli.inherit_t2i(cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    module = DiffusionModule(to_dict(cfg)).to(device).eval()
    c, _, h, w = module.parts.sample_shape(1)
    text = module.parts.text_condition(["a photo of a cat"])
    x = torch.randn(1, c, h, w, device=device)
    ts = torch.tensor([500.0], device=device)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False     # full float32 on GPUs
    try:
        with torch.no_grad():
            ref = module.net.unet(x, ts, encoder_hidden_states=text["text"]).sample[:, :c]
            out = module.net(x[:, :, None].expand(-1, -1, 8, -1, -1), ts, {"text": text["text"]})
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    assert (out - ref[:, :, None]).abs().max() <= 1e-4 * max(1.0, float(ref.abs().max()))
    video = module.pipeline()(["a photo of a cat"], steps=4).videos
    assert video.shape == (1, 3, 8, size, size) and video.abs().max() <= 1.0


@pytest.mark.parametrize("kind", ["if", "sd"])
def test_experiment_configs_resolve_on_a_folder(kind, pipelines):
    """experiments/diffusers/if.yaml / sd.yaml validate on a diffusers folder: text.path follows model.init_from."""
    from lumiere_pl.config_checks import load_config

    cfg = load_config(str(ROOT / f"experiments/diffusers/{kind}.yaml"),
                      [f"model.init_from={pipelines[kind]}", "data.train_shards=x.tar", "model.temporal.down_levels=[0,1]"])
    cfg, _ = train_cli.inherit_t2i(cfg)
    assert cfg.text.path == str(pipelines[kind]) and cfg.trainer.precision == "bf16-mixed"
    assert cfg.model.frozen_dtype == "bfloat16"
    assert (cfg.model.diffusers.vae is not None) == (kind == "sd")


def test_lightning_moves_and_casts_the_frozen_encoders_but_never_saves_them(pipelines, tmp_path):
    """The text encoder (and VAE) follow the LightningModule: Lightning's bf16-true plugin casts them, .to(device)
    moves them (meta here: no GPU on CI); no key of theirs is in the module's state_dict."""
    from lightning.pytorch.plugins.precision import HalfPrecision

    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit import DiffusionModule

    cfg = load_config(None, ["model.name=diffusers_stunet", f"model.init_from={pipelines['sd']}", "text.encoder=clip",
                             f"text.path={pipelines['sd']}", "text.max_length=8", "data.size=32", "data.frames=8",
                             f"out_dir={tmp_path}"])
    cfg, _ = train_cli.inherit_t2i(cfg)
    module = DiffusionModule(to_dict(cfg))
    assert not any(k.startswith(("text_encoder.", "codec.")) for k in module.state_dict())
    HalfPrecision("bf16-true").convert_module(module)
    assert module.text_encoder.model.dtype == torch.bfloat16 and module.codec.vae.dtype == torch.bfloat16
    assert module.parts.text_condition(["a dog"])["text"].dtype == torch.bfloat16
    module.to("meta")
    assert module.text_encoder.model.device.type == "meta" and module.codec.vae.device.type == "meta"


def test_our_stunet_exports_as_a_folder_too(tiny_overrides, tmp_path, single_thread):
    """save_pretrained / from_pretrained work for any model: the folder samples like the module's EMA."""
    from _pipeline_helpers import sample
    from lumiere_pl.config import to_dict
    from lumiere_pl.errors import CheckpointError
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit import DiffusionModule

    cfg = load_config(None, tiny_overrides + ["sampler.steps=2"])
    module = DiffusionModule(to_dict(cfg))
    module.ema.update(module.net)
    with torch.no_grad():
        for p in module.net.temporal.parameters():
            p.add_(0.01)
    with module.ema.apply_to(module.net):
        out = module.pipeline().save_pretrained(tmp_path / "export")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "model.safetensors"]
    loaded = LumierePipeline.from_pretrained(out)
    torch.testing.assert_close(loaded(["a red circle"], seed=2).videos, sample(module, ["a red circle"], seed=2),
                               atol=1e-6, rtol=0)
    with pytest.raises(CheckpointError, match="without model.safetensors"):
        (out / "model.safetensors").unlink()
        LumierePipeline.from_pretrained(out)
