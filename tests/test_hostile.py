"""The battery of hostile, huge, half-broken inputs (issue 30): every command (lumiere-train, -sample, -apply,
-export, -shards, -eval, -sweep) ends each with its documented exit code
and one line naming the input, leaves nothing outside the folder it was given changed (the whole test tree and the
shared inputs are snapshotted before and after), no temporary file, and no earlier output touched.

Cases run in-process through the command's main(argv); the peak memory of the two worst (a video declaring huge
frames, a 2 KB checkpoint describing a 64 GiB network) is measured in a subprocess (its VmHWM at exit), and
interrupts are in tests/test_interrupts.py.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, NamedTuple

import numpy as np
import pytest
import torch

import eval.cli as eval_cli
from lumiere_pl.cli import apply, evaluate, export, sample, train
from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.cli import shards as shards_cli
from lumiere_pl.data.video_io import encode
from lumiere_pl.lit import DiffusionModule
from lumiere_research.sweep import cli as sweep_cli

from _hostile import (UNSAFE_ADVICE, checkpoint, deep_json, error_lines, huge_gif, huge_png, lying_safetensors,
                      lying_tar, not_utf8, snapshot, temporaries)
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _quiet(single_thread, monkeypatch):
    monkeypatch.delenv("LUMIERE_DEBUG", raising=False)
    for var in ("LUMIERE_LIMIT_FRAME_PIXELS", "LUMIERE_LIMIT_CLIP_MIB", "LUMIERE_LIMIT_MEMBER_MIB",
                "LUMIERE_LIMIT_HEADER_MIB", "LUMIERE_LIMIT_SAMPLE_MIB"):
        monkeypatch.delenv(var, raising=False)


def _config(**changes) -> dict:
    """A tiny STUNet's resolved config with dotted keys changed."""
    cfg = copy.deepcopy(CONFIG)
    for key, value in changes.items():
        node = cfg
        *parts, last = key.split(".")
        for part in parts:
            node = node[part]
        node[last] = value
    return cfg


CONFIG = to_dict(load_config(None, [*TINY, "model.temporal.conditional=true", "sampler.steps=1"]))


