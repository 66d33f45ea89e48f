"""The run directory the dashboard and the report read, at VoxCeleb2 size, without the embeddings.

``build_paper_store(run_dir, n=1_092_009)`` writes what ``cometa report`` and the dashboard read of a
run of ``rounds`` rounds x ``strategies``: ``store.sqlite`` (training, evaluation, label-quality and
label-issue scalars), ``config.yaml``, the done markers and executed-notebook records of every step,
and per strategy and round ``labels.parquet`` (N rows), ``label_issues.parquet`` (3 N rows: audio,
visual, joint), ``projection.parquet`` (the 50,000-point cap a view, the same keys every round, as
the pipeline's aligned projections, with their points' labels as the projections step writes them:
:func:`cometa.core.projections.projection_labels`) and a small ``scores.npz``. ``embeddings.npz`` is not written:
nothing the dashboard or the report shows reads it. Keys are VoxCeleb-shaped
(``id<speaker>/<video>/<utterance>.wav``); k = 6,000 clusters over 5,994 speakers (scaled with n).

Pseudo labels get purer round by round (cometa best, as in ``bench.sample_run``); the label scalars
(purity, inverse purity, NMI, ARI, cluster count, kept fraction, votes) are computed from the
labels written; the label-issue scores are lower on the wrong labels than on the right ones, and their
AUROC and AP are computed from the scores written.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.sample_run import (
    _LISTS,
    _MODALITY,
    _STRENGTH,
    _T0,
    STAGE1_EER,
    STRATEGIES,
    _eval_rows,
    _row,
    _scores,
    _step,
    _train_rows,
    _write_config,
    _write_store,
    corpus_and_stage1,
)
from cometa.core.label_issues import ranking_quality
from cometa.core.projections import projection_labels

N_UTT, N_SPK, N_VID, K = 1_092_009, 5_994, 145_569, 6_000
PROJECTION_CAP = 50_000  # ProjectionConfig.max_points
VIEWS = ("audio", "visual", "joint")


def _corpus(n: int, rng) -> tuple[np.ndarray, np.ndarray, pa.Array, pa.Array]:
    """(speaker ids (n,), video ids (n,), keys, speaker names) of a VoxCeleb2-shaped training set."""
    f = n / N_UTT
    n_spk, n_vid = max(int(round(N_SPK * f)), 4), max(int(round(N_VID * f)), 8)
    video = np.sort(rng.integers(0, n_vid, n))
    spk = (np.arange(n_vid) % n_spk)[video]
    names = np.char.add("id", np.char.zfill(spk.astype("U5"), 5))
    keys = np.char.add(np.char.add(np.char.add(names, "/v"), np.char.zfill(video.astype("U6"), 6)),
                       np.char.add("/", np.char.add(np.char.zfill(np.arange(n).astype("U7"), 7), ".wav")))
    return spk, video, pa.array(keys.astype(object), pa.string()), pa.array(names.astype(object), pa.string())


def _view_labels(rng, spk: np.ndarray, video: np.ndarray, k: int, noise: float, split: float,
                 hard: np.ndarray) -> dict[str, np.ndarray]:
    """Per-view cluster ids (aligned onto one id space): speakers onto k ids, a fraction ``split`` of the
    videos in a cluster of their own, and per-view noise (hard utterances wrong more often)."""
    n_spk = int(spk.max()) + 1
    ids = rng.permutation(k)
    base = ids[spk % k].copy()
    extra = ids[n_spk % k:] if k > n_spk else ids
    moved = (rng.random(int(video.max()) + 1) < split)[video]
    base[moved] = extra[video[moved] % len(extra)]
    out = {}
    for view, scale in (("joint", 0.7), ("audio", 1.0), ("visual", 1.2)):
        p = np.where(hard, np.minimum(0.9, 3 * noise * scale), noise * scale * 0.6)
        wrong = rng.random(spk.size) < p
        lab = base.copy()
        lab[wrong] = rng.integers(0, k, int(wrong.sum()))
        out[view] = lab
    a, v, j = out["audio"], out["visual"], out["joint"]
    out["consensus"] = np.where((a == v) | (a == j), a, np.where(v == j, v, -1))
    return out


def _label_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Purity, inverse purity, NMI (arithmetic mean normalisation, sklearn's default), ARI, cluster count."""
    n_true = int(true.max()) + 1
    codes, cells = np.unique(pred.astype(np.int64) * n_true + true, return_counts=True)
    c_pred, c_true = codes // n_true, codes % n_true
    n = float(pred.size)
    a = np.bincount(np.unique(pred, return_inverse=True)[1])  # cluster sizes
    b = np.bincount(true)[np.unique(true)]  # speaker sizes
    purity = float(np.maximum.reduceat(cells[np.argsort(c_pred, kind="stable")],
                                       np.r_[0, np.flatnonzero(np.diff(np.sort(c_pred))) + 1]).sum() / n)
    order = np.argsort(c_true, kind="stable")
    inverse = float(np.maximum.reduceat(cells[order], np.r_[0, np.flatnonzero(np.diff(c_true[order])) + 1]).sum() / n)
    pa_, pb = a / n, b / n
    ha, hb = -(pa_ * np.log(pa_)).sum(), -(pb * np.log(pb)).sum()
    i_pred, i_true = np.unique(c_pred, return_inverse=True)[1], np.unique(c_true, return_inverse=True)[1]
    row, col = np.bincount(i_pred, weights=cells)[i_pred], np.bincount(i_true, weights=cells)[i_true]  # (cells,)
    mi = float((cells / n * np.log(cells * n / (row * col))).sum())
    nmi = mi / ((ha + hb) / 2) if ha + hb > 0 else 1.0
    comb = lambda x: (x * (x - 1) / 2).sum()  # noqa: E731
    s_ij, s_a, s_b, total = comb(cells.astype(float)), comb(a.astype(float)), comb(b.astype(float)), n * (n - 1) / 2
    expected = s_a * s_b / total
    ari = (s_ij - expected) / ((s_a + s_b) / 2 - expected)
    return {"purity": purity, "inverse_purity": inverse, "nmi": float(nmi), "ari": float(ari),
            "n_clusters": float(a.size)}


