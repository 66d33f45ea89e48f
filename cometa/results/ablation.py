"""Table 6 of the cross-lingual transfer paper, for this study: what Stage II trains and what it buys.

Per run (a *variant*: ``stage2.train`` full or adapters, with its ``stage2.distill`` teacher and the
audio pooling when not the defaults) and strategy: the trainable parameters per modality
(``trainable_params`` of the last round; runs made before that metric was logged show none), the
wall-clock time per training step (each epoch's ``epoch_seconds`` over its number of steps, mean over
the epochs of every round) and the EER (%) of the last round on the O list. ``cometa report RUN
--compare OTHER_RUN`` puts several variants side by side (``table6.md``).

Only run stores and configs are read (no torch).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from cometa.results import figures as F

__all__ = ["variant_label", "truth_label_note", "table6", "table6_markdown"]


def variant_label(config: Mapping) -> str:
    """What a run's Stage II trains, from its resolved config (``RunStore.config()``): ``full`` or
    ``adapters``, then ``distill <teacher>``, the audio pooling and labels of known noise
    (:func:`truth_label_note`) where they are not the defaults."""
    s2 = config.get("stage2", {}) or {}
    parts = [str(s2.get("train", "full"))]
    teacher = (s2.get("distill") or {}).get("teacher", "none")
    if teacher != "none":
        parts.append(f"distill {teacher} (w {float(s2['distill'].get('weight', 1.0)):g})")
    pooling = (config.get("audio_encoder", {}) or {}).get("pooling", "asp")
    if pooling != "asp":
        parts.append(f"pooling {pooling}")
    labels = truth_label_note(config)
    if labels:
        parts.append(labels)
    return " + ".join(parts)


def truth_label_note(config: Mapping) -> str:
    """``"true labels, 35 % moved by video"`` for a run with ``clustering.method: truth`` (labels of
    known noise, which read the ground truth), ``""`` for pseudo labels."""
    c = config.get("clustering", {}) or {}
    if c.get("method") != "truth":
        return ""
    noise, unit = 100 * float(c.get("truth_noise", 0.0)), c.get("truth_noise_unit", "utterance")
    where = " to the nearest voice" if c.get("truth_noise_target") == "audio_nearest" else ""
    return f"true labels, {noise:g} % moved by {unit}{where}"


def _mean(v: pd.Series) -> float:
    return float(v.astype(float).mean()) if len(v) else math.nan


def _step_seconds(train: pd.DataFrame) -> float:
    """Mean over epochs of ``epoch_seconds`` / the epoch's number of steps (per-step rows of
    ``disagreement_frac``)."""
    secs = train[train["name"] == "epoch_seconds"].groupby(["round", "epoch"])["value"].last()
    steps = train[(train["name"] == "disagreement_frac") & train["step"].notna()].groupby(
        ["round", "epoch"])["step"].nunique()
    per_step = (secs / steps).dropna()
    return float(per_step.mean()) if len(per_step) else math.nan


def table6(variants: Mapping[str, pd.DataFrame], *, trial_list: str = "O") -> list[dict]:
    """One row per (variant, strategy): ``variant``, ``strategy``, ``round`` (the last evaluated),
    ``params_audio``, ``params_visual`` (trainable, last round; NaN when not logged), ``step_seconds``
    and ``eer_audio``, ``eer_visual`` (fractions). ``variants`` maps a label to a run's scalars; a
    study's (a ``seed`` column) gives the mean over its seeds."""
    rows = []
    for label, df in variants.items():
        if "seed" in df.columns and df["seed"].nunique() > 1:
            per_seed = pd.DataFrame([r for _, d in df.groupby("seed") for r in table6({label: d.drop(columns="seed")})])
            keys = ["variant", "strategy", "round"]
            rows += per_seed.groupby(keys, sort=False).mean(numeric_only=True).reset_index().to_dict("records")
            continue
        for strategy in _strategies(df):
            mine = df[df["strategy"] == strategy]
            ev = mine[(mine["stage"] == f"eval/{trial_list}") & (mine["name"] == "eer")]
            if ev.empty:
                continue
            last = int(ev["round"].max())
            train = mine[mine["stage"] == "train"]
            params = train[(train["name"] == "trainable_params") & (train["round"] == last)]
            row = {"variant": label, "strategy": strategy, "round": last, "step_seconds": _step_seconds(train)}
            for m in ("audio", "visual"):
                row[f"params_{m}"] = _mean(params.loc[params["modality"] == m, "value"].tail(1))
                row[f"eer_{m}"] = _mean(ev.loc[(ev["round"] == last) & (ev["modality"] == m)]
                                        .sort_values("time")["value"].tail(1))
            rows.append(row)
    return rows


def _strategies(df: pd.DataFrame) -> list[str]:
    present = set(df["strategy"].dropna())
    return [s for s in F.STRATEGY_COLORS if s in present] + sorted(present - set(F.STRATEGY_COLORS))


def _n(v: float) -> str:
    return "-" if math.isnan(v) else f"{int(v):,}"


def table6_markdown(rows: list[dict], *, trial_list: str = "O") -> str:
    """Table 6 as Markdown: trainable parameters, step time and last-round EER per variant and strategy."""
    lines = [f"Table 6. What Stage II trains: trainable parameters (last round), wall-clock seconds per "
             f"training step and EER (%) of the last round on the {trial_list} list, per variant and strategy.",
             "", "| Variant | Strategy | Round | Trainable audio | Trainable visual | s / step | EER audio "
             "| EER visual |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        step = "-" if math.isnan(r["step_seconds"]) else f"{r['step_seconds']:.3f}"
        eer = ["-" if math.isnan(r[k]) else f"{100 * r[k]:.2f}" for k in ("eer_audio", "eer_visual")]
        lines.append(f"| {r['variant']} | {F.STRATEGY_NAMES.get(r['strategy'], r['strategy'])} | {r['round']} | "
                     f"{_n(r['params_audio'])} | {_n(r['params_visual'])} | {step} | {eer[0]} | {eer[1]} |")
    return "\n".join(lines) + "\n"
