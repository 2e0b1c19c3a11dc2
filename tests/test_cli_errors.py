"""Every command fails well (issue 14): bad input gets one line naming it, exit 2, no traceback, nothing half-written.

One table of cases, each run in-process through the command's main(argv) (the function the console script calls):
the exit code, the names the message must contain, and the outputs that must not exist afterwards. Every case also
checks that stderr has no traceback, never passes on torch's advice to load with weights_only=False, and that no
temporary file (*.tmp) is left. A full disk is simulated by pointing the temporary file of the output
(lumiere_pl.utils.atomic.tmp_path) at /dev/full, so the kernel itself answers ENOSPC. Two cases run the real entry
points in a subprocess; two check --debug / LUMIERE_DEBUG=1 and the internal-error path (exit 1).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image

from lumiere_pl.cli import apply, export, sample, train
from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.cli import shards as shards_cli
from lumiere_pl.data import shards
from lumiere_pl.data.video_io import encode
from lumiere_pl.errors import WriteError
from lumiere_pl.lit import DiffusionModule
from lumiere_pl.utils.atomic import check_writable
from lumiere_research.sweep import cli as sweep_cli

from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
W, H = 24, 20                                   # input image / video size (not the model's 16 x 16)
MISSING_ACCELERATOR = "gpu" if not torch.cuda.is_available() else "mps"   # one this machine does not have
UNSAFE_ADVICE = ("weights_only=False", "weights_only` set to `False", "weights_only` argument")


class Payload:
    """A pickled object a checkpoint must not hold (harmless: print). torch.load(weights_only=True) refuses it."""

    def __reduce__(self):
        return (print, ("this must never run",))


FULL: set = set()                              # outputs whose next atomic write meets a full disk (see full())


@pytest.fixture(autouse=True)
def _quiet(single_thread, monkeypatch):
    monkeypatch.delenv("LUMIERE_DEBUG", raising=False)
    import eval.atomic

    real = eval.atomic.new_temp

    def new_temp(path):
        tmp = real(path)
        if Path(path) in FULL:                     # the temporary file becomes /dev/full: the kernel says ENOSPC
            FULL.discard(Path(path))
            tmp.unlink()
            os.symlink("/dev/full", tmp)
        return tmp

    monkeypatch.setattr(eval.atomic, "new_temp", new_temp)
    monkeypatch.setattr(shards, "new_temp", new_temp)          # the shard writer's own temporary files
    yield
    FULL.clear()


def _save(module: DiffusionModule, path: Path) -> Path:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": module.export_config()},
                "global_step": 1}, path)
    return path


def _module(tmp: Path, *extra: str) -> DiffusionModule:
    torch.manual_seed(0)
    cfg = load_config(None, TINY + [f"out_dir={tmp}", "sampler.steps=1", "sampler.guidance=1.0", *extra])
    return DiffusionModule(to_dict(cfg)).eval()


@pytest.fixture(scope="module")
def F(tmp_path_factory) -> dict:
    """The inputs, good and bad, shared by every case (read-only)."""
    d = tmp_path_factory.mktemp("inputs")
    f = {"dir": d}
    f["stunet"] = _save(_module(d, "model.temporal.conditional=true"), d / "stunet.ckpt")   # 8 frames, 16 x 16
    f["t2i"] = _save(_module(d, "model.name=t2i", "data.images=true"), d / "t2i.ckpt")
    raw = f["stunet"].read_bytes()
    (d / "truncated.ckpt").write_bytes(raw[: len(raw) // 2])
    (d / "notckpt.ckpt").write_text("model weights, honest\n")
    torch.save({"state_dict": {}, "hyper_parameters": {"config": {}}, "extra": Payload()}, d / "pickled.ckpt")
    for name in ("truncated", "notckpt", "pickled"):
        f[name] = d / f"{name}.ckpt"

    yy, xx = np.mgrid[0:H, 0:W]
    image = np.stack([xx * 10, yy * 12, np.full_like(xx, 90)], -1).astype(np.uint8)
    Image.fromarray(image).save(d / "image.png")
    mask = np.zeros((H, W), np.uint8)
    mask[: H // 2] = 255
    Image.fromarray(mask).save(d / "mask.png")
    Image.fromarray(mask[:, :-2]).save(d / "small_mask.png")                            # 22 x 20
    (d / "short.mp4").write_bytes(encode(np.stack([image] * 4), 8.0))                  # 4 frames < 8
    f.update(image=d / "image.png", mask=d / "mask.png", small_mask=d / "small_mask.png", short=d / "short.mp4")

    (d / "model_3.yaml").write_text("model: 3\n")                                       # parses, wrong shape
    (d / "a_list.yaml").write_text("- model\n- data\n")
    (d / "unet_list.yaml").write_text("model:\n  unet: [16, 32]\n")
    prompts = {"not_json.jsonl": '{"prompt": "a"}\n{prompt: b}\n', "no_prompt.jsonl": '{"caption": "a"}\n',
               "empty.jsonl": "\n\n", "dup_index.jsonl": '{"prompt": "a", "index": 1}\n{"prompt": "b", "index": 1}\n',
               "bad_index.jsonl": '{"prompt": "a", "index": "first"}\n'}
    for name, text in prompts.items():
        (d / name).write_text(text)
    (d / "binary.jsonl").write_bytes(b"\xff\xfe\x00\x81 not text")

    for sub in ("all_bad", "no_captions"):
        (d / sub).mkdir()
    (d / "all_bad" / "a.mp4").write_bytes(b"not a video at all")
    (d / "all_bad" / "a.txt").write_text("a caption")
    (d / "all_bad" / "b.mp4").write_bytes(b"")
    (d / "all_bad" / "b.txt").write_text("another caption")
    (d / "no_captions" / "clip.mp4").write_bytes(encode(np.stack([image] * 4), 8.0))
    (d / "caps.jsonl").write_text('{"name": "clip.mp4"}\n')
    return f


def full(path: Path) -> Path:
    """Make the next atomic write of `path` hit a full disk (its temporary file is /dev/full)."""
    FULL.add(path)
    return path


class Case(NamedTuple):
    main: Callable[[List[str]], int]
    argv: Callable[[dict, Path], list]      # (inputs, output folder) -> arguments
    names: tuple                             # what the message must contain (the input, what is wrong)
    absent: tuple = ()                       # outputs (relative to the output folder) that must not exist
    code: int = 2
    setup: Callable[[dict, Path], None] = lambda f, o: None
    kept: tuple = ()                         # outputs of an earlier run (b"old", made by setup) that must survive


def old(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"old")


TR = ["--dry-run", *TINY]                   # training cases stop before building anything anyway

CASES = {
    # lumiere-train: configs of the wrong shape, bad or wrong checkpoints for model.init_from and --resume
    "train/yaml model: 3": Case(train.main, lambda f, o: ["--config", f["dir"] / "model_3.yaml"],
                                ("model_3.yaml", "model must be a mapping", "name:")),
    "train/yaml is a list": Case(train.main, lambda f, o: ["--config", f["dir"] / "a_list.yaml"],
                                 ("a_list.yaml", "expected a mapping", "got a list")),
    "train/yaml unet is a list": Case(train.main, lambda f, o: ["--config", f["dir"] / "unet_list.yaml"],
                                      ("unet_list.yaml", "model.unet must be a mapping", "[16, 32]")),
    "train/override model=3": Case(train.main, lambda f, o: ["model=3"], ("'model=3'", "must be a mapping")),
    "train/init_from not a checkpoint": Case(
        train.main, lambda f, o: [*TR, f"model.init_from={f['notckpt']}", f"out_dir={o}"],
        ("notckpt.ckpt", "not a torch file", "expected a checkpoint written by lumiere-train")),
    "train/init_from truncated": Case(
        train.main, lambda f, o: [*TR, f"model.init_from={f['truncated']}", f"out_dir={o}"],
        ("truncated.ckpt", "truncated")),
    "train/init_from pickled object": Case(
        train.main, lambda f, o: [*TR, f"model.init_from={f['pickled']}", f"out_dir={o}"],
        ("pickled.ckpt", "pickled Python object (", "print)", "refused")),
    "train/init_from a STUNet (T2I expected)": Case(
        train.main, lambda f, o: [*TR, f"model.init_from={f['stunet']}", f"out_dir={o}"],
        ("stunet.ckpt", "a checkpoint of a STUNet", "expected a checkpoint of a T2I U-Net")),
    "train/trainer settings this machine lacks": Case(
        train.main, lambda f, o: [f"out_dir={o}", f"trainer.accelerator={MISSING_ACCELERATOR}", *TINY],
        (f"trainer.accelerator={MISSING_ACCELERATOR}", "expected settings this machine supports"), ("experiment",)),
    "train/out_dir through a file (before anything is built)": Case(
        train.main, lambda f, o: [f"out_dir={o / 'afile' / 'runs'}", *TINY],
        ("the run folder (out_dir/name)", "afile", "cannot write there"),
        setup=lambda f, o: o.joinpath("afile").write_text("a file")),
    "train/resume a T2I (STUNet expected)": Case(
        train.main, lambda f, o: ["--resume", f["t2i"], f"out_dir={o}", *TINY],
        ("t2i.ckpt", "a checkpoint of a T2I U-Net", "expected a checkpoint of a STUNet"), ("experiment",)),

    # lumiere-sample: checkpoints, prompt files, videos, options, a full disk
    "sample/ckpt not a checkpoint": Case(
        sample.main, lambda f, o: ["--ckpt", f["notckpt"], "--prompt", "x", "--out", o / "a.mp4"],
        ("notckpt.ckpt", "not a torch file"), ("a.mp4",)),
    "sample/ckpt truncated": Case(
        sample.main, lambda f, o: ["--ckpt", f["truncated"], "--prompt", "x", "--out", o / "a.mp4"],
        ("truncated.ckpt", "truncated or damaged"), ("a.mp4",)),
    "sample/ckpt pickled object": Case(
        sample.main, lambda f, o: ["--ckpt", f["pickled"], "--prompt", "x", "--out", o / "a.mp4"],
        ("pickled.ckpt", "refused"), ("a.mp4",)),
    "sample/keyframes a T2I (STUNet expected)": Case(
        sample.main, lambda f, o: ["--keyframes-ckpt", f["t2i"], "--ckpt", f["stunet"], "--prompt", "x",
                                   "--out", o / "a.mp4"],
        ("t2i.ckpt", "a checkpoint of a T2I U-Net", "expected a checkpoint of a STUNet"), ("a.mp4",)),
    "sample/ssr-ckpt a T2I (SSR expected)": Case(
        sample.main, lambda f, o: ["--ckpt", f["stunet"], "--ssr-ckpt", f["t2i"], "--prompt", "x",
                                   "--out", o / "a.mp4"],
        ("t2i.ckpt", "expected a checkpoint of an SSR model"), ("a.mp4",)),
    **{f"sample/prompts {name}": Case(
        sample.main, lambda f, o, name=name: ["--ckpt", f["stunet"], "--prompts", f["dir"] / name,
                                              "--out-dir", o / "v"],
        (name, *what), ("v",))
       for name, what in [("not_json.jsonl", (":2:", "not valid JSON")),
                          ("no_prompt.jsonl", (":1:", '"prompt" string')),
                          ("empty.jsonl", ("no prompts",)),
                          ("dup_index.jsonl", (":2:", "already used on line 1")),
                          ("bad_index.jsonl", (":1:", "integer in [0,")),
                          ("binary.jsonl", ("not UTF-8 text (byte 0",)),
                          ("missing.jsonl", ("file not found",))]},
    "sample/frames the STUNet cannot halve": Case(
        sample.main, lambda f, o: ["--ckpt", f["stunet"], "--prompt", "x", "--out", o / "a.mp4", "--frames", "6"],
        ("--frames 6", "multiple of 4"), ("a.mp4",)),
    "sample/input video shorter than --frames": Case(
        sample.main, lambda f, o: ["--ckpt", f["stunet"], "--input-video", f["short"], "--frames", "8",
                                   "--prompt", "x", "--out", o / "a.mp4"],
        ("short.mp4", "4 frames", "--frames 8"), ("a.mp4",)),
    "sample/device name": Case(
        sample.main, lambda f, o: ["--ckpt", f["stunet"], "--prompt", "x", "--out", o / "a.mp4", "--device", "gpu"],
        ("--device gpu", "not a device name"), ("a.mp4",)),
    "sample/out not .mp4": Case(
        sample.main, lambda f, o: ["--ckpt", f["stunet"], "--prompt", "x", "--out", o / "a.gif"],
        ("a.gif", ".mp4"), ("a.gif",)),
    **{f"sample/{flag} where no folder can be made (before the checkpoint is read)": Case(
        sample.main, lambda f, o, args=args: ["--ckpt", o / "none.ckpt", *args(o)],
        (flag, "afile", "cannot write there"), setup=lambda f, o: o.joinpath("afile").write_text("a file"))
       for flag, args in [("--out", lambda o: ["--prompt", "x", "--out", o / "afile" / "a.mp4"]),
                          ("--out-dir", lambda o: ["--prompts", o / "p.jsonl", "--out-dir", o / "afile" / "v"])]},
    "sample/disk full": Case(
        sample.main, lambda f, o: ["--ckpt", f["stunet"], "--prompt", "x", "--out", o / "a.mp4", "--steps", "1"],
        ("a.mp4", "no space left on"), ("a.mp4",), setup=lambda f, o: full(o / "a.mp4")),
    "sample/disk full (prompts: the JSON)": Case(
        sample.main, lambda f, o: ["--ckpt", f["stunet"], "--prompts", o / "p.jsonl", "--out-dir", o / "v",
                                   "--steps", "1"],
        ("000000.json", "no space left on"), ("v/000000.json", "v/000000.mp4"),
        setup=lambda f, o: (o.joinpath("p.jsonl").write_text('{"prompt": "x"}\n'), full(o / "v" / "000000.json"))),

    # lumiere-apply: masks, short videos, checkpoints, a full disk
    "apply/--out where no folder can be made (before any input is read)": Case(
        apply.main, lambda f, o: ["i2v", "--ckpt", o / "none.ckpt", "--image", o / "none.png", "--prompt", "x",
                                  "--out", o / "afile" / "a.mp4"],
        ("--out", "afile", "cannot write there"), setup=lambda f, o: o.joinpath("afile").write_text("a file")),
    "apply/mask of the wrong size": Case(
        apply.main, lambda f, o: ["cinemagraph", "--ckpt", f["stunet"], "--image", f["image"], "--region",
                                  f["small_mask"], "--prompt", "x", "--out", o / "a.mp4"],
        ("small_mask.png", "22x20", f"{W}x{H}"), ("a.mp4",)),
    "apply/video shorter than the frames": Case(
        apply.main, lambda f, o: ["inpaint", "--ckpt", f["stunet"], "--video", f["short"], "--mask", f["mask"],
                                  "--prompt", "x", "--out", o / "a.mp4"],
        ("short.mp4", "at least 8 frames"), ("a.mp4",)),
    "apply/ckpt a T2I (STUNet expected)": Case(
        apply.main, lambda f, o: ["i2v", "--ckpt", f["t2i"], "--image", f["image"], "--prompt", "x",
                                  "--out", o / "a.mp4"],
        ("t2i.ckpt", "expected a checkpoint of a STUNet"), ("a.mp4",)),
    "apply/ckpt pickled object": Case(
        apply.main, lambda f, o: ["i2v", "--ckpt", f["pickled"], "--image", f["image"], "--prompt", "x",
                                  "--out", o / "a.mp4"],
        ("pickled.ckpt", "refused"), ("a.mp4",)),
    "apply/image not an image": Case(
        apply.main, lambda f, o: ["i2v", "--ckpt", f["stunet"], "--image", f["notckpt"], "--prompt", "x",
                                  "--out", o / "a.mp4"],
        ("notckpt.ckpt", "not an image"), ("a.mp4",)),
    "apply/disk full": Case(
        apply.main, lambda f, o: ["i2v", "--ckpt", f["stunet"], "--image", f["image"], "--prompt", "x", "--steps",
                                  "1", "--out", o / "a.mp4", "--overwrite"],
        ("a.mp4", "no space left on"), setup=lambda f, o: (old(o / "a.mp4"), full(o / "a.mp4")),
        kept=("a.mp4",)),

    # lumiere-export
    "export/not a checkpoint": Case(
        export.main, lambda f, o: ["--ckpt", f["notckpt"], "--out", o / "w.safetensors"],
        ("notckpt.ckpt", "not a torch file"), ("w.safetensors", "w.yaml")),
    "export/truncated": Case(
        export.main, lambda f, o: ["--ckpt", f["truncated"], "--out", o / "w.safetensors"],
        ("truncated.ckpt", "truncated"), ("w.safetensors", "w.yaml")),
    "export/pickled object": Case(
        export.main, lambda f, o: ["--ckpt", f["pickled"], "--out", o / "w.safetensors"],
        ("pickled.ckpt", "refused"), ("w.safetensors", "w.yaml")),
    "export/disk full": Case(
        export.main, lambda f, o: ["--ckpt", f["stunet"], "--out", o / "w.safetensors"],
        ("w.safetensors", "no space left on"), ("w.safetensors", "w.yaml"),
        setup=lambda f, o: full(o / "w.safetensors")),
    "export/over a file it did not write": Case(
        export.main, lambda f, o: ["--ckpt", f["stunet"], "--out", o / "w.safetensors", "--overwrite"],
        ("w.safetensors", "not an earlier export"), ("w.yaml",), setup=lambda f, o: old(o / "w.safetensors"),
        kept=("w.safetensors",)),
    "export/folder over the run folder": Case(
        export.main, lambda f, o: ["--ckpt", f["stunet"], "--out", o, "--overwrite"],
        ("out", "not an earlier export"), (), setup=lambda f, o: old(o / "notes.md"),
        kept=("notes.md",)),

    # lumiere-shards
    "shards/every video bad": Case(
        shards_cli.main, lambda f, o: ["folder", f["dir"] / "all_bad", o / "shards", "--workers", "1"],
        ("0 samples written", "2 of 2 sources skipped", "a.mp4", "b.mp4", "not a decodable video",
         "zero-byte video"), ("shards",)),
    "shards/no captions": Case(
        shards_cli.main, lambda f, o: ["folder", f["dir"] / "no_captions", o / "shards"],
        ("no_captions", "no caption", "clip.mp4", "NAME.txt", "--captions"), ("shards",)),
    "shards/caption table malformed": Case(
        shards_cli.main, lambda f, o: ["folder", f["dir"] / "no_captions", o / "shards", "--captions",
                                       f["dir"] / "caps.jsonl"],
        ("caps.jsonl:1", "'caption'"), ("shards",)),
    "shards/no such folder": Case(
        shards_cli.main, lambda f, o: ["folder", f["dir"] / "nowhere", o / "shards"],
        ("nowhere", "no such folder"), ("shards",)),
    "shards/disk full": Case(
        shards_cli.main, lambda f, o: ["synthetic", o, "--num", "1", "--num-val", "0", "--frames", "2",
                                       "--size", "16"],
        ("train-000000.tar", "no space left on"), ("train-000000.tar", "manifest.json"),
        setup=lambda f, o: full(o / "train-000000.tar")),

    # the sweep runner (make sweep / make ablation)
    "sweep/spec with an unknown key": Case(
        sweep_cli.main, lambda f, o: [o / "spec.yaml", "--dry-run"], ("spec.yaml", "stepz"), ("runs",),
        setup=lambda f, o: (o / "spec.yaml").write_text(
            f"name: s\nout_dir: {o / 'runs'}\nstepz: [1]\nvariants: {{a: {{config: {f['dir'] / 'model_3.yaml'}}}}}\n")),
    "sweep/variant config of the wrong shape": Case(
        sweep_cli.main, lambda f, o: [o / "spec.yaml"], ("model_3.yaml", "must be a mapping"), ("runs",),
        setup=lambda f, o: (o / "spec.yaml").write_text(
            f"name: s\nout_dir: {o / 'runs'}\nsteps: [1]\nvariants: {{a: {{config: {f['dir'] / 'model_3.yaml'}}}}}\n")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_well(name, F, tmp_path, capsys):
    case = CASES[name]
    if "disk full" in name and not Path("/dev/full").exists():
        pytest.skip("no /dev/full to simulate a full disk")
    if "lacks" in name and torch.cuda.is_available() and torch.backends.mps.is_available():
        pytest.skip("this machine has every accelerator")
    out = tmp_path / "out"
    out.mkdir()
    case.setup(F, out)
    code = case.main([str(a) for a in case.argv(F, out)])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith(("rendering", "sharding", "synthetic"))
             and "\r" not in x]
    assert code == case.code, err
    assert "Traceback" not in err, err
    assert not any(a in err for a in UNSAFE_ADVICE), err
    for text in case.names:
        assert text in err, f"{text!r} not in {err!r}"
    assert lines and lines[-1].startswith(("lumiere-", "python -m lumiere_pl")), err     # one line, the command named
    for rel in case.absent:
        assert not (out / rel).exists(), f"{rel} was written"
    for rel in case.kept:
        assert (out / rel).read_bytes() == b"old", f"{rel} was changed"
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name or p.is_symlink()], "temporary file left"


def test_every_bad_folder_leaves_an_existing_manifest_alone(F, tmp_path):
    (tmp_path / "manifest.json").write_text("old")
    assert shards_cli.main(["folder", str(F["dir"] / "all_bad"), str(tmp_path), "--workers", "1"]) == 2
    assert (tmp_path / "manifest.json").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json"]


def test_debug_shows_the_traceback_with_the_same_exit_code(F, tmp_path, capsys, monkeypatch):
    argv = ["--ckpt", str(F["notckpt"]), "--out", str(tmp_path / "w.safetensors")]
    assert export.main([*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("lumiere-export: ")
    monkeypatch.setenv("LUMIERE_DEBUG", "1")
    assert export.main(argv) == 2
    assert "Traceback" in capsys.readouterr().err


def test_internal_error_is_exit_1_and_one_line(F, tmp_path, capsys, monkeypatch):
    """A bug is not bad input: exit 1, one line naming the exception and how to see the traceback."""
    import lumiere_pl.checkpoint as checkpoint

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(checkpoint, "export_weights", broken)
    assert export.main(["--ckpt", str(F["stunet"]), "--out", str(tmp_path / "w.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error: ZeroDivisionError: division by zero" in err and "LUMIERE_DEBUG=1" in err


def _entry_point(module: str, *argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    env.pop("LUMIERE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", module, *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def test_entry_point_refuses_a_pickled_checkpoint_in_our_words(F, tmp_path):
    r = _entry_point("lumiere_pl.cli.sample", "--ckpt", F["pickled"], "--prompt", "x", "--out", tmp_path / "a.mp4")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "pickled.ckpt" in r.stderr and "refused" in r.stderr
    assert not any(a in r.stderr for a in UNSAFE_ADVICE) and "this must never run" not in r.stdout + r.stderr
    assert not (tmp_path / "a.mp4").exists()


def test_entry_point_shards_every_video_bad(F, tmp_path):
    r = _entry_point("lumiere_pl.cli.shards", "folder", F["dir"] / "all_bad", tmp_path / "shards",
                     "--workers", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "0 samples written, 2 of 2 sources skipped" in r.stderr and not (tmp_path / "shards").exists()


def test_check_writable_creates_nothing_and_names_the_flag(tmp_path, monkeypatch):
    deep = tmp_path / "a" / "b" / "c"
    assert check_writable(deep, "--out-dir") == deep and not (tmp_path / "a").exists()   # made only when written
    assert check_writable(deep / "x.mp4", "--out", file=True) == deep / "x.mp4"
    (tmp_path / "f").write_text("a file")
    with pytest.raises(WriteError, match=r"^--out-dir .*f/v: cannot write there \(.*f is not a folder\)"):
        check_writable(tmp_path / "f" / "v", "--out-dir")
    monkeypatch.chdir(tmp_path)
    assert check_writable(Path("y.mp4"), "--out", file=True) == Path("y.mp4")         # a bare name: the working folder
    with pytest.raises(WriteError, match=r"^--out f/y.mp4: cannot write there \(f is not a folder\)"):
        check_writable(Path("f") / "y.mp4", "--out", file=True)
