"""lumiere-sweep: spec validation before any training, a tiny sweep end to end (train, sample, score, table),
resumability, the job array, and the table's statistics."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lumiere_research.sweep import cli as sweep_cli
from lumiere_research.sweep.report import summary
from lumiere_research.sweep.spec import SpecError, expand, load_spec

ROOT = Path(__file__).resolve().parents[1]
TINY_STUNET = """
base: {root}/experiments/archive/shapes32/stunet.yaml
text: {{encoder: tiny, dim: 16, max_length: 8}}
model: {{unet: {{channels: 16, head_dim: 8}}}}
data: {{size: 16, frames: 8, batch_size: 2, synthetic: {{num_videos: 16, num_val_videos: 2}}}}
sampler: {{steps: 3}}
train: {{warmup_steps: 1, val_prompts: []}}
trainer: {{enable_progress_bar: false}}
"""
TINY_T2I = """
base: {root}/experiments/archive/shapes32/t2i.yaml
text: {{encoder: tiny, dim: 16, max_length: 8}}
model: {{unet: {{channels: 16, head_dim: 8}}}}
data: {{size: 16, batch_size: 4, synthetic: {{num_videos: 16, num_val_videos: 2}}}}
train: {{max_steps: 2, warmup_steps: 1, val_prompts: []}}
trainer: {{enable_progress_bar: false}}
"""


@pytest.fixture
def in_process(monkeypatch):
    """Training runs in this process instead of a child (the command line is the same; a child's start costs ~10 s of
    imports). The cascade test keeps the real children."""
    import importlib

    from lumiere_research.sweep import runner

    def run_child(cmd):
        i = cmd.index("-m")
        return importlib.import_module(cmd[i + 1]).main(cmd[i + 2:])
    monkeypatch.setattr(runner, "run_child", run_child)


def _spec(tmp_path: Path, body: str) -> Path:
    (tmp_path / "stunet.yaml").write_text(TINY_STUNET.format(root=ROOT))
    (tmp_path / "t2i.yaml").write_text(TINY_T2I.format(root=ROOT))
    path = tmp_path / "spec.yaml"
    path.write_text(body.format(tmp=tmp_path))
    return path


SPEC = """
name: tiny
out_dir: {tmp}/sweeps
pretrain: {{config: {tmp}/t2i.yaml}}
variants:
  paper: {{config: {tmp}/stunet.yaml, overrides: [model.temporal.emb_cond=true]}}
grid: {{sample.guidance: [1.0, 2.0]}}
seeds: [0, 1]
steps: [1, 2]
sample: {{n: 3, batch_size: 3}}
score: {{motion: true, fvd: false, text_swap: 2}}
"""


@pytest.mark.slow
def test_tiny_sweep_end_to_end_and_resumable(tmp_path, capsys, in_process):
    spec_path = _spec(tmp_path, SPEC)
    assert sweep_cli.main([str(spec_path), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert "4 runs" in listing                                      # 2 guidances x 2 seeds

    assert sweep_cli.main([str(spec_path)]) == 0
    root = tmp_path / "sweeps" / "tiny"
    table = json.loads((root / "table.json").read_text())
    rows = {(r["label"], r["steps"]): r for r in table["rows"]}
    assert set(rows) == {(f"paper,sample.guidance={g}", s) for g in ("1.0", "2.0") for s in (1, 2)}
    for row in rows.values():
        assert row["seeds"] == [0, 1] and len(row["direction_match"]["values"]) == 2
        assert 0.0 <= row["direction_match"]["mean"] <= 1.0 and row["swap_separated"]["n"] == 2
    # runs that differ only in sampling share their training: one training folder per (variant, seed)
    trained = sorted(p.parents[2].relative_to(root / "train").as_posix()
                     for p in (root / "train").glob("*/seed*/model/checkpoints/sweep_step0000002.ckpt"))
    assert trained == ["paper/seed0", "paper/seed1"]
    score = json.loads((root / "scores/paper__sample.guidance-2.0/seed1/step0000002.json").read_text())
    assert score["stage_steps"] == {"model": 2} and score["sample"]["guidance"] == 2.0 and score["n"] == 3
    assert len(list(Path(score["samples"]).glob("*.mp4"))) == 3
    md = (root / "table.md").read_text()
    assert "| paper,sample.guidance=1.0 | 1 | 2 |" in md
    assert "Direction match: " in md                                                   # the columns shown, defined
    assert (root / "table.png").stat().st_size > 1000
    assert table["real"]["direction_match"] == 1.0                  # the real clips: the ceiling row

    # a second run trains nothing and rescores nothing: every file stays as it was
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.suffix in (".ckpt", ".json", ".mp4")
              and "table" not in p.name}
    assert sweep_cli.main([str(spec_path)]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


CASCADE_SPEC = """
name: tiny_cascade
out_dir: {tmp}/sweeps
pretrain: {{config: {tmp}/t2i.yaml}}
variants:
  cascade:
    keyframes: {{config: {tmp}/stunet.yaml, steps_scale: 0.5,
                overrides: [data.frames=4, data.fps=4, data.synthetic.frame_step=2]}}
    tsr: {{config: {tmp}/stunet.yaml, steps_scale: 0.5,
          overrides: [model.temporal.conditional=true, "model.temporal.tasks=[keyframes]",
                      model.temporal.keyframe_stride=2]}}
