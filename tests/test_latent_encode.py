"""lumiere-shards encode (lumiere_pl/cli/encode.py, lumiere_pl/data/encode.py): one encoded shard per pixel shard,
each sample keeping its key, holding the VAE posterior of the clip's fixed view and its caption's token states under
the cache key; resumable without re-encoding finished shards; 2 processes (torchrun) write the same bytes as one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest
import torch
from safetensors.torch import load

from lumiere_pl.cli import shards as shards_cli
from lumiere_pl.data.encoded import ENCODED_MEMBER, safetensors_metadata

from _latent_helpers import encode_args, make_pipeline_and_shards
from _resume_helpers import ENV, ROOT


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    made = make_pipeline_and_shards(root)
    assert shards_cli.main(encode_args(made["sd"], made["src"], root / "enc")) == 0
    return {**made, "enc": root / "enc", "root": root}


def members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_encoded_shards_hold_the_posterior_and_the_text_states_of_each_sample(encoded, single_thread):
    """Output shard i for input shard i, same keys and captions; mean / logvar equal the VAE posterior of the clip's
    validation view, text / text_mask the CLIP states of its caption; every sample carries the manifest's key."""
    from lumiere_pl.config import TextConfig
    from lumiere_pl.data.config import DataConfig
    from lumiere_pl.data.health import SkipCounter
    from lumiere_pl.data.sample_decode import decode_sample
    from lumiere_pl.data.tar_reader import iter_shard
    from lumiere_pl.models.diffusers_folder import load_vae
    from lumiere_pl.models.latent import LatentCodec
    from lumiere_pl.text import build_text_encoder

    src, enc = encoded["src"], encoded["enc"]
    man = json.loads((enc / "manifest.json").read_text())
    names = ["train-000000.tar", "train-000001.tar", "val-000000.tar"]
    assert [s["file"] for s in man["shards"]] == names and [s["samples"] for s in man["shards"]] == [4, 4, 2]
    key = man["encoded"]["key"]
    assert len(key) == 16 and man["encoded"]["storage_dtype"] == "float32" and man["settings"] == {"command": "encode"}
    assert man["encoded"]["parts"]["preprocessing"] == {"size": 16, "frames": 8, "fps": 8.0, "start": "centre",
                                                        "crop": "centre"}
    codec = LatentCodec(load_vae(str(encoded["sd"] / "vae")), chunk=8)
    clip = build_text_encoder(TextConfig(encoder="clip", path=str(encoded["sd"]), max_length=8, cache_mib=0))
    cfg, skips = DataConfig(name="webdataset", size=16, frames=8, fps=8.0), SkipCounter()
    for name in names:
        out = members(enc / name)
        raws = list(iter_shard(str(src / name)))
        assert sorted(out) == sorted(f"{r['__key__']}.{ext}" for r in raws for ext in (ENCODED_MEMBER, "txt", "json"))
        for raw in raws:
            data = out[f"{raw['__key__']}.{ENCODED_MEMBER}"]
            assert safetensors_metadata(data) == {"key": key}
            stored = load(data)
            ex = decode_sample(raw, cfg, None, skips)
            mean, logvar = codec.posterior(ex["pixels"][None])
            torch.testing.assert_close(stored["mean"], mean[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(stored["logvar"], logvar[0], atol=1e-5, rtol=1e-5)
            states, mask = clip([ex["caption"]])
            torch.testing.assert_close(stored["text"], states[0], atol=1e-5, rtol=1e-5)
            assert torch.equal(stored["text_mask"], mask[0])
            assert out[f"{raw['__key__']}.txt"] == raw["txt"] and out[f"{raw['__key__']}.json"] == raw["json"]
    assert skips.total == 0


def test_encode_resumes_without_encoding_finished_shards_again(encoded, tmp_path, monkeypatch, single_thread):
    """Interrupted after its first shard (Ctrl-C), encode leaves that shard whole, no temporary file and no manifest;
    the rerun encodes the other two only and the result equals an uninterrupted run's, byte for byte."""
    from lumiere_pl.data import encode as encode_mod

    real, calls, stop = encode_mod.encode_shard, [], ["train-000001.tar"]

    def interrupted(job, *args, **kw):
        calls.append(job.out.name)
        if job.out.name in stop:
            stop.clear()
            raise KeyboardInterrupt                              # in the middle of the second shard
        return real(job, *args, **kw)
    monkeypatch.setattr(encode_mod, "encode_shard", interrupted)
    out = tmp_path / "enc"
    assert shards_cli.main(encode_args(encoded["sd"], encoded["src"], out)) == 130
    assert sorted(p.name for p in out.iterdir()) == ["train-000000.tar"]          # whole shards only, no manifest
    first = (out / "train-000000.tar").stat().st_mtime_ns
    calls.clear()
    assert shards_cli.main(encode_args(encoded["sd"], encoded["src"], out)) == 0
    assert calls == ["train-000001.tar", "val-000000.tar"]
    assert (out / "train-000000.tar").stat().st_mtime_ns == first
    for name in ("train-000000.tar", "train-000001.tar", "val-000000.tar", "prompts.safetensors"):
        assert (out / name).read_bytes() == (encoded["enc"] / name).read_bytes(), name
    calls.clear()
    assert shards_cli.main(encode_args(encoded["sd"], encoded["src"], out)) == 0 and calls == []   # all complete


def test_encode_refuses_what_it_would_overwrite_or_cannot_encode(encoded, tmp_path, capsys):
    """Another encoding's folder, another kind of shards, the input folder, no shards: one line, exit 2, nothing
    written."""
    sd, src = encoded["sd"], encoded["src"]
    rc = shards_cli.main(encode_args(sd, src, encoded["enc"], "data.size=32"))             # another key
    err = capsys.readouterr().err
    assert rc == 2 and "holds shards encoded with key" in err and "this config gives" in err
    rc = shards_cli.main(encode_args(sd, src, src))                                        # the input folder
    assert rc == 2 and f"--out {src} holds the input shards" in capsys.readouterr().err
    (tmp_path / "pixels").mkdir()
    (tmp_path / "pixels" / "manifest.json").write_text(json.dumps({"shards": []}))           # other shards
    rc = shards_cli.main(encode_args(sd, src, tmp_path / "pixels"))
    assert rc == 2 and "holds other shards" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "pixels").iterdir()) == ["manifest.json"]
    rc = shards_cli.main(encode_args(sd, src, tmp_path / "x", "data.name=synthetic"))
    assert rc == 2 and "data.name=synthetic: encode reads webdataset shards" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.xdist_group("two_processes")
def test_two_processes_write_the_bytes_one_process_writes(encoded, tmp_path):
    """torchrun with 2 processes: each encodes every second shard, rank 0 writes the manifest; every shard and the
    prompts file equal the 1-process run's byte for byte, the manifest too but for its date."""
    out = tmp_path / "enc2"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "lumiere_pl.cli.shards", *encode_args(encoded["sd"], encoded["src"], out)]
    run = subprocess.run(cmd, cwd=ROOT, env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert run.stdout.count("encoded 10 samples in 3 shards") == 1                      # rank 0 reports
    for name in ("train-000000.tar", "train-000001.tar", "val-000000.tar", "prompts.safetensors"):
        assert (out / name).read_bytes() == (encoded["enc"] / name).read_bytes(), name
    one, two = (json.loads((d / "manifest.json").read_text()) for d in (encoded["enc"], out))
    one.pop("created"), two.pop("created")
    assert one == two and sorted(os.listdir(out)) == sorted(os.listdir(encoded["enc"]))
