"""Speaker-verification metrics: EER, NIST minDCF, DET points, cosine trial scoring, score fusion.

Equations implemented
---------------------
- Error rates at threshold t (a trial is accepted when ``score >= t``)::

      P_miss(t) = |{target trials with score < t}| / N_target
      P_fa(t)   = |{non-target trials with score >= t}| / N_non-target

  evaluated at every distinct score (equal scores move together, so ties are exact) and at +inf
  ("reject all"); the lowest score is "accept all".
- EER: the common value of P_miss and P_fa where the two curves cross (see ``eer`` for the
  interpolation convention).
- minDCF: NIST 2016 SRE evaluation plan (v1.3), Eq. (2)
  ``C_det(t) = C_miss · P_miss(t) · P_target + C_fa · P_fa(t) · (1 − P_target)``, normalised by
  Eqs. (3)-(4) ``C_default = min(C_miss · P_target, C_fa · (1 − P_target))`` and minimised over t.
- Trial score: cosine similarity of the enrolment and test embeddings; the audio-visual score is the
  mean of the audio and the visual cosine scores (the project's fusion; the paper does not state one).
- AS-norm (adaptive symmetric score normalisation, Matějka et al. 2017; as in wespeaker and sslsv):
  ``s' = ½((s − μ_e)/σ_e + (s − μ_t)/σ_t)`` with μ_e, σ_e the mean and population standard
  deviation of the ``top_n`` highest cosine scores of the enrolment embedding against a cohort,
  μ_t, σ_t likewise for the test embedding (``as_norm``, ``as_norm_trials``).

Pure, vectorised numpy functions; scores and labels are validated in one place (``_check_trials``).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["eer", "min_dcf", "det_curve", "error_rates", "cosine_scores", "score_trials", "fuse_scores", "as_norm",
           "cohort_stats", "used_cohort_stats", "trial_rows", "as_norm_trials"]


def _check_trials(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate a score list once; return ``(scores float64 (T,), labels bool (T,))``.

    Raises ValueError on: empty input, length mismatch, NaN or infinite scores, labels outside
    {0, 1}, and a single class (EER and minDCF need both targets and non-targets).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.size == 0 and y.size == 0:
        raise ValueError("empty score list: no trials to evaluate")
    if s.size != y.size:
        raise ValueError(f"length mismatch: {s.size} scores but {y.size} labels")
    finite = np.isfinite(s)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"scores must be finite: {int((~finite).sum())} are NaN or infinite, "
                         f"the first is trial {bad} ({s[bad]})")
    ok = np.isin(y, [0, 1])
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        raise ValueError(f"labels must be 0 (non-target) or 1 (target): trial {bad} has label {y[bad]!r}")
    y = y.astype(bool)
    n_tar = int(y.sum())
    if n_tar == 0 or n_tar == y.size:
        kind = "target" if n_tar else "non-target"
        raise ValueError(f"labels hold a single class (all {y.size} trials are {kind}); "
                         "EER and minDCF need targets and non-targets")
    return s, y


def error_rates(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at every distinct score, then at +inf (reject all).

    Parameters
    ----------
    scores : (T,) float, higher means "same speaker".
    labels : (T,) 0/1, 1 for a target trial.

    Returns
    -------
    p_fa : (K + 1,) float64, P(score >= t | non-target); falls from 1 to 0.
    p_miss : (K + 1,) float64, P(score < t | target); rises from 0 to 1.
    thresholds : (K + 1,) float64, the K distinct scores ascending, then ``inf``.
    """
    s, y = _check_trials(scores, labels)
    # np.sort is several times faster than argsort + gather; targets are counted by searchsorted
    ordered = np.sort(s)  # (T,)
    first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # (K,) first slot of each distinct score
    th = ordered[first]  # (K,) distinct scores, ascending
    tar_sorted = np.sort(s[y])
    n_tar = tar_sorted.size
    n_non = s.size - n_tar
    tar_at = np.r_[np.searchsorted(tar_sorted, th, side="left"), n_tar]  # targets rejected (score < t)
    non_at = np.r_[first - tar_at[:-1], n_non]  # non-targets rejected: all below t minus the targets
    p_miss = tar_at / n_tar
    p_fa = (n_non - non_at) / n_non  # a count over n_non, exact to the last bit (not 1 − rejected)
    return p_fa, p_miss, np.r_[th, np.inf]


