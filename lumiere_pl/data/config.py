"""Data configuration: the dataclasses live in lumiere_pl.config (which imports nothing of the project); re-exported
here for the data modules, with the bounds a run's data.limits sets (eval/limits.py)."""
from eval.limits import Limits, limits
from lumiere_pl.config import DataConfig, LimitsConfig, SyntheticConfig


def data_limits(cfg: DataConfig) -> Limits:
    """The bounds of a run's data: defaults <- LUMIERE_LIMIT_* <- data.limits.*"""
    return limits(frame_pixels=cfg.limits.frame_pixels, clip_mib=cfg.limits.clip_mib,
                  member_mib=cfg.limits.member_mib)


__all__ = ["DataConfig", "LimitsConfig", "SyntheticConfig", "data_limits"]
