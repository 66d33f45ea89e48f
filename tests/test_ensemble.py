"""Cluster ensemble: Hungarian alignment and the three-way vote on hand-built labellings."""
import numpy as np
import pytest

from cometa.config.sections import ClusteringConfig
from cometa.core.ensemble import align, consensus, joint_embeddings, make_round_labels, vote, vote_counts


def test_align_recovers_a_permutation():
    ref = np.array([0, 0, 1, 1, 2, 2, 3])
    perm = {0: 9, 1: 4, 2: 7, 3: 0}
    assert align(ref, np.array([perm[x] for x in ref])).tolist() == ref.tolist()


def test_align_keeps_arbitrary_reference_ids():
    ref = np.array([3, 3, 10, 10, 42])  # non-contiguous ids
    assert align(ref, np.array([1, 1, 0, 0, 2])).tolist() == ref.tolist()


def test_unmatched_clusters_get_ids_outside_the_reference():
    ref = np.array([0, 0, 0, 1, 1, 1])
    lab = np.array([5, 5, 6, 7, 7, 8])  # four clusters against two
    out = align(ref, lab)
    assert out[:2].tolist() == [0, 0] and out[3:5].tolist() == [1, 1]
    assert out[2] == 2 and out[5] == 3  # 6 and 8 unmatched: max(ref) + 1, + 2 in order of their ids


def test_zero_overlap_match_gets_a_new_id():
    # contingency (rows: lab 5, 6, 7; cols: ref 0, 1, 2) = [[2, 0, 0], [1, 0, 0], [0, 1, 1]].
    # The best matching is 5->0, 7->1 or 2, and 6 to the remaining column with zero overlap:
    # such a pairing is no match, so 6 gets a new id like a left-over cluster.
    ref = np.array([0, 0, 0, 1, 2])
    out = align(ref, np.array([5, 5, 6, 7, 7]))
    assert out[:2].tolist() == [0, 0] and out[2] == 3
    assert out[3] == out[4] and out[3] in (1, 2)


def test_hungarian_beats_greedy():
    # contingency (rows: lab 10, 11; cols: ref 0, 1) = [[3, 2], [2, 0]].
    # Greedy takes the largest cell 10->0 (3), leaving 11->1 (0): 3 samples agree.
    # The optimal matching 10->1, 11->0 gives 2 + 2 = 4.
    ref = np.array([0, 0, 0, 1, 1, 0, 0])
    lab = np.array([10, 10, 10, 10, 10, 11, 11])
    out = align(ref, lab)
    assert out.tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert (out == ref).sum() == 4


def test_align_rejects_different_lengths():
    with pytest.raises(ValueError, match="length"):
        align(np.array([0, 1]), np.array([0, 1, 1]))


def test_vote_cases_with_permuted_ids():
    # joint is the reference, audio/visual use other id spaces (one sample per case below)
    j = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
    a_ids = {0: 20, 1: 21, 2: 22, 3: 23}  # audio: ids permuted
    v_ids = {0: 31, 1: 30, 2: 33, 3: 32}
    a_true = j.copy()
    v_true = j.copy()
    a_true[1], v_true[1] = 1, 1  # sample 1: audio + visual agree on 1 and outvote joint 0
    a_true[4] = 3  # sample 4: joint + visual agree, audio alone
    v_true[7] = 0  # sample 7: joint + audio agree, visual alone
    a_true[9], v_true[9] = 1, 2  # sample 9: all three differ
    a = np.array([a_ids[x] for x in a_true])
    v = np.array([v_ids[x] for x in v_true])
    labels, kept = vote(j, a, v, policy="reference")
    assert labels.tolist() == [0, 1, 0, 1, 1, 1, 2, 2, 2, 3] and kept.all()
    labels, kept = vote(j, a, v, policy="drop")
    assert labels.tolist() == [0, 1, 0, 1, 1, 1, 2, 2, 2, -1] and kept.tolist() == [True] * 9 + [False]
    _, _, counts = consensus(j, a, v, policy="drop")
    assert counts == {"all_agree": 6, "two_agree": 3, "all_differ": 1}
    with pytest.raises(ValueError, match="policy"):
        vote(j, a, v, policy="majority")
    with pytest.raises(ValueError, match="policy"):
        consensus(j, a, v, policy="majority")


def test_unmatched_audio_and_visual_clusters_do_not_agree_by_accident():
    # audio's cluster 7 and visual's cluster 4 both hold sample 7 and match nothing in the
    # reference; align gives each the id 2, but they are unrelated and must not outvote joint 1
    j = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    a = np.array([5, 5, 5, 5, 6, 6, 6, 7])
    v = np.array([8, 8, 8, 8, 9, 9, 9, 4])
    assert align(j, a)[7] == align(j, v)[7] == 2
    labels, kept = vote(j, a, v, policy="reference")
    assert labels.tolist() == j.tolist() and kept.all()
    labels, kept = vote(j, a, v, policy="drop")
    assert labels[7] == -1 and kept.tolist() == [True] * 7 + [False]
    assert consensus(j, a, v, policy="drop")[2] == {"all_agree": 7, "two_agree": 0, "all_differ": 1}


