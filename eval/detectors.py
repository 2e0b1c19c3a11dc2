"""Feature extractors ("detectors"): one interface for every network that turns clips into vectors.

    detector.prepare(clip)   uint8 (t, h, w, c) numpy -> float tensor ready to batch (per clip, any size in)
    detector.features(batch) stacked prepared clips -> (b, feature_dim) float32
    detector(videos)         uint8 (b, t, h, w, c) tensor -> (b, feature_dim): both steps
    detector.protocol()      every field that changes the numbers (weights id, resolution, crop, ...)

Registry: DETECTORS = {"i3d": I3DDetector, "c3d_ucf101": C3DDetector}.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .c3d import C3D_FRAMES, C3D_SIZE, load_c3d
from .i3d import load_tfhub_i3d, weights_id


def resize_clip(clip: np.ndarray | torch.Tensor, size: int, crop: str = "full", align_corners: bool = False) -> torch.Tensor:
    """uint8 (t, h, w, c) -> float (c, t, size, size) in [0, 255]; bilinear, no antialias (as TF resize_bilinear).

    crop="full" resizes the whole frame (the FVD reference: aspect ratio not kept); "center" takes the largest
    centred square first.
    """
    x = torch.as_tensor(clip).permute(0, 3, 1, 2).float()     # (t, c, h, w)
    if crop == "center":
        h, w = x.shape[-2:]
        s = min(h, w)
        x = x[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    elif crop != "full":
        raise ValueError(f"crop must be 'full' or 'center', got {crop!r}")
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=align_corners, antialias=False)
    return x.permute(1, 0, 2, 3).contiguous()                 # (c, t, size, size)


class Detector:
    name: str = "detector"
    feature_dim: int = 0

    def __init__(self, device: str | torch.device = "cpu", channels_last: bool = True):
        self.device = torch.device(device)
        self.channels_last = channels_last

    def prepare(self, clip: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def features(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return self._net(x).float().cpu()                      # (b, feature_dim)

    def __call__(self, videos: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (b, t, h, w, c) -> (b, feature_dim)."""
        return self.features(torch.stack([self.prepare(np.asarray(v)) for v in videos]))

    def protocol(self) -> dict:
        raise NotImplementedError


class I3DDetector(Detector):
    """TF-Hub Kinetics-400 I3D. features="logits": time-averaged 400-d logits (the FVD standard);
    "pool": the 1024-d pooled Mixed_5c features; "probs": softmax of the logits (I3D-Kinetics IS)."""

    FEATURES = {"logits": 400, "pool": 1024, "probs": 400}

    def __init__(self, features: str = "logits", crop: str = "full", size: int = 224, weights: str | None = None,
                 device: str | torch.device = "cpu", channels_last: bool = True):
        super().__init__(device, channels_last)
        if features not in self.FEATURES:
            raise ValueError(f"features must be one of {list(self.FEATURES)}, got {features!r}")
        if size != 224:
            raise ValueError("the TF-Hub I3D head pools a 7x7 map: input must be 224x224")
        self.kind, self.crop, self.size, self.weights = features, crop, size, weights
        self.name, self.feature_dim = f"i3d_{features}", self.FEATURES[features]
        self.net = load_tfhub_i3d(weights).to(self.device)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last_3d)

    def prepare(self, clip: np.ndarray) -> torch.Tensor:
        return resize_clip(clip, self.size, self.crop) / 127.5 - 1.0   # (3, t, 224, 224) in [-1, 1]

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        logits, pooled = self.net(x)                                    # (b, 400), (b, 1024)
        return {"logits": logits, "pool": pooled, "probs": logits.softmax(-1)}[self.kind]

    def protocol(self) -> dict:
        return {"detector": self.name, "weights": weights_id(self.weights), "resolution": self.size, "crop": self.crop,
                "resize": "bilinear, align_corners=False, no antialias", "input_range": "x/127.5-1"}


class C3DDetector(Detector):
    """C3D fine-tuned on UCF101 (TGAN2 c3d_ucf101) from a user's converted checkpoint: 101-way softmax."""

    name, feature_dim = "c3d_ucf101_probs", 101

    def __init__(self, ckpt: str, device: str | torch.device = "cpu", channels_last: bool = False):
        super().__init__(device, channels_last)
        self.ckpt = ckpt
        self.net, self.weights = load_c3d(ckpt)
        self.net = self.net.to(self.device)

    def prepare(self, clip: np.ndarray) -> torch.Tensor:
        if len(clip) < C3D_FRAMES:
            raise ValueError(f"C3D needs {C3D_FRAMES} frames, got {len(clip)}")
        return resize_clip(clip[:C3D_FRAMES], C3D_SIZE, "full", align_corners=True)  # (3, 16, 112, 112) 0..255

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).softmax(-1)                                  # (b, 101)

    def protocol(self) -> dict:
        return {"detector": self.name, "weights": self.weights, "resolution": C3D_SIZE, "crop": "full",
                "resize": "bilinear, align_corners=True (chainer resize_images)", "frames_used": C3D_FRAMES}


DETECTORS = {"i3d": I3DDetector, "c3d_ucf101": C3DDetector}
