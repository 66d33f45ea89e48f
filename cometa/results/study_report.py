"""The report of a grid study (``cometa study``), written into ``STUDY_DIR/report/`` by ``cometa report STUDY_DIR``.

* ``study.md``: the headline table first (one row per cell x strategy: the last round's audio, visual and
  fused EER on O, purity gain, the selection's enrichment; mean ± sample std over seeds), then every
  metric on O, E and H, then Stage I per cell (:mod:`cometa.results.study_tables`); ``study.csv`` holds
  the unrounded means, sample stds and seed counts; ``study.tex`` the two tables for a paper.
* Figures (:mod:`cometa.results.study_figures`, the dashboard's own): ``vs_<axis>`` (each headline
  metric against each axis, error bars), ``audio_eer_per_round`` and ``purity_per_round`` (every cell's
  rounds, std bands); SVG, PDF and PNG where a Chromium exists, as the run report's.
* ``provenance.json``: the study's ``provenance.json`` (spec, command, executor, machine: commit,
  packages, CPU model and SIMD flags, cores, ``OPENBLAS_CORETYPE``, GPU, host) plus ``steps``, one per
  run and step: the worker that ran it, its wall time, started and finished times and, for a step
  computed in another cell and hard-linked, ``shared_from``; ``workers`` sums them per worker.
* ``report.html``: the provenance header, the tables and the interactive figures.

Only the study directory is read; nothing here imports training code.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd

from cometa.results import study_figures as SF
from cometa.results import study_tables as ST
from cometa.results.export import ReportError, atomic_text, export_figures, require_browser, write_html
from cometa.results.study_gain import baseline_gain, gain_markdown

__all__ = ["step_records", "study_provenance", "provenance_lines", "study_report_figures", "write_study_report"]

_STEP_DEPTH = ("done.json", "*/done.json", "*/*/done.json")  # corpus, stage1 / <strategy>/round_<r>


def step_records(study_dir: str | Path, study: dict) -> list[dict]:
    """One record per finished step of every run of the study (its ``done.json``): ``run`` (relative
    to the study), ``step`` (relative to the run), ``worker``, ``seconds`` (wall time), ``started_at``,
    ``finished_at`` (epoch seconds) and ``shared_from`` (the run whose step was hard-linked here, or None)."""
    study_dir = Path(study_dir)
    out = []
    for run in study.get("runs") or [r for c in study["cells"] for r in c["runs"]]:
        base = study_dir / run
        for done in sorted({p for pattern in _STEP_DEPTH for p in base.glob(pattern)}):
            if done.parent.name == "report":
                continue
            try:
                d = json.loads(done.read_text())
            except (OSError, ValueError) as e:
                raise ReportError(f"{done}: not readable as JSON ({e})") from None
            out.append({"run": run, "step": str(done.parent.relative_to(base)) if done.parent != base else ".",
                        "worker": d.get("worker"), "seconds": d.get("seconds"), "started_at": d.get("started_at"),
                        "finished_at": d.get("finished_at"), "shared_from": d.get("shared_from")})
    return out


def _workers(steps: list[dict]) -> dict[str, dict]:
    """Per worker: how many steps it computed and their summed wall time (hard-linked copies not counted);
    steps whose ``done.json`` names no worker (written before the study engine) count as ``unrecorded``."""
    out: dict[str, dict] = {}
    for s in steps:
        if s["shared_from"] is None:
            w = out.setdefault(s["worker"] or "unrecorded", {"steps": 0, "seconds": 0.0})
            w["steps"] += 1
            w["seconds"] += float(s["seconds"] or 0.0)
    return out


def study_provenance(study_dir: str | Path, study: dict) -> dict:
    """The study's ``provenance.json`` (without one, the spec of ``study.json`` only) with ``steps``
    (:func:`step_records`) and ``workers`` (per worker: steps computed and their seconds)."""
    path = Path(study_dir) / "provenance.json"
    try:
        base = json.loads(path.read_text()) if path.exists() else {}
    except ValueError as e:
        raise ReportError(f"{path}: not readable as JSON ({e})") from None
    steps = step_records(study_dir, study)
    return {"spec": study.get("spec"), **base, "steps": steps, "workers": _workers(steps)}


def provenance_lines(prov: dict, study: dict) -> list[str]:
    """The report's header as Markdown bullet lines: spec, commit, CPU, cores, OPENBLAS_CORETYPE,
    executor, command and where the steps ran."""
    m = prov.get("machine") or {}
    cpu, git, ex = m.get("cpu") or {}, m.get("git") or {}, prov.get("executor") or {}
    lines = [f"- Study `{study.get('name')}`: preset `{study.get('preset')}`, strategies "
             f"{', '.join(study.get('strategies') or [])}, seeds {study.get('seeds')}, spec "
             f"`{study.get('spec_path') or '(command line)'}`"]
    if not m:
        lines.append("- No provenance.json in the study directory: the machine and the command are unknown")
    else:
        lines += [f"- Commit `{git.get('commit')}`" + (" (with uncommitted changes)" if git.get("dirty") else ""),
                  f"- CPU {cpu.get('model')}, {cpu.get('simd')} ({' '.join(cpu.get('flags') or [])}); "
                  f"{cpu.get('cores')} cores ({cpu.get('cores_usable')} usable); OPENBLAS_CORETYPE "
                  f"{m.get('openblas_coretype') or 'unset'}; GPU {m.get('gpu') or 'none'}; Python {m.get('python')}"]
    if ex:
        lines.append(f"- Executor {ex.get('kind')}" + (f" at {ex['address']}" if ex.get("address") else "")
                     + f", {len(ex.get('workers') or [])} worker(s)")
    if prov.get("command"):
        lines.append(f"- Command `{prov['command']}`")
    steps, workers = prov.get("steps") or [], prov.get("workers") or {}
    shared = sum(s["shared_from"] is not None for s in steps)
    lines.append(f"- {len(steps) - shared} steps computed, {shared} shared (hard-linked from another cell); "
                 "per worker: "
                 + "; ".join(f"{w} {v['steps']} steps, {v['seconds']:.0f} s" for w, v in workers.items()))
    return lines


def _stem(axis: str) -> str:
    return "vs_" + re.sub(r"[^A-Za-z0-9_-]", "_", axis)


def study_report_figures(table: pd.DataFrame, rounds: pd.DataFrame, study: dict,
                         gain: pd.DataFrame | None = None) -> dict:
    """The report's figures by file stem: ``vs_<axis>`` per axis, ``gain_over_baseline`` (per axis, or
    per cell without axes) when the study has a baseline and another strategy, ``audio_eer_per_round``,
    ``purity_per_round``."""
    figs = {_stem(axis): SF.axis_figure(table, axis=axis) for axis in study["axes"]}
    if gain is not None and not gain.empty:
        for axis in study["axes"] or [None]:
            stem = "gain_over_baseline" + ("" if axis is None or len(study["axes"]) == 1 else "_" + _stem(axis))
            figs[stem] = SF.gain_figure(gain, axis=axis)
    cells = list(dict.fromkeys(table["cell"]))
    figs["audio_eer_per_round"] = SF.round_curves(rounds, metric="audio_eer_O", cells=cells)
    figs["purity_per_round"] = SF.round_curves(rounds, metric="purity", cells=cells)
    return figs


def _intro(lines: list[str]) -> str:
    """The Markdown header lines as an HTML list (code spans kept as <code>)."""
    items = [re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(ln.removeprefix("- "))) for ln in lines]
    return "<ul class='provenance'>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def write_study_report(study_dir: str | Path, *, static: bool = True) -> Path:
    """Write ``study.md``, ``study.csv``, ``study.tex``, ``provenance.json``, the figures and
    ``report.html`` into ``study_dir/report/``; returns that folder.

    ``static=False`` skips the SVG/PDF/PNG export (no browser needed). Raises ReportError, before
    anything is written, when ``study_dir`` is not a grid study, none of its cells has an evaluated
    round yet, or static export lacks Chromium.
    """
    study_dir = Path(study_dir)
    study = ST.read_study(study_dir)
    if static:
        require_browser()  # fail before doing any work
    table = ST.study_table(study_dir, study)
    if table.empty:
        raise ReportError(f"{study_dir}: no cell of the study has an evaluated Stage II round yet")
    rounds, prov = ST.round_table(study_dir, study), study_provenance(study_dir, study)
    gain = baseline_gain(ST.seed_table(study_dir, study), axes=list(study["axes"]))
    header = provenance_lines(prov, study)
    tables = [ST.headline_markdown(table, study), *([gain_markdown(gain)] if not gain.empty else []),
              ST.full_markdown(table, study), ST.stage1_markdown(table)]
    out = study_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    atomic_text(out / "study.md", f"# Study {study.get('name')}\n\n" + "\n".join(header) + "\n\n"
                  + "\n".join(tables))
    atomic_text(out / "study.csv", table.to_csv(index=False))
    atomic_text(out / "study.tex", ST.study_latex(table, study))
    atomic_text(out / "provenance.json", json.dumps(prov, indent=2, default=str))
    figs = study_report_figures(table, rounds, study, gain)
    if not gain.empty:
        atomic_text(out / "gain_over_baseline.csv", gain.to_csv(index=False))
    if static:
        export_figures(figs, out)
    write_html(out / "report.html", f"cometa study report: {study.get('name')} ({study_dir.name})", tables, figs,
               intro=_intro(header))
    return out