seeds: [0]
steps: [2]
sample: {{n: 2, batch_size: 2}}
score: {{motion: true, fvd: false}}
"""


@pytest.mark.slow
def test_cascade_run_is_trained_sampled_and_scored_with_both_stages(tmp_path):
    """The cascade's two models train half the steps each, and its training FLOPs are both models' (per step x
    steps): the pipeline's compute, counted by the stages' own names."""
    from lumiere_pl.checkpoint import load_parts
    from lumiere_research.sweep.scoring import train_step_flops

    assert sweep_cli.main([str(_spec(tmp_path, CASCADE_SPEC))]) == 0
    root = tmp_path / "sweeps" / "tiny_cascade"
    score = json.loads((root / "scores/cascade/seed0/step0000002.json").read_text())
    assert score["stage_steps"] == {"keyframes": 1, "tsr": 1} and score["n"] == 2
    ckpts = {n: root / f"train/cascade/seed0/{n}/checkpoints/sweep_step0000001.ckpt" for n in ("keyframes", "tsr")}
    flops = sum(train_step_flops(load_parts(c)) for c in ckpts.values())
    assert score["train_tflops"] == pytest.approx(flops / 1e12)
    assert 0.0 <= score["motion"]["direction_match"] <= 1.0


def test_job_array_and_collect(tmp_path, capsys):
    spec_path = _spec(tmp_path, SPEC)
    assert sweep_cli.main([str(spec_path), "--emit-jobs", "--gpus", "8"]) == 0
    script = (tmp_path / "sweeps/tiny/jobs/array.sbatch").read_text()
    assert "#SBATCH --array=0-3" in script and "--gpus-per-node=8" in script
    assert "--only $SLURM_ARRAY_TASK_ID" in script
    commands = (tmp_path / "sweeps/tiny/jobs/commands.txt").read_text().splitlines()
    assert sum(c.endswith(f"--only {i}") for i, c in enumerate(commands)) == 4
    assert sweep_cli.main([str(spec_path), "--collect"]) == 2        # nothing finished yet: said, not a traceback
    assert "no scores" in capsys.readouterr().err


@pytest.mark.parametrize("change,message", [
    ({"variants": {}}, "'variants' is empty"),
    ({"grid": {"model.temporal.kernel": []}}, "grid.model.temporal.kernel is empty"),
    ({"seeds": []}, "'seeds' is empty"),
    ({"samples": {"n": 3}}, "samples"),                                          # unknown spec key, named
    ({"steps": [2, 1]}, "steps=[2, 1]"),
    ({"grid": {"sample.guidence": [1.0]}}, "grid.sample.guidence: unknown sample setting"),
    ({"variants": {"a": {"config": "{tmp}/stunet.yaml", "overrides": ["model.temporal.kernal=3"]}}},
     "unknown config key 'model.temporal.kernal'"),                             # every run's config, before training
    ({"variants": {"a": {"keyframes": {"config": "{tmp}/stunet.yaml"}}}}, "needs both 'keyframes' and 'tsr'"),
    ({"pretrain": None}, "model.init_from is not set"),                       # STUNets on a random T2I
])
def test_bad_specs_fail_before_training(tmp_path, capsys, change, message):
    import yaml

    change = json.loads(json.dumps(change).replace("{tmp}", str(tmp_path)))
    body = {**yaml.safe_load(SPEC.format(tmp=tmp_path).replace("{{", "{").replace("}}", "}")), **change}
    spec_path = _spec(tmp_path, yaml.safe_dump(body).replace("{", "{{").replace("}", "}}"))
    assert sweep_cli.main([str(spec_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "sweeps" / "tiny" / "pretrain").exists()    # nothing trained


def test_expand_orders_variants_grid_seeds(tmp_path):
    spec = load_spec(_spec(tmp_path, SPEC))
    runs = expand(spec)
    assert [(r.variant, r.sample_extra, r.seed) for r in runs[:4]] == [
        ("paper", ("sample.guidance=1.0",), 0), ("paper", ("sample.guidance=1.0",), 1),
        ("paper", ("sample.guidance=2.0",), 0), ("paper", ("sample.guidance=2.0",), 1)]
    assert runs[0].train_name == runs[2].train_name != runs[1].train_name
    assert runs[2].sample_settings(spec.sample).guidance == 2.0 and spec.sample.guidance is None
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.yaml")


def test_summary_is_the_t_interval():
    s = summary([1.0, 2.0, 3.0, math.nan])
    assert s["n"] == 3 and s["mean"] == 2.0 and s["std"] == pytest.approx(1.0)
    assert s["ci95"] == pytest.approx(4.302652729911275 / math.sqrt(3))    # t(0.975, 2) * std / sqrt(n)
    assert summary([5.0])["n"] == 1 and math.isnan(summary([5.0])["ci95"])


def test_a_score_answers_settings_added_to_the_schema_after_it_as_their_defaults():
    """A score written before a spec key existed counts as asked with that key's default; any real change redoes it."""
    import dataclasses

    from lumiere_research.sweep.scoring import answers
    from lumiere_research.sweep.spec import SampleSpec, ScoreSpec

    now = {"sample": dataclasses.asdict(SampleSpec(n=32)), "score": dataclasses.asdict(ScoreSpec(fvd=False))}
    old = {"sample": dict(now["sample"]), "score": {k: v for k, v in now["score"].items() if k != "x0_motion"}}
    assert answers(old, now)
    assert not answers(old, {**now, "score": {**now["score"], "x0_motion": 16}})        # asked for more: redone
    assert not answers({**old, "sample": {**old["sample"], "n": 16}}, now)
    assert not answers(None, now)


