"""How much each strategy beats the baseline, cell by cell: paired over seeds, with an interval.

A study's seeds share everything but the training seed, and within a cell every strategy of a seed
starts from the same Stage I and corpus, so the comparison with the baseline is paired: for seed s,
``gain_s = metric(baseline, s) - metric(strategy, s)`` (an EER: positive when the strategy's is lower).
A cell's gain is the mean over the seeds both finished, with the two-sided 95 % Student-t interval
``mean ± t(0.975, n - 1) · sd / sqrt(n)`` (none for one seed) and the count of seeds in which the
strategy was better. This answers the label-noise map's question: under which noise does each strategy
beat the baseline, and by how much.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from cometa.results import figures as F
from cometa.results.study_tables import metric_label

__all__ = ["baseline_gain", "gain_markdown", "BASELINE"]

BASELINE = "baseline"


def baseline_gain(seeds: pd.DataFrame, *, metric: str = "audio_eer_O", axes: list[str] | None = None,
                  level: float = 0.95) -> pd.DataFrame:
    """Per cell and strategy other than the baseline: ``n`` (seeds both finished), ``gain_mean``,
    ``gain_lo``, ``gain_hi`` (the ``level`` t-interval; NaN below two seeds), ``wins`` (seeds in which the
    strategy's ``metric`` is lower than the baseline's). ``seeds``: :func:`cometa.results.study_tables.seed_table`.
    Empty when the study has no baseline."""
    axes = list(axes or [])
    cols = ["cell", "variant", *axes, "strategy", "n", "gain_mean", "gain_lo", "gain_hi", "wins"]
    if seeds.empty or BASELINE not in set(seeds["strategy"]):
        return pd.DataFrame(columns=cols)
    rows = []
    for cell, g in seeds.groupby("cell", sort=False):
        base = g[g["strategy"] == BASELINE].set_index("seed")[metric]
        head = g.iloc[0]
        for strategy, h in g[g["strategy"] != BASELINE].groupby("strategy", sort=False):
            paired = pd.concat([base, h.set_index("seed")[metric]], axis=1, join="inner").dropna()
            d = (paired.iloc[:, 0] - paired.iloc[:, 1]).to_numpy(float)  # (n,) baseline minus strategy
            n = len(d)
            mean = float(d.mean()) if n else math.nan
            half = (float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / np.sqrt(n)) if n > 1 else math.nan)
            rows.append({"cell": cell, "variant": head["variant"], **{a: head[a] for a in axes}, "strategy": strategy,
                         "n": n, "gain_mean": mean, "gain_lo": mean - half, "gain_hi": mean + half,
                         "wins": int((d > 0).sum())})
    return pd.DataFrame(rows, columns=cols)


def gain_markdown(gain: pd.DataFrame, *, metric: str = "audio_eer_O") -> str:
    """The gain table: per cell and strategy, the mean gain over the baseline in points (EERs in %), its
    95 % interval and how many seeds it won."""
    scale = 100.0 if "_eer_" in metric else 1.0
    lines = [f"Gain over the baseline: {metric_label(metric)} of the baseline minus the strategy's, paired by seed "
             "(positive: the strategy is better), mean and 95 % t-interval over the seeds both finished; wins: "
             "seeds in which the strategy was better.", "",
             "| Cell | Strategy | Seeds | gain | 95 % interval | wins |", "|---|---|---|---|---|---|"]
    for _, r in gain.iterrows():
        interval = "-" if math.isnan(r["gain_lo"]) else f"[{scale * r['gain_lo']:+.2f}, {scale * r['gain_hi']:+.2f}]"
        lines.append(f"| {r['cell']} | {F.STRATEGY_NAMES.get(r['strategy'], r['strategy'])} | {r['n']} | "
                     f"{scale * r['gain_mean']:+.2f} | {interval} | {r['wins']}/{r['n']} |")
    return "\n".join(lines) + "\n"
