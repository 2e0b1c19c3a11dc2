"""Text encoders (tiny and the real offline MiniLM), EMA, video writing."""
from __future__ import annotations

import io

import av
import numpy as np
import pytest
import torch
from PIL import Image

from lumiere_pl.config import TextConfig
from lumiere_pl.text import build_text_encoder
from lumiere_pl.utils.ema import EMA
from lumiere_pl.utils.tensors import append_dims, fold_time, unfold_time
from lumiere_pl.utils.video import encode_gif, log_video, to_uint8, write_mp4


def test_tiny_encoder_is_deterministic_and_word_level():
    a = build_text_encoder(TextConfig(encoder="tiny", dim=8, max_length=6))
    b = build_text_encoder(TextConfig(encoder="tiny", dim=8, max_length=6))
    s1, m1 = a(["a red circle", ""])
    s2, _ = b(["a red circle", ""])
    assert torch.equal(s1, s2) and s1.shape == (2, 6, 8)
    assert m1.tolist() == [[True] * 3 + [False] * 3, [True] + [False] * 5]   # "" still has one token
    s3, _ = a(["the red square"])
    torch.testing.assert_close(s3[0, 1], s1[0, 1])                          # same word, same vector


@pytest.fixture(scope="module")
def minilm():
    return build_text_encoder(TextConfig(encoder="minilm", max_length=16))


def _pooled(enc, captions):
    s, m = enc(captions)
    w = m.unsqueeze(-1).float()
    v = (s * w).sum(1) / w.sum(1)
    return torch.nn.functional.normalize(v, dim=-1)


def test_minilm_real_weights_per_token_states_and_semantics(minilm):
    states, mask = minilm(["a red circle moving left", "a dog"])
    assert states.shape == (2, 16, 384) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [7, 4]                                  # [CLS] a red circle moving left [SEP]
    v = _pooled(minilm, ["a red ball rolling to the left", "a red circle moving left", "quarterly tax report"])
    assert v[0] @ v[1] > v[2] @ v[1] + 0.2                                 # a real sentence encoder


def test_encoder_cache_returns_identical_states(minilm):
    first, _ = minilm(["cars stuck in a traffic jam"])
    assert "cars stuck in a traffic jam" in minilm._cache
    again, _ = minilm(["x", "cars stuck in a traffic jam"])
    assert torch.equal(first[0], again[1])


def test_t5_without_path_fails_clearly():
    with pytest.raises(ValueError, match="text.path"):
        build_text_encoder(TextConfig(encoder="t5"))


def test_ema_update_and_swap():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 4))
    net[0].bias.requires_grad_(False)                                       # frozen: not tracked
    ema = EMA(net, decay=0.5)
    assert set(ema._names) == {"0.weight", "1.weight", "1.bias"}
    values = lambda: {k: v.detach().clone() for k, v in net.named_parameters()}       # noqa: E731
    shadow = lambda name: getattr(ema, ema._names[name])                                # noqa: E731
    start = values()
    with torch.no_grad():
        for i, p in enumerate(net.parameters()):
            p.add_(1.0 + i)                                                 # a different step per tensor
    first = values()
    ema.update(net)                                                         # warm-up decay min(0.5, 1/10) = 0.1
    for name in ema._names:                                                 # every tracked tensor, each its own
        torch.testing.assert_close(shadow(name), 0.1 * start[name] + 0.9 * first[name])
    assert torch.equal(net[0].bias, first["0.bias"])                        # the live weights untouched
    with torch.no_grad():
        net[1].bias.add_(1.0)
    second = values()
    ema.update(net)                                                         # n = 1: decay min(0.5, 2/11)
    d = 2 / 11
    torch.testing.assert_close(shadow("1.bias"), d * (0.1 * start["1.bias"] + 0.9 * first["1.bias"])
                               + (1 - d) * second["1.bias"])
    assert int(ema.num_updates) == 2

    with ema.apply_to(net):
        for name, p in net.named_parameters():
            assert torch.equal(p, shadow(name) if name in ema._names else second[name])
    for name, p in net.named_parameters():
        assert torch.equal(p, second[name])                                 # restored
    averaged = ema.averaged_state_dict(net)
    for name in second:
        assert torch.equal(averaged[name], shadow(name) if name in ema._names else second[name])


def test_tensor_helpers():
    x = torch.randn(2, 3, 4, 5, 6)
    assert torch.equal(unfold_time(fold_time(x), 4), x)
    assert fold_time(x)[1 * 1 + 0].equal(x[0, :, 1])                        # frame-major within a clip
    assert append_dims(torch.ones(2), 5).shape == (2, 1, 1, 1, 1)
    with pytest.raises(ValueError):
        append_dims(torch.ones(2, 3), 1)


def test_write_mp4_round_trip(tmp_path):
    g = np.random.default_rng(0)
    frames = np.zeros((12, 33, 31, 3), np.uint8)                            # odd sizes are padded
    for i in range(12):
        frames[i, :, : 2 * i + 2] = 200                                     # a bar growing to the right
    frames += g.integers(0, 20, frames.shape, dtype=np.uint8)
    path = write_mp4(tmp_path / "v.mp4", frames, fps=8)
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]                # no temporary file left
    with av.open(str(path)) as f:
        decoded = np.stack([fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)])
    assert decoded.shape == (12, 34, 32, 3)
    err = np.abs(decoded[:, :33, :31].astype(float) - frames).mean()
    assert err < 6.0, err
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "bad.mp4", frames.astype(np.float32))


def test_gif_and_tensorboard_video(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    video = torch.linspace(-1, 1, 3 * 5 * 8 * 8).view(3, 5, 8, 8)
    frames = to_uint8(video)
    assert frames.shape == (5, 8, 8, 3) and frames.dtype == np.uint8
    gif = Image.open(io.BytesIO(encode_gif(frames)))
    assert gif.n_frames == 5
    writer = SummaryWriter(str(tmp_path))
    log_video(writer, "samples/0", frames, step=3)
    writer.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    (event,) = acc.Images("samples/0")
    assert event.step == 3 and Image.open(io.BytesIO(event.encoded_image_string)).n_frames == 5


def test_flop_counter_counts_cpu_attention_and_convs():
    import torch.nn.functional as F

    from lumiere_pl.utils.flops import count_flops, forward_flops

    q = k = v = torch.randn(1, 2, 8, 4)                                     # (b heads n d)
    assert count_flops(lambda: F.scaled_dot_product_attention(q, k, v)) == 2 * (2 * 2 * 8 * 8 * 4)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, bias=False)
    assert forward_flops(conv, torch.randn(2, 3, 6, 6)) == 2 * (2 * 5 * 6 * 6) * (3 * 3 * 3)
