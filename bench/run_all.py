"""`make bench`: run every bench/bench_*.py in turn, each as `python -m bench.<name>` from the repository root; each
prints its own figures with shapes, machine and versions. `python -m bench.run_all NAME ...` runs the ones whose
name contains a NAME."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    only = sys.argv[1:]
    failed = []
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        if only and not any(o in script.stem for o in only):
            continue
        print(f"\n===== {script.name} =====", flush=True)
        if subprocess.call([sys.executable, "-m", f"bench.{script.stem}"], cwd=ROOT) != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
