"""The plotly figures of a grid study, shared by its report and the dashboard's Study view.

Pure functions of the tables of :mod:`cometa.results.study_tables`: ``study_table`` (one row per cell x
strategy, ``<metric>_mean`` / ``_std`` / ``_n`` over seeds) and ``round_table`` (per cell, strategy and
round). Colours are the strategies' own (:data:`cometa.results.figures.STRATEGY_COLORS`); a variant gets
a dash, so one line is one strategy of one variant (and one value of every other axis).

| figure          | shows                                                                        |
|-----------------|------------------------------------------------------------------------------|
| metric_vs_axis  | one metric against one axis' values, error bars = sample std over the seeds   |
| axis_figure     | every headline metric against one axis, one panel each                       |
| round_curves    | a per-round metric of every cell (one panel each), mean ± std bands           |
| gain_figure     | each strategy's paired gain over the baseline against an axis (or per cell),  |
|                 | error bars = 95 % t-interval over seeds, zero = the baseline                  |
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cometa.results import figures as F
from cometa.results.study_tables import HEADLINE, metric_label

__all__ = ["metric_vs_axis", "axis_figure", "round_curves", "gain_figure"]

_DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
_LAYOUT = dict(template="plotly_white", font=dict(family="Arial, sans-serif", size=12),
               margin=dict(l=60, r=20, t=70, b=50), legend=dict(orientation="h", y=-0.15))


def _scale(metric: str) -> float:
    return 100.0 if "_eer_" in metric else 1.0


def _numeric(values: pd.Series) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def _axis_traces(table: pd.DataFrame, *, axis: str, metric: str, legend: bool = True) -> list[go.Scatter]:
    """One line per strategy x variant x value of every other axis: ``metric``'s mean over seeds at each
    value of ``axis``, with the sample std as error bars (none for one seed). A cell without ``axis``
    (a variant that lacks it, e.g. k-means labels beside truth labels at several noise rates) is a
    dotted horizontal line at its mean, across the axis' range (:func:`_reference_traces`)."""
    if axis not in table.columns:
        return []
    d = table[table[axis].notna()]
    others = [c for c in table.columns[table.columns.get_loc("variant") + 1:table.columns.get_loc("strategy")]
              if c != axis and d[c].notna().any()]
    variants = list(dict.fromkeys(d["variant"].dropna()))
    traces = []
    for key, g in d.groupby(["strategy", "variant", *others], dropna=False, sort=False):
        strategy, variant, rest = key[0], key[1], key[2:]
        g = g.sort_values(axis, key=lambda v: v if _numeric(v) else v.astype(str))
        x = g[axis] if _numeric(g[axis]) else g[axis].astype(str)
        sd = g[f"{metric}_std"].fillna(0.0) * _scale(metric)
        name = " · ".join([F.STRATEGY_NAMES.get(strategy, strategy),
                           *([] if not isinstance(variant, str) else [variant]),
                           *(f"{a}={v}" for a, v in zip(others, rest) if not (isinstance(v, float) and math.isnan(v)))])
        dash = _DASHES[variants.index(variant) % len(_DASHES)] if isinstance(variant, str) else "solid"
        traces.append(go.Scatter(
            x=list(x), y=list(g[f"{metric}_mean"] * _scale(metric)), mode="lines+markers", name=name,
            legendgroup=name, showlegend=legend,
            error_y=dict(type="data", array=list(sd), visible=bool((g[f"{metric}_n"] > 1).any()), thickness=1.2),
            line=dict(color=F.strategy_color(strategy), dash=dash), marker=dict(size=7),
            customdata=list(zip(sd, g[f"{metric}_n"], g["cell"])),
            hovertemplate=f"{name}<br>{axis} = %{{x}}<br>%{{y:.3f}} ± %{{customdata[0]:.3f}} "
                          "(%{customdata[1]} seeds, cell %{customdata[2]})<extra></extra>"))
    return traces + _reference_traces(table, d, axis=axis, metric=metric, legend=legend)


