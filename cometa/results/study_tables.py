"""The tables of a grid study (``cometa study``): one row per cell x strategy, mean ± sample std over seeds.

A grid study directory (written by the study engine)::

    STUDY_DIR/study.json          {"kind": "grid", "name", "preset", "strategies", "seeds", "axes": {key: [values]},
                                   "variants": [names], "cells": [{"name", "variant", "values", "overrides", "runs"}],
                                   "runs", "spec", "spec_path"}
    STUDY_DIR/<cell>/seed_<s>/    an ordinary run directory

Each seed run's last round is read with :func:`cometa.results.last_round.seed_figures`; a cell's value
of a metric is the mean over its seeds and the sample standard deviation (ddof 1; NaN for one seed).
EERs are fractions here, percentages in the Markdown and LaTeX tables. The baseline has no selection:
its enrichment is NaN and prints as ``-``.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cometa.results import figures as F
from cometa.results.export import ReportError
from cometa.results.last_round import LISTS, MODALITIES, seed_figures
from cometa.runs import RunStore

__all__ = ["METRICS", "HEADLINE", "STAGE1", "read_study", "cell_scalars", "seed_table", "study_table", "round_table",
           "headline_markdown", "full_markdown", "stage1_markdown", "study_latex", "metric_label"]

EER_METRICS = [f"{m}_eer_{lst}" for m in MODALITIES for lst in LISTS]
METRICS = [*EER_METRICS, "purity_round1", "purity_last", "purity_gain", "enrichment_audio", "enrichment_visual"]
STAGE1 = [f"stage1_audio_eer_{lst}" for lst in LISTS]
HEADLINE = ["audio_eer_O", "visual_eer_O", "fused_eer_O", "purity_gain", "enrichment_audio", "enrichment_visual"]
_LABELS = {"purity_round1": "purity round 1", "purity_last": "purity last round", "purity_gain": "purity gain",
           "enrichment_audio": "left out / D̄′ audio", "enrichment_visual": "left out / D̄′ visual"}
_SEED = re.compile(r"seed_(\d+)$")
# the scalars the tables read (a run's per-step rows are most of its store: not loaded)
_NAMES = ["eer", "purity", "lambda", "disagreement_noisy_frac", "dropped_noisy_frac", "selected_noisy_frac"]


def metric_label(metric: str) -> str:
    """How a table column or figure axis names a metric: ``audio EER O (%)``, ``purity gain``, ..."""
    if metric in _LABELS:
        return _LABELS[metric]
    m, _, lst = metric.removeprefix("stage1_").split("_")
    return ("Stage I " if metric.startswith("stage1_") else "") + f"{m} EER {lst} (%)"


def read_study(study_dir: str | Path) -> dict:
    """The grid study's ``study.json``, checked; ReportError naming the file and the key when it is not one."""
    path = Path(study_dir) / "study.json"
    try:
        study = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: not readable as JSON ({e})") from None
    if not isinstance(study, dict) or study.get("kind") != "grid":
        raise ReportError(f"{path}: \"kind\" is {study.get('kind') if isinstance(study, dict) else None!r}, "
                          "not \"grid\" (a seed study's report is Table 1/2: cometa report reads it as one)")
    for key, kind in (("cells", list), ("axes", dict)):
        if not isinstance(study.get(key), kind):
            raise ReportError(f"{path}: \"{key}\" must be a {kind.__name__}")
    for i, cell in enumerate(study["cells"]):
        if not (isinstance(cell, dict) and isinstance(cell.get("name"), str) and isinstance(cell.get("runs"), list)):
            raise ReportError(f"{path}: cells[{i}] needs a \"name\" and a list of \"runs\"")
    return study


def _seed_of(run: Path) -> int | str:
    """A seed run's seed: its directory name ``seed_<s>`` (the study engine's layout)."""
    found = _SEED.search(run.name)
    return int(found.group(1)) if found else run.name


