"""Motion metrics without learned weights, from OpenCV DIS flow (eval/flow.py): per video, per set with bootstrap
intervals, and a Frechet distance between the flow statistics of two sets. Definitions: docs/EVAL.md, "Motion".

    stats = motion_stats(frames, fps)          # frames uint8 (t h w 3), t >= 2; fps: the clip's frame rate
    table = summarise([stats, ...])            # {metric: {"value", "low", "high", "n"}}
    fmd = flow_frechet([real stats...], [fake stats...])   # {"value", "low", "high", "n_real", "n_fake", ...}

Per video (flow F_i from frame i to i+1 and B_i back, on the flow grid; diag = the grid's diagonal in pixels):
  magnitude        mean over pairs and pixels of |F_i| / diag * fps: frame diagonals per second
  velocity_x, _y   the mean flow vector in the same unit (x right, y down); direction_deg its angle (0 = right,
                   90 = down)
  dynamic          VBench's dynamic-degree rule on DIS flow (NOT RAFT: the values are not VBench's): frames taken
                   every max(1, round(fps / 8)); per pair of taken frames the mean of the largest 5 % of |flow|;
                   the video is dynamic when at least round(4 n / 16) pairs exceed max(1, 8 / fps) * 6 * s / 256
                   (n taken frames, s the grid's short side in pixels)
  flicker          VBench's temporal-flickering quantity: mean |frame_{i+1} - frame_i| over pairs, pixels and
                   channels, 0..255, at the decoded size (VBench reports 1 - flicker / 255)
  warping_error    EvalCrafter's: mean over pairs of the mean squared difference (RGB in [0, 1], on the grid)
                   between frame i and frame i+1 warped back by F_i, over the pixels that pass the forward-backward
                   check (eval/flow.consistent); consistent_share = the share of pixels that pass
  features         per-clip flow statistics (FEATURE_DIM = 68) for the flow Frechet distance
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .bootstrap import DEFAULT_B_FRECHET, DEFAULT_B_MEAN, frechet_from_rows, frechet_interval, mean_interval
from .flow import FLOW_SHORT_SIDE, DISFlow, consistent, flow_grid, grey, sample, to_grid

SET_METRICS = ("magnitude", "dynamic", "flicker", "warping_error")   # summarised per set (dynamic -> dynamic degree)
LABELS = {"magnitude": "motion magnitude (diagonals/s)",
          "dynamic": "dynamic degree (VBench rule, DIS flow, not RAFT)",
          "flicker": "flicker (mean abs frame difference, 0..255, VBench)",
          "warping_error": "warping error (MSE, EvalCrafter, DIS flow)"}
SPEED_EDGES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)   # diagonals per second: 9 speed bins [0, .01), ..., [2, inf)
DIRECTIONS = 8          # direction bins of 45 degrees, centred on 0 (right), 45 (down-right), ...
SEGMENTS = 4            # equal parts of the clip's frame pairs
FEATURE_DIM = SEGMENTS * (len(SPEED_EDGES) + 1 + DIRECTIONS)
MIN_FRAMES = SEGMENTS + 1
TOP_SHARE = 0.05        # VBench: the largest 5 % of flow magnitudes
MIN_SIDE = 12           # OpenCV's DIS refuses frames whose width and height are both smaller


def _dynamic(flows: list[np.ndarray], taken: int, fps: float, short: int) -> tuple[bool, int, int]:
    """VBench's check_move on per-pair flows of the taken frames: (dynamic, pairs above threshold, pairs needed)."""
    threshold = max(1.0, 8.0 / fps) * 6.0 * short / 256.0
    needed = round(4 * taken / 16.0)                # Python's round, as VBench (halves to even)
    above = 0
    for f in flows:
        mag = np.sort(np.linalg.norm(f, axis=-1).ravel())[::-1]
        top = mag[:max(1, int(mag.size * TOP_SHARE))].mean()
        above += bool(top > threshold)
    return bool(flows) and above >= needed, above, needed


def _pair_features(flow: np.ndarray, scale: float) -> np.ndarray:
    """(17,) for one pair: share of pixels per speed bin (9), share of pixels moving at >= SPEED_EDGES[0] per
    direction bin (8). scale: flow pixels -> diagonals per second."""
    speed = np.linalg.norm(flow, axis=-1).ravel() * scale                      # (h*w,)
    n = speed.size
    hist = np.bincount(np.searchsorted(SPEED_EDGES, speed, side="right"), minlength=len(SPEED_EDGES) + 1) / n
    angle = np.degrees(np.arctan2(flow[..., 1], flow[..., 0])).ravel()          # (-180, 180], y down
    sector = np.round(angle / (360.0 / DIRECTIONS)).astype(int) % DIRECTIONS
    moving = speed >= SPEED_EDGES[0]
    directions = np.bincount(sector[moving], minlength=DIRECTIONS) / n
    return np.concatenate([hist, directions])


