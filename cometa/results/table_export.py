"""``cometa compare``: Table 1 of several runs or studies side by side, as text, CSV, LaTeX or Markdown.

Each run's (or study's) Table 1 (:meth:`cometa.results.explore.Run.table1`: EER % on the O trials per
stage, strategy x modality) becomes a block of columns headed ``run / strategy / modality``; a study's
cells are its seeds' mean ± sample std. Every format holds the same cells, rounded to two decimals.
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence

import pandas as pd

from cometa.results.several_runs import Runs, open_runs

__all__ = ["table1_cells", "to_text", "to_csv", "to_markdown", "to_latex", "FORMATS"]


def table1_cells(runs: Runs | Sequence[str | os.PathLike], *,
                 trial_list: str = "O") -> tuple[list[str], list[list[str]]]:
    """Table 1 of ``runs`` side by side: ``(header, rows)``, every cell a string (``12.34`` or
    ``12.34 ± 0.56`` for a study; empty where a run has no such row)."""
    runs = runs if isinstance(runs, Runs) else open_runs(runs)
    mean = runs.table1(trial_list)
    std = pd.concat({r.name: r.table1(trial_list, std=True) if r.is_study else r.table1(trial_list) * math.nan
                     for r in runs}, axis=1, names=["run"]).reindex(index=mean.index, columns=mean.columns)
    header = [f"EER % (Vox1-{trial_list})", *(" / ".join(c) for c in mean.columns)]
    rows = []
    for row in mean.index:
        cells = [str(row)]
        for col in mean.columns:
            m, s = float(mean.loc[row, col]), float(std.loc[row, col])
            cells.append("" if math.isnan(m) else f"{m:.2f}" if math.isnan(s) else f"{m:.2f} ± {s:.2f}")
        rows.append(cells)
    return header, rows


def to_text(header: list[str], rows: list[list[str]]) -> str:
    """Aligned columns for a terminal."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), *(line(r) for r in rows)]) + "\n"


def to_csv(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    return buf.getvalue()


def to_markdown(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _tex(s: str) -> str:
    return s.replace("%", r"\%").replace("_", r"\_").replace("&", r"\&").replace("±", r"$\pm$")


def to_latex(header: list[str], rows: list[list[str]]) -> str:
    """A booktabs tabular (``\\usepackage{booktabs}``)."""
    out = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
           " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
    out += [" & ".join(_tex(c) for c in r) + r" \\" for r in rows]
    return "\n".join([*out, r"\bottomrule", r"\end{tabular}"]) + "\n"


FORMATS = {"text": to_text, "csv": to_csv, "markdown": to_markdown, "latex": to_latex}
