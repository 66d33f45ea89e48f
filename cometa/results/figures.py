"""The plotly figures of the study: the one set used by both the dashboard and the report.

Every function is pure: DataFrames and arrays in, a ``plotly.graph_objects.Figure`` out; no file I/O.
``scalars`` arguments are the run store's ``scalars`` table (columns ``run, strategy, stage, round,
epoch, step, modality, name, value, time``; see DESIGN.md "Metric names"). Colours are fixed per
strategy and dashes per modality so a strategy looks the same in every figure and in the report.

| figure              | shows                                                                  |
|---------------------|------------------------------------------------------------------------|
| eer_per_round       | EER % (or minDCF) per round, strategy x modality, Stage I point (Tab. 1) |
| purity_per_round    | a label-quality metric per round, one panel per view                   |
| training_dynamics   | |D̄'|/|D̄| (Eq. 3), λ(e) (Alg. 1 line 13), selection, noise, losses      |
| training_steps      | the per-step scalars (disagreement, losses) against the step           |
| det_curves          | NIST-style DET curves on probit axes                                   |
| projection_scatter  | one round's 2-D projection (Scattergl)                                  |
| umap_grid           | projections, strategies as rows and rounds as columns                  |
| label_transitions   | Sankey of samples between consecutive rounds' consensus labels          |
| noise_breakdown     | per round: utterances wrong in both modalities, audio only, visual only |
| sample_history      | per-sample label correctness across rounds                             |
| stage1_loss         | Stage I's contrastive loss per epoch (Eq. 2)                            |
| corpus_sample       | one utterance's log-mel spectrogram and face frames                     |

The step notebooks show these too, with :func:`show` (plotly JSON, no plotly.js copy in the executed
notebook) and three small tables: :func:`counts_table`, :func:`metrics_table`, :func:`label_table`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy.stats import norm

from cometa.core.label_quality import cluster_majority
from cometa.evaluation.metrics import det_curve

__all__ = ["STRATEGY_COLORS", "STRATEGY_NAMES", "MODALITY_DASH", "VIEW_COLORS", "COLOR_MODES", "n_seeds",
           "strategy_order", "seed_mean_std", "eer_per_round",
           "purity_per_round", "training_dynamics", "training_steps", "det_curves", "projection_frame",
           "projection_scatter", "thin_points", "umap_grid", "majority_speaker", "label_correct", "label_history",
           "noise_breakdown", "label_transitions", "sample_history", "stage1_loss", "corpus_sample", "show",
           "counts_table", "metrics_table", "label_table", "label_issue_pr"]

STRATEGY_COLORS = {"baseline": "#4C78A8", "coteaching_plus": "#F58518", "cometa": "#54A24B", "lgl": "#B279A2",
                   "dlg_lc": "#9D755D"}
STRATEGY_NAMES = {"baseline": "Baseline", "coteaching_plus": "Co-teaching+", "cometa": "Co-Meta", "lgl": "LGL",
                  "dlg_lc": "DLG-LC"}
MODALITY_DASH = {"audio": "solid", "visual": "dash", "fused": "dot"}
MODALITY_SYMBOL = {"audio": "circle", "visual": "square", "fused": "diamond"}
VIEW_COLORS = {"audio": "#4C78A8", "visual": "#E45756", "joint": "#B279A2", "consensus": "#54A24B"}
_EXTRA = ["#72B7B2", "#EECA3B", "#9D755D", "#BAB0AC", "#FF9DA6"]
STAGE1_COLOR = "#222222"
COLOR_MODES = ("pseudo label", "true identity", "label correct")
METRIC_LABELS = {"eer": "EER (%)", "min_dcf_0.01": "minDCF (P_tar = 0.01)", "min_dcf_0.05": "minDCF (P_tar = 0.05)",
                 "purity": "purity", "inverse_purity": "inverse purity", "nmi": "NMI", "ari": "ARI",
                 "n_clusters": "clusters", "flip_rate": "flip rate", "kept_frac": "kept fraction",
                 "session_coherence": "session coherence",
                 "wrong_whole_session_frac": "wrong labels in wholly wrong sessions"}
_LAYOUT = dict(template="plotly_white", font=dict(family="Arial, sans-serif", size=12),
               margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.18))


def strategy_color(strategy: str) -> str:
    """The fixed colour of a strategy (unknown strategies get a stable extra colour)."""
    if strategy in STRATEGY_COLORS:
        return STRATEGY_COLORS[strategy]
    return _EXTRA[sum(map(ord, strategy)) % len(_EXTRA)]


def _name(strategy: str) -> str:
    return STRATEGY_NAMES.get(strategy, strategy)


def _strategies(df: pd.DataFrame, strategies: Sequence[str] | None) -> list[str]:
    present = [s for s in df["strategy"].dropna().unique()]
    order = [s for s in STRATEGY_COLORS if s in present] + sorted(s for s in present if s not in STRATEGY_COLORS)
    return [s for s in (strategies or order) if s in present]


def strategy_order(df: pd.DataFrame) -> list[str]:
    """The strategies of ``df`` in the paper's order (baseline, co-teaching+, Co-Meta, ...), then others
    alphabetically: the order of every legend and table."""
    return _strategies(df, None)


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, **{**_LAYOUT, "height": 300})
    return fig


def _per_epoch(scalars: pd.DataFrame) -> pd.DataFrame:
    return scalars[scalars["step"].isna()] if "step" in scalars else scalars


def n_seeds(scalars: pd.DataFrame) -> int:
    """How many seeds ``scalars`` holds: the distinct values of its ``seed`` column (1 without one)."""
    return int(scalars["seed"].nunique()) if "seed" in scalars.columns else 1


def seed_mean_std(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group ``by``: the mean, the standard deviation (ddof 1; 0 for one seed) and the number of
    seeds of ``value``, taking each seed's latest value (a resumed step may have logged twice).
    Without a ``seed`` column the run is one seed."""
    d = df.assign(seed=df["seed"] if "seed" in df.columns else 0)
    d = d.sort_values("time").drop_duplicates([*by, "seed"], keep="last") if "time" in d else d
    g = d.groupby(list(by), dropna=False)["value"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1).fillna(0.0), "n": g.count()}).reset_index()
    return out


