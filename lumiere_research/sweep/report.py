"""The sweep's table: every metric over training seeds as mean, std and a 95% interval (Student t), written as
markdown and JSON, with a plot (learning curves when the spec scores several step counts)."""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from lumiere_pl.utils.atomic import atomic_path, write_text
from lumiere_research.sweep.spec import SweepSpec, expand

# (key in the table, how to read it from a score JSON, format, label)
METRICS: List[Tuple[str, str, str, str]] = [
    ("direction_match", "motion.direction_match", ".0%", "direction match"),
    ("jerk", "motion.jerk", ".3f", "jerk"),
    ("jump", "motion.jump", ".3f", "jump"),
    ("boundary_ratio", "motion.boundary_ratio", ".2f", "block boundary / inner step"),
    ("detected", "motion.detected", ".0%", "shape found"),
    ("colour", "appearance.colour", ".0%", "colour right"),
    ("shape", "appearance.shape", ".0%", "shape right"),
    ("fvd", "fvd.value", ".1f", "FVD"),
    ("flow_magnitude", "flow.magnitude", ".3f", "motion magnitude (diagonals/s)"),
    ("flow_dynamic", "flow.dynamic_degree", ".0%", "dynamic degree (DIS flow)"),
    ("flow_flicker", "flow.flicker", ".2f", "flicker"),
    ("flow_warping", "flow.warping_error", ".4f", "warping error"),
    ("flow_frechet", "flow.frechet", ".3f", "flow Frechet distance"),
    ("swap_separated", "text_swap.separated", ".0%", "text swap: separated"),
    ("swap_separation", "text_swap.separation", ".3f", "text swap: separation"),
    ("loss_ratio_mid", "loss_by_noise", ".2f", "loss / T2I per frame at t=0.5"),
    ("swap_loss_mid", "loss_by_noise.swap", ".3f", "loss: swapped direction / true at t=0.5"),
    ("x0_jerk_97", "x0_motion.jerk@0.97", ".3f", "jerk of x0 from real clips noised to t=0.97"),
    ("x0_boundary_97", "x0_motion.boundary_ratio@0.97", ".2f", "block boundary / inner of that x0"),
    ("train_tflops", "train_tflops", ".1f", "train TFLOPs"),
    ("train_minutes", "train_seconds", ".1f", "train min"),
    ("sample_s", "sample_seconds_per_video", ".2f", "sample s / video"),
]


def _read(score: dict, path: str) -> float:
    if path.startswith("loss_by_noise"):
        lbn = score.get("loss_by_noise")
        if not lbn:
            return math.nan
        i = lbn["times"].index(0.5) if 0.5 in lbn["times"] else len(lbn["times"]) // 2
        other = "stunet_swapped_direction" if path.endswith(".swap") else "t2i_per_frame"
        return lbn["stunet"][i] / lbn[other][i] if path == "loss_by_noise" else lbn[other][i] / lbn["stunet"][i]
    if "@" in path:                                          # a curve over noise levels, read at one time
        path, at = path.split("@")
        group, key = path.split(".")
        curve = score.get(group)
        if not curve or float(at) not in curve["times"]:
            return math.nan
        return float(curve[key][curve["times"].index(float(at))])
    node = score
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return math.nan
        node = node[part]
    value = float(node) if node is not None else math.nan
    return value / 60.0 if path == "train_seconds" else value


def summary(values: List[float]) -> Dict[str, float]:
    """mean, std (ddof 1), half-width of the 95% t-interval of the mean, n (nan values left out)."""
    from scipy import stats

    v = np.array([x for x in values if not math.isnan(x)], dtype=float)
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci95": math.nan, "n": 0}
    std = float(v.std(ddof=1)) if n > 1 else math.nan
    ci = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
    return {"mean": float(v.mean()), "std": std, "ci95": ci, "n": n}


def collect(spec: SweepSpec) -> List[dict]:
    """One row per (label, steps) with each metric's summary over the seeds found, plus the per-seed values."""
    groups: Dict[Tuple[str, int], List[dict]] = defaultdict(list)
    order: List[str] = []
    for run in expand(spec):
        if run.label not in order:
            order.append(run.label)
        for f in sorted((spec.root / "scores" / run.name).glob("step*.json")):
            score = json.loads(f.read_text())
            groups[(run.label, int(score["steps"]))].append(score)
    rows = []
    for (label, steps), scores in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        row = {"label": label, "steps": steps, "seeds": sorted(s["seed"] for s in scores),
               "fps": scores[0].get("fps", 0.0)}
        for key, path, _, _ in METRICS:
            values = [_read(s, path) for s in sorted(scores, key=lambda s: s["seed"])]
            row[key] = {**summary(values), "values": values}
        row["loss_by_noise"] = _mean_curve([s.get("loss_by_noise") for s in scores])
        row["x0_motion"] = _mean_curve([s.get("x0_motion") for s in scores])
        row["per_transition"] = _mean_list([s.get("motion", {}).get("per_transition") for s in scores])
        rows.append(row)
    return rows


def _mean_list(lists) -> List[float]:
    lists = [x for x in lists if x]
    return [float(v) for v in np.nanmean(np.array(lists, dtype=float), axis=0)] if lists else []


def _mean_curve(curves) -> dict:
    curves = [c for c in curves if c]
    if not curves:
        return {}
    return {"times": curves[0]["times"], **{k: _mean_list([c[k] for c in curves])
                                            for k in curves[0] if k != "times"}}


