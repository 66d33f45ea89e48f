"""AS-norm against a direct, loop-by-loop computation of s' = ½((s − μ_e)/σ_e + (s − μ_t)/σ_t)."""
import numpy as np
import pandas as pd
import pytest

from cometa.evaluation.evaluate import evaluate_as_norm
from cometa.metrics import as_norm, as_norm_trials, eer


def _direct(e, t, cohort, top_n):
    def unit(x):
        return np.asarray(x, dtype=np.float64) / np.linalg.norm(x)

    out = []
    for a, b in zip(e, t):
        s = unit(a) @ unit(b)
        stats = []
        for x in (a, b):
            cs = sorted((unit(x) @ unit(c) for c in cohort), reverse=True)[:top_n]
            mu = sum(cs) / len(cs)
            stats.append((mu, (sum((v - mu) ** 2 for v in cs) / len(cs)) ** 0.5))  # population std
        out.append(0.5 * ((s - stats[0][0]) / stats[0][1] + (s - stats[1][0]) / stats[1][1]))
    return np.array(out)


@pytest.mark.parametrize("top_n", [1 + 1, 5, 12, 50])  # 50 > the cohort: the whole cohort
def test_as_norm_matches_a_direct_computation(top_n):
    rng = np.random.default_rng(top_n)
    e, t, cohort = rng.normal(size=(9, 6)), rng.normal(size=(9, 6)), rng.normal(size=(12, 6)) * 3
    np.testing.assert_allclose(as_norm(e, t, cohort, top_n=top_n), _direct(e, t, cohort, top_n), rtol=1e-10)


def test_top_n_beyond_the_cohort_is_the_whole_cohort_and_input_checks():
    rng = np.random.default_rng(1)
    e, t, c = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(7, 3))
    np.testing.assert_array_equal(as_norm(e, t, c, top_n=7), as_norm(e, t, c, top_n=1000))
    with pytest.raises(ValueError, match="top_n"):
        as_norm(e, t, c, top_n=0)
    with pytest.raises(ValueError, match="dimensions"):
        as_norm(e, t, c[:, :2], top_n=3)


def test_as_norm_trials_and_evaluation_agree_with_pairwise_as_norm():
    rng = np.random.default_rng(2)
    keys = [f"u{i}" for i in range(10)]
    emb = rng.normal(size=(10, 5))
    cohort = rng.normal(size=(20, 5))
    trials = pd.DataFrame({"label": [1, 0, 1, 0, 1, 0], "enroll": ["u0", "u1", "u2", "u3", "u4", "u0"],
                           "test": ["u5", "u6", "u7", "u8", "u9", "u9"]})
    index = {k: i for i, k in enumerate(keys)}
    e, t = emb[[index[k] for k in trials["enroll"]]], emb[[index[k] for k in trials["test"]]]
    expected = as_norm(e, t, cohort, top_n=8)
    np.testing.assert_allclose(as_norm_trials(emb, index, trials, cohort, top_n=8), expected, rtol=1e-12)
    m = evaluate_as_norm(keys, {"audio": emb, "visual": emb * 2}, {"O": trials},
                         {"audio": cohort, "visual": np.vstack([cohort, np.full((1, 5), np.nan)])}, top_n=8,
                         p_targets=[0.01])
    got = m.set_index(["modality", "name"])["value"]
    assert got[("audio", "eer_asnorm")] == pytest.approx(eer(expected, trials["label"].to_numpy())[0])
    assert got[("fused", "eer_asnorm")] == pytest.approx(got[("audio", "eer_asnorm")])  # same scores, NaN row dropped
    assert set(m["name"]) == {"eer_asnorm", "min_dcf_0.01_asnorm"}


def test_a_cohort_sharing_test_speakers_is_refused_naming_them():
    """AS-norm's cohort is drawn from the training utterances: a training set that holds test speakers
    (a user-supplied corpus) is refused, naming them, before anything is embedded or written."""
    from types import SimpleNamespace

    from cometa.config import ConfigError
    from cometa.evaluation.evaluate import CohortOverlapError, check_cohort_speakers
    from cometa.pipeline.analysis import as_norm_round

    check_cohort_speakers(["id1", "id2", "id2"], ["id3", "id4"])  # disjoint: accepted
    with pytest.raises(CohortOverlapError, match=r"share 2 speaker\(s\): id2, id4; .*evaluation.as_norm"):
        check_cohort_speakers(["id1", "id2", "id4"], ["id4", "id2", "id9"])
    with pytest.raises(ConfigError, match=r"share 12 speaker\(s\): s00, s01, .*, s09 and 2 more"):
        check_cohort_speakers([f"s{i:02d}" for i in range(12)], [f"s{i:02d}" for i in range(20)])

    corpus = SimpleNamespace(train=pd.DataFrame({"speaker": ["a", "b", "c"], "key": ["a/1", "b/1", "c/1"]}),
                             test=pd.DataFrame({"speaker": ["c", "d"], "key": ["c/2", "d/1"]}))
    ctx = SimpleNamespace(corpus=corpus, cfg=None, store=None)  # nothing else may be reached
    with pytest.raises(CohortOverlapError, match=r"share 1 speaker\(s\): c;"):
        as_norm_round(ctx, "baseline", 1)


def test_evaluation_computes_cohort_statistics_once_per_modality_for_all_lists(monkeypatch):
    """O, E and H share their utterances: one cohort pass per modality over the rows some list names
    (unnamed rows are not scored), and the scores still equal the pairwise as_norm of each list."""
    import cometa.evaluation.metrics as M

    rng = np.random.default_rng(3)
    keys = [f"u{i}" for i in range(12)]  # u10, u11: in no list
    emb, cohort = rng.normal(size=(12, 5)), rng.normal(size=(30, 5))
    lists = {"O": pd.DataFrame({"label": [1, 0, 1, 0], "enroll": ["u0", "u1", "u2", "u0"],
                                "test": ["u3", "u4", "u5", "u5"]}),
             "E": pd.DataFrame({"label": [0, 1, 0, 1], "enroll": ["u6", "u7", "u0", "u8"],
                                "test": ["u9", "u9", "u7", "u1"]})}
    seen = []
    real = M.cohort_stats

    def counted(x, c, *, top_n, **kw):
        seen.append(len(x))
        return real(x, c, top_n=top_n, **kw)

    monkeypatch.setattr(M, "cohort_stats", counted)
    m = evaluate_as_norm(keys, {"audio": emb}, lists, {"audio": cohort}, top_n=6, p_targets=[0.01])
    assert seen == [10]  # one pass, the 10 named utterances
    index = {k: i for i, k in enumerate(keys)}
    for name, tr in lists.items():
        e, t = emb[[index[k] for k in tr["enroll"]]], emb[[index[k] for k in tr["test"]]]
        expected = as_norm(e, t, cohort, top_n=6)
        got = m.set_index(["list", "modality", "name"])["value"][(name, "audio", "eer_asnorm")]
        assert got == pytest.approx(eer(expected, tr["label"].to_numpy())[0])
        mu, sd = M.used_cohort_stats(emb, index, lists.values(), cohort, top_n=6)
        assert np.isnan(mu[10:]).all() and np.isfinite(mu[:10]).all()
        np.testing.assert_allclose(as_norm_trials(emb, index, tr, cohort, top_n=6, stats=(mu, sd)), expected,
                                   rtol=1e-12)
