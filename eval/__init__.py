"""Standalone video evaluation: FVD with the TF-Hub I3D, video Inception Score, the zero-shot UCF101 protocol.

Does not import lumiere_pl: any model's videos (a folder of files or WebDataset shards) can be scored.
Entry points: `lumiere-eval` (eval.cli), `eval.fvd.FVD` (torchmetrics), `eval.frechet.frechet_distance`.
"""
__version__ = "0.2.0"
