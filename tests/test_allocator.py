"""lumiere_pl/utils/allocator.py: with glibc tuned, a freed large tensor's memory is reused instead of being unmapped
and faulted in again on the next allocation (the kernel time that halved guided sampling on the CPU)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import resource, sys, torch
    from lumiere_pl.utils.allocator import keep_freed_memory

    def faults():                    # minor page faults of 10 allocate-touch-free rounds of a 64 MiB tensor
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            x = torch.ones(16 * 2 ** 20)
            del x
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults()
    default = faults()
    tuned = keep_freed_memory()
    faults()                         # the first allocation after tuning still faults its pages in once
    print(default, int(tuned), faults())
""")


def _probe(env_extra: dict) -> tuple:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    default, tuned, after = map(int, out.stdout.split())
    return default, bool(tuned), after


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_allocator_reuses_freed_memory_instead_of_faulting_it_in_again():
    default, tuned, after = _probe({})
    assert tuned
    assert default > 10 * 16_000            # 64 MiB = 16,384 pages, faulted in every round by default
    assert after < default / 20             # tuned: the heap keeps the pages


def test_lumiere_malloc_system_keeps_the_defaults():
    default, tuned, after = _probe({"LUMIERE_MALLOC": "system"})
    assert not tuned and after > default / 2
