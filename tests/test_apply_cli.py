"""lumiere-apply: the applications from the command line on tiny untrained checkpoints (the wiring, not the quality).

Kept pixels equal the input under --paste-known (exactly with --lossless, within the MP4 codec's error otherwise),
i2v conditions exactly frame 0, stylize at alpha 0 is plain sampling, bad inputs exit 2 naming the file.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lumiere_pl.cli import apply as apply_cli
from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.data.video_io import decode, encode
from lumiere_pl.lit import DiffusionModule
from lumiere_pl.pipeline import LumierePipeline

from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
W, H = 24, 20                                   # input files: not square, not the model's 16 x 16
LOSSY_FAR, LOSSY_MEAN = 40, 12                  # CRF 18 MP4: kept pixels >= 2 px from the region (see test)


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Sampling tiny models on a shared 2-core CPU: one thread is ~100x faster than two fighting ones."""


def _save(module: DiffusionModule, path: Path) -> Path:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": module.export_config()}}, path)
    return path


def _module(tmp: Path, *extra: str, seed: int = 0) -> DiffusionModule:
    torch.manual_seed(seed)
    cfg = load_config(None, TINY + [f"out_dir={tmp}", "sampler.steps=2", "sampler.guidance=1.0", *extra])
    return DiffusionModule(to_dict(cfg)).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Checkpoints (conditional / unconditional STUNet, a 'style' T2I), an image, a video and masks."""
    d = tmp_path_factory.mktemp("apply")
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.stack([xx * 10, yy * 12, np.full_like(xx, 90)], -1).astype(np.uint8)   # smooth (h w 3)
    image[6:12, 8:14] = (230, 40, 40)                                                  # a red square
    Image.fromarray(image).save(d / "image.png")
    region = np.zeros((H, W), np.uint8)
    region[: H // 2] = 255                                                             # white = top half
    Image.fromarray(region).save(d / "region.png")
    Image.fromarray(region[:, :-2]).save(d / "small.png")                              # wrong size
    (d / "notimage.png").write_text("not a png")
    video = np.stack([np.roll(image, 2 * i, axis=1) for i in range(10)])               # (t h w 3), moving
    (d / "video.mp4").write_bytes(encode(video, 8.0, lossless=True))
    return {"dir": d, "image": image, "video": video,
            "cond": _save(_module(d, "model.temporal.conditional=true"), d / "cond.ckpt"),
            "uncond": _save(_module(d), d / "uncond.ckpt"),
            "style": _save(_fine_tuned(_module(d, "model.name=t2i", "data.images=true")), d / "style.ckpt")}


def _fine_tuned(module: DiffusionModule) -> DiffusionModule:
    """Stand-in for a style fine-tune: every weight (and so the EMA) moved a little. Untrained U-Nets end in a
    zero-initialised conv, so two fresh inits would sample alike."""
    from lumiere_pl.utils.ema import EMA

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.net.parameters():
            p.add_(torch.randn(p.shape, generator=g), alpha=0.05)
    module.ema = EMA(module.net, module.cfg.train.ema_decay)
    return module


def _run(*argv) -> int:
    return apply_cli.main([str(a) for a in argv])


def _fitted(image: np.ndarray) -> np.ndarray:
    """(h w 3) -> (16 16 3): what the CLI makes of an input frame at the tiny data.size."""
    return apply_cli.fit(image[None], 16)[0]


def test_cinemagraph_keeps_the_still_pixels_and_animates_the_region(files, tmp_path):
    d, still = files["dir"], _fitted(files["image"])
    out = tmp_path / "cine.mp4"
    assert _run("cinemagraph", "--ckpt", files["cond"], "--image", d / "image.png", "--region", d / "region.png",
                "--prompt", "water", "--out", out, "--lossless", "--frames", "4") == 0
    frames = decode(out.read_bytes())                                       # (t 16 16 3)
    assert frames.shape == (4, 16, 16, 3)
    keep = ~apply_cli.fit_mask(apply_cli.read_mask(d / "region.png", (W, H)), 16, 4, d / "region.png")
    assert keep.any() and (~keep).any()
    assert np.array_equal(frames[keep], np.broadcast_to(still, frames.shape)[keep])   # bit-exact (lossless)
    assert not np.array_equal(frames[~keep], np.broadcast_to(still, frames.shape)[~keep])
    lossy = tmp_path / "cine_lossy.mp4"                                     # default codec: H.264 yuv420p CRF 18
    _run("cinemagraph", "--ckpt", files["cond"], "--image", d / "image.png", "--region", d / "region.png",
         "--prompt", "water", "--out", lossy, "--frames", "4")
    err = np.abs(decode(lossy.read_bytes()).astype(int) - still.astype(int)).max(-1)   # (t 16 16)
    far = _eroded(keep, 2)
    # the untrained model fills the region with full-contrast noise, which chroma subsampling (2x2) and the
    # codec's transform blocks bleed into the kept pixels next to it (measured up to ~96 levels on the row
    # beside the region, mean 11-12 over all kept pixels); >= 2 px away: measured max 20-31, mean 7.7-8.4 levels
    # (largest channel error, seeds 0-3, libx264 of PyAV's wheel)
    assert far.any() and err[far].max() <= LOSSY_FAR and err[far].mean() <= LOSSY_MEAN, (err[far].max(),
                                                                                          err[far].mean())


def _eroded(keep: np.ndarray, r: int) -> np.ndarray:
    """(t h w) bool: the pixels of `keep` whose (2r+1)^2 neighbourhood (within the frame) is all `keep`."""
    padded = np.pad(keep, ((0, 0), (r, r), (r, r)), constant_values=True)
    h, w = keep.shape[1:]
    out = keep.copy()
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out &= padded[:, dy:dy + h, dx:dx + w]
    return out


def test_inpaint_fills_the_white_box_of_a_video_mask(files, tmp_path):
    d = files["dir"]
    box = np.zeros((12, H, W, 3), np.uint8)
    box[:, 4:14, 6:18] = 255                                                # white = fill, on every frame
    (d / "box.mp4").write_bytes(encode(box, 8.0, lossless=True))
    out = tmp_path / "inpaint.mp4"
    assert _run("inpaint", "--ckpt", files["cond"], "--video", d / "video.mp4", "--mask", d / "box.mp4",
                "--prompt", "a red square", "--out", out, "--lossless") == 0
    frames = decode(out.read_bytes())                                       # (8 16 16 3): data.frames
    expected = apply_cli.fit(files["video"][:8], 16)
    keep = ~apply_cli.fit_mask(box[..., 0] > 127, 16, 8, d / "box.mp4")
    assert frames.shape == expected.shape
    assert np.array_equal(frames[keep], expected[keep]) and not np.array_equal(frames[~keep], expected[~keep])


def test_i2v_conditions_exactly_the_first_frame(files, tmp_path, monkeypatch):
    from lumiere_pl.parts import ModelParts

    seen = {}
    real = ModelParts.video_condition

    def spy(self, video, known):
        out = real(self, video, known)
        seen.update(out)
        return out
    monkeypatch.setattr(ModelParts, "video_condition", spy)
    out = tmp_path / "i2v.mp4"
    assert _run("i2v", "--ckpt", files["cond"], "--image", files["dir"] / "image.png", "--prompt", "a red square",
                "--out", out) == 0
    mask = seen["cond_mask"]                                                # (1 1 t 16 16)
    assert mask.shape == (1, 1, 8, 16, 16)
    assert mask[:, :, 0].eq(1).all() and mask[:, :, 1:].eq(0).all()
    still = torch.from_numpy(_fitted(files["image"])).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(seen["cond_video"][0, :, 0], still)
    assert seen["cond_video"][:, :, 1:].eq(0).all()
    assert decode(out.read_bytes()).shape == (8, 16, 16, 3)


def test_stylize_alpha_0_is_plain_sampling_and_alpha_1_differs(files, tmp_path):
    plain = LumierePipeline.from_pretrained(files["uncond"])(["a red circle"], seeds=[3]).frames(0)   # (t h w 3)
    got = {}
    for alpha in (0.0, 1.0):
        out = tmp_path / f"style_{alpha}.mp4"
        assert _run("stylize", "--ckpt", files["uncond"], "--style-t2i", files["style"], "--alpha", alpha,
                    "--prompt", "a red circle", "--seed", 3, "--out", out, "--lossless") == 0
        got[alpha] = decode(out.read_bytes())
    assert np.array_equal(got[0.0], plain)
    assert not np.array_equal(got[1.0], plain)


def test_bad_inputs_exit_2_naming_the_file(files, tmp_path, capsys):
    d, out = files["dir"], tmp_path / "x.mp4"
    common = ["--prompt", "x", "--out", out]
    assert _run("i2v", "--ckpt", files["uncond"], "--image", d / "image.png", *common) == 2
    assert "shapes/conditional.yaml" in capsys.readouterr().err
    assert _run("cinemagraph", "--ckpt", files["cond"], "--image", d / "image.png", "--region", d / "small.png",
                *common) == 2
    err = capsys.readouterr().err
    assert "small.png" in err and "22x20" in err and f"{W}x{H}" in err
    # the image is checked before the checkpoint is read: a missing checkpoint is not what is reported
    assert _run("i2v", "--ckpt", d / "missing.ckpt", "--image", d / "notimage.png", *common) == 2
    err = capsys.readouterr().err
    assert "notimage.png" in err and "not an image" in err and "missing.ckpt" not in err
    assert _run("stylize", "--ckpt", files["uncond"], "--style-t2i", files["cond"], "--alpha", 0.5, *common) == 2
    assert "expected a checkpoint of a T2I U-Net" in capsys.readouterr().err
    assert not out.exists()


def test_module_entry_point_exits_2():
    d = ROOT / "experiments"
    r = subprocess.run([sys.executable, "-m", "lumiere_pl.cli.apply", "inpaint", "--ckpt", "none.ckpt", "--video",
                        d / "missing.mp4", "--mask", d / "missing.png", "--prompt", "x", "--out", "o.mp4"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "missing.mp4: file not found" in r.stderr, r.stderr
