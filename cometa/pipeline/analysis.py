"""The ``analysis`` step: what is computed from finished rounds without training, for every strategy
and round (and Stage I): AS-norm scoring (``evaluation.as_norm``) and label-issue scores of the
pseudo labels (``evaluation.label_issues``).

Its own step, so that turning an analysis on or changing its settings reruns it alone: the rounds'
input hashes do not cover the ``evaluation`` section, and no round retrains.

- AS-norm: test and cohort embeddings under the round's final encoders; the cohort is
  ``cohort_size`` training utterances drawn with the run's seed (the same ones in every round). The
  embeddings are read where a step already wrote them (the round's ``test_embeddings.npz``; the
  next round's ``embeddings.npz``, made with this round's final encoders; Stage I's), else computed
  from the round's ``checkpoint.pt``. The store gets ``eer_asnorm``, ``min_dcf_<p>_asnorm`` per
  trial list (stage ``eval/<list>``) and modality, beside ``eer``. A corpus whose training and test
  sets share a speaker is refused before anything is computed (a test speaker in the cohort is no
  impostor).
- Label issues: per view (audio, visual, joint) the round's frozen embeddings (``embeddings.npz``,
  those it clustered) and its consensus labels, out-of-sample probabilities from a k-fold logistic
  regression (``method: exact``; ``centroid``: leave-one-out class centroids, sparse, at paper scale;
  its flags are cleanlab's ``confident_learning`` filter), cleanlab's self-confidence and normalised
  margin (stage ``label_issues/<method>``: ``label_issue_auroc``, ``label_issue_ap`` against the
  wrong-label mask) and its ``find_label_issues`` (stage ``label_issues/find_label_issues``: ``label_issue_precision``,
  ``label_issue_recall``, ``label_issue_flagged_frac``); per utterance in ``label_issues.parquet``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cometa.core.label_issues import (
    SCORE_METHODS,
    centroid_probs,
    flag_label_issues,
    label_issue_scores,
    out_of_sample_probs,
    ranking_quality,
    sparse_flag_label_issues,
    sparse_label_issue_scores,
)
from cometa.core.label_quality import wrong_label_mask
from cometa.data.datasets import AudioBank, FrameBank
from cometa.evaluation.evaluate import check_cohort_speakers, evaluate_as_norm, log_metrics
from cometa.models.augment import build_eval_transform
from cometa.models.build import build_audio_model, build_visual_model
from cometa.pipeline.steps import RunContext, round_dir
from cometa.train.checkpoint import load_checkpoint
from cometa.train.embed import audio_embeddings, sharded, visual_embeddings

__all__ = ["analysis_step", "label_issues_round", "as_norm_round", "VIEWS"]

VIEWS = ("audio", "visual", "joint")


def analysis_step(run_dir: str | Path, strategies: str | list[str], rounds: int, *, stage1: bool = False,
                  progress: bool = True) -> None:
    """AS-norm (of Stage I when ``stage1``, and of every round) and label-issue scores (every round)
    of the finished rounds ``1..rounds`` of ``strategies``."""
    if isinstance(strategies, str):
        strategies = [s for s in strategies.split(",") if s]
    ctx = RunContext(run_dir, progress=progress)
    ev = ctx.cfg.evaluation
    if ev.as_norm.enabled:  # before anything is computed or written
        check_cohort_speakers(ctx.corpus.train["speaker"].tolist(), ctx.corpus.test["speaker"].tolist())
    if ev.as_norm.enabled and stage1:
        as_norm_round(ctx, None, 0)
    for strategy in strategies:
        for r in range(1, int(rounds) + 1):
            if ev.label_issues.enabled:
                label_issues_round(ctx, strategy, r)
            if ev.as_norm.enabled:
                as_norm_round(ctx, strategy, r)


def label_issues_round(ctx: RunContext, strategy: str, round_: int) -> pd.DataFrame:
    """Label-issue scores of one round's consensus labels, per view; returns the per-utterance table."""
    cfg, store = ctx.cfg.evaluation.label_issues, ctx.store
    rel = round_dir(ctx.run_dir, strategy, round_).relative_to(ctx.run_dir)
    table, emb = store.load_table(rel / "labels.parquet"), store.load_arrays(rel / "embeddings.npz")
    kept = table["consensus"].to_numpy() >= 0
    labels, _ = pd.factorize(table["consensus"].to_numpy()[kept], sort=True)
    wrong = wrong_label_mask(table["speaker"].to_numpy()[kept], labels)  # ground truth: measures only
    rows, frames = [], []
    for view in VIEWS:
        x = np.nan_to_num(np.asarray(emb[view], dtype=np.float64)[kept])  # a face-less row scores as zeros
        if cfg.method == "centroid":  # paper scale: sparse (N, K), no dense P̂
            sparse_probs = centroid_probs(x, labels, temperature=cfg.temperature, top_k=cfg.top_k)
            scores = sparse_label_issue_scores(labels, sparse_probs)
            flagged = sparse_flag_label_issues(labels, sparse_probs)
        else:
            probs = out_of_sample_probs(x, labels, n_folds=cfg.n_folds, seed=ctx.cfg.seed, max_iter=cfg.max_iter)
            scores, flagged = label_issue_scores(labels, probs), flag_label_issues(labels, probs)
        for method in SCORE_METHODS:
            auroc, ap = ranking_quality(scores[method], wrong)
            rows += [dict(name="label_issue_auroc", value=auroc, stage=f"label_issues/{method}", modality=view),
                     dict(name="label_issue_ap", value=ap, stage=f"label_issues/{method}", modality=view)]
        n_flag, n_wrong = int(flagged.sum()), int(wrong.sum())
        hit = int((flagged & wrong).sum())
        rows += [dict(name=n, value=v, stage="label_issues/find_label_issues", modality=view) for n, v in (
            ("label_issue_precision", hit / n_flag if n_flag else float("nan")),
            ("label_issue_recall", hit / n_wrong if n_wrong else float("nan")),
            ("label_issue_flagged_frac", n_flag / max(len(labels), 1)))]
        frames.append(pd.DataFrame({"key": table["key"].to_numpy()[kept], "view": view, "label": labels,
                                    "wrong": wrong, "flagged": flagged, **scores}))
    store.delete_scalars(strategy=strategy, stage=sorted({str(r["stage"]) for r in rows}), round=round_)
    store.log_many([dict(r, strategy=strategy, round=round_) for r in rows])
    out = pd.concat(frames, ignore_index=True)
    store.save_table(rel / "label_issues.parquet", out)
    return out


