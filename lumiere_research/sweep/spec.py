"""A sweep spec: a grid of config overrides x training seeds, the sampling and the scoring (lumiere-sweep).

Typed like the experiment config (dataclasses backed by OmegaConf) and imports nothing of the project's models. A spec
is checked whole before anything trains: unknown keys, empty grids and every run's resolved experiment config.

    name: motion_options                  # results under {out_dir}/{name}/
    pretrain: {config: experiments/shapes/t2i.yaml}   # trained once; each run inflates it (model.init_from)
    overrides: [train.val_every_n_steps=100000]       # every run, every stage (the pretrain first)
    variants:                             # named pipelines
      paper: {config: experiments/shapes/stunet.yaml}
      emb: {config: experiments/shapes/stunet.yaml, overrides: [model.temporal.emb_cond=true]}
      cascade:                            # two stages, sampled with LumierePipeline(keyframes=...)
        keyframes: {config: experiments/shapes/cascade_keyframes.yaml, steps_scale: 0.5}
        tsr: {config: experiments/shapes/cascade_tsr.yaml, steps_scale: 0.5}
    grid: {sampler.guidance: [1.0, 3.0]}  # optional axes: their product applied to every variant
    seeds: [0, 1, 2]                      # training seeds: train.seed and data.seed
    steps: [250, 500, 1000]               # train to each in turn, score at each: learning curves
    sample: {n: 64, guidance: 3.0}
    score: {motion: true, fvd: true, n_real: 256}
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lumiere_pl.errors import InputError


class SpecError(InputError):
    """A sweep spec that cannot run; the message names the file, the key and what is expected."""


@dataclass
class StageSpec:
    config: str = ""                 # experiment YAML, relative to the working directory
    overrides: List[str] = field(default_factory=list)
    steps_scale: float = 1.0         # this stage trains round(steps * steps_scale): compute-matched cascades


@dataclass
class VariantSpec:
    config: str = ""                 # one model: its experiment YAML ...
    overrides: List[str] = field(default_factory=list)
    steps_scale: float = 1.0         # one model: it trains round(steps * steps_scale)
    keyframes: Optional[StageSpec] = None   # ... or the cascade baseline: a keyframe model and a TSR model
    tsr: Optional[StageSpec] = None


@dataclass
class SampleSpec:
    n: int = 64                      # prompts: captions of the first n clips of the set's unseen test split
    seed: int = 0                    # video i starts from noise seeded seed + i (the same for every run)
    steps: int = 0                   # sampler steps (0: each model's sampler.steps)
    guidance: Optional[float] = None # classifier-free guidance (None: each model's sampler.guidance)
    batch_size: int = 16


@dataclass
class ScoreSpec:
    flow: bool = True                # motion magnitude, dynamic degree, flicker, warping error (DIS flow, any data
                                     # set: eval/motion.py) and the flow Frechet distance to the held-out clips
    motion: bool = True              # direction match, jump, jerk, block artefact (moving-shapes set only)
    appearance: bool = False         # share of frames showing the caption's colour / shape (T2I runs too)
    fvd: bool = True                 # FVD (TF-Hub I3D) against n_real rendered test clips
    n_real: int = 256
    text_swap: int = 0               # > 0: that many caption pairs sampled with the direction word swapped
    loss_by_noise: int = 0           # > 0: v-loss per noise level on that many clips, against the inflated T2I
    x0_motion: int = 0               # > 0: motion of the x0 predicted from that many noised real clips per noise level


@dataclass
class SweepSpec:
    name: str = "sweep"
    out_dir: str = "runs/sweeps"
    pretrain: Optional[StageSpec] = None
    init_from: Optional[str] = None  # or an existing T2I checkpoint every run inflates
    overrides: List[str] = field(default_factory=list)
    variants: Dict[str, VariantSpec] = field(default_factory=dict)
    grid: Dict[str, List[Any]] = field(default_factory=dict)
    seeds: List[int] = field(default_factory=lambda: [0])
    steps: List[int] = field(default_factory=list)   # empty: each config's train.max_steps, scored once
    sample: SampleSpec = field(default_factory=SampleSpec)
    score: ScoreSpec = field(default_factory=ScoreSpec)

    @property
    def root(self) -> Path:
        return Path(self.out_dir) / self.name


SAMPLE_PREFIX = "sample."           # grid keys under sample. change sampling only: the runs share their training


@dataclass(frozen=True)
class Run:
    """One (variant, grid point, seed): the unit that trains, samples and scores."""
    variant: str                     # variant name
    seed: int
    stages: Dict[str, StageSpec]     # "model" (one model) or "keyframes" + "tsr"
    train_extra: tuple = ()          # the grid point's config overrides ("key=value")
    sample_extra: tuple = ()         # the grid point's sample.* settings ("sample.guidance=1.0")

    @property
    def label(self) -> str:
        """Row of the table: the variant and its grid point."""
        return ",".join([self.variant, *self.train_extra, *self.sample_extra])

    @property
    def train_name(self) -> str:
        """Folder of its training, shared by runs that differ only in sampling."""
        return _folder(",".join([self.variant, *self.train_extra])) + f"/seed{self.seed}"

    @property
    def name(self) -> str:
        return _folder(self.label) + f"/seed{self.seed}"

    def sample_settings(self, base: "SampleSpec") -> "SampleSpec":
        import dataclasses
        cfg = OmegaConf.merge(OmegaConf.structured(base), OmegaConf.from_dotlist(
            [x[len(SAMPLE_PREFIX):] for x in self.sample_extra]))
        return dataclasses.replace(OmegaConf.to_object(cfg))  # type: ignore[arg-type]


def _folder(label: str) -> str:
    """A run label as one folder name: "=" -> "-", "," -> "__", brackets and spaces dropped; anything else that is
    not a letter, digit, "." "_" "+" or "-" becomes "_", and a label changed that way gets a hash of itself, so two
    grid values never share a folder and none leaves the sweep's (a value "../../x" is "..__..__x-1f3a...")."""
    name = label.replace("=", "-").replace(",", "__").replace("[", "").replace("]", "").replace(" ", "")
    safe = re.sub(r"[^A-Za-z0-9._+\-]", "_", name).strip(".") or "_"
    if safe != name or len(safe) > 200:
        safe = f"{safe[:180]}-{hashlib.sha256(label.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"
    return safe