def _reference_traces(table: pd.DataFrame, with_axis: pd.DataFrame, *, axis: str, metric: str,
                      legend: bool) -> list[go.Scatter]:
    """One dotted horizontal line per row of ``table`` that lacks ``axis``, at its mean, from the first
    to the last value of the axis among ``with_axis`` (the rows that have it)."""
    if with_axis.empty:
        return []
    values = with_axis[axis].sort_values(key=lambda v: v if _numeric(v) else v.astype(str))
    ends = [values.iloc[0], values.iloc[-1]] if _numeric(values) else [str(values.iloc[0]), str(values.iloc[-1])]
    traces = []
    for _, r in table[table[axis].isna()].iterrows():
        mean, sd = r[f"{metric}_mean"] * _scale(metric), r[f"{metric}_std"] * _scale(metric)
        if math.isnan(mean):
            continue
        name = f"{F.STRATEGY_NAMES.get(r['strategy'], r['strategy'])} · {r['cell']} (no {axis})"
        spread = ("" if math.isnan(sd) else f" ± {sd:.3f}") + f" ({r[f'{metric}_n']} seeds)"
        traces.append(go.Scatter(x=ends, y=[mean, mean], mode="lines", name=name, legendgroup=name,
                                 showlegend=legend, line=dict(color=F.strategy_color(r["strategy"]), dash="dot",
                                                              width=1.5),
                                 hovertemplate=f"{name}<br>%{{y:.3f}}{spread}<extra></extra>"))
    return traces


def _x_axis(table: pd.DataFrame, axis: str) -> dict:
    values = table[axis].dropna() if axis in table.columns else pd.Series([], dtype=object)
    if len(values) and _numeric(values):
        ticks = sorted(set(float(v) for v in values))
        return dict(title=axis, tickvals=ticks, ticktext=[f"{v:g}" for v in ticks])
    return dict(title=axis, type="category")


def metric_vs_axis(table: pd.DataFrame, *, axis: str, metric: str = "audio_eer_O",
                   title: str | None = None) -> go.Figure:
    """``metric`` (a :data:`cometa.results.study_tables.METRICS` name) against the values of ``axis`` (a
    config key of the study's axes): mean over seeds with sample-std error bars, one line per strategy
    (and variant). EERs in %."""
    title = title or f"{metric_label(metric)} against {axis} (mean ± sample std over seeds)"
    traces = _axis_traces(table, axis=axis, metric=metric)
    fig = go.Figure(traces)
    if not traces:
        fig.add_annotation(text=f"no cell with {axis} has finished a round yet", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
    fig.update_xaxes(**_x_axis(table, axis))
    fig.update_yaxes(title=metric_label(metric))
    fig.update_layout(title=title, height=420, **_LAYOUT)
    return fig


def axis_figure(table: pd.DataFrame, *, axis: str, metrics: Sequence[str] = HEADLINE) -> go.Figure:
    """Every metric of ``metrics`` against ``axis``, one panel each (three per row), as :func:`metric_vs_axis`."""
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[metric_label(m) for m in metrics],
                        horizontal_spacing=0.08, vertical_spacing=0.16)
    for i, metric in enumerate(metrics):
        for trace in _axis_traces(table, axis=axis, metric=metric, legend=i == 0):
            fig.add_trace(trace, row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(**_x_axis(table, axis))
    fig.update_layout(title=f"Last round against {axis} (mean ± sample std over seeds)", height=330 * rows + 80,
                      width=1100, **_LAYOUT)
    return fig


def round_curves(rounds: pd.DataFrame, *, metric: str = "audio_eer_O", cells: Sequence[str] | None = None,
                 title: str | None = None) -> go.Figure:
    """``metric`` of ``round_table`` (``audio_eer_O`` or ``purity``) per round, one panel per cell
    (three per row), one line per strategy with a band of ± the sample std over seeds."""
    d = rounds[rounds["metric"] == metric]
    cells = list(cells or dict.fromkeys(d["cell"]))
    label = "audio EER O (%)" if metric == "audio_eer_O" else "consensus purity"
    title = title or f"{label} per round, every cell (mean ± sample std over seeds)"
    cols = max(1, min(3, len(cells)))
    n_rows = max(1, math.ceil(len(cells) / cols))
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=cells or None, shared_yaxes=True,
                        horizontal_spacing=0.05, vertical_spacing=0.14)
    scale = 100.0 if metric == "audio_eer_O" else 1.0
    shown: set[str] = set()
    for i, cell in enumerate(cells):
        mine = d[d["cell"] == cell]
        for strategy in F.strategy_order(mine):
            g = mine[mine["strategy"] == strategy].sort_values("round")
            x, y, sd = list(g["round"]), list(g["mean"] * scale), list(g["std"] * scale)
            colour, where = F.strategy_color(strategy), dict(row=i // cols + 1, col=i % cols + 1)
            band = [a + b for a, b in zip(y, sd)] + [a - b for a, b in zip(y, sd)][::-1]  # upper, then lower reversed
            fig.add_trace(go.Scatter(x=x + x[::-1], y=band, mode="lines",
                                     fill="toself", fillcolor=_rgba(colour, 0.18), line=dict(width=0),
                                     hoverinfo="skip", showlegend=False, legendgroup=strategy), **where)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=F.STRATEGY_NAMES.get(strategy, strategy),
                                     legendgroup=strategy, showlegend=strategy not in shown,
                                     line=dict(color=colour), customdata=list(zip(sd, g["n"])),
                                     hovertemplate=f"{cell} · {strategy}<br>round %{{x}}<br>%{{y:.3f}} ± "
                                                   "%{customdata[0]:.3f} (%{customdata[1]} seeds)<extra></extra>"),
                          **where)
            shown.add(strategy)
    fig.update_xaxes(title="round", dtick=1)
    fig.update_yaxes(title=label, col=1)
    fig.update_layout(title=title, height=300 * n_rows + 100, width=1100, **_LAYOUT)
    return fig