def _cohort_rows(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted rows of the training set in the AS-norm cohort: all of them, or ``size`` drawn with ``seed``."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _embed(ctx: RunContext, model, modality: str, split: str, rows: np.ndarray | None = None) -> np.ndarray:
    """(N, D) embeddings of a split (or of its ``rows``) under ``model``."""
    if rows is None or len(rows) == len(getattr(ctx.corpus, split)):
        return ctx.audio_embeddings(model, split) if modality == "audio" else ctx.visual_embeddings(model, split)
    manifest = getattr(ctx.corpus, split).iloc[rows].reset_index(drop=True)
    cfg = ctx.cfg
    if modality == "audio":
        audio = AudioBank(manifest, sample_rate=cfg.features.sample_rate, cache=False)
        return sharded(audio_embeddings, model, audio, device=ctx.device, sample_rate=cfg.features.sample_rate,
                       eval_seconds=cfg.features.eval_seconds, progress=ctx.progress, desc="audio cohort")
    bank = FrameBank(manifest, size=cfg.visual_encoder.image_size, cache=False)
    tf = build_eval_transform(cfg.visual_encoder.image_size)
    return sharded(lambda m, b, **kw: visual_embeddings(m, b, tf, **kw), model, bank, device=ctx.device,
                   progress=ctx.progress, desc="face cohort")


def _final_models(ctx: RunContext, strategy: str | None, round_: int) -> dict[str, torch.nn.Module]:
    """The encoders a step ended with: Stage I's audio model (round 0), else the round's checkpoint."""
    step_dir = ctx.run_dir / "stage1" if strategy is None else round_dir(ctx.run_dir, strategy, round_)
    state = load_checkpoint(step_dir / ("model.pt" if strategy is None else "checkpoint.pt"))
    if state is None:
        raise FileNotFoundError(f"{step_dir} has no final checkpoint: finish the step first")
    models = {"audio": build_audio_model(ctx.cfg)}
    if "visual" in state:
        models["visual"] = build_visual_model(ctx.cfg)
    for m, model in models.items():
        model.load_state_dict(state[m])
        model.to(ctx.device).eval()
    return models


def _stored(ctx: RunContext, relpath: Path, keys: list[str], modalities: tuple[str, ...]) -> dict | None:
    """The arrays of ``modalities`` in a stored .npz whose ``keys`` are ``keys``, or None."""
    if not (ctx.run_dir / relpath).exists():
        return None
    arrays = ctx.store.load_arrays(relpath)
    if list(arrays["keys"]) != keys or any(m not in arrays for m in modalities):
        return None
    return {m: arrays[m] for m in modalities}


def as_norm_round(ctx: RunContext, strategy: str | None, round_: int) -> pd.DataFrame:
    """AS-norm metrics of a finished step (``strategy=None``: Stage I), logged beside its plain ones.
    A cohort that shares speakers with the test set is refused (:func:`check_cohort_speakers`)."""
    check_cohort_speakers(ctx.corpus.train["speaker"].tolist(), ctx.corpus.test["speaker"].tolist())
    cfg = ctx.cfg.evaluation.as_norm
    train_keys, test_keys = ctx.corpus.train["key"].tolist(), ctx.corpus.test["key"].tolist()
    rows = _cohort_rows(len(train_keys), cfg.cohort_size, ctx.cfg.seed)
    mods: tuple[str, ...] = ("audio",) if strategy is None else ("audio", "visual")
    step = Path("stage1") if strategy is None else round_dir(ctx.run_dir, strategy, round_).relative_to(ctx.run_dir)
    after = Path("stage1/embeddings.npz") if strategy is None else \
        round_dir(ctx.run_dir, strategy, round_ + 1).relative_to(ctx.run_dir) / "embeddings.npz"
    test = _stored(ctx, step / "test_embeddings.npz", test_keys, mods)
    cohorts = _stored(ctx, after, train_keys, mods)
    if cohorts is not None:
        cohorts = {m: c[rows] for m, c in cohorts.items()}
    if test is None or cohorts is None:  # not stored: embed with the step's final encoders
        models = _final_models(ctx, strategy, round_)
        test = test or {m: _embed(ctx, models[m], m, "test") for m in mods}
        cohorts = cohorts or {m: _embed(ctx, models[m], m, "train", rows) for m in mods}
    metrics = evaluate_as_norm(ctx.corpus.test["key"].tolist(), test, ctx.corpus.trials, cohorts, top_n=cfg.top_n,
                               p_targets=ctx.cfg.eval.p_targets)
    ctx.store.delete_scalars(strategy=strategy, stage=[f"eval/{n}" for n in ctx.corpus.trials], round=round_,
                             name=sorted(set(metrics["name"])))
    log_metrics(ctx.store, metrics, strategy=strategy, round=round_)
    return metrics
