"""Benchmark: cometa.evaluation.metrics against the usual alternatives, side by side in one process.

1. EER + minDCF (P_target 0.01) on 1M random trials: ``cometa.evaluation.metrics`` versus the scikit-learn
   path (``roc_curve(drop_intermediate=False)``, interpolated crossing, cost minimum over its points).
2. ``score_trials`` on 580k trials (Vox1-E size) over 5k embeddings of 192 dims (float32) versus a
   naive per-trial loop (dict look-ups, two norms and a dot per trial), timed on a 20k-trial subset
   and extrapolated linearly.

Run: ``python bench/bench_metrics.py`` (or call ``main()``, which returns the figures).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from cometa.evaluation.metrics import eer, min_dcf, score_trials

N_TRIALS_EER = 1_000_000
N_TRIALS_SCORE = 580_000
N_EMB, DIM = 5_000, 192
N_LOOP = 20_000
P_TARGET = 0.01


def _best_of(fn, repeats: int) -> tuple[float, object]:
    """(fastest wall time in seconds over ``repeats`` calls, the last result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _sklearn_eer_min_dcf(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """EER (interpolated crossing of fnr and fpr) and minDCF from scikit-learn's ROC points."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    d = fnr - fpr  # falls from +1 to -1 along roc_curve's decreasing thresholds
    i = int(np.flatnonzero(d <= 0)[0])
    e = fnr[i] if d[i] == 0 else fnr[i - 1] + d[i - 1] / (d[i - 1] - d[i]) * (fnr[i] - fnr[i - 1])
    cost = fnr * P_TARGET + fpr * (1.0 - P_TARGET)
    return float(e), float(cost.min() / min(P_TARGET, 1.0 - P_TARGET))


def _naive_scores(emb: np.ndarray, index: dict, trials: pd.DataFrame) -> np.ndarray:
    out = np.empty(len(trials))
    for t, (a, b) in enumerate(zip(trials["enroll"], trials["test"])):
        u, v = emb[index[a]], emb[index[b]]
        out[t] = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
    return out


def bench_eer(seed: int = 0) -> dict:
    """EER + minDCF on 1M trials (scores rounded to 4 decimals, so ties occur as in real lists)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(N_TRIALS_EER) < 0.5).astype(np.int8)
    scores = np.round(rng.normal(size=N_TRIALS_EER) + 2.0 * labels, 4)
    t_ours, (e, d) = _best_of(lambda: (eer(scores, labels)[0], min_dcf(scores, labels, p_target=P_TARGET)[0]), 3)
    t_skl, (e_ref, d_ref) = _best_of(lambda: _sklearn_eer_min_dcf(scores, labels), 3)
    return {"eer_trials": N_TRIALS_EER, "eer_mindcf_cometa_s": t_ours, "eer_mindcf_sklearn_s": t_skl,
            "eer_mindcf_speedup": t_skl / t_ours, "eer_abs_diff": abs(e - e_ref), "mindcf_abs_diff": abs(d - d_ref)}


def bench_score_trials(seed: int = 0) -> dict:
    """score_trials on 580k trials over 5k x 192 float32 embeddings vs a per-trial loop."""
    rng = np.random.default_rng(seed)
    keys = np.array([f"id{10000 + i // 20}/yt{i % 20:02d}/{i:05d}.wav" for i in range(N_EMB)])
    index = {k: i for i, k in enumerate(keys)}
    emb = rng.normal(size=(N_EMB, DIM)).astype(np.float32)
    pick = rng.integers(0, N_EMB, (2, N_TRIALS_SCORE))
    trials = pd.DataFrame({"label": rng.integers(0, 2, N_TRIALS_SCORE), "enroll": keys[pick[0]],
                           "test": keys[pick[1]]})
    t_ours, s = _best_of(lambda: score_trials(emb, index, trials), 2)
    sub = trials.iloc[:N_LOOP]
    t_loop_sub, s_loop = _best_of(lambda: _naive_scores(emb, index, sub), 1)
    t_loop = t_loop_sub * N_TRIALS_SCORE / N_LOOP
    return {"score_trials": N_TRIALS_SCORE, "score_embeddings": N_EMB, "score_dim": DIM,
            "score_trials_cometa_s": t_ours, "score_trials_loop_subset_s": t_loop_sub,
            "score_trials_loop_extrapolated_s": t_loop, "score_trials_speedup": t_loop / t_ours,
            "score_max_abs_diff": float(np.abs(s[:N_LOOP] - s_loop).max())}


def main() -> dict:
    """Run both benchmarks; print a side-by-side summary and return the figures (seconds, ratios)."""
    r = {**bench_eer(), **bench_score_trials()}
    print(f"EER + minDCF, {r['eer_trials']:,} trials: cometa {r['eer_mindcf_cometa_s']:.3f} s, "
          f"sklearn roc_curve {r['eer_mindcf_sklearn_s']:.3f} s -> x{r['eer_mindcf_speedup']:.2f} "
          f"(|ΔEER| {r['eer_abs_diff']:.1e}, |ΔminDCF| {r['mindcf_abs_diff']:.1e})")
    print(f"score_trials, {r['score_trials']:,} trials over {r['score_embeddings']:,} x {r['score_dim']}: "
          f"cometa {r['score_trials_cometa_s']:.3f} s, naive loop {r['score_trials_loop_extrapolated_s']:.1f} s "
          f"(extrapolated from {N_LOOP:,} trials in {r['score_trials_loop_subset_s']:.2f} s) "
          f"-> x{r['score_trials_speedup']:.0f} (max |Δscore| {r['score_max_abs_diff']:.1e})")
    return r


if __name__ == "__main__":
    print(main())
