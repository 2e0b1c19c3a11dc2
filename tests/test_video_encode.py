"""MP4 encoding is a function of the frames: the same frames give the same bytes in every process, however many
CPUs it may use, lossy and lossless (lumiere_pl/utils/video.encode: one x264 thread, x264's SSE2 functions)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from _resume_helpers import ENV, ROOT

ENCODE = textwrap.dedent("""
    import hashlib
    import io
    import os
    import sys

    import av
    import numpy as np

    from lumiere_pl.data.video_io import encode

    if sys.argv[1] != "all":                             # one CPU: x264 would pick fewer threads by itself
        os.sched_setaffinity(0, {int(sys.argv[1])})
    rng = np.random.default_rng(0)                       # 96 x 96 px, 8 frames of moving stripes and noise: the clip
    yy, xx = np.mgrid[0:96, 0:96]                        # that x264's AVX-512 functions encoded 6 ways in 25 tries
    frames = np.stack([np.stack([(xx * 4 + i * 8) % 256, (yy * 4) % 256, (xx + yy + i * 3) % 256], -1)
                       for i in range(8)]).astype(np.float64)
    frames = np.clip(frames + rng.normal(0, 20, frames.shape), 0, 255).astype(np.uint8)
    junk = []
    for i in range(6):
        junk.append(bytearray(os.urandom(1 + (i * 104729) % 300000)))   # other heap contents before each encode
        for lossless in (False, True):
            data = encode(frames, 8.0, lossless=lossless)
            print("lossless" if lossless else "lossy", hashlib.sha256(data).hexdigest())
    with av.open(io.BytesIO(data)) as f:
        back = np.stack([fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)])
    assert np.array_equal(back, frames)                  # lossless still decodes to the frames
""")


def test_the_same_frames_give_the_same_mp4_bytes_in_every_process():
    """Two processes (the second on a single CPU where it can be), each encoding the same clip six times between
    other allocations: one file per mode. x264's own choices gave 11 files in 18 encodes of this clip."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    hashes = {"lossy": set(), "lossless": set()}
    for where in ["all", str(cpus[0]) if len(cpus) > 1 else "all"]:
        done = subprocess.run([sys.executable, "-c", ENCODE, where], cwd=ROOT, env=ENV, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        for line in done.stdout.splitlines():
            mode, digest = line.split()
            hashes[mode].add(digest)
    assert len(hashes["lossy"]) == 1 and len(hashes["lossless"]) == 1, hashes
