"""Training from encoded shards (lumiere-shards encode): the same losses, gradients and weights as encoding each clip
on the fly in its fixed view (data.augment=false), from the same noise; no text encoder is built and no VAE encoder
held; a cache whose key is not the run's is refused in one line naming both keys; the dry run's memory rows say so.
In one process and in 2-process DDP (gloo)."""
from __future__ import annotations

import subprocess
import sys

import lightning as L
import pytest
import torch

from lumiere_pl.checkpoint import load_checkpoint
from lumiere_pl.cli import train as train_cli
from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.cli import shards as shards_cli

from _latent_helpers import SD_CONFIG, encode_args, make_pipeline_and_shards, run_overrides
from _resume_helpers import ENV, ROOT, read_losses


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent_train")
    made = make_pipeline_and_shards(root)
    assert shards_cli.main(encode_args(made["sd"], made["src"], root / "enc")) == 0
    return {**made, "enc": root / "enc"}


def _config(data, shards, out, *extra):
    """The resolved, checked config lumiere-train would run (encoded shards: data.encoded set)."""
    from lumiere_pl.data.encoded import check_encoded

    cfg = load_config(SD_CONFIG, run_overrides(data["sd"], data[shards], out, *extra))
    cfg, _ = train_cli.inherit_t2i(cfg)
    check_encoded(cfg)
    return cfg


def _module(cfg):
    from lumiere_pl.lit import DiffusionModule

    L.seed_everything(cfg.train.seed, verbose=False)
    return DiffusionModule(to_dict(cfg))


def test_a_step_from_encoded_shards_has_the_loss_and_gradients_of_encoding_on_the_fly(data, tmp_path, single_thread):
    """The first training batch both ways: same clips and captions, the same latent draw (one randn over the batch,
    LatentCodec.sample), the same caption drops (diffusion.cond_drop=0.5): loss and every gradient to 1e-5."""
    from lumiere_pl.data import build_datamodule
    from lumiere_pl.utils.rng import step_rng

    out = {}
    for shards in ("src", "enc"):
        cfg = _config(data, shards, tmp_path, "data.augment=false")
        module, dm = _module(cfg), build_datamodule(cfg.data)
        dm.setup()
        batch = next(iter(dm.train_dataloader()))
        assert ("pixels" in batch) == (shards == "src") and ("text" in batch) == (shards == "enc")
        loss = module.loss(batch, step_rng(cfg.train.seed, 0, 0, 0), train=True)
        loss.backward()
        out[shards] = (batch["key"], loss.detach(), {n: p.grad for n, p in module.net.named_parameters()
                                                     if p.grad is not None})
    (keys, loss, grads), (keys2, loss2, grads2) = out["src"], out["enc"]
    assert keys == keys2 and len(grads) == len(grads2) > 0
    torch.testing.assert_close(loss2, loss, rtol=1e-5, atol=0)
    for name, g in grads.items():
        assert (grads2[name] - g).abs().max() <= 1e-5 * max(g.abs().max(), 1e-12), name


def _update_gap(data, out, a: str, b: str) -> float:
    """|| (final - initial) of run a - (final - initial) of run b || / || final - initial of run a ||, over the
    trained network weights (the initial ones: the module lumiere-train builds after seeding)."""
    init = {f"net.{k}": v for k, v in _module(_config(data, "src", out)).net.state_dict().items()}
    wa, wb = (load_checkpoint(out / r / "checkpoints" / "last.ckpt")["state_dict"] for r in (a, b))
    keys = [k for k in wa if k.startswith("net.")]
    assert keys and keys == [k for k in wb if k.startswith("net.")]
    da = torch.cat([(wa[k] - init[k]).flatten() for k in keys])
    db = torch.cat([(wb[k] - init[k]).flatten() for k in keys])
    return float((da - db).norm() / da.norm())


