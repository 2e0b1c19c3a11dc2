"""MultiDiffusion over time: window coverage, exactness with one window, least squares, seams, composition."""
from __future__ import annotations

import math

import pytest
import torch

from lumiere_pl.diffusion.guidance import guided
from lumiere_pl.diffusion.multidiffusion import MultiDiffusion, default_stride, multidiffusion, temporal_windows
from lumiere_pl.diffusion.samplers import SAMPLERS, sample_ddim
from lumiere_pl.diffusion.schedules import cosine, get_sigmas


def _seam_pairs(T: int, spans) -> tuple[list[int], list[int]]:
    """Frame pairs (i, i+1) that straddle a window boundary, and the others."""
    seams = {a - 1 for a, _ in spans if a > 0} | {e - 1 for _, e in spans if e < T}
    return sorted(seams), [i for i in range(T - 1) if i not in seams]


# ---------------------------------------------------------------------------------------------------------------------
# Toy denoisers


def gp_denoiser(ell: float = 3.0, amp: float = 1.0):
    """Exact posterior mean E[x0 | x] for x0 ~ c + GP(0, amp^2 exp(-dt^2 / 2 ell^2)) over the frames of the window it sees:
    a window-local model whose output is linear in (x, cond["concat"]) and mixes frames, with honest edge effects."""
    def denoise(x, s, cond):                                            # x: b c t h w
        t = torch.arange(x.shape[2], dtype=torch.float64)
        K = amp ** 2 * torch.exp(-0.5 * (t[:, None] - t[None]) ** 2 / ell ** 2)
        c = cond.get("concat", torch.zeros_like(x))
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            M = K @ torch.linalg.inv(K + float(s[i]) ** 2 * torch.eye(len(t), dtype=torch.float64))
            out[i] = c[i] + torch.einsum("ts,cshw->cthw", M.to(x.dtype), x[i] - c[i])
        return out
    return denoise


def frame_net(seed: int = 0, c: int = 3, gain: float = 1.0):
    """A nonlinear per-frame denoiser (like the SSR's spatial layers): frames never interact; its output is the
    conditioning plus a bounded correction of size `gain`."""
    g = torch.Generator().manual_seed(seed)
    conv = torch.nn.Conv3d(2 * c + 1, c, (1, 3, 3), padding=(0, 1, 1))
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)

    def denoise(x, s, cond):
        z = torch.cat([x, cond["concat"], s.view(-1, 1, 1, 1, 1).expand_as(x[:, :1])], 1)
        return gain * torch.tanh(conv(z)) + cond["concat"]
    return denoise


# ---------------------------------------------------------------------------------------------------------------------
# Windows


def test_windows_cover_every_frame():
    for T in range(1, 41):
        for window in range(0, T + 3):
            for stride in range(1, max(window, 1) + 1):
                spans = temporal_windows(T, window, stride)
                covered = torch.zeros(T, dtype=torch.bool)
                for a, e in spans:
                    assert 0 <= a < e <= T
                    assert e - a == (window if 0 < window < T else T)
                    covered[a:e] = True
                assert covered.all(), (T, window, stride, spans)
                starts = [a for a, _ in spans]
                assert starts == sorted(set(starts))                      # no duplicate windows
                assert all(b - a <= stride for a, b in zip(starts, starts[1:]))
                assert spans[-1][1] == T                                   # the tail is always reached


def test_windows_examples_and_errors():
    assert temporal_windows(80, 16, 14) == [(0, 16), (14, 30), (28, 44), (42, 58), (56, 72), (64, 80)]
    assert temporal_windows(10, 4, 3) == [(0, 4), (3, 7), (6, 10)]
    assert temporal_windows(10, 0, 0) == [(0, 10)]
    assert temporal_windows(5, 8, 6) == [(0, 5)]
    assert default_stride(16, 0) == 14 and default_stride(2, 0) == 1 and default_stride(8, 3) == 3
    with pytest.raises(ValueError):
        temporal_windows(10, 4, 5)                                          # would skip frames
    with pytest.raises(ValueError):
        MultiDiffusion(lambda x, s, c: x, 4, 2, max_batch_windows=0)