def load_spec(path: str | Path, overrides: Optional[List[str]] = None) -> SweepSpec:
    from eval.command import read_text

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sweep spec not found: {path}")
    try:
        raw = yaml.safe_load(read_text(path, "a sweep spec (YAML)"))        # UTF-8 (else the byte offset), bounded
    except yaml.YAMLError as err:                                            # also tags: a safe loader
        raise SpecError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply; expected a sweep spec (name:, variants:, ...)") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping of keys (name:, variants:, seeds:, ...), got "
                        f"{type(raw).__name__}")
    schema = OmegaConf.structured(SweepSpec)
    for key, value in raw.items():                      # a section of the wrong kind, named with what it expects
        node = schema._get_node(key) if isinstance(key, str) and key in schema else None
        want = dict if isinstance(node, DictConfig) else list if isinstance(node, ListConfig) else None
        if want is not None and value is not None and not isinstance(value, want):
            raise SpecError(f"{path}: {key} must be a {'mapping' if want is dict else 'list'}, got {value!r:.60}")
    try:
        cfg = OmegaConf.merge(schema, OmegaConf.create(raw), OmegaConf.from_dotlist(list(overrides or [])))
        spec: SweepSpec = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: --set: not valid YAML: {' '.join(str(err).split())}") from None
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        key = getattr(err, "full_key", "") or ""
        first = (str(err) or type(err).__name__).splitlines()[0]
        raise SpecError(f"{path}: {'key ' + repr(key) + ': ' if key else ''}{first}") from None
    check(spec, str(path))
    return spec


MAX_COUNT = 100_000          # sample.n, score.n_real and the per-run counts: clips written and scored


