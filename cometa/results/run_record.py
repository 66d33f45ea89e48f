"""A run's record (``provenance.json``) as a reader sees it: the report's header and ``Run.provenance``.

The record is written by the orchestrator (:mod:`cometa.pipeline.provenance`): one session per
``cometa run`` that worked in the directory, each with the command, the code (git commit, dirty
tree), the pinned packages, Python, the CPU (model, SIMD flags, cores), ``OPENBLAS_CORETYPE``, the
GPU, the host, and the start and end of every step it ran. Results differ in the last bits across
CPU kinds; these lines say which kind made a run's numbers.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cometa.pipeline.provenance import read_provenance
from cometa.runs import study_runs

__all__ = ["run_provenance", "provenance_lines"]


def run_provenance(run_dir: str | Path) -> dict[str, Any] | None:
    """The record of a run (``RUN_DIR/provenance.json``), or of a study's first seed run; None when
    the run has none (a run made before records were written)."""
    run_dir = Path(run_dir)
    if not (run_dir / "store.sqlite").exists() and study_runs(run_dir):
        run_dir = study_runs(run_dir)[0]
    return read_provenance(run_dir)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t is not None else "?"


def provenance_lines(run_dir: str | Path) -> list[str]:
    """The record in a few lines of text (the report's header): what ran, on what, and when. One line
    saying there is no record when the run has none."""
    record = run_provenance(run_dir)
    if record is None or not record["sessions"]:
        return ["provenance: none recorded (a run made before run records were kept)"]
    sessions = record["sessions"]
    last = sessions[-1]
    cpu, git = last.get("cpu") or {}, last.get("git") or {}
    packages = last.get("packages") or {}
    steps = [s for session in sessions for s in (session.get("steps") or {}).values()]
    finished = max((s["finished_at"] for s in steps), default=None)
    commit = (git.get("commit") or "?")[:12] + (" (dirty tree)" if git.get("dirty") else "")
    lines = [
        f"command: {last.get('command', '?')}",
        f"code: git {commit}; Python {last.get('python', '?')}; "
        + ", ".join(f"{k} {packages[k]}" for k in ("torch", "numpy", "faiss-cpu") if packages.get(k)),
        f"machine: {last.get('host', '?')}, {cpu.get('model') or '?'} ({cpu.get('simd') or '?'}; "
        f"{' '.join(cpu.get('flags') or []) or 'no SIMD flags read'}), {cpu.get('cores_usable', '?')} of "
        f"{cpu.get('cores', '?')} cores, OPENBLAS_CORETYPE {last.get('openblas_coretype') or 'unset'}, "
        f"GPU {last.get('gpu') or 'none'}",
        f"ran: {len(sessions)} session(s), {len(steps)} step(s), started {_when(sessions[0].get('started_at'))}, "
        f"last step finished {_when(finished)}",
    ]
    return lines
