"""lumiere-sweep: a grid of config overrides x training seeds, trained, sampled and scored, in one table.

  lumiere-sweep SPEC.yaml                      train (resumable), sample, score every run, then the table
  lumiere-sweep SPEC.yaml --dry-run            check the spec and every run's config, list the runs, exit
  lumiere-sweep SPEC.yaml --only 3 7           just those runs (indices from --dry-run): one job of an array
  lumiere-sweep SPEC.yaml --emit-jobs          write {root}/jobs/: a SLURM array script and one command per run
  lumiere-sweep SPEC.yaml --collect            the table from the scores written so far (no training)
  lumiere-sweep SPEC.yaml --set seeds=[0] --set sample.n=16     change the spec from the command line

Runs go one after another on this machine; a finished training, sample set or score is never redone, so an
interrupted sweep continues where it stopped. The table: {root}/table.md, table.json, table.png
({root} = out_dir/name of the spec). Spec format: lumiere_research/sweep/spec.py; examples under experiments/sweeps/.
Exit codes: 0 done; 1 a training run failed (its command is named) or an internal error; 2 bad spec or config
(nothing was trained; grid values and variant names become folder names and must stay inside the sweep's),
--collect with nothing finished, an output that cannot be written; 130 / 143 interrupted by SIGINT / SIGTERM (the
training run in progress gets the signal and up to a minute to save on_exception.ckpt; rerun to continue);
--debug or LUMIERE_DEBUG=1 adds the traceback (README, "Errors and exit codes").
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import List, Optional

from lumiere_pl.cli.errors import DEBUG_HELP, ArgumentParser, command, number
from lumiere_pl.utils.atomic import write_text

SBATCH = """#!/bin/bash
# {n} runs of sweep {name}, one per array task: sbatch {path}
#SBATCH --job-name=sweep-{name}
#SBATCH --array=0-{last}
#SBATCH --nodes=1
#SBATCH --gpus-per-node={gpus}
#SBATCH --output={root}/jobs/%a.log
set -euo pipefail
cd {cwd}
# Lightning starts the {gpus} training processes itself (trainer.devices in the spec's overrides); sampling and
# scoring then run in this process. Afterwards: lumiere-sweep {spec} --collect
{python} -m lumiere_research.sweep {spec} {sets}--only $SLURM_ARRAY_TASK_ID
"""


def emit_jobs(spec, spec_path: str, sets: List[str], gpus: int, n: int) -> Path:
    folder = spec.root / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    set_args = "".join(f"--set {shlex.quote(s)} " for s in sets)
    script = folder / "array.sbatch"
    write_text(script, SBATCH.format(n=n, name=spec.name, path=script, last=n - 1, gpus=gpus, root=spec.root,
                                    cwd=Path.cwd(), spec=spec_path, sets=set_args, python=sys.executable))
    lines = [f"{sys.executable} -m lumiere_research.sweep {spec_path} {set_args}--only {i}" for i in range(n)]
    lines.append(f"# torchrun instead of Lightning's own launcher for the training processes:\n"
                 f"# {sys.executable} -m lumiere_research.sweep {spec_path} {set_args}--only I "
                 f"--train-launcher 'torchrun --nproc_per_node {gpus} -m'")
    write_text(folder / "commands.txt", "\n".join(lines) + "\n")
    return script


@command("lumiere-sweep")
def main(argv: Optional[List[str]]) -> int:
    ap = ArgumentParser(prog="lumiere-sweep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", help="sweep spec YAML (experiments/sweeps/*.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec key")
    ap.add_argument("--dry-run", action="store_true", help="check everything, list the runs, train nothing")
    ap.add_argument("--only", type=number(int, 0, 10 ** 9), nargs="+", metavar="I", help="run only these run indices")
    ap.add_argument("--collect", action="store_true", help="write the table from the scores so far")
    ap.add_argument("--emit-jobs", action="store_true", help="write a SLURM array script and per-run commands")
    ap.add_argument("--gpus", type=number(int, 1, 1024), default=1, help="GPUs per job in the emitted SLURM script")
    ap.add_argument("--train-launcher", default=None,
                    help="command that runs a module for training, default 'python -m' (e.g. 'torchrun "
                         "--nproc_per_node 8 -m')")
    ap.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = ap.parse_args(argv)

    from lumiere_research.sweep.report import write_report
    from lumiere_research.sweep.runner import TrainingFailed, plan, run_all
    from lumiere_research.sweep.spec import SpecError, load_spec

    spec = load_spec(args.spec, args.set)                  # SpecError / ConfigError: one line, exit 2
    plans = plan(spec)
    if args.only and max(args.only) >= len(plans):
        raise SpecError(f"--only {max(args.only)}: the sweep has runs 0..{len(plans) - 1}")
    if args.dry_run:
        for i, p in enumerate(plans):
            stages = ", ".join(f"{name} {steps}" for name, (_, _, steps) in p.stages.items())
            print(f"{i:4d}  {p.run.name:50s}  steps {stages}")
        print(f"{len(plans)} runs; results under {spec.root}")
        return 0
    if args.emit_jobs:
        script = emit_jobs(spec, args.spec, args.set, args.gpus, len(plans))
        print(f"wrote {script} and {script.parent / 'commands.txt'} ({len(plans)} runs)")
        return 0
    if not args.collect:
        launcher = shlex.split(args.train_launcher) if args.train_launcher else None
        try:
            run_all(spec, args.only, launcher)
        except TrainingFailed as err:
            print(f"lumiere-sweep: {err}", file=sys.stderr)
            return 1
        if args.only:
            return 0
    md, js, png = write_report(spec)                        # nothing finished: FileNotFoundError, exit 2
    print(md.read_text())
    print(f"wrote {md}, {js}, {png}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
