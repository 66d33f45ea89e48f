"""Several runs side by side: their tables next to each other, one figure per run.

:func:`open_runs` opens runs (paths, or :class:`cometa.results.explore.Run` objects such as the seeds of a
study, ``open_run(study).seeds``) as :class:`Runs`::

    import cometa
    runs = cometa.open_runs(["runs/demo", "runs/demo-tau0.3"])
    runs.table1()                                          # columns (run, strategy, modality)
    runs.compare("purity_per_round", views=["consensus"])  # the same figure of each run, side by side

Like :mod:`cometa.results.explore`, it reads run directories only (no torch).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cometa.results.explore import FIGURES, Run
from cometa.runs import grid_study

__all__ = ["Runs", "open_runs", "side_by_side"]


def _cells(path: str | os.PathLike) -> list[Path]:
    """A grid study's cells (each a study of its seeds), in the study's order; ``[path]`` for anything else."""
    study = grid_study(Path(path))
    return [Path(path) / c["name"] for c in study["cells"]] if study is not None else [Path(path)]


def open_runs(runs: Iterable[str | os.PathLike | Run], *, names: Sequence[str] | None = None) -> Runs:
    """Open several runs (paths or :class:`Run` objects, e.g. ``open_run(study).seeds``) to compare them.
    A grid study (``cometa study``) stands for its cells, each the mean of its seeds."""
    opened: list[Run] = []
    for r in runs:
        opened += [r] if isinstance(r, Run) else [Run(c) for c in _cells(r)]
    if names is None and len({r.name for r in opened}) < len(opened):  # runs/a/demo and runs/b/demo
        opened = [Run(r.path, name=f"{r.path.parent.name}/{r.path.name}") for r in opened]
    if names is not None:
        if len(names) != len(opened):
            raise ValueError(f"{len(names)} names for {len(opened)} runs")
        opened = [Run(r.path, name=n) for r, n in zip(opened, names)]
    return Runs(opened)


class Runs:
    """Several runs side by side (:func:`open_runs`). Iterate over it, or index it by name or position."""

    def __init__(self, runs: Sequence[Run]):
        if not runs:
            raise ValueError("open_runs needs at least one run")
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise ValueError(f"runs compared must have distinct names: {names} (pass names=...)")
        self.runs = list(runs)

    def __iter__(self):
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, i: int | str) -> Run:
        return self.runs[i] if isinstance(i, int) else next(r for r in self.runs if r.name == i)

    def __repr__(self) -> str:
        return f"<cometa runs {[r.name for r in self.runs]}>"

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.runs]

    @property
    def scalars(self) -> pd.DataFrame:
        """Every run's scalars one below the other, with the run's name in ``run``."""
        return pd.concat([r.scalars.assign(run=r.name) for r in self.runs], ignore_index=True)

    def table1(self, trial_list: str = "O", **kw) -> pd.DataFrame:
        """Each run's Table 1 (EER %) side by side: columns (run, strategy, modality)."""
        return pd.concat({r.name: r.table1(trial_list, **kw) for r in self.runs}, axis=1, names=["run"])

    def table2(self, **kw) -> pd.DataFrame:
        """Each run's Table 2 one below the other: rows (run, strategy, modality, round)."""
        return pd.concat({r.name: r.table2(**kw) for r in self.runs}, names=["run"])

    def compare(self, figure: str, *, title: str | None = None, **kw) -> go.Figure:
        """One figure of every run, side by side (:func:`side_by_side`): ``figure`` names a :class:`Run`
        method of :data:`FIGURES` with one panel (pick one with ``views=[...]`` or ``panels=[...]``)."""
        if figure not in FIGURES:
            raise ValueError(f"figure must be one of {FIGURES}, got {figure!r}")
        figs = {r.name: getattr(r, figure)(**kw) for r in self.runs}
        return side_by_side(figs, title=title)


def side_by_side(figs: dict[str, go.Figure], *, title: str | None = None, height: int | None = None) -> go.Figure:
    """One-panel figures as the columns of one figure, sharing the y axis; column titles are the keys.

    Traces keep their colours and dashes, so a strategy looks the same in every column, and each
    legend entry appears once; axis titles and ticks, and shapes drawn on the data axes (the round
    boundaries of ``training_dynamics``), come along. A figure with several panels is an error (pick
    one panel first, e.g. ``purity_per_round(views=["consensus"])``).
    """
    for name, fig in figs.items():
        axes = {k for k in fig.layout.to_plotly_json() if k.startswith(("xaxis", "yaxis"))} - {"xaxis", "yaxis"}
        if axes:
            raise ValueError(f"{name}: the figure has several panels ({sorted(axes)}); pick one panel to compare")
    first = next(iter(figs.values()))
    out = make_subplots(rows=1, cols=len(figs), shared_yaxes=True, subplot_titles=list(figs),
                        horizontal_spacing=0.04)
    seen: set[tuple] = set()
    shapes = []
    for j, fig in enumerate(figs.values(), 1):
        suffix = "" if j == 1 else str(j)
        for tr in fig.data:
            key = (tr.legendgroup, tr.name)  # one legend entry per trace name (and group)
            tr = go.Figure(tr).data[0]  # a copy: the source figures stay as they were
            tr.showlegend = tr.showlegend is not False and key not in seen
            seen.add(key)
            out.add_trace(tr, 1, j)
        out.layout[f"xaxis{suffix}"].update(_axis(fig.layout.xaxis))
        for shape in fig.layout.shapes:
            sh = shape.to_plotly_json()
            if str(sh.get("xref", "")).startswith("x") and str(sh.get("yref", "")).startswith("y"):
                sh["xref"] = sh["xref"].replace("x", f"x{suffix}", 1)
                sh["yref"] = sh["yref"].replace("y", f"y{suffix}", 1)
                shapes.append(sh)
    out.layout.yaxis.update(_axis(first.layout.yaxis))
    out.update_layout(template=first.layout.template, font=first.layout.font, legend=first.layout.legend,
                      margin=first.layout.margin, shapes=shapes, title=title or first.layout.title.text or "",
                      height=height or first.layout.height or 420)
    return out


def _axis(axis) -> dict:
    """An axis's looks (title, ticks, range, type) without its place (domain, anchor, matches)."""
    a = axis.to_plotly_json()
    for k in ("domain", "anchor", "matches", "scaleanchor", "scaleratio", "overlaying", "position"):
        a.pop(k, None)
    return a
