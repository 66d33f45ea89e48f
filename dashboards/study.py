"""The Study view: a grid study's table and its metrics against each axis (``cometa dashboard STUDY_DIR``).

The table and the figures are the study report's own (:mod:`cometa.results.study_tables`,
:mod:`cometa.results.study_figures`). The cells themselves are runs of the app's picker (the sidebar's
``cell``): every other view shows the chosen cell's seeds, mean ± std where a figure allows it.
"""
from __future__ import annotations

import pandas as pd
import panel as pn
import param

from cometa.results import study_figures as SF
from cometa.results import study_tables as ST
from dashboards.components import FigureCard, RunView

__all__ = ["StudyView"]


class StudyView(RunView):
    """One grid study: its headline table, one metric against one axis, and every cell's rounds."""

    study = param.Selector(default=None, objects=[], doc="the grid study shown")
    axis = param.Selector(default=None, objects=[], doc="the axis on the x axis")
    metric = param.Selector(default="audio_eer_O", objects=ST.METRICS, doc="the metric against the axis")
    per_round = param.Selector(default="audio_eer_O", objects=["audio_eer_O", "purity"],
                               doc="the metric of the per-round panels")

    def __init__(self, **params):
        super().__init__(**params)
        self.param.study.objects = self.data.studies
        self.study = self.data.studies[0] if self.data.studies else None
        self._axes()
        self.param.watch(lambda *_: self._axes(), "study")
        p = self.param
        controls = pn.Row(pn.widgets.Select.from_param(p.study, width=200),
                          pn.widgets.Select.from_param(p.axis, width=220),
                          pn.widgets.Select.from_param(p.metric, width=200),
                          pn.widgets.Select.from_param(p.per_round, name="per round", width=160))
        self._layout = pn.Column(
            controls,
            pn.pane.Markdown(pn.bind(self.headline, p.study), sizing_mode="stretch_width"),
            FigureCard(pn.bind(self.axis_figure, p.study, p.axis, p.metric), "metric_vs_axis"),
            FigureCard(pn.bind(self.round_figure, p.study, p.per_round), "per_round"),
            sizing_mode="stretch_width")

    def _axes(self) -> None:
        axes = list(ST.read_study(self.data.study_dir(self.study))["axes"]) if self.study else []
        self.param.axis.objects = axes
        self.axis = axes[0] if axes else None

    def headline(self, study: str | None) -> str:
        """The report's headline table (``study.md``'s first) of ``study``."""
        if study is None:
            return "No grid study is open (`cometa dashboard STUDY_DIR` opens one)."
        table, _ = self.data.study_tables(study)
        if table.empty:
            return f"No cell of {study} has an evaluated round yet."
        return ST.headline_markdown(table, ST.read_study(self.data.study_dir(study)))

    def axis_figure(self, study: str | None, axis: str | None, metric: str):
        """:func:`cometa.results.study_figures.metric_vs_axis` of the study's table."""
        if study is None or axis is None:
            return SF.metric_vs_axis(pd.DataFrame(columns=["cell", "variant", "strategy"]), axis="", metric=metric)
        table, _ = self.data.study_tables(study)
        return SF.metric_vs_axis(table, axis=axis, metric=metric)

    def round_figure(self, study: str | None, metric: str):
        """:func:`cometa.results.study_figures.round_curves` of every cell of the study."""
        if study is None:
            return SF.round_curves(pd.DataFrame(columns=["cell", "metric", "strategy", "round", "mean", "std", "n"]),
                                   metric=metric)
        _, rounds = self.data.study_tables(study)
        return SF.round_curves(rounds, metric=metric)

    def __panel__(self):
        return self._layout
