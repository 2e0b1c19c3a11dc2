"""lumiere-sample --lossless: evaluation videos without compression (RGB H.264, qp 0), recorded in the sidecar;
the default stays CRF 18. The codec is read back from the stream by eval's decoder."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from eval.video_io import decode
from lumiere_pl.config import to_dict
from lumiere_pl.config_checks import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_lossless_flag_writes_and_records_lossless_videos(tmp_path):
    from lumiere_pl.cli.sample import main
    from lumiere_pl.lit import DiffusionModule

    torch.manual_seed(0)
    cfg = load_config(str(ROOT / "experiments" / "ssr_tiny.yaml"),
                      ["name=base_tiny", "model.name=stunet", "model.unet.aug_embedding=false", "data.size=16"])
    module = DiffusionModule(to_dict(cfg))
    ckpt = tmp_path / "base.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": module.export_config()}}, ckpt)
    (tmp_path / "p.jsonl").write_text(json.dumps({"index": 0, "prompt": "a red circle moving right"}) + "\n")
    for name, extra in (("lossless", ["--lossless"]), ("default", [])):
        assert main(["--ckpt", str(ckpt), "--prompts", str(tmp_path / "p.jsonl"), "--out-dir", str(tmp_path / name),
                     "--frames", "4", "--steps", "1", "--device", "cpu", *extra]) == 0
    assert decode(tmp_path / "lossless" / "000000.mp4").codec == "h264 gbrp qp=0 (lossless)"
    assert decode(tmp_path / "default" / "000000.mp4").codec == "h264 yuv420p crf=18.0"
    assert json.loads((tmp_path / "lossless" / "000000.json").read_text())["lossless"] is True
    assert json.loads((tmp_path / "default" / "000000.json").read_text())["lossless"] is False
