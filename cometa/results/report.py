"""The study's tables and figures, written into ``RUN_DIR/report/`` (``cometa report RUN_DIR``).

* Table 1 of the paper: EER (%) on Vox1-O per round, strategy x modality, Stage I in the Audio
  column of the first strategy (``table1.md``, ``table1.tex``).
* Table 2 style: EER (%) and minDCF on O/E/H of each strategy's last round, strategy x modality
  (``table2.md``, ``table2.tex``); with AS-norm results in the store, each beside its AS-norm value.
* The strategies compared (``table3.md``) and the label-issue scores per round (``table4.md``),
  :mod:`cometa.results.strategy_tables`.
* Table 6 style (cross-lingual transfer paper): trainable parameters, step time and last-round EER per
  strategy, of this run and of any ``--compare`` runs (``table6.md``; :mod:`cometa.results.ablation`).
* ``tables.json``: the exact (unrounded) numbers the tables were printed from.
* Figures from :mod:`cometa.results.figures` (the dashboard's own), as SVG, PDF (vector, fonts embedded by
  Chromium's PDF printer) and PNG via kaleido: ``eer_per_round``, ``purity_per_round``,
  ``disagreement_lambda``, ``umap_grid`` (when projections exist: at most 6 rounds, evenly spaced, and
  5,000 of each projection's points, the same utterances in every panel), ``det_curves``.
* ``report.html``: one self-contained page, the run's record (:mod:`cometa.results.run_record`: command,
  commit, versions, CPU/GPU, host, when), the tables and interactive figures, plotly.js inlined once.
* Tables are numbered in the order the report shows them (Table 4 only when label-issue scores exist).

Only the run directory is read; nothing here imports training code.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cometa.results import figures as F
from cometa.results.ablation import table6, table6_markdown, truth_label_note, variant_label
from cometa.results.export import FIGURE_FORMATS, ReportError, export_figures, write_html  # noqa: F401 (re-exported)
from cometa.results.export import atomic_text as _atomic_write
from cometa.results.export import require_browser as _require_browser
from cometa.results.run_record import provenance_lines
from cometa.results.strategy_tables import table3, table3_markdown, table4, table4_markdown
from cometa.runs import COLUMNS, RunStore, grid_study, study_runs

__all__ = ["ReportError", "open_store", "read_scalars", "table1", "table2", "write_report", "main"]

MODALITY_NAMES = {"audio": "Audio", "visual": "Visual", "fused": "Fused"}
LISTS = ("O", "E", "H")
DCF_NAMES = ("min_dcf_0.01", "min_dcf_0.05")
ASNORM = "_asnorm"  # suffix of the AS-norm metrics (cometa.pipeline.analysis)
GRID_ROUNDS, GRID_POINTS = 6, 5_000  # the UMAP grid: at most 6 round columns, 5,000 points a panel (of 50,000)


# ------------------------------------------------------------------------------------------ reading
def open_store(run_dir: str | Path) -> RunStore:
    """The run's store; ReportError when ``run_dir`` is not a run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / "store.sqlite").exists():
        raise ReportError(f"{run_dir}: no store.sqlite (is this a run directory?)")
    return RunStore(run_dir)


def files_dir(run_dir: str | Path) -> Path:
    """Where a run's per-round files are read: the run itself, or a study's first seed run."""
    run_dir = Path(run_dir)
    if (run_dir / "store.sqlite").exists():
        return run_dir
    runs = study_runs(run_dir)
    if not runs:
        raise ReportError(f"{run_dir}: no store.sqlite and no seed runs (is this a run or study directory?)")
    return runs[0]