# ---------------------------------------------------------------------------------------------------------------------
# Exactness


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_one_window_equals_plain_sampling(sampler):
    T = 12
    x = torch.randn(2, 3, T, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = {"concat": torch.randn(2, 3, T, 8, 8), "text": torch.randn(2, 4, 8), "null_text": torch.zeros(2, 4, 8)}
    sigmas = get_sigmas(cosine(), 6)
    den = guided(frame_net(), 2.0)

    def run(d):
        return SAMPLERS[sampler](d, x * sigmas[0], sigmas, cond, generator=torch.Generator().manual_seed(1))
    plain = run(den)
    for window in (T, T + 5):
        assert torch.equal(run(multidiffusion(den, window, 0)), plain)
    assert multidiffusion(den, 0, 0) is den


def test_per_frame_denoiser_is_window_independent():
    """Frames that never interact get the same prediction from every window: MD equals the full clip."""
    T = 11
    x = torch.randn(2, 3, T, 8, 8)
    cond = {"concat": torch.randn(2, 3, T, 8, 8)}
    s = torch.tensor([0.7, 3.0])
    den = frame_net()
    for window, stride, cap in [(4, 3, 1), (4, 3, 8), (5, 1, 2), (3, 3, 4)]:
        torch.testing.assert_close(MultiDiffusion(den, window, stride, cap)(x, s, cond), den(x, s, cond))


@pytest.mark.parametrize("T,window,stride", [(10, 4, 3), (11, 4, 3), (13, 6, 2), (9, 5, 5), (16, 16, 1)])
def test_linear_denoiser_matches_least_squares(T, window, stride):
    """argmin_J sum_i ||J[w_i] - D(x[w_i])||^2, solved directly with lstsq, equals the wrapper's output."""
    torch.manual_seed(0)
    b, c, h, w = 2, 2, 3, 3
    x = torch.randn(b, c, T, h, w, dtype=torch.float64)
    cond = {"concat": torch.randn(b, c, T, h, w, dtype=torch.float64), "aug_noise": torch.rand(b, dtype=torch.float64)}
    s = torch.tensor([0.5, 2.0], dtype=torch.float64)
    den = gp_denoiser(ell=2.0)
    for cap in (1, 2, 100):
        got = MultiDiffusion(den, window, stride, cap)(x, s, cond)
        spans = temporal_windows(T, window, stride)
        sel = torch.cat([torch.eye(T, dtype=torch.float64)[a:e] for a, e in spans])          # (sum w_i, T)
        preds = torch.cat([den(x[:, :, a:e], s, {"concat": cond["concat"][:, :, a:e]}) for a, e in spans], 2)
        rhs = preds.permute(2, 0, 1, 3, 4).reshape(sel.shape[0], -1)                       # (sum w_i, b c h w)
        J = torch.linalg.lstsq(sel, rhs).solution                                            # (T, b c h w)
        want = J.reshape(T, b, c, h, w).permute(1, 2, 0, 3, 4)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------------------------------
# Seams


def test_no_seams_on_smooth_input_with_per_frame_model():
    """Smooth low-res video in, full DDIM sampling with overlap-2 windows and an awkward tail: no seams appear, and
    the result is the full-clip sample (frames never interact in this model, so windows cannot disagree)."""
    T, b = 30, 4
    g = torch.Generator().manual_seed(0)
    t = torch.arange(T, dtype=torch.float32).view(1, 1, T, 1, 1)
    smooth = torch.sin(2 * math.pi * t / 24 + torch.rand(b, 3, 1, 8, 8, generator=g) * 6.28)   # b 3 t 8 8
    sigmas = get_sigmas(cosine(), 10)
    x = torch.randn(smooth.shape, generator=g) * sigmas[0]
    den = frame_net(gain=0.1)
    md = MultiDiffusion(den, 8, 6, 2)
    y = sample_ddim(md, x, sigmas, {"concat": smooth})
    torch.testing.assert_close(y, sample_ddim(den, x, sigmas, {"concat": smooth}))
    diff = (y[:, :, 1:] - y[:, :, :-1]).abs().mean(dim=(0, 1, 3, 4))                        # t-1
    seams, inner = _seam_pairs(T, md.spans(T))
    assert diff[seams].max() <= diff[inner].max()


def test_overlap_shrinks_seams_of_a_window_local_model():
    """A model that mixes frames inside its window disagrees with its neighbour near window edges; the overlap-2
    average must remove most of the jump that non-overlapping windows leave (seam excess over the interior)."""
    T, b = 30, 32
    t = torch.arange(T, dtype=torch.float64).view(1, 1, T, 1, 1)
    ph = torch.rand(b, 1, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 6.28
    x = torch.sin(2 * math.pi * t / 20 + ph)                                                  # smooth: b 1 t 1 1
    s = torch.full((b,), 0.5, dtype=torch.float64)
    excess = {}
    for stride in (6, 8):
        md = MultiDiffusion(gp_denoiser(ell=6.0), 8, stride)
        y = md(x, s, {})
        diff = (y[:, :, 1:] - y[:, :, :-1]).abs().mean(dim=(0, 1, 3, 4))
        seams, inner = _seam_pairs(T, md.spans(T))
        excess[stride] = float(diff[seams].max() - diff[inner].max())
    assert excess[8] > 0.1                                                  # the toy model does make seams
    assert excess[6] <= 0.5 * excess[8], excess


# ---------------------------------------------------------------------------------------------------------------------
# Composition with guidance and batching


def test_guidance_inside_or_outside_and_batching_agree():
    T = 10
    x = torch.randn(2, 3, T, 4, 4)
    cond = {"concat": torch.randn(2, 3, T, 4, 4), "text": torch.randn(2, 5, 8), "text_mask": torch.ones(2, 5, dtype=torch.bool),
            "null_text": torch.zeros(2, 5, 8), "null_text_mask": torch.ones(2, 5, dtype=torch.bool)}
    s = torch.tensor([1.0, 2.0])
    base = frame_net()

    def text_aware(x, s, c):                                               # the caption shifts every frame
        return base(x, s, c) + c["text"].mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)
    outer = guided(MultiDiffusion(text_aware, 4, 3, 1), 3.0)(x, s, cond)
    inner = MultiDiffusion(guided(text_aware, 3.0), 4, 3, 4)(x, s, cond)
    torch.testing.assert_close(outer, inner)
    torch.testing.assert_close(outer, guided(text_aware, 3.0)(x, s, cond))  # per-frame model: MD is exact


def test_calls_are_batched_under_the_cap():
    calls = []

    def den(x, s, cond):
        calls.append(x.shape[0])
        assert cond["concat"].shape[2] == x.shape[2] == 4
        return x
    x = torch.randn(3, 1, 20, 2, 2)
    MultiDiffusion(den, 4, 2, max_batch_windows=4)(x, torch.ones(3), {"concat": torch.zeros(3, 2, 20, 2, 2)})
    assert calls == [12, 12, 3]                                             # 9 windows x batch 3, at most 4 at once
