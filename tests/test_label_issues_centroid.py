"""The scalable label-issue scores (``evaluation.label_issues.method: centroid``): the sparse scores and
flags against cleanlab on the same probabilities made dense, the leave-one-out property, ranking quality
against the exact k-fold regression on seeded noisy clusters with a known error mask, and the config's
hashing (the new keys key nothing at their default)."""
from pathlib import Path

import numpy as np
import pytest
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from cometa.config import load_config
from cometa.core.label_issues import (
    SCORE_METHODS,
    centroid_probs,
    label_issue_scores,
    out_of_sample_probs,
    ranking_quality,
    sparse_flag_label_issues,
    sparse_label_issue_scores,
)
from cometa.core.label_quality import wrong_label_mask
from cometa.pipeline.plan import plan_steps
from cometa.pipeline.run import resolve_config


def _noisy_sessions(seed, *, k=40, per_class=25, sessions=5, spread=4.0, flip=0.25, dim=192):
    """Demo-like clusters: k speakers x ``per_class`` utterances over ``sessions`` sessions each (a
    session offset per (speaker, session)), a fraction ``flip`` relabelled uniformly to another class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    true = np.repeat(np.arange(k), per_class)
    offsets = rng.normal(size=(k * sessions, dim)) * 0.5
    x = centres[true] + offsets[true * sessions + rng.integers(0, sessions, true.size)]
    x += rng.normal(size=x.shape) * spread
    labels = true.copy()
    wrong = rng.random(true.size) < flip
    labels[wrong] = (true[wrong] + rng.integers(1, k, wrong.sum())) % k
    return x, labels, wrong


def test_sparse_scores_and_flags_are_cleanlabs_on_the_dense_matrix():
    x, labels, _ = _noisy_sessions(0)
    full = centroid_probs(x, labels, top_k=40)  # every class kept: the dense softmax
    dense = full.toarray()
    np.testing.assert_allclose(dense.sum(axis=1), 1.0, atol=1e-5)
    scores = sparse_label_issue_scores(labels, full)
    for m in SCORE_METHODS:
        np.testing.assert_allclose(scores[m], get_label_quality_scores(labels, dense, method=m), atol=1e-12)
    flagged = sparse_flag_label_issues(labels, full)
    expected = find_label_issues(labels, dense, filter_by="confident_learning")
    assert flagged.sum() > 20 and np.array_equal(flagged, expected)
    # top_k = 10: the scores keep their exact values; the flags too, as every class threshold is > 1/11
    small = centroid_probs(x, labels, top_k=10)
    assert small.nnz <= 11 * len(labels)
    for m in SCORE_METHODS:
        np.testing.assert_allclose(sparse_label_issue_scores(labels, small)[m], scores[m], atol=1e-12)
    own = dense[np.arange(len(labels)), labels]
    assert min(own[labels == c].mean() for c in range(40)) > 1 / 11
    assert np.array_equal(sparse_flag_label_issues(labels, small), flagged)


def test_each_row_is_scored_by_centroids_without_it():
    # a copy of sample 0 labelled with a class of its own far away: with itself in that class's centroid its
    # cosine there would be 1; without it the class is empty and sample 0's true class wins
    x, labels, _ = _noisy_sessions(1, spread=1.0, flip=0.0)
    x = np.vstack([x, x[:1]])
    labels = np.append(labels, 40)
    probs = centroid_probs(x, labels, top_k=41).toarray()
    assert probs[-1, 40] < 1e-4 and probs[-1, labels[0]] > 0.9


@pytest.mark.parametrize("seed,spread", [(0, 3.0), (1, 4.0), (2, 6.0)])
def test_centroid_ranks_the_wrong_labels_at_least_as_well_as_the_kfold_regression(seed, spread):
    x, labels, wrong = _noisy_sessions(seed, spread=spread)
    exact = label_issue_scores(labels, out_of_sample_probs(x, labels, n_folds=5, seed=0))
    scalable = sparse_label_issue_scores(labels, centroid_probs(x, labels))
    for m in SCORE_METHODS:
        (auroc_e, ap_e), (auroc_c, ap_c) = ranking_quality(exact[m], wrong), ranking_quality(scalable[m], wrong)
        assert auroc_c >= auroc_e - 0.02 and ap_c >= ap_e - 0.02, (m, auroc_e, auroc_c, ap_e, ap_c)
        assert auroc_c > 0.6  # the noise is found at all (hand-checked: 0.83-0.97 here)


def test_the_new_keys_hash_only_with_the_centroid_method():
    def analysis_sections(overrides=()):
        cfg = resolve_config("demo", overrides=list(overrides))
        return {s.name: s for s in plan_steps(cfg, Path("/tmp/run")) if s.name.startswith("analysis/")}

    base = analysis_sections()
    # at the default the section is what it was before the method existed: finished runs stay complete
    assert set(base["analysis/cometa"].sections["evaluation"]["label_issues"]) == {"enabled", "n_folds", "max_iter"}
    same = analysis_sections(["evaluation.label_issues.method=exact", "evaluation.label_issues.top_k=4"])
    assert {n: s.inputs_hash for n, s in same.items()} == {n: s.inputs_hash for n, s in base.items()}
    other = analysis_sections(["evaluation.label_issues.method=centroid"])
    assert all(other[n].inputs_hash != base[n].inputs_hash for n in base if n != "analysis/stage1")
    assert load_config("paper").evaluation.label_issues.method == "centroid"


def test_the_analysis_step_scores_a_finished_round_with_the_centroid_method(run_copy, sqlite_scalars):
    import pandas as pd
    import yaml

    from cometa.pipeline.analysis import label_issues_round
    from cometa.pipeline.steps import RunContext

    run = run_copy("centroid")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["evaluation"]["label_issues"].update(method="centroid", top_k=4)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = label_issues_round(RunContext(run, progress=False), "cometa", 2)
    # the same scores computed here from the round's files
    table = pd.read_parquet(run / "cometa" / "round_2" / "labels.parquet")
    emb = np.load(run / "cometa" / "round_2" / "embeddings.npz")
    kept = table["consensus"].to_numpy() >= 0
    labels, _ = pd.factorize(table["consensus"].to_numpy()[kept], sort=True)
    wrong = wrong_label_mask(table["speaker"].to_numpy()[kept], labels)
    stored = sqlite_scalars(run)
    stored = stored[(stored["stage"] == "label_issues/self_confidence") & (stored["name"] == "label_issue_auroc")
                    & (stored["round"] == 2) & (stored["strategy"] == "cometa")].set_index("modality")["value"]
    assert sorted(stored.index) == ["audio", "joint", "visual"]
    for view in ("audio", "visual", "joint"):
        x = np.nan_to_num(emb[view].astype(np.float64)[kept])
        probs = centroid_probs(x, labels, top_k=4)
        mine = out[out["view"] == view]
        expected = sparse_label_issue_scores(labels, probs)
        np.testing.assert_allclose(mine["self_confidence"], expected["self_confidence"])
        np.testing.assert_array_equal(mine["flagged"], sparse_flag_label_issues(labels, probs))
        auroc = ranking_quality(expected["self_confidence"], wrong)[0]
        np.testing.assert_allclose(stored[view], auroc, equal_nan=True)
