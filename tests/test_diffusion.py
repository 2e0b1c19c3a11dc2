"""Diffusion math: conversions, preconditioning, samplers, guidance, schedules."""
from __future__ import annotations

import math

import pytest
import torch

from lumiere_pl.diffusion import (Denoiser, alpha_sigma, diffusion_loss, get_sigmas, guided, make_schedule,
                                  sample_ddim, sample_ddpm, target, to_x0)
from lumiere_pl.diffusion.process import c_noise


@pytest.mark.parametrize("prediction", ["v", "eps", "x0"])
@pytest.mark.parametrize("shape", [(3, 2, 8, 8), (3, 2, 4, 8, 8)])
def test_prediction_round_trip(prediction, shape):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    logsnr = torch.tensor([-5.0, 0.0, 7.0]).view(-1, *[1] * (len(shape) - 1))
    alpha, sigma = alpha_sigma(logsnr)
    z = alpha * x0 + sigma * eps
    out = target(x0, eps, alpha, sigma, prediction)
    torch.testing.assert_close(to_x0(out, z, alpha, sigma, prediction), x0, atol=1e-4, rtol=1e-4)


def test_v_relations():
    """v = alpha eps - sigma x0 implies eps = sigma z + alpha v and x0 = alpha z - sigma v."""
    x0, eps = torch.randn(4, 5), torch.randn(4, 5)
    alpha, sigma = alpha_sigma(torch.tensor(1.3))
    z = alpha * x0 + sigma * eps
    v = target(x0, eps, alpha, sigma, "v")
    torch.testing.assert_close(sigma * z + alpha * v, eps)
    assert alpha ** 2 + sigma ** 2 == pytest.approx(1.0)


def test_cosine_schedule_matches_alpha_bar():
    """alpha_bar(t) = cos^2(pi t / 2) inside the clipped range; monotone decreasing log-SNR."""
    logsnr = make_schedule("cosine", -30.0, 30.0)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    alpha, _ = alpha_sigma(logsnr(t))
    torch.testing.assert_close(alpha ** 2, torch.cos(math.pi * t / 2) ** 2, atol=1e-6, rtol=1e-6)
    assert (logsnr(t).diff() < 0).all()


def test_resolution_shift():
    base = make_schedule("cosine", -15, 15)
    shifted = make_schedule("cosine", -15, 15, size=128, shift_base=64)
    t = torch.rand(10)
    torch.testing.assert_close(shifted(t) - base(t), torch.full_like(t, 2 * math.log(64 / 128)))
    assert make_schedule("cosine", -15, 15, size=128, shift_base=0)(t).equal(base(t))


def test_get_sigmas_decreasing_to_zero():
    s = get_sigmas(make_schedule("cosine", -15, 15), 10)
    assert s.shape == (11,) and s[-1] == 0 and (s.diff() < 0).all()
    assert s[0] == pytest.approx(math.exp(7.5), rel=1e-3)


class ConstNet(torch.nn.Module):
    """A 'network' whose output is whatever makes the Denoiser return the true x0: a perfect denoiser."""

    def __init__(self, x0, prediction):
        super().__init__()
        self.x0, self.prediction = x0, prediction

    def forward(self, z, c, cond):
        logsnr = -2 * torch.log(torch.tan(c * math.pi / 2000))
        alpha, sigma = (a.view(-1, *[1] * (z.ndim - 1)) for a in alpha_sigma(logsnr))
        eps = (z - alpha * self.x0) / sigma
        return target(self.x0, eps, alpha, sigma, self.prediction)