def gain_figure(gain: pd.DataFrame, *, axis: str | None = None, metric: str = "audio_eer_O") -> go.Figure:
    """Each strategy's gain over the baseline (:func:`cometa.results.study_gain.baseline_gain`) against
    ``axis`` (one line per strategy, a dash per variant; a cell without the axis a dotted line at its
    mean), or per cell as bars when ``axis`` is None or takes one value; error bars are the 95 %
    t-interval over the seeds.
    Above zero the strategy beats the baseline. EERs in percentage points."""
    scale = _scale(metric)
    fig = go.Figure()
    d = gain.assign(err=(gain["gain_hi"] - gain["gain_mean"]).fillna(0.0) * scale, y=gain["gain_mean"] * scale)
    if axis is None or axis not in d.columns or d[axis].dropna().nunique() < 2:  # no line to draw: bars per cell
        for strategy, g in d.groupby("strategy", sort=False):
            fig.add_trace(go.Bar(x=list(g["cell"]), y=list(g["y"]), name=F.STRATEGY_NAMES.get(strategy, strategy),
                                 marker_color=F.strategy_color(strategy),
                                 error_y=dict(type="data", array=list(g["err"]), visible=True)))
        fig.update_layout(barmode="group")
    else:
        with_axis, without = d[d[axis].notna()], d[d[axis].isna()]
        variants = list(dict.fromkeys(with_axis["variant"].dropna()))
        for (strategy, variant), g in with_axis.groupby(["strategy", "variant"], sort=False, dropna=False):
            g = g.sort_values(axis)
            name = " · ".join([F.STRATEGY_NAMES.get(strategy, strategy), *([variant] if isinstance(variant, str)
                                                                          else [])])
            dash = _DASHES[variants.index(variant) % len(_DASHES)] if isinstance(variant, str) else "solid"
            fig.add_trace(go.Scatter(
                x=list(g[axis]), y=list(g["y"]), mode="lines+markers", name=name,
                error_y=dict(type="data", array=list(g["err"]), visible=True, thickness=1.2),
                line=dict(color=F.strategy_color(strategy), dash=dash), marker=dict(size=7),
                customdata=list(zip(g["n"], g["wins"])),
                hovertemplate=f"{name}<br>{axis} = %{{x}}<br>gain %{{y:+.2f}} (wins %{{customdata[1]}} of "
                              "%{customdata[0]} seeds)<extra></extra>"))
        lo, hi = with_axis[axis].min(), with_axis[axis].max()
        for _, r in without.iterrows():
            name = f"{F.STRATEGY_NAMES.get(r['strategy'], r['strategy'])} · {r['cell']}"
            fig.add_trace(go.Scatter(x=[lo, hi], y=[r["y"], r["y"]], mode="lines", name=name,
                                     line=dict(color=F.strategy_color(r["strategy"]), dash="dot", width=1.5),
                                     hovertemplate=f"{name}<br>gain %{{y:+.2f}} ± {r['err']:.2f}<extra></extra>"))
        fig.update_xaxes(**_x_axis(d, axis))
    fig.add_hline(y=0, line=dict(color="#444", width=1))
    unit = " (points)" if scale == 100.0 else ""
    fig.update_yaxes(title=f"gain over the baseline in {metric_label(metric)}{unit}".replace(" (%)", ""))
    fig.update_layout(title=f"Gain over the baseline ({metric_label(metric)}, baseline minus strategy, paired by "
                            "seed; 95 % t-interval)", height=440, **_LAYOUT)
    return fig
