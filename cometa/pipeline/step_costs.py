"""What a study's steps cost, for ``cometa study --dry-run``'s estimate of CPU time.

The costs are measured, not guessed: ``python -m bench.step_costs RUN_DIR`` reads a finished run's
steps (the CPU seconds of each step's kernel, which a study records in its ``done.json``; for a step
without them, its wall seconds times the threads its notebook ran with) and records CPU seconds by
step kind and preset in ``bench/step_costs.json``, with the machine that ran them. A round's cost is
the mean over the run's rounds of that strategy.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from cometa.runs import RunStore, study_runs

__all__ = ["STEP_COSTS_FILE", "step_kind", "measure_step_costs", "load_step_costs"]

STEP_COSTS_FILE = Path(__file__).resolve().parents[2] / "bench" / "step_costs.json"


def step_kind(name: str) -> str:
    """A step's kind for its cost: ``corpus``, ``stage1``, ``round:<strategy>``, ``analysis:stage1``,
    ``analysis`` (a strategy's), ``projections``."""
    if "/round_" in name:
        return "round:" + name.split("/")[0]
    if name.startswith("analysis/"):
        return "analysis:stage1" if name == "analysis/stage1" else "analysis"
    return name


def _threads(step_dir: Path) -> int:
    """The threads a step's notebook ran with (papermill keeps its parameters in the executed copy)."""
    for nb in step_dir.glob("*.ipynb"):
        try:
            params = json.loads(nb.read_text())["metadata"]["papermill"]["parameters"]
            return max(1, int(params.get("threads", 1)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return 1


def measure_step_costs(run_dir: str | Path) -> dict[str, float]:
    """CPU seconds by step kind of a finished run, or of every run of a study: the kernel's measured
    CPU seconds (else wall seconds x threads), averaged over the steps of a kind. Steps that were
    copied from another run (``shared_from``) are not measurements and are skipped, and so is a
    report (written once per study, not per run)."""
    run_dir = Path(run_dir)
    per_kind: dict[str, list[float]] = defaultdict(list)
    for done in sorted(run_dir.glob("**/done.json")):
        info = json.loads(done.read_text())
        name = info.get("step")
        if not name or name == "report" or info.get("shared_from") or "seconds" not in info:
            continue
        cpu = info.get("cpu_seconds")  # measured (a study's steps); else the wall time over the threads it had
        per_kind[step_kind(name)].append(float(cpu) if cpu else float(info["seconds"]) * _threads(done.parent))
    if not per_kind:
        raise ValueError(f"{run_dir}: no finished steps to measure")
    return {k: round(sum(v) / len(v), 1) for k, v in sorted(per_kind.items())}


def load_step_costs(preset: str, path: str | Path = STEP_COSTS_FILE) -> dict[str, float] | None:
    """The measured CPU seconds by step kind for ``preset``; None when none were measured."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    entry = data.get(preset)
    return {k: float(v) for k, v in entry["cpu_seconds"].items()} if entry else None


def preset_of(run_dir: str | Path) -> str:
    """The preset of a run, or of a study's first run."""
    runs = study_runs(run_dir)
    return str(RunStore(runs[0] if runs else run_dir).config().get("preset"))
