"""LightningModules. LIGHTNING_MODULES maps model.name to the module class that trains it."""
from __future__ import annotations

from lumiere_pl.lit.diffusers_module import DiffusersModule
from lumiere_pl.lit.module import DiffusionModule

from lumiere_pl.lit.ssr import SSRModule

LIGHTNING_MODULES = {"t2i": DiffusionModule, "stunet": DiffusionModule, "ssr": SSRModule,
                     "diffusers_stunet": DiffusersModule}


def module_class(model_name: str):
    if model_name not in LIGHTNING_MODULES:
        raise KeyError(f"no LightningModule for model.name={model_name!r}; known: {sorted(LIGHTNING_MODULES)}")
    return LIGHTNING_MODULES[model_name]


__all__ = ["DiffusersModule", "DiffusionModule", "LIGHTNING_MODULES", "module_class"]
