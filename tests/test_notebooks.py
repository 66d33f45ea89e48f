"""The notebooks' parameters: what papermill reads from each ``parameters`` cell is exactly what the
pipeline passes (so a run prints no "Passed unknown parameter"), every parameter is used, none
shadows a builtin, the cells parse without papermill's "Unable to parse line", and the committed
notebooks are what ``tools/make_notebooks.py`` writes."""
from __future__ import annotations

import ast
import builtins
import json
import logging
from pathlib import Path

import papermill as pm
import pytest

from cometa.config import load_config
from cometa.pipeline.plan import NOTEBOOK_DIR, notebook_parameters, plan_steps, report_step
from tools.make_notebooks import build

STEP_NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
EXPLORE_NOTEBOOKS = sorted(p.name for p in (NOTEBOOK_DIR / "explore").glob("*.ipynb"))


def _inferred(path: Path, caplog) -> dict[str, str]:
    """papermill's own reading of the parameters cell: name -> default (as source text); fails on
    any warning papermill logs while reading it."""
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        params = pm.inspect_notebook(str(path))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    return {name: p["default"] for name, p in params.items()}


def _code_after_parameters(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    i = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    return "\n".join("".join(c["source"]) for c in cells[i + 1:] if c["cell_type"] == "code")


def _names_read(code: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def test_every_step_notebook_is_planned():
    planned = {s.notebook for s in plan_steps(load_config("tiny"), Path("/run"))}
    assert planned == set(STEP_NOTEBOOKS)


@pytest.mark.parametrize("notebook", STEP_NOTEBOOKS)
def test_papermill_reads_exactly_the_parameters_the_pipeline_passes(notebook, caplog, tmp_path):
    inferred = _inferred(NOTEBOOK_DIR / notebook, caplog)
    steps = [s for s in plan_steps(load_config("tiny"), tmp_path) if s.notebook == notebook]
    if notebook == "90_report.ipynb":
        steps.append(report_step(tmp_path / "study"))  # run_study's combined report, through the same notebook
    assert steps
    for step in steps:
        assert set(notebook_parameters(step, threads=2)) == set(inferred), step.name


@pytest.mark.parametrize("notebook", [*STEP_NOTEBOOKS, *(f"explore/{n}" for n in EXPLORE_NOTEBOOKS)])
def test_each_parameter_is_used_and_shadows_no_builtin(notebook, caplog):
    path = NOTEBOOK_DIR / notebook
    params = _inferred(path, caplog)
    assert params, f"{notebook} has no parameters cell"
    assert not set(params) & set(dir(builtins)), "a parameter named like a builtin (round, ...)"
    unused = set(params) - _names_read(_code_after_parameters(path))
    assert unused == set(), f"{notebook}: parameters it never uses"


def test_the_what_if_rerun_passes_the_round_notebook_its_parameters(tmp_path, caplog):
    """:func:`cometa.pipeline.rerun.what_if` runs one round step through the same parameters."""
    step = next(s for s in plan_steps(load_config("tiny"), tmp_path) if s.name == "cometa/round_2")
    assert notebook_parameters(step, threads=0) == {"run_dir": str(tmp_path), "strategy": "cometa", "round_no": 2,
                                                    "threads": 0}
    assert set(_inferred(NOTEBOOK_DIR / "20_round.ipynb", caplog)) == {"run_dir", "strategy", "round_no", "threads"}


def test_the_committed_notebooks_are_what_the_generator_writes(tmp_path):
    build(tmp_path)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.ipynb"))
    assert written == sorted([*STEP_NOTEBOOKS, *(f"explore/{n}" for n in EXPLORE_NOTEBOOKS)])
    for rel in written:
        assert json.loads((tmp_path / rel).read_text()) == json.loads((NOTEBOOK_DIR / rel).read_text()), (
            f"notebooks/{rel} differs from tools/make_notebooks.py: run `python tools/make_notebooks.py`")
