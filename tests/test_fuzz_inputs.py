"""Property-based fuzzing (Hypothesis) of the readers of user input: config files and overrides, prompt files,
caption tables, and the safetensors, tar and checkpoint readers. Whatever the bytes, a reader returns or raises our
bad-input error (exit 2 through a command), never anything else; through a command, nothing outside its output
folder changes (the tree is snapshotted before and after).

Each property runs LUMIERE_FUZZ_EXAMPLES examples (default 25: a few seconds in all); the long run, e.g.
LUMIERE_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_inputs.py, searches much further (docs/ROBUSTNESS.md).
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eval.errors import EvalError
from lumiere_pl.config import to_dict

from _hostile import error_lines, snapshot, temporaries
from conftest import TINY

EXAMPLES = int(os.environ.get("LUMIERE_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 25, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

# ---------------------------------------------------------------------------------------------------------------------
# Strategies

KEYS = ["name", "out_dir", "model", "model.name", "model.unet", "model.unet.channels", "model.unet.channel_mults",
        "model.temporal.down_levels", "model.init_from", "data", "data.size", "data.frames", "data.fps",
        "data.limits.clip_mib", "train.lr", "train.seed", "train.betas", "sampler.guidance", "sampler.steps",
        "text.encoder", "text.dim", "trainer.devices", "base", "unknown_key", "train.val_prompts"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["nan", "inf", "-1", "../../x", "/abs", "random", "ddim"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=8)


def nested(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parts, last = key.split(".")
        for part in parts:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[last] = value
    return out


yaml_docs = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), values, max_size=6).map(lambda d: yaml.safe_dump(nested(d))),
    st.text(max_size=200),
    st.sampled_from(["!!python/object/apply:os.system [echo x]\n", "a: &x [*x]\n", "model: 3\n", "- a\n- b\n",
                     "base: self.yaml\n", "[" * 3000 + "]" * 3000 + "\n", "train: {lr: .nan}\n"]))


def _bad_input(err: BaseException) -> bool:
    return isinstance(err, (EvalError, OSError))


class Blob(bytes):
    """Bytes that Hypothesis shows by their length (a failing example prints its arguments)."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"


@pytest.fixture(scope="module")
def tiny_state():
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit import DiffusionModule

    torch.manual_seed(0)
    module = DiffusionModule(to_dict(load_config(None, TINY))).eval()
    buf = io.BytesIO()
    torch.save({"state_dict": dict(module.state_dict()), "hyper_parameters": {"config": module.export_config()}},
               buf)
    from safetensors.torch import save

    weights = save({k: v.contiguous() for k, v in list(module.net.state_dict().items())[:6]},
                   metadata={"format": "lumiere-pl"})
    return Blob(buf.getvalue()), Blob(weights)


def mutate(data: bytes, edits: list) -> bytes:
    """Apply (position fraction, new byte) edits, then possibly truncate (an edit with byte -1)."""
    out = bytearray(data)
    for frac, value in edits:
        i = min(int(frac * len(out)), len(out) - 1)
        if value < 0:
            del out[i:]
            if not out:
                break
        else:
            out[i] = value
    return bytes(out)


edits = st.lists(st.tuples(st.floats(0, 1, allow_nan=False), st.integers(-1, 255)), min_size=1, max_size=8)


# ---------------------------------------------------------------------------------------------------------------------
# Config files and overrides


@FUZZ
@given(text=yaml_docs)
def test_config_files_load_or_fail_with_a_config_error(text):
    from lumiere_pl.config_checks import load_config

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            load_config(str(path), [f"out_dir={d}/runs"])
        except Exception as err:                                                   # noqa: BLE001
            assert _bad_input(err), f"{type(err).__name__}: {err}"


@FUZZ
@given(key=st.one_of(st.sampled_from(KEYS), st.text(max_size=20)), value=st.one_of(st.text(max_size=30),
                                                                                   scalars.map(str)))
def test_overrides_parse_or_fail_with_a_config_error(key, value):
    from lumiere_pl.config_checks import load_config

    try:
        load_config(None, [f"{key}={value}"])
    except Exception as err:                                                       # noqa: BLE001
        assert _bad_input(err), f"{key}={value}: {type(err).__name__}: {err}"


@FUZZ
@given(text=yaml_docs)
def test_lumiere_train_on_any_config_exits_2_and_writes_nothing(text, tmp_path_factory):
    """Overrides point the data at shards that do not exist: every config ends with exit 2 (bad config, or the
    missing shards) before anything is built; nothing outside the output folder changes, nothing is created."""
    from lumiere_pl.cli import train

    root = tmp_path_factory.mktemp("train")
    (root / "cfg.yaml").write_bytes(text.encode("utf-8", "surrogatepass"))
    before = snapshot(root)
    code = train.main(["--config", str(root / "cfg.yaml"), f"out_dir={root}/out", "name=run",
                       "data.name=webdataset", f"data.train_shards={root}/none-{{000..001}}.tar",
                       "model.init_from=random"])
    assert code == 2
    assert snapshot(root) == before and not (root / "out").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Prompt files and caption tables

prompt_lines = st.lists(st.one_of(
    st.fixed_dictionaries({"prompt": st.text(max_size=10)}, optional={"index": st.one_of(
        st.integers(-5, 2 ** 65), st.text(max_size=4), st.none(), st.booleans(), st.floats())}).map(json.dumps),
    st.text(max_size=30), st.sampled_from(["{", "[]", "null", '{"prompt": 3}', "[" * 5000])), max_size=6)
