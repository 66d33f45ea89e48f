"""Figures for a paper: the report's figures (:mod:`cometa.results.figures`) restyled and saved.

A paper wants a figure at the width of its column, in the font of its text, with the authors'
colours and no title (the caption says it). :func:`style_figure` returns such a copy of any figure of
:mod:`cometa.results.figures`; :func:`save_figures` writes figures as PDF (vector), SVG and PNG through
the report's exporter (kaleido driving Chromium, :func:`cometa.results.report.export_figures`).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import plotly.graph_objects as go

from cometa.results import figures as F
from cometa.results.report import export_figures

__all__ = ["style_figure", "parse_colors", "save_figures", "DEFAULT_SIZE"]

DEFAULT_SIZE = (900, 450)  # what the report exports a figure without its own width/height at


def parse_colors(text: str) -> dict[str, str]:
    """``"baseline:#000000, cometa:#d62728"`` -> ``{"baseline": "#000000", "cometa": "#d62728"}``.

    Items are separated by ``,`` or ``;`` (not inside ``rgb(...)``), name and colour by ``:`` or ``=``;
    names are strategies (``baseline``, ``coteaching_plus``, ``cometa``); an empty text gives {}.
    Raises ValueError naming an item that is not ``name:colour``.
    """
    out = {}
    for item in (t.strip() for t in re.split(r"[,;](?![^()]*\))", text)):
        if not item:
            continue
        m = re.fullmatch(r"\s*([A-Za-z0-9_+-]+)\s*[:=]\s*(\S.*?)\s*", item)
        if not m:
            raise ValueError(f"colors: {item!r} is not name:colour (e.g. cometa:#d62728)")
        out[m.group(1)] = m.group(2)
    return out


def _recolor(fig: go.Figure, colors: Mapping[str, str]) -> None:
    """Give each strategy its new colour: every line, marker and error bar drawn in its old one."""
    old_to_new = {F.strategy_color(s).lower(): c for s, c in colors.items()}
    for tr in fig.data:
        for part in ("line", "marker", "error_y"):
            obj = getattr(tr, part, None)
            colour = getattr(obj, "color", None) if obj is not None else None
            if obj is not None and isinstance(colour, str) and colour.lower() in old_to_new:
                obj.color = old_to_new[colour.lower()]


def style_figure(fig: go.Figure, *, width: int = 600, height: int | None = None, font_size: float = 10,
                 font_family: str = "Arial, Helvetica, sans-serif", colors: Mapping[str, str] | None = None,
                 titles: bool = False, line_width: float | None = None) -> go.Figure:
    """A copy of ``fig`` sized and styled for a paper.

    Parameters
    ----------
    fig : a figure of :mod:`cometa.results.figures` (left unchanged).
    width : pixels at scale 1 (PDF and SVG are vector; PNG is written at ``scale`` times this).
    height : pixels; None keeps the figure's aspect ratio at the new width.
    font_size, font_family : every text of the figure (titles a little larger, subplot titles equal).
    colors : new colours of strategies, ``{"cometa": "#d62728"}`` (others keep the report's).
    titles : keep the figure's title (a paper's caption usually replaces it).
    line_width : width of every line trace; None keeps them.
    """
    out = go.Figure(fig)
    own_w, own_h = out.layout.width or DEFAULT_SIZE[0], out.layout.height or DEFAULT_SIZE[1]
    height = int(height or round(own_h * width / own_w))
    out.update_layout(width=int(width), height=height, font=dict(family=font_family, size=font_size),
                      legend=dict(font=dict(size=font_size)))
    if titles:
        out.update_layout(title_font=dict(family=font_family, size=font_size + 2))
    else:
        out.update_layout(title=None, margin=dict(t=40 if out.layout.annotations else 24))
    out.update_annotations(font=dict(family=font_family, size=font_size))  # subplot titles, notes
    out.update_xaxes(title_font=dict(size=font_size), tickfont=dict(size=font_size - 1))
    out.update_yaxes(title_font=dict(size=font_size), tickfont=dict(size=font_size - 1))
    if colors:
        _recolor(out, colors)
    if line_width is not None:
        for tr in out.data:
            if getattr(tr, "line", None) is not None and tr.type in ("scatter", "scattergl"):
                tr.line.width = line_width
    return out


def save_figures(figs: Mapping[str, go.Figure], out_dir: str | os.PathLike, *,
                 formats: Sequence[str] = ("pdf", "svg", "png"), scale: float = 3.0) -> list[Path]:
    """Write every figure in every format as ``out_dir/<name>.<format>``; returns the paths.

    Each figure is written at its own ``layout.width`` x ``layout.height`` (PNG at ``scale`` times
    that). Needs Chromium (:class:`cometa.results.report.ReportError` says how to install it).
    """
    formats = [f.strip().lower().lstrip(".") for f in formats if f.strip()]
    unknown = sorted(set(formats) - {"pdf", "svg", "png"})
    if unknown:
        raise ValueError(f"formats: {unknown} not among pdf, svg, png")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return export_figures(dict(figs), out, formats=formats, scale=scale)
