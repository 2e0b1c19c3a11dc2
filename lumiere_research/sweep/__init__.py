"""Sweeps: a grid of config overrides x training seeds, trained, sampled and scored in one table.

  lumiere-sweep SPEC.yaml ...     (or python -m lumiere_research.sweep SPEC.yaml ...; options: sweep/cli.py)
"""
