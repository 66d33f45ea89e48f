"""The report's section comparing the strategies (the paper's three, LGL and DLG-LC) and its table of
label-issue scores, from the run store (mean ± sample std over the seeds of a study).

- Table 3 (``table3``): per strategy, its last round: Vox1-O EER per modality without and with
  AS-norm, the wrong-label fraction of each model's selection in the round's last epoch
  (``selected_noisy_frac``) and the consensus labels' purity.
- Table 4 (``table4``): per strategy and round, how well the label-issue scores of the round's
  pseudo labels rank the wrong ones first (``label_issue_auroc``, ``label_issue_ap`` per view and
  score: self-confidence, normalised margin).
"""
from __future__ import annotations

import math

import pandas as pd

__all__ = ["table3", "table3_markdown", "table4", "table4_markdown"]

MODALITIES = ("audio", "visual", "fused")
VIEWS = ("audio", "visual", "joint")
SCORES = {"self_confidence": "SC", "normalized_margin": "NM"}


def _cells(df: pd.DataFrame) -> tuple[float, float] | None:
    if df.empty:
        return None
    v = df["value"].astype(float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _fmt(cell: tuple[float, float] | None, n_seeds: int, *, pct: bool) -> str:
    if cell is None or math.isnan(cell[0]):  # absent or NaN
        return "-"
    k = 100.0 if pct else 1.0
    digits = 2 if pct else 3
    return f"{k * cell[0]:.{digits}f}" + (f" ± {k * cell[1]:.{digits}f}" if n_seeds > 1 else "")


def _latest(scalars: pd.DataFrame) -> pd.DataFrame:
    key = ["strategy", "stage", "round", "epoch", "modality", "name"] + (["seed"] if "seed" in scalars else [])
    return scalars.sort_values("time").drop_duplicates([k for k in key if k in scalars], keep="last")


def table3(scalars: pd.DataFrame, strategies: list[str]) -> dict:
    """``{"rows": [{"strategy", "round", "<metric>/<modality>": (mean, std)}], "n_seeds"}``."""
    df = _latest(scalars[scalars["strategy"].isin(strategies)])
    rows = []
    for s in strategies:
        mine = df[df["strategy"] == s]
        ev = mine[mine["stage"] == "eval/O"]
        if ev.empty:
            continue
        last = int(ev["round"].max())
        row: dict = {"strategy": s, "round": last}
        for name in ("eer", "eer_asnorm"):
            for m in MODALITIES:
                row[f"{name}/{m}"] = _cells(ev[(ev["round"] == last) & (ev["name"] == name) & (ev["modality"] == m)])
        train = mine[(mine["stage"] == "train") & (mine["round"] == last) & mine["step"].isna()
                     & (mine["name"] == "selected_noisy_frac")]
        last_epoch = train["epoch"].max()
        for m in ("audio", "visual"):
            row[f"selected_noisy_frac/{m}"] = _cells(train[(train["epoch"] == last_epoch) & (train["modality"] == m)])
        row["purity/consensus"] = _cells(mine[(mine["stage"] == "labels") & (mine["round"] == last)
                                              & (mine["name"] == "purity") & (mine["modality"] == "consensus")])
        rows.append(row)
    return {"rows": rows, "n_seeds": int(scalars["seed"].nunique()) if "seed" in scalars else 1}


def table3_markdown(t3: dict, names: dict[str, str]) -> str:
    """Table 3 as markdown; ``names`` maps a strategy to its printed name."""
    n = t3["n_seeds"]
    heads = ([f"EER % {m}" for m in MODALITIES] + [f"EER % {m} AS-norm" for m in MODALITIES]
             + ["selected_noisy_frac audio", "selected_noisy_frac visual", "consensus purity"])
    keys = ([f"eer/{m}" for m in MODALITIES] + [f"eer_asnorm/{m}" for m in MODALITIES]
            + ["selected_noisy_frac/audio", "selected_noisy_frac/visual", "purity/consensus"])
    lines = ["Table 3. The strategies compared: last round, Vox1-O EER without and with AS-norm, the wrong-label "
             "fraction of each model's selection in the round's last epoch (selected_noisy_frac: what LGL and DLG-LC "
             "train on; the peer's training set in Co-teaching+ and Co-Meta; instrumentation only in Baseline), "
             "and the consensus labels' purity."
             + (f" Mean ± standard deviation over {n} seeds." if n > 1 else ""), "",
             "| Strategy | Round | " + " | ".join(heads) + " |", "|---|---:|" + "---:|" * len(heads)]
    for row in t3["rows"]:
        cells = [_fmt(row.get(k), n, pct=k.startswith("eer")) for k in keys]
        lines.append(f"| {names.get(row['strategy'], row['strategy'])} | {row['round']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table4(scalars: pd.DataFrame, strategies: list[str]) -> dict:
    """``{"rows": [{"strategy", "round", "<score>/<view>/<auroc|ap>": (mean, std)}], "n_seeds"}``;
    empty rows when the run has no label-issue scores."""
    df = _latest(scalars[scalars["strategy"].isin(strategies) & scalars["stage"].astype(str).str.startswith(
        "label_issues/")])
    rows = []
    for s in strategies:
        mine = df[df["strategy"] == s]
        for r in sorted(mine["round"].unique()):
            row: dict = {"strategy": s, "round": int(r)}
            for score in SCORES:
                for v in VIEWS:
                    for metric in ("auroc", "ap"):
                        row[f"{score}/{v}/{metric}"] = _cells(mine[
                            (mine["round"] == r) & (mine["stage"] == f"label_issues/{score}")
                            & (mine["modality"] == v) & (mine["name"] == f"label_issue_{metric}")])
            rows.append(row)
    return {"rows": rows, "n_seeds": int(scalars["seed"].nunique()) if "seed" in scalars else 1}


def table4_markdown(t4: dict, names: dict[str, str]) -> str:
    """Table 4 as markdown (empty string when there are no label-issue scores)."""
    if not t4["rows"]:
        return ""
    n = t4["n_seeds"]
    keys = [(score, v, metric) for score in SCORES for v in VIEWS for metric in ("auroc", "ap")]
    heads = [f"{SCORES[score]} {v} {metric.upper()}" for score, v, metric in keys]
    lines = ["Table 4. Label-issue scores of each round's pseudo labels (k-fold logistic regression on the "
             "round's embeddings; SC self-confidence, NM normalised margin): AUROC and average precision of "
             "ranking the wrong labels first. In round 1 the audio view's labels are k-means cells of the very "
             "embeddings the regression is fitted on, so its scores there measure distance to a cell boundary "
             "more than label noise." + (f" Mean ± standard deviation over {n} seeds." if n > 1 else ""),
             "", "| Strategy | Round | " + " | ".join(heads) + " |", "|---|---:|" + "---:|" * len(heads)]
    for row in t4["rows"]:
        cells = [_fmt(row.get("/".join(k)), n, pct=False) for k in keys]
        lines.append(f"| {names.get(row['strategy'], row['strategy'])} | {row['round']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