# ------------------------------------------------------------------------------------------ evaluation
def eer_per_round(scalars: pd.DataFrame, *, trial_list: str = "O", metric: str = "eer",
                  modalities: Sequence[str] = ("audio", "visual"), strategies: Sequence[str] | None = None,
                  title: str | None = None) -> go.Figure:
    """EER % (or a minDCF) per round: colour = strategy, dash = modality; round 0 = Stage I (audio).

    Table 1 of the paper as a figure: ``stage == f"eval/{trial_list}"``, ``name == metric``.
    """
    title = title or f"{METRIC_LABELS.get(metric, metric)} per round, Vox1-{trial_list} trials"
    df = scalars[(scalars["stage"] == f"eval/{trial_list}") & (scalars["name"] == metric)]
    if df.empty:
        return _empty(title, f"no {metric} on list {trial_list} yet")
    scale = 100.0 if metric == "eer" else 1.0
    seeds = n_seeds(df)
    if seeds > 1:
        title += f" (mean ± std over {seeds} seeds)"
    fig = go.Figure()
    stage1 = df[df["strategy"].isna() & (df["round"] == 0) & (df["modality"] == "audio")]
    for strategy in _strategies(df, strategies):
        for m in modalities:
            d = seed_mean_std(df[(df["strategy"] == strategy) & (df["modality"] == m)], ["round"]).sort_values("round")
            if d.empty:
                continue
            fig.add_trace(go.Scatter(
                x=d["round"], y=d["mean"] * scale, mode="lines+markers", name=f"{_name(strategy)} · {m}",
                error_y=dict(type="data", array=d["std"] * scale, visible=seeds > 1, thickness=1.2),
                customdata=np.stack([d["std"] * scale, d["n"]], axis=1), legendgroup=strategy,
                line=dict(color=strategy_color(strategy), dash=MODALITY_DASH.get(m, "dashdot")),
                marker=dict(symbol=MODALITY_SYMBOL.get(m, "circle"), size=7),
                hovertemplate=f"{_name(strategy)} · {m}<br>round %{{x}}<br>%{{y:.3f}}"
                              + (" ± %{customdata[0]:.3f} (%{customdata[1]} seeds)" if seeds > 1 else "")
                              + "<extra></extra>"))
    if not stage1.empty:
        st = seed_mean_std(stage1, ["round"]).iloc[0]
        v, sd = float(st["mean"]) * scale, float(st["std"]) * scale
        fig.add_trace(go.Scatter(x=[0], y=[v], mode="markers+text", name="Stage I (contrastive, audio)",
                                 text=[f"{v:.2f}" + (f" ± {sd:.2f}" if seeds > 1 else "")],
                                 textposition="top right", error_y=dict(type="data", array=[sd], visible=seeds > 1),
                                 marker=dict(color=STAGE1_COLOR, symbol="star", size=12)))
    rounds = sorted(int(r) for r in df["round"].unique())  # plain ints: layout arrays must be JSON lists
    fig.update_xaxes(tickvals=rounds, ticktext=["Stage I" if r == 0 else f"Round {r}" for r in rounds],
                     title="stage / round")
    fig.update_yaxes(title=METRIC_LABELS.get(metric, metric), rangemode="tozero")
    fig.update_layout(title=title, height=420, **_LAYOUT)
    return fig


