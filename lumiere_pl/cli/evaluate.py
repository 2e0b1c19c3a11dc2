"""lumiere-evaluate: a run's checkpoints sampled and scored against real clips, each figure over training steps.

  lumiere-evaluate --run runs/stunet_NAME --real 'data/shards/own/NAME/val-*.tar'
  lumiere-evaluate --run runs/stunet_NAME --real path/to/videos [--prompts prompts.jsonl] --n 32

For each checkpoint of the run (checkpoints/step=*.ckpt and last.ckpt, one per training step): N clips of held-out
captions (--prompts; else those of --real when it is shards, else those of the run's data.val_shards), seeds
0..N-1, rendered by lumiere-sample as lossless MP4s at the run's frame rate, then scored by lumiere-eval against
--real:
  fvd     FVD (I3D, tf-fvd) with its bootstrap interval; real and generated clips at one frame rate (the lower)
  is      the Inception Score on the I3D's Kinetics classes (not the paper's C3D-UCF101 IS)
  motion  weight-free motion figures (DIS flow): magnitude, dynamic degree, flicker, warping error, and the flow
          Frechet distance between the sets, each with its interval
Writes OUT/step_NNNNNNN/{videos/, fvd.json, is.json, motion.json}, OUT/figures.json (every figure by step),
OUT/figures.md (the table) and OUT/figures.png (each figure over steps, with its interval). Resumable: rendered videos
and written scores are kept while their inputs are the same (OUT/step_NNNNNNN/request.json records --real, --frames
and the videos' prompts, seeds and settings; other inputs are scored again, said in one line). OUT defaults to
{run}/eval.
Exit codes: 0 done, 2 bad input (a run, real clips or prompts that cannot be read, an output that cannot be
written), 1 internal error, 130 / 143 interrupted (rerun to continue).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Dict, List

from lumiere_pl.cli.errors import DEBUG_HELP, ArgumentParser, command, number
from lumiere_pl.errors import InputError

FIGURES = (("fvd", "FVD", "fvd.json"), ("is", "IS (I3D-Kinetics)", "is.json"),
           ("magnitude", "motion magnitude (diagonals/s)", "motion.json"),
           ("warping_error", "warping error", "motion.json"), ("flicker", "flicker", "motion.json"),
           ("flow_frechet", "flow Frechet distance", "motion.json"))


def checkpoints(run: Path) -> Dict[int, Path]:
    """{training step: checkpoint} of a run folder, one checkpoint per step (last.ckpt where it adds a step)."""
    from lumiere_pl.checkpoint import load_checkpoint

    folder = run / "checkpoints"
    if not folder.is_dir():
        raise InputError(f"--run {run}: no checkpoints/ folder; expected a run folder written by lumiere-train")
    found: Dict[int, Path] = {}
    for path in sorted(folder.glob("step=*.ckpt")) + [folder / "last.ckpt"]:
        if path.is_file():
            found.setdefault(int(load_checkpoint(path, mmap=True).get("global_step", 0)), path)
    if not found:
        raise InputError(f"--run {run}: no checkpoint in {folder}; expected step=*.ckpt or last.ckpt")
    return dict(sorted(found.items()))


def real_captions(source: str, n: int) -> List[str]:
    """The captions of the first n clips of a shard pattern (their .txt members), in shard order."""
    from lumiere_pl.data.tar_reader import expand, iter_shard

    captions: List[str] = []
    for url in expand(source):
        for sample in iter_shard(url):
            text = sample.get("txt")
            if isinstance(text, bytes):
                captions.append(text.decode("utf-8", errors="replace").strip())
            if len(captions) >= n:
                return captions
    return captions


def is_shard_pattern(source: str) -> bool:
    return source.endswith(".tar") or any(c in source for c in "*?[{")


def prompts_file(args: argparse.Namespace, out: Path) -> Path:
    """--prompts, or a JSONL of held-out captions written under OUT: those of --real when it is shards, else those
    of the run's validation shards (data.val_shards of its config.yaml)."""
    if args.prompts is not None:
        return args.prompts
    source = str(args.real) if is_shard_pattern(str(args.real)) else None
    if source is None:
        from lumiere_pl.config import read_config

        config = args.run / "config.yaml"
        source = read_config(str(config)).data.val_shards if config.is_file() else None
        if not source:
            raise InputError(f"--real {args.real}: a folder of videos has no captions, and {config} names no "
                             "data.val_shards to take them from; give --prompts FILE.jsonl")
    captions = real_captions(source, args.n)
    if not captions:
        raise InputError(f"{source}: no captions (.txt members) found; give --prompts FILE.jsonl")
    from lumiere_pl.utils.atomic import write_text

    path = out / "prompts.jsonl"
    write_text(path, "".join(json.dumps({"index": i, "prompt": c}) + "\n" for i, c in enumerate(captions)))
    return path


