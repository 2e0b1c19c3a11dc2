"""The Makefile's recipes: `make train DATASET=d` inflates experiments/t2i_d.yaml into stunet_d.yaml, and
`make train-ssr DATASET=d` trains ssr_d.yaml; each pair must describe one pipeline (lumiere-train would otherwise
take the T2I's U-Net and text configs over the STUNet's own, and the SSR would upscale to the wrong size)."""
from pathlib import Path

import pytest

from lumiere_pl.config import to_dict
from lumiere_pl.config import ConfigError
from lumiere_pl.config_checks import check_init, load_config

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
DATASETS = ["real", "shapes", "shapes32"]


def test_every_dataset_with_a_stunet_recipe_is_listed():
    found = {p.stem[len("t2i_"):] for p in EXP.glob("t2i_*.yaml") if (EXP / f"stunet_{p.stem[4:]}.yaml").exists()}
    assert found == set(DATASETS)


@pytest.mark.parametrize("dataset", DATASETS)
def test_stunet_inflates_its_own_t2i_and_ssr_matches_its_size(dataset):
    t2i, st, ssr = (load_config(str(EXP / f"{stage}_{dataset}.yaml")) for stage in ("t2i", "stunet", "ssr"))
    assert (t2i.model.name, st.model.name, ssr.model.name) == ("t2i", "stunet", "ssr")
    assert (t2i.name, st.name, ssr.name) == (f"t2i_{dataset}", f"stunet_{dataset}", f"ssr_{dataset}")
    assert to_dict(t2i)["model"]["unet"] == to_dict(st)["model"]["unet"]
    assert to_dict(t2i)["text"] == to_dict(st)["text"]
    assert t2i.data.name == st.data.name == ssr.data.name and t2i.data.size == st.data.size
    assert ssr.data.size == st.data.size * ssr.model.upscale                   # the SSR upscales the STUNet's clips
    check_init(ssr)             # `make train-ssr` gives no model.init_from: the SSR trains all its layers
    with pytest.raises(ConfigError, match="model.init_from is not set"):
        check_init(st)          # `make train` gives the stage-1 T2I as model.init_from


def test_the_shapes_recipe_is_the_one_that_learns():
    """DATASET=shapes is the recipe of docs/MOTION.md, section 7 (direction 100% for 3 seeds at 9000 steps)."""
    st = load_config(str(EXP / "stunet_shapes.yaml"))
    assert st.model.temporal.emb_cond and st.model.temporal.text_attn and st.model.temporal.freeze_spatial
    assert (st.data.size, st.data.frames, st.data.synthetic.start, st.train.max_steps) == (16, 8, "across", 9000)