def _issue_scores(rng, wrong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(self-confidence, normalised margin) (n,) float64: lower on the wrong labels."""
    sc = np.where(wrong, rng.beta(2, 5, wrong.size), rng.beta(5, 2, wrong.size))
    return sc, np.clip(sc - 0.5 + 0.1 * rng.standard_normal(wrong.size), -1, 1)


def _projection(rng, keys: pa.Array, spk: np.ndarray, rows: np.ndarray, n: int, spread: float) -> pa.Table:
    """The three views' projections of ``rows`` (the same keys every round): speakers on rings."""
    n_spk = int(spk.max()) + 1
    angle = 2 * np.pi * np.arange(n_spk) / n_spk
    radius = 12 + 3 * (np.arange(n_spk) % 7)
    parts = []
    for i, view in enumerate(VIEWS):
        cx, cy = (radius * np.cos(angle + 0.2 * i))[spk[rows]], (radius * np.sin(angle + 0.2 * i))[spk[rows]]
        jitter = rng.normal(size=(rows.size, 2)) * 0.3 * spread
        parts.append(pa.table({"key": keys.take(pa.array(rows)), "x": cx + jitter[:, 0], "y": cy + jitter[:, 1],
                               "n_total": np.full(rows.size, n, np.int64), "view": pa.array([view] * rows.size)}))
    return pa.concat_tables(parts)


def build_paper_store(run_dir: str | Path, *, n: int = N_UTT, rounds: int = 20,
                      strategies: tuple[str, ...] = STRATEGIES, seed: int = 0, progress: bool = False) -> Path:
    """Write the run directory (see the module docstring) at ``run_dir`` and return its path."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    spk, video, keys, names = _corpus(n, rng)
    k = min(K, max(n // 4, int(spk.max()) + 2))
    _write_config(run, strategies, rounds, k, seed, run / "corpus" / "data")
    hard = rng.random(n) < 0.15
    proj_rows = np.sort(rng.choice(n, min(n, PROJECTION_CAP), replace=False))
    clock = [_T0]
    rows = corpus_and_stage1(run, clock, n=n, preset="paper", seconds=(3600.0, 36000.0), stage1_text="Stage I")
    for strategy in strategies:
        strength = _STRENGTH[strategy]
        for r in range(1, rounds + 1):
            out = run / strategy / f"round_{r}"
            out.mkdir(parents=True, exist_ok=True)
            noise = 0.35 * strength * 0.85 ** (r - 1)
            lab = _view_labels(rng, spk, video, k, noise, 0.05 * 0.8 ** r, hard)
            table = pa.table({"key": keys, "speaker": names, **{v: lab[v] for v in (*VIEWS, "consensus")},
                              "kept": lab["consensus"] >= 0})
            pq.write_table(table, out / "labels.parquet")
            for view in (*VIEWS, "consensus"):
                sel = lab[view] >= 0
                vals = _label_metrics(lab[view][sel], spk[sel])
                vals["kept_frac"] = float(sel.mean())
                rows += [_row(strategy, "labels", r, None, None, view, name, v) for name, v in vals.items()]
            a, v, j = lab["audio"], lab["visual"], lab["joint"]
            agree, differ = (a == v) & (v == j), (a != v) & (v != j) & (a != j)
            for name, v_ in (("vote_all_agree", agree.sum()), ("vote_two_agree", (~agree & ~differ).sum()),
                             ("vote_all_differ", differ.sum())):
                rows.append(_row(strategy, "labels", r, None, None, "consensus", name, float(v_)))
            kept = np.flatnonzero(lab["consensus"] >= 0)
            cons = lab["consensus"][kept]
            majority = np.zeros(k, np.int64)  # each cluster's majority speaker
            codes, cells = np.unique(cons.astype(np.int64) * (int(spk.max()) + 1) + spk[kept], return_counts=True)
            order = np.lexsort((-cells, codes // (int(spk.max()) + 1)))
            first = np.r_[True, np.diff((codes // (int(spk.max()) + 1))[order]) != 0]
            majority[(codes // (int(spk.max()) + 1))[order][first]] = (codes % (int(spk.max()) + 1))[order][first]
            wrong = majority[cons] != spk[kept]
            issues = []
            for view in VIEWS:
                sc, nm = _issue_scores(rng, wrong)
                issues.append(pa.table({"key": keys.take(pa.array(kept)), "view": pa.array([view] * kept.size),
                                        "label": np.unique(cons, return_inverse=True)[1], "wrong": wrong,
                                        "flagged": sc < 0.3, "self_confidence": sc, "normalized_margin": nm}))
                for method, scores in (("self_confidence", sc), ("normalized_margin", nm)):
                    auroc, ap = ranking_quality(scores, wrong)  # of the scores written, as the analysis step logs
                    rows += [_row(strategy, f"label_issues/{method}", r, None, None, view, "label_issue_auroc", auroc),
                             _row(strategy, f"label_issues/{method}", r, None, None, view, "label_issue_ap", ap)]
            pq.write_table(pa.concat_tables(issues), out / "label_issues.parquet")
            proj = _projection(rng, keys, spk, proj_rows, n, 1 + 2 * noise).to_pandas()
            projection_labels(proj, table.to_pandas()).to_parquet(out / "projection.parquet", index=False)
            rows += _train_rows(strategy, r, noise, rng)
            arrays = {}
            for lst, f in _LISTS.items():
                per_mod = {}
                for m, fm in _MODALITY.items():
                    s, y = _scores(STAGE1_EER * strength * 0.9 ** r * f * fm, 1000)
                    arrays[f"{lst}_{m}"], arrays[f"{lst}_labels"] = s, y
                    per_mod[m] = (s, y)
                rows += _eval_rows(strategy, r, per_mod, lst=lst)
            np.savez(out / "scores.npz", **arrays)
            _step(run, f"{strategy}/round_{r}", "round.ipynb", clock, 7200.0, {"strategy": strategy, "round": r},
                  f"{strategy} round {r}")
            if progress:
                print(f"  paper store: {strategy} round {r} written", flush=True)
    _step(run, "projections", "projections.ipynb", clock, 600.0 * len(strategies),
          {"strategies": ",".join(strategies), "rounds": rounds}, "projections of every round")
    _write_store(run / "store.sqlite", run.name, rows)
    return run
