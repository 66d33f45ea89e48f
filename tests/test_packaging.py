"""requirements.txt, pyproject.toml and environment.yml pin the same versions."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_pins_agree():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pyproject = _pins(py["dependencies"] + [d for ds in py["optional-dependencies"].values() for d in ds])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = _pins(pip_section)
    assert req, "no pins found in requirements.txt"
    assert req == pyproject == conda
    assert req["torch"] == "2.11.0" and req["numpy"] == "2.4.6"


def test_every_pin_is_exact():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert "==" in line, f"unpinned requirement: {line}"
