"""Clip preprocessing: the TF1 legacy bilinear resize against a from-formula reference, the half-pixel and
align-corners resizes against torch, crops and scaling."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eval.preprocess import Preprocess, bilinear_weights, resize_bilinear


def tf1_resize_reference(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 resize_bilinear(align_corners=False, half_pixel_centers=False) written from its definition, in float32
    as TF computes it: in = out_index * (in_size / out_size); lower = floor(in); upper = min(ceil(in), in_size - 1);
    lerp = in - floor(in); top and bottom rows interpolated along x first, then along y. img: (h, w, c)."""
    h, w, _ = img.shape
    img = img.astype(np.float32)
    h_scale, w_scale = np.float32(h) / np.float32(out_h), np.float32(w) / np.float32(out_w)
    in_x = np.arange(out_w, dtype=np.float32) * w_scale                 # (out_w,)
    x0 = np.floor(in_x).astype(int)
    x1 = np.minimum(np.ceil(in_x).astype(int), w - 1)
    lx = (in_x - np.floor(in_x))[:, None]                               # (out_w, 1)
    out = np.empty((out_h, out_w, img.shape[2]), np.float32)
    for y in range(out_h):
        in_y = np.float32(y) * h_scale
        y0, y1 = int(np.floor(in_y)), min(int(np.ceil(in_y)), h - 1)
        ly = in_y - np.floor(in_y)
        top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * lx            # (out_w, c)
        bottom = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * lx
        out[y] = top + (bottom - top) * ly
    return out


@pytest.mark.parametrize("h, w", [(61, 97), (272, 640), (405, 720), (240, 320)])
def test_tf1_resize_matches_the_formula(h, w):
    frames = np.random.default_rng(h).integers(0, 256, (2, h, w, 3), dtype=np.uint8)   # (t, h, w, c)
    ours = Preprocess(224, "tf1", scale="x")(frames)                   # (3, t, 224, 224) in 0..255
    for t in range(2):
        ref = tf1_resize_reference(frames[t], 224, 224)                # (224, 224, 3)
        np.testing.assert_allclose(ours[:, t].permute(1, 2, 0).numpy(), ref, rtol=0, atol=1e-3)


@pytest.mark.parametrize("h, w", [(61, 97), (405, 720), (224, 224)])
@pytest.mark.parametrize("mode, align", [("half-pixel", False), ("align-corners", True)])
def test_half_pixel_and_align_corners_match_torch(h, w, mode, align):
    x = torch.rand(2, 3, h, w) * 255                                    # (t, c, h, w)
    ref = F.interpolate(x, size=(224, 160), mode="bilinear", align_corners=align, antialias=False)
    torch.testing.assert_close(resize_bilinear(x, (224, 160), mode), ref, rtol=0, atol=2e-3)


def test_tf1_differs_from_half_pixel_off_224_and_is_identity_at_224():
    frames = np.random.default_rng(0).integers(0, 256, (1, 272, 640, 3), dtype=np.uint8)
    tf1 = Preprocess(224, "tf1", scale="x")(frames)
    half = Preprocess(224, "half-pixel", scale="x")(frames)
    assert (tf1 - half).abs().max() > 10                                # the grids differ by up to a source pixel
    same = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    for mode in ("tf1", "half-pixel", "align-corners"):
        out = Preprocess(224, mode)(same)
        torch.testing.assert_close(out, torch.from_numpy(same).permute(3, 0, 1, 2).float() / 127.5 - 1)
    assert torch.equal(bilinear_weights(7, 3, "tf1").sum(1), torch.ones(3))   # rows are convex combinations


def test_center_crop_scaling_and_cdfvd_short_side():
    frames = np.random.default_rng(2).integers(0, 256, (3, 240, 320, 3), dtype=np.uint8)
    crop = Preprocess(224, "tf1", "center")(frames)
    manual = Preprocess(224, "tf1", "full")(frames[:, :, 40:280])
    torch.testing.assert_close(crop, manual, rtol=0, atol=0)
    x = Preprocess(224, "tf1", scale="x")(frames)
    torch.testing.assert_close(Preprocess(224, "tf1", scale="x/255")(frames), x / 255)
    cd = Preprocess(224, "half-pixel", short_side=256, scale="x")
    assert cd(frames).shape == (3, 3, 224, 224)
    square = np.random.default_rng(3).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    # a 256 square passes the cd-fvd step unchanged (bilinear at scale 1 and the uint8 round trip are exact)
    torch.testing.assert_close(cd(square), Preprocess(224, "half-pixel", scale="x")(square), rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="resize must be one of"):
        Preprocess(resize="bicubic")
