"""Applications: stylization by spatial weight interpolation; conditional sampling builds <C, M> correctly."""
from __future__ import annotations

import pytest
import torch

from lumiere_pl.applications import cinemagraph, image_to_video, stylize_
from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config
from lumiere_pl.lit import DiffusionModule


def _module(tiny_overrides, conditional):
    cfg = load_config(None, tiny_overrides + [f"model.temporal.conditional={str(conditional).lower()}",
                                              "sampler.steps=2"])
    return DiffusionModule(to_dict(cfg)).eval()


def test_stylize_interpolates_spatial_weights_only(tiny_overrides):
    m = _module(tiny_overrides, False)
    orig = {k: v.clone() for k, v in m.net.t2i.state_dict().items()}
    temporal = {k: v.clone() for k, v in m.net.temporal.state_dict().items()}
    style = {k: v + 1.0 for k, v in orig.items()}
    stylize_(m.net, style, 0.25)
    for k, v in m.net.t2i.state_dict().items():
        torch.testing.assert_close(v, orig[k] + 0.25)
    for k, v in m.net.temporal.state_dict().items():
        assert torch.equal(v, temporal[k])
    stylize_(m.net, orig, 1.0)                                               # alpha 1: exactly the given weights
    assert all(torch.equal(v, orig[k]) for k, v in m.net.t2i.state_dict().items())
    with pytest.raises(KeyError, match="lack"):
        stylize_(m.net, {}, 0.5)


def test_conditional_applications_pass_the_mask(tiny_overrides, monkeypatch):
    m = _module(tiny_overrides, True)
    seen = {}
    real = m.net.forward

    def spy(x, c, cond):
        seen.update(cond)
        return real(x, c, cond)
    monkeypatch.setattr(m.net, "forward", spy)
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    out = image_to_video(m.pipeline(), image, ["a red circle"], frames=8, guidance=1.0).videos
    assert out.shape == (1, 3, 8, 16, 16)
    assert seen["cond_mask"][0, 0, :, 0, 0].tolist() == [1.0] + [0.0] * 7
    torch.testing.assert_close(seen["cond_video"][0, :, 0], image[0])
    region = torch.zeros(1, 1, 16, 16)
    region[..., :8, :] = 1.0                                                 # animate the top half
    cinemagraph(m.pipeline(), image, region, ["water"], frames=8, guidance=1.0)
    assert seen["cond_mask"][0, 0, 3, :8].eq(0).all() and seen["cond_mask"][0, 0, 3, 8:].eq(1).all()


def test_unconditional_model_refuses_conditional_applications(tiny_overrides):
    m = _module(tiny_overrides, False)
    with pytest.raises(ValueError, match="conditional=true"):
        image_to_video(m.pipeline(), torch.zeros(1, 3, 16, 16), ["x"], frames=8)