def _det_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p_fa, p_miss) of :func:`cometa.evaluation.metrics.det_curve` over the finite scores."""
    ok = np.isfinite(np.asarray(scores, float))  # NaN: a face trial with no frames on one side
    scores, labels = np.asarray(scores)[ok], np.asarray(labels)[ok]
    p_fa, p_miss, _ = det_curve(scores, labels)
    return np.asarray(p_fa, float), np.asarray(p_miss, float)


_DET_TICKS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]


def det_curves(curves: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]], *, title: str = "DET curves",
               p_min: float = 5e-4, p_max: float = 0.5) -> go.Figure:
    """Detection error trade-off curves on normal-deviate (probit) axes, as in NIST DET plots.

    Parameters
    ----------
    curves : ``{(strategy, modality): (scores (T,), labels (T,) 0/1)}``; colour = strategy,
        dash = modality. A marker sits at each curve's EER (where it meets the diagonal).
    """
    if not curves:
        return _empty(title, "no scores.npz for this selection")
    fig = go.Figure()
    lo, hi = norm.ppf(p_min), norm.ppf(p_max)
    diagonal = [float(lo), float(hi)]  # plain floats: layout and data must be JSON lists
    fig.add_trace(go.Scatter(x=diagonal, y=diagonal, mode="lines", line=dict(color="#bbbbbb", width=1),
                             hoverinfo="skip", showlegend=False))
    for (strategy, m), (scores, labels) in curves.items():
        p_fa, p_miss = _det_points(np.asarray(scores), np.asarray(labels))
        x = norm.ppf(np.clip(p_fa, p_min / 10, 1 - 1e-9))  # (T+1,) probit of each threshold's rates
        y = norm.ppf(np.clip(p_miss, p_min / 10, 1 - 1e-9))
        cell = np.round(np.stack([x, y], 1) * 80)  # thin to a 1/80-deviate grid: ~1000 points per curve
        _, keep = np.unique(cell, axis=0, return_index=True)
        keep = np.sort(keep)
        i = int(np.argmin(np.abs(p_fa - p_miss)))
        eer = (p_fa[i] + p_miss[i]) / 2
        name = f"{_name(strategy)} · {m}"
        colour = strategy_color(strategy)
        fig.add_trace(go.Scatter(x=x[keep], y=y[keep], mode="lines", name=f"{name} (EER {100 * eer:.2f} %)",
                                 legendgroup=name, line=dict(color=colour, dash=MODALITY_DASH.get(m, "dashdot")),
                                 customdata=np.stack([p_fa[keep], p_miss[keep]], 1) * 100,
                                 hovertemplate=name + "<br>P_fa %{customdata[0]:.2f} %<br>P_miss "
                                                      "%{customdata[1]:.2f} %<extra></extra>"))
        fig.add_trace(go.Scatter(x=[norm.ppf(eer)], y=[norm.ppf(eer)], mode="markers", legendgroup=name,
                                 showlegend=False, marker=dict(color=colour, size=8, symbol="x"), hoverinfo="skip"))
    ticks = [t for t in _DET_TICKS if p_min <= t <= p_max]
    axis = dict(tickmode="array", tickvals=[float(v) for v in norm.ppf(ticks)],
                ticktext=[f"{100 * t:g}" for t in ticks], range=[float(lo), float(hi)], zeroline=False,
                constrain="domain")
    fig.update_xaxes(title="false alarm probability (%)", **axis)
    fig.update_yaxes(title="miss probability (%)", scaleanchor="x", scaleratio=1, **axis)
    fig.update_layout(title=title, height=560, **{**_LAYOUT, "legend": dict(orientation="h", y=-0.15)})
    return fig


# ---------------------------------------------------------------------------------------------- labels
def purity_per_round(scalars: pd.DataFrame, *, metric: str = "purity",
                     views: Sequence[str] = ("audio", "visual", "joint", "consensus"),
                     strategies: Sequence[str] | None = None, title: str | None = None) -> go.Figure:
    """A label-quality metric (``stage == "labels"``) per round: one panel per view, colour = strategy."""
    title = title or f"Pseudo-label {METRIC_LABELS.get(metric, metric)} per round"
    df = scalars[(scalars["stage"] == "labels") & (scalars["name"] == metric)]
    views = [v for v in views if (df["modality"] == v).any()]
    if df.empty or not views:
        return _empty(title, f"no {metric} recorded yet")
    seeds = n_seeds(df)
    if seeds > 1:
        title += f" (mean ± std over {seeds} seeds)"
    fig = make_subplots(rows=1, cols=len(views), shared_yaxes=True, subplot_titles=list(views),
                        horizontal_spacing=0.03)
    for strategy in _strategies(df, strategies):
        for j, view in enumerate(views, 1):
            d = seed_mean_std(df[(df["strategy"] == strategy) & (df["modality"] == view)], ["round"])
            d = d.sort_values("round")
            fig.add_trace(go.Scatter(x=d["round"], y=d["mean"], mode="lines+markers", name=_name(strategy),
                                     error_y=dict(type="data", array=d["std"], visible=seeds > 1, thickness=1.2),
                                     customdata=d["std"], legendgroup=strategy, showlegend=j == 1,
                                     line=dict(color=strategy_color(strategy)),
                                     hovertemplate=f"{_name(strategy)} · {view}<br>round %{{x}}<br>%{{y:.4f}}"
                                                   + (" ± %{customdata:.4f}" if seeds > 1 else "")
                                                   + "<extra></extra>"), 1, j)
    fig.update_xaxes(dtick=1, title="round")
    fig.update_yaxes(title=METRIC_LABELS.get(metric, metric), col=1)
    fig.update_layout(title=title, height=380, **_LAYOUT)
    return fig


_DYNAMICS: dict[str, list[tuple[str, str | None]]] = {  # panel title -> [(name, modality or None)]
    "|D̄'| / |D̄| (disagreement, Eq. 3)": [("disagreement_frac", None)],
    "λ(e) (Alg. 1 line 13)": [("lambda", None)],
    "selected fraction": [("selected_frac_audio", None), ("selected_frac_visual", None)],
    "selection overlap": [("selection_overlap", None)],
    "wrong pseudo labels in D̄', selected, left out": [
        ("disagreement_noisy_frac", None), ("selected_noisy_frac", "audio"), ("selected_noisy_frac", "visual"),
        ("dropped_noisy_frac", "audio"), ("dropped_noisy_frac", "visual")],
    "loss": [("loss_support", "audio"), ("loss_support", "visual"), ("loss_query", "audio"),
             ("loss_query", "visual"), ("loss", "audio"), ("loss", "visual")],
    # stage2.distill only (shown when logged): the mean 1 - cos(student, frozen teacher) of the epoch
    "loss_distill: 1 − cos(student, frozen teacher)": [("loss_distill", "audio"), ("loss_distill", "visual")],
    "trainable parameters": [("trainable_params", "audio"), ("trainable_params", "visual")],
}
_DASH_OF = {"selected_frac_visual": "dash", "disagreement_noisy_frac": "dot", "loss_query": "dot"}


def training_dynamics(scalars: pd.DataFrame, *, strategies: Sequence[str] | None = None,
                      panels: Sequence[str] | None = None, title: str = "Stage II training dynamics") -> go.Figure:
    """Per-epoch training scalars (``stage == "train"``, ``step`` NULL) against the global epoch.

    ``panels`` picks from the keys of ``_DYNAMICS`` by prefix (e.g. ``("|D̄'|", "λ")`` for the report's
    disagreement and λ(e) figure). Dotted vertical lines mark where a new round (re-clustering) begins.
    """
    df = _per_epoch(scalars[scalars["stage"] == "train"])
    chosen = [p for p in _DYNAMICS if panels is None or any(p.startswith(q) for q in panels)]
    chosen = [p for p in chosen if df["name"].isin([n for n, _ in _DYNAMICS[p]]).any()]
    if df.empty or not chosen:
        return _empty(title, "no training scalars yet")
    cols = min(3, len(chosen))
    rows = -(-len(chosen) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=chosen, vertical_spacing=0.16, horizontal_spacing=0.07)
    seen: set[str] = set()
    for i, panel in enumerate(chosen):
        r, c = divmod(i, cols)
        for strategy in _strategies(df, strategies):
            for name, m in _DYNAMICS[panel]:
                d = df[(df["strategy"] == strategy) & (df["name"] == name)]
                d = d[d["modality"] == m] if m else d
                d = d.groupby("epoch", as_index=False)["value"].mean()
                if d.empty or not np.isfinite(d["value"]).any():
                    continue
                if name == "dropped_noisy_frac":  # left out of the selection: dash-dot, long for visual
                    dash = "longdashdot" if m == "visual" else "dashdot"
                else:
                    dash = "dash" if m == "visual" else _DASH_OF.get(name, "solid")
                label = name if m is None else f"{name} ({m})"
                fig.add_trace(go.Scatter(x=d["epoch"], y=d["value"], mode="lines+markers", marker=dict(size=4),
                                         name=_name(strategy), legendgroup=strategy, showlegend=strategy not in seen,
                                         line=dict(color=strategy_color(strategy), dash=dash),
                                         hovertemplate=f"{_name(strategy)}<br>{label}<br>epoch %{{x}}: %{{y:.4f}}"
                                                       "<extra></extra>"), r + 1, c + 1)
                seen.add(strategy)
    starts = df.groupby("round")["epoch"].min().dropna().sort_values().iloc[1:]
    axes = ["" if i == 0 else str(i + 1) for i in range(len(chosen))]  # make_subplots numbers row by row
    # one batch of shapes: add_vline per subplot costs plotly ~0.1 s each
    fig.update_layout(shapes=[dict(type="line", xref=f"x{a}", yref=f"y{a} domain", x0=float(e) - 0.5,
                                   x1=float(e) - 0.5, y0=0, y1=1, line=dict(color="#999999", dash="dot", width=1))
                              for e in starts for a in axes])
    fig.update_xaxes(title="epoch")
    fig.update_layout(title=dict(text=f"{title}<br><sup>solid: audio (or both) · dashed: visual · dotted: query "
                                      "loss, all of D̄' · dash-dot: left out of a selection · grey lines: "
                                      "re-clustering</sup>"),
                      height=300 * rows + 130, **{**_LAYOUT, "margin": dict(l=60, r=20, t=100, b=80),
                                                  "legend": dict(orientation="h", yanchor="top",
                                                                 y=-50 / (300 * rows - 50))})  # below the titles
    return fig


_STEP_SCALARS = {"disagreement_frac": "|D̄'| / |D̄| per step", "loss_support": "support loss per step",
                 "loss": "loss per step", "loss_distill": "distillation loss (1 − cos) per step"}


def training_steps(scalars: pd.DataFrame, *, names: Sequence[str] = tuple(_STEP_SCALARS),
                   strategies: Sequence[str] | None = None, smooth: int = 1,
                   title: str = "Stage II training, per step") -> go.Figure:
    """Per-step training scalars (``stage == "train"``, ``step`` set) against the step, one panel per name.

    Colour = strategy, dash = modality (solid where none). ``smooth`` > 1 draws a centred running
    mean over that many steps (the raw per-batch values are noisy on small batches).
    """
    df = scalars[(scalars["stage"] == "train") & scalars["step"].notna()] if "step" in scalars else scalars[:0]
    names = [n for n in names if (df["name"] == n).any()]
    if df.empty or not names:
        return _empty(title, "no per-step training scalars")
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[_STEP_SCALARS.get(n, n) for n in names],
                        horizontal_spacing=0.07)
    seen: set[str] = set()
    for j, name in enumerate(names, 1):
        d_name = df[df["name"] == name]
        for strategy in _strategies(d_name, strategies):
            d_s = d_name[d_name["strategy"] == strategy]
            for m, d in d_s.groupby(d_s["modality"].fillna(""), sort=True):
                d = d.groupby("step", as_index=False)["value"].mean()
                y = d["value"].rolling(smooth, center=True, min_periods=1).mean() if smooth > 1 else d["value"]
                label = name if not m else f"{name} ({m})"
                fig.add_trace(go.Scattergl(x=d["step"], y=y, mode="lines", name=_name(strategy), legendgroup=strategy,
                                           showlegend=strategy not in seen,
                                           line=dict(color=strategy_color(strategy), width=1.5,
                                                     dash="dash" if m == "visual" else "solid"),
                                           hovertemplate=f"{_name(strategy)}<br>{label}<br>step %{{x}}: %{{y:.4f}}"
                                                         "<extra></extra>"), 1, j)
                seen.add(strategy)
    fig.update_xaxes(title="step")
    fig.update_layout(title=dict(text=f"{title}<br><sup>solid: audio (or both) · dashed: visual</sup>"), height=400,
                      **{**_LAYOUT, "margin": dict(l=60, r=20, t=110, b=50)})
    return fig


def majority_speaker(labels: pd.DataFrame, column: str = "consensus") -> pd.Series:
    """The majority true speaker of each cluster of ``column`` (index = cluster id; -1 left out).

    Ties go to the speaker seen first in ``labels``, as ``value_counts`` orders them.
    """
    lab = labels[labels[column] >= 0]
    return cluster_majority(lab["speaker"].to_numpy(), lab[column].to_numpy())


def label_correct(labels: pd.DataFrame, column: str = "consensus") -> pd.Series:
    """Per utterance: is its pseudo label right? (1.0 / 0.0; NaN where dropped, id -1).

    A cluster id is mapped to the majority true speaker of its members; a label is right when that
    majority speaker is the utterance's own speaker (the usual purity convention).
    """
    lab = labels[column].to_numpy()
    valid = lab >= 0
    mapped = pd.Series(lab, index=labels.index).map(majority_speaker(labels, column))
    out = (mapped == labels["speaker"]).astype(float)
    out[~valid] = np.nan
    return out


def label_history(labels_by_round: Mapping[int, pd.DataFrame],
                  views: Sequence[str] = ("audio", "visual", "consensus")) -> pd.DataFrame:
    """One row per utterance (index ``key``): correctness per round and view, plus summaries.

    Columns ``r{round}_{view}`` (1 right, 0 wrong, NaN dropped), ``speaker``, ``rounds_wrong``
    (consensus), ``flips`` (rounds whose consensus majority speaker differs from the round before),
    ``wrong_both`` / ``wrong_audio_only`` / ``wrong_visual_only`` (rounds).

    Rounds that list the same utterances in the same order with the same speakers (the pipeline's) are
    read as arrays over one speaker coding (a second over 20 rounds of a million utterances); others
    are aligned on their keys.
    """
    rounds = sorted(labels_by_round)
    tables = [labels_by_round[r] for r in rounds]
    if tables and all(len(t) == len(tables[0]) and t["key"].equals(tables[0]["key"])
                      and t["speaker"].equals(tables[0]["speaker"]) for t in tables[1:]):
        return _label_history_coded(rounds, tables, views)
    return _label_history_aligned(labels_by_round, views)


def _majority_of_rows(speaker_codes: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(N,) int64: the majority speaker code of each row's cluster (:func:`cluster_majority`), -1 where dropped."""
    valid = ids >= 0
    major = cluster_majority(speaker_codes[valid], ids[valid])  # sorted cluster ids -> speaker code
    out = np.full(ids.shape, -1, dtype=np.int64)
    out[valid] = major.to_numpy(dtype=np.int64)[np.searchsorted(major.index.to_numpy(), ids[valid])]
    return out


def _label_history_coded(rounds: list[int], tables: list[pd.DataFrame], views: Sequence[str]) -> pd.DataFrame:
    """:func:`label_history` of rounds with the same rows: numpy over speaker codes, no key alignment."""
    first = tables[0]
    codes = pd.factorize(first["speaker"])[0]  # (N,) one coding for every round
    cols, majors = {}, []
    for r, lab in zip(rounds, tables):
        major = {}
        for v in {*views, "consensus"}:
            major[v] = _majority_of_rows(codes, lab[v].to_numpy())  # (N,) the row's cluster's majority speaker
        for v in views:
            correct = (major[v] == codes).astype(float)
            correct[major[v] < 0] = np.nan  # dropped
            cols[f"r{r}_{v}"] = correct
        majors.append(major["consensus"])
    out = pd.DataFrame(cols, index=pd.Index(first["key"], name="key"))
    out.insert(0, "speaker", first["speaker"].array)
    return _history_summaries(out, rounds, views, np.stack(majors, axis=1), dropped=-1)


def _history_summaries(out: pd.DataFrame, rounds: list[int], views: Sequence[str], majors: np.ndarray,
                       dropped) -> pd.DataFrame:
    """Adds ``rounds_wrong``, ``flips`` (``majors``: (N, rounds), ``dropped`` where not labelled) and the
    wrong-by-modality counts to a history's per-round columns."""
    cons = out[[f"r{r}_consensus" for r in rounds]] if "consensus" in views else out.iloc[:, :0]
    out["rounds_wrong"] = (cons == 0).sum(axis=1)
    if majors.shape[1] > 1:  # a flip: labelled in both rounds, by clusters of different majority speakers
        now, before = majors[:, 1:], majors[:, :-1]
        labelled = (now != dropped) & (before != dropped) if dropped == -1 else pd.notna(now) & pd.notna(before)
        out["flips"] = ((now != before) & labelled).sum(axis=1)
    else:
        out["flips"] = 0
    if {"audio", "visual"} <= set(views):
        a = out[[f"r{r}_audio" for r in rounds]].to_numpy() == 0
        v = out[[f"r{r}_visual" for r in rounds]].to_numpy() == 0
        out["wrong_both"], out["wrong_audio_only"], out["wrong_visual_only"] = \
            (a & v).sum(1), (a & ~v).sum(1), (~a & v).sum(1)
    out.index.name = "key"
    return out


def _label_history_aligned(labels_by_round: Mapping[int, pd.DataFrame], views: Sequence[str]) -> pd.DataFrame:
    """:func:`label_history` of rounds whose rows differ: each round's columns aligned on ``key``."""
    cols, majors = {}, []
    speaker = None
    for r in sorted(labels_by_round):
        lab = labels_by_round[r].set_index("key", drop=False)
        speaker = lab["speaker"] if speaker is None else speaker
        for v in views:
            cols[f"r{r}_{v}"] = label_correct(lab, v)
        majors.append(lab["consensus"].map(majority_speaker(lab, "consensus")))
    out = pd.DataFrame(cols)
    out.insert(0, "speaker", speaker)
    m = pd.concat(majors, axis=1).reindex(out.index) if majors else pd.DataFrame(index=out.index)  # out's row order
    return _history_summaries(out, sorted(labels_by_round), views, m.to_numpy(), dropped=None)


# ------------------------------------------------------------------------------------------ projections
def projection_frame(projection: pd.DataFrame, labels: pd.DataFrame | None, *, view: str = "joint",
                     label_column: str = "consensus") -> pd.DataFrame:
    """Join one view's projection (key, x, y) with the round's labels: adds speaker, label, correct.

    A projection that carries its points' labels (``speaker``, ``<label_column>``, ``correct_<label_column>``:
    :func:`cometa.core.projections.projection_labels`, which the pipeline's projections step writes) is
    read alone, and ``labels`` may be None: the round's N-row table is not needed for its 50,000 points.
    """
    p = projection[projection["view"] == view] if "view" in projection else projection
    out = p[["key", "x", "y"]].reset_index(drop=True)
    carried = ["speaker", label_column, f"correct_{label_column}"]
    if set(carried) <= set(p.columns):
        out["speaker"], out["label"], out["correct"] = (p[c].to_numpy() for c in carried)
        out.attrs["n_total"] = int(p["n_total"].iloc[0]) if "n_total" in p and len(p) else len(p)
        return out
    if labels is None:
        raise ValueError(f"the projection carries no {', '.join(carried)} columns: pass the round's labels")
    lab = labels.set_index("key")
    out["speaker"] = lab["speaker"].reindex(out["key"]).to_numpy()
    out["label"] = lab[label_column].reindex(out["key"]).to_numpy()
    out["correct"] = label_correct(lab, label_column).reindex(out["key"]).to_numpy()
    out.attrs["n_total"] = int(p["n_total"].iloc[0]) if "n_total" in p and len(p) else len(labels)
    return out


def thin_points(points: pd.DataFrame, max_points: int | None) -> pd.DataFrame:
    """At most ``max_points`` rows of a :func:`projection_frame`: every step-th point in key order, so
    that the same utterances are kept in every round (and ``attrs``, ``n_total`` included, kept)."""
    if max_points is None or len(points) <= max_points:
        return points
    step = -(-len(points) // int(max_points))
    out = points.sort_values("key", kind="stable").iloc[::step].reset_index(drop=True)
    out.attrs = dict(points.attrs)
    return out


def _cycle(codes: np.ndarray) -> np.ndarray:
    """Spread integer ids over [0, 1) by the golden ratio so neighbouring ids get distant colours."""
    return np.mod(codes * 0.6180339887, 1.0)


def _scatter_traces(points: pd.DataFrame, color_by: str, *, size: float, legend: bool) -> list[go.Scattergl]:
    """WebGL traces of a projection. Per point only the key travels as text (VoxCeleb keys start with
    the speaker; other keys get the speaker appended); label ids go as numbers, so 50k points stay light."""
    key, speaker = points["key"].astype(str).to_numpy(object), points["speaker"].astype(str).to_numpy(object)
    vox = all(k.startswith(s + "/") for k, s in zip(key, speaker))
    text = key if vox else key + "<br>speaker " + speaker  # (N,) object
    label = pd.to_numeric(points["label"], errors="coerce").fillna(-1).to_numpy().astype(np.int32)
    xy = points[["x", "y"]].to_numpy(np.float32)  # (N, 2); float32 halves what the browser receives

    def trace(sel: np.ndarray, name: str, marker: dict, **kw) -> go.Scattergl:
        return go.Scattergl(x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=name, text=text[sel],
                            customdata=label[sel], hovertemplate="%{text}<br>label %{customdata}<extra></extra>",
                            marker=dict(size=size, **marker), **kw)

    if color_by == "label correct":
        correct = points["correct"].to_numpy(float)
        traces = []
        for name, sel, colour in (("right", correct == 1, "#9ecae1"), ("dropped", np.isnan(correct), "#bbbbbb"),
                                  ("wrong", correct == 0, "#d62728")):  # wrong on top
            if sel.any():
                traces.append(trace(sel, name, dict(color=colour), legendgroup=name, showlegend=legend))
        return traces
    if color_by not in COLOR_MODES:
        raise ValueError(f"color_by must be one of {COLOR_MODES}, got {color_by!r}")
    codes = pd.factorize(points["speaker"], sort=True)[0] if color_by == "true identity" else label
    keep = codes >= 0  # dropped utterances (consensus -1) are drawn grey, underneath
    traces = []
    if (~keep).any():
        traces.append(trace(~keep, "dropped", dict(color="#cccccc"), showlegend=legend))
    traces.append(trace(keep, color_by, dict(color=_cycle(codes[keep].astype(float)), colorscale="Turbo", cmin=0,
                                             cmax=1, showscale=False), showlegend=False))
    return traces


def projection_scatter(points: pd.DataFrame, *, color_by: str = "pseudo label", title: str = "",
                       height: int = 560, width: int | None = None) -> go.Figure:
    """One round's projection as a WebGL scatter (fast up to ~50k points).

    Parameters
    ----------
    points : :func:`projection_frame` output (``key, x, y, speaker, label, correct``).
    color_by : ``"pseudo label"`` | ``"true identity"`` | ``"label correct"``.
    width : pixels; ``None`` stretches. A fixed size spares the browser a second WebGL draw after each
        update (plotly re-lays out an autosized figure), which is what keeps a round slider fluid.
    """
    if points.empty:
        return _empty(title, "no projection for this round (projection.enabled, or not computed yet)")
    n_total = points.attrs.get("n_total", len(points))
    size = 6 if len(points) < 2000 else 3 if len(points) < 20000 else 2
    fig = go.Figure(_scatter_traces(points, color_by, size=size, legend=True))
    shown = f"{len(points):,} of {n_total:,} utterances" if n_total > len(points) else f"{len(points):,} utterances"
    fig.update_layout(title=dict(text=f"{title}<br><sup>colour: {color_by} · {shown}</sup>"), height=height,
                      width=width, **{**_LAYOUT, "margin": dict(l=20, r=20, t=80, b=20)})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x", scaleratio=1)
    return fig


def umap_grid(panels: Mapping[tuple[str, int], pd.DataFrame], *, color_by: str = "true identity",
              title: str = "Embeddings across rounds") -> go.Figure:
    """Projections in a grid: strategies as rows, rounds as columns (WebGL scatters).

    ``panels[(strategy, round)]`` is a :func:`projection_frame` output.
    """
    if not panels:
        return _empty(title, "no projections in this run")
    strategies = [s for s in STRATEGY_COLORS if any(k[0] == s for k in panels)]
    strategies += sorted({k[0] for k in panels} - set(strategies))
    rounds = sorted({k[1] for k in panels})
    fig = make_subplots(rows=len(strategies), cols=len(rounds), horizontal_spacing=0.01, vertical_spacing=0.04,
                        subplot_titles=[f"{_name(s)} · round {r}" for s in strategies for r in rounds])
    first = True
    for i, s in enumerate(strategies, 1):
        for j, r in enumerate(rounds, 1):
            pts = panels.get((s, r))
            if pts is None or pts.empty:
                continue
            size = 4 if len(pts) < 2000 else 2
            for tr in _scatter_traces(pts, color_by, size=size, legend=first):
                fig.add_trace(tr, i, j)
            first = False
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=f"{title} (colour: {color_by})", height=260 * len(strategies) + 100,
                      width=max(260 * len(rounds) + 40, 600),
                      **{**_LAYOUT, "legend": dict(orientation="h", x=0, y=-0.01, yanchor="top")})
    return fig


# ----------------------------------------------------------------------------------------- transitions
_BINS = (0.0, 0.5, 0.8, 0.95, 1.0)


def _states(labels: pd.DataFrame, mode: str, top: int) -> pd.Series:
    """Each utterance's Sankey node at one round (index = key)."""
    lab = labels.set_index("key")
    cons = lab["consensus"]
    if mode == "correct":
        c = label_correct(lab, "consensus")
        return c.map({1.0: "right", 0.0: "wrong"}).fillna("dropped")
    if mode == "purity":  # numpy over (cluster, speaker) codes: no per-key alignment at a million rows
        ids = cons.to_numpy()
        valid = ids >= 0
        clusters, c_idx = np.unique(ids[valid], return_inverse=True)
        spk = pd.factorize(lab["speaker"].to_numpy()[valid])[0]
        n_spk = int(spk.max()) + 1 if spk.size else 1
        pairs, counts = np.unique(c_idx.astype(np.int64) * n_spk + spk, return_counts=True)  # (cells,)
        most = np.zeros(clusters.size, dtype=np.int64)  # (clusters,) its majority speaker's utterances
        np.maximum.at(most, pairs // n_spk, counts)
        share = most / np.bincount(c_idx, minlength=clusters.size)  # (clusters,) the cluster's purity
        names = [f"purity {a:.2f}–{b:.2f}" for a, b in zip(_BINS[:-1], _BINS[1:])] + ["dropped"]
        # pd.cut's bins: (0.5, 0.8] ..., the first closed on the left too
        which = np.full(ids.shape, len(_BINS) - 1)
        which[valid] = np.clip(np.searchsorted(np.asarray(_BINS), share[c_idx], side="left") - 1, 0, len(_BINS) - 2)
        order = np.argsort(names)  # categories in the order of the strings: groupby sorts them as it sorts strings
        codes = np.argsort(order)[which]
        return pd.Series(pd.Categorical.from_codes(codes, [names[i] for i in order]), index=cons.index,
                         name="consensus")
    if mode == "clusters":
        valid = cons >= 0
        majority = majority_speaker(lab, "consensus")
        biggest = cons[valid].value_counts().index[:top]
        name = cons.map(lambda c: f"c{c} ({majority[c]})" if c in biggest else "other clusters")
        return name.where(valid, "dropped")
    raise ValueError(f"mode must be 'purity', 'correct' or 'clusters', got {mode!r}")


def label_transitions(labels_by_round: Mapping[int, pd.DataFrame], *, mode: str = "purity", top: int = 12,
                      title: str | None = None) -> go.Figure:
    """Sankey of utterances between consecutive rounds' consensus labels.

    ``mode``: ``"purity"`` (node = purity bin of the utterance's cluster), ``"correct"`` (right / wrong
    / dropped) or ``"clusters"`` (the ``top`` largest clusters, named by their majority speaker).
    """
    rounds = sorted(labels_by_round)
    title = title or f"Consensus labels from round to round ({mode})"
    if len(rounds) < 2:
        return _empty(title, "needs two rounds or more")
    per_round = {r: _states(labels_by_round[r], mode, top) for r in rounds}
    first = per_round[rounds[0]]
    if all(s.index.equals(first.index) for s in per_round.values()):  # the same utterances in the same order
        states = pd.DataFrame({r: s.array for r, s in per_round.items()}, index=first.index)
    else:
        states = pd.DataFrame(per_round)
    nodes: dict[tuple[int, str], int] = {}
    src, dst, val = [], [], []
    for a, b in zip(rounds[:-1], rounds[1:]):
        flow = states.groupby([a, b], observed=True).size()
        for (sa, sb), n in flow.items():
            for key in ((a, sa), (b, sb)):
                nodes.setdefault(key, len(nodes))
            src.append(nodes[(a, sa)])
            dst.append(nodes[(b, sb)])
            val.append(int(n))
    palette = {"right": "#54A24B", "wrong": "#E45756", "dropped": "#BAB0AC", "other clusters": "#D3D3D3"}
    colour = [palette.get(s, "#4C78A8") for _, s in nodes]
    fig = go.Figure(go.Sankey(arrangement="snap",
                              node=dict(label=[f"R{r} {s}" for r, s in nodes], color=colour, pad=12),
                              link=dict(source=src, target=dst, value=val, color="rgba(120,120,120,0.25)")))
    fig.update_layout(title=title, height=460, **_LAYOUT)
    return fig


def sample_history(history: pd.DataFrame, *, max_samples: int = 150,
                   views: Sequence[str] = ("audio", "visual", "consensus"),
                   title: str = "Per-utterance label history") -> go.Figure:
    """Heatmap: rows = utterances (worst first), columns = round x view, colour = right / wrong / dropped.

    ``history`` is :func:`label_history` output; rows are sorted by ``rounds_wrong`` and ``flips``.
    Clicking a cell reports its utterance key as the point's ``y``.
    """
    cols = [c for c in history.columns if c[:1] == "r" and c.split("_", 1)[-1] in views and c[1:2].isdigit()]
    if history.empty or not cols:
        return _empty(title, "no labels yet")
    n_wrong = (history[cols] == 0).sum(axis=1).rename("_n_wrong")
    h = history.join(n_wrong).sort_values(["rounds_wrong", "_n_wrong", "flips"], ascending=False).head(max_samples)
    z = h[cols].to_numpy(float)
    z = np.where(np.isnan(z), 0.5, z)  # 0 wrong, 0.5 dropped, 1 right
    scale = [[0, "#E45756"], [0.33, "#E45756"], [0.33, "#BAB0AC"], [0.66, "#BAB0AC"], [0.66, "#9ecae1"],
             [1, "#9ecae1"]]
    fig = go.Figure(go.Heatmap(z=z, x=[c.replace("_", " ") for c in cols], y=list(h.index), zmin=0, zmax=1,
                               colorscale=scale, showscale=False, xgap=1, ygap=1,
                               hovertemplate="%{y}<br>%{x}: %{customdata}<extra></extra>",
                               customdata=np.where(z == 1, "right", np.where(z == 0, "wrong", "dropped"))))
    fig.update_yaxes(autorange="reversed", showticklabels=len(h) <= 60, title=f"{len(h)} utterances, worst first")
    fig.update_layout(title=title, height=max(320, min(12 * len(h) + 140, 900)),
                      **{**_LAYOUT, "margin": dict(l=60, r=20, t=60, b=80)})
    return fig


def noise_breakdown(history: pd.DataFrame, *, title: str = "Wrong pseudo labels by modality") -> go.Figure:
    """Per round, utterances whose audio and visual labels are both wrong vs only one of them.

    ``history`` is :func:`label_history` output (columns ``r{round}_audio``, ``r{round}_visual``).
    Wrong in both is the case the paper says Co-teaching+ neglects and gradient regularisation helps.
    """
    rounds = sorted({int(c[1:].split("_")[0]) for c in history.columns
                     if c[:1] == "r" and c[1:2].isdigit() and c.endswith("_audio")})
    if history.empty or not rounds:
        return _empty(title, "no labels yet")
    parts = {"both wrong": ("#E45756", lambda a, v: a & v), "audio only": (VIEW_COLORS["audio"], lambda a, v: a & ~v),
             "visual only": ("#F2A541", lambda a, v: ~a & v)}
    fig = go.Figure()
    for name, (colour, rule) in parts.items():
        counts = [int(rule(history[f"r{r}_audio"] == 0, history[f"r{r}_visual"] == 0).sum()) for r in rounds]
        fig.add_trace(go.Bar(x=[f"Round {r}" for r in rounds], y=counts, name=name, marker_color=colour,
                             hovertemplate=f"{name}: %{{y}}<extra></extra>"))
    fig.update_layout(title=title, barmode="stack", height=360, yaxis_title="utterances", **_LAYOUT)
    return fig


def label_issue_pr(curves: dict[str, pd.DataFrame], *, base_rate: float | None = None,
                   title: str = "Label-issue score: precision / recall of the wrong labels") -> go.Figure:
    """Precision against recall of ranking a round's utterances by label-issue scores.

    ``curves``: name -> :func:`cometa.results.label_noise.precision_recall` output; ``base_rate``
    (the share of wrong labels, the precision of a random order) is drawn as a dotted line.
    """
    if not curves or all(c.empty for c in curves.values()):
        return _empty(title, "no label-issue scores (the analysis step has not run, or no label is wrong)")
    fig = go.Figure()
    for i, (name, c) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=c["recall"], y=c["precision"], mode="lines", name=name,
                                 line=dict(color=list(VIEW_COLORS.values())[i % len(VIEW_COLORS)]),
                                 hovertemplate="first %{customdata} utterances: recall %{x:.2f}, "
                                               "precision %{y:.2f}<extra></extra>", customdata=c["k"]))
    if base_rate is not None:
        fig.add_hline(y=base_rate, line=dict(dash="dot", color="#888888"),
                      annotation_text=f"wrong labels: {base_rate:.0%}")
    fig.update_layout(title=title, xaxis_title="recall", yaxis_title="precision", height=360,
                      xaxis_range=[0, 1], yaxis_range=[0, 1.02], **_LAYOUT)
    return fig


