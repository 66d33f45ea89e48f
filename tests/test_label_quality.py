"""Label-quality measures against hand-worked cases and scikit-learn (which the module does not use)."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from cometa.core.label_quality import (
    ari,
    cluster_majority,
    cluster_sizes,
    confused_pairs,
    contingency,
    flip_rate,
    inverse_purity,
    label_metrics,
    label_quality,
    n_clusters,
    nmi,
    purity,
    session_coherence,
    session_of,
    wrong_label_mask,
    wrong_whole_session_frac,
)

KEYS = {"purity", "inverse_purity", "nmi", "ari", "n_clusters", "cluster_size_min", "cluster_size_median",
        "cluster_size_max"}


def test_purity_and_inverse_purity_by_hand():
    true = [0, 0, 0, 1, 1, 2]
    pred = [5, 5, 7, 7, 7, 7]
    # cluster 5 = {0, 0}: majority 2; cluster 7 = {0, 1, 1, 2}: majority 2 -> purity 4/6
    assert purity(true, pred) == pytest.approx(4 / 6)
    # speaker 0 -> mostly cluster 5 (2), speaker 1 -> 7 (2), speaker 2 -> 7 (1) -> inverse purity 5/6
    assert inverse_purity(true, pred) == pytest.approx(5 / 6)
    assert n_clusters(pred) == 2 and cluster_sizes(pred).tolist() == [4, 2]
    # rows: true 0, 1, 2; columns: clusters 5, 7
    np.testing.assert_array_equal(contingency(true, pred, sparse=False), [[2, 1], [0, 2], [0, 1]])
    np.testing.assert_array_equal(contingency(true, pred).toarray(), [[2, 1], [0, 2], [0, 1]])


@pytest.mark.parametrize("seed", range(6))
def test_nmi_ari_contingency_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 800))
    true = rng.integers(0, int(rng.integers(2, 40)), n) * 7 - 30  # arbitrary, partly negative speaker ids
    noisy = rng.random(n) < rng.uniform(0.1, 0.9)
    pred = np.where(noisy, rng.integers(0, 50, n), true * 3 + 1000)  # arbitrary large cluster ids
    assert nmi(true, pred) == pytest.approx(normalized_mutual_info_score(true, pred), abs=1e-12)
    assert ari(true, pred) == pytest.approx(adjusted_rand_score(true, pred), abs=1e-12)
    np.testing.assert_array_equal(contingency(true, pred, sparse=False), contingency_matrix(true, pred))


def test_degenerate_partitions_follow_sklearn():
    one, many = np.zeros(6, int), np.arange(6)
    for t, p in [(one, one), (one, many), (many, one), (many, many), (many, many[::-1] + 4)]:
        assert nmi(t, p) == pytest.approx(normalized_mutual_info_score(t, p), abs=1e-12)
        assert ari(t, p) == pytest.approx(adjusted_rand_score(t, p), abs=1e-12)


def test_negative_ids_are_excluded_from_every_measure():
    rng = np.random.default_rng(7)
    true = rng.integers(0, 10, 300)
    pred = np.where(rng.random(300) < 0.7, true, rng.integers(0, 12, 300))
    dropped = rng.random(300) < 0.25
    voted = np.where(dropped, -1, pred)
    kept_t, kept_p = true[~dropped], pred[~dropped]
    assert label_quality(true, voted) == label_quality(kept_t, kept_p)
    assert nmi(true, voted) == pytest.approx(normalized_mutual_info_score(kept_t, kept_p), abs=1e-12)
    assert ari(true, voted) == pytest.approx(adjusted_rand_score(kept_t, kept_p), abs=1e-12)
    assert cluster_sizes(voted).sum() == (~dropped).sum()
    # a hand case: the dropped sample (true 2) would otherwise make a third speaker
    q = label_quality([0, 0, 1, 1, 2], [3, 3, 4, 4, -1])
    assert set(q) == KEYS
    assert (q["purity"], q["inverse_purity"], q["n_clusters"]) == (1.0, 1.0, 2.0)
    assert q["nmi"] == pytest.approx(1.0) and q["ari"] == pytest.approx(1.0)
    assert (q["cluster_size_min"], q["cluster_size_median"], q["cluster_size_max"]) == (2.0, 2.0, 2.0)
    empty = label_quality([0, 1], [-1, -1])  # everything dropped: no clusters, measures undefined
    assert empty.pop("n_clusters") == 0.0 and all(np.isnan(v) for v in empty.values())


def test_label_quality_keys_and_values():
    true = [0, 0, 0, 1, 1, 2]
    pred = [5, 5, 7, 7, 7, 7]
    q = label_quality(true, pred)
    assert set(q) == KEYS and all(isinstance(v, float) for v in q.values())
    assert q["purity"] == purity(true, pred) and q["n_clusters"] == 2.0
    assert (q["cluster_size_min"], q["cluster_size_median"], q["cluster_size_max"]) == (2.0, 3.0, 4.0)


def test_flip_rate_ignores_renaming():
    rng = np.random.default_rng(0)
    prev = rng.integers(0, 20, 500)
    perm = rng.permutation(np.arange(100, 120))  # cur's ids: any one-to-one renaming of prev's
    assert flip_rate(prev, perm[prev]) == 0.0


def test_flip_rate_counts_changed_samples():
    prev = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    cur = np.array([7, 7, 5, 9, 9, 9, 9, 1])  # renamed, and sample 3 moved from "1" to "2"
    assert flip_rate(prev, cur) == pytest.approx(1 / 8)
    # a split: the larger part keeps the id, the unmatched smaller part flips
    assert flip_rate([0, 0, 0, 0], [1, 1, 1, 2]) == pytest.approx(1 / 4)
    # a merge: one of the two old clusters loses its id
    assert flip_rate([0, 0, 0, 1, 1], [4, 4, 4, 4, 4]) == pytest.approx(2 / 5)
    # seeded: relabel a known set of samples to another cluster, then rename every id
    rng = np.random.default_rng(1)
    prev = np.repeat(np.arange(25), 40)  # 25 clusters of 40
    moved = rng.choice(prev.size, 60, replace=False)
    cur = prev.copy()
    cur[moved] = (prev[moved] + rng.integers(1, 25, moved.size)) % 25  # a different cluster each
    cur = rng.permutation(25)[cur] + 1000
    assert flip_rate(prev, cur) == pytest.approx(60 / prev.size)


def test_flip_rate_excludes_dropped_samples():
    prev = np.array([0, 0, 1, 1, -1, 2])
    cur = np.array([5, 5, 6, -1, 6, 7])
    assert flip_rate(prev, cur) == 0.0  # samples 3 and 4 are dropped in one of the rounds
    assert np.isnan(flip_rate([-1, 0], [0, -1]))
    with pytest.raises(ValueError, match="length"):
        flip_rate([0, 1], [0])


# ------------------------------------------------------------------------ a round's labelling
def test_wrong_label_mask_marks_the_minority_of_each_cluster():
    speakers = np.array(["a", "a", "b", "b", "b", "c"])
    labels = np.array([0, 0, 0, 1, 1, 1])  # cluster 0: a a b (majority a); cluster 1: b b c (majority b)
    assert wrong_label_mask(speakers, labels).tolist() == [False, False, True, False, False, True]


def test_wrong_label_mask_gives_a_tie_to_the_speaker_seen_first():
    assert wrong_label_mask(np.array(["x", "y"]), np.array([7, 7])).tolist() == [False, True]
    assert wrong_label_mask(np.array(["y", "x"]), np.array([7, 7])).tolist() == [False, True]


def _round_table(**views):
    n = len(views["consensus"])
    base = {"key": [f"u{i}" for i in range(n)], "speaker": ["a", "a", "b", "b"][:n]}
    return pd.DataFrame({**base, **{v: np.asarray(x) for v, x in views.items()}})


def test_cluster_majority_by_hand_with_ties_to_the_speaker_seen_first():
    speakers = ["a", "b", "b", "y", "x", "x", "y", "c"]
    labels = [5, 5, 5, 2, 2, 2, 2, 9]  # 5: b twice; 2: y and x twice each, y seen first; 9: c
    got = cluster_majority(speakers, labels)
    assert got.index.tolist() == [2, 5, 9] and got.tolist() == ["y", "b", "c"]
    assert cluster_majority([], []).empty


def _value_counts_majority(speakers, labels) -> pd.Series:
    """The reference: each cluster's majority by pandas' per-cluster ``value_counts`` (ties: first seen)."""
    df = pd.DataFrame({"s": np.asarray(speakers), "c": np.asarray(labels)})
    return df.groupby("c")["s"].agg(lambda s: s.value_counts().index[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_cluster_majority_equals_the_per_cluster_value_counts(seed):
    rng = np.random.default_rng(seed)  # few speakers and small clusters: many ties
    speakers = rng.choice(["s0", "s1", "s2", "s3"], 3000)
    labels = rng.integers(0, 400, 3000)
    pd.testing.assert_series_equal(cluster_majority(speakers, labels), _value_counts_majority(speakers, labels),
                                   check_names=False, check_index_type=False)


def test_label_metrics_per_view_and_a_view_without_labels_is_left_out():
    table = _round_table(audio=[0, 0, 1, 1], visual=[-1, -1, -1, -1], joint=[0, 0, 0, 1], consensus=[0, 0, 0, 1])
    rows = label_metrics(table, None)
    got = {(r["modality"], r["name"]): r["value"] for r in rows}
    assert {m for m, _ in got} == {"audio", "joint", "consensus"}  # round 1: no visual labels
    assert got[("audio", "purity")] == 1.0 and got[("audio", "ari")] == 1.0
    assert got[("audio", "nmi")] == pytest.approx(1.0)
    # joint: cluster 0 = a a b, cluster 1 = b: purity (2 + 1) / 4, inverse purity (2 + 1) / 4
    assert got[("joint", "purity")] == 0.75 and got[("joint", "inverse_purity")] == 0.75
    assert got[("joint", "n_clusters")] == 2.0
    assert (got[("joint", "cluster_size_min")], got[("joint", "cluster_size_max")]) == (1.0, 3.0)
    assert len(rows) == 3 * 10 and all(isinstance(r["value"], float) for r in rows)
    assert not any(r["name"] == "flip_rate" for r in rows)


def test_label_metrics_flip_rate_against_the_previous_round_by_key():
    table = _round_table(audio=[0, 0, 1, 1], visual=[0, 0, 1, 1], joint=[0, 0, 1, 1], consensus=[5, 6, 6, 6])
    # the previous round, keyed and in another order, with other ids: u0 u1 | u2 u3 -> one of four moved
    previous = pd.DataFrame({"key": ["u3", "u2", "u1", "u0"], "consensus": [1, 1, 0, 0]})
    (flip,) = [r for r in label_metrics(table, previous) if r["name"] == "flip_rate"]
    assert flip == {"name": "flip_rate", "value": 0.25, "modality": "consensus"}
    # a key the previous round did not label (or dropped, -1) takes no part
    previous = pd.DataFrame({"key": ["u3", "u2", "u1"], "consensus": [1, 1, -1]})
    (flip,) = [r for r in label_metrics(table, previous) if r["name"] == "flip_rate"]
    assert flip["value"] == 0.0  # u2, u3 stay together


def test_session_of_is_the_key_directory():
    assert session_of(["id1/vidA/00001.wav", "id1/vidA/00002.wav", "id2/x/y/3.wav", "flat"]).tolist() == [
        "id1/vidA", "id1/vidA", "id2/x/y", "flat"]


def test_session_coherence_by_hand_and_dropped_samples_take_no_part():
    sessions = ["s1", "s1", "s1", "s2", "s2", "s3"]
    labels = [0, 0, 1, 2, 2, -1]  # s1: 2 of 3 carry its majority 0; s2: 2 of 2; s3 only dropped
    assert session_coherence(sessions, labels) == pytest.approx(4 / 5)
    assert np.isnan(session_coherence(["a", "b"], [-1, -1]))  # every sample dropped


def test_wrong_whole_session_frac_by_hand():
    # speakers a (sessions a1, a2), b (session b1); clusters: 0 = a a a b b, 1 = b b
    speakers = ["a", "a", "a", "b", "b", "b", "b"]
    sessions = ["a1", "a1", "a2", "b1", "b1", "b1", "b1"]
    labels = [0, 0, 0, 0, 0, 1, 1]
    # cluster 0's majority is a, so b1's two samples in cluster 0 are wrong; b1 is not wrong as a whole
    assert wrong_whole_session_frac(speakers, sessions, labels) == 0.0
    # move b1 whole into cluster 0 beside a second b session (b2) labelled 1: b1 is wrong as a whole
    speakers = ["a", "a", "a", "b", "b", "b", "b"]
    sessions = ["a1", "a1", "a2", "b1", "b1", "b2", "b2"]
    assert wrong_whole_session_frac(speakers, sessions, labels) == 1.0
    # a session wrong in every sample but under two labels does not count as whole
    speakers = ["a", "a", "a", "a", "b", "b", "b", "b"]
    sessions = ["a1", "a1", "a1", "a1", "b1", "b1", "b2", "b2"]
    labels = [0, 0, 1, 1, 0, 1, 2, 2]  # clusters 0 = a a b, 1 = a a b (majority a): b1's two are wrong
    assert wrong_label_mask(np.array(speakers), np.array(labels)).tolist() == [False] * 4 + [True, True, False, False]
    assert wrong_whole_session_frac(speakers, sessions, labels) == 0.0
    assert np.isnan(wrong_whole_session_frac(["a", "b"], ["s", "t"], [0, 1]))  # nothing wrong


def test_label_metrics_carry_the_session_measures():
    table = pd.DataFrame({"key": ["a/v1/1", "a/v1/2", "a/v2/3", "b/v3/4", "b/v3/5"], "speaker": list("aaabb"),
                          "audio": [0, 0, 0, 0, 0], "visual": [0, 0, 0, 1, 1], "joint": [0, 0, 1, 1, 1],
                          "consensus": [0, 0, 0, 1, 1]})
    got = {(r["modality"], r["name"]): r["value"] for r in label_metrics(table, None)}
    assert got[("audio", "session_coherence")] == 1.0
    assert got[("audio", "wrong_whole_session_frac")] == 1.0  # b/v3 wrong as a whole in cluster 0
    assert got[("joint", "session_coherence")] == 1.0  # a/v2 alone in cluster 1 with b: still coherent
    assert got[("joint", "wrong_whole_session_frac")] == 1.0
    assert np.isnan(got[("consensus", "wrong_whole_session_frac")])


def test_confused_pairs_by_hand():
    """Cluster 7: a a a b -> b is wrong, confused with a; cluster 8: c c d d e (tie c/d: c, seen first)
    -> d, d, e wrong, confused with c; cluster 9: e alone -> right; -1 (dropped) is left out."""
    speakers = ["a", "a", "b", "a", "c", "d", "c", "d", "e", "e", "b"]
    labels = [7, 7, 7, 7, 8, 8, 8, 8, 8, 9, -1]
    got = confused_pairs(speakers, labels)
    assert got.to_dict("list") == {"speaker": ["b", "d", "d", "e"], "majority": ["a", "c", "c", "c"]}
    assert len(got) == wrong_label_mask(np.array(speakers[:-1]), np.array(labels[:-1])).sum()


def test_confusion_figures_compose_the_corpus_latent_distances():
    """tools/study_criteria.confusion_figures on the tiny corpus' identities: every sample true but two
    of the first identity's, in the cluster of one same-gender and then of one other-gender identity:
    the share of same gender, and the pair's latent distance over the mean of same-gender strangers,
    recomputed here from the corpus' own distance matrices."""
    from cometa.config import load_config
    from cometa.data.synthetic import draw_speakers, face_latent_distances, voice_latent_distances
    from tools.study_criteria import confusion_figures

    rows = [r for r in draw_speakers(load_config("tiny").corpus.synthetic) if r["split"] == "train"]
    speakers = pd.DataFrame(rows)
    names, gender = speakers["speaker"].tolist(), speakers["gender"].to_numpy()
    strangers = (gender[:, None] == gender[None, :]) & ~np.eye(len(rows), dtype=bool)
    voice, face = voice_latent_distances(rows), face_latent_distances(rows)
    for same in (True, False):
        host = next(i for i in range(1, len(rows)) if (gender[i] == gender[0]) == same)
        table = pd.DataFrame({"speaker": np.repeat(names, 3), "consensus": np.repeat(np.arange(len(rows)), 3)})
        table.loc[[0, 1], "consensus"] = host  # two of the first identity's three: its third stays right
        got = confusion_figures(table, speakers)
        assert got["same_gender"] == float(same)
        assert got["voice_ratio"] == pytest.approx(voice[0, host] / voice[strangers].mean())
        assert got["face_ratio"] == pytest.approx(face[0, host] / face[strangers].mean())
    assert confusion_figures(table.assign(consensus=np.repeat(np.arange(len(rows)), 3)), speakers) == {}


def test_gender_split_eer_keeps_every_target_and_one_kind_of_non_target():
    """Targets 0.9, 0.8, 0.7, 0.6; same-gender non-targets 0.85, 0.75 (they interleave with the
    targets), cross-gender ones 0.1, 0.2 (all below): cross-gender only separates perfectly (EER 0);
    same-gender only is the EER of those six trials: at a threshold between 0.75 and 0.8, half the
    targets (0.7, 0.6) are missed and half the non-targets (0.85) accepted, 0.5."""
    from cometa.evaluation.metrics import eer
    from tools.study_criteria import gender_split_eer

    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.85, 0.75, 0.1, 0.2])
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    same = np.array([True, True, True, True, True, True, False, False])
    same_only, cross_only = gender_split_eer(scores, labels, same)
    assert cross_only == 0.0
    assert same_only == 0.5 == eer(scores[:6], labels[:6])[0]
