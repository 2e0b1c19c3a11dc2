"""lumiere-export: the EMA network weights of a training checkpoint as safetensors, with the config beside them.

  lumiere-export --ckpt runs/stunet_shapes/checkpoints/last.ckpt [--out runs/stunet_shapes/stunet_shapes.safetensors]
  lumiere-export --ckpt runs/stunet_sd/checkpoints/last.ckpt --out runs/stunet_sd/export      # a folder

Writes OUT (the network's state_dict, trainable weights replaced by their EMA; --live keeps the live ones) and OUT
with .yaml (the resolved experiment config). An OUT that does not end in .safetensors is a folder
(LumierePipeline.save_pretrained: config.yaml, model.safetensors, and for a diffusers_stunet the pretrained unet/ and
vae/ copied byte for byte, and scheduler/). Both load with LumierePipeline.from_pretrained(OUT) and
`lumiere-sample --ckpt OUT`; a diffusers_stunet always exports as a folder (default {run}/{name}).
An OUT that exists is refused; --overwrite replaces it only when it is an earlier export (a .safetensors whose
metadata says format lumiere-pl, or a folder holding only an export's files), never anything else.
No optimizer, loop or callback state: for resuming training use the .ckpt.
Exit codes: 0 done, 2 bad input (not a checkpoint, an output that exists or cannot be written),
1 internal error (README, "Exit codes").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List

from lumiere_pl.cli.errors import DEBUG_HELP, ArgumentParser, command


@command("lumiere-export")
def main(argv: List[str]) -> int:
    ap = ArgumentParser(prog="lumiere-export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="a lumiere-train checkpoint (.ckpt)")
    ap.add_argument("--out", help="output .safetensors, or a folder (default: {run}/{name}.safetensors beside "
                                  "checkpoints/; a diffusers_stunet: the folder {run}/{name})")
    ap.add_argument("--live", action="store_true", help="export the live weights instead of the EMA")
    ap.add_argument("--overwrite", action="store_true", help="replace OUT when it is an earlier export")
    ap.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = ap.parse_args(argv)

    from lumiere_pl.checkpoint import check_replaceable, config_of, export_weights, load_checkpoint, load_parts
    from lumiere_pl.pipeline import LumierePipeline
    from lumiere_pl.utils.atomic import check_writable
    from lumiere_pl.utils.paths import inside

    out = Path(args.out) if args.out is not None else None
    if out is None:                                     # beside checkpoints/, named by the config's run name
        ckpt = Path(args.ckpt)
        cfg = config_of(load_checkpoint(ckpt, mmap=True), ckpt)
        out = inside(ckpt.parent.parent, cfg.name if cfg.model.name == "diffusers_stunet" else
                     f"{cfg.name}.safetensors", what=f"{ckpt}: the run name in its config,")
    check_writable(out, "--out", file=True)
    if out.suffix != ".safetensors":
        check_replaceable(out, args.overwrite)                  # before the checkpoint is read
        pipe = LumierePipeline(load_parts(args.ckpt, ema=not args.live))
        print(f"folder : {pipe.save_pretrained(out, overwrite=args.overwrite)}")
        return 0
    weights, config = export_weights(args.ckpt, out, ema=not args.live, overwrite=args.overwrite)
    print(f"weights: {weights}\nconfig : {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
