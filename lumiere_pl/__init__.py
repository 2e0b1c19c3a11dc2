"""lumiere-pl: Lumiere's Space-Time U-Net, SSR with MultiDiffusion, video data and training in PyTorch Lightning."""
__version__ = "0.1.0"
