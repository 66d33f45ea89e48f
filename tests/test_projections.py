"""cometa.core.projections: Procrustes recovers a known rigid motion; the subsample cap; determinism."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cometa.core.projections import (
    ProjectionConfig,
    procrustes_fit,
    project_round,
    project_rounds,
    projection_labels,
    subsample_keys,
)
from cometa.results.figures import label_correct, projection_frame


def _rotation(theta: float) -> np.ndarray:
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


@pytest.mark.parametrize("theta", [0.3, 2.0, -1.2])
def test_procrustes_recovers_rotation_and_translation(theta):
    rng = np.random.default_rng(1)
    src = rng.normal(size=(50, 2))
    rot, t = _rotation(theta), np.array([3.0, -7.5])
    dst = src @ rot + t
    r_hat, t_hat = procrustes_fit(src, dst)
    np.testing.assert_allclose(r_hat, rot, atol=1e-10)
    np.testing.assert_allclose(t_hat, t, atol=1e-10)
    np.testing.assert_allclose(src @ r_hat + t_hat, dst, atol=1e-10)


def test_procrustes_recovers_reflection():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(30, 2))
    flip = np.array([[1.0, 0.0], [0.0, -1.0]]) @ _rotation(0.7)
    r_hat, t_hat = procrustes_fit(src, src @ flip)
    np.testing.assert_allclose(r_hat, flip, atol=1e-10)
    np.testing.assert_allclose(t_hat, 0, atol=1e-10)


def test_procrustes_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        procrustes_fit(np.zeros((3, 2)), np.zeros((4, 2)))


def test_subsample_is_keyed_not_positional():
    keys = [f"spk{i % 7}/v/{i:04d}.wav" for i in range(500)]
    a = subsample_keys(keys, 100, seed=0)
    assert len(a) == 100 and np.all(np.diff(a) > 0)
    perm = np.random.default_rng(0).permutation(len(keys))
    b = subsample_keys([keys[i] for i in perm], 100, seed=0)
    assert {keys[i] for i in a} == {keys[perm[i]] for i in b}  # same utterances whatever the order
    assert set(subsample_keys(keys, 100, seed=1)) != set(a)
    assert len(subsample_keys(keys, 1000, seed=0)) == 500


def _clusters(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 16)) * 4
    return centres[np.arange(n) % 6] + rng.normal(size=(n, 16)) + shift


def test_project_round_caps_aligns_and_is_deterministic():
    cfg = ProjectionConfig(max_points=120, n_neighbors=8)
    keys = [f"s{i % 6}/v/{i:04d}.wav" for i in range(200)]
    e1, e2 = _clusters(200, 0), _clusters(200, 0) * 1.01
    r1 = project_round(None, e1, keys, cfg=cfg, seed=3)
    assert list(r1.columns) == ["key", "x", "y", "n_total"]
    assert len(r1) == 120 and (r1["n_total"] == 200).all()
    assert r1.attrs["max_points"] == 120 and r1.attrs["aligned_on"] == 0
    r2 = project_round(r1, e2, keys, cfg=cfg, seed=3)
    assert r2.attrs["aligned_on"] == 120 and list(r2["key"]) == list(r1["key"])
    again = project_rounds([e1, e2], cfg=cfg, seed=3, keys_by_round=[keys, keys])
    np.testing.assert_array_equal(again[0][["x", "y"]].to_numpy(), r1[["x", "y"]].to_numpy())
    np.testing.assert_array_equal(again[1][["x", "y"]].to_numpy(), r2[["x", "y"]].to_numpy())
    # aligned: round 2 is its own unaligned layout moved by the rotation and translation that bring
    # it closest to round 1 in squared distance (Procrustes), so never farther than unmoved. (The mean
    # distance has no such guarantee: on one AVX-512 machine UMAP placed the six clusters elsewhere and
    # the aligned layout was 3 % farther by it, 8.88 against 8.59.)
    unaligned = project_round(None, e2, keys, cfg=cfg, seed=3)
    xy1, xy2, raw = (p[["x", "y"]].to_numpy() for p in (r1, r2, unaligned))
    rot, t = procrustes_fit(raw, xy1)
    np.testing.assert_allclose(xy2, raw @ rot + t, rtol=0, atol=1e-9)
    assert np.allclose(rot @ rot.T, np.eye(2)) and ((xy2 - xy1) ** 2).sum() <= ((raw - xy1) ** 2).sum() + 1e-9


def test_project_round_tiny_input_falls_back_to_pca():
    cfg = ProjectionConfig(max_points=10, n_neighbors=15)
    out = project_round(None, _clusters(8, 0), [f"k{i}" for i in range(8)], cfg=cfg, seed=0)
    assert out.shape == (8, 4) and np.isfinite(out[["x", "y"]].to_numpy()).all()


def test_projection_labels_by_hand_and_as_the_join_with_the_whole_round():
    # consensus: cluster 0 = a a b (majority a), cluster 1 = b c (tie: b seen first); u5 dropped
    labels = pd.DataFrame({"key": [f"u{i}" for i in range(6)], "speaker": ["a", "a", "b", "b", "c", "c"],
                           "audio": [0, 0, 0, 1, 1, 1], "visual": [0, 1, 0, 1, 1, -1], "joint": [0, 0, 0, 1, 1, 1],
                           "consensus": [0, 0, 0, 1, 1, -1]})
    proj = pd.DataFrame({"key": ["u5", "u2", "u3", "u4", "zz"], "x": [0.0, 1, 2, 3, 4], "y": [4.0, 3, 2, 1, 0],
                         "n_total": 6, "view": "joint"})  # zz: a key the labels lack
    out = projection_labels(proj, labels)
    assert out["speaker"].tolist()[:4] == ["c", "b", "b", "c"] and pd.isna(out["speaker"].iloc[4])
    assert out["consensus"].tolist()[:4] == [-1, 0, 1, 1]
    assert out["correct_consensus"].tolist()[1:4] == [0.0, 1.0, 0.0]  # u2 b in a's cluster; u4 c in b's
    assert out["correct_consensus"].isna().tolist() == [True, False, False, False, True]
    # visual: cluster 0 = a b, cluster 1 = a b c: ties, a seen first in both, so u2, u3, u4 are wrong
    assert out["correct_visual"].tolist()[1:4] == [0.0, 0.0, 0.0] and pd.isna(out["correct_visual"].iloc[0])
    for column in ("audio", "visual", "joint", "consensus"):  # the same as the whole table's label_correct
        want = label_correct(labels.set_index("key"), column).reindex(proj["key"])
        np.testing.assert_array_equal(out[f"correct_{column}"].to_numpy()[:4], want.to_numpy()[:4])  # NaN too
        carried = projection_frame(out.iloc[:4], None, label_column=column)
        joined = projection_frame(proj.iloc[:4], labels, label_column=column)
        pd.testing.assert_frame_equal(carried, joined, check_dtype=False)
    with pytest.raises(ValueError, match="pass the round's labels"):
        projection_frame(proj, None)
