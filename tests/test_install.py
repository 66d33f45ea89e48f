"""The checkout is installed in its environment (issue 33): ``cometa`` is a command, and ``import cometa`` works
from any directory without PYTHONPATH, importing this checkout (``tools/setup_env.sh`` installs the checkout it
runs in, editable; ``environment.yml`` does the same for conda)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _bare_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_the_cometa_command_runs_from_another_directory(tmp_path):
    exe = Path(sys.executable).parent / "cometa"  # the console script of pyproject.toml's [project.scripts]
    assert exe.exists(), f"{exe}: the checkout is not installed in this environment (tools/setup_env.sh)"
    out = subprocess.run([str(exe), "--help"], cwd=tmp_path, env=_bare_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: cometa") and "run" in out.stdout and "compare" in out.stdout


def test_import_cometa_from_another_directory_imports_this_checkout(tmp_path):
    out = subprocess.run([sys.executable, "-c", "import cometa; print(cometa.__file__)"], cwd=tmp_path,
                         env=_bare_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).resolve() == ROOT / "cometa" / "__init__.py"


def test_the_set_ups_install_the_checkout():
    setup = (ROOT / "tools" / "setup_env.sh").read_text()
    assert '-m pip install --quiet --no-deps -e "$here"' in setup
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section
