"""Label-noise tables (cometa.results.label_noise) on hand-built labellings with known merges, splits and
mistakes in both modalities."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cometa.results import label_noise


def _labels(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["key", "speaker", "audio", "visual", "consensus"])


def test_identity_events_on_known_labels():
    # round 1: a and b share cluster 0 (merged); c is split over 1 and 2; d alone in 3
    r1 = _labels([("a1", "a", 0, 0, 0), ("a2", "a", 0, 0, 0), ("b1", "b", 0, 0, 0), ("b2", "b", 0, 0, 0),
                  ("c1", "c", 1, 1, 1), ("c2", "c", 1, 1, 1), ("c3", "c", 2, 2, 2), ("c4", "c", 2, 2, 2),
                  ("d1", "d", 3, 3, 3), ("d2", "d", 3, 3, -1)])
    # round 2: a and b apart; c whole; c and d merged in 5
    r2 = r1.assign(consensus=[0, 0, 4, 4, 5, 5, 5, 5, 5, 5])
    ev = label_noise.identity_events({1: r1, 2: r2})
    rows = {(r["round"], r["speaker"], r["event"]): (r["clusters"], r["with"], r["first"]) for _, r in ev.iterrows()}
    assert rows == {(1, "a", "merged"): ((0,), ("b",), True), (1, "b", "merged"): ((0,), ("a",), True),
                    (1, "c", "split"): ((1, 2), (), True),
                    (2, "c", "merged"): ((5,), ("d",), True), (2, "d", "merged"): ((5,), ("c",), True)}
    merged, split = label_noise.merged_and_split(r1)
    assert merged["cluster"].tolist() == [0] and split["speaker"].tolist() == ["c"]
    assert label_noise.identity_events({1: r1.assign(consensus=[0, 0, 1, 1, 2, 2, 2, 2, 3, 3])}).empty


def test_wrong_in_both_on_known_labels():
    # audio clusters: 0 = a (a1, a2, b1), 1 = b (b2, b3); visual: 0 = a (a1, a2), 1 = b (b1, b2, b3, a3)
    lab = _labels([("a1", "a", 0, 0, 0), ("a2", "a", 0, 0, 0), ("a3", "a", 1, 1, 1), ("b1", "b", 0, 0, 1),
                   ("b2", "b", 1, 1, 1), ("b3", "b", 1, 1, 1), ("b4", "b", 0, -1, 1)])
    both = label_noise.wrong_in_both(lab)
    # a3: heard in b's audio cluster, seen in b's visual cluster; b1: both in a's; b4 dropped visually
    assert both.index.tolist() == ["a3", "b1"]
    assert both.loc["a3", ["heard_as", "seen_as"]].tolist() == ["b", "b"] and both.loc["a3", "same_mistake"]
    assert both.loc["b1", ["heard_as", "seen_as"]].tolist() == ["a", "a"]
    assert both["consensus_right"].tolist() == [0.0, 1.0]  # consensus: a3 with the b's, b1 with them too


def test_label_issue_ranking_and_precision_recall_by_hand():
    issues = pd.DataFrame({"key": ["u1", "u2", "u3", "u4", "u5"] * 2, "view": ["joint"] * 5 + ["audio"] * 5,
                           "label": [0, 0, 1, 1, 1] * 2, "wrong": [False, True, False, True, False] * 2,
                           "flagged": [False, True, False, False, False] * 2,
                           "self_confidence": [0.9, 0.1, 0.5, 0.3, 0.7, 0.0, 0.0, 0.0, 0.0, 0.0]})
    rank = label_noise.label_issue_ranking(issues, view="joint")
    assert rank["key"].tolist() == ["u2", "u4", "u3", "u5", "u1"]  # lowest self-confidence first
    pr = label_noise.precision_recall(rank)
    # wrong: u2, u4 at ranks 1 and 2 -> precision 1, 1, 2/3, 2/4, 2/5; recall 1/2, 1, 1, 1, 1
    assert pr["precision"].tolist() == pytest.approx([1, 1, 2 / 3, 0.5, 0.4])
    assert pr["recall"].tolist() == pytest.approx([0.5, 1, 1, 1, 1])
    assert label_noise.precision_recall(rank.assign(wrong=False)).empty
    light = label_noise.precision_recall(rank, max_points=3)  # k = 1, 3, 5 of the full curve
    assert light["k"].tolist() == [1, 3, 5] and light["precision"].tolist() == pytest.approx([1, 2 / 3, 0.4])
    assert light["recall"].tolist() == pytest.approx([0.5, 1, 1])
    assert label_noise.precision_recall(rank, max_points=10).equals(pr)
    assert label_noise.label_issue_ranking(issues, score="missing").empty


def _rounds(seed: int, n: int = 400, rounds: int = 4) -> dict[int, pd.DataFrame]:
    """Rounds of one run: the same utterances, few speakers and small clusters (ties), some dropped."""
    rng = np.random.default_rng(seed)
    keys, speaker = [f"s{i % 7}/v{i % 3}/{i:04d}.wav" for i in range(n)], [f"s{i % 7}" for i in range(n)]
    out = {}
    for r in range(1, rounds + 1):
        views = {v: rng.integers(-1 if v in ("visual", "consensus") else 0, 60, n) for v in
                 ("audio", "visual", "joint", "consensus")}
        out[r] = pd.DataFrame({"key": keys, "speaker": speaker, **views})
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_label_history_of_rounds_with_the_same_rows_equals_the_aligned_history(seed, monkeypatch):
    from cometa.results import figures as F

    rounds = _rounds(seed)
    aligned = F._label_history_aligned(rounds, ("audio", "visual", "consensus"))
    monkeypatch.setattr(F, "_label_history_aligned", lambda *a: pytest.fail("the coded path should run"))
    coded = F.label_history(rounds)
    pd.testing.assert_frame_equal(coded, aligned, check_dtype=False)
    assert coded["flips"].sum() > 0 and coded["wrong_both"].sum() > 0 and coded["r2_visual"].isna().any()


def test_label_history_of_rounds_in_another_order_is_aligned_on_keys(monkeypatch):
    from cometa.results import figures as F

    rng = np.random.default_rng(2)  # clusters = speakers, 10% elsewhere: clear majorities, no tie to order
    rounds = {}
    for r, t in _rounds(2).items():
        code = t["speaker"].str[1:].astype(int).to_numpy()
        ids = {v: np.where(rng.random(len(t)) < 0.1, rng.integers(0, 7, len(t)), code) for v in t.columns[2:]}
        rounds[r] = t.assign(**ids)
    want = F.label_history(rounds)
    shuffled = {r: t.sample(frac=1.0, random_state=r) if r == 3 else t for r, t in rounds.items()}
    monkeypatch.setattr(F, "_label_history_coded", lambda *a: pytest.fail("rows differ: the aligned path"))
    got = F.label_history(shuffled)
    pd.testing.assert_frame_equal(got.loc[want.index], want, check_dtype=False)


def test_purity_states_by_hand_at_the_bin_edges():
    from cometa.results import figures as F

    # cluster 0: a a b b (purity 0.5), cluster 1: c c c c d (0.8), cluster 2: e e (1.0), one dropped
    labels = pd.DataFrame({"key": [f"u{i}" for i in range(12)], "speaker": list("aabbccccdeef"),
                           "consensus": [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, -1]})
    got = F._states(labels, "purity", 12)
    assert got.index.tolist() == labels["key"].tolist()
    assert got.tolist() == ["purity 0.00–0.50"] * 4 + ["purity 0.50–0.80"] * 5 + ["purity 0.95–1.00"] * 2 + ["dropped"]


def test_label_transitions_of_the_same_rows_equal_those_aligned_on_keys():
    from cometa.results import figures as F

    rounds = _rounds(3)
    shuffled = {r: t.sample(frac=1.0, random_state=r) if r == 2 else t for r, t in rounds.items()}
    same, aligned = (F.label_transitions(x, mode="purity").data[0] for x in (rounds, shuffled))
    assert list(same.node.label) == list(aligned.node.label) and len(same.link.value) > 4
    assert (list(same.link.source), list(same.link.target), list(same.link.value)) == \
        (list(aligned.link.source), list(aligned.link.target), list(aligned.link.value))
    assert sum(v for s, v in zip(same.link.source, same.link.value) if same.node.label[s].startswith("R1 ")) == 400
