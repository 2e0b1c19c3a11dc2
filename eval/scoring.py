"""Scoring functions behind the CLI: real statistics (cached), FVD, IS, the UCF101 protocol, the preset comparison.
Plain Python, no Lightning; under torch.distributed every rank extracts its share and all ranks get the same result.
"""
from __future__ import annotations

import platform
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from . import __version__
from . import card
from .bootstrap import DEFAULT_B_FRECHET, fvd_curve, fvd_interval
from .cache import cache_path, check_stats_file, load_stats, save_stats
from .detectors import Detector
from .errors import EvalError
from .extract import Extracted, extract, rank_world
from .frechet import FeatureStats, fvd_from_stats
from .inception import ISProtocol, inception_score
from .presets import FVD_PRESETS, FVDPreset
from .video_io import ClipSpec, source_fingerprint

I3D_IS_LABEL = "I3D-Kinetics-400 Inception Score: NOT the paper's C3D-UCF101 IS, not comparable to Table 1"
C3D_IS_LABEL = "Inception Score (C3D-UCF101)"


def environment(device: torch.device | str | None = None) -> dict:
    env = {"eval_version": __version__, "torch": torch.__version__, "numpy": np.__version__,
           "python": platform.python_version(), "machine": platform.processor() or platform.machine()}
    if device is not None and torch.device(device).type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def _stats_protocol(detector: Detector, spec: ClipSpec, source, limit, source_info: dict | None) -> dict:
    return {**detector.protocol(), **spec.protocol(), "max_videos": limit, "source": source_fingerprint(source),
            **(source_info or {})}


def real_stats(source, detectors: dict[str, Detector], spec: ClipSpec, limit: int | None = None, batch_size: int = 8,
               cache_dir=None, use_cache: bool = True, workers: int | None = None, source_info: dict | None = None,
               desc: str = "real") -> dict[str, tuple[FeatureStats, dict]]:
    """Per detector: statistics of a source, from a stats .npz (protocol checked), the cache, or one extraction
    pass for every detector that missed."""
    source = Path(source)
    if source.suffix == ".npz":
        if len(detectors) != 1:
            raise EvalError(f"{source}: a stats file holds one protocol's statistics; this command needs the real videos")
        (name, det), = detectors.items()
        stats, protocol = load_stats(source)
        check_stats_file(source, protocol, {**det.protocol(), **spec.protocol()})
        return {name: (stats, {**protocol, "stats_file": str(source), "cache": "file"})}
    out, todo = {}, {}
    for name, det in detectors.items():
        protocol = _stats_protocol(det, spec, source, limit, source_info)
        path = cache_path(protocol, cache_dir)
        if use_cache and path.is_file():
            stats, stored = load_stats(path, protocol)
            out[name] = (stats, {**stored, "n": stats.n, "cache": f"hit {path}"})
        else:
            todo[name] = (det, protocol, path)
    if todo:
        from .rates import source_rates

        result = extract(source, {n: d for n, (d, _, _) in todo.items()}, spec, batch_size, limit, workers, desc=desc)
        record = {**result.record(), "rates": source_rates(source)}       # the declared rates, for later runs' rule
        for name, (det, protocol, path) in todo.items():
            stats = result.stats(name)
            if use_cache and rank_world()[0] == 0:
                save_stats(stats, protocol, path, record)
            out[name] = (stats, {**protocol, **record, "cache": f"wrote {path}" if use_cache else "off"})
    return {name: out[name] for name in detectors}