def _numbers(node: Any, where: str):
    """(dotted key, number) of every number in a spec's plain-dict form."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _numbers(v, f"{where}.{k}" if where else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numbers(v, f"{where}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield where, node


def check(spec: SweepSpec, source: str) -> None:
    """Everything that can be known without training: non-empty grids, well-formed variants and steps, finite numbers
    in range, and every folder a run will write inside the sweep's (lumiere_pl/utils/paths.py)."""
    from lumiere_pl.utils.paths import check_name, inside

    for key, value in _numbers(dataclasses.asdict(spec), ""):
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"{source}: {key}={value}: expected a finite number")
        if isinstance(value, int) and not -2 ** 63 <= value < 2 ** 63:
            raise SpecError(f"{source}: {key}={value}: out of range; expected an integer within int64")
    for key, value in (("sample.n", spec.sample.n), ("sample.batch_size", spec.sample.batch_size),
                       ("score.n_real", spec.score.n_real), ("score.text_swap", spec.score.text_swap),
                       ("score.loss_by_noise", spec.score.loss_by_noise), ("score.x0_motion", spec.score.x0_motion)):
        if value > MAX_COUNT:
            raise SpecError(f"{source}: {key}={value}: expected at most {MAX_COUNT:,}")
    if spec.sample.seed < 0 or spec.sample.steps < 0 or any(s < 0 for s in spec.seeds):
        raise SpecError(f"{source}: sample.seed, sample.steps and seeds must be >= 0")
    lists = [("overrides", spec.overrides), ("seeds", spec.seeds), ("steps", spec.steps)]
    lists += [(f"variants.{n}.overrides", s.overrides) for n, v in spec.variants.items() for s in stages_of(v).values()]
    for key, items in lists:
        kind = int if key in ("seeds", "steps") else str
        if not all(isinstance(x, kind) and not isinstance(x, bool) for x in items):
            raise SpecError(f"{source}: {key}={list(items)!r:.80}: expected a list of "
                            f"{'integers' if kind is int else 'key=value strings'}")
    try:
        check_name(spec.name, "name")                     # the sweep's folder: out_dir/name
    except InputError as err:
        raise SpecError(f"{source}: {err}") from None
    if not spec.variants:
        raise SpecError(f"{source}: 'variants' is empty; name at least one, e.g. variants: {{paper: {{config: "
                        f"experiments/shapes/stunet.yaml}}}}")
    if not spec.seeds:
        raise SpecError(f"{source}: 'seeds' is empty; list at least one training seed, e.g. seeds: [0, 1, 2]")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise SpecError(f"{source}: 'seeds' repeats a seed: {list(spec.seeds)}")
    for key, values in spec.grid.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{source}: grid.{key} is empty; list the values to sweep, e.g. grid: {{{key}: [a, b]}}")
        if key.startswith(SAMPLE_PREFIX):
            field_name = key[len(SAMPLE_PREFIX):]
            if field_name not in SampleSpec.__dataclass_fields__:
                raise SpecError(f"{source}: grid.{key}: unknown sample setting; expected one of "
                                f"{sorted(SampleSpec.__dataclass_fields__)}")
    if any(s < 1 for s in spec.steps) or list(spec.steps) != sorted(set(spec.steps)):
        raise SpecError(f"{source}: steps={list(spec.steps)}: expected increasing step counts >= 1")
    if spec.pretrain is not None and spec.init_from:
        raise SpecError(f"{source}: give 'pretrain' (a T2I config to train) or 'init_from' (a checkpoint), not both")
    if spec.sample.n < 1 or spec.sample.batch_size < 1:
        raise SpecError(f"{source}: sample.n and sample.batch_size must be >= 1")
    for name, v in spec.variants.items():
        where = f"{source}: variants.{name}"
        try:
            check_name(name, "a variant name (a folder name)")
        except InputError as err:
            raise SpecError(f"{where}: {err}") from None
        if name.startswith("."):
            raise SpecError(f"{where}: a variant name is a folder name; no leading '.'")
        cascade = v.keyframes is not None or v.tsr is not None
        if cascade and (v.config or v.overrides or v.steps_scale != 1.0):
            raise SpecError(f"{where}: a cascade has keyframes and tsr stages, each with its own config; "
                            f"move config / overrides into them")
        if cascade and (v.keyframes is None or v.tsr is None):
            raise SpecError(f"{where}: a cascade needs both 'keyframes' and 'tsr'")
        if not cascade and not v.config:
            raise SpecError(f"{where}: expected 'config: experiments/X.yaml' (or keyframes + tsr for a cascade)")
        for stage_name, stage in stages_of(v).items():
            if not stage.config:
                raise SpecError(f"{where}.{stage_name}: expected 'config: experiments/X.yaml'")
            if stage.steps_scale <= 0:
                raise SpecError(f"{where}.{stage_name}.steps_scale={stage.steps_scale}: expected > 0")
    for run in expand(spec):                              # grid values become folder names: each stays inside
        for folder, name in (("train", run.train_name), ("samples", run.name), ("scores", run.name)):
            try:
                inside(spec.root, folder, name, what=f"run {run.label!r}: the folder")
            except InputError as err:
                raise SpecError(f"{source}: {err}") from None


def stages_of(v: VariantSpec) -> Dict[str, StageSpec]:
    if v.keyframes is not None or v.tsr is not None:
        return {k: s for k, s in (("keyframes", v.keyframes), ("tsr", v.tsr)) if s is not None}
    return {"model": StageSpec(v.config, list(v.overrides), v.steps_scale)}


def expand(spec: SweepSpec) -> List[Run]:
    """Every run: variants x grid points x seeds, in that order."""
    axes = sorted(spec.grid)
    points = [()] if not axes else list(itertools.product(*(spec.grid[k] for k in axes)))
    runs = []
    for name, v in spec.variants.items():
        for point in points:
            pairs = [f"{k}={_yaml_value(x)}" for k, x in zip(axes, point)]
            train = tuple(p for p in pairs if not p.startswith(SAMPLE_PREFIX))
            sample = tuple(p for p in pairs if p.startswith(SAMPLE_PREFIX))
            runs += [Run(name, int(seed), stages_of(v), train, sample) for seed in spec.seeds]
    return runs


def _yaml_value(x: Any) -> str:
    """A grid value as an override's right-hand side (lists as [a, b], strings as written)."""
    return yaml.safe_dump(x, default_flow_style=True).strip().removesuffix("...").strip() if not isinstance(x, str) else x
