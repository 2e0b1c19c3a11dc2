"""lumiere-sample --lossless: evaluation videos without compression (RGB H.264, qp 0), recorded in the sidecar;
the default stays CRF 18. The codec is read back from the stream by eval's decoder."""
from __future__ import annotations

import json

from eval.video_io import decode


def test_lossless_flag_writes_and_records_lossless_videos(tmp_path, tiny_sample_ckpt):
    from lumiere_pl.cli.sample import main

    (tmp_path / "p.jsonl").write_text(json.dumps({"index": 0, "prompt": "a red circle moving right"}) + "\n")
    for name, extra in (("lossless", ["--lossless"]), ("default", [])):
        assert main(["--ckpt", str(tiny_sample_ckpt), "--prompts", str(tmp_path / "p.jsonl"),
                     "--out-dir", str(tmp_path / name), "--frames", "4", "--steps", "1", "--device", "cpu",
                     *extra]) == 0
    assert decode(tmp_path / "lossless" / "000000.mp4").codec == "h264 gbrp qp=0 (lossless)"
    assert decode(tmp_path / "default" / "000000.mp4").codec == "h264 yuv420p crf=18.0"
    assert json.loads((tmp_path / "lossless" / "000000.json").read_text())["lossless"] is True
    assert json.loads((tmp_path / "default" / "000000.json").read_text())["lossless"] is False