def test_vote_counts_against_a_direct_count():
    rng = np.random.default_rng(0)
    j, a, v = rng.integers(0, 3, size=(3, 500))
    counts = vote_counts(j, a, v)
    distinct = [len({x, y, z}) for x, y, z in zip(j, a, v)]
    assert counts == {"all_agree": distinct.count(1), "two_agree": distinct.count(2),
                      "all_differ": distinct.count(3)}
    assert sum(counts.values()) == 500
    assert vote_counts(j, j, j) == {"all_agree": 500, "two_agree": 0, "all_differ": 0}


def test_joint_embeddings_halves_are_unit_norm():
    rng = np.random.default_rng(0)
    out = joint_embeddings(rng.normal(size=(4, 3)) * 5, rng.normal(size=(4, 2)))
    assert out.shape == (4, 5) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out[:, :3], axis=1), 1) and np.allclose(np.linalg.norm(out[:, 3:], axis=1), 1)
    with pytest.raises(ValueError, match="visual"):
        joint_embeddings(np.ones((4, 3)), np.ones((3, 2)))


# ------------------------------------------------------------------------ a round's labels
def _views(n_per: int = 3):
    """Three speakers of ``n_per`` utterances on orthogonal audio and visual directions; the
    visual row of utterance 2 (speaker a) leans towards speaker b (cos 0.55 to a, 0.83 to b)."""
    eye = np.eye(3, dtype=np.float32)
    audio = np.repeat(eye, n_per, axis=0)  # (9, 3)
    visual = np.repeat(eye, n_per, axis=0)
    visual[2] = 0.4 * eye[0] + 0.6 * eye[1]
    speakers = np.repeat(["a", "b", "c"], n_per).tolist()
    return [f"u{i}" for i in range(3 * n_per)], speakers, audio, visual


def _groups(labels) -> list[list[int]]:
    """The partition a labelling makes, as sorted lists of sample indices (ids themselves arbitrary)."""
    labels = np.asarray(labels)
    return sorted(np.flatnonzero(labels == c).tolist() for c in np.unique(labels[labels >= 0]))


def test_round_labels_vote_two_views_against_the_third():
    """Utterance 2 looks like speaker b: the visual clustering puts it there, the joint view (its
    voice is a's; squared distance 0.9 to a's joint centroid, 2.34 to b's) and the audio keep it
    with a, so the vote of two against one keeps it with a."""
    keys, speakers, audio, visual = _views()
    cfg = ClusteringConfig(k=3, backend="sklearn")
    table, counts = make_round_labels(keys, speakers, audio, visual, clustering=cfg, seed=0)
    assert table.columns.tolist() == ["key", "speaker", "audio", "visual", "joint", "consensus", "kept"]
    assert table["key"].tolist() == keys and table["speaker"].tolist() == speakers
    assert _groups(table["joint"]) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert table["audio"].tolist() == table["joint"].tolist()  # aligned onto the joint ids
    visual_ids = table["visual"].to_numpy()
    assert visual_ids[2] == table["joint"][3]  # with speaker b ...
    assert np.array_equal(np.delete(visual_ids, 2), np.delete(table["joint"].to_numpy(), 2))  # ... the rest agree
    assert table["consensus"].tolist() == table["joint"].tolist() and table["kept"].all()
    assert counts == {"all_agree": 8, "two_agree": 1, "all_differ": 0}


def test_round_one_labels_are_the_audio_clustering():
    keys, speakers, audio, _ = _views()
    table, counts = make_round_labels(keys, speakers, audio, None, clustering=ClusteringConfig(k=3), seed=0)
    assert _groups(table["audio"]) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert table["joint"].tolist() == table["consensus"].tolist() == table["audio"].tolist()
    assert (table["visual"] == -1).all() and table["kept"].all()
    assert counts == {"all_agree": 9, "two_agree": 0, "all_differ": 0}


def test_round_labels_without_a_face_get_visual_minus_one():
    keys, speakers, audio, visual = _views()
    visual[7] = np.nan  # no face frames (corpus.missing_faces: audio_only)
    table, _ = make_round_labels(keys, speakers, audio, visual, clustering=ClusteringConfig(k=3), seed=0)
    assert table["visual"][7] == -1 and table["visual"].drop(index=7).ge(0).all()
    assert _groups(table["joint"]) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # its voice alone places it
