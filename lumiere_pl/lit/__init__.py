"""The LightningModule that trains every model (DiffusionModule), its callbacks, FSDP2 sharding and checkpoint IO."""
from __future__ import annotations

from lumiere_pl.lit.module import DiffusionModule

__all__ = ["DiffusionModule"]
