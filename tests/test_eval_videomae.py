"""cd-fvd's VideoMAE-v2 features: our encoder, loaded from a VideoMAE-v2-format state_dict, against transformers'
independent VideoMAE implementation with the same (tiny, random) weights; loader errors."""
from __future__ import annotations

import pytest
import torch

from eval.detectors import VideoMAEDetector
from eval.errors import EvalError
from eval.preprocess import Preprocess
from eval.videomae import load_videomae

transformers = pytest.importorskip("transformers")


def _tiny_hf_model():
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    torch.manual_seed(0)
    config = VideoMAEConfig(image_size=32, patch_size=8, num_channels=3, num_frames=4, tubelet_size=2,
                            hidden_size=48, num_hidden_layers=2, num_attention_heads=6, intermediate_size=80,
                            qkv_bias=True, use_mean_pooling=True, layer_norm_eps=1e-6, num_labels=5)
    model = VideoMAEForVideoClassification(config).eval()
    with torch.no_grad():      # random, non-zero biases everywhere (HF initialises q/v biases to zero)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _to_videomae_v2(model) -> dict[str, torch.Tensor]:
    """transformers' VideoMAE names -> the VideoMAE-v2 release's (qkv fused, q_bias / v_bias apart)."""
    sd = model.state_dict()
    out = {"patch_embed.proj.weight": sd["videomae.embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": sd["videomae.embeddings.patch_embeddings.projection.bias"],
           "fc_norm.weight": sd["fc_norm.weight"], "fc_norm.bias": sd["fc_norm.bias"],
           "head.weight": sd["classifier.weight"], "head.bias": sd["classifier.bias"]}
    for i in range(model.config.num_hidden_layers):
        hf = f"videomae.encoder.layer.{i}."
        att = hf + "attention.attention."
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat([sd[att + f"{n}.weight"] for n in ("query", "key", "value")])
        out[f"blocks.{i}.attn.q_bias"], out[f"blocks.{i}.attn.v_bias"] = sd[att + "query.bias"], sd[att + "value.bias"]
        for ours, theirs in (("attn.proj", "attention.output.dense"), ("norm1", "layernorm_before"),
                             ("norm2", "layernorm_after"), ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense")):
            for kind in ("weight", "bias"):
                out[f"blocks.{i}.{ours}.{kind}"] = sd[f"{hf}{theirs}.{kind}"]
    return out


def test_features_match_transformers_videomae(tmp_path):
    model = _tiny_hf_model()
    path = tmp_path / "videomae_tiny.pt"
    torch.save({"module": _to_videomae_v2(model)}, path)                  # the release nests the weights
    ours, weights = load_videomae(path, heads=6, img_size=32, all_frames=4)
    x = torch.rand(3, 3, 4, 32, 32)                                       # (b, c, t, h, w)
    with torch.no_grad():
        hidden = model.videomae(pixel_values=x.permute(0, 2, 1, 3, 4)).last_hidden_state   # (b, n, d)
        expected = model.fc_norm(hidden.mean(1))                          # VideoMAE's mean pooling
        got = ours(x)
    assert got.shape == (3, 48) and weights.startswith("videomae_v2:videomae_tiny.pt@sha256:")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="use 4 frames"):
        ours(torch.rand(1, 3, 8, 32, 32))


def test_detector_preprocesses_like_cdfvd_and_loader_refuses_foreign_files(tmp_path):
    path = tmp_path / "v.pt"
    torch.save(_to_videomae_v2(_tiny_hf_model()), path)
    det = VideoMAEDetector(str(path), Preprocess(32, "half-pixel", "full", None, "x/255"), heads=6, img_size=32,
                           all_frames=4)
    clip = torch.randint(0, 256, (1, 4, 40, 56, 3), dtype=torch.uint8)
    assert det(clip.numpy()).shape == (1, 48)
    assert det.protocol()["weights"].startswith("videomae_v2:v.pt@sha256:")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(EvalError, match="not a VideoMAE-v2 state_dict"):
        load_videomae(tmp_path / "other.pt")
    with pytest.raises(EvalError, match="VideoMAE checkpoint not found"):
        load_videomae(tmp_path / "none.pt")
