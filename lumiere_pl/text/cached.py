"""The text encoder of a run that trains from encoded shards (lumiere-shards encode, docs/DATA.md): no network.

Training batches carry their captions' token states; what the run still encodes itself, the null caption "" of
classifier-free guidance and the validation prompts (train.val_prompts), was encoded by the same command into
prompts.safetensors beside the shards' manifest. CachedTextEncoder serves those, and the captions of held-out clips
that validation handed it (add), in place of the encoder that made them; any other caption is refused in one line.

prompts.safetensors: tensors "states.{i}" (L d) and "mask.{i}" (L,) bool, and the metadata "captions", a JSON list
whose i-th entry is the caption of index i (safetensors only: nothing is unpickled).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence

import torch
from torch import Tensor

from lumiere_pl.errors import InputError
from lumiere_pl.text.encoders import Encoded, TextEncoder

PROMPTS_FILE = "prompts.safetensors"


def prompts_bytes(encodings: Dict[str, Encoded]) -> bytes:
    """The bytes of a prompts file holding caption -> ((L d) states, (L,) bool mask), in the order given."""
    from safetensors.torch import save

    captions = list(encodings)
    tensors = {}
    for i, c in enumerate(captions):
        states, mask = encodings[c]
        tensors[f"states.{i}"], tensors[f"mask.{i}"] = states.contiguous().clone(), mask.bool().contiguous().clone()
    return save(tensors, metadata={"captions": json.dumps(captions)})


def read_prompts(path: str | Path) -> Dict[str, Encoded]:
    """caption -> (states, mask) of a prompts file; InputError naming the file when it is not one."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            captions = json.loads((f.metadata() or {}).get("captions", "null"))
            if not isinstance(captions, list):
                raise ValueError("no captions list in its metadata")
            return {c: (f.get_tensor(f"states.{i}"), f.get_tensor(f"mask.{i}").bool()) for i, c in enumerate(captions)}
    except (SafetensorError, OSError, ValueError, KeyError) as err:
        raise InputError(f"{path}: not a prompts file of encoded shards ({err}); expected the {PROMPTS_FILE} written "
                         f"by lumiere-shards encode") from None


class CachedTextEncoder(TextEncoder):
    """Serves stored encodings (see the module docstring) with a TextEncoder's interface: (b L d), (b L)."""

    def __init__(self, encodings: Dict[str, Encoded], name: str, source: str = PROMPTS_FILE):
        if "" not in encodings:
            raise InputError(f"{source}: holds no encoding of the null caption \"\"; expected the prompts file written "
                             f"by lumiere-shards encode")
        states, _ = encodings[""]
        super().__init__(int(states.shape[0]), cache_mib=0)
        self.dim, self.name, self.source = int(states.shape[1]), f"{name} (encoded)", source
        self._stored: Dict[str, Encoded] = dict(encodings)

    @classmethod
    def from_file(cls, path: str | Path, name: str) -> "CachedTextEncoder":
        return cls(read_prompts(path), name, str(path))

    @property
    def captions(self) -> List[str]:
        return list(self._stored)

    def add(self, captions: Sequence[str], states: Tensor, mask: Tensor) -> None:
        """Hold the encodings of these captions too (held-out clips' captions that validation samples)."""
        for c, s, m in zip(captions, states.detach().cpu(), mask.detach().cpu()):
            self._stored.setdefault(c, (s.clone(), m.bool().clone()))

    def _encode(self, captions: List[str]) -> Encoded:
        missing = [c for c in captions if c not in self._stored]
        if missing:
            raise InputError(f"caption {missing[0]!r} has no stored encoding: this run trains from encoded shards and "
                             f"loads no text encoder ({self.source} holds the null caption and the train.val_prompts "
                             f"it was encoded with); run lumiere-shards encode again with this config to add it")
        pairs = [self._stored[c] for c in captions]
        return torch.stack([p[0] for p in pairs]).to(self.device), torch.stack([p[1] for p in pairs]).to(self.device)
