"""LumierePipeline: one inference API over a checkpoint or an export, equal to lumiere-sample, never changing its
config; its options checked before any work; exports that replace only what they wrote."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from lumiere_pl.cli import export as export_cli
from lumiere_pl.cli import sample as sample_cli
from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.data.video_io import decode
from lumiere_pl.errors import InputError
from lumiere_pl.lit import DiffusionModule
from lumiere_pl.pipeline import MAX_SEED, LumierePipeline, VideoOutput

from conftest import TINY


def _checkpoint(tmp_path, *extra: str):
    """A tiny STUNet whose live weights differ from its EMA, saved as lumiere-train saves it."""
    torch.manual_seed(0)
    module = DiffusionModule(to_dict(load_config(None, TINY + [f"out_dir={tmp_path}", "sampler.steps=3", *extra])))
    with torch.no_grad():
        for p in module.net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    module.ema.update(module.net)                        # the EMA: a mix of the init and the moved weights
    with torch.no_grad():
        for p in module.net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": module.export_config()},
                "global_step": 7}, path)
    return module, path


def test_ckpt_export_folder_and_lumiere_sample_give_the_same_videos(tmp_path):
    """The documented API alone: from a .ckpt and from the folder lumiere-export wrote, the same clips, equal to
    lumiere-sample's lossless MP4s for the same seeds; the EMA weights by default, the live ones with ema=False."""
    _, ckpt = _checkpoint(tmp_path)
    prompts, seeds = ["a red circle moving left", "a blue square moving up"], [3, 11]
    pipe = LumierePipeline.from_pretrained(ckpt)
    out = pipe(prompts, seeds=seeds)
    assert isinstance(out, VideoOutput) and out.videos.shape == (2, 3, 8, 16, 16) and out.fps == pipe.fps
    assert export_cli.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "export")]) == 0
    folder = LumierePipeline.from_pretrained(tmp_path / "export")
    torch.testing.assert_close(folder(prompts, seeds=seeds).videos, out.videos, atol=0, rtol=0)
    live = LumierePipeline.from_pretrained(ckpt, ema=False)(prompts, seeds=seeds).videos
    assert (live - out.videos).abs().max() > 1e-3
    (tmp_path / "p.jsonl").write_text("".join(f'{{"index": {s}, "prompt": "{p}"}}\n' for p, s in zip(prompts, seeds)))
    assert sample_cli.main(["--ckpt", str(ckpt), "--prompts", str(tmp_path / "p.jsonl"), "--out-dir",
                            str(tmp_path / "v"), "--lossless", "--device", "cpu"]) == 0
    for i, s in enumerate(seeds):
        assert np.array_equal(decode((tmp_path / "v" / f"{s:06d}.mp4").read_bytes()), out.frames(i))
    out.save(tmp_path / "one.mp4", 1, lossless=True)
    assert np.array_equal(decode((tmp_path / "one.mp4").read_bytes()), out.frames(1))


def test_a_call_never_changes_the_config_and_its_options_apply_to_it_alone(tmp_path):
    _, ckpt = _checkpoint(tmp_path)
    pipe = LumierePipeline.from_pretrained(ckpt)
    before = copy.deepcopy(to_dict(pipe.config))
    ddim = pipe(["a red circle"], seeds=[1]).videos
    other = pipe(["a red circle"], seeds=[1], sampler="dpmpp_2m", steps=5, guidance=2.0, frames=16).videos
    assert to_dict(pipe.config) == before
    assert other.shape[2] == 16
    torch.testing.assert_close(pipe(["a red circle"], seeds=[1]).videos, ddim, atol=0, rtol=0)
    euler = pipe(["a red circle"], seeds=[1], sampler="euler").videos             # DDIM's deterministic step
    torch.testing.assert_close(euler, ddim, atol=0, rtol=0)
    assert (pipe(["a red circle"], seeds=[1], sampler="heun").videos - ddim).abs().max() > 1e-3


@pytest.mark.parametrize("kwargs, message", [
    ({"guidance": math.nan}, "guidance=nan: expected a finite number"),
    ({"guidance": math.inf}, "guidance=inf"),
    ({"steps": 0}, "steps=0: expected an integer in [1, 10000]"),
    ({"sampler": "ddim2"}, "sampler='ddim2': expected one of"),
    ({"sampler": "heun", "eta": 0.5}, "heun is deterministic"),
    ({"eta": -1.0}, "eta=-1.0"),
    ({"seeds": [-1]}, "seed -1: expected an integer in [0,"),
    ({"seeds": [MAX_SEED + 1]}, f"seed {MAX_SEED + 1}"),
    ({"seeds": [1, 2]}, "2 seeds for 1 prompts"),
    ({"frames": 6}, "frames=6: 6 frames cannot be halved"),
    ({"frames": 0}, "frames=0"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"window": 4, "stride": 6}, "stride=6 with window=4"),
    ({"video": torch.zeros(1, 3, 8, 16, 16), "mask": torch.zeros(1, 1, 8, 16, 16)}, "conditional=true"),
    ({"lowres": torch.zeros(1, 3, 8, 4, 4)}, "lowres= is the input of an SSR model"),
])
def test_options_that_cannot_work_are_refused_before_any_network_call(tmp_path, kwargs, message, monkeypatch):
    _, ckpt = _checkpoint(tmp_path)
    pipe = LumierePipeline.from_pretrained(ckpt)
    monkeypatch.setattr(pipe.net, "forward", lambda *a, **k: pytest.fail("the network ran"))
    with pytest.raises(InputError) as err:
        pipe(["a red circle"], **kwargs)
    assert message in str(err.value)