@pytest.mark.parametrize("prediction", ["v", "eps", "x0"])
def test_perfect_denoiser_keeps_ddim_on_the_straight_line_to_x0(prediction):
    """With D(x, s) = x0 exactly, DDIM's update x' = x0 + (x - x0) s'/s keeps x = x0 + s * eps_T at every level:
    stopped at any s_k > 0 the sample is exactly that point (the final step's x = D(x) would hide a wrong update), and
    DDPM (eta = 1) lands at the same distance on average but off the line (fresh noise of std s_k)."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(4, 3, 4, 16, 16, generator=g, dtype=torch.float64) * 2 - 1
    sigmas = get_sigmas(make_schedule("cosine", -15, 15), 20).double()
    denoise = Denoiser(ConstNet(x0, prediction), prediction)
    x = torch.randn(x0.shape, generator=g, dtype=torch.float64) * sigmas[0]
    for k in (5, 12, 19):
        part = torch.cat([sigmas[:k], sigmas[k:k + 1]])                       # stop at s_k > 0
        out = sample_ddim(denoise, x.clone(), part, {})
        torch.testing.assert_close(out, x0 + (x - x0) * (sigmas[k] / sigmas[0]), atol=2e-4, rtol=1e-4)
        noisy = sample_ddpm(denoise, x.clone(), part, {}, generator=torch.Generator().manual_seed(k))
        assert abs(float((noisy - x0).std()) / float(sigmas[k]) - 1) < 0.05
        assert float((noisy - out).abs().mean()) > 0.1 * float(sigmas[k])
    torch.testing.assert_close(sample_ddim(denoise, x.clone(), sigmas, {}).double(), x0, atol=1e-6, rtol=0)


def test_ddpm_is_ddim_with_eta_one():
    """sample_ddpm takes the full posterior noise whatever eta it is given (its eta is DDPM's, 1); the pipeline
    refuses any other eta with sampler ddpm (lumiere_pl.pipeline.check_options)."""
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 10
    sigmas = get_sigmas(make_schedule("cosine", -10, 10), 6)
    d = Denoiser(lambda z, c, cond: 0.5 * z, "eps")
    gens = lambda: [torch.Generator().manual_seed(k) for k in (3, 4)]  # noqa: E731
    want = sample_ddim(d, x, sigmas, {}, eta=1.0, generator=gens())
    for eta in (0.0, 1.0):
        torch.testing.assert_close(sample_ddpm(d, x, sigmas, {}, eta=eta, generator=gens()), want, atol=0, rtol=0)
    assert not torch.allclose(sample_ddim(d, x, sigmas, {}, eta=0.5, generator=gens()), want)


def test_ddim_deterministic_and_ddpm_stochastic():
    """DDIM (eta 0) is a deterministic map of the initial noise; DDPM draws fresh noise at every step."""
    net = lambda z, c, cond: 0.5 * z  # noqa: E731
    d = Denoiser(net, "eps")
    sigmas = get_sigmas(make_schedule("cosine", -10, 10), 8)
    x = torch.randn(2, 3, 8, 8) * sigmas[0]
    a = sample_ddim(d, x, sigmas, {})
    assert torch.equal(a, sample_ddim(d, x, sigmas, {}))
    b1 = sample_ddpm(d, x, sigmas, {}, generator=torch.Generator().manual_seed(0))
    b2 = sample_ddpm(d, x, sigmas, {}, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(b1, b2)


def test_preconditioning_is_identity_at_zero_noise():
    """c_skip -> 1 and c_out -> 0 as s -> 0: D(x, s) -> x whatever the network outputs (v-prediction)."""
    out = torch.randn(2, 3, 4, 8, 8) * 10
    d = Denoiser(lambda z, c, cond: out, "v")
    x = torch.randn(2, 3, 4, 8, 8)
    for s in (1e-2, 1e-4, 1e-6):   # |D - x| <= s |F| + s^2 |x|
        err = (d(x, torch.full((2,), s), {}) - x).abs().max().item()
        assert err <= s * out.abs().max().item() + s * s * x.abs().max().item() + 1e-6


def test_c_noise_monotone_in_noise():
    ls = torch.linspace(15, -15, 50)
    c = c_noise(ls)
    assert (c.diff() > 0).all() and 0 < c.min() and c.max() < 1000


def _cond(b):
    g = torch.Generator().manual_seed(0)
    return {"text": torch.randn(b, 4, 6, generator=g), "text_mask": torch.ones(b, 4, dtype=torch.bool),
            "null_text": torch.zeros(b, 4, 6), "null_text_mask": torch.ones(b, 4, dtype=torch.bool),
            "concat": torch.randn(b, 1, 3, 4, 4, generator=g)}


def _text_net(x, s, cond):
    """Depends on the text and on every channel of x."""
    return x * 0.3 + cond["text"].mean(dim=(1, 2)).view(-1, 1, 1, 1, 1) + cond["concat"].mean()


def test_guidance_scale_one_is_the_conditional_denoiser_alone():
    """At w = 1 the guided denoiser is the conditional one: one call per step, with the caption (never the null
    text), and the same prediction; near w = 1 the general formula agrees with it."""
    x, s, cond = torch.randn(2, 3, 3, 4, 4), torch.ones(2), _cond(2)
    seen = []

    def spy(x_, s_, c):
        seen.append(c["text"])
        return _text_net(x_, s_, c)
    out = guided(spy, 1.0)(x, s, cond)
    assert len(seen) == 1 and torch.equal(seen[0], cond["text"])
    torch.testing.assert_close(out, _text_net(x, s, cond), atol=0, rtol=0)
    torch.testing.assert_close(guided(_text_net, 1.0 + 1e-6)(x, s, cond), out, atol=1e-5, rtol=0)
    assert not torch.allclose(guided(_text_net, 2.0)(x, s, cond), out)


def test_guidance_extrapolates_every_channel():
    x, s, cond = torch.randn(2, 3, 3, 4, 4), torch.ones(2), _cond(2)
    w = 4.0
    c = _text_net(x, s, cond)
    u = _text_net(x, s, {**cond, "text": cond["null_text"]})
    out = guided(_text_net, w)(x, s, cond)
    torch.testing.assert_close(out, u + w * (c - u))
    assert ((out - c).abs().amax(dim=(0, 2, 3, 4)) > 0).all()   # all channels moved, not only the first few


def test_loss_is_zero_for_perfect_network_and_positive_otherwise():
    x0 = torch.rand(3, 3, 4, 8, 8) * 2 - 1
    logsnr = make_schedule("cosine", -15, 15)
    assert diffusion_loss(ConstNet(x0, "v"), x0, {}, logsnr, "v").item() < 1e-8
    assert diffusion_loss(lambda z, c, cond: torch.zeros_like(z), x0, {}, logsnr, "v").item() > 0.1


# --- samplers on Gaussian data, where every step has a closed form ---------------------------------------------------
# Data x0 ~ N(MU, S0^2) per dimension; in the VE view x = x0 + s eps the exact denoiser is
# E[x0 | x] = MU + a (x - MU), a = S0^2 / (S0^2 + s^2). A sampler with this denoiser is a linear Gaussian recursion,
# so the mean and variance of its output are known exactly, from the DDIM / DDPM update rules written out here
# (independently of the sampler code): a wrong update rule moves them.
MU, S0 = 0.7, 0.5


def _gaussian_denoiser(x, s, cond):
    a = S0 ** 2 / (S0 ** 2 + s.view(-1, *[1] * (x.ndim - 1)) ** 2)
    return MU + a * (x - MU)


def _closed_form(sigmas, rule):
    """Mean and variance of the output for x_T ~ N(0, sigmas[0]^2), stepping with the given rule."""
    m, v = 0.0, float(sigmas[0]) ** 2
    for s, s2 in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        a = S0 ** 2 / (S0 ** 2 + s ** 2)                  # x0_hat = MU + a (x - MU)
        if rule == "ddim":                                # x' = x0_hat + (s'/s) (x - x0_hat)
            c, noise = a + (s2 / s) * (1 - a), 0.0
        else:                                             # DDPM posterior q(x' | x, x0): mean x0 + (s'^2/s^2)(x - x0),
            c, noise = a + (s2 ** 2 / s ** 2) * (1 - a), s2 ** 2 * (s ** 2 - s2 ** 2) / s ** 2   # var s'^2 (s^2 - s'^2)/s^2
        m, v = MU + c * (m - MU), c * c * v + noise
    return m, v


@pytest.mark.parametrize("name,sampler", [("ddim", sample_ddim), ("ddpm", sample_ddpm)])
@pytest.mark.parametrize("steps", [3, 10])
def test_samplers_match_the_closed_form_on_gaussian_data(name, sampler, steps):
    sigmas = get_sigmas(make_schedule("cosine", -10, 10), steps).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, 1, generator=g, dtype=torch.float64) * sigmas[0]
    out = sampler(_gaussian_denoiser, x, sigmas, {}, generator=g)
    m, v = _closed_form(sigmas, name)
    n = out.numel()
    assert abs(out.mean().item() - m) < 5 * (v / n) ** 0.5
    assert abs(out.var().item() - v) < 5 * v * (2 / n) ** 0.5


@pytest.mark.parametrize("name", ["ddim", "ddpm"])
def test_closed_form_recursion_reaches_the_data_distribution_with_many_steps(name):
    """The rules above are the right ones: with fine steps both samplers end at N(MU, S0^2) (DDPM's coarse steps lose
    variance, DDIM's few steps too; neither is exact at 3 steps, which the previous test pins down)."""
    m, v = _closed_form(get_sigmas(make_schedule("cosine", -10, 10), 2000).double(), name)
    # DDIM keeps a trace of x_T's mean 0 (not MU): MU * S0 / sqrt(S0^2 + sigmas[0]^2) = 0.0024 here
    assert m == pytest.approx(MU, abs=3e-3) and v == pytest.approx(S0 ** 2, rel=2e-2)
    m3, v3 = _closed_form(get_sigmas(make_schedule("cosine", -10, 10), 3).double(), name)
    assert abs(v3 - S0 ** 2) > 0.01                         # few steps: visibly off, so the first test can tell


@pytest.mark.parametrize("name,order", [("ddim", 1), ("heun", 2), ("dpmpp_2m", 2),
                                        ("dpmpp_3m", 3)])
def test_ode_samplers_converge_at_their_order(name, order):
    """On Gaussian data the probability-flow ODE has the exact solution x(s) - MU = (x_T - MU) sqrt(S0^2 + s^2) /
    sqrt(S0^2 + s_T^2). Doubling the steps (geometric noise levels) divides each solver's error by 2^order; a wrong
    update rule loses the order (or converges to something else)."""
    from lumiere_pl.diffusion import SAMPLERS

    def error(n):
        sigmas = torch.exp(torch.linspace(math.log(80.0), math.log(0.02), n + 1, dtype=torch.float64))
        x = torch.linspace(-3, 3, 7, dtype=torch.float64).view(-1, 1) * sigmas[0]
        exact = MU + (x - MU) * math.sqrt(S0 ** 2 + float(sigmas[-1]) ** 2) / math.sqrt(S0 ** 2 + float(sigmas[0]) ** 2)
        return (SAMPLERS[name](_gaussian_denoiser, x.clone(), sigmas, {}) - exact).abs().max().item()

    errors = [error(n) for n in (32, 64, 128)]
    for e, e2 in zip(errors, errors[1:]):   # 3M converges faster than its order here (3.9): at least the order
        assert order - 0.25 <= math.log2(e / e2) <= order + 1     # (half its D'' term: 2.1, tried)


def test_deterministic_samplers_refuse_eta():
    from lumiere_pl.diffusion.samplers import sample_dpmpp_2m, sample_dpmpp_3m, sample_heun

    sigmas = get_sigmas(make_schedule("cosine", -10, 10), 3)
    for sampler in (sample_heun, sample_dpmpp_2m, sample_dpmpp_3m):
        with pytest.raises(ValueError, match="deterministic: sampler.eta must be 0"):
            sampler(_gaussian_denoiser, torch.zeros(2, 1), sigmas, {}, eta=0.5)


def test_euler_is_ddims_deterministic_step():
    """k-diffusion's Euler step on dx/ds = (x - D) / s is DDIM's (eta 0) step in this view: one function, two names."""
    from lumiere_pl.diffusion import SAMPLERS
    assert SAMPLERS["euler"] is SAMPLERS["ddim"]


@pytest.mark.parametrize("name", ["ddim", "ddpm", "heun", "dpmpp_2m", "dpmpp_3m"])
def test_every_sampler_composes_with_guidance_and_multidiffusion(name):
    """Samplers take any denoiser: guidance and temporal MultiDiffusion wrap it, and wrappers that change no
    prediction (both captions predict alike; a per-element denoiser over overlapping windows) change no sample,
    including the ancestral noise of DDPM (one generator per clip)."""
    from lumiere_pl.diffusion import SAMPLERS
    from lumiere_pl.diffusion.multidiffusion import multidiffusion

    sigmas = get_sigmas(make_schedule("cosine", -10, 10), 6).double()
    x = torch.randn(2, 3, 10, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sigmas[0]
    cond = {"text": torch.zeros(2, 3, 5), "null_text": torch.ones(2, 3, 5)}

    def run(denoise):
        g = [torch.Generator().manual_seed(k) for k in (1, 2)]
        return SAMPLERS[name](denoise, x.clone(), sigmas, cond, generator=g)

    plain = run(_gaussian_denoiser)
    torch.testing.assert_close(run(guided(_gaussian_denoiser, 3.0)), plain)
    torch.testing.assert_close(run(multidiffusion(_gaussian_denoiser, window=4, stride=3)), plain)
    assert not torch.allclose(run(lambda z, s, c: _gaussian_denoiser(z, s, c) * 0.9), plain)   # it can tell


@pytest.mark.parametrize("name", ["ddim", "ddpm", "heun", "dpmpp_2m", "dpmpp_3m"])
def test_network_calls_counts_the_denoiser_calls(name):
    """The cost figure of lumiere_research/sampler_steps.py and bench/bench_render.py: calls per clip for `steps`."""
    from lumiere_pl.diffusion import SAMPLERS
    from lumiere_pl.diffusion.samplers import network_calls

    seen = []

    def counting(x, s, cond):
        seen.append(1)
        return _gaussian_denoiser(x, s, cond)
    SAMPLERS[name](counting, torch.zeros(2, 1), get_sigmas(make_schedule("cosine", -10, 10), 7).double(), {})
    assert len(seen) == network_calls(name, 7)