def eer(scores, labels) -> tuple[float, float]:
    """Equal error rate and the threshold where it is reached.

    Convention: D(t) = P_miss(t) − P_fa(t) rises from −1 (accept all) to +1 (reject all). Let i be
    the first threshold with D ≥ 0 and j = i − 1. If D(i) = 0 the EER is P_miss(i). Otherwise the
    two operating points are joined by a straight segment (both rates and the threshold
    interpolated with the same weight w = −D(j) / (D(i) − D(j))) and the EER is the common value
    of P_miss and P_fa on it. This is the crossing of the piecewise-linear ROC with the line
    P_miss = P_fa, i.e. what ``brentq`` on ``interp1d(fpr, tpr)`` finds, without its ambiguity on
    vertical segments. When the crossing lies past the highest score (reject all) the threshold
    reported is the highest score.

    Parameters
    ----------
    scores : (T,) float, finite.
    labels : (T,) 0/1, both classes present.

    Returns
    -------
    eer : float, a fraction in [0, 1].
    threshold : float, accept when ``score >= threshold``.
    """
    p_fa, p_miss, th = error_rates(scores, labels)
    diff = p_miss - p_fa  # (K + 1,) non-decreasing, diff[0] = -1, diff[-1] = +1
    i = int(np.searchsorted(diff, 0.0, side="left"))  # first diff >= 0
    if diff[i] == 0:
        return float(p_miss[i]), float(th[i])
    j = i - 1  # i >= 1 because diff[0] = -1
    w = -diff[j] / (diff[i] - diff[j])
    e = p_miss[j] + w * (p_miss[i] - p_miss[j])
    hi = th[i] if np.isfinite(th[i]) else th[j]
    return float(e), float(th[j] + w * (hi - th[j]))


def min_dcf(scores, labels, *, p_target: float = 0.01, c_miss: float = 1.0,
            c_fa: float = 1.0) -> tuple[float, float]:
    """Minimum normalised detection cost (NIST 2016 SRE evaluation plan, Eqs. (2)-(4)).

    ``C_det(t) = c_miss · P_miss(t) · p_target + c_fa · P_fa(t) · (1 − p_target)`` (Eq. 2), divided
    by ``C_default = min(c_miss · p_target, c_fa · (1 − p_target))`` (Eqs. 3-4, the cost of the
    better of accepting or rejecting every trial) and minimised over every threshold, accept-all
    (the lowest score) and reject-all (``inf``) included, so the result lies in [0, 1].

    Parameters
    ----------
    scores : (T,) float, finite.
    labels : (T,) 0/1, both classes present.
    p_target : prior probability of a target trial, in (0, 1).
    c_miss, c_fa : positive costs of a miss and of a false alarm.

    Returns
    -------
    min_dcf : float, in [0, 1].
    threshold : float, the lowest threshold reaching it (``inf`` when rejecting all is best).
    """
    if not (0.0 < p_target < 1.0):
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if not (c_miss > 0 and c_fa > 0):
        raise ValueError(f"c_miss and c_fa must be positive, got {c_miss} and {c_fa}")
    p_fa, p_miss, th = error_rates(scores, labels)
    c_det = c_miss * p_miss * p_target + c_fa * p_fa * (1.0 - p_target)  # (K + 1,) Eq. 2
    c_default = min(c_miss * p_target, c_fa * (1.0 - p_target))
    i = int(np.argmin(c_det))
    return float(c_det[i] / c_default), float(th[i])


def det_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of the DET curve, for plots (on probit axes).

    Returns
    -------
    p_fa : (K + 1,) non-increasing, from 1 to 0.
    p_miss : (K + 1,) non-decreasing, from 0 to 1.
    thresholds : (K + 1,) strictly increasing distinct scores, then ``inf``.
    """
    return error_rates(scores, labels)


def _unit_rows(x, name: str) -> np.ndarray:
    """(N, D) rows scaled to unit L2 norm (a zero row stays zero, so its cosines are 0).

    Floating inputs keep their precision (float32 stays float32); anything else becomes float64.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)  # (N, 1)
    return x / np.maximum(norm, np.finfo(x.dtype).tiny)


def cosine_scores(enroll, test) -> np.ndarray:
    """Row-wise cosine similarity.

    Parameters
    ----------
    enroll, test : (T, D) arrays.

    Returns
    -------
    (T,) float64, ``cos(enroll[t], test[t])`` (0 where a row is all zeros).
    """
    a, b = _unit_rows(enroll, "enroll"), _unit_rows(test, "test")
    if a.shape != b.shape:
        raise ValueError(f"enroll and test shapes differ: {a.shape} vs {b.shape}")
    return np.einsum("td,td->t", a, b).astype(np.float64)