def test_training_from_encoded_shards_equals_encoding_on_the_fly(data, tmp_path, monkeypatch, single_thread):
    """lumiere-train 3 steps on the pixel shards (data.augment=false) and on their encoding: every loss to 1e-5, the
    weight updates to 1e-2 of their norm (AdamW normalises each element's gradient: an element whose gradient is at
    float-noise level moves by up to lr either way), validation samples written by both. The encoded run builds no
    text encoder (build_text_encoder fails if called)."""
    import lumiere_pl.parts as parts

    assert train_cli.main(["--config", SD_CONFIG, *run_overrides(data["sd"], data["src"], tmp_path, "name=fly",
                                                                 "data.augment=false")]) == 0

    def no_encoder(*a, **kw):
        raise AssertionError("a text encoder was built for a run from encoded shards")
    monkeypatch.setattr(parts, "build_text_encoder", no_encoder)
    assert train_cli.main(["--config", SD_CONFIG, *run_overrides(data["sd"], data["enc"], tmp_path, "name=enc")]) == 0
    monkeypatch.undo()
    fly, enc = (read_losses(tmp_path / r / "train_loss.csv") for r in ("fly", "enc"))
    assert sorted(fly) == sorted(enc) == [1, 2, 3]
    for step in fly:
        assert abs(fly[step] - enc[step]) <= 1e-5 * abs(fly[step]), (step, fly[step], enc[step])
    assert _update_gap(data, tmp_path, "fly", "enc") < 1e-2
    saved = (tmp_path / "enc" / "config.yaml").read_text()
    assert "augment: false" in saved and "encoded: " in saved and "encoded: null" not in saved
    assert sorted(p.name for p in (tmp_path / "enc" / "samples" / "step_0000003").iterdir()) == ["00.mp4"]


def test_a_run_from_encoded_shards_resumes_exactly(data, tmp_path, single_thread):
    """3 steps, then --resume to 5, against 5 steps straight, from the same encoded shards: steps 4 and 5 give the
    same losses (1e-6) and the same final weights (1e-6)."""
    straight = run_overrides(data["sd"], data["enc"], tmp_path, "name=straight", "train.max_steps=5",
                             "train.val_every_n_steps=100")
    assert train_cli.main(["--config", SD_CONFIG, *straight]) == 0
    split = run_overrides(data["sd"], data["enc"], tmp_path, "name=split", "train.val_every_n_steps=100")
    assert train_cli.main(["--config", SD_CONFIG, *split]) == 0
    assert train_cli.main(["--resume", "--config", SD_CONFIG, *split, "train.max_steps=5"]) == 0
    a, b = (read_losses(tmp_path / r / "train_loss.csv") for r in ("straight", "split"))
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5] and all(abs(a[s] - b[s]) <= 1e-6 for s in a), (a, b)
    wa, wb = (load_checkpoint(tmp_path / r / "checkpoints" / "last.ckpt")["state_dict"] for r in ("straight", "split"))
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], atol=1e-6, rtol=0, msg=k)