def read_scalars(run_dir: str | Path) -> pd.DataFrame:
    """Every scalar of the run, with NULLs as NaN/None and ``round`` as int.

    For a study directory (several seeds, :func:`cometa.runs.study_runs`) the scalars of every seed
    run, one below the other, with a ``seed`` column (the run's config seed); the tables and figures
    then show the mean ± std over the seeds.
    """
    run_dir = Path(run_dir)
    if grid_study(run_dir) is not None:  # its runs are cells x seeds: never read them as one study's seeds
        raise ReportError(f"{run_dir} is a grid study: read one of its cells ({run_dir}/<cell>), or write its "
                          f"report with `cometa report {run_dir}`")
    if not (run_dir / "store.sqlite").exists() and study_runs(run_dir):
        parts = []
        for run in study_runs(run_dir):
            seed = RunStore(run).config().get("seed")
            parts.append(read_scalars(run).assign(seed=int(seed) if seed is not None else run.name))
        return pd.concat(parts, ignore_index=True)
    df = open_store(run_dir).scalars()
    df = df.reindex(columns=[c for c in COLUMNS if c in df.columns] + [c for c in df.columns if c not in COLUMNS])
    df["round"] = pd.to_numeric(df["round"], errors="coerce").fillna(0).astype(int)
    for col in ("strategy", "modality"):
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def strategies_of(scalars: pd.DataFrame) -> list[str]:
    """Strategies in the paper's order, then any others alphabetically."""
    present = set(scalars["strategy"].dropna())
    return [s for s in F.STRATEGY_COLORS if s in present] + sorted(present - set(F.STRATEGY_COLORS))


_KEY = ["strategy", "stage", "round", "modality", "name"]


def _latest(df: pd.DataFrame) -> pd.DataFrame:
    """One value per key (and seed): the latest written (a resumed step may have logged twice)."""
    key = _KEY + (["seed"] if "seed" in df.columns else [])
    return df.sort_values("time").drop_duplicates(key, keep="last")