# --------------------------------------------------------------------------- the step notebooks
def stage1_loss(scalars: pd.DataFrame, *, title: str = "Stage I contrastive loss (Eq. 2)") -> go.Figure:
    """Stage I's contrastive loss ``loss_csl`` against the epoch."""
    df = scalars[(scalars["stage"] == "stage1") & (scalars["name"] == "loss_csl")]
    if df.empty:
        return _empty(title, "no Stage I epochs yet")
    fig = go.Figure(go.Scatter(x=df["epoch"], y=df["value"], mode="lines+markers", name="L_CSL",
                               line=dict(color=STAGE1_COLOR)))
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title="loss", height=300, **_LAYOUT)
    return fig


def corpus_sample(key: str, spec: np.ndarray, frames: np.ndarray | None = None, *, max_frames: int = 4) -> go.Figure:
    """One utterance: its log-mel spectrogram ``spec`` (n_mels, T) and up to ``max_frames`` face
    frames ``frames`` (F, H, W, 3) uint8."""
    n = 0 if frames is None else min(len(frames), max_frames)
    fig = make_subplots(rows=1, cols=1 + n, column_widths=[0.6] + [0.4 / max(n, 1)] * n,
                        subplot_titles=[f"{key} log-mel"] + [f"frame {i + 1}" for i in range(n)])
    fig.add_trace(go.Heatmap(z=spec, colorscale="Viridis", showscale=False), 1, 1)
    for i, frame in enumerate([] if frames is None else frames[:n]):
        fig.add_trace(go.Image(z=frame), 1, 2 + i)
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def show(fig: go.Figure) -> None:
    """Display a figure in a notebook as plotly JSON (JupyterLab renders it; the executed notebook
    stays small: no copy of plotly.js, and no nbformat/jsonschema import in every kernel)."""
    # IPython exists only where a notebook runs: importing it here keeps it out of the dashboard and the report
    from IPython.display import display

    title = fig.layout.title.text or ""
    display({"application/vnd.plotly.v1+json": json.loads(fig.to_json()), "text/plain": f"<{title}>"}, raw=True)


def counts_table(counts: dict) -> pd.DataFrame:
    """The corpus step's counts (nested dict) as one ``value`` column with dotted keys."""
    flat = pd.json_normalize(counts, sep=".").T
    flat.columns = ["value"]
    return flat


def metrics_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """EER (%) and minDCF per trial list and metric (rows) and modality (columns)."""
    if metrics is None or metrics.empty:
        return pd.DataFrame()
    m = metrics.copy()
    m.loc[m["name"] == "eer", "value"] *= 100
    m["name"] = m["name"].replace({"eer": "EER %"})
    return m.pivot_table(index=["list", "name"], columns="modality", values="value").round(3)


def label_table(quality: pd.DataFrame) -> pd.DataFrame:
    """Label quality per metric (rows) and view (columns)."""
    if quality is None or quality.empty:
        return pd.DataFrame()
    return quality.pivot_table(index="name", columns="modality", values="value").round(4)
