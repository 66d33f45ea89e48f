"""Writing a report's files: the static figures (kaleido driving Chromium), the self-contained HTML page
and text files written atomically; shared by the run's report (:mod:`cometa.results.report`) and a grid
study's (:mod:`cometa.results.study_report`).
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from plotly.offline import get_plotlyjs

__all__ = ["FIGURE_FORMATS", "ReportError", "require_browser", "export_figures", "write_html", "atomic_text"]

FIGURE_FORMATS = ("svg", "pdf", "png")


class ReportError(RuntimeError):
    """The report cannot be written (no run store, or no browser for the static figures)."""


def require_browser() -> None:
    """ReportError saying how to install one when kaleido finds no Chromium for the static figures."""
    try:  # kaleido's browser finder: loaded only when static figures are exported
        from choreographer.browsers.chromium import Chromium

        found = Chromium.find_browser(skip_local=False)
    except Exception:  # noqa: BLE001 a lookup failure means the same as no browser
        found = None
    if not found:
        raise ReportError("static figures (SVG/PDF/PNG) need a Chromium for kaleido: run "
                          "`apt-get install chromium` (or set BROWSER_PATH to a Chrome/Chromium binary)")


def export_figures(figs: dict, out_dir: Path, *, formats=FIGURE_FORMATS, scale: float = 2.0) -> list[Path]:
    """Write every figure in every format with one Chromium session; returns the paths written."""
    import kaleido  # only a static export needs it (it starts Chromium): the dashboard and notebooks never do

    require_browser()
    jobs, paths = [], []
    for stem, fig in figs.items():
        width = int(fig.layout.width or 900)
        height = int(fig.layout.height or 450)
        for fmt in formats:
            path = out_dir / f"{stem}.{fmt}"
            paths.append(path)
            jobs.append({"fig": fig, "path": str(path),
                         "opts": {"format": fmt, "width": width, "height": height,
                                  "scale": scale if fmt == "png" else 1}})
    try:
        kaleido.write_fig_from_object_sync(jobs)
    except Exception as e:  # choreographer's ChromeNotFoundError and browser start failures
        if "Chrome" in type(e).__name__ or "Browser" in type(e).__name__:
            raise ReportError(f"kaleido could not start Chromium ({e}); run `apt-get install chromium`") from e
        raise
    missing = [p for p in paths if not p.exists() or p.stat().st_size == 0]
    if missing:
        raise ReportError(f"kaleido wrote no data for {', '.join(map(str, missing))}")
    return paths


def _html_table(md: str) -> str:
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    caption = md.splitlines()[0]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]

    def cell(c: str, tag: str) -> str:
        bold = c.startswith("**") and c.endswith("**")
        text = html.escape(c.strip("*"))
        return f"<{tag}>{'<b>' + text + '</b>' if bold else text}</{tag}>"

    rows = "".join("<tr>" + "".join(cell(c, "td") for c in r) + "</tr>" for r in body)
    return (f"<table><caption>{html.escape(caption)}</caption><thead><tr>"
            + "".join(cell(c, "th") for c in head) + f"</tr></thead><tbody>{rows}</tbody></table>")


def write_html(path: Path, title: str, tables_md: list[str], figs: dict, *, intro: str = "",
               header: Sequence[str] = ()) -> None:
    """One self-contained page: the ``header`` lines (the run's record) and ``intro`` (HTML) under the
    title, the tables, then every figure (plotly.js inlined once, in the head)."""
    parts = []
    for stem, fig in figs.items():
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{stem}",
                          config={"toImageButtonOptions": {"format": "svg", "filename": stem}, "displaylogo": False})
        parts.append(f'<section><h2>{html.escape(stem.replace("_", " "))}</h2>{div}</section>')
    css = ("body{font-family:Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222}"
           "table{border-collapse:collapse;margin:1em 0 2em}caption{text-align:left;font-weight:bold;padding:.4em 0}"
           "th,td{padding:.25em .7em;text-align:right;border-bottom:1px solid #ddd}"
           "th:first-child,td:first-child{text-align:left}thead th{border-bottom:2px solid #222}"
           ".provenance{font-size:.85em;color:#555;margin:0 0 1.5em}")
    record = ('<p class="provenance">' + "<br>".join(html.escape(line) for line in header) + "</p>") if header else ""
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{css}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(title)}</h1>{record}{intro}" + "".join(_html_table(t) for t in tables_md)
            + "".join(parts) + "</body></html>")
    path.write_text(page, encoding="utf-8")


def atomic_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary name, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
