"""Feature extractors ("detectors"): one interface for every network that turns clips into vectors.

    detector.preprocess(clip)  uint8 (t, h, w, 3) -> float (3, t, s, s): a picklable Preprocess (DataLoader workers
                               run it on the CPU; on a GPU the main process runs it on the device, from uint8)
    detector.features(batch)   (b, 3, t, s, s) -> (b, feature_dim) float32 on the CPU, TF32 off
    detector(videos)           uint8 (b, t, h, w, 3) -> (b, feature_dim): both steps
    detector.protocol()        every field that changes the numbers (weights id, preprocessing, numerics)
    detector.weights_file()    the weights file (its sha256 goes into protocol cards, eval/card.py)

Registry: DETECTORS = {"i3d": I3DDetector, "c3d_ucf101": C3DDetector, "videomae": VideoMAEDetector}.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from .c3d import C3D_FRAMES, C3D_SIZE, load_c3d
from .i3d import MIN_FRAMES, default_weights_path, load_tfhub_i3d, weights_id
from .preprocess import Preprocess

# the original FVD input: whole frame, TF1 legacy bilinear to 224, x/127.5 - 1
TF_FVD_INPUT = Preprocess(224, "tf1", "full", None, "x/127.5-1")
# TGAN2's C3D input (chainer resize_images, align_corners=True), values 0..255 (the network scales them itself)
C3D_INPUT = Preprocess(C3D_SIZE, "align-corners", "full", None, "x")


@contextlib.contextmanager
def exact_float32():
    """Full float32 matmuls and convolutions (TF32 off) while computing features; the previous settings come back
    after. Metric numerics must not depend on the GPU generation (Ampere+ defaults cuDNN convs to TF32)."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


class Detector:
    name: str = "detector"
    feature_dim: int = 0
    preprocess: Preprocess

    def __init__(self, device: str | torch.device = "cpu", channels_last: bool = True):
        self.device = torch.device(device)
        self.channels_last = channels_last

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def features(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, torch.float32, non_blocking=True)       # (b, 3, t, s, s)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with exact_float32():
            return self._net(x).float().cpu()                              # (b, feature_dim)

    def __call__(self, videos: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (b, t, h, w, 3) -> (b, feature_dim)."""
        return self.features(torch.stack([self.preprocess(np.asarray(v)) for v in videos]))

    def numerics(self) -> dict:
        """Device type and precision: part of the cache key (the GPU model is recorded in the environment)."""
        return {"device": self.device.type, "dtype": "float32", "tf32": False}

    def protocol(self) -> dict:
        raise NotImplementedError

    def weights_file(self) -> Path | None:
        """The weights file the network was loaded from (its sha256 goes into protocol cards)."""
        return None


class I3DDetector(Detector):
    """TF-Hub Kinetics-400 I3D. features="logits": time-averaged 400-d logits (the FVD standard);
    "pool": the 1024-d pooled Mixed_5c features; "probs": softmax of the logits (I3D-Kinetics IS)."""

    FEATURES = {"logits": 400, "pool": 1024, "probs": 400}

    def __init__(self, features: str = "logits", preprocess: Preprocess = TF_FVD_INPUT, weights: str | None = None,
                 device: str | torch.device = "cpu", channels_last: bool = True, net: torch.nn.Module | None = None):
        super().__init__(device, channels_last)
        if features not in self.FEATURES:
            raise ValueError(f"features must be one of {list(self.FEATURES)}, got {features!r}")
        if preprocess.size != 224:
            raise ValueError("the TF-Hub I3D head pools a 7x7 map: input must be 224x224")
        self.kind, self.preprocess, self.weights = features, preprocess, weights
        self.name, self.feature_dim = f"i3d_{features}", self.FEATURES[features]
        self.net = net if net is not None else load_tfhub_i3d(weights).to(self.device)   # `net`: share one I3D
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last_3d)

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] < MIN_FRAMES:
            raise ValueError(f"the I3D needs clips of at least {MIN_FRAMES} frames, got {x.shape[2]}")
        logits, pooled = self.net(x)                                    # (b, 400), (b, 1024)
        return {"logits": logits, "pool": pooled, "probs": logits.softmax(-1)}[self.kind]

    def protocol(self) -> dict:
        return {"detector": self.name, "weights": weights_id(self.weights), **self.preprocess.protocol(),
                "numerics": self.numerics()}

    def weights_file(self) -> Path:
        return Path(self.weights) if self.weights is not None else default_weights_path()


class C3DDetector(Detector):
    """C3D fine-tuned on UCF101 (TGAN2 c3d_ucf101) from a user's converted checkpoint: 101-way softmax of the
    first 16 frames."""

    name, feature_dim = "c3d_ucf101_probs", 101

    def __init__(self, ckpt: str, device: str | torch.device = "cpu", channels_last: bool = False):
        super().__init__(device, channels_last)
        self.ckpt, self.preprocess = ckpt, C3D_INPUT
        self.net, self.weights = load_c3d(ckpt)
        self.net = self.net.to(self.device)

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] < C3D_FRAMES:
            raise ValueError(f"C3D needs {C3D_FRAMES} frames, got {x.shape[2]}")
        return self.net(x[:, :, :C3D_FRAMES]).softmax(-1)              # (b, 101)

    def protocol(self) -> dict:
        return {"detector": self.name, "weights": self.weights, **self.preprocess.protocol(),
                "frames_used": C3D_FRAMES, "numerics": self.numerics()}

    def weights_file(self) -> Path:
        return Path(self.ckpt)


class VideoMAEDetector(Detector):
    """VideoMAE-v2 ViT features (cd-fvd's content-debiased FVD): the fc_norm'ed token mean, from a local checkpoint."""

    name = "videomae_v2"

    def __init__(self, ckpt: str, preprocess: Preprocess, device: str | torch.device = "cpu", **geometry):
        from .videomae import load_videomae

        super().__init__(device, channels_last=False)
        self.ckpt, self.preprocess = ckpt, preprocess
        self.net, self.weights = load_videomae(ckpt, **geometry)   # geometry: heads, img_size, all_frames
        self.net = self.net.to(self.device)
        self.feature_dim = self.net.embed_dim

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)                                              # (b, embed_dim)

    def protocol(self) -> dict:
        return {"detector": self.name, "weights": self.weights, **self.preprocess.protocol(),
                "numerics": self.numerics()}

    def weights_file(self) -> Path:
        return Path(self.ckpt)


DETECTORS = {"i3d": I3DDetector, "c3d_ucf101": C3DDetector, "videomae": VideoMAEDetector}
