"""Sweeps: a grid of config overrides x training seeds, trained, sampled and scored (lumiere-sweep)."""