def motion_stats(frames: np.ndarray, fps: float, short_side: int = FLOW_SHORT_SIDE, flow: DISFlow | None = None) -> dict:
    """Every per-video quantity of the module docstring for one clip, frames uint8 (t h w 3), t >= 2."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 2:
        raise ValueError(f"frames must be uint8 (t, h, w, 3) with t >= 2, got {frames.dtype} {frames.shape}")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    flow = flow or DISFlow()
    t = len(frames)
    size = flow_grid(*frames.shape[1:3], short_side)
    if max(size) < MIN_SIDE:
        raise ValueError(f"frames of {size[0]}x{size[1]} pixels on the flow grid: DIS needs a side of at least "
                         f"{MIN_SIDE} pixels")
    small = to_grid(frames, size)                                               # (t H W 3) uint8
    g = grey(small)                                                             # (t H W)
    rgb = small.astype(np.float32) / 255.0
    diag = math.hypot(*size)
    scale = fps / diag                                                          # flow pixels -> diagonals/s
    forward = [flow(g[i], g[i + 1]) for i in range(t - 1)]                      # (H W 2) each
    mags, vel, warp, share, feats = [], [], [], [], []
    for i, f in enumerate(forward):
        mags.append(np.linalg.norm(f, axis=-1).mean())
        vel.append(f.reshape(-1, 2).mean(0))
        ok = consistent(f, flow(g[i + 1], g[i]))                                # (H W)
        warped, _ = sample(rgb[i + 1], f)                                       # (H W 3)
        share.append(ok.mean())
        warp.append(float(((warped - rgb[i]) ** 2)[ok].mean()) if ok.any() else math.nan)
        feats.append(_pair_features(f, scale))
    step = max(1, round(fps / 8.0))
    if step == 1:
        dd_flows, taken = forward, t
    else:
        idx = np.arange(0, t, step)
        dd_flows, taken = [flow(g[a], g[b]) for a, b in zip(idx[:-1], idx[1:])], len(idx)
    dynamic, above, needed = _dynamic(dd_flows, taken, fps, min(size))
    diffs = [np.abs(frames[i + 1].astype(np.int16) - frames[i].astype(np.int16)).mean() for i in range(t - 1)]
    vx, vy = np.mean(vel, axis=0) * scale
    finite = [w for w in warp if not math.isnan(w)]
    return {"magnitude": float(np.mean(mags) * scale), "velocity_x": float(vx), "velocity_y": float(vy),
            "direction_deg": float(np.degrees(np.arctan2(vy, vx))),
            "dynamic": float(dynamic), "dynamic_pairs_above": above, "dynamic_pairs_needed": needed,
            "flicker": float(np.mean(diffs)),
            "warping_error": float(np.mean(finite)) if finite else math.nan,
            "consistent_share": float(np.mean(share)),
            "frames": t, "fps": float(fps), "flow_size": list(size),
            "features": clip_features(np.stack(feats)) if t >= MIN_FRAMES else None}


def clip_features(pairs: np.ndarray) -> np.ndarray:
    """(p, 17) per-pair features -> (FEATURE_DIM,): the mean over each of SEGMENTS equal parts of the pairs
    (np.array_split), concatenated in time order. Needs p >= SEGMENTS."""
    if len(pairs) < SEGMENTS:
        raise ValueError(f"the flow features need at least {SEGMENTS} frame pairs ({MIN_FRAMES} frames), got {len(pairs)}")
    return np.concatenate([part.mean(0) for part in np.array_split(pairs, SEGMENTS)])


def summarise(per_video: list[dict], b: int = DEFAULT_B_MEAN, seed: int = 0) -> dict:
    """Set means of SET_METRICS with percentile-bootstrap intervals over videos: {metric: {"value", "low", "high",
    "n", "label"}}; "dynamic" becomes "dynamic_degree" (the share of dynamic videos). NaN values are left out."""
    out = {}
    for key in SET_METRICS:
        name = "dynamic_degree" if key == "dynamic" else key
        out[name] = {**mean_interval([v[key] for v in per_video], b, seed), "label": LABELS[key]}
    return out


def _features(stats: list[dict] | np.ndarray) -> np.ndarray:
    if isinstance(stats, np.ndarray):
        return stats.astype(np.float64)
    rows = [s["features"] for s in stats if s.get("features") is not None]
    return np.stack(rows).astype(np.float64) if rows else np.zeros((0, FEATURE_DIM))


def flow_frechet(real: list[dict] | np.ndarray, fake: list[dict] | np.ndarray, b: int = DEFAULT_B_FRECHET,
                 seed: int = 0) -> dict:
    """Frechet distance between Gaussians fitted to the clips' flow features (unbiased covariance), with its
    bootstrap interval over both sets' videos (eval/bootstrap.py). Clips shorter than MIN_FRAMES have no features
    and are left out (n_real / n_fake count those used)."""
    xr, xf = _features(real), _features(fake)
    if len(xr) < 2 or len(xf) < 2:
        raise ValueError(f"the flow Frechet distance needs at least 2 clips of >= {MIN_FRAMES} frames per set, "
                         f"got {len(xr)} real and {len(xf)} generated")
    for n, side in ((len(xr), "real"), (len(xf), "generated")):
        if n <= FEATURE_DIM:
            warnings.warn(f"flow Frechet distance: {n} {side} clips <= {FEATURE_DIM} (the feature dimension): the "
                          "covariance is singular and the distance is biased upward; compare only values at equal N",
                          UserWarning)
    value = frechet_from_rows(xr, xf)
    interval = frechet_interval(value, xr, xf, b, seed)
    return {"value": value, "low": interval.pop("low"), "high": interval.pop("high"), "n_real": len(xr),
            "n_fake": len(xf), "interval": interval, "feature_dim": FEATURE_DIM}
