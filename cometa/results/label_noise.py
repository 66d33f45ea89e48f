"""Label-noise diagnosis from a strategy's pseudo labels, round by round (ground truth known).

Tables, not figures (the figures are :func:`cometa.results.figures.sample_history`, ``noise_breakdown`` and
``label_transitions``; the per-utterance history is :func:`cometa.results.figures.label_history`):

- :func:`merged_and_split`: true speakers merged into one cluster, speakers split over several;
- :func:`identity_events`: the same for every round, one row per (round, speaker, event), so that
  one can read which identities merge or split and in which round;
- :func:`wrong_in_both`: the utterances whose audio *and* visual pseudo labels are wrong in a round
  (the case the paper says Co-teaching+ neglects), with whom each modality confused them;
- :func:`label_issue_ranking` and :func:`precision_recall`: a round's utterances sorted by a
  label-issue score (``label_issues.parquet``, :mod:`cometa.pipeline.analysis`), most suspect first,
  and how precisely each prefix of that order finds the wrong labels.

``labels`` tables are a round's ``labels.parquet``: one row per utterance with ``key``, ``speaker``
(the true identity) and one cluster id column per view (``audio``, ``visual``, ``joint``,
``consensus``); an id of -1 means dropped by the ensemble vote. A cluster's speaker is its majority
speaker (the purity convention of :func:`cometa.results.figures.label_correct`).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from cometa.results.figures import label_correct, majority_speaker

__all__ = ["merged_and_split", "identity_events", "wrong_in_both", "label_issue_ranking", "precision_recall"]


def _shares(labels: pd.DataFrame, column: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(counts, share of each cluster per speaker, share of each speaker per cluster): (clusters, speakers)."""
    lab = labels[labels[column] >= 0]
    ct = pd.crosstab(lab[column], lab["speaker"])  # (clusters, speakers) utterance counts
    return ct, ct.div(ct.sum(axis=1), axis=0), ct.div(ct.sum(axis=0), axis=1)