def real_reference(spec: SweepSpec, n: int, fps: float) -> dict:
    """The metrics of the first n held-out clips (the ceiling), when the sweep wrote them: the shapes tracker's
    (moving-shapes set) and the flow figures (any set)."""
    from eval.motion import motion_stats, summarise as flow_summary
    from lumiere_pl.data.video_io import decode

    captions_file = spec.root / "real_captions.json"
    files = [spec.root / "real" / f"{i:06d}.mp4" for i in range(n)]
    if not captions_file.is_file() or not all(f.is_file() for f in files):
        return {}
    captions = json.loads(captions_file.read_text())[:n]
    clips = [decode(f.read_bytes()) for f in files]
    out: dict = {}
    if spec.score.motion and all("moving" in c for c in captions):
        from lumiere_research.shapes_motion import summarise
        out.update(summarise(clips, captions))
    if spec.score.flow and len(clips[0]) >= 5:
        flow = flow_summary([motion_stats(c, fps) for c in clips], b=0)
        out.update({f"flow_{k}": flow[name]["value"] for k, name in (
            ("magnitude", "magnitude"), ("dynamic", "dynamic_degree"), ("flicker", "flicker"),
            ("warping", "warping_error"))})
    return out


def _cell(m: dict, fmt: str) -> str:
    if m["n"] == 0 or math.isnan(m["mean"]):
        return "-"
    text = format(m["mean"], fmt)
    if m["n"] > 1 and not math.isnan(m["ci95"]):
        text += " ± " + format(m["ci95"], fmt)
    return text


def markdown(spec: SweepSpec, rows: List[dict], real: dict) -> str:
    shown = [(k, f, label) for k, _, f, label in METRICS if any(r[k]["n"] for r in rows)]
    head = "| run | steps | seeds | " + " | ".join(label for _, _, label in shown) + " |\n"
    head += "|---" * (3 + len(shown)) + "|\n"
    lines = [f"| {r['label']} | {r['steps']} | {len(r['seeds'])} | " + " | ".join(_cell(r[k], f) for k, f, _ in shown)
             + " |" for r in rows]
    if real:
        ref = {k: real[k] for k in ("direction_match", "jerk", "jump", "detected", "flow_magnitude", "flow_dynamic",
                                    "flow_flicker", "flow_warping") if k in real}
        cells = [format(ref[k], f) if k in ref else "-" for k, f, _ in shown]
        lines.append("| real clips (reference) | - | - | " + " | ".join(cells) + " |")
    s = spec.sample
    keys = {k for k, _, _ in shown}
    defined = [(("direction_match",), "Direction match: share of clips whose tracked shape moves the caption's way "
                                      "(chance 25%)."),
               (("jump", "jerk"), "jump / jerk: mean |step| and |change of step| per frame in frame sides."),
               (("boundary_ratio",), "Block boundary / inner step: mean |step| across a boundary of 2^k frames over "
                                     "the other steps (1 = no block artefact)."),
               (("flow_magnitude", "flow_dynamic", "flow_flicker", "flow_warping"),
                "Motion magnitude, dynamic degree, flicker, warping error: eval/motion.py on OpenCV DIS flow (not "
                "RAFT)."),
               (("flow_frechet",), "Flow Frechet distance: the samples' flow statistics against as many held-out "
                                   "clips (docs/EVAL.md).")]
    note = " ".join([f"\nMean ± half-width of the 95% t-interval over training seeds. N = {s.n} prompts per run "
                     f"(the captions of the reference clips), noise seeds {s.seed}..{s.seed + s.n - 1}, the same "
                     f"for every run."] + [text for ks, text in defined if keys & set(ks)]) + "\n"
    return head + "\n".join(lines) + "\n" + note


def plot(spec: SweepSpec, rows: List[dict], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("direction_match", "jerk", "fvd", "flow_frechet", "flow_magnitude", "swap_separated")
            if any(r[k]["n"] for r in rows)]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    labels = list(dict.fromkeys(r["label"] for r in rows))
    curves = len({r["steps"] for r in rows}) > 1
    for ax, key in zip(axes[0], keys):
        for i, label in enumerate(labels):
            rs = [r for r in rows if r["label"] == label]
            y = [r[key]["mean"] for r in rs]
            err = [0.0 if math.isnan(r[key]["ci95"]) else r[key]["ci95"] for r in rs]
            if curves:
                ax.errorbar([r["steps"] for r in rs], y, yerr=err, marker="o", capsize=3, label=label)
            else:
                ax.bar(i, y[0], yerr=err[0], capsize=3, label=label)
        ax.set_title(dict((k, lab) for k, _, _, lab in METRICS)[key])
        ax.set_xlabel("training steps" if curves else "")
        if not curves:
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        if key == "direction_match":
            ax.axhline(0.25, color="grey", ls=":", lw=1)
    if curves:
        axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{spec.name}: mean and 95% interval over seeds {list(spec.seeds)}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:                    # eval/atomic.py: a .tmp.png beside it, renamed when whole
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def write_report(spec: SweepSpec) -> Tuple[Path, Path, Path]:
    """table.md, table.json and table.png under the sweep's folder."""
    rows = collect(spec)
    if not rows:
        raise FileNotFoundError(f"no scores under {spec.root / 'scores'}: nothing has finished yet")
    fps = max((r.get("fps", 0.0) for r in rows), default=0.0) or 8.0
    real = real_reference(spec, spec.sample.n, fps) if (spec.score.motion or spec.score.flow) else {}
    md, js, png = spec.root / "table.md", spec.root / "table.json", spec.root / "table.png"
    for path, text in ((md, markdown(spec, rows, real)), (js, json.dumps({"rows": rows, "real": real}, indent=2))):
        write_text(path, text)
    plot(spec, rows, png)
    return md, js, png