def test_a_run_from_encoded_shards_holds_no_encoder_and_its_dry_run_says_so(data, tmp_path, capsys):
    """The module's text encoder is the stored prompts (refusing other captions in one line), its VAE the decoder
    alone; the memory rows of the text encoder and the VAE encoder drop to 0, the decoder's stay."""
    from lumiere_pl.errors import InputError
    from lumiere_pl.utils.memory import frozen_rows

    pixel, cached = _module(_config(data, "src", tmp_path)), _module(_config(data, "enc", tmp_path))
    assert cached.codec.vae.encoder is None and cached.codec.vae.quant_conv is None
    assert cached.text_encoder.name == "clip (encoded)" and cached.text_encoder.captions == ["", "a red circle moving left"]
    with pytest.raises(InputError, match="caption 'a dog' has no stored encoding"):
        cached.parts.text_condition(["a dog"])
    a, b = frozen_rows(pixel), frozen_rows(cached)
    assert a["weights (text encoder)"] > 0 and a["weights (VAE encoder)"] > 0 and a["weights (VAE decoder)"] > 0
    assert b == {**a, "weights (text encoder)": 0, "weights (VAE encoder)": 0}
    torch.testing.assert_close(cached.parts.text_condition([""])["text"], pixel.parts.text_condition([""])["text"],
                               atol=1e-6, rtol=0)
    capsys.readouterr()
    assert train_cli.main(["--dry-run", "--config", SD_CONFIG, *run_overrides(data["sd"], data["enc"], tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no text encoder and no VAE encoder are loaded" in out and "text encoder: clip (encoded)" in out
    assert "  weights (text encoder)                    0.000 GiB" in out and "  weights (VAE decoder)" in out


def test_a_cache_of_another_key_is_refused_naming_both_keys(data, tmp_path, capsys):
    """Another size (preprocessing), another text.max_length, a val prompt the cache lacks, pixel val shards beside
    encoded train shards: exit 2, one line, before anything is built."""
    import json

    key = json.loads((data["enc"] / "manifest.json").read_text())["encoded"]["key"]
    cases = [("data.size=32", "preprocessing.size (16 vs 32)"), ("text.max_length=9", "text.max_length (8 vs 9)"),
             ("train.val_prompts=[a dog]", "train.val_prompts: 'a dog' has no stored encoding"),
             (f"data.val_shards={data['src']}/val-000000.tar", "data.val_shards pixel shards")]
    for override, said in cases:
        rc = train_cli.main(["--config", SD_CONFIG, *run_overrides(data["sd"], data["enc"], tmp_path, override)])
        err = capsys.readouterr().err
        assert rc == 2 and said in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        if "vs" in said:
            assert f"encoded with key {key}, the run's config gives " in err
    assert not (tmp_path / "stunet_sd").exists()


@pytest.mark.slow
@pytest.mark.xdist_group("two_processes")
def test_two_process_ddp_from_encoded_shards_equals_encoding_on_the_fly(data, tmp_path):
    """2-process DDP (gloo), 3 steps both ways: the losses rank 0 logs to 1e-5, the weight updates to 1e-2."""
    for name, shards, extra in (("fly", "src", ["data.augment=false"]), ("enc", "enc", [])):
        cmd = [sys.executable, "-m", "lumiere_pl.cli.train", "--config", SD_CONFIG,
               *run_overrides(data["sd"], data[shards], tmp_path, f"name={name}", "trainer.devices=2",
                              "trainer.strategy=ddp", *extra)]
        run = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=400)
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    fly, enc = (read_losses(tmp_path / r / "train_loss.csv") for r in ("fly", "enc"))
    assert sorted(fly) == sorted(enc) == [1, 2, 3]
    for step in fly:
        assert abs(fly[step] - enc[step]) <= 1e-5 * abs(fly[step]), (step, fly[step], enc[step])
    assert _update_gap(data, tmp_path, "fly", "enc") < 1e-2


def test_a_pixel_model_trains_from_stored_t5_states_as_from_its_encoder(tmp_path, monkeypatch, single_thread):
    """DeepFloyd IF-like (pixels, T5): encode keeps each sample's members byte for byte and adds its T5 states; 3
    steps from them (random starts and crops as usual, data.augment=true) give the losses of the run with T5 loaded,
    to 1e-5, and build no text encoder."""
    import tarfile

    import lumiere_pl.parts as parts
    from lumiere_research.tiny_diffusers import if_like

    if_cfg = str(ROOT / "experiments" / "diffusers" / "if.yaml")
    made = make_pipeline_and_shards(tmp_path)
    folder = if_like(tmp_path / "if")

    def overrides(shards, *extra):
        return run_overrides(folder, shards, tmp_path, *extra)
    assert shards_cli.main(["encode", "--config", if_cfg, *overrides(made["src"]), "--out", str(tmp_path / "enc")]) == 0
    with tarfile.open(made["src"] / "train-000000.tar") as a, tarfile.open(tmp_path / "enc" / "train-000000.tar") as b:
        src = {m.name: a.extractfile(m).read() for m in a}
        out = {m.name: b.extractfile(m).read() for m in b}
    assert {k: v for k, v in out.items() if not k.endswith(".text.safetensors")} == src
    assert len(out) - len(src) == 4                                          # one text member per sample
    assert train_cli.main(["--config", if_cfg, *overrides(made["src"], "name=fly")]) == 0

    def no_encoder(*a, **kw):
        raise AssertionError("a text encoder was built for a run from encoded shards")
    monkeypatch.setattr(parts, "build_text_encoder", no_encoder)
    assert train_cli.main(["--config", if_cfg, *overrides(tmp_path / "enc", "name=from_enc")]) == 0
    fly, enc = (read_losses(tmp_path / r / "train_loss.csv") for r in ("fly", "from_enc"))
    assert sorted(fly) == sorted(enc) == [1, 2, 3]
    for step in fly:
        assert abs(fly[step] - enc[step]) <= 1e-5 * abs(fly[step]), (step, fly[step], enc[step])
    assert "augment: true" in (tmp_path / "from_enc" / "config.yaml").read_text()
