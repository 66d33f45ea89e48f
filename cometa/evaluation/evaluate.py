"""Verification evaluation: embeddings -> cosine scores of trial lists -> EER / minDCF per modality."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cometa.config import ConfigError
from cometa.config.sections import EvalConfig  # noqa: F401 (re-exported)
from cometa.evaluation.metrics import as_norm_trials, eer, fuse_scores, min_dcf, score_trials, used_cohort_stats

MODALITIES = ("audio", "visual", "fused")


def evaluate_embeddings(
    keys: list[str],
    embeddings: dict[str, np.ndarray],
    trials: dict[str, pd.DataFrame],
    *,
    p_targets: Sequence[float] = (0.01, 0.05),
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Cosine-score every trial list with every modality; EER and minDCF per (list, modality).

    Parameters
    ----------
    keys : (N,) utterance keys of the test embeddings (``id10001/<video>/00001.wav``).
    embeddings : ``{"audio": (N, D), "visual": (N, D')}``; a missing modality is skipped, and
        "fused" (mean of the audio and visual cosine scores) needs both.
    trials : short list name ("O", "E", "H") -> DataFrame(label, enroll, test).

    Returns
    -------
    metrics : long table with columns list, modality, name, value (``eer`` as a fraction,
        ``min_dcf_<p>``).
    scores : ``{f"{list}_{modality}": scores, f"{list}_labels": labels}`` for DET curves.
    """
    index = {k: i for i, k in enumerate(keys)}
    rows, scores = [], {}
    for name, tr in trials.items():
        labels = tr["label"].to_numpy()
        scores[f"{name}_labels"] = labels.astype(np.int8)
        per_mod = {m: score_trials(e, index, tr) for m, e in embeddings.items()}
        if "audio" in per_mod and "visual" in per_mod:
            per_mod["fused"] = fuse_scores(per_mod["audio"], per_mod["visual"])
        for mod, s in per_mod.items():
            scores[f"{name}_{mod}"] = s.astype(np.float32)
            # a face score is NaN where an utterance has no face frames (missing_faces: audio_only):
            # such trials are left out of that modality's metrics, and their number is logged
            ok = np.isfinite(s)
            if not ok.all():
                rows.append((name, mod, "trials_unscored", float((~ok).sum())))
                if ok.sum() < 2 or len(np.unique(labels[ok])) < 2:
                    continue
            e, _ = eer(s[ok], labels[ok])
            rows.append((name, mod, "eer", e))
            for p in p_targets:
                rows.append((name, mod, f"min_dcf_{p:g}", min_dcf(s[ok], labels[ok], p_target=p)[0]))
    return pd.DataFrame(rows, columns=["list", "modality", "name", "value"]), scores


class CohortOverlapError(ConfigError):
    """The AS-norm cohort (training utterances) holds speakers of the test set; the message names them."""


def check_cohort_speakers(cohort_speakers: Sequence[str], test_speakers: Sequence[str], *, shown: int = 10) -> None:
    """Refuse an AS-norm cohort that shares speakers with the test set.

    A test speaker in the cohort puts the enrolment's own voice among its top-n impostor scores,
    which inflates μ and lowers every target score of that speaker: the normalisation assumes
    impostors only. The embedded corpus draws disjoint speakers; a user-supplied one may not.

    Parameters
    ----------
    cohort_speakers : speaker of every utterance the cohort is drawn from (the training set).
    test_speakers : speaker of every test utterance.
    shown : at most this many shared speakers are named (sorted), then how many more.

    Raises
    ------
    CohortOverlapError
        naming the shared speakers and the ``evaluation.as_norm`` key.
    """
    shared = sorted(set(map(str, cohort_speakers)) & set(map(str, test_speakers)))
    if shared:
        more = f" and {len(shared) - shown} more" if len(shared) > shown else ""
        raise CohortOverlapError(
            f"evaluation.as_norm: the cohort (training utterances) and the test set share {len(shared)} "
            f"speaker(s): {', '.join(shared[:shown])}{more}; give the corpus disjoint train and test speakers, "
            f"or set evaluation.as_norm.enabled: false")


def evaluate_as_norm(
    keys: list[str],
    embeddings: dict[str, np.ndarray],
    trials: dict[str, pd.DataFrame],
    cohorts: dict[str, np.ndarray],
    *,
    top_n: int,
    p_targets: Sequence[float] = (0.01, 0.05),
) -> pd.DataFrame:
    """:func:`evaluate_embeddings` with AS-norm scores: ``eer_asnorm`` and ``min_dcf_<p>_asnorm`` per
    (list, modality); "fused" is the mean of the normalised audio and visual scores.

    ``cohorts`` : modality -> (C, D) cohort embeddings (rows with a non-finite value are dropped);
    a test utterance without a face (NaN embedding) leaves its visual trials unscored, as there.
    """
    index = {k: i for i, k in enumerate(keys)}
    stats = {}  # modality -> (mu, sigma) of every utterance some list names: one cohort pass for all lists
    for m, e in embeddings.items():
        cohort = np.asarray(cohorts[m])
        stats[m] = used_cohort_stats(e, index, trials.values(), cohort[np.isfinite(cohort).all(axis=1)], top_n=top_n)
    rows = []
    for name, tr in trials.items():
        labels = tr["label"].to_numpy()
        per_mod = {}
        for m, e in embeddings.items():
            per_mod[m] = as_norm_trials(e, index, tr, None, top_n=top_n, stats=stats[m])
        if "audio" in per_mod and "visual" in per_mod:
            per_mod["fused"] = fuse_scores(per_mod["audio"], per_mod["visual"])
        for mod, s in per_mod.items():
            ok = np.isfinite(s)
            if ok.sum() < 2 or len(np.unique(labels[ok])) < 2:
                continue
            rows.append((name, mod, "eer_asnorm", eer(s[ok], labels[ok])[0]))
            for p in p_targets:
                rows.append((name, mod, f"min_dcf_{p:g}_asnorm", min_dcf(s[ok], labels[ok], p_target=p)[0]))
    return pd.DataFrame(rows, columns=["list", "modality", "name", "value"])


def log_metrics(store, metrics: pd.DataFrame, *, strategy: str | None, round: int) -> None:
    """Write evaluation metrics into the run store (stage ``eval/<list>``)."""
    store.log_many([
        dict(name=r.name, value=float(r.value), strategy=strategy, stage=f"eval/{r.list}", round=round,
             modality=r.modality)
        for r in metrics.itertuples(index=False)
    ])