def real_source(real: str, out: Path) -> str:
    """What lumiere-eval reads for --real: a shard pattern (brace or glob) becomes a folder of links to its shards
    under OUT (eval reads a .tar, a folder of shards or a folder of videos)."""
    if not any(c in real for c in "*?[{"):
        return real
    from lumiere_pl.data.tar_reader import expand

    shards = [Path(u).resolve() for u in expand(real)]
    missing = [s for s in shards if not s.is_file()]
    if missing:
        raise InputError(f"--real {real}: {missing[0]} does not exist; expected local shards")
    folder = out / "real_shards"
    folder.mkdir(parents=True, exist_ok=True)
    names = {s.name for s in shards}
    for link in folder.iterdir():                        # links to the shards of another --real: this command's own
        if link.is_symlink() and link.name not in names:
            link.unlink()
    for shard in shards:
        link = folder / shard.name
        if not link.is_symlink() or link.resolve() != shard:
            link.unlink(missing_ok=True)
            link.symlink_to(shard)
    return str(folder)


def _stopped(code: int) -> int:
    """The exit code of a command run in this process; 130 / 143 (it was interrupted, and said so): the interrupt
    goes on to this command (eval/signals.py)."""
    if code > 128:
        from lumiere_pl.errors import Interrupted

        raise Interrupted(code - 128)
    return code


def score_step(args: argparse.Namespace, ckpt: Path, folder: Path, prompts: Path) -> None:
    """Render (resumable) and score one checkpoint; a score already written for the same inputs is kept."""
    from eval.cli import main as eval_main
    from lumiere_pl.cli.sample import main as sample_main
    from lumiere_pl.utils.atomic import write_text

    videos = folder / "videos"
    common = ["--steps", str(args.steps)] if args.steps else []
    if _stopped(sample_main(["--ckpt", str(ckpt), "--prompts", str(prompts), "--out-dir", str(videos), "--lossless",
                             "--device", args.device, *common])) != 0:
        raise InputError(f"lumiere-sample failed on {ckpt} (its message is above)")
    clip = ["--frames", str(args.frames)]
    real = real_source(str(args.real), args.out)
    device = ["--device", args.device]
    jobs = {"fvd.json": ["fvd", "--real", real, "--fake", str(videos), *clip, *device, "--cache-dir",
                         str(args.out / "cache")],
            "is.json": ["is", "--videos", str(videos), *clip, *device, "--is-samples", "all", "--splits", "1"],
            "motion.json": ["motion", "--real", real, "--fake", str(videos), *clip]}
    asked = {"real": real_key(str(args.real)), "frames": args.frames, "videos": videos_key(videos)}
    record = folder / "request.json"
    try:
        old = json.loads(record.read_text())
    except (OSError, ValueError):                         # none yet, or not this command's: score again
        old = None
    kept = [n for n in jobs if (folder / n).is_file()]
    if kept and old != asked:
        what = ", ".join(f"{k} {(old or {}).get(k)} -> {v}" if k != "videos" else "the videos"
                         for k, v in asked.items() if (old or {}).get(k) != v)
        print(f"lumiere-evaluate: the scores in {folder} were computed for other inputs ({what}); scoring again")
        kept = []
    for name, argv in jobs.items():
        if name in kept:
            continue
        if _stopped(eval_main([*argv, "--out", str(folder / name)])) != 0:
            raise InputError(f"lumiere-eval {argv[0]} failed on {videos} (its message is above)")
    write_text(record, json.dumps(asked, indent=1) + "\n")


def real_key(real: str):
    """What --real names, for the record of a step's scores: its shards (a pattern, expanded) or its folder."""
    if any(c in real for c in "*?[{"):
        from lumiere_pl.data.tar_reader import expand

        return sorted(str(Path(u).resolve()) for u in expand(real))
    return str(Path(real).resolve())


def videos_key(videos: Path) -> str:
    """A digest of the rendered videos' records (prompt, seed, checkpoint, settings: lumiere-sample's .json)."""
    records = "\n".join(f"{p.name}:{p.read_text()}" for p in sorted(videos.glob("*.json")))
    return hashlib.sha256(records.encode()).hexdigest()[:16]


