"""Standalone video evaluation: FVD with the TF-Hub I3D and its bootstrap interval, video Inception Score, the
zero-shot UCF101 protocol, weight-free motion metrics (OpenCV DIS flow).

Does not import lumiere_pl: any model's videos (a folder of files or WebDataset shards) can be scored.
Entry points: `lumiere-eval` (eval.cli), `eval.fvd.FVD` (torchmetrics), `eval.frechet.frechet_distance`,
`eval.motion.motion_stats` / `summarise` / `flow_frechet`, `eval.bootstrap`.
"""
__version__ = "0.3.0"