def _cell(df: pd.DataFrame) -> tuple[float, float, int] | None:
    """(mean, std, n) over seeds of the rows ``df`` (one per seed after :func:`_latest`); std is the
    sample standard deviation (ddof 1), 0 for a single seed."""
    if df.empty:
        return None
    v = df["value"].astype(float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, int(len(v))


# ------------------------------------------------------------------------------------------- tables
def table1(scalars: pd.DataFrame, *, trial_list: str = "O", modalities=("audio", "visual")) -> dict:
    """Paper Table 1: EER (fraction) on ``trial_list`` per round; rows "Stage I", "Round 1..N"
    (and "Untrained", the audio encoder before Stage I, when the run logged it).

    Returns ``{"rows", "columns": [(strategy, modality)], "values": {row: {"strategy/modality": eer}},
    "std": {...}, "n_seeds"}``; missing cells are absent. Stage I appears under the first strategy's
    first modality only. With several seeds (a ``seed`` column) a value is the mean over the seeds and
    ``std`` holds the sample standard deviation (0 for a single seed).
    """
    ev = _latest(scalars[(scalars["stage"] == f"eval/{trial_list}") & (scalars["name"].isin(["eer", "eer_untrained"]))])
    strategies = strategies_of(scalars)
    columns = [(s, m) for s in strategies for m in modalities]
    rounds = sorted(r for r in ev.loc[ev["strategy"].notna(), "round"].unique() if r >= 1)
    values: dict[str, dict[str, float]] = {}
    stds: dict[str, dict[str, float]] = {}

    def put(row: str, column: str, rows: pd.DataFrame) -> None:
        cell = _cell(rows)
        values.setdefault(row, {})
        stds.setdefault(row, {})
        if cell is not None:
            values[row][column], stds[row][column] = cell[0], cell[1]

    first = f"{columns[0][0]}/{columns[0][1]}" if columns else None
    audio_s1 = ev["strategy"].isna() & (ev["round"] == 0) & (ev["modality"] == "audio")
    untrained = ev[audio_s1 & (ev["name"] == "eer_untrained")]
    if len(untrained) and first:  # the Stage I yardstick: the audio encoder as initialised
        put("Untrained", first, untrained)
    values.setdefault("Stage I", {})
    stds.setdefault("Stage I", {})
    if first:
        put("Stage I", first, ev[audio_s1 & (ev["name"] == "eer")])
    ev = ev[ev["name"] == "eer"]
    for r in rounds:
        for s, m in columns:
            put(f"Round {r}", f"{s}/{m}", ev[(ev["strategy"] == s) & (ev["round"] == r) & (ev["modality"] == m)])
    return {"trial_list": trial_list, "rows": list(values), "columns": [f"{s}/{m}" for s, m in columns],
            "values": values, "std": stds, "n_seeds": F.n_seeds(scalars)}


def table2(scalars: pd.DataFrame, *, modalities=("audio", "visual", "fused")) -> dict:
    """Table 2 style: each strategy's last evaluated round, EER and minDCF on O/E/H, per modality.

    Returns ``{"rows": [{"strategy", "modality", "round", "O/eer", "O/min_dcf_0.01", ...}], "n_seeds"}``
    with EER as a fraction; with several seeds each value is the mean over them and ``"std"`` in a row
    maps the same keys to the sample standard deviation.
    """
    ev = _latest(scalars[scalars["stage"].isin([f"eval/{x}" for x in LISTS]) & scalars["strategy"].notna()])
    metrics = ["eer", *DCF_NAMES]
    if ev["name"].str.endswith(ASNORM).any():  # each metric beside its AS-norm value
        metrics = [n + suffix for n in metrics for suffix in ("", ASNORM)]
    rows = []
    for s in strategies_of(scalars):
        mine = ev[ev["strategy"] == s]
        if mine.empty:
            continue
        last = int(mine["round"].max())
        for m in modalities:
            sel = mine[(mine["round"] == last) & (mine["modality"] == m)]
            if sel.empty:
                continue
            row: dict = {"strategy": s, "modality": m, "round": last, "std": {}}
            for lst in LISTS:
                for name in metrics:
                    cell = _cell(sel[(sel["stage"] == f"eval/{lst}") & (sel["name"] == name)])
                    if cell is not None:
                        row[f"{lst}/{name}"], row["std"][f"{lst}/{name}"] = cell[0], cell[1]
            rows.append(row)
    return {"rows": rows, "lists": list(LISTS), "metrics": metrics, "n_seeds": F.n_seeds(scalars)}


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _pct(v: float | None, sd: float | None = None, pm: str = " ± ") -> str:
    """EER fraction as a percentage; ``12.34 ± 0.56`` when a standard deviation over seeds is given."""
    if v is None or _missing(v):
        return "-"
    return f"{100 * v:.2f}" + ("" if sd is None else f"{pm}{100 * sd:.2f}")


def _dcf(v: float | None, sd: float | None = None, pm: str = " ± ") -> str:
    if _missing(v):
        return "-"
    return f"{v:.4f}" + ("" if sd is None else f"{pm}{sd:.4f}")


def _sd(table: dict, row: str, column: str) -> float | None:
    """The std of a Table 1 cell when the table spans several seeds, else None (print the mean alone)."""
    return table.get("std", {}).get(row, {}).get(column) if table.get("n_seeds", 1) > 1 else None


def _seeds_note(table: dict, *, tex: bool = False) -> str:
    n = table.get("n_seeds", 1)
    pm = r"$\pm$" if tex else "±"
    return f" Mean {pm} standard deviation over {n} seeds." if n > 1 else ""


def _best_last_round(t1: dict) -> str | None:
    """The cell ("strategy/modality") with the lowest EER in the last round, bold as in the paper."""
    last = t1["rows"][-1] if len(t1["rows"]) > 1 else None
    cells = t1["values"].get(last, {}) if last else {}
    return min(cells, key=lambda c: cells[c]) if cells else None


def table1_markdown(t1: dict) -> str:
    heads = [f"{F.STRATEGY_NAMES.get(c.split('/')[0], c.split('/')[0])} {MODALITY_NAMES[c.split('/')[1]]}"
             for c in t1["columns"]]
    best = _best_last_round(t1)
    lines = [f"Table 1. EER (%) on the Vox1-{t1['trial_list']} trials, Stage I and each Stage II round."
             + _seeds_note(t1), "", "| Stage | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for i, row in enumerate(t1["rows"]):
        cells = []
        for c in t1["columns"]:
            text = _pct(t1["values"][row].get(c), _sd(t1, row, c))
            cells.append(f"**{text}**" if i == len(t1["rows"]) - 1 and c == best else text)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    return s.replace("&", r"\&").replace("%", r"\%").replace("_", r"\_").replace("+", "+")


def table1_latex(t1: dict) -> str:
    strategies = list(dict.fromkeys(c.split("/")[0] for c in t1["columns"]))
    mods = [c.split("/")[1] for c in t1["columns"] if c.startswith(strategies[0] + "/")] if strategies else []
    best = _best_last_round(t1)
    out = [r"\begin{table}[t]", r"\centering",
           rf"\caption{{EER (\%) on the Vox1-{t1['trial_list']} trials for Stage I and each round of Stage II."
           rf"{_seeds_note(t1, tex=True)}}}",
           r"\label{tab:eer-per-round}", r"\begin{tabular}{l" + "c" * len(t1["columns"]) + "}", r"\toprule",
           "Stage & " + " & ".join(rf"\multicolumn{{{len(mods)}}}{{c}}{{{_tex_escape(F.STRATEGY_NAMES.get(s, s))}}}"
                                   for s in strategies) + r" \\",
           "".join(rf"\cmidrule(lr){{{2 + i * len(mods)}-{1 + (i + 1) * len(mods)}}}" for i in range(len(strategies))),
           " & " + " & ".join(MODALITY_NAMES[m] for _ in strategies for m in mods) + r" \\", r"\midrule"]
    for i, row in enumerate(t1["rows"]):
        cells = []
        for c in t1["columns"]:
            text = _pct(t1["values"][row].get(c), _sd(t1, row, c), pm=r" $\pm$ ")
            cells.append(rf"\textbf{{{text}}}" if i == len(t1["rows"]) - 1 and c == best else text)
        out.append(f"{row} & " + " & ".join(cells) + r" \\")
        if row == "Stage I":
            out.append(r"\midrule")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def _sd2(t2: dict, row: dict, key: str) -> float | None:
    return row.get("std", {}).get(key) if t2.get("n_seeds", 1) > 1 else None


def _t2_heads(t2: dict | None = None) -> list[tuple[str, str]]:
    return [(lst, name) for lst in LISTS for name in (t2 or {}).get("metrics", ("eer", *DCF_NAMES))]


def _t2_label(name: str, *, tex: bool = False) -> str:
    base = name.removesuffix(ASNORM)
    label = {"eer": "EER", "min_dcf_0.01": "DCF$_{0.01}$", "min_dcf_0.05": "DCF$_{0.05}$"} if tex else \
        {"eer": "EER %", "min_dcf_0.01": "minDCF 0.01", "min_dcf_0.05": "minDCF 0.05"}
    return label[base] + (" AS-norm" if name.endswith(ASNORM) else "")


def table2_markdown(t2: dict) -> str:
    heads = [f"Vox1-{lst} {_t2_label(n)}" for lst, n in _t2_heads(t2)]
    lines = ["Table 2. EER (%) and minDCF of each strategy's last round on the Vox1-O, E and H trials."
             + _seeds_note(t2), "",
             "| Strategy | Modality | Round | " + " | ".join(heads) + " |", "|---|---|---:|" + "---:|" * len(heads)]
    for row in t2["rows"]:
        cells = [(_pct if n.startswith("eer") else _dcf)(row.get(f"{lst}/{n}"), _sd2(t2, row, f"{lst}/{n}"))
                 for lst, n in _t2_heads(t2)]
        lines.append(f"| {F.STRATEGY_NAMES.get(row['strategy'], row['strategy'])} | "
                     f"{MODALITY_NAMES[row['modality']]} | {row['round']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table2_latex(t2: dict) -> str:
    n, k = len(_t2_heads(t2)), len(_t2_heads(t2)) // len(LISTS)
    out = [r"\begin{table}[t]", r"\centering",
           r"\caption{EER (\%) and minDCF ($P_\mathrm{tar}$ = 0.01, 0.05) of the last round on Vox1-O, E and H."
           + _seeds_note(t2, tex=True) + "}",
           r"\label{tab:eer-lists}", r"\begin{tabular}{llc" + "c" * n + "}", r"\toprule",
           " & & & " + " & ".join(rf"\multicolumn{{{k}}}{{c}}{{Vox1-{lst}}}" for lst in LISTS) + r" \\",
           "".join(rf"\cmidrule(lr){{{4 + k * i}-{3 + k * (i + 1)}}}" for i in range(len(LISTS))),
           r"Strategy & Modality & Round & " + " & ".join(_t2_label(m, tex=True) for _, m in _t2_heads(t2))
           + r" \\", r"\midrule"]
    prev = None
    for row in t2["rows"]:
        if prev is not None and row["strategy"] != prev:
            out.append(r"\midrule")
        prev = row["strategy"]
        cells = [(_pct if m.startswith("eer") else _dcf)(row.get(f"{lst}/{m}"), _sd2(t2, row, f"{lst}/{m}"),
                                                          pm=r" $\pm$ ")
                 for lst, m in _t2_heads(t2)]
        out.append(f"{_tex_escape(F.STRATEGY_NAMES.get(row['strategy'], row['strategy']))} & "
                   f"{MODALITY_NAMES[row['modality']]} & {row['round']} & " + " & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ figures
def grid_rounds(rounds: Sequence[int], at_most: int = GRID_ROUNDS) -> list[int]:
    """The rounds the UMAP grid shows: all of them up to ``at_most``, else ``at_most`` evenly spaced,
    the first and the last included (20 rounds: 1, 5, 9, 12, 16, 20)."""
    rounds = sorted(rounds)
    if len(rounds) <= at_most:
        return rounds
    return [rounds[i] for i in sorted({round(j * (len(rounds) - 1) / (at_most - 1)) for j in range(at_most)})]


def report_figures(run_dir: str | Path, scalars: pd.DataFrame | None = None) -> dict[str, F.go.Figure]:
    """The report's figures by file stem, built with :mod:`cometa.results.figures` from the run's files."""
    scalars = read_scalars(run_dir) if scalars is None else scalars
    run_dir = files_dir(run_dir)  # a study's per-round files (projections, DET scores): its first seed
    store = open_store(run_dir)
    figs = {"eer_per_round": F.eer_per_round(scalars, trial_list="O"),
            "purity_per_round": F.purity_per_round(scalars, metric="purity"),
            "disagreement_lambda": F.training_dynamics(scalars, panels=("|D̄'|", "λ"),
                                                       title="Disagreement |D̄'|/|D̄| and λ(e) per epoch")}
    panels, curves = {}, {}
    for s in strategies_of(scalars):
        rounds = sorted(int(p.name.split("_")[1]) for p in (run_dir / s).glob("round_*")
                        if p.name.split("_")[1].isdigit())
        for r in grid_rounds(rounds):
            rel = Path(s) / f"round_{r}"
            if (run_dir / rel / "projection.parquet").exists() and (run_dir / rel / "labels.parquet").exists():
                proj = store.load_table(rel / "projection.parquet")
                carried = {"speaker", "consensus", "correct_consensus"} <= set(proj.columns)  # N rows not read
                pts = F.projection_frame(proj, None if carried else store.load_table(rel / "labels.parquet"))
                panels[(s, r)] = F.thin_points(pts, GRID_POINTS)  # the same utterances in every panel
        done = [r for r in rounds if (run_dir / s / f"round_{r}" / "scores.npz").exists()]
        if done:
            z = store.load_arrays(Path(s) / f"round_{done[-1]}" / "scores.npz")
            for m in ("audio", "visual"):
                if f"O_{m}" in z and "O_labels" in z:
                    curves[(s, m)] = (z[f"O_{m}"], z["O_labels"])
    if panels:
        shown = max(len(p) for p in panels.values())
        figs["umap_grid"] = F.umap_grid(panels, color_by="label correct",
                                        title=f"Joint embeddings clustered at the start of each round (up to "
                                              f"{shown:,} points a panel)")
    figs["det_curves"] = F.det_curves(curves, title="DET curves, last round, Vox1-O trials")
    return figs


def number_tables(tables_md: list[str]) -> list[str]:
    """The tables' captions ("Table N. ...") numbered 1, 2, 3 ... in the order the report shows them."""
    return [re.sub(r"^Table \d+\.", f"Table {i}.", md, count=1) for i, md in enumerate(tables_md, 1)]


def _run_config(run: Path) -> dict:
    """The resolved config of a run (a study's first seed run), ``{}`` when it has none."""
    config_path = files_dir(run) / "config.yaml"
    return (RunStore(files_dir(run)).config() or {}) if config_path.exists() else {}


def ablation_table(run_dir: str | Path, compare: Sequence[str | Path] = (),
                   scalars: pd.DataFrame | None = None) -> list[dict]:
    """Table 6 rows of ``run_dir`` and the ``compare`` runs, each labelled by its variant
    (:func:`cometa.results.ablation.variant_label`) and, when compared, its directory name."""
    variants = {}
    for i, run in enumerate([Path(run_dir), *map(Path, compare)]):
        label = variant_label(_run_config(run)) + (f" ({run.name})" if compare else "")
        variants[label] = scalars if (i == 0 and scalars is not None) else read_scalars(run)
    return table6(variants)


def write_report(run_dir: str | Path, *, static: bool = True, compare: Sequence[str | Path] = ()) -> Path:
    """Write tables, figures and ``report.html`` into ``run_dir/report/``; returns the report folder.

    ``static=False`` skips the SVG/PDF/PNG export (no browser needed); ``compare``: other runs whose
    rows join this run's in Table 6 (full fine-tuning vs adapters, ...).
    A grid study (``cometa study``; :func:`cometa.runs.grid_study`) gets its own report instead:
    :func:`cometa.results.study_report.write_study_report`.
    Raises :class:`ReportError` when the run has no store, or static export lacks Chromium.
    """
    run_dir = Path(run_dir)
    if grid_study(run_dir) is not None:
        if compare:
            raise ReportError(f"{run_dir} is a grid study: its cells are its comparison (--compare is for runs)")
        from cometa.results.study_report import write_study_report  # it builds on this module's writers

        return write_study_report(run_dir, static=static)
    if static:
        _require_browser()  # fail before doing any work
    scalars = read_scalars(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    t1, t2 = table1(scalars), table2(scalars)
    md1, md2 = table1_markdown(t1), table2_markdown(t2)
    _atomic_write(out / "table1.tex", table1_latex(t1))
    _atomic_write(out / "table2.tex", table2_latex(t2))
    strategies = strategies_of(scalars)
    t3, t4 = table3(scalars, strategies), table4(scalars, strategies)
    md3, md4 = table3_markdown(t3, F.STRATEGY_NAMES), table4_markdown(t4, F.STRATEGY_NAMES)
    t6 = ablation_table(run_dir, list(compare), scalars)
    md6 = table6_markdown(t6)
    md1, md2, md3, *rest = number_tables([md1, md2, md3, *([md4] if md4 else []), md6])
    md4, md6 = (rest[0], rest[1]) if md4 else ("", rest[0])
    _atomic_write(out / "table1.md", md1)
    _atomic_write(out / "table2.md", md2)
    _atomic_write(out / "table3.md", md3)
    if md4:
        _atomic_write(out / "table4.md", md4)
    _atomic_write(out / "table6.md", md6)
    _atomic_write(out / "tables.json", json.dumps({"run": run_dir.name, "eer_unit": "fraction (tables show %)",
                                                   "table1": t1, "table2": t2, "table3": t3, "table4": t4,
                                                   "table6": [{k: None if _missing(v) else v for k, v in r.items()}
                                                              for r in t6]}, indent=2))
    figs = report_figures(run_dir, scalars)
    if static:
        export_figures(figs, out)
    seeds = F.n_seeds(scalars)
    title = f"cometa report: {run_dir.name}" + (f" ({seeds} seeds; projections and DET curves: "
                                                 f"{files_dir(run_dir).name})" if seeds > 1 else "")
    note = truth_label_note(_run_config(run_dir))
    if note:  # a controlled experiment: say so where the figures are read
        title += f" [{note}: clustering.method truth]"
    write_html(out / "report.html", title, [md1, md2, md3, *([md4] if md4 else []), md6], figs,
               header=provenance_lines(run_dir))
    return out


def main(argv: list[str] | None = None) -> int:
    """``cometa report RUN_DIR [--no-static]``."""
    ap = argparse.ArgumentParser(prog="cometa report", description="write tables and figures into RUN_DIR/report")
    ap.add_argument("run_dir")
    ap.add_argument("--no-static", action="store_true", help="skip SVG/PDF/PNG (no Chromium needed)")
    ap.add_argument("--compare", action="append", default=[], metavar="RUN_DIR", help="another run for Table 6")
    args = ap.parse_args(argv)
    try:
        out = write_report(args.run_dir, static=not args.no_static, compare=args.compare)
    except ReportError as e:
        print(f"cometa report: {e}", file=sys.stderr)
        return 1
    print(f"cometa: report written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
