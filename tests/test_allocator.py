"""eval/allocator.py (lumiere_pl.utils.allocator re-exports it): with glibc tuned, a freed large tensor's memory is
reused instead of being unmapped and faulted in again on the next allocation (the kernel time that halved guided
sampling on the CPU); every lumiere-* command tunes it, lumiere-eval too; and the eval package stays standalone."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import resource, sys, torch
    from lumiere_pl.utils.allocator import keep_freed_memory
    TUNE

    def faults():                    # minor page faults of 10 allocate-touch-free rounds of a 64 MiB tensor
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            x = torch.ones(16 * 2 ** 20)
            del x
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults()
    default = faults()
    tuned = tune()
    faults()                         # the first allocation after tuning still faults its pages in once
    print(default, int(tuned), faults())
""")
TUNE = "tune = keep_freed_memory"
# lumiere-eval, run on a cheap command, tunes the allocator for the rest of its process
EVAL_TUNE = ("import tempfile, os, eval.cli\n"
             "def tune():\n"
             "    out = os.path.join(tempfile.mkdtemp(), 'p.jsonl')\n"
             "    return eval.cli.main(['ucf101-prompts', '--n', '3', '--out', out]) == 0 and os.path.exists(out)")


def _probe(env_extra: dict, tune: str = TUNE) -> tuple:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", PROBE.replace("TUNE", tune)], capture_output=True, text=True,
                         env=env, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    default, tuned, after = map(int, out.stdout.splitlines()[-1].split())     # the CLI may print before
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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_lumiere_eval_tunes_the_allocator_too():
    default, ran, after = _probe({}, EVAL_TUNE)
    assert ran and default > 10 * 16_000 and after < default / 20
    default, ran, after = _probe({"LUMIERE_MALLOC": "system"}, EVAL_TUNE)
    assert ran and after > default / 2


def test_the_eval_package_imports_nothing_of_lumiere_pl():
    """eval is standalone (any model's videos can be scored without lumiere_pl): importing every one of its modules
    leaves lumiere_pl unimported."""
    code = ("import pkgutil, importlib, sys, eval\n"
            "for m in pkgutil.iter_modules(eval.__path__):\n"
            "    importlib.import_module('eval.' + m.name)\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] == 'lumiere_pl'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "[]"
