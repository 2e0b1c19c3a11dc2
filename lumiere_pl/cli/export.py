"""lumiere-export: the EMA network weights of a training checkpoint as safetensors, with the config beside them.

  lumiere-export --ckpt runs/stunet_shapes/checkpoints/last.ckpt [--out runs/stunet_shapes/stunet_shapes.safetensors]

Writes OUT (the network's state_dict, trainable weights replaced by their EMA; --live keeps the live ones) and OUT
with .yaml (the resolved experiment config). lumiere_pl.checkpoint.load_exported rebuilds the module from the pair.
No optimizer, loop or callback state: for resuming training use the .ckpt.
Exit codes: 0 done, 2 bad input (not a checkpoint, --out not .safetensors, an output that cannot be written),
1 internal error (README, "Exit codes").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List

from lumiere_pl.cli.errors import DEBUG_HELP, command


@command("lumiere-export")
def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="lumiere-export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="a lumiere-train checkpoint (.ckpt)")
    ap.add_argument("--out", help="output .safetensors (default: {run}/{name}.safetensors beside checkpoints/)")
    ap.add_argument("--live", action="store_true", help="export the live weights instead of the EMA")
    ap.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = ap.parse_args(argv)

    from lumiere_pl.checkpoint import config_of, export_weights, load_checkpoint

    out = args.out
    if out is None:
        ckpt = Path(args.ckpt)
        out = ckpt.parent.parent / f"{config_of(load_checkpoint(ckpt, mmap=True), ckpt).name}.safetensors"
    weights, config = export_weights(args.ckpt, out, ema=not args.live)
    print(f"weights: {weights}\nconfig : {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