def _check_columns(trials: pd.DataFrame) -> None:
    absent = [c for c in ("label", "enroll", "test") if c not in trials.columns]
    if absent:
        raise ValueError(f"trials lack column(s) {absent}; expected label, enroll, test")


def score_trials(embeddings, index: Mapping[str, int], trials: pd.DataFrame, *,
                 chunk: int = 8192) -> np.ndarray:
    """Cosine score of every trial of a list.

    The embeddings are L2-normalised once; the trials are scored ``chunk`` at a time (a row-wise
    dot product of gathered rows), so memory stays at about ``2 · chunk · D`` values for any
    number of trials.

    Parameters
    ----------
    embeddings : (N, D) float; precision is kept (float32 in, float32 arithmetic).
    index : key -> row of ``embeddings``, keys like ``"id10001/1zcIwhmdeo4/00001.wav"``.
    trials : DataFrame with columns ``label``, ``enroll``, ``test`` (T rows).
    chunk : trials per block.

    Returns
    -------
    (T,) float64 scores, in the order of ``trials``.

    Raises
    ------
    KeyError
        naming the first trial key (in trial order, enroll before test) that is not in ``index``,
        and how many distinct keys are missing.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    _check_columns(trials)
    emb = _unit_rows(embeddings, "embeddings")  # (N, D)
    keys = pd.Index(list(index.keys()))
    rows = np.fromiter(index.values(), dtype=np.int64, count=len(index))
    out_of_range = (rows < 0) | (rows >= emb.shape[0])
    if out_of_range.any():
        k = int(np.flatnonzero(out_of_range)[0])
        raise ValueError(f"index maps {keys[k]!r} to row {rows[k]}, outside the {emb.shape[0]} embeddings")
    # the Series themselves, not .to_numpy(): pandas' string columns are looked up without a copy
    pos_e, pos_t = keys.get_indexer(trials["enroll"]), keys.get_indexer(trials["test"])  # (T,) -1 = missing
    miss_e, miss_t = pos_e < 0, pos_t < 0
    if miss_e.any() or miss_t.any():
        enroll, test = trials["enroll"].to_numpy(), trials["test"].to_numpy()
        t = int(np.flatnonzero(miss_e | miss_t)[0])
        key = enroll[t] if miss_e[t] else test[t]
        n_keys = pd.unique(np.concatenate([enroll[miss_e], test[miss_t]])).size
        raise KeyError(f"trial {t}: key {key!r} has no embedding; {n_keys} distinct key(s) missing, "
                       f"named by {int((miss_e | miss_t).sum())} of {len(trials)} trials")
    rows_e, rows_t = rows[pos_e], rows[pos_t]  # (T,)
    out = np.empty(len(trials), dtype=np.float64)
    for start in range(0, len(trials), chunk):
        stop = start + chunk
        # (c, D) x (c, D) -> (c,): bounded temporaries whatever T is
        out[start:stop] = np.einsum("td,td->t", emb[rows_e[start:stop]], emb[rows_t[start:stop]])
    return out


def fuse_scores(audio, visual) -> np.ndarray:
    """Audio-visual score: the mean of the audio and the visual cosine score of each trial.

    Parameters
    ----------
    audio, visual : (T,) scores of the same trials in the same order.

    Returns
    -------
    (T,) float64.
    """
    a, v = np.asarray(audio, dtype=np.float64), np.asarray(visual, dtype=np.float64)
    if a.ndim != 1 or a.shape != v.shape:
        raise ValueError(f"audio and visual scores must be 1-D of equal length, got {a.shape} and {v.shape}")
    return (a + v) / 2.0


def cohort_stats(x, cohort, *, top_n: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation of each row's ``top_n`` highest cosine scores against
    the cohort (all of it when ``top_n`` is larger than the cohort).

    Parameters
    ----------
    x : (N, D) embeddings; cohort : (C, D) embeddings; chunk : rows of ``x`` scored at a time
        (memory ``chunk · C``).

    Returns
    -------
    ``(mu (N,), sigma (N,))`` float64.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be positive, got {top_n}")
    a, c = _unit_rows(x, "embeddings").astype(np.float64), _unit_rows(cohort, "cohort").astype(np.float64)
    if a.shape[1] != c.shape[1]:
        raise ValueError(f"embeddings have {a.shape[1]} dimensions, the cohort {c.shape[1]}")
    if c.shape[0] == 0:
        raise ValueError("the cohort is empty")
    n = min(int(top_n), c.shape[0])
    mu, sd = np.empty(a.shape[0]), np.empty(a.shape[0])
    for start in range(0, a.shape[0], chunk):
        s = a[start:start + chunk] @ c.T  # (b, C)
        top = np.partition(s, s.shape[1] - n, axis=1)[:, s.shape[1] - n:]  # (b, n): the n highest
        mu[start:start + chunk], sd[start:start + chunk] = top.mean(axis=1), top.std(axis=1)  # ddof 0
    return mu, sd


def _normalise(s, mu_e, sd_e, mu_t, sd_t) -> np.ndarray:
    tiny = np.finfo(np.float64).tiny  # a cohort of identical scores (σ = 0) must not divide by 0
    return 0.5 * ((s - mu_e) / np.maximum(sd_e, tiny) + (s - mu_t) / np.maximum(sd_t, tiny))


def as_norm(enroll, test, cohort, *, top_n: int) -> np.ndarray:
    """AS-norm scores of the pairs (enroll[i], test[i]).

    Parameters
    ----------
    enroll, test : (T, D) embeddings of the pairs; cohort : (C, D) cohort embeddings.
    top_n : cohort scores per side that set μ and σ (the whole cohort when larger than C).

    Returns
    -------
    (T,) float64: ``½((s − μ_e)/σ_e + (s − μ_t)/σ_t)``, s the pair's cosine score.
    """
    s = cosine_scores(enroll, test)
    return _normalise(s, *cohort_stats(enroll, cohort, top_n=top_n), *cohort_stats(test, cohort, top_n=top_n))


def trial_rows(index: Mapping[str, int], trials: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``embeddings`` of each trial's enrolment and test keys: ``(enroll (T,), test (T,))`` int64.
    Keys are checked by :func:`score_trials` (call it first: it names a missing key)."""
    keys = pd.Index(list(index.keys()))
    rows = np.fromiter(index.values(), dtype=np.int64, count=len(index))
    return rows[keys.get_indexer(trials["enroll"])], rows[keys.get_indexer(trials["test"])]