def cell_scalars(study_dir: str | Path, cell: dict) -> pd.DataFrame:
    """The scalars the study's tables read (EERs, purity, the selection's noise rates, λ) of a cell's
    started seed runs, one below the other, with a ``seed`` column (empty before any has started)."""
    runs = [Path(study_dir) / r for r in cell["runs"]]
    parts = [RunStore(r).scalars(name=_NAMES).assign(seed=_seed_of(r)) for r in runs if (r / "store.sqlite").exists()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _summary(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std (NaN below two values), n) over the finite ``values``."""
    v = np.array([x for x in values if not math.isnan(x)], float)
    if not len(v):
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, int(len(v))


def _seed_values(fig: dict) -> dict[str, float]:
    """One seed's figures of one strategy (:func:`seed_figures`' entry) under the table's metric names."""
    out = {f"{m}_eer_{lst}": fig[f"{m}_eer"][lst] for m in MODALITIES for lst in LISTS}
    out.update({k: fig[k] for k in ("purity_round1", "purity_last", "purity_gain")})
    out.update({f"enrichment_{m}": fig[f"dropped_ratio_{m}"] for m in ("audio", "visual")})
    return out


def _cell_seeds(study: dict, cell: dict, scalars: pd.DataFrame) -> tuple[dict, list[str], dict[str, int], dict]:
    """A cell's columns (``cell``, ``variant``, the axes), its strategies in the paper's order, each
    strategy's last evaluated round over the cell's seeds, and each seed's :func:`seed_figures` at those rounds."""
    ev = scalars[(scalars["name"] == "eer") & scalars["strategy"].notna()]
    last = {str(s): int(r) for s, r in ev.groupby("strategy")["round"].max().items()}
    per_seed = {seed: seed_figures(df.drop(columns="seed"), last_round=last) for seed, df in scalars.groupby("seed")}
    values = cell.get("values") or {}
    head = {"cell": cell["name"], "variant": cell.get("variant"), **{a: values.get(a) for a in study["axes"]}}
    return head, [s for s in F.strategy_order(ev) if s in last], last, per_seed


def _cell_rows(study: dict, cell: dict, scalars: pd.DataFrame) -> list[dict]:
    """The table's rows of one cell: one per strategy evaluated in any of its seeds."""
    head, strategies, last, by_seed = _cell_seeds(study, cell, scalars)
    per_seed = list(by_seed.values())
    stage1: dict[str, float] = {}
    for metric, lst in zip(STAGE1, LISTS):
        mean, sd, n = _summary([f["stage1_eer"][lst] for f in per_seed])
        stage1 |= {f"{metric}_mean": mean, f"{metric}_std": sd, f"{metric}_n": n}
    rows = []
    for s in strategies:
        seeds = [_seed_values(f[s]) for f in per_seed if s in f]
        reached = [v for v in seeds if any(not math.isnan(v[m]) for m in EER_METRICS)]
        row = {**head, "strategy": s, "round": last[s], "n_seeds": len(reached)}
        for metric in METRICS:
            mean, sd, n = _summary([v[metric] for v in reached])
            row |= {f"{metric}_mean": mean, f"{metric}_std": sd, f"{metric}_n": n}
        rows.append(row | stage1)
    return rows


def seed_table(study_dir: str | Path, study: dict | None = None) -> pd.DataFrame:
    """One row per cell x seed x strategy, the seed's own last-round figures: ``cell``, ``variant``, the
    axes, ``strategy``, ``seed``, ``round`` and one column per metric of :data:`METRICS` (what
    :func:`study_table` summarises over the seeds; paired comparisons between strategies start here)."""
    study = read_study(study_dir) if study is None else study
    rows = []
    for cell in study["cells"]:
        scalars = cell_scalars(study_dir, cell)
        if scalars.empty:
            continue
        head, strategies, last, per_seed = _cell_seeds(study, cell, scalars)
        rows += [{**head, "strategy": s, "seed": seed, "round": last[s], **_seed_values(figs[s])}
                 for seed, figs in per_seed.items() for s in strategies if s in figs]
    return pd.DataFrame(rows, columns=["cell", "variant", *study["axes"], "strategy", "seed", "round", *METRICS])


