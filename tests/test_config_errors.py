"""Config errors fail before any model is built or data is read, with a message naming the key, the value and what
is expected (and a close match for a misspelt key)."""
from __future__ import annotations

import tarfile

import pytest

import lumiere_pl.data
import lumiere_pl.lit
from lumiere_pl.cli import train as train_cli
from lumiere_pl.config import ConfigError
from lumiere_pl.config_checks import check_files, check_init, load_config

from _resume_helpers import ROOT


def _error(overrides, path=None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    return str(err.value)


def test_unknown_key_names_close_matches(tmp_path):
    msg = _error(["train.max_step=10"])
    assert "unknown config key 'train.max_step'" in msg and "did you mean 'train.max_steps'" in msg
    yaml = tmp_path / "exp.yaml"
    yaml.write_text("model:\n  unet:\n    chanels: 16\n")
    msg = _error([], str(yaml))
    assert str(yaml) in msg and "'model.unet.chanels'" in msg and "did you mean 'model.unet.channels'" in msg


def test_wrong_type_names_key_value_and_type(tmp_path):
    msg = _error(["data.batch_size=1.5"])
    assert "'data.batch_size'" in msg and "expected int or str" in msg and "'1.5'" in msg
    msg = _error(["model.unet.channel_mults=abc"])
    assert "'model.unet.channel_mults'" in msg and "expected List[int]" in msg
    yaml = tmp_path / "exp.yaml"
    yaml.write_text("train:\n  lr: fast\n")
    msg = _error([], str(yaml))
    assert "'train.lr'" in msg and "expected float" in msg and "'fast'" in msg
    msg = _error(["train.max_steps=5", "data.batch_size=1.5", "train.lr=0.1"])     # merged at once: still named
    assert msg.startswith("override 'data.batch_size=1.5': bad value for 'data.batch_size' (expected int or str)")
    msg = _error(["trainer.devices=[0"])
    assert "override 'trainer.devices=[0'" in msg and "not valid YAML" in msg


def test_impossible_shapes():
    msg = _error(["model.name=stunet", "data.frames=6", "model.temporal.down_levels=[0,1]"])
    assert "data.frames=6" in msg and "divisible by 4" in msg and "model.temporal.down_levels=[0, 1]" in msg
    msg = _error(["data.size=18", "model.unet.channel_mults=[1,2,2]"])
    assert "data.size=18" in msg and "divisible by 4" in msg and "model.unet.channel_mults=[1, 2, 2]" in msg
    msg = _error(["model.temporal.down_levels=[2]"])
    assert "model.temporal.down_levels=[2]" in msg and "coarsest" in msg
    msg = _error(["train.max_bad_steps=0"])
    assert "train.max_bad_steps=0" in msg and ">= 1" in msg
    msg = _error(["model.name=stunet", "data.frames=16", "sampler.window=6", "sampler.stride=4"])
    assert "sampler.window=6" in msg and "multiple of 4" in msg


def test_missing_files(tmp_path):
    msg = _error([f"model.init_from={tmp_path / 'nope.ckpt'}"])
    assert f"model.init_from='{tmp_path / 'nope.ckpt'}'" in msg and "no such checkpoint file" in msg
    msg = _error(["data.name=webdataset"])
    assert "data.train_shards=None" in msg and "needs a shard path" in msg

    for i in range(2):                                            # two real shards: the pattern passes
        with tarfile.open(tmp_path / f"train-{i:06d}.tar", "w"):
            pass
    good = f"{tmp_path}/train-{{000000..000001}}.tar"
    check_files(load_config(None, ["data.name=webdataset", f"data.train_shards={good}"]))
    check_files(load_config(None, ["data.name=webdataset", "data.train_shards=https://example.org/a-{0..3}.tar",
                                   "data.val_shards=pipe:cat x.tar"]))           # URLs and commands: not checked
    bad = f"{tmp_path}/train-{{000000..000003}}.tar"
    with pytest.raises(ConfigError) as err:
        check_files(load_config(None, ["data.name=webdataset", f"data.train_shards={good}", f"data.val_shards={bad}"]))
    msg = str(err.value)
    assert f"data.val_shards='{bad}'" in msg and "2 of 4 shards do not exist" in msg
    assert f"{tmp_path}/train-000002.tar" in msg
    with pytest.raises(ConfigError, match="text.path='/no/such/model'"):
        check_files(load_config(None, ["text.path=/no/such/model"]))


def test_cli_fails_before_building_anything(tmp_path, monkeypatch, capsys):
    def forbidden(*args, **kwargs):
        raise AssertionError("built a model or a datamodule despite a bad config")

    monkeypatch.setattr(lumiere_pl.lit, "DiffusionModule", forbidden)
    monkeypatch.setattr(lumiere_pl.data, "build_datamodule", forbidden)
    base = [f"out_dir={tmp_path}", "text.encoder=tiny", "model.init_from=random"]
    cases = {
        "train.max_stpes=3": "did you mean 'train.max_steps'",
        "data.frames=10": "data.frames=10",
        "data.size=30": "data.size=30",
        "data.name=webdataset data.train_shards=/no/shards-{0..1}.tar": "data.train_shards='/no/shards-{0..1}.tar'",
    }
    for over, expected in cases.items():
        assert train_cli.main(base + over.split()) == 2, over
        assert expected in capsys.readouterr().err, over
    assert not any(tmp_path.iterdir())                             # no run folder, no config.yaml


def test_a_stunet_without_init_from_is_refused_unless_random(tmp_path, monkeypatch, capsys):
    """lumiere-train refuses a STUNet without model.init_from (it would train on a random, frozen T2I), in one line
    that says what to give, before building anything; so for an SSR whose spatial layers stay frozen. An SSR that
    trains everything (the SSR configs) and model.init_from=random pass; a diffusers_stunet needs a folder."""
    def forbidden(*args, **kwargs):
        raise AssertionError("built a model or a datamodule without model.init_from")

    monkeypatch.setattr(lumiere_pl.lit, "DiffusionModule", forbidden)
    monkeypatch.setattr(lumiere_pl.data, "build_datamodule", forbidden)
    for over in (["model.name=stunet"], ["model.name=stunet", "model.temporal.freeze_spatial=false"],
                 ["model.name=ssr", "model.upscale=2", "model.temporal.freeze_spatial=true"]):
        assert train_cli.main([f"out_dir={tmp_path}", "text.encoder=tiny", *over]) == 2, over
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "model.init_from is not set" in err, err
        assert "model.init_from=random" in err and "checkpoints/last.ckpt" in err, err
    assert not any(tmp_path.iterdir())
    check_init(load_config(None, ["model.name=stunet", "model.init_from=random"]))
    check_init(load_config(None, ["model.name=ssr", "model.upscale=2", "model.temporal.freeze_spatial=false"]))
    check_init(load_config(None, ["model.name=t2i", "data.images=true"]))
    for value in ("null", "random"):
        msg = _error(["model.name=diffusers_stunet", f"model.init_from={value}"])
        assert "model.name=diffusers_stunet needs model.init_from" in msg and "diffusers" in msg


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "experiments").rglob("*.yaml")
                                        if "sweeps" not in p.parts))
def test_to_dict_is_omegaconfs_plain_container_and_from_dict_inverts_it(path):
    """to_dict (dataclasses.asdict) gives OmegaConf's resolved container, value and type for value, for every shipped
    experiment; from_dict rebuilds the same config from it."""
    from omegaconf import OmegaConf

    from lumiere_pl.config import from_dict, read_config, to_dict

    cfg = read_config(str(ROOT / path))
    want = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    assert repr(to_dict(cfg)) == repr(want)
    assert from_dict(to_dict(cfg)) == cfg
