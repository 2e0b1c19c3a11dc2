"""lumiere_pl/config.py is the bottom of the package: importing it loads no other module of the project, so every
package can import it without a circle (the registry checks live above, in lumiere_pl/config_checks.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_modules_after(statement: str) -> list:
    code = (f"import sys, json; {statement}; "
            "print(json.dumps(sorted(m for m in sys.modules if m == 'lumiere_pl' or m.startswith('lumiere_pl.'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_config_imports_nothing_else_of_the_project():
    # lumiere_pl.errors is the exception leaf (ConfigError is an InputError, exit 2); it imports nothing itself
    assert project_modules_after("import lumiere_pl.config") == ["lumiere_pl", "lumiere_pl.config", "lumiere_pl.errors"]
    assert project_modules_after("import lumiere_pl.errors") == ["lumiere_pl", "lumiere_pl.errors"]


def test_the_checks_module_sees_the_registries():
    """The other direction: config_checks imports the registries it checks against when it validates."""
    mods = project_modules_after("from lumiere_pl.config_checks import load_config; load_config(None, [])")
    assert {"lumiere_pl.models", "lumiere_pl.data", "lumiere_pl.text", "lumiere_pl.diffusion"} <= set(mods)
