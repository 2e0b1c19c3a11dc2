"""model.frozen_dtype=bfloat16: the frozen 2D U-Net, text encoder and VAE of a diffusers STUNet stored in bf16, what
trains (temporal modules, the new input conv, unfrozen layers; their optimizer state and EMA) in float32. Dtypes after
setup, the optimizer's parameters, the forward under bf16 autocast against float32, the init property, the config
checks, a short training run + resume with lumiere-train, and DDP on 2 CPU processes. Tiny models built offline."""
from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest
import torch
from lumiere_research.tiny_diffusers import TEXT_DIM, if_unet, sd_like, sd_unet

from lumiere_pl.checkpoint import load_checkpoint
from lumiere_pl.pipeline import LumierePipeline
from lumiere_pl.cli import sample as sample_cli
from lumiere_pl.cli import train as train_cli
from lumiere_pl.config import ConfigError, TemporalConfig, to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.lit import DiffusionModule
from lumiere_pl.models.diffusers_stunet import NORMS, DiffusersSTUNet

ROOT = Path(__file__).resolve().parents[1]
BF16 = ["model.frozen_dtype=bfloat16", "trainer.precision=bf16-mixed"]
UNETS = {"if": (if_unet, 3), "sd": (sd_unet, 4)}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    return sd_like(tmp_path_factory.mktemp("pipelines") / "sd")


def _config(pipeline: Path, tmp: Path, *extra: str):
    cfg = load_config(None, ["model.name=diffusers_stunet", f"model.init_from={pipeline}", "text.encoder=clip",
                             f"text.path={pipeline}", "text.max_length=8", "data.size=32", "data.frames=8",
                             "model.temporal.down_levels=[0,1]", f"out_dir={tmp}", *extra])
    return train_cli.inherit_t2i(cfg)[0]


def test_frozen_dtype_is_checked(pipeline, tmp_path):
    with pytest.raises(ConfigError, match=r"model.frozen_dtype='float16' is not one of \['bfloat16', 'float32'\]"):
        _config(pipeline, tmp_path, "model.frozen_dtype=float16")
    with pytest.raises(ConfigError, match="needs trainer.precision=bf16-mixed"):
        _config(pipeline, tmp_path, "model.frozen_dtype=bfloat16")                     # 32-true
    with pytest.raises(ConfigError, match="with trainer.strategy=fsdp is not supported"):
        _config(pipeline, tmp_path, *BF16, "trainer.strategy=fsdp")
    with pytest.raises(ConfigError, match="diffusers_stunet only"):
        load_config(None, ["text.encoder=tiny", *BF16])                                # our own STUNet


def test_dtypes_after_setup_and_the_optimizer_holds_float32_trainable_weights_only(pipeline, tmp_path):
    """Frozen U-Net weights bf16 (normalisation weights float32), text encoder and VAE bf16; the temporal modules,
    the conditional input conv and unfreeze=[text] layers float32, and only they reach AdamW and the EMA."""
    cfg = _config(pipeline, tmp_path, *BF16, "model.temporal.conditional=true", "model.temporal.unfreeze=[text]")
    module = DiffusionModule(to_dict(cfg))
    net = module.net
    frozen = {n: p for n, p in net.named_parameters() if not p.requires_grad}
    trainable = {n: p for n, p in net.named_parameters() if p.requires_grad}
    norms = {f"unet.{n}.{k}" for n, m in net.unet.named_modules() if isinstance(m, NORMS)
             for k, _ in m.named_parameters(recurse=False)}
    assert frozen and all(n.startswith("unet.") for n in frozen)
    assert {n for n, p in frozen.items() if p.dtype == torch.float32} == norms & set(frozen)
    assert sum(p.numel() for n, p in frozen.items() if p.dtype == torch.bfloat16) > 0.99 * sum(
        p.numel() for p in frozen.values())
    assert all(p.dtype == torch.float32 for p in trainable.values())
    assert any(n.startswith("unet.") for n in trainable) and any(n.startswith("cond_in.") for n in trainable)
    assert module.text_encoder.model.dtype == torch.bfloat16 and module.codec.vae.dtype == torch.bfloat16
    assert all(b.dtype == torch.float32 for n, b in module.ema.named_buffers() if n != "num_updates")
    opt = module.configure_optimizers()["optimizer"]
    params = [p for g in opt.param_groups for p in g["params"]]
    assert {id(p) for p in params} == {id(p) for p in trainable.values()}
    assert all(p.dtype == torch.float32 and p.requires_grad for p in params)


