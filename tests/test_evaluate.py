"""lumiere-evaluate: a run's checkpoints sampled and scored against held-out real clips, figures over steps."""
from __future__ import annotations

import json

import pytest
import torch

from lumiere_pl.cli import evaluate
from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.cli import shards as shards_cli
from lumiere_pl.lit import DiffusionModule

from conftest import TINY


@pytest.mark.slow
def test_every_checkpoint_is_scored_and_plotted(tmp_path, capsys):
    shards = tmp_path / "shards"
    assert shards_cli.main(["synthetic", str(shards), "--num", "4", "--num-val", "3", "--frames", "16", "--size",
                            "16", "--fps", "8", "--per-shard", "4"]) == 0
    run = tmp_path / "run"
    cfg = load_config(None, TINY + [f"out_dir={tmp_path}", "name=run", "data.frames=16", "sampler.steps=2"])
    for step in (3, 7):                                        # two checkpoints, as lumiere-train writes them
        torch.manual_seed(step)
        module = DiffusionModule(to_dict(cfg))
        path = run / "checkpoints" / (f"step={step:07d}.ckpt" if step == 3 else "last.ckpt")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": module.export_config()},
                    "global_step": step}, path)
    val = str(shards / "val-*.tar")
    assert evaluate.main(["--run", str(run), "--real", val, "--n", "3", "--frames", "16"]) == 0
    out = run / "eval"
    table = json.loads((out / "figures.json").read_text())
    for key in ("fvd", "is", "magnitude", "warping_error", "flicker", "flow_frechet"):
        assert [r["step"] for r in table[key]] == [3, 7], key
    assert all(r["low"] <= r["value"] <= r["high"] for r in table["fvd"])
    prompts = [json.loads(x)["prompt"] for x in (out / "prompts.jsonl").read_text().splitlines()]
    assert len(prompts) == 3 and all("moving" in p for p in prompts)           # the held-out clips' captions
    assert sorted(p.name for p in (out / "step_0000007" / "videos").glob("*.mp4")) == [
        "000000.mp4", "000001.mp4", "000002.mp4"]
    assert (out / "figures.png").stat().st_size > 1000
    report = capsys.readouterr().out
    assert "| 3 |" in report and "| 7 |" in report
    stamp = (out / "step_0000003" / "fvd.json").stat().st_mtime_ns
    assert evaluate.main(["--run", str(run), "--real", val, "--n", "3", "--frames", "16"]) == 0   # resumed: kept
    assert (out / "step_0000003" / "fvd.json").stat().st_mtime_ns == stamp
    capsys.readouterr()
    train = str(shards / "train-*.tar")                           # other real clips: the scores are redone, said so
    assert evaluate.main(["--run", str(run), "--real", train, "--prompts", str(out / "prompts.jsonl"), "--n", "3",
                          "--frames", "16", "--last"]) == 0
    said = capsys.readouterr().out
    assert "were computed for other inputs (real " in said and "; scoring again" in said
    motion = json.loads((out / "step_0000007" / "motion.json").read_text())
    assert motion["sets"]["real"]["n"] == 4 and (out / "step_0000003" / "fvd.json").stat().st_mtime_ns == stamp
    assert evaluate.main(["--run", str(tmp_path / "none"), "--real", val]) == 2
