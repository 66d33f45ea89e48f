"""Lines 7-9 and 13 of Algorithm 1: disagreement, small-loss selection, the λ(e) schedule."""
import numpy as np
import pytest
import torch

from cometa.schedules import keep_ratio, keep_ratio_schedule
from cometa.selection import disagreement, n_selected, selection_overlap, small_loss


def test_disagreement_all_agree_all_disagree_and_mixed():
    a = np.array([0, 1, 2, 3])
    assert disagreement(a, a.copy()).tolist() == []
    assert disagreement(a, a + 1).tolist() == [0, 1, 2, 3]
    assert disagreement(a, np.array([0, 2, 2, 0])).tolist() == [1, 3]
    t = disagreement(torch.tensor([0, 1, 2]), torch.tensor([0, 0, 2]))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int64 and t.tolist() == [1]
    with pytest.raises(ValueError, match="shapes"):
        disagreement(a, a[:2])


def test_small_loss_ties_are_stable_and_sorted_by_loss():
    losses = np.array([0.5, 0.1, 0.5, 0.1, 0.9])
    assert small_loss(losses, 0.6).tolist() == [1, 3, 0]  # ceil(3.0) = 3; tie 0.5: index 0 before 2
    assert small_loss(losses, 0.7).tolist() == [1, 3, 0, 2]  # ceil(3.5) = 4
    t = small_loss(torch.tensor(losses), 0.7)
    assert isinstance(t, torch.Tensor) and t.tolist() == [1, 3, 0, 2]


@pytest.mark.parametrize("ratio,n,expected", [(0.0, 10, 0), (1.0, 10, 10), (0.8, 10, 8), (0.7, 10, 7),
                                              (0.01, 10, 1), (0.99, 10, 10), (0.5, 0, 0), (0.98, 3, 3),
                                              (0.9, 1, 1)])
def test_keep_counts_round_up_without_float_noise(ratio, n, expected):
    assert n_selected(n, ratio) == expected
    assert len(small_loss(np.arange(n, dtype=float), ratio)) == expected


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan")])
def test_bad_keep_ratio_raises(bad):
    with pytest.raises(ValueError, match="keep_ratio"):
        small_loss(np.zeros(3), bad)


def test_numpy_and_torch_agree_on_random_losses():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = np.round(rng.random(int(rng.integers(1, 40))), 1)  # many ties
        r = float(rng.random())
        assert small_loss(x, r).tolist() == small_loss(torch.tensor(x), r).tolist()


def test_selection_overlap():
    assert selection_overlap(np.array([1, 2, 3]), np.array([2, 3, 4])) == 0.5
    assert np.isnan(selection_overlap(np.array([]), np.array([])))


def test_schedule_values():
    # λ(e) = 1 - min(e/E_k * τ, τ), τ = 0.2, E_k = 10
    for e, lam in [(1, 0.98), (5, 0.9), (10, 0.8), (11, 0.8), (200, 0.8)]:
        assert keep_ratio(e, tau=0.2, e_k=10) == pytest.approx(lam)
    sched = keep_ratio_schedule(200, tau=0.2, e_k=10)
    assert sched.shape == (200,) and sched[0] == pytest.approx(0.98) and sched[9] == pytest.approx(0.8)
    assert np.allclose(sched, [keep_ratio(e) for e in range(1, 201)])
    for bad in (dict(epoch=0), dict(epoch=1, tau=1.5), dict(epoch=1, e_k=0)):
        with pytest.raises(ValueError):
            keep_ratio(**bad)