raw_files = st.one_of(prompt_lines.map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")),
                      st.binary(max_size=300))


@FUZZ
@given(data=raw_files)
def test_prompt_files_through_lumiere_sample(data, tmp_path_factory, capsys):
    """A prompt file of any bytes, a checkpoint that is not there: exit 2 and one line, whether the prompts are bad
    (named with the line or byte offset) or good (then the checkpoint is); nothing written."""
    from lumiere_pl.cli import sample

    root = tmp_path_factory.mktemp("prompts")
    (root / "p.jsonl").write_bytes(data)
    before = snapshot(root)
    code = sample.main(["--ckpt", str(root / "none.ckpt"), "--prompts", str(root / "p.jsonl"), "--out-dir",
                        str(root / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(error_lines(err)) == 1 and "Traceback" not in err, err
    assert snapshot(root) == before and not (root / "out").exists()


@FUZZ
@given(data=raw_files, kind=st.sampled_from(["csv", "jsonl"]))
def test_caption_tables_read_or_fail_with_an_input_error(data, kind):
    from lumiere_pl.data.sources import read_caption_table

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"captions.{kind}"
        path.write_bytes(data)
        try:
            table = read_caption_table(path)
        except Exception as err:                                                   # noqa: BLE001
            assert _bad_input(err), f"{type(err).__name__}: {err}"
        else:
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in table.items())


# ---------------------------------------------------------------------------------------------------------------------
# Weights: safetensors, checkpoints


@FUZZ
@given(edit=edits)
def test_safetensors_reader(tiny_state, edit):
    from lumiere_pl.checkpoint import _read_safetensors

    data = mutate(tiny_state[1], edit)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.safetensors"
        path.write_bytes(data)
        try:
            weights = _read_safetensors(path)
        except Exception as err:                                                   # noqa: BLE001
            assert _bad_input(err), f"{type(err).__name__}: {err}"
        else:
            assert sum(v.numel() * v.element_size() for v in weights.values()) <= len(data)


@FUZZ
@given(edit=edits)
def test_checkpoint_reader(tiny_state, edit):
    """A damaged checkpoint loads (then its config is checked and its network compared with its weights before
    anything is built) or is a CheckpointError."""
    from lumiere_pl.checkpoint import check_fits, config_of, load_checkpoint, net_state

    data = mutate(tiny_state[0], edit)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.ckpt"
        path.write_bytes(data)
        try:
            ckpt = load_checkpoint(path)
            check_fits(config_of(ckpt, path), net_state(ckpt), path)
        except Exception as err:                                                   # noqa: BLE001
            assert _bad_input(err), f"{type(err).__name__}: {err}"


# ---------------------------------------------------------------------------------------------------------------------
# Tar shards


def shard_bytes() -> bytes:
    from lumiere_pl.data.video_io import encode

    import numpy as np

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(2):
            for ext, payload in (("mp4", encode(np.full((4, 16, 16, 3), 40 * i, np.uint8), 8)),
                                 ("txt", f"caption {i}".encode()), ("json", b'{"fps": 8, "frames": 4}')):
                info = tarfile.TarInfo(f"k{i}.{ext}")
                info.size, info.mtime, info.mode = len(payload), 0, 0o644
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


SHARD = shard_bytes()


@FUZZ
@given(edit=edits)
def test_tar_readers_keep_going(edit):
    """A damaged shard: the training reader yields the complete samples and counts the rest; lumiere-eval's reader
    yields each video member or an unreadable item naming where the shard broke. No exception escapes either."""
    from eval.video_io import Unreadable, iter_items
    from lumiere_pl.data.health import SkipCounter
    from lumiere_pl.data.tar_reader import iter_shard

    data = mutate(SHARD, edit)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "train-000000.tar"
        path.write_bytes(data)
        samples = list(iter_shard(str(path), SkipCounter()))
        assert all("__key__" in s for s in samples) and len(samples) <= 2
        for _, key, src, _ in iter_items(path):
            assert isinstance(src, (bytes, Unreadable)), key
        assert not temporaries(Path(d))


# ---------------------------------------------------------------------------------------------------------------------
# Sweep specs

SPEC_KEYS = ["name", "out_dir", "variants", "variants.a", "variants.a.config", "variants.a.overrides",
             "variants.a.steps_scale", "variants.b.keyframes", "grid", "grid.sampler.guidance", "grid.data.val_shards",
             "seeds", "steps", "sample", "sample.n", "sample.guidance", "score.n_real", "pretrain", "init_from",
             "overrides", "bogus"]


@FUZZ
@given(spec=st.dictionaries(st.sampled_from(SPEC_KEYS), values, max_size=7))
def test_lumiere_sweep_dry_run_on_any_spec_writes_nothing(spec, tmp_path_factory, capsys):
    """Any spec (sections of any shape, grid values that are paths, numbers out of range): --dry-run exits 0 or 2
    with one line, and nothing is written anywhere (the variants' configs need not exist: the check names them)."""
    from lumiere_research.sweep import cli

    root = tmp_path_factory.mktemp("sweep")
    doc = nested(spec)
    doc.setdefault("out_dir", str(root / "sweeps"))
    (root / "spec.yaml").write_text(yaml.safe_dump(doc))
    before = snapshot(root)
    try:
        code = cli.main([str(root / "spec.yaml"), "--dry-run"])
    except SystemExit as err:
        code = err.code
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err and len(error_lines(err)) == (code == 2), err
    assert snapshot(root) == before
