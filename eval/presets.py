"""Named FVD protocols: the preprocessing, the feature network and the covariance estimator of each reference
implementation. Clip sampling (frames, stride or fps, offsets, which real videos) is not part of a preset: it is
set once per run (ClipSpec) and applies to all of them, so `lumiere-eval compare` isolates these choices.

  tf-fvd           google-research frechet_video_distance: the whole frame, TF1 resize_bilinear (legacy grid) to
                   224, x/127.5 - 1; TF-Hub I3D logits; TF-GAN's unbiased covariance (n - 1). The default.
  stylegan-v       universome/stylegan-v fvd2048_16f: torch bilinear (half-pixel) resize of the whole frame inside
                   its TorchScript I3D (the TF-Hub weights), features = the 400 logits; FeatureStats.get_mean_cov
                   divides by n.
  cd-fvd           songweige/content-debiased-fvd, model="i3d", video-folder loading: shorter side to 256 (torch
                   bilinear with antialias, long side ceil'ed), centre 256 crop, truncated to uint8, then half-pixel
                   bilinear to 224, 2x/255 - 1; biased covariance. Features from OUR I3D (TF-Hub weights): cd-fvd's own
                   i3d_pretrained_400.pt (TATS) is another checkpoint, so only its preprocessing is reproduced.
  cd-fvd-videomae  the same loading, x/255, half-pixel to 224, VideoMAE-v2 ViT-g features (the content-debiased
                   FVD); weights from a local path (--videomae-ckpt), never downloaded.
"""
from __future__ import annotations

from dataclasses import dataclass

from .preprocess import Preprocess


@dataclass(frozen=True)
class FVDPreset:
    name: str
    preprocess: Preprocess
    network: str        # "i3d" (TF-Hub I3D logits) or "videomae" (VideoMAE-v2 features, needs a checkpoint)
    covariance: str     # "unbiased" (n - 1) or "biased" (n)
    reference: str      # the implementation it reproduces

    def record(self) -> dict:
        return {"preset": self.name, "network": self.network, "covariance": self.covariance,
                "preset_reference": self.reference}


FVD_PRESETS = {p.name: p for p in (
    FVDPreset("tf-fvd", Preprocess(224, "tf1", "full", None, "x/127.5-1"), "i3d", "unbiased",
              "google-research/frechet_video_distance (TF1 resize_bilinear, TF-GAN)"),
    FVDPreset("stylegan-v", Preprocess(224, "half-pixel", "full", None, "x/127.5-1"), "i3d", "biased",
              "universome/stylegan-v fvd2048_16f"),
    FVDPreset("cd-fvd", Preprocess(224, "half-pixel", "full", 256, "x/127.5-1"), "i3d", "biased",
              "songweige/content-debiased-fvd model=i3d, video_folder loading (our TF-Hub I3D weights)"),
    FVDPreset("cd-fvd-videomae", Preprocess(224, "half-pixel", "full", 256, "x/255"), "videomae", "biased",
              "songweige/content-debiased-fvd model=videomae (VideoMAE-v2 ViT-g, SSv2 fine-tuned)"),
)}