@pytest.mark.parametrize("spec", sorted(p.name for p in (ROOT / "experiments" / "sweeps").glob("*.yaml")))
def test_every_shipped_spec_passes_the_checks_made_before_training(spec, monkeypatch, capsys):
    """Each spec of docs/MOTION.md and docs/ABLATIONS.md still names configs that exist and resolve (--dry-run
    checks every run's experiment config), so a renamed config cannot silently break a documented rerun."""
    monkeypatch.chdir(ROOT)
    assert sweep_cli.main([f"experiments/sweeps/{spec}", "--dry-run"]) == 0, capsys.readouterr().err
    assert "runs; results under" in capsys.readouterr().out


WEBDATASET_SPEC = """
name: tiny_real
out_dir: {tmp}/sweeps
pretrain: {{config: {tmp}/t2i.yaml, overrides: [data.name=webdataset, "data.train_shards={tmp}/shards/train-*.tar",
                                               "data.val_shards={tmp}/shards/val-*.tar", data.epoch_length=2]}}
overrides: [data.name=webdataset, "data.train_shards={tmp}/shards/train-*.tar", "data.val_shards={tmp}/shards/val-*.tar",
            data.epoch_length=2]
variants:
  stunet: {{config: {tmp}/stunet.yaml}}
  per_frame: {{config: {tmp}/stunet.yaml, overrides: ["model.temporal.down_levels=[]"]}}
steps: [2]
sample: {{n: 3, batch_size: 3}}
score: {{fvd: false}}
"""


@pytest.mark.slow
def test_a_sweep_on_video_shards_has_the_flow_columns(tmp_path, in_process):
    """On any data set (here webdataset shards), the prompts are the held-out clips' captions, the shapes tracker is
    left out, and the table carries the flow motion figures of each run and of the held-out clips."""
    from lumiere_pl.cli import shards as shards_cli

    assert shards_cli.main(["synthetic", str(tmp_path / "shards"), "--num", "8", "--num-val", "4", "--frames", "8",
                            "--size", "16", "--fps", "8", "--per-shard", "4"]) == 0
    assert sweep_cli.main([str(_spec(tmp_path, WEBDATASET_SPEC))]) == 0
    root = tmp_path / "sweeps" / "tiny_real"
    table = json.loads((root / "table.json").read_text())
    for row in table["rows"]:
        assert row["flow_magnitude"]["n"] == 1 and row["flow_frechet"]["n"] == 1 and row["direction_match"]["n"] == 0
    captions = json.loads((root / "real_captions.json").read_text())
    score = json.loads((root / "scores/stunet/seed0/step0000002.json").read_text())
    assert score["flow"]["n"] == 3 and "motion" not in score and len(captions) >= 3
    md = (root / "table.md").read_text()
    assert "motion magnitude (diagonals/s)" in md and "flow Frechet distance" in md
    assert "Flow Frechet distance: " in md and "Direction match:" not in md           # the columns shown, defined
    assert "real clips (reference)" in md and table["real"]["flow_magnitude"] > 0
