"""What every dashboard view shares: the app state, the figure card with its exports, small helpers.

:class:`AppState` holds the one :class:`~dashboards.data.RunData` store and the chosen run; each view
is a :class:`RunView` over it. :class:`FigureCard` shows a figure from :mod:`cometa.results.figures` and
exports exactly what is on screen (zoom, hidden traces and all) as PNG or SVG in the browser with
``Plotly.downloadImage``: no server-side renderer is needed. The modebar's camera gives a PNG too.
"""
from __future__ import annotations

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from cometa.results.report import strategies_of
from dashboards.data import RunData

__all__ = ["AppState", "FigureCard", "RunView", "plotly_config", "table", "pivot", "VIEWS", "LABEL_METRICS",
           "TABLE_CSS"]

VIEWS = ["audio", "visual", "joint", "consensus"]
LABEL_METRICS = ["purity", "inverse_purity", "nmi", "ari", "n_clusters", "flip_rate", "kept_frac", "session_coherence",
                 "wrong_whole_session_frac"]
TABLE_CSS = """
table {border-collapse: collapse; font-size: 0.9em; margin-bottom: 1em}
th, td {padding: 3px 10px; border-bottom: 1px solid #e3e3e3; text-align: left; white-space: nowrap}
thead th {border-bottom: 2px solid #444}
"""
# Panel's Plotly view keeps the plotly div as ``container``; Plotly renders it at its on-screen size
_EXPORT_JS = """
const view = Bokeh.index.find_one(plot)
if (view == null || view.container == null || window.Plotly == null) { return }
window.Plotly.downloadImage(view.container, {format: fmt, filename: stem, scale: fmt === "png" ? 2 : 1})
"""


def plotly_config(stem: str) -> dict:
    """The modebar: no logo; the camera saves a 2x PNG named after the figure."""
    return {"displaylogo": False, "responsive": True,
            "toImageButtonOptions": {"format": "png", "scale": 2, "filename": stem}}


class AppState(param.Parameterized):
    """What every view shares: the data store and the chosen run."""

    data = param.ClassSelector(class_=RunData, constant=True)
    run = param.Selector(default=None, objects=[], doc="the run shown")

    def __init__(self, data: RunData, **params):
        super().__init__(data=data, **params)
        self.param.run.objects = data.run_ids
        self.run = data.run_ids[0]


class FigureCard(Viewer):
    """A plotly pane (its figure may be a ``pn.bind`` function) and PNG / SVG export buttons."""

    stem = param.String(default="figure", doc="file name of the exports, without extension")

    def __init__(self, figure, stem: str, **params):
        super().__init__(stem=stem, **params)
        self.pane = pn.pane.Plotly(figure, config=plotly_config(stem), sizing_mode="stretch_width")
        buttons = []
        for fmt in ("png", "svg"):
            b = pn.widgets.Button(label=f"⤓ {fmt.upper()}", color="light", width=70, height=30, margin=(0, 4),
                                  css_classes=[f"export-{fmt}"], description=f"save this figure as {fmt.upper()}")
            b.js_on_click(args={"plot": self.pane, "fmt": fmt, "stem": stem}, code=_EXPORT_JS)
            buttons.append(b)
        self._layout = pn.Column(pn.Row(pn.HSpacer(), *buttons, sizing_mode="stretch_width", height=34),
                                 self.pane, sizing_mode="stretch_width")

    def __panel__(self):
        return self._layout


def table(df, **kw) -> pn.pane.DataFrame:
    """A read-only table (``df`` may be a ``pn.bind`` function)."""
    return pn.pane.DataFrame(df, sizing_mode="stretch_width", max_height=420, **kw)


def pivot(df: pd.DataFrame, empty: str, columns: list[str] | None = None) -> pd.DataFrame:
    """``strategy x modality`` rows, one column per scalar name (the latest value); a one-cell note if empty."""
    if df.empty:
        return pd.DataFrame({"": [empty]})
    t = df.sort_values("time").pivot_table(index=["strategy", "modality"], columns="name", values="value",
                                           aggfunc="last")
    order = {s: i for i, s in enumerate(strategies_of(df))}  # the paper's order, as in every figure
    t = t.sort_index(level=0, key=lambda idx: idx.map(order), sort_remaining=False)
    return t[[c for c in columns if c in t.columns]] if columns else t


class RunView(Viewer):
    """Base of the views: one view of the chosen run; ``round`` bounds follow the run's rounds."""

    state = param.ClassSelector(class_=AppState)

    @property
    def app(self) -> AppState:
        """The shared state (set at construction)."""
        assert self.state is not None, f"{type(self).__name__} needs state=AppState(...)"
        return self.state

    @property
    def data(self) -> RunData:
        data = self.app.data
        assert data is not None  # (AppState's constructor sets it)
        return data

    def _round_bounds(self, strategy: str | None = None) -> None:
        rounds = self.data.rounds(self.app.run, strategy) or [1]
        self.param.round.bounds = (1, max(rounds[-1], 2))  # a slider needs start < end
        if not 1 <= self.round <= rounds[-1]:
            self.round = rounds[-1]

    def _strategy_choices(self) -> None:
        """Fill a ``strategy`` selector with the run's strategies (Co-Meta first when present)."""
        names = self.data.strategies(self.app.run)
        self.param.strategy.objects = names
        self.strategy = "cometa" if "cometa" in names else (names[0] if names else None)
