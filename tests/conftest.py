"""Shared fixtures: tiny configs that build in milliseconds on a CPU."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One intra-op thread per test process (and the processes tests start): the models are tiny, so threads buy little,
# and `make test` runs one pytest worker per core (pytest-xdist), which more threads would only oversubscribe.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY = [
    "text.encoder=tiny", "text.dim=16", "text.max_length=8",
    "model.unet.channels=16", "model.unet.channel_mults=[1,2,2]", "model.unet.attn_levels=[2]",
    "model.unet.head_dim=8", "data.size=16", "data.frames=8", "data.batch_size=4",
    "data.synthetic.num_videos=32", "data.synthetic.num_val_videos=4",
    "model.init_from=random",       # a STUNet on a random T2I, asked for (lumiere-train refuses it unset)
]


@pytest.fixture
def tiny_overrides(tmp_path):
    """Overrides for a tiny STUNet experiment writing into tmp_path."""
    return TINY + [f"out_dir={tmp_path}"]


@pytest.fixture
def single_thread():
    """One intra-op thread: on a shared 2-core CPU, tiny models train several times faster."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_sample_ckpt(tmp_path):
    """A random 16 px STUNet checkpoint (the SSR tiny widths, MiniLM captions) for lumiere-sample tests."""
    from pathlib import Path

    import torch

    from lumiere_pl.config import to_dict
    from lumiere_pl.config_checks import load_config
    from lumiere_pl.lit import DiffusionModule

    torch.manual_seed(0)
    cfg = load_config(str(Path(__file__).resolve().parents[1] / "experiments" / "tiny" / "ssr.yaml"),
                      ["name=base_tiny", "model.name=stunet", "model.unet.aug_embedding=false", "data.size=16"])
    module = DiffusionModule(to_dict(cfg))
    ckpt = tmp_path / "base.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": module.export_config()}}, ckpt)
    return ckpt