def used_cohort_stats(embeddings, index: Mapping[str, int], trial_lists, cohort, *,
                      top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cohort_stats` of the rows of ``embeddings`` that some trial of ``trial_lists`` names, computed
    once for all the lists (NaN for the other rows).

    VoxCeleb1's O, E and H lists share most of their utterances: one pass over the union costs a third of
    three passes, and a list naming few utterances (O: 4,708 of 153,516) costs only those rows.

    Parameters
    ----------
    embeddings : (N, D); index : key -> row; trial_lists : iterable of trial DataFrames (``enroll``, ``test``);
    cohort : (C, D); top_n : as :func:`cohort_stats`.

    Returns
    -------
    ``(mu (N,), sigma (N,))`` float64, to hand to :func:`as_norm_trials` as ``stats``.
    """
    x = np.asarray(embeddings)
    used = np.zeros(x.shape[0], dtype=bool)
    for trials in trial_lists:
        _check_columns(trials)
        for rows in trial_rows(index, trials):
            used[rows[rows >= 0]] = True
    mu, sd = np.full(x.shape[0], np.nan), np.full(x.shape[0], np.nan)
    if used.any():
        mu[used], sd[used] = cohort_stats(x[used], cohort, top_n=top_n)
    return mu, sd


def as_norm_trials(embeddings, index: Mapping[str, int], trials: pd.DataFrame, cohort, *,
                   top_n: int, stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """AS-norm scores of a trial list: :func:`as_norm` of each trial's pair, with each utterance's
    cohort statistics computed once (a VoxCeleb list names each utterance in many trials).

    Parameters and errors as :func:`score_trials`, plus ``cohort`` (C, D), ``top_n`` and ``stats``: the
    ``(mu (N,), sigma (N,))`` of every row from :func:`used_cohort_stats` over several lists (then ``cohort``
    and ``top_n`` are not read again), or None to compute them here for this list's rows.
    """
    s = score_trials(embeddings, index, trials)  # (T,), checks the keys
    mu, sd = used_cohort_stats(embeddings, index, [trials], cohort, top_n=top_n) if stats is None else stats
    re, rt = trial_rows(index, trials)
    return _normalise(s, mu[re], sd[re], mu[rt], sd[rt])
