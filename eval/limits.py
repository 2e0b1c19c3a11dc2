"""Bounds on what an input may make a command allocate, checked against the sizes the input declares before
anything is allocated: a hostile or broken file (a video declaring huge frames, a tar member declaring terabytes, a
safetensors header of gigabytes, a checkpoint whose config describes a model far larger than its weights) costs at
most a few hundred MB and ends with one line naming it.

Each limit has a default, an environment variable that raises (or lowers) it for every command, and for
lumiere-train the config keys data.limits.* (lumiere_pl/config.py), which win over both. docs/ROBUSTNESS.md lists them.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .errors import EvalError

MIB = 2 ** 20


@dataclass(frozen=True)
class Limits:
    frame_pixels: int = 4096 * 2304     # width x height a video stream may declare (4K DCI and UHD fit)
    clip_mib: int = 512                 # decoded RGB frames one read holds at once (t x h x w x 3 bytes)
    member_mib: int = 1024              # one video file or tar member read into memory
    header_mib: int = 16                # the JSON header of a safetensors file (real models: well under 1 MiB)
    sample_mib: int = 2048              # one sample a checkpoint's config asks to generate (c x t x h x w float32)

    def describe(self, name: str) -> str:
        """"the limit of 512 MiB (LUMIERE_LIMIT_CLIP_MIB)": the value and where to raise it, for messages."""
        value = getattr(self, name)
        unit = " MiB" if name.endswith("_mib") else " pixels"
        return f"the limit of {value:,}{unit} ({ENV[name]}; lumiere-train: data.limits.{name})"


ENV = {f.name: f"LUMIERE_LIMIT_{f.name.upper()}" for f in dataclasses.fields(Limits)}


def limits(**overrides: int) -> Limits:
    """The defaults, raised or lowered by the environment (LUMIERE_LIMIT_*), then by `overrides` (config keys)."""
    values = {}
    for name, var in ENV.items():
        text = os.environ.get(var)
        if text is not None:
            try:
                values[name] = int(text)
            except ValueError:
                raise EvalError(f"environment {var}={text!r}: expected a positive integer") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EvalError(f"{ENV[name]} / data.limits.{name}={value!r}: expected a positive integer")
    return Limits(**values)


__all__ = ["ENV", "Limits", "MIB", "limits"]
