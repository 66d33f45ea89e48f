"""Cluster ensemble: Hungarian alignment and the three-way vote on hand-built labellings."""
import numpy as np
import pytest

from cometa.ensemble import align, consensus, joint_embeddings, vote, vote_counts


def test_align_recovers_a_permutation():
    ref = np.array([0, 0, 1, 1, 2, 2, 3])
    perm = {0: 9, 1: 4, 2: 7, 3: 0}
    assert align(ref, np.array([perm[x] for x in ref])).tolist() == ref.tolist()


def test_unmatched_clusters_get_ids_outside_the_reference():
    ref = np.array([0, 0, 0, 1, 1, 1])
    lab = np.array([5, 5, 6, 7, 7, 8])  # four clusters against two
    out = align(ref, lab)
    assert out[:2].tolist() == [0, 0] and out[3:5].tolist() == [1, 1]
    assert out[2] >= 2 and out[5] >= 2 and out[2] != out[5]  # 6 and 8 left unmatched, distinct new ids


def test_hungarian_beats_greedy():
    # overlaps: A->x 3, A->y 2, B->x 2, B->y 0. Greedy takes A->x (3) then B->y (0) = 3;
    # the optimal matching A->y, B->x gives 4.
    ref = np.array(["x"] * 3 + ["y"] * 2 + ["x"] * 2)
    ref_ids = np.array([0, 0, 0, 1, 1, 0, 0])
    lab = np.array([10, 10, 10, 10, 10, 11, 11])
    out = align(ref_ids, lab)
    assert out.tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert (out == ref_ids).sum() == 4


def test_vote_cases_with_permuted_ids():
    # columns: samples; joint is the reference, audio/visual use other id spaces
    j = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
    a_ids = {0: 20, 1: 21, 2: 22, 3: 23}  # audio: ids permuted
    v_ids = {0: 31, 1: 30, 2: 33, 3: 32}
    a_true = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
    v_true = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
    # sample 1: audio and visual agree on 1 (outvote joint 0)
    a_true[1], v_true[1] = 1, 1
    # sample 4: audio disagrees alone; sample 7: visual disagrees alone
    a_true[4] = 3
    v_true[7] = 0
    # sample 9: all three differ
    a_true[9], v_true[9] = 1, 2
    a = np.array([a_ids[x] for x in a_true])
    v = np.array([v_ids[x] for x in v_true])
    labels, kept = vote(j, a, v, policy="reference")
    assert labels.tolist() == [0, 1, 0, 1, 1, 1, 2, 2, 2, 3] and kept.all()
    labels, kept = vote(j, a, v, policy="drop")
    assert labels.tolist() == [0, 1, 0, 1, 1, 1, 2, 2, 2, -1] and kept.tolist() == [True] * 9 + [False]
    _, _, counts = consensus(j, a, v, policy="drop")
    assert counts == {"all_agree": 6, "two_agree": 3, "all_differ": 1}
    assert vote_counts(j, j, j) == {"all_agree": 10, "two_agree": 0, "all_differ": 0}
    with pytest.raises(ValueError, match="policy"):
        vote(j, a, v, policy="majority")


def test_joint_embeddings_halves_are_unit_norm():
    rng = np.random.default_rng(0)
    out = joint_embeddings(rng.normal(size=(4, 3)) * 5, rng.normal(size=(4, 2)))
    assert out.shape == (4, 5)
    assert np.allclose(np.linalg.norm(out[:, :3], axis=1), 1) and np.allclose(np.linalg.norm(out[:, 3:], axis=1), 1)
