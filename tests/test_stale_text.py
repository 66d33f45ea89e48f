"""Text that pointed nowhere (issue 33): the config sections' module table names modules that exist, the presets'
comments cite no README section (they state what they measured), and the two results modules that compare things
say which is which."""
from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import cometa
import cometa.config.sections

ROOT = Path(__file__).resolve().parents[1]


def test_the_config_sections_name_modules_that_exist():
    text = Path(cometa.config.sections.__file__).read_text()
    named = set(re.findall(r":mod:`([\w.]+)`", text)) | set(re.findall(r"\((cometa\.[\w.]+)\)", text))
    assert "cometa.core.strategies.lgl" in named
    assert not [m for m in sorted(named) if not _exists(m)]


def _exists(name: str) -> bool:
    """``name`` is a module, or an attribute of one (``cometa.core.blas.choose_kmeans_backend``)."""
    try:
        importlib.import_module(name)
        return True
    except ModuleNotFoundError:
        module, _, attr = name.rpartition(".")
        try:
            return hasattr(importlib.import_module(module), attr)
        except ModuleNotFoundError:
            return False


def test_the_presets_cite_no_readme_section():
    for preset in sorted((ROOT / "cometa" / "config" / "presets").glob("*.yaml")):
        cited = re.findall(r"README[,:]?\s*[\"'“]([^\"'”]+)", preset.read_text())
        assert not cited, f"{preset.name} cites README sections {cited}"


def test_the_results_modules_say_which_comparison_they_hold():
    several = importlib.import_module("cometa.results.several_runs")
    tables = importlib.import_module("cometa.results.strategy_tables")
    assert cometa.open_runs is several.open_runs and callable(several.side_by_side)
    assert callable(tables.table3) and callable(tables.table4)
    assert importlib.util.find_spec("cometa.results.compare") is None
    assert importlib.util.find_spec("cometa.results.comparison") is None