def frechet(real: FeatureStats, fake: FeatureStats, covariance: str, real_name, fake_name) -> tuple[float, list[str]]:
    """FVD value and the warnings it raised (few samples, ill-conditioned sqrtm)."""
    for stats, name in ((real, real_name), (fake, fake_name)):
        if stats.n < 2:
            raise EvalError(f"{name}: {stats.n} readable video(s); FVD needs at least 2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fvd_from_stats(real, fake, covariance)
    return value, [str(w.message) for w in caught]


def fvd_card(detector: Detector, spec: ClipSpec, preset: FVDPreset, n_real: int, n_fake: int, real_protocol: dict,
             rates: dict | None = None) -> dict:
    """Every field that moves an FVD (eval/card.py)."""
    return {"metric": "fvd", **card.detector_fields(detector), **card.clip_fields(spec.protocol(), rates),
            "preset": preset.name, "covariance": preset.covariance, "n_real": n_real, "n_fake": n_fake,
            **card.real_fields(real_protocol)}


def fvd_record(value: float, warns: list[str], rstats: FeatureStats, fstats: FeatureStats, preset: FVDPreset,
               bootstrap: int, seed: int, curve: bool) -> dict:
    """The value with its bootstrap interval, N, the preset, warnings and (curve=True) FVD against N."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # the few-videos warning is in `warns` once already
        interval = fvd_interval(value, rstats, fstats, preset.covariance, bootstrap, seed)
        n_curve = fvd_curve(rstats, fstats, preset.covariance, seed) if curve else None
    out = {"metric": "fvd", "value": value, "low": interval.pop("low"), "high": interval.pop("high"),
           "interval": interval, "n_real": rstats.n, "n_fake": fstats.n, **preset.record(),
           "exact_preset": preset == FVD_PRESETS[preset.name], "warnings": warns}
    if n_curve is not None:
        out["n_curve"] = n_curve
    return out


def fvd_figure(record: dict) -> dict:
    return {"name": f"FVD ({record['preset']})", "value": record["value"], "low": record["low"],
            "high": record["high"], "n": f"real {record['n_real']}, fake {record['n_fake']}"}


def fvd(real, fake, detector: Detector, spec: ClipSpec, preset: FVDPreset = FVD_PRESETS["tf-fvd"], limit_real=None,
        limit_fake=None, batch_size=8, cache_dir=None, use_cache=True, workers=None, real_info=None,
        bootstrap: int = DEFAULT_B_FRECHET, bootstrap_seed: int = 0, curve: bool = False, rates: dict | None = None
        ) -> dict:
    """FVD of two sources with its bootstrap interval (`bootstrap` resamples, 0: none), a protocol card and, with
    curve=True, FVD against N (eval/bootstrap.py). rates: the frame-rate record of eval.rates.resolve."""
    t0 = time.perf_counter()
    (rstats, rprotocol), = real_stats(real, {"fvd": detector}, spec, limit_real, batch_size, cache_dir, use_cache,
                                      workers, real_info).values()
    fake_x = extract(fake, {"fvd": detector}, spec, batch_size, limit_fake, workers, desc="fake")
    fstats = fake_x.stats("fvd")
    value, warns = frechet(rstats, fstats, preset.covariance, real, fake)
    out = fvd_record(value, warns, rstats, fstats, preset, bootstrap, bootstrap_seed, curve)
    out.update({"protocol": {**detector.protocol(), **spec.protocol(), "covariance": preset.covariance},
                "real": rprotocol, "fake": {"source": source_fingerprint(fake), **fake_x.record()},
                "card": fvd_card(detector, spec, preset, rstats.n, fstats.n, rprotocol, (rates or {}).get("rates")),
                "seconds": time.perf_counter() - t0, "env": environment(detector.device)})
    out["figures"] = [fvd_figure(out)]
    return out


def _is_record(probs: np.ndarray, protocol: ISProtocol, detector: Detector, spec: ClipSpec, videos,
               extracted: Extracted) -> dict:
    mean, std, scores = inception_score(probs, protocol)
    c3d = detector.name.startswith("c3d")
    metric, n = ("is" if c3d else "is_i3d_kinetics"), protocol.samples * protocol.loops
    is_card = {"metric": metric, **card.detector_fields(detector), **card.clip_fields(spec.protocol()),
               **{f"is_{k}": v for k, v in protocol.record().items() if k != "exact_preset"}, "n": n}
    return {"metric": metric, "label": C3D_IS_LABEL if c3d else I3D_IS_LABEL,
            "value": mean, "std": std, "scores": scores, "n": n,
            "is_protocol": protocol.record(),
            "protocol": {**detector.protocol(), **spec.protocol(), "source": source_fingerprint(videos)},
            **{k: v for k, v in extracted.record().items() if k != "n"}, "readable": len(extracted.keys),
            "card": is_card, "figures": [{"name": "IS" if c3d else "IS (I3D-Kinetics, not the paper's)",
                                          "value": mean, "std": std, "n": str(n)}]}


def _is_probs(extracted: Extracted, name: str, detector: Detector) -> np.ndarray:
    """Class probabilities (n, k) float64: C3D's softmax, or the softmax of the I3D logits in float64."""
    x = extracted.features[name].astype(np.float64)
    return x if detector.name.startswith("c3d") else torch.from_numpy(x).softmax(-1).numpy()


def inception(videos, detector: Detector, spec: ClipSpec, protocol: ISProtocol, is_samples=None, limit=None,
              batch_size=8, workers=None) -> dict:
    """IS of a folder. `detector`: a C3DDetector, or an I3DDetector with features="logits" (I3D-Kinetics IS)."""
    t0 = time.perf_counter()
    if limit is None and is_samples != "all":   # the protocol reads the first loops x samples videos only
        limit = resolve_is_protocol(protocol, 0, is_samples).samples * protocol.loops
    extracted = extract(videos, {"is": detector}, spec, batch_size, limit, workers, desc="is")
    protocol = resolve_is_protocol(protocol, len(extracted.keys), is_samples)
    out = _is_record(_is_probs(extracted, "is", detector), protocol, detector, spec, videos, extracted)
    return {**out, "seconds": time.perf_counter() - t0, "env": environment(detector.device)}


def resolve_is_protocol(protocol: ISProtocol, available: int, samples: str | int | None) -> ISProtocol:
    """--is-samples all: as many videos per loop as the folder has (n // loops)."""
    if samples == "all":
        return protocol.with_overrides(samples=available // protocol.loops)
    return protocol.with_overrides(samples=int(samples)) if samples is not None else protocol


def ucf101(fake_dir, real, i3d: Detector, spec: ClipSpec, preset: FVDPreset, is_protocol: ISProtocol,
           is_samples=None, c3d: Detector | None = None, prompts=None, limit_real=None, batch_size=8, cache_dir=None,
           use_cache=True, workers=None, real_note=None, real_info=None, bootstrap: int = DEFAULT_B_FRECHET,
           bootstrap_seed: int = 0, rates: dict | None = None) -> dict:
    """FVD (I3D logits) and IS of a folder of generated videos, decoded once for both networks. IS is C3D-UCF101's
    when `c3d` is given; otherwise the I3D-Kinetics IS from the same I3D pass (softmax of the logits), labelled."""
    from .ucf101 import generated_classes

    t0 = time.perf_counter()
    (rstats, rprotocol), = real_stats(real, {"fvd": i3d}, spec, limit_real, batch_size, cache_dir, use_cache,
                                      workers, real_info).values()
    detectors = {"fvd": i3d, **({"is": c3d} if c3d is not None else {})}
    fake = extract(fake_dir, detectors, spec, batch_size, workers=workers, desc="fake")
    fstats = fake.stats("fvd")
    value, warns = frechet(rstats, fstats, preset.covariance, real, fake_dir)
    fvd_out = fvd_record(value, warns, rstats, fstats, preset, bootstrap, bootstrap_seed, False)
    fvd_out.update({"protocol": {**i3d.protocol(), **spec.protocol(), "covariance": preset.covariance},
                    "real": rprotocol, "fake": {"source": source_fingerprint(fake_dir), **fake.record()},
                    "card": fvd_card(i3d, spec, preset, rstats.n, fstats.n, rprotocol, (rates or {}).get("rates"))})
    out = {"fvd": fvd_out}
    is_name, is_det = ("is", c3d) if c3d is not None else ("fvd", i3d)
    protocol = resolve_is_protocol(is_protocol, len(fake.keys), is_samples)
    out["is"] = _is_record(_is_probs(fake, is_name, is_det), protocol, is_det, spec, fake_dir, fake)
    out["per_class"] = dict(sorted(generated_classes(fake_dir, prompts).items()))
    out["real_note"] = real_note or f"{rprotocol.get('source', {}).get('path')} (n = {rstats.n})"
    out["card"] = {**fvd_out["card"], "metric": "ucf101",                 # the FVD's fields, then the IS's
                   **{k if k.startswith("is_") else f"is_{k}": v for k, v in out["is"]["card"].items()}}
    out["figures"] = [fvd_figure(fvd_out), *out["is"]["figures"]]
    out["warnings"] = list(warns)
    out["seconds"], out["env"] = time.perf_counter() - t0, environment(i3d.device)
    return out


def compare_variants(videomae: bool) -> list[tuple[str, FVDPreset]]:
    """Every preset, plus tf-fvd with one choice changed at a time (row label, preset)."""
    tf = FVD_PRESETS["tf-fvd"]
    rows = [("tf-fvd", tf),
            ("tf-fvd, biased covariance (n)", replace(tf, covariance="biased")),
            ("tf-fvd, half-pixel resize", replace(tf, preprocess=replace(tf.preprocess, resize="half-pixel"))),
            ("tf-fvd, centre crop", replace(tf, preprocess=replace(tf.preprocess, crop="center"))),
            ("stylegan-v", FVD_PRESETS["stylegan-v"]), ("cd-fvd", FVD_PRESETS["cd-fvd"])]
    return rows + ([("cd-fvd-videomae", FVD_PRESETS["cd-fvd-videomae"])] if videomae else [])


def compare(real, fake, rows: list[tuple[str, FVDPreset]], make_detector, spec: ClipSpec, limit_real=None,
            limit_fake=None, batch_size=8, cache_dir=None, use_cache=True, workers=None, real_info=None,
            bootstrap: int = DEFAULT_B_FRECHET, bootstrap_seed: int = 0, rates: dict | None = None) -> dict:
    """FVD of one fake set under every row's preset. make_detector(preset) builds one detector per distinct
    (network, preprocessing); each clip is decoded once for all of them."""
    t0 = time.perf_counter()
    detectors, key_of = {}, {}
    for _, preset in rows:
        need = (preset.network, preset.preprocess)
        if need not in key_of:
            key_of[need] = f"{preset.network}-{len(key_of)}"
            detectors[key_of[need]] = make_detector(preset)
    reals = real_stats(real, detectors, spec, limit_real, batch_size, cache_dir, use_cache, workers, real_info)
    fakes = extract(fake, detectors, spec, batch_size, limit_fake, workers, desc="fake")
    table = []
    for label, preset in rows:
        key = key_of[(preset.network, preset.preprocess)]
        fstats = fakes.stats(key)
        value, warns = frechet(reals[key][0], fstats, preset.covariance, real, fake)
        rec = fvd_record(value, warns, reals[key][0], fstats, preset, bootstrap, bootstrap_seed, False)
        table.append({"row": label, "value": value, "low": rec["low"], "high": rec["high"],
                      "interval": rec["interval"], **preset.record(), **preset.preprocess.protocol(),
                      "warnings": warns})
    base = table[0]["value"]
    for row in table:
        row["change_percent"] = 100.0 * (row["value"] - base) / base if base else float("nan")
    any_det = next(iter(detectors.values()))
    n_real, rprotocol = reals[next(iter(reals))][0].n, reals[next(iter(reals))][1]
    compare_card = {"metric": "fvd_compare", "detectors": sorted({d.protocol()["weights"] for d in detectors.values()}),
                    "weights_sha256": sorted({card.file_sha256(d.weights_file()) for d in detectors.values()}),
                    "rows": [r["row"] for r in table], **card.clip_fields(spec.protocol(), (rates or {}).get("rates")),
                    "n_real": n_real, "n_fake": len(fakes.keys), **card.real_fields(rprotocol)}
    return {"metric": "fvd_compare", "rows": table, "n_real": n_real, "n_fake": len(fakes.keys),
            "clips": spec.protocol(), "real": rprotocol,
            "fake": {"source": source_fingerprint(fake), **fakes.record()}, "card": compare_card,
            "figures": [{"name": r["row"], "value": r["value"], "low": r["low"], "high": r["high"],
                         "n": f"real {n_real}, fake {len(fakes.keys)}"} for r in table],
            "warnings": sorted({w for r in table for w in r["warnings"]}), "seconds": time.perf_counter() - t0,
            "env": environment(any_det.device)}


def compare_markdown(result: dict) -> str:
    """The comparison as a markdown table: how far each choice moves FVD from tf-fvd."""
    lines = [f"FVD of one fake set (N fake {result['n_fake']}, N real {result['n_real']}) under each protocol; "
             f"clips: {result['clips']}", "",
             "| protocol | FVD [95% interval] | change vs tf-fvd | resize | crop | short side | covariance | network |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['row']} | {card.format_figure(r, 6)} | {r['change_percent']:+.2f} % | {r['resize']} | "
                     f"{r['crop']} | {r['short_side'] or '-'} | {r['covariance']} | {r['network']} |")
    return "\n".join(lines) + "\n"
