"""EER, minDCF and trial scoring against hand-checked cases and an independent roc_curve path."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_curve

from cometa.metrics import cosine_scores, det_curve, eer, fuse_scores, min_dcf, score_trials


def _reference(scores, labels, p_target=0.01):
    """Independent computation from scikit-learn's ROC: fnr = 1 - tpr, crossing by interpolation."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    # along roc_curve the threshold falls: fpr rises, fnr falls; find the crossing
    d = fnr - fpr
    i = np.flatnonzero(d <= 0)[0]
    if d[i] == 0 or i == 0:
        e = (fnr[i] + fpr[i]) / 2
    else:
        w = d[i - 1] / (d[i - 1] - d[i])
        e = fnr[i - 1] + w * (fnr[i] - fnr[i - 1])
    cost = fnr * p_target + fpr * (1 - p_target)
    return e, cost.min() / min(p_target, 1 - p_target)


def test_hand_checked_cases():
    assert eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])[0] == 0.0
    assert eer([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1])[0] == 1.0
    # scores 1..4, labels 0 1 0 1: at t = 2 miss 0/2 fa 1/2; at t = 3 miss 1/2 fa 1/2 -> EER 0.5
    assert eer([1, 2, 3, 4], [0, 1, 0, 1])[0] == pytest.approx(0.5)
    # one target below one non-target out of 4 each: t = 0.5 -> miss 1/4, fa 1/4
    s = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    e, th = eer(s, y)
    assert e == pytest.approx(0.25) and 0.4 <= th <= 0.6
    # all scores tied: p_miss jumps 0 -> 1 while p_fa falls 1 -> 0: the crossing is at 0.5
    assert eer([0.5] * 4, [0, 1, 0, 1])[0] == pytest.approx(0.5)


def test_min_dcf_hand_case():
    # separable: a threshold with no errors exists -> 0
    assert min_dcf([0.1, 0.9], [0, 1])[0] == 0.0
    # p_target 0.5, c = 1: C_default 0.5; scores 1..4 labels 0 1 0 1; best t = 2: miss 0, fa 1/2
    # -> C = 0.5 * 0.5 = 0.25 -> 0.5 normalised; reject-all gives 0.5 / 0.5 = 1
    assert min_dcf([1, 2, 3, 4], [0, 1, 0, 1], p_target=0.5)[0] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_against_roc_curve_with_ties(seed, decimals):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 3000))
    y = rng.random(n) < 0.3
    y[:2] = [True, False]
    s = rng.normal(size=n) + 1.2 * y
    if decimals is not None:
        s = np.round(s, decimals)
    ref_eer, ref_dcf = _reference(s, y.astype(int))
    assert eer(s, y.astype(int))[0] == pytest.approx(ref_eer, abs=1e-12)
    assert min_dcf(s, y.astype(int), p_target=0.01)[0] == pytest.approx(ref_dcf, abs=1e-12)
    assert min_dcf(s, y.astype(int), p_target=0.05)[0] == pytest.approx(_reference(s, y, 0.05)[1], abs=1e-12)


@pytest.mark.parametrize("scores,labels,match", [
    ([], [], "empty"), ([0.1, 0.2], [1], "labels"), ([0.1, np.nan], [0, 1], "finite"),
    ([0.1, np.inf], [0, 1], "finite"), ([0.1, 0.2], [1, 1], "single class"), ([0.1, 0.2], [0, 2], "0"),
])
def test_bad_input_raises(scores, labels, match):
    for fn in (eer, min_dcf, det_curve):
        with pytest.raises(ValueError, match=match):
            fn(scores, labels)


def test_det_curve_is_monotone():
    rng = np.random.default_rng(3)
    y = rng.random(500) < 0.5
    p_fa, p_miss, th = det_curve(rng.normal(size=500) + y, y.astype(int))
    assert np.all(np.diff(p_fa) <= 0) and np.all(np.diff(p_miss) >= 0) and np.all(np.diff(th) > 0)
    assert (p_fa[0], p_miss[0], p_fa[-1], p_miss[-1]) == (1.0, 0.0, 0.0, 1.0)


def test_score_trials_matches_a_loop_and_names_missing_keys():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 5))
    keys = [f"id1/v/{i:05d}.wav" for i in range(6)]
    index = {k: i for i, k in enumerate(keys)}
    trials = pd.DataFrame({"label": [1, 0, 1], "enroll": [keys[0], keys[1], keys[5]], "test": [keys[2], keys[3], keys[4]]})
    got = score_trials(emb, index, trials, chunk=2)
    for t, (a, b) in enumerate(zip(trials["enroll"], trials["test"])):
        u, v = emb[index[a]], emb[index[b]]
        assert got[t] == pytest.approx(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
    assert np.allclose(cosine_scores(emb[:3], emb[3:]), [score_trials(emb, index, pd.DataFrame(
        {"label": [1], "enroll": [keys[i]], "test": [keys[i + 3]]}))[0] for i in range(3)])
    bad = trials.assign(test=[keys[2], "id9/x/00001.wav", "id9/y/00002.wav"])
    with pytest.raises(KeyError, match=r"id9/x/00001.wav.*2 trial"):
        score_trials(emb, index, bad)
    assert fuse_scores([0.2, 0.4], [0.6, 0.0]).tolist() == pytest.approx([0.4, 0.2])