@pytest.fixture(scope="module")
def F(tmp_path_factory) -> dict:
    """The inputs, read-only for every case (snapshotted by each)."""
    d = tmp_path_factory.mktemp("hostile")
    f = {"dir": d}

    def put(name: str, data: bytes | str) -> Path:
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        f[name] = p
        return p

    torch.manual_seed(0)
    module = DiffusionModule(CONFIG).eval()
    put("good.ckpt", checkpoint(module.export_config(), dict(module.state_dict())))
    other = DiffusionModule(_config(**{"model.unet.channels": 24})).eval()             # another config's weights
    put("other.ckpt", checkpoint(other.export_config(), dict(other.state_dict()), {
        "pytorch-lightning_version": "2.6.6", "loops": {}, "optimizer_states": []}))      # resumable, by its keys
    put("huge_net.ckpt", checkpoint(_config(**{"model.unet.channels": 65536})))          # 2 KB, a 64+ GiB network
    put("huge_sample.ckpt", checkpoint(_config(**{"data.size": 2 ** 16, "data.frames": 4096})))
    put("evil_name.ckpt", checkpoint(_config(name="../../escaped")))
    put("nan_config.ckpt", checkpoint(_config(**{"sampler.guidance": float("nan")})))
    raw = (d / "good.ckpt").read_bytes()
    put("cut.ckpt", raw[: 2 * len(raw) // 3])
    put("export/model.safetensors", lying_safetensors())
    put("export/config.yaml", "model: {name: stunet}\n")
    put("tagged/model.safetensors", lying_safetensors(60))
    put("tagged/config.yaml", "!!python/object/apply:os.system [echo owned]\n")
    put("huge_t2i.ckpt", checkpoint(_config(**{"model.name": "t2i", "data.images": True,
                                               "model.unet.channels": 65536})))
    put("gif_caps.csv", "huge.gif,a huge gif\n")
    put("huge.gif", huge_gif())
    put("huge.png", huge_png())
    put("gifs/huge.gif", huge_gif())
    put("lying/train-000000.tar", lying_tar())
    frames = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3), dtype=np.uint8)
    put("clip.mp4", encode(frames, 8.0))
    put("caps/clip.mp4", encode(frames, 8.0))
    bad, f["caption_offset"] = not_utf8("a red circle ", suffix=" moving")
    put("caps/clip.txt", bad)
    put("deep.jsonl", deep_json() + "\n")
    put("deep_caps/clip.mp4", encode(frames, 8.0))
    put("deep_caps.jsonl", deep_json() + "\n")
    bad, f["prompt_offset"] = not_utf8('{"prompt": "a cat"}\n{"prompt": "a do', suffix='g"}\n')
    put("prompts_bad.jsonl", bad)
    put("prompts_index.jsonl", '{"prompt": "a cat", "index": -1}\n')
    put("prompts_dotdot.jsonl", '{"prompt": "a cat", "index": "../../x"}\n')
    put("prompts_big.jsonl", '{"prompt": "a cat", "index": 18446744073709551617}\n')
    bad, f["yaml_offset"] = not_utf8("name: x\ntrain:\n  lr: 0.1 # ", suffix="\n")
    put("binary.yaml", bad)
    put("tag.yaml", "name: !!python/object/apply:os.system [echo owned]\n")
    put("unknown.yaml", "train:\n  lr: 0.1\n  learning_rate: 0.2\n")
    put("table.yaml", "clips: !!python/name:os.system\n")
    bad, f["list_offset"] = not_utf8(f"{d / 'clip.mp4'} 0\n")
    put("clips.txt", bad)
    put("result.json", '{"metric": "fvd", "card": {}, "figures": ' + deep_json(50_000) + "}")
    put("tiny.yaml", "data:\n  size: 16\n  frames: 8\nmodel:\n  init_from: random\n")
    spec = "name: s\nout_dir: @OUT@\nsteps: [1]\nvariants: {a: {config: " + str(d / "tiny.yaml") + "}}\n"
    f["spec"] = spec
    for name, extra in (("grid_escape", "grid: {sampler.guidance: ['../../../../escaped']}\n"),
                        ("grid_dict", "grid: {train.lr: {a: 1}}\n"), ("grid_nan", "grid: {sampler.guidance: [.nan]}\n"),
                        ("seed_2_64", "seeds: [18446744073709551617]\n"), ("huge_n", "sample: {n: 1000000000}\n")):
        f[name] = spec + extra
    f["variant_escape"] = spec.replace("{a: {config:", "{'../../escaped': {config:")
    f["name_escape"] = spec.replace("name: s", "name: ../../escaped")
    f["variants_list"] = spec.replace("variants: {a: {config: " + str(d / "tiny.yaml") + "}}", "variants: [a, b]")
    bad, f["spec_offset"] = not_utf8("name: s\nseeds: [0] # ")
    put("spec_binary.yaml", bad)
    put("spec_tag.yaml", "name: !!python/object/apply:os.system [echo owned]\nvariants: {}\n")
    put("spec_deep.yaml", "name: " + "[" * 5000 + "]" * 5000 + "\n")
    return f


class Case(NamedTuple):
    main: Callable[[List[str]], int]
    argv: Callable[[dict, Path], list]       # (inputs, output folder) -> arguments
    names: tuple                              # what the one line must hold ({key} of F formatted in)
    code: int = 2
    setup: Callable[[dict, Path], None] = lambda f, o: None
    kept: tuple = ()                          # files of the output folder made by setup (b"old") that must survive


def old(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"old")


RUN = lambda o: [*TINY, f"out_dir={o / 'runs'}"]                  # noqa: E731


def spec(name: str) -> Callable[[dict, Path], list]:
    """A sweep spec F[name] (out_dir: the output folder) written there, as lumiere-sweep's argument."""
    def argv(f: dict, o: Path) -> list:
        (o / "spec.yaml").write_text(f[name].replace("@OUT@", str(o / "sweeps")))
        return [o / "spec.yaml"]
    return argv

I2V = lambda f, o: ["i2v", "--ckpt", f["good.ckpt"], "--image", f["clip.mp4"], "--prompt", "x"]   # noqa: E731