def figures(out: Path, steps: List[int]) -> Dict[str, List[dict]]:
    """{figure: [{"step", "value", "low", "high"}]} from the scores written under OUT."""
    table: Dict[str, List[dict]] = {key: [] for key, _, _ in FIGURES}
    for step in steps:
        folder = out / f"step_{step:07d}"
        loaded = {f: json.loads((folder / f).read_text()) for f in ("fvd.json", "is.json", "motion.json")
                  if (folder / f).is_file()}
        for key, _, file in FIGURES:
            rec = loaded.get(file)
            if rec is None:
                continue
            if file == "motion.json":
                fake = rec.get("sets", {}).get("fake", {}).get("summary", {})
                rec = (rec.get("flow_frechet") or {}) if key == "flow_frechet" else fake.get(key, {})
            value = rec.get("value")
            if value is not None:
                table[key].append({"step": step, "value": value, "low": rec.get("low"), "high": rec.get("high")})
    return table


def write_report(out: Path, table: Dict[str, List[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lumiere_pl.utils.atomic import atomic_path, write_text

    write_text(out / "figures.json", json.dumps(table, indent=1) + "\n")
    steps = sorted({r["step"] for rows in table.values() for r in rows})
    lines = ["| step | " + " | ".join(label for _, label, _ in FIGURES) + " |", "|---" * (len(FIGURES) + 1) + "|"]
    for step in steps:
        cells = []
        for key, _, _ in FIGURES:
            row = next((r for r in table[key] if r["step"] == step), None)
            cells.append("-" if row is None else f"{row['value']:.4g}" + (
                f" [{row['low']:.4g}, {row['high']:.4g}]" if row.get("low") is not None else ""))
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    write_text(out / "figures.md", "\n".join(lines) + "\n")
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, (key, label, _) in zip(axes.flat, FIGURES):
        rows = table[key]
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("training step")
        if not rows:
            continue
        x = [r["step"] for r in rows]
        ax.plot(x, [r["value"] for r in rows], "o-")
        if all(r.get("low") is not None for r in rows):
            ax.fill_between(x, [r["low"] for r in rows], [r["high"] for r in rows], alpha=0.25)
    fig.tight_layout()
    with atomic_path(out / "figures.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="lumiere-evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a lumiere-train run folder ({out_dir}/{name})")
    ap.add_argument("--real", required=True, help="real clips: held-out shards (their captions are the prompts) or "
                                                  "a folder of videos (with --prompts)")
    ap.add_argument("--prompts", type=Path, help="JSONL, one {\"prompt\": ...} per line (default: the captions of the "
                                                 "first --n clips of --real)")
    ap.add_argument("--n", type=number(int, 1, 100_000), default=64, help="clips per checkpoint (default 64)")
    ap.add_argument("--frames", type=number(int, 1, 10_000), default=16,
                    help="frames per clip the metrics read (default 16)")
    ap.add_argument("--steps", type=number(int, 1, 10_000), help="sampler steps (default: the run's sampler.steps)")
    ap.add_argument("--last", action="store_true", help="only the last checkpoint")
    ap.add_argument("--out", type=Path, help="output folder (default {run}/eval)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return ap


@command("lumiere-evaluate")
def main(argv: List[str]) -> int:
    from lumiere_pl.cli.sample import check_device
    from lumiere_pl.utils.atomic import check_writable

    args = _parser().parse_args(argv)
    args.out = args.out or args.run / "eval"
    for flag, value in (("--n", args.n), ("--frames", args.frames), ("--steps", args.steps)):
        if value is not None and value < 1:
            raise InputError(f"{flag} {value}: expected an integer >= 1")
    check_device(args.device)
    check_writable(args.out, "--out")
    found = checkpoints(args.run)
    if args.last:
        found = dict([list(found.items())[-1]])
    prompts = prompts_file(args, args.out)
    for step, ckpt in found.items():
        print(f"lumiere-evaluate: step {step} ({ckpt.name})", flush=True)
        score_step(args, ckpt, args.out / f"step_{step:07d}", prompts)
    table = figures(args.out, list(found))
    write_report(args.out, table)
    print((args.out / "figures.md").read_text(), end="")
    print(f"lumiere-evaluate: wrote {args.out / 'figures.md'}, {args.out / 'figures.png'}, {args.out / 'figures.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