def test_bf16_weights_are_read_straight_into_bf16_and_the_kept_ones_at_full_precision(pipeline, tmp_path, monkeypatch):
    """model.frozen_dtype=bfloat16 reads the U-Net, text encoder and VAE straight into bf16 (diffusers / transformers
    are asked for bf16: no float32 copy of the model is made), and the U-Net's weights kept float32 (unfreeze=[text]
    layers, norms) are read again from the folder: every weight equals a float32 load's, cast to its stored dtype.
    Fails if the kept weights keep the bf16 rounding of the first read."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    asked = {}

    def spy(cls):
        real = cls.from_pretrained.__func__

        def from_pretrained(klass, *args, **kwargs):
            asked[cls.__name__] = kwargs.get("dtype", kwargs.get("torch_dtype"))   # transformers: dtype
            return real(klass, *args, **kwargs)
        monkeypatch.setattr(cls, "from_pretrained", classmethod(from_pretrained))

    for cls in (UNet2DConditionModel, AutoencoderKL, CLIPTextModel):
        spy(cls)
    common = ["trainer.precision=bf16-mixed", "model.temporal.unfreeze=[text]"]
    bf16 = DiffusionModule(to_dict(_config(pipeline, tmp_path, "model.frozen_dtype=bfloat16", *common)))
    assert asked == dict.fromkeys(("UNet2DConditionModel", "AutoencoderKL", "CLIPTextModel"), torch.bfloat16)
    fp32 = DiffusionModule(to_dict(_config(pipeline, tmp_path, "model.frozen_dtype=float32", *common)))
    assert set(asked.values()) == {torch.float32}
    kept = {n for n, p in bf16.net.unet.named_parameters() if p.dtype == torch.float32}
    assert kept and any(p.dtype == torch.bfloat16 for p in bf16.net.unet.parameters())
    pairs = [(f"unet.{n}", p, fp32.net.unet.get_parameter(n)) for n, p in bf16.net.unet.named_parameters()]
    for holder in ("text_encoder", "codec"):                     # FrozenHolders: their one network, outside the tree
        (mine,), (ref,) = (_held(getattr(m, holder)) for m in (bf16, fp32))
        want = dict(ref.named_parameters())
        pairs += [(f"{holder}.{n}", p, want[n]) for n, p in mine.named_parameters()]
    for name, got, want in pairs:
        assert torch.equal(got, want.to(got.dtype)), name
    assert all(p.dtype == torch.bfloat16 for n, p, _ in pairs if not n.startswith("unet."))


def test_kept_weights_are_read_from_one_file_or_the_shards_of_an_index(tmp_path):
    """read_tensors: the stored tensors of named weights, from a single safetensors file (an fp16 variant) or from a
    sharded save through its index; a name the files lack is one InputError naming the file."""
    from lumiere_pl.errors import InputError
    from lumiere_pl.models.diffusers_folder import read_tensors

    unet = sd_unet()
    unet.half().save_pretrained(tmp_path / "single", variant="fp16")
    unet.float().save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 2
    names = ["conv_in.weight", "mid_block.resnets.0.norm1.weight", "up_blocks.2.attentions.0.norm.bias"]
    state = unet.state_dict()
    got = read_tensors(tmp_path / "single", names, "fp16")
    assert all(got[n].dtype == torch.float16 and torch.equal(got[n], state[n].half()) for n in names)
    got = read_tensors(tmp_path / "sharded", names)
    assert all(got[n].dtype == torch.float32 and torch.equal(got[n], state[n]) for n in names)
    for folder, variant, file in (("sharded", None, "index.json"), ("single", "fp16", "fp16.safetensors")):
        with pytest.raises(InputError, match=rf"{file}: no (entry for|tensor) not.a.weight"):
            read_tensors(tmp_path / folder, ["not.a.weight"], variant)


def _held(holder):
    """The networks a FrozenHolder holds (outside its module tree)."""
    return [getattr(holder, name) for name in holder._held]


def _perturbed(net: DiffusersSTUNet, seed: int = 1) -> DiffusersSTUNet:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*net.temporal.parameters(), *net.cond_in.parameters()]:
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return net


@pytest.mark.parametrize("kind", sorted(UNETS))
def test_forward_under_bf16_autocast_is_as_close_to_float32_as_autocast_alone(kind):
    """Trained-like temporal weights, conditional input on. Reference: float32 weights, float32 compute. bf16-mixed
    today (float32 weights under bf16 autocast) and with frozen bf16 weights differ from it by the same bf16 rounding:
    autocast rounds every conv / linear weight to bf16 anyway, so storing them in bf16 changes only what runs outside
    autocast's casts (biases and embeddings added directly, IF's attention-pooling table). Tolerance: 5% of the
    output's largest value (bf16 keeps 8 significant bits, 0.4% per rounding, over ~40 layers), and within 1.5x of
    autocast's own error (measured: SD identical, IF 0.075 vs 0.076 of 2.5). Forward outside any autocast: the
    network enters bf16 autocast itself (sampling, the dry run) and gives the same output."""
    make, c = UNETS[kind]
    opts = TemporalConfig(down_levels=[0, 1], emb_cond=True, text_attn=True, attn_levels=[0, 1, 2], conditional=True)
    ref = _perturbed(DiffusersSTUNet(make(), opts, TEXT_DIM))
    net = DiffusersSTUNet(make(), opts, TEXT_DIM, frozen_dtype=torch.bfloat16)
    net.load_state_dict(ref.state_dict())                     # the same weights, the frozen ones rounded to bf16
    g = torch.Generator().manual_seed(0)
    x, ts = torch.randn(2, c, 8, 16, 16, generator=g), torch.tensor([3.0, 700.0])
    cond = {"text": torch.randn(2, 6, TEXT_DIM, generator=g), "text_mask": torch.ones(2, 6, dtype=torch.bool),
            "cond_video": torch.randn(2, c, 8, 16, 16, generator=g), "cond_mask": torch.ones(2, 1, 8, 16, 16)}
    with torch.no_grad():
        full = ref(x, ts, cond)
        with torch.autocast("cpu", torch.bfloat16):
            mixed, stored = ref(x, ts, cond).float(), net(x, ts, cond).float()
        own = net(x, ts, cond).float()
    scale = float(full.abs().max())
    err_mixed, err_stored = float((mixed - full).abs().max()), float((stored - full).abs().max())
    assert scale > 0.5 and err_stored <= 0.05 * scale and err_stored <= 1.5 * err_mixed + 1e-3 * scale, (
        scale, err_mixed, err_stored)
    torch.testing.assert_close(own, stored, atol=0, rtol=0)


@pytest.mark.parametrize("kind", sorted(UNETS))
def test_init_property_holds_with_bf16_frozen_weights(kind):
    """A still video through the freshly inflated STUNet (frozen bf16) equals the same bf16 U-Net on every frame
    under bf16 autocast, to 1% of the output scale (bf16: the per-frame batch layout may round differently; measured
    exactly equal here), and is within 5% of the float32 U-Net."""
    make, c = UNETS[kind]
    unet32 = make()
    net = DiffusersSTUNet(make(), TemporalConfig(down_levels=[0, 1]), TEXT_DIM, frozen_dtype=torch.bfloat16)
    img, ts = torch.randn(2, c, 16, 16, generator=torch.Generator().manual_seed(3)), torch.tensor([3.0, 871.0])
    emb = torch.randn(2, 6, TEXT_DIM, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref32 = unet32(img, ts, encoder_hidden_states=emb).sample[:, :c]
        with torch.autocast("cpu", torch.bfloat16):
            ref = net.unet(img, ts, encoder_hidden_states=emb).sample[:, :c].float()
        out = net(img[:, :, None].expand(-1, -1, 8, -1, -1), ts, {"text": emb}).float()
    scale = float(ref32.abs().max())
    assert (out - ref[:, :, None]).abs().max() <= 0.01 * scale
    assert (out - ref32[:, :, None]).abs().max() <= 0.05 * scale


# ---------------------------------------------------------------------------------------------------------------------
# lumiere-train with the key on; DDP

TINY_RUN = ["text.max_length=8", "data.name=synthetic", "data.train_shards=null", "data.frames=8", "data.size=16",
            "data.batch_size=2", "data.num_workers=0", "data.synthetic.num_videos=8",
            "data.synthetic.num_val_videos=2", "model.temporal.down_levels=[0,1]", "train.max_steps=3",
            "train.val_every_n_steps=3", "train.ckpt_every_n_steps=3", "train.warmup_steps=1", "train.lr=1e-2",
            "train.ema_decay=0.5", "train.val_prompts=[a red circle moving left]", "sampler.steps=2",
            "trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto",
            "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", *BF16]


@pytest.mark.slow
def test_training_resume_and_sampling_with_bf16_frozen_weights(pipeline, tmp_path, single_thread):
    """experiments/diffusers/sd.yaml under bf16-mixed with model.frozen_dtype=bfloat16 (conditional, latent): 3 steps, a resume to
    4; the checkpoint holds float32 trainable weights, EMA and AdamW moments, no frozen U-Net weight; the resumed
    run starts from them (its step-4 weights differ from step 3's); lumiere-sample samples the checkpoint outside
    Lightning (the network enters bf16 autocast itself)."""
    argv = ["--config", str(ROOT / "experiments/diffusers/sd.yaml"), f"model.init_from={pipeline}", f"out_dir={tmp_path}",
            "model.temporal.conditional=true", *TINY_RUN]
    assert train_cli.main(argv) == 0
    ckpt_path = tmp_path / "stunet_sd" / "checkpoints" / "last.ckpt"
    ckpt = load_checkpoint(ckpt_path)
    state = ckpt["state_dict"]
    assert ckpt["global_step"] == 3 and not any(k.startswith("net.unet.") for k in state)
    assert all(v.dtype == torch.float32 for k, v in state.items() if k.startswith(("net.", "ema.")) and
               v.is_floating_point())
    moments = [v for s in ckpt["optimizer_states"][0]["state"].values() for k, v in s.items() if k.startswith("exp_")]
    assert moments and all(v.dtype == torch.float32 for v in moments)
    before = {k: v.clone() for k, v in state.items() if k.startswith("net.temporal.")}

    assert train_cli.main(["--resume", *argv, "train.max_steps=4"]) == 0
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt["global_step"] == 4
    assert any(not torch.equal(ckpt["state_dict"][k], v) for k, v in before.items())
    pipe = LumierePipeline.from_pretrained(ckpt_path)
    assert pipe.net.unet.conv_in.weight.dtype == torch.bfloat16
    assert pipe.net.temporal["mid_attn"][0].pos.dtype == torch.float32
    out = tmp_path / "s.mp4"
    assert sample_cli.main(["--ckpt", str(ckpt_path), "--prompt", "a red circle", "--out", str(out), "--steps", "2",
                            "--device", "cpu"]) == 0 and out.stat().st_size > 0


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))   # a lost peer fails the test, not hangs it
    torch.manual_seed(0)                                       # same weights on every rank
    net = DiffusersSTUNet(sd_unet(), TemporalConfig(down_levels=[0, 1], conditional=True), TEXT_DIM,
                          frozen_dtype=torch.bfloat16)
    ddp = DistributedDataParallel(_perturbed(net))
    g = torch.Generator().manual_seed(10 + rank)               # each rank its own batch
    x = torch.randn(1, 4, 4, 16, 16, generator=g)
    cond = {"text": torch.randn(1, 6, TEXT_DIM, generator=g), "cond_video": torch.randn(1, 4, 4, 16, 16, generator=g),
            "cond_mask": torch.ones(1, 1, 4, 16, 16)}
    with torch.autocast("cpu", torch.bfloat16):
        loss = ddp(x, torch.tensor([400.0]), cond).float().square().mean()
    loss.backward()
    grads = {n: p.grad for n, p in net.named_parameters() if p.requires_grad}
    if rank == 0:
        torch.save({"grads": grads, "dtypes": {n: p.dtype for n, p in net.named_parameters()}}, out)
    del ddp                                                    # the reducer goes before its process group: a DDP
    dist.barrier()                                             # destroyed after it can hang at exit
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.xdist_group("two_processes")
def test_ddp_averages_float32_gradients_beside_bf16_frozen_weights(tmp_path, single_thread):
    """DDP on 2 CPU processes (gloo) over a STUNet with bf16 frozen weights: it wraps (broadcasting mixed-dtype
    weights), reduces the float32 gradients of the trainable weights only, and they are the mean of what each rank's
    batch gives in one process (to 1e-3 of the gradient's norm: bf16 autocast rounds each process's sums on its own;
    one rank's gradient alone is > 1e-2 away); the frozen weights stay bf16 without gradients."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "rank0.pt"
    ranks, deadline = mp.spawn(_ddp_worker, args=(2, port, str(out)), nprocs=2, join=False), time.monotonic() + 300
    while not ranks.join(timeout=5):
        if time.monotonic() > deadline:
            for proc in ranks.processes:
                proc.kill()
            pytest.fail("2-process DDP did not finish in 300 s")
    got = torch.load(out, weights_only=True)
    assert {d for n, d in got["dtypes"].items() if n.startswith("unet.conv_in.")} == {torch.bfloat16}
    ref, first = {}, {}
    for rank in range(2):                                      # each rank's gradients, in this process
        torch.manual_seed(0)
        net = _perturbed(DiffusersSTUNet(sd_unet(), TemporalConfig(down_levels=[0, 1], conditional=True), TEXT_DIM,
                                         frozen_dtype=torch.bfloat16))
        g = torch.Generator().manual_seed(10 + rank)
        x = torch.randn(1, 4, 4, 16, 16, generator=g)
        cond = {"text": torch.randn(1, 6, TEXT_DIM, generator=g),
                "cond_video": torch.randn(1, 4, 4, 16, 16, generator=g), "cond_mask": torch.ones(1, 1, 4, 16, 16)}
        with torch.autocast("cpu", torch.bfloat16):
            net(x, torch.tensor([400.0]), cond).float().square().mean().backward()
        for n, p in net.named_parameters():
            if p.requires_grad:
                ref[n] = ref.get(n, 0) + p.grad / 2
                first.setdefault(n, p.grad.clone())
            else:
                assert p.grad is None
    assert set(got["grads"]) == set(ref)
    assert all(v.dtype == torch.float32 for v in got["grads"].values())
    names = sorted(ref)
    ddp, mean, one = (torch.cat([d[n].flatten() for n in names]) for d in (got["grads"], ref, first))
    assert (ddp - mean).norm() <= 1e-3 * mean.norm() and (one - mean).norm() > 1e-2 * mean.norm()
