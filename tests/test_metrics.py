"""EER, minDCF, DET points and trial scoring against hand-worked cases and independent computations
(scikit-learn's roc_curve, voxceleb_trainer-style brentq on the interpolated ROC, plain loops)."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

from cometa.evaluation.metrics import cosine_scores, det_curve, eer, fuse_scores, min_dcf, score_trials


def _ref_eer(scores, labels):
    """EER from roc_curve: walk its points (threshold falling: fpr rises, fnr falls) and interpolate
    the straight segment on which fnr − fpr changes sign."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    d = fnr - fpr  # falls from +1 (reject all) to -1 (accept all)
    i = int(np.flatnonzero(d <= 0)[0])
    if d[i] == 0:
        return fnr[i]
    w = d[i - 1] / (d[i - 1] - d[i])
    return fnr[i - 1] + w * (fnr[i] - fnr[i - 1])


def _ref_eer_brentq(scores, labels):
    """The voxceleb_trainer way: root of 1 − x − tpr(x) on the linearly interpolated ROC."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0, xtol=1e-14)


def _ref_min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0):
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)  # includes reject-all (0, 0)
    cost = c_miss * (1.0 - tpr) * p_target + c_fa * fpr * (1.0 - p_target)
    return cost.min() / min(c_miss * p_target, c_fa * (1.0 - p_target))


def _cost_at(scores, labels, th, p_target, c_miss=1.0, c_fa=1.0):
    """Direct count at one threshold, accept when score >= th."""
    s, y = np.asarray(scores, float), np.asarray(labels).astype(bool)
    p_miss, p_fa = np.mean(s[y] < th), np.mean(s[~y] >= th)
    return (c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)) / min(c_miss * p_target, c_fa * (1 - p_target))


def test_eer_hand_cases():
    # perfectly separated: at t = 0.8 nothing is wrong
    assert eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == (0.0, 0.8)
    # fully inverted: every threshold gets one of the two kinds entirely wrong; they meet at 1
    assert eer([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1])[0] == 1.0
    # scores 1..5, labels 0 1 0 1 1 (3 targets, 2 non-targets):
    #   t = 3: reject {1, 2}     -> P_miss 1/3, P_fa 1/2, P_miss − P_fa = −1/6
    #   t = 4: reject {1, 2, 3}  -> P_miss 1/3, P_fa 0,   P_miss − P_fa = +1/3
    #   w = (1/6) / (1/3 + 1/6) = 1/3: P_miss = 1/3, P_fa = 1/2 − 1/6 = 1/3, threshold 3 + 1/3
    e, th = eer([1, 2, 3, 4, 5], [0, 1, 0, 1, 1])
    assert e == pytest.approx(1 / 3, abs=1e-15) and th == pytest.approx(10 / 3, abs=1e-15)
    # scores 1..4, labels 0 1 0 1: t = 3 gives P_miss = P_fa = 1/2 exactly
    assert eer([1, 2, 3, 4], [0, 1, 0, 1]) == (0.5, 3.0)
    # all scores tied: P_miss jumps 0 -> 1 while P_fa falls 1 -> 0, the segment crosses at 1/2
    assert eer([0.5] * 4, [0, 1, 0, 1]) == (0.5, 0.5)


def test_tied_scores_move_together():
    # scores 0.2 0.5 0.5 0.9, labels 0 0 1 1: the tie at 0.5 holds one target and one non-target.
    #   t = 0.5: P_miss 0,   P_fa 1/2;  t = 0.9: P_miss 1/2, P_fa 0  -> crossing at w = 1/2: EER 1/4
    # (breaking the tie with the non-target first would wrongly give a perfect threshold, EER 0)
    e, th = eer([0.2, 0.5, 0.5, 0.9], [0, 0, 1, 1])
    assert e == pytest.approx(0.25) and th == pytest.approx(0.7)
    assert eer([0.2, 0.5, 0.5, 0.9], [0, 1, 0, 1]) == eer([0.2, 0.5, 0.5, 0.9], [0, 0, 1, 1])


def test_min_dcf_hand_cases():
    # separable: a threshold with no errors exists
    assert min_dcf([0.1, 0.9], [0, 1]) == (0.0, 0.9)
    # scores 1..4 labels 0 1 0 1, p_target 0.5: C_det = 0.5 P_miss + 0.5 P_fa
    #   t = 1: 0.5, t = 2: 0.25, t = 3: 0.5, t = 4: 0.25, reject all: 0.5; C_default = 0.5 -> 0.5
    assert min_dcf([1, 2, 3, 4], [0, 1, 0, 1], p_target=0.5) == (0.5, 2.0)
    # same list, p_target 0.01, c_miss 10: C_det = 0.1 P_miss + 0.99 P_fa
    #   t = 1: .99, t = 2: .495, t = 3: .545, t = 4: .05, reject all: .1; C_default = .1 -> 0.5 at 4
    assert min_dcf([1, 2, 3, 4], [0, 1, 0, 1], p_target=0.01, c_miss=10.0) == (pytest.approx(0.5), 4.0)
    # inverted pair: rejecting everything costs exactly C_default, nothing beats it
    assert min_dcf([1, 2], [1, 0], p_target=0.01) == (pytest.approx(1.0), np.inf)
    # ... and with a high target prior accepting everything is the best (C_default = 0.01 again)
    assert min_dcf([1, 2], [1, 0], p_target=0.99) == (pytest.approx(1.0), 1.0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [None, 2, 1, 0])
def test_against_roc_curve_with_ties(seed, decimals):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    y = (rng.random(n) < 0.3).astype(int)
    y[:2] = [1, 0]
    s = rng.normal(size=n) + 1.2 * y
    if decimals is not None:
        s = np.round(s, decimals)  # decimals = 0: a handful of distinct values, heavy ties
    e, th = eer(s, y)
    assert e == pytest.approx(_ref_eer(s, y), abs=1e-12)
    assert e == pytest.approx(_ref_eer_brentq(s, y), abs=1e-9)
    for p, c_miss in [(0.01, 1.0), (0.05, 1.0), (0.01, 10.0)]:
        dcf, th = min_dcf(s, y, p_target=p, c_miss=c_miss)
        assert dcf == pytest.approx(_ref_min_dcf(s, y, p, c_miss), abs=1e-12)
        assert dcf == pytest.approx(_cost_at(s, y, th, p, c_miss), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=40)
       .filter(lambda xs: len({b for _, b in xs}) == 2))
def test_property_small_integer_scores(trials):
    s = np.array([float(v) for v, _ in trials])
    y = np.array([int(b) for _, b in trials])
    e, th = eer(s, y)
    assert 0.0 <= e <= 1.0
    assert e == pytest.approx(_ref_eer(s, y), abs=1e-12)
    assert e == pytest.approx(_ref_eer_brentq(s, y), abs=1e-9)
    dcf, th = min_dcf(s, y, p_target=0.2)
    assert 0.0 <= dcf <= 1.0 + 1e-12 and dcf == pytest.approx(_ref_min_dcf(s, y, 0.2), abs=1e-12)


BAD = [([], [], "empty"), ([0.1, 0.2], [1], "length mismatch"), ([0.1, np.nan], [0, 1], "finite"),
       ([0.1, np.inf], [0, 1], "finite"), ([-np.inf, 0.1], [0, 1], "finite"), ([0.1, 0.2], [0, 2], "0 .*or 1"),
       ([0.1, 0.2], [-1, 1], "0 .*or 1"), ([0.1, 0.2], ["a", "b"], "0 .*or 1"), ([0.1, 0.2], [1, 1], "single class"),
       ([0.1, 0.2, 0.3], [0, 0, 0], "single class")]


@pytest.mark.parametrize("scores,labels,match", BAD)
@pytest.mark.parametrize("fn", [eer, min_dcf, det_curve])
def test_bad_input_raises(fn, scores, labels, match):
    with pytest.raises(ValueError, match=match):
        fn(scores, labels)


def test_bad_cost_parameters_raise():
    for kw in (dict(p_target=0.0), dict(p_target=1.0), dict(p_target=float("nan")), dict(c_miss=0.0),
               dict(c_fa=-1.0)):
        with pytest.raises(ValueError):
            min_dcf([0.1, 0.9], [0, 1], **kw)


def test_det_curve_is_monotone():
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.5).astype(int)
    s = np.round(rng.normal(size=500) + y, 1)
    p_fa, p_miss, th = det_curve(s, y)
    assert len(th) == np.unique(s).size + 1 and th[-1] == np.inf
    assert np.all(np.diff(p_fa) <= 0) and np.all(np.diff(p_miss) >= 0) and np.all(np.diff(th) > 0)
    assert (p_fa[0], p_miss[0], p_fa[-1], p_miss[-1]) == (1.0, 0.0, 0.0, 1.0)
    k = len(th) // 2  # one point by direct count
    assert p_miss[k] == np.mean(s[y == 1] < th[k]) and p_fa[k] == np.mean(s[y == 0] >= th[k])


def _trial_list(rng, n_emb=40, n_trials=997):
    keys = [f"id{10000 + i // 4}/yt{i % 4}/{i:05d}.wav" for i in range(n_emb)]
    rows = rng.permutation(n_emb)  # the index need not follow the key order
    index = {k: int(r) for k, r in zip(keys, rows)}
    pick = rng.integers(0, n_emb, (2, n_trials))
    trials = pd.DataFrame({"label": rng.integers(0, 2, n_trials), "enroll": [keys[i] for i in pick[0]],
                           "test": [keys[i] for i in pick[1]]})
    return keys, index, trials


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_score_trials_matches_a_plain_loop(dtype):
    rng = np.random.default_rng(0)
    keys, index, trials = _trial_list(rng)
    emb = (rng.normal(size=(len(keys), 16)) * rng.uniform(0.1, 10, (len(keys), 1))).astype(dtype)
    got = score_trials(emb, index, trials, chunk=64)  # 997 trials: 16 chunks, the last one short
    assert got.dtype == np.float64 and got.shape == (len(trials),)
    for t, (a, b) in enumerate(zip(trials["enroll"], trials["test"])):
        u, v = emb[index[a]].astype(np.float64), emb[index[b]].astype(np.float64)
        tol = 1e-6 if dtype == np.float32 else 1e-12
        assert got[t] == pytest.approx(u @ v / np.linalg.norm(u) / np.linalg.norm(v), abs=tol)
    np.testing.assert_array_equal(got, score_trials(emb, index, trials))  # chunking changes nothing
    e_rows = [index[k] for k in trials["enroll"]]
    t_rows = [index[k] for k in trials["test"]]
    np.testing.assert_allclose(cosine_scores(emb[e_rows], emb[t_rows]), got, atol=1e-6)


def test_score_trials_names_the_first_missing_key():
    rng = np.random.default_rng(1)
    keys, index, trials = _trial_list(rng, n_trials=10)
    emb = rng.normal(size=(len(keys), 8))
    bad = trials.copy()
    bad.loc[3, "test"] = "id99999/x/00001.wav"
    bad.loc[5, "enroll"] = "id99999/y/00002.wav"
    bad.loc[7, "enroll"] = "id99999/x/00001.wav"
    with pytest.raises(KeyError, match=r"trial 3: key 'id99999/x/00001.wav'.* 2 distinct key\(s\) missing.* 3 of 10"):
        score_trials(emb, index, bad)
    with pytest.raises(ValueError, match="outside"):
        score_trials(emb, {**index, keys[0]: len(keys)}, trials)
    with pytest.raises(ValueError, match="column"):
        score_trials(emb, index, trials.drop(columns="test"))


def test_cosine_zero_rows_and_fusion():
    assert cosine_scores([[3.0, 4.0], [0.0, 0.0]], [[4.0, 3.0], [1.0, 0.0]]).tolist() == [pytest.approx(0.96), 0.0]
    with pytest.raises(ValueError, match="shapes"):
        cosine_scores(np.ones((2, 3)), np.ones((3, 3)))
    assert fuse_scores([0.2, 0.4], [0.6, 0.0]).tolist() == pytest.approx([0.4, 0.2])
    with pytest.raises(ValueError, match="equal length"):
        fuse_scores([0.2, 0.4], [0.6])
