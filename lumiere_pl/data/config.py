"""Data configuration: the dataclasses live in lumiere_pl.config (which imports nothing of the project); re-exported
here for the data modules."""
from lumiere_pl.config import DataConfig, SyntheticConfig

__all__ = ["DataConfig", "SyntheticConfig"]
