"""Table 1 of the paper (zero-shot UCF101) beside our row: markdown and a PNG chart."""
from __future__ import annotations

from pathlib import Path

# Lumiere, Table 1, as reported (FVD lower is better, IS higher is better); None = not reported.
TABLE1 = [("MagicVideo", 655.00, None), ("Emu Video", 606.20, 42.70), ("Video LDM", 550.61, 33.45),
          ("Show-1", 394.46, 35.42), ("Make-A-Video", 367.23, 33.00), ("PYoCo", 355.19, 47.76),
          ("SVD", 242.02, None), ("Lumiere", 332.49, 37.54)]


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def markdown(result: dict, name: str = "lumiere-pl (ours)") -> str:
    fvd, is_ = result["fvd"], result.get("is")
    comparable_is = is_ is not None and is_["metric"] == "is"
    rows = ["| method | FVD | IS |", "|---|---|---|"]
    rows += [f"| {m} | {_fmt(f)} | {_fmt(i)} |" for m, f, i in TABLE1]
    is_cell = _fmt(is_["value"]) if comparable_is else (f"({is_['value']:.2f} I3D-Kinetics IS, not comparable)" if is_ else "-")
    interval = f" [{fvd['low']:.2f}, {fvd['high']:.2f}]" if fvd.get("low") is not None else ""
    rows.append(f"| **{name}** | **{fvd['value']:.2f}**{interval} | {is_cell} |")
    p = fvd["protocol"]
    timing = f"resampled to {p['fps']} fps" if p.get("fps") else f"stride {p['stride']} (native frame rate)"
    crop = "whole frame squashed to a square" if p["crop"] == "full" else "centre square crop"
    real = fvd["real"]
    split = (f"UCF101 split {real['split_index']} {real['ucf101_split']} ({real['n_videos']} of {real['listed']} listed "
             f"videos, {real['subset']})" if "ucf101_split" in real else None)
    notes = [
        "", "Paper rows: Lumiere (Bar-Tal et al. 2024), Table 1, zero-shot UCF101, as reported "
        "(PYoCo's IS is 47.46 in Snap Video's table).", "",
        f"**Our row's protocol**: FVD preset `{fvd.get('preset')}` ({fvd.get('covariance')} covariance); N = "
        f"{fvd['n_fake']} generated videos vs {fvd['n_real']} real clips; {p['frames']} frames, {timing}, "
        f"{p['offset']} offset; I3D weights `{p['weights']}`; {crop}, {p['resize']} bilinear to {p['size']}x{p['size']}; "
        f"feature: {p['detector']}; fakes: {fvd['fake'].get('codecs')}."
        + (f" Our FVD's interval: 95 % bootstrap over videos ({fvd['interval']['b']} resamples of "
           f"{fvd['interval']['resampled']}, re-centred on the value; docs/EVAL.md)." if fvd.get("low") is not None
           else ""),
        f"Real statistics: {split or result.get('real_note') or real.get('source', {}).get('path')}.",
    ]
    if is_ is not None:
        ip = is_["is_protocol"]
        notes.append(f"IS: {is_['label']}; protocol `{ip['name']}`{'' if ip['exact_preset'] else ' (changed)'}: "
                     f"{ip['loops']} loop(s) x {ip['samples']} videos, {ip['splits']} split(s).")
    if fvd["n_fake"] < 2048:
        notes.append(f"**Not comparable to the paper**: N = {fvd['n_fake']} (the paper uses ~10,000); FVD is biased "
                     "upward at small N and below 400 videos the covariances are singular.")
    if "prompts" in result:
        notes.append(f"Prompts: {result['prompts']}.")
    return "\n".join(rows + notes) + "\n"


def chart(result: dict, path: str | Path, name: str = "ours") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [m for m, _, _ in TABLE1] + [name]
    values = [f for _, f, _ in TABLE1] + [result["fvd"]["value"]]
    colors = ["#9aa5b1"] * len(TABLE1) + ["#d9480f"]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    ax.barh(labels, values, color=colors)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.0f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("FVD on zero-shot UCF101 (lower is better)")
    ax.set_title(f"Lumiere Table 1 vs ours (N = {result['fvd']['n_fake']}; see report for protocol)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def n_curve_chart(result: dict, path: str | Path) -> Path:
    """FVD against N (result["n_curve"]: mean and min-max of draws per N), with the full set's bootstrap interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["n_curve"]
    n = [c["n"] for c in curve]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.fill_between(n, [c["min"] for c in curve], [c["max"] for c in curve], color="#9aa5b1", alpha=0.5,
                    label="min-max over draws")
    ax.plot(n, [c["mean"] for c in curve], "o-", color="#1c7ed6", label="mean of draws")
    if result.get("low") is not None:
        top = max(n)
        ax.errorbar([top], [result["value"]], yerr=[[result["value"] - result["low"]], [result["high"] - result["value"]]],
                    fmt="s", color="#d9480f", capsize=4, label="all videos, 95% bootstrap interval")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N videos per set (subsets drawn without replacement)")
    ax.set_ylabel(f"FVD ({result.get('preset')})")
    ax.set_title("FVD against N: FVD is biased upward at small N; compare values at equal N", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
