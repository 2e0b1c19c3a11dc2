"""lumiere-pl: Lumiere's Space-Time U-Net, SSR with MultiDiffusion, video data and training in PyTorch Lightning."""
__version__ = "0.1.0"

from eval.signals import while_starting  # noqa: E402

# Ctrl-C or SIGTERM while a command imports torch and Lightning (seconds): one line, exit 130 / 143
while_starting({"lumiere-train": "lumiere_pl.cli.train", "lumiere-sample": "lumiere_pl.cli.sample",
                "lumiere-apply": "lumiere_pl.cli.apply", "lumiere-export": "lumiere_pl.cli.export",
                "lumiere-shards": "lumiere_pl.cli.shards", "lumiere-evaluate": "lumiere_pl.cli.evaluate"})