def merged_and_split(labels: pd.DataFrame, column: str = "consensus", *, share: float = 0.2,
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """True speakers merged into one cluster, and speakers split over several clusters.

    A cluster is *merged* when two or more speakers each hold at least ``share`` of its members; a
    speaker is *split* when two or more clusters each hold at least ``share`` of its utterances
    (dropped utterances, id -1, are left out).

    Returns
    -------
    (merged, split) : ``merged`` has columns ``cluster, size, speakers`` (e.g. ``"a (50%), b (50%)"``),
        ``split`` has ``speaker, utterances, clusters``; each largest first.
    """
    ct, by_cluster, by_speaker = _shares(labels, column)

    def describe(shares: pd.Series) -> str:
        big = shares[shares >= share].sort_values(ascending=False)
        return ", ".join(f"{k} ({v:.0%})" for k, v in big.items())

    m_rows = [{"cluster": int(c), "size": int(ct.loc[c].sum()), "speakers": describe(by_cluster.loc[c])}
              for c in ct.index if (by_cluster.loc[c] >= share).sum() >= 2]
    s_rows = [{"speaker": s, "utterances": int(ct[s].sum()), "clusters": describe(by_speaker[s])}
              for s in ct.columns if (by_speaker[s] >= share).sum() >= 2]
    merged = pd.DataFrame(m_rows, columns=["cluster", "size", "speakers"]).sort_values("size", ascending=False)
    split = pd.DataFrame(s_rows, columns=["speaker", "utterances", "clusters"]).sort_values("utterances",
                                                                                            ascending=False)
    return merged.reset_index(drop=True), split.reset_index(drop=True)


def identity_events(labels_by_round: Mapping[int, pd.DataFrame], column: str = "consensus", *,
                    share: float = 0.2) -> pd.DataFrame:
    """Which true identities are merged or split, round by round.

    Parameters
    ----------
    labels_by_round : ``{round: labels}``, one strategy's rounds.
    column : the labelling looked at (a view, or ``consensus``).
    share : the least share of a cluster (merge) or of a speaker's utterances (split) that counts,
        as in :func:`merged_and_split`.

    Returns
    -------
    DataFrame with one row per (round, speaker, event) and columns ``round``, ``speaker``, ``event``
    (``"merged"``: the speaker holds ``>= share`` of a cluster in which another speaker does too;
    ``"split"``: ``>= share`` of the speaker's utterances fall in each of two or more clusters),
    ``clusters`` (the cluster ids involved, sorted), ``with`` (for a merge, the other speakers of those
    clusters, sorted; empty for a split) and ``first`` (True in the first round the speaker shows that
    event). Sorted by round, event, speaker.
    """
    rows = []
    for r in sorted(labels_by_round):
        _, by_cluster, by_speaker = _shares(labels_by_round[r], column)
        big = by_cluster >= share  # (clusters, speakers): the speaker holds a real part of the cluster
        for c in by_cluster.index[big.sum(axis=1) >= 2]:
            members = sorted(big.columns[big.loc[c]])
            for s in members:
                rows.append({"round": int(r), "speaker": s, "event": "merged", "clusters": (int(c),),
                             "with": tuple(m for m in members if m != s)})
        spread = by_speaker >= share  # (clusters, speakers): the cluster holds a real part of the speaker
        for s in by_speaker.columns[spread.sum(axis=0) >= 2]:
            rows.append({"round": int(r), "speaker": s, "event": "split",
                         "clusters": tuple(sorted(int(c) for c in spread.index[spread[s]])), "with": ()})
    out = pd.DataFrame(rows, columns=["round", "speaker", "event", "clusters", "with"])
    if out.empty:
        return out.assign(first=pd.Series(dtype=bool))
    # a speaker merged in two clusters of one round has two rows: fold them into one
    out = (out.groupby(["round", "event", "speaker"], sort=True, as_index=False)
           .agg(clusters=("clusters", lambda t: tuple(sorted({c for x in t for c in x}))),
                with_=("with", lambda t: tuple(sorted({m for x in t for m in x}))))
           .rename(columns={"with_": "with"}))
    out["first"] = out["round"] == out.groupby(["speaker", "event"])["round"].transform("min")
    return out[["round", "speaker", "event", "clusters", "with", "first"]].reset_index(drop=True)


def wrong_in_both(labels: pd.DataFrame) -> pd.DataFrame:
    """The utterances of one round whose audio and visual pseudo labels are both wrong.

    Returns
    -------
    DataFrame indexed by ``key`` with ``speaker``, ``audio`` and ``visual`` (the cluster ids),
    ``heard_as`` and ``seen_as`` (the majority speakers of those clusters: whom each modality took the
    utterance for), ``same_mistake`` (both modalities took it for the same wrong speaker) and
    ``consensus_right`` (1.0 / 0.0, NaN when dropped); sorted by speaker then key.
    """
    lab = labels.set_index("key")
    wrong = (label_correct(lab, "audio") == 0) & (label_correct(lab, "visual") == 0)  # NaN (dropped) is not wrong
    sel = lab[wrong]
    heard = sel["audio"].map(majority_speaker(lab, "audio"))
    seen = sel["visual"].map(majority_speaker(lab, "visual"))
    out = pd.DataFrame({"speaker": sel["speaker"], "audio": sel["audio"], "visual": sel["visual"],
                        "heard_as": heard, "seen_as": seen, "same_mistake": np.asarray(heard == seen, bool)},
                       index=sel.index)
    if "consensus" in lab:
        out["consensus_right"] = label_correct(lab, "consensus")[wrong]
    return out.sort_index().sort_values("speaker", kind="stable")


def label_issue_ranking(issues: pd.DataFrame, *, view: str = "joint", score: str = "self_confidence") -> pd.DataFrame:
    """One view's utterances sorted by a label-issue score, lowest (most suspect) first.

    ``issues`` is a round's ``label_issues.parquet`` (``key, view, label, wrong, flagged`` and one
    column per score). Returns columns ``key, label, score, wrong, flagged`` (ties keep key order).
    """
    if issues.empty or score not in issues:
        return pd.DataFrame(columns=["key", "label", "score", "wrong", "flagged"])
    part = issues[issues["view"] == view]
    out = pd.DataFrame({"key": part["key"], "label": part["label"], "score": part[score],
                        "wrong": part["wrong"].astype(bool), "flagged": part["flagged"].astype(bool)})
    return out.sort_values(["score", "key"], kind="stable").reset_index(drop=True)


def precision_recall(ranking: pd.DataFrame, *, max_points: int | None = None) -> pd.DataFrame:
    """Precision and recall of the wrong labels among the first k of a :func:`label_issue_ranking`,
    for k = 1..N (``precision = wrong in the first k / k``, ``recall = wrong in the first k / all
    wrong``; the scores tied at a cut are counted as they are ordered). Columns ``k, score,
    precision, recall``; empty when no label is wrong. ``max_points``: at most that many rows, at k
    evenly spaced from 1 to N (both kept), so that a curve over a million utterances draws light."""
    wrong = ranking["wrong"].to_numpy(dtype=bool)
    if not wrong.any():
        return pd.DataFrame(columns=["k", "score", "precision", "recall"])
    hits = np.cumsum(wrong)
    k = np.arange(1, wrong.size + 1)
    rows: slice | np.ndarray = slice(None)
    if max_points is not None and wrong.size > max_points:
        rows = np.unique(np.linspace(0, wrong.size - 1, max(int(max_points), 2)).round().astype(np.int64))
    return pd.DataFrame({"k": k[rows], "score": ranking["score"].to_numpy()[rows], "precision": (hits / k)[rows],
                         "recall": (hits / wrong.sum())[rows]})