def test_auto_batches_remember_the_size_that_fitted(tmp_path, monkeypatch):
    """batch_size="auto": a batch that runs out of memory is halved, and the next call starts at the size that
    fitted; videos do not depend on the batch."""
    _, ckpt = _checkpoint(tmp_path)
    pipe = LumierePipeline.from_pretrained(ckpt)
    prompts = [f"a red circle moving {d}" for d in ("left", "right", "up", "down", "left")]
    one = pipe(prompts, steps=2, batch_size=1).videos
    calls, sample = [], LumierePipeline._sample

    def small_memory(self, batch, *a, **k):              # a device that holds two clips
        calls.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return sample(self, batch, *a, **k)
    monkeypatch.setattr(LumierePipeline, "_sample", small_memory)
    auto = pipe(prompts, steps=2, batch_size="auto").videos
    assert calls == [5, 3, 2, 2, 1]                      # 5 -> 3 -> 2 fits; 2 + 2 + 1
    torch.testing.assert_close(auto, one, atol=1e-5, rtol=0)
    calls.clear()
    pipe(prompts, steps=2, batch_size="auto")
    assert calls == [2, 2, 1]                            # starts at the size that fitted


def test_bfloat16_autocast_samples_close_to_float32(tmp_path):
    _, ckpt = _checkpoint(tmp_path)
    pipe = LumierePipeline.from_pretrained(ckpt)
    full = pipe(["a red circle"], seeds=[2]).videos
    half = pipe.to(dtype=torch.bfloat16)(["a red circle"], seeds=[2]).videos
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert 0 < float((half - full).abs().mean()) < 0.05
    with pytest.raises(InputError, match="dtype=torch.float64"):
        pipe.to(dtype=torch.float64)


def test_a_t2i_pipeline_makes_images(tmp_path):
    _, ckpt = _checkpoint(tmp_path, "model.name=t2i", "data.images=true")
    out = LumierePipeline.from_pretrained(ckpt)(["a red circle", "a blue square"])
    assert out.videos.shape == (2, 3, 16, 16) and out.frames(1).shape == (1, 16, 16, 3)


def test_an_ssr_stage_upscales_every_clip_and_keeps_the_base(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    torch.manual_seed(0)
    ssr_cfg = load_config(str(root / "experiments" / "tiny" / "ssr.yaml"), [f"out_dir={tmp_path}"])
    ssr = DiffusionModule(to_dict(ssr_cfg))
    torch.save({"state_dict": ssr.state_dict(), "hyper_parameters": {"config": ssr.export_config()}},
               tmp_path / "ssr.ckpt")
    _, base = _checkpoint(tmp_path)
    pipe = LumierePipeline.from_pretrained(base, ssr=tmp_path / "ssr.ckpt")
    out = pipe(["a red circle", "a blue square"], seeds=[4, 5], ssr={"steps": 1})
    assert out.base.shape == (2, 3, 8, 16, 16) and out.videos.shape == (2, 3, 8, 64, 64)
    torch.testing.assert_close(out.base, LumierePipeline.from_pretrained(base)(["a red circle", "a blue square"],
                                                                                seeds=[4, 5]).videos, atol=0, rtol=0)
    with pytest.raises(InputError, match="expected a checkpoint of an SSR model"):
        LumierePipeline.from_pretrained(base, ssr=base)


def test_export_replaces_only_its_own_earlier_output(tmp_path):
    """An existing --out is refused; --overwrite replaces an earlier export (file or folder), never a file or a
    folder it did not write (a run folder with the user's notes is left whole)."""
    _, ckpt = _checkpoint(tmp_path)
    out = tmp_path / "w.safetensors"
    assert export_cli.main(["--ckpt", str(ckpt), "--out", str(out)]) == 0
    stamp = out.stat().st_mtime_ns
    assert export_cli.main(["--ckpt", str(ckpt), "--out", str(out)]) == 2 and out.stat().st_mtime_ns == stamp
    assert export_cli.main(["--ckpt", str(ckpt), "--out", str(out), "--overwrite"]) == 0
    folder = tmp_path / "exported"
    assert export_cli.main(["--ckpt", str(ckpt), "--out", str(folder)]) == 0
    assert export_cli.main(["--ckpt", str(ckpt), "--out", str(folder), "--overwrite"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "model.safetensors"]
    (folder / "notes.md").write_text("mine")
    assert export_cli.main(["--ckpt", str(ckpt), "--out", str(folder), "--overwrite"]) == 2
    assert (folder / "notes.md").read_text() == "mine"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(ckpt.read_bytes())
    assert export_cli.main(["--ckpt", str(run / "checkpoints" / "last.ckpt"), "--out", str(run), "--overwrite"]) == 2
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == ckpt.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]          # no temporary folder left