def study_table(study_dir: str | Path, study: dict | None = None) -> pd.DataFrame:
    """One row per cell x strategy (cells in the study's order, strategies in the paper's): ``cell``,
    ``variant``, one column per axis (the cell's value, None where its variant lacks the axis),
    ``strategy``, ``round`` (the cell's last evaluated round), ``n_seeds`` (seeds that reached it), and
    per metric of :data:`METRICS` and :data:`STAGE1`: ``<metric>_mean``, ``<metric>_std`` (sample),
    ``<metric>_n`` (seeds with a value)."""
    study = read_study(study_dir) if study is None else study
    rows = []
    for cell in study["cells"]:
        scalars = cell_scalars(study_dir, cell)
        if not scalars.empty:
            rows += _cell_rows(study, cell, scalars)
    stats = [f"{m}_{k}" for m in (*METRICS, *STAGE1) for k in ("mean", "std", "n")]
    return pd.DataFrame(rows, columns=["cell", "variant", *study["axes"], "strategy", "round", "n_seeds", *stats])


def round_table(study_dir: str | Path, study: dict | None = None) -> pd.DataFrame:
    """Per cell, strategy and round: ``mean``, ``std`` (sample; 0 for one seed) and ``n`` over the
    seeds of ``audio_eer_O`` (audio EER on the O list) and ``purity`` (consensus labels), one row each
    (column ``metric``)."""
    study = read_study(study_dir) if study is None else study
    parts = []
    for cell in study["cells"]:
        df = cell_scalars(study_dir, cell)
        if df.empty:
            continue
        df = df[df["strategy"].notna()]
        for metric, rows in (("audio_eer_O", df[(df["stage"] == "eval/O") & (df["name"] == "eer")
                                                & (df["modality"] == "audio")]),
                             ("purity", df[(df["stage"] == "labels") & (df["name"] == "purity")
                                           & (df["modality"] == "consensus")])):
            if len(rows):
                parts.append(F.seed_mean_std(rows, ["strategy", "round"]).assign(cell=cell["name"], metric=metric))
    cols = ["cell", "metric", "strategy", "round", "mean", "std", "n"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


# ------------------------------------------------------------------------------------------ formatting
def _value(row: pd.Series, metric: str, pm: str = " ± ") -> str:
    """``12.34 ± 0.56`` (EER in %, purity 3 decimals, enrichment 2); the mean alone for one seed; ``-`` when none."""
    mean, sd = row[f"{metric}_mean"], row[f"{metric}_std"]
    if mean is None or math.isnan(mean):
        return "-"
    scale, fmt = (100.0, ".2f") if "_eer_" in metric else ((1.0, ".3f") if "purity" in metric else (1.0, ".2f"))
    return f"{scale * mean:{fmt}}" + ("" if sd is None or math.isnan(sd) else f"{pm}{scale * sd:{fmt}}")


def _key(v) -> str:
    """An axis value or variant as a table shows it; ``-`` where the cell has none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _strategy(s: str) -> str:
    return F.STRATEGY_NAMES.get(s, s)


def _md(caption: str, heads: list[str], rows: list[list[str]]) -> str:
    lines = [caption, "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _seeds_caption(table: pd.DataFrame) -> str:
    n = sorted(set(table["n_seeds"]))
    return f"Mean ± sample standard deviation over {', '.join(map(str, n))} seed(s) (column Seeds)."


def headline_markdown(table: pd.DataFrame, study: dict) -> str:
    """The compact table: per cell and strategy the last round's O-list EERs, purity gain and enrichment."""
    heads = ["Cell", "Strategy", "Seeds", *(metric_label(m) for m in HEADLINE)]
    rows = [[r["cell"], _strategy(r["strategy"]), str(r["n_seeds"]), *(_value(r, m) for m in HEADLINE)]
            for _, r in table.iterrows()]
    return _md(f"Study {study.get('name')}: the last round of each cell. " + _seeds_caption(table)
               + " Purity gain: consensus purity, last round minus round 1. Left out / D̄′: the wrong-label rate "
                 "of what the selection leaves out of D̄′ over that of D̄′ (no selection: -).", heads, rows)


def _key_columns(table: pd.DataFrame, study: dict) -> tuple[list[str], list[str]]:
    """(column names, headings) that say which cell a row is: the variant (when the study has some) and the axes."""
    cols = (["variant"] if study.get("variants") else []) + list(study["axes"])
    return cols, [c.capitalize() if c == "variant" else c for c in cols]


def full_markdown(table: pd.DataFrame, study: dict) -> str:
    """Every metric of :data:`METRICS`, with the variant and axis values as columns."""
    cols, heads = _key_columns(table, study)
    heads = ["Cell", *heads, "Strategy", "Round", "Seeds", *(metric_label(m) for m in METRICS)]
    rows = [[r["cell"], *(_key(r[c]) for c in cols), _strategy(r["strategy"]),
             str(r["round"]), str(r["n_seeds"]), *(_value(r, m) for m in METRICS)] for _, r in table.iterrows()]
    return _md("EER (%) on the O, E and H lists, consensus purity and the selection's enrichment, last round. "
               + _seeds_caption(table), heads, rows)


def stage1_markdown(table: pd.DataFrame) -> str:
    """Stage I's audio EER per cell (the same for every strategy of a cell)."""
    first = table.drop_duplicates("cell")
    rows = [[r["cell"], str(r[f"{STAGE1[0]}_n"]), *(_value(r, m) for m in STAGE1)] for _, r in first.iterrows()]
    return _md("Stage I: audio EER (%) per cell, mean ± sample standard deviation over its seeds.",
               ["Cell", "Seeds", *(metric_label(m) for m in STAGE1)], rows)


def _tex(s: str) -> str:
    return (s.replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%").replace("_", r"\_")
            .replace("#", r"\#").replace("D̄′", r"$\bar{D}'$"))


def _tex_table(caption: str, label: str, heads: list[str], rows: list[list[str]], *, n_text: int) -> str:
    """A booktabs table scaled to the line width; the first ``n_text`` columns left-aligned, the rest centred."""
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}", rf"\label{{{label}}}",
           r"\resizebox{\linewidth}{!}{%", r"\begin{tabular}{" + "l" * n_text + "c" * (len(heads) - n_text) + "}",
           r"\toprule", " & ".join(_tex(h) for h in heads) + r" \\", r"\midrule"]
    out += [" & ".join(r) + r" \\" for r in rows]
    return "\n".join([*out, r"\bottomrule", r"\end{tabular}}", r"\end{table}"]) + "\n"


