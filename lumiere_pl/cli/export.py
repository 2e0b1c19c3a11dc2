"""lumiere-export: the EMA network weights of a training checkpoint as safetensors, with the config beside them.

  lumiere-export --ckpt runs/stunet_shapes/checkpoints/last.ckpt [--out runs/stunet_shapes/stunet_shapes.safetensors]
  lumiere-export --ckpt runs/stunet_sd/checkpoints/last.ckpt --out runs/stunet_sd/export      # a folder

Writes OUT (the network's state_dict, trainable weights replaced by their EMA; --live keeps the live ones) and OUT
with .yaml (the resolved experiment config). lumiere_pl.checkpoint.load_exported rebuilds the module from the pair.
An OUT that does not end in .safetensors is a folder (checkpoint.save_pretrained: config.yaml, model.safetensors, and
for a diffusers_stunet its unet/, scheduler/, vae/), loaded back with checkpoint.from_pretrained or
`lumiere-sample --ckpt OUT`; a diffusers_stunet always exports as a folder (default {run}/{name}).
No optimizer, loop or callback state: for resuming training use the .ckpt.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="lumiere-export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="a lumiere-train checkpoint (.ckpt)")
    ap.add_argument("--out", help="output .safetensors, or a folder (default: {run}/{name}.safetensors beside "
                                  "checkpoints/; a diffusers_stunet: the folder {run}/{name})")
    ap.add_argument("--live", action="store_true", help="export the live weights instead of the EMA")
    args = ap.parse_args(argv)

    from lumiere_pl.checkpoint import config_of, export_weights, load_checkpoint, load_module, save_pretrained

    try:
        out = args.out
        if out is None:
            ckpt = Path(args.ckpt)
            cfg = config_of(load_checkpoint(ckpt))
            folder = cfg.model.name == "diffusers_stunet"
            out = ckpt.parent.parent / (cfg.name if folder else f"{cfg.name}.safetensors")
        if Path(out).suffix != ".safetensors":
            print(f"folder : {save_pretrained(load_module(args.ckpt), out, ema=not args.live)}")
            return 0
        weights, config = export_weights(args.ckpt, out, ema=not args.live)
    except (FileNotFoundError, KeyError, RuntimeError, ValueError) as err:
        print(f"lumiere-export: {err}", file=sys.stderr)
        return 2
    print(f"weights: {weights}\nconfig : {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