CASES = {
    # lumiere-train: numbers, names, YAML, checkpoints that lie, folders of others
    "train/lr nan": Case(train.main, lambda f, o: [*RUN(o), "train.lr=nan"], ("train.lr=nan", "finite")),
    "train/seed past 2^64": Case(train.main, lambda f, o: [*RUN(o), "train.seed=18446744073709551617"],
                                 ("train.seed=18446744073709551617", "int64")),
    "train/negative seed": Case(train.main, lambda f, o: [*RUN(o), "train.seed=-1"], ("train.seed=-1", "seed in [0,")),
    "train/name escapes out_dir": Case(train.main, lambda f, o: [*RUN(o), "name=../../escaped"],
                                       ("name '../../escaped'", "leaves")),
    "train/absolute name": Case(train.main, lambda f, o: [*RUN(o), f"name={o}/abs"], ("name '/", "plain name")),
    "train/yaml not UTF-8": Case(train.main, lambda f, o: ["--config", f["binary.yaml"], *RUN(o)],
                                 ("binary.yaml", "not UTF-8 text (byte {yaml_offset}")),
    "train/yaml python tag": Case(train.main, lambda f, o: ["--config", f["tag.yaml"], *RUN(o)],
                                  ("tag.yaml", "not valid YAML", "python/object")),
    "train/yaml unknown key": Case(train.main, lambda f, o: ["--config", f["unknown.yaml"], *RUN(o)],
                                   ("unknown.yaml", "train.learning_rate")),
    "train/limit not positive": Case(train.main, lambda f, o: [*RUN(o), "data.limits.clip_mib=0"],
                                     ("data.limits.clip_mib=0", "positive")),
    "train/init_from 2 KB describing 64 GiB": Case(
        train.main, lambda f, o: [*RUN(o), f"model.init_from={f['huge_t2i.ckpt']}"],
        ("huge_t2i.ckpt", "its weights do not fit the t2i its config describes")),
    "train/resume another config's checkpoint": Case(
        train.main, lambda f, o: [*RUN(o), "name=r", "--resume", f["other.ckpt"]],
        ("other.ckpt", "do not fit the model this run's config builds"),
        setup=lambda f, o: old(o / "runs" / "r" / "config.yaml"), kept=("runs/r/config.yaml",)),
    "train/run folder of other files": Case(
        train.main, lambda f, o: [*RUN(o), "name=r"], ("holds files lumiere-train did not write", "notes.md"),
        setup=lambda f, o: old(o / "runs" / "r" / "notes.md"), kept=("runs/r/notes.md",)),

    # lumiere-sample: options, prompt files, checkpoints and videos that lie
    "sample/guidance nan": Case(sample.main, lambda f, o: ["--ckpt", f["good.ckpt"], "--prompt", "x", "--out",
                                                           o / "a.mp4", "--guidance", "nan"],
                                ("--guidance", "'nan'", "finite")),
    "sample/seed past 2^64": Case(sample.main, lambda f, o: ["--ckpt", f["good.ckpt"], "--prompt", "x", "--out",
                                                             o / "a.mp4", "--seed", str(2 ** 64 + 1)],
                                  ("--seed", "in [0,")),
    "sample/negative frames": Case(sample.main, lambda f, o: ["--ckpt", f["good.ckpt"], "--prompt", "x", "--out",
                                                              o / "a.mp4", "--frames", "-8"], ("--frames", "'-8'")),
    "sample/fps inf": Case(sample.main, lambda f, o: ["--ckpt", f["good.ckpt"], "--prompt", "x", "--out", o / "a.mp4",
                                                      "--fps", "inf"], ("--fps", "'inf'")),
    "sample/--out an existing folder": Case(
        sample.main, lambda f, o: ["--ckpt", f["good.ckpt"], "--prompt", "x", "--out", o / "d.mp4", "--overwrite"],
        ("d.mp4", "is a folder"), setup=lambda f, o: old(o / "d.mp4" / "inside"), kept=("d.mp4/inside",)),
    "sample/prompts not UTF-8": Case(
        sample.main, lambda f, o: ["--ckpt", f["good.ckpt"], "--prompts", f["prompts_bad.jsonl"], "--out-dir", o / "v"],
        ("prompts_bad.jsonl", "not UTF-8 text (byte {prompt_offset}")),
    "sample/negative prompt index": Case(
        sample.main, lambda f, o: ["--ckpt", f["good.ckpt"], "--prompts", f["prompts_index.jsonl"], "--out-dir", o],
        ("prompts_index.jsonl:1", '"index" must be an integer')),
    "sample/prompt index a path": Case(
        sample.main, lambda f, o: ["--ckpt", f["good.ckpt"], "--prompts", f["prompts_dotdot.jsonl"], "--out-dir", o],
        ("prompts_dotdot.jsonl:1", "'../../x'")),
    "sample/prompt index past 2^64": Case(
        sample.main, lambda f, o: ["--ckpt", f["good.ckpt"], "--prompts", f["prompts_big.jsonl"], "--out-dir", o],
        ("prompts_big.jsonl:1", "18446744073709551617")),
    "sample/prompts nested too deeply": Case(
        sample.main, lambda f, o: ["--ckpt", f["good.ckpt"], "--prompts", f["deep.jsonl"], "--out-dir", o],
        ("deep.jsonl:1", "not valid JSON")),
    "sample/2 KB checkpoint describing 64 GiB": Case(
        sample.main, lambda f, o: ["--ckpt", f["huge_net.ckpt"], "--prompt", "x", "--out", o / "a.mp4"],
        ("huge_net.ckpt", "its weights do not fit", "MiB, the file holds 0.0 MiB")),
    "sample/checkpoint asking for a huge sample": Case(
        sample.main, lambda f, o: ["--ckpt", f["huge_sample.ckpt"], "--prompt", "x", "--out", o / "a.mp4"],
        ("huge_sample.ckpt", "4096 frames of 65536x65536", "LUMIERE_LIMIT_SAMPLE_MIB")),
    "sample/checkpoint config with NaN": Case(
        sample.main, lambda f, o: ["--ckpt", f["nan_config.ckpt"], "--prompt", "x", "--out", o / "a.mp4"],
        ("nan_config.ckpt", "sampler.guidance=nan", "finite")),
    "sample/truncated checkpoint": Case(
        sample.main, lambda f, o: ["--ckpt", f["cut.ckpt"], "--prompt", "x", "--out", o / "a.mp4"],
        ("cut.ckpt", "truncated or damaged")),
    "sample/export header of 1 TiB": Case(
        sample.main, lambda f, o: ["--ckpt", f["dir"] / "export", "--prompt", "x", "--out", o / "a.mp4"],
        ("model.safetensors", "1,099,511,627,776-byte header", "LUMIERE_LIMIT_HEADER_MIB")),
    "sample/export config with a python tag": Case(
        sample.main, lambda f, o: ["--ckpt", f["dir"] / "tagged", "--prompt", "x", "--out", o / "a.mp4"],
        ("tagged/config.yaml", "not a readable config")),
    "sample/input video declaring 16000x16000": Case(
        sample.main, lambda f, o: ["--ckpt", f["good.ckpt"], "--input-video", f["huge.gif"], "--prompt", "x",
                                   "--out", o / "a.mp4"], ("huge.gif", "declares 16000x16000", "LUMIERE_LIMIT_FRAME")),

    # lumiere-apply
    "apply/guidance nan": Case(apply.main, lambda f, o: [*I2V(f, o), "--out", o / "a.mp4", "--guidance", "nan"],
                               ("--guidance", "'nan'")),
    "apply/negative seed": Case(apply.main, lambda f, o: [*I2V(f, o), "--out", o / "a.mp4", "--seed", "-5"],
                                ("--seed", "'-5'")),
    "apply/alpha nan": Case(apply.main, lambda f, o: ["stylize", "--ckpt", f["good.ckpt"], "--style-t2i",
                                                      f["good.ckpt"], "--alpha", "nan", "--prompt", "x", "--out",
                                                      o / "a.mp4"], ("--alpha", "'nan'")),
    "apply/--out exists": Case(apply.main, lambda f, o: [*I2V(f, o), "--out", o / "a.mp4"],
                               ("a.mp4", "exists", "--overwrite"), setup=lambda f, o: old(o / "a.mp4"),
                               kept=("a.mp4",)),
    "apply/--out a folder": Case(apply.main, lambda f, o: [*I2V(f, o), "--out", o / "d.mp4", "--overwrite"],
                                 ("d.mp4", "is a folder"), setup=lambda f, o: old(o / "d.mp4" / "x"),
                                 kept=("d.mp4/x",)),
    "apply/image declaring 10000x10000": Case(
        apply.main, lambda f, o: ["i2v", "--ckpt", f["good.ckpt"], "--image", f["huge.png"], "--prompt", "x",
                                  "--out", o / "a.mp4"], ("huge.png", "declares 10000x10000", "LUMIERE_LIMIT_FRAME")),
    "apply/mask video declaring 16000x16000": Case(
        apply.main, lambda f, o: ["inpaint", "--ckpt", f["good.ckpt"], "--video", f["clip.mp4"], "--mask",
                                  f["huge.gif"], "--prompt", "x", "--out", o / "a.mp4"],
        ("huge.gif", "declares 16000x16000")),

    # lumiere-export
    "export/run name escapes": Case(export.main, lambda f, o: ["--ckpt", f["evil_name.ckpt"]],
                                    ("evil_name.ckpt", "'../../escaped'")),
    "export/over a file of another --overwrite": Case(
        export.main, lambda f, o: ["--ckpt", f["good.ckpt"], "--out", o / "w.safetensors", "--overwrite"],
        ("w.safetensors", "not an earlier export"), setup=lambda f, o: old(o / "w.safetensors"),
        kept=("w.safetensors",)),
    "export/truncated checkpoint": Case(export.main, lambda f, o: ["--ckpt", f["cut.ckpt"], "--out",
                                                                   o / "w.safetensors"], ("cut.ckpt", "truncated")),
    "export/config with NaN": Case(export.main, lambda f, o: ["--ckpt", f["nan_config.ckpt"], "--out", o / "w"],
                                   ("nan_config.ckpt", "finite")),

    # lumiere-shards
    "shards/caption not UTF-8": Case(shards_cli.main, lambda f, o: ["folder", f["dir"] / "caps", o / "s"],
                                     ("clip.txt", "not UTF-8 text (byte {caption_offset}")),
    "shards/caption table nested too deeply": Case(
        shards_cli.main, lambda f, o: ["folder", f["dir"] / "deep_caps", o / "s", "--captions", f["deep_caps.jsonl"]],
        ("deep_caps.jsonl:1", "not valid JSON")),
    "shards/fps nan": Case(shards_cli.main, lambda f, o: ["folder", f["dir"] / "caps", o / "s", "--fps", "nan"],
                           ("--fps", "'nan'")),
    "shards/workers 0": Case(shards_cli.main, lambda f, o: ["folder", f["dir"] / "caps", o / "s", "--workers", "0"],
                             ("--workers", "'0'")),
    "shards/size past the frame limit": Case(
        shards_cli.main, lambda f, o: ["synthetic", o / "s", "--size", "8000", "--frames", "1"],
        ("--size 8000", "LUMIERE_LIMIT_FRAME_PIXELS")),
    "shards/synthetic clip past the clip limit": Case(
        shards_cli.main, lambda f, o: ["synthetic", o / "s", "--size", "1024", "--frames", "4096"],
        ("--frames 4096 --size 1024", "LUMIERE_LIMIT_CLIP_MIB")),
    "shards/out of other files": Case(
        shards_cli.main, lambda f, o: ["synthetic", o, "--num", "1", "--frames", "2", "--size", "16"],
        ("holds files lumiere-shards did not write", "train-000000.tar"),
        setup=lambda f, o: old(o / "train-000000.tar"), kept=("train-000000.tar",)),
    "shards/every video declares huge frames": Case(
        shards_cli.main, lambda f, o: ["folder", f["dir"] / "gifs", o / "s", "--workers", "1", "--captions",
                                       f["dir"] / "gif_caps.csv"], ("0 samples written", "declares 16000x16000")),
    "shards/real table with a python tag": Case(
        shards_cli.main, lambda f, o: ["real", o / "s", "--table", f["table.yaml"]], ("table.yaml", "not valid YAML")),

    # lumiere-eval
    "eval/fps nan": Case(eval_cli.main, lambda f, o: ["fvd", "--real", f["dir"] / "gifs", "--fake", f["dir"] / "gifs",
                                                      "--fps", "nan"], ("--fps", "'nan'")),
    "eval/negative n": Case(eval_cli.main, lambda f, o: ["ucf101-prompts", "--n", "-1", "--out", o / "p.jsonl"],
                            ("--n", "'-1'")),
    "eval/video declaring 16000x16000": Case(
        eval_cli.main, lambda f, o: ["motion", "--videos", f["dir"] / "gifs", "--workers", "0", "--out", o / "m.json"],
        ("gifs: none of the 1 videos could be read", "declares 16000x16000")),
    "eval/tar member declaring 1 TB": Case(
        eval_cli.main, lambda f, o: ["motion", "--videos", f["dir"] / "lying", "--workers", "0", "--out",
                                     o / "m.json"], ("lying", "declares 1,000,000,000,000 bytes", "MEMBER_MIB")),
    "eval/--out a file of another": Case(
        eval_cli.main, lambda f, o: ["ucf101-prompts", "--n", "5", "--out", o / "notes.jsonl"],
        ("notes.jsonl", "not an earlier output of lumiere-eval"), setup=lambda f, o: old(o / "notes.jsonl"),
        kept=("notes.jsonl",)),
    "eval/--out a folder": Case(eval_cli.main, lambda f, o: ["ucf101-prompts", "--n", "5", "--out", o / "d"],
                                ("--out", "d: is a folder"), setup=lambda f, o: old(o / "d" / "x"), kept=("d/x",)),
    "eval/clip list not UTF-8": Case(
        eval_cli.main, lambda f, o: ["motion", "--videos", f["clips.txt"], "--workers", "0", "--out", o / "m.json"],
        ("clips.txt", "not UTF-8 text (byte {list_offset}")),
    "eval/result nested too deeply": Case(
        eval_cli.main, lambda f, o: ["compare-results", f["result.json"], f["result.json"]],
        ("result.json", "not JSON")),
}


