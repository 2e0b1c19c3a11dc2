"""Benchmarks over the installed lumiere_pl and eval (docs/BENCHMARKS.md). Not installed: each script runs from the
repository root as `python -m bench.<name>` (`make bench`: `python -m bench.run_all`), and imports its siblings as
`bench.<name>`."""