def study_latex(table: pd.DataFrame, study: dict) -> str:
    """``study.tex``: the headline table and the full O/E/H table (booktabs; ``\\usepackage{graphicx}``)."""
    pm = r" $\pm$ "
    name = _tex(str(study.get("name")))
    head_rows = [[_tex(r["cell"]), _tex(_strategy(r["strategy"])), str(r["n_seeds"]),
                  *(_value(r, m, pm) for m in HEADLINE)] for _, r in table.iterrows()]
    cols, keys = _key_columns(table, study)
    full_rows = [[_tex(r["cell"]), *(_tex(_key(r[c])) for c in cols),
                  _tex(_strategy(r["strategy"])), str(r["round"]), str(r["n_seeds"]),
                  *(_value(r, m, pm) for m in METRICS)] for _, r in table.iterrows()]
    note = _tex(_seeds_caption(table)).replace("±", r"$\pm$")
    return (_tex_table(f"Study {name}: the last round of each cell. {note}", f"tab:study-{name}",
                       ["Cell", "Strategy", "Seeds", *(metric_label(m) for m in HEADLINE)], head_rows, n_text=2)
            + "\n" + _tex_table(f"Study {name}: EER (\\%) on O, E and H, purity and enrichment. {note}",
                                f"tab:study-{name}-full",
                                ["Cell", *keys, "Strategy", "Round", "Seeds", *(metric_label(m) for m in METRICS)],
                                full_rows, n_text=2 + len(keys)))