CASES.update({
    # lumiere-sweep: grid values and variant names become folders; specs of the wrong shape; numbers
    "sweep/its folder a link out of it": Case(
        sweep_cli.main, spec("grid_escape"), ("leads to", "outside", "symbolic link"),
        setup=lambda f, o: (o.joinpath("sweeps", "s").mkdir(parents=True),
                            o.joinpath("sweeps", "s", "train").symlink_to(o.parent / "outside"))),
    "sweep/variant name escaping": Case(sweep_cli.main, spec("variant_escape"), ("'../../escaped'", "plain name")),
    "sweep/name escaping": Case(sweep_cli.main, spec("name_escape"), ("name '../../escaped'", "plain name")),
    "sweep/variants a list": Case(sweep_cli.main, spec("variants_list"), ("spec.yaml", "variants must be a mapping")),
    "sweep/grid value a mapping": Case(sweep_cli.main, spec("grid_dict"), ("train.lr",)),
    "sweep/grid value NaN": Case(sweep_cli.main, spec("grid_nan"), ("sampler.guidance", "nan", "finite")),
    "sweep/seed past 2^64": Case(sweep_cli.main, spec("seed_2_64"), ("18446744073709551617",)),
    "sweep/a billion samples": Case(sweep_cli.main, spec("huge_n"), ("sample.n=1000000000", "at most")),
    "sweep/spec not UTF-8": Case(sweep_cli.main, lambda f, o: [f["spec_binary.yaml"]],
                                 ("spec_binary.yaml", "not UTF-8 text (byte {spec_offset}")),
    "sweep/spec with a python tag": Case(sweep_cli.main, lambda f, o: [f["spec_tag.yaml"]],
                                         ("spec_tag.yaml", "not valid YAML")),
    "sweep/spec nested too deeply": Case(sweep_cli.main, lambda f, o: [f["spec_deep.yaml"]],
                                         ("spec_deep.yaml",)),
    # lumiere-evaluate (sample + eval over a run's checkpoints)
    "evaluate/--n nan": Case(evaluate.main, lambda f, o: ["--run", o, "--real", o, "--n", "nan"], ("--n", "'nan'")),
    "evaluate/run without checkpoints": Case(evaluate.main, lambda f, o: ["--run", o / "r", "--real", o],
                                            ("no checkpoints/ folder",), setup=lambda f, o: old(o / "r" / "x")),
    "sweep/--only negative": Case(sweep_cli.main, lambda f, o: [*spec("grid_nan")(f, o), "--only", "-1"],
                                  ("--only", "'-1'")),
})


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_fails_well(name, F, tmp_path, capsys):
    case = CASES[name]
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep.txt").write_text("the user's")
    case.setup(F, out)
    kept = {rel: (out / rel).read_bytes() for rel in case.kept}
    before = snapshot(F["dir"], tmp_path, skip=(out,))
    try:
        code = case.main([str(a) for a in case.argv(F, out)])
    except SystemExit as err:                                # argparse's own exit (one line: eval/command.py)
        code = err.code
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert code == case.code, err
    assert "Traceback" not in err and not any(a in err for a in UNSAFE_ADVICE), err
    assert len(lines) == 1 and lines[0].startswith("lumiere-"), err             # one line, the command named
    for text in case.names:
        assert text.format(**{k: v for k, v in F.items() if isinstance(v, int)}) in lines[0], lines[0]
    assert snapshot(F["dir"], tmp_path, skip=(out,)) == before, "something outside the output folder changed"
    assert not temporaries(tmp_path) and not temporaries(F["dir"]), "temporary file left"
    for rel, data in kept.items():
        assert (out / rel).read_bytes() == data, f"{rel} was changed"


