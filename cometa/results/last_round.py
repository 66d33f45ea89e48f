"""What one run's last Stage II round shows: its EERs, the pseudo labels' purity gain, and how much the
small-loss selection enriches what it leaves out in wrong labels.

The selection's enrichment is the wrong-label rate of what a selection leaves out of the disagreement
set D̄′ over the rate of D̄′ itself: the epoch means (last round) of ``dropped_noisy_frac`` (per modality)
over that of ``disagreement_noisy_frac`` (:mod:`cometa.core.strategies.stats`). Above 1, the samples the
small-loss criterion drops are more often wrong than D̄′ as a whole: the selection filters noise. The
baseline selects nothing, so it has no enrichment (NaN).

Used by ``tools/study_criteria.py`` (the demo's criteria) and by the study report
(:mod:`cometa.results.study_report`). Pure functions of a run's scalars (``read_scalars``); one run,
no ``seed`` column.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

__all__ = ["LISTS", "MODALITIES", "last_value", "selection_enrichment", "seed_figures"]

LISTS = ("O", "E", "H")
MODALITIES = ("audio", "visual", "fused")


def last_value(df: pd.DataFrame) -> float:
    """The latest written ``value`` of ``df`` (a resumed step may have logged twice); NaN when empty."""
    return float(df.sort_values("time")["value"].iloc[-1]) if len(df) else float("nan")


def selection_enrichment(train: pd.DataFrame) -> dict[str, float]:
    """The selection's figures of one strategy's round from its per-epoch ``train`` scalars.

    Returns ``disagreement_noisy`` (epoch mean of ``disagreement_noisy_frac``, the wrong-label rate of
    D̄′) and, per modality m in audio, visual: ``dropped_noisy_m`` and ``selected_noisy_m`` (epoch means
    of ``dropped_noisy_frac`` and ``selected_noisy_frac``) and ``dropped_ratio_m`` = dropped_noisy_m /
    disagreement_noisy (NaN without a selection or without wrong labels in D̄′).
    """
    d = float(train[train["name"] == "disagreement_noisy_frac"]["value"].mean())
    out = {"disagreement_noisy": d}
    for m in ("audio", "visual"):
        left = float(train[(train["name"] == "dropped_noisy_frac") & (train["modality"] == m)]["value"].mean())
        sel = float(train[(train["name"] == "selected_noisy_frac") & (train["modality"] == m)]["value"].mean())
        out[f"dropped_noisy_{m}"], out[f"selected_noisy_{m}"] = left, sel
        out[f"dropped_ratio_{m}"] = left / d if d and not math.isnan(d) else float("nan")
    return out


def _eers(ev: pd.DataFrame, modality: str) -> dict[str, float]:
    """{list: the latest EER of ``modality``} of one round's ``eval/<list>`` rows."""
    return {lst: last_value(ev[(ev["stage"] == f"eval/{lst}") & (ev["modality"] == modality)]) for lst in LISTS}


def seed_figures(scalars: pd.DataFrame, *, last_round: Mapping[str, int] | None = None) -> dict:
    """The last-round figures of one run's ``scalars``.

    Parameters
    ----------
    scalars : one run's scalars (``cometa.results.report.read_scalars``).
    last_round : the round to read per strategy (default: each strategy's last evaluated round); a
        study gives its cell's last round, so that a seed still running reads as missing (NaN).

    Returns
    -------
    ``{"stage1_eer": {list: EER}, "lambda_first_epoch", <strategy>: {"last_round", "audio_eer",
    "visual_eer", "fused_eer" ({list: EER} each), "purity_round1", "purity_last", "purity_gain"
    (consensus view), and :func:`selection_enrichment`'s keys}}``; EERs are fractions, missing ones NaN.
    """
    ev = scalars[scalars["name"] == "eer"]
    out: dict = {"stage1_eer": _eers(ev[ev["strategy"].isna()], "audio")}
    pur = scalars[(scalars["stage"] == "labels") & (scalars["name"] == "purity") & (scalars["modality"] == "consensus")]
    train = scalars[(scalars["stage"] == "train") & scalars["step"].isna()]  # per-epoch rows
    lam = train[train["name"] == "lambda"].sort_values("epoch")
    out["lambda_first_epoch"] = float(lam["value"].iloc[0]) if len(lam) else float("nan")
    for s in ev["strategy"].dropna().unique():
        mine = ev[ev["strategy"] == s]
        last = int((last_round or {}).get(s, mine["round"].max()))
        f: dict = {"last_round": last}
        for m in MODALITIES:
            f[f"{m}_eer"] = _eers(mine[mine["round"] == last], m)
        p = pur[pur["strategy"] == s]
        f["purity_round1"], f["purity_last"] = last_value(p[p["round"] == 1]), last_value(p[p["round"] == last])
        f["purity_gain"] = f["purity_last"] - f["purity_round1"]
        f.update(selection_enrichment(train[(train["strategy"] == s) & (train["round"] == last)]))
        out[str(s)] = f
    return out