# ---------------------------------------------------------------------------------------------------------------------
# Peak memory of the worst inputs, measured in a subprocess


PEAK = """
import atexit, runpy, sys
out, module = sys.argv[1], sys.argv[2]
def peak():                                    # VmHWM: this process's own high-water mark (ru_maxrss of a child
    with open("/proc/self/status") as f:       # forked from a large pytest worker also counts the worker's pages)
        hwm = [line.split()[1] for line in f if line.startswith("VmHWM:")][0]
    with open(out, "w") as f:
        f.write(hwm)
atexit.register(peak)
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def peak_mib(*argv, cwd: Path) -> tuple[int, str, float]:
    """(exit code, stderr, peak RSS in MiB: VmHWM at exit) of `python -m argv...`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    env.pop("LUMIERE_DEBUG", None)
    report = cwd / "peak.kib"
    proc = subprocess.run([sys.executable, "-c", PEAK, str(report), *map(str, argv)], cwd=cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    peak = int(report.read_text()) / 1024
    report.unlink()
    return proc.returncode, proc.stderr, peak


BASELINE_MIB = 700      # the interpreter with its imports: 290 MiB (lumiere-eval) and 318 MiB (lumiere-sample) here


@pytest.mark.parametrize("what", ["video declaring 16000x16000 frames", "2 KB checkpoint describing 64 GiB"])
def test_the_worst_inputs_cost_a_bounded_amount_of_memory(what, F, tmp_path):
    """Decoded, the GIF is 1 GB per frame (3 frames); built, the checkpoint's network is 64+ GiB: both are refused
    before allocating, the process staying at the size of its imports."""
    if what.startswith("video"):
        argv = ["eval.cli", "motion", "--videos", F["dir"] / "gifs", "--workers", "0", "--out", tmp_path / "m.json"]
    else:
        argv = ["lumiere_pl.cli.sample", "--ckpt", F["huge_net.ckpt"], "--prompt", "x", "--out", tmp_path / "a.mp4"]
    code, err, peak = peak_mib(*argv, cwd=tmp_path)
    assert code == 2 and len(error_lines(err)) == 1, err
    assert peak < BASELINE_MIB, f"peak RSS {peak:.0f} MiB"
    assert not any(tmp_path.iterdir())


def test_grid_values_become_folders_inside_the_sweep(F, tmp_path, capsys):
    """Grid values name folders (train/, samples/, scores/): "../../../../x", "a/b", "a_b" and ".." each get one
    folder of its own under the sweep's, none outside; lumiere-sweep --dry-run lists them and writes nothing."""
    from lumiere_research.sweep.spec import expand, load_spec

    values = ["../../../../escaped", "a/b", "a_b", "..", "/abs"]
    path = tmp_path / "spec.yaml"
    path.write_text(F["spec"].replace("@OUT@", str(tmp_path / "sweeps")) + f"grid: {{data.val_shards: {values}}}\n")
    runs = expand(load_spec(path))
    assert all(r.train_name.count("/") == 1 and r.name.count("/") == 1 for r in runs)     # NAME/seedS
    names = [r.train_name.split("/")[0] for r in runs]
    assert len(set(names)) == len(values) and all(n not in (".", "..") for n in names), names
    before = snapshot(tmp_path)
    assert sweep_cli.main([str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in names) and snapshot(tmp_path) == before
