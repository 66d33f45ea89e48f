"""Lines 7-9 and 13 of Algorithm 1: disagreement (Eq. 3), small-loss selection, the λ(e) schedule."""
import math

import numpy as np
import pytest
import torch

from cometa.core.schedules import keep_ratio, keep_ratio_in_epoch, keep_ratio_schedule, lr_schedule
from cometa.core.selection import disagreement, n_selected, selection_overlap, small_loss


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_disagreement_all_agree_all_disagree_and_mixed(kind):
    wrap = (lambda x: np.array(x)) if kind == "numpy" else (lambda x: torch.tensor(x))
    a = [0, 1, 2, 3, 4]
    cases = [(a, a, []), (a, [1, 2, 3, 4, 0], [0, 1, 2, 3, 4]), (a, [0, 2, 2, 0, 4], [1, 3])]
    for pa, pv, expected in cases:
        got = disagreement(wrap(pa), wrap(pv))
        if kind == "torch":
            assert isinstance(got, torch.Tensor) and got.dtype == torch.int64 and got.device == torch.device("cpu")
        else:
            assert isinstance(got, np.ndarray) and got.dtype == np.int64
        assert got.tolist() == expected
    assert disagreement(wrap([]), wrap([])).tolist() == []
    with pytest.raises(ValueError, match="shapes"):
        disagreement(wrap(a), wrap(a[:2]))


def test_disagreement_matches_a_direct_loop_on_random_predictions():
    rng = np.random.default_rng(0)
    pa, pv = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    expected = [i for i in range(200) if pa[i] != pv[i]]
    assert disagreement(pa, pv).tolist() == expected
    assert disagreement(torch.from_numpy(pa), torch.from_numpy(pv)).tolist() == expected


def test_small_loss_ties_are_stable_and_sorted_by_loss():
    losses = [0.5, 0.1, 0.5, 0.1, 0.9]
    assert small_loss(np.array(losses), 0.6).tolist() == [1, 3, 0]  # ⌈3.0⌉ = 3; tie 0.5: index 0 before 2
    assert small_loss(np.array(losses), 0.7).tolist() == [1, 3, 0, 2]  # ⌈3.5⌉ = 4
    t = small_loss(torch.tensor(losses, requires_grad=True), 0.7)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int64 and t.tolist() == [1, 3, 0, 2]
    # all tied: the first k indices, in order
    assert small_loss(np.zeros(9), 0.5).tolist() == [0, 1, 2, 3, 4]
    assert small_loss(torch.zeros(9), 0.5).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("ratio,n,expected", [
    (0.8, 10, 8),         # 0.8 · 10 = 8 exactly: 8, not 9
    (0.56, 100, 56),      # 0.56 · 100 = 56.00000000000001 in floats: still 56
    (0.7, 10, 7), (0.75, 10, 8), (0.01, 10, 1), (0.98, 3, 3), (0.9, 1, 1),
    (0.0, 10, 0), (1e-12, 10, 0),   # ratios whose count rounds to 0
    (1.0, 10, 10), (0.99, 10, 10),  # ... and to n
    (0.5, 0, 0),                    # nothing to select from
])
def test_keep_counts_round_up_without_float_noise(ratio, n, expected):
    assert n_selected(n, ratio) == expected
    assert len(small_loss(np.arange(n, dtype=float)[::-1].copy(), ratio)) == expected
    assert len(small_loss(torch.arange(n, dtype=torch.float32), ratio)) == expected


def test_empty_losses_give_empty_indices():
    got = small_loss(np.array([]), 0.8)
    assert got.dtype == np.int64 and got.shape == (0,)
    t = small_loss(torch.empty(0), 0.8)
    assert t.dtype == torch.int64 and t.shape == (0,)


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan"), float("inf")])
def test_bad_keep_ratio_raises(bad):
    for losses in (np.zeros(3), torch.zeros(3)):
        with pytest.raises(ValueError, match="keep_ratio"):
            small_loss(losses, bad)


def test_small_loss_matches_a_direct_sort_and_torch():
    rng = np.random.default_rng(0)
    for _ in range(30):
        x = np.round(rng.random(int(rng.integers(1, 60))), 1)  # many ties
        r = float(rng.random())
        k = math.ceil(round(r * x.size, 9))
        expected = sorted(range(x.size), key=lambda i: (x[i], i))[:k]  # independent: (loss, index) order
        assert small_loss(x, r).tolist() == expected
        assert small_loss(torch.tensor(x), r).tolist() == expected


def test_selection_overlap():
    assert selection_overlap(np.array([1, 2, 3]), np.array([2, 3, 4])) == 0.5  # {2,3} / {1,2,3,4}
    assert selection_overlap(torch.tensor([1, 2]), np.array([3])) == 0.0
    assert selection_overlap([5, 5, 6], [6, 5]) == 1.0  # repeats count once
    assert selection_overlap(np.array([7]), np.array([], dtype=np.int64)) == 0.0
    assert math.isnan(selection_overlap(np.array([], dtype=np.int64), torch.tensor([], dtype=torch.int64)))


def test_keep_ratio_values():
    # λ(e) = 1 − min(e / E_k · τ, τ), τ = 0.2, E_k = 10
    for e, lam in [(1, 0.98), (5, 0.9), (10, 0.8), (11, 0.8), (200, 0.8)]:
        assert keep_ratio(e, tau=0.2, e_k=10) == pytest.approx(lam, abs=1e-15)
    assert keep_ratio(3, tau=0.0, e_k=10) == 1.0  # no noise assumed: keep everything
    assert keep_ratio(1, tau=1.0, e_k=1) == 0.0


def test_keep_ratio_schedule_array():
    sched = keep_ratio_schedule(200, tau=0.2, e_k=10)
    assert sched.shape == (200,) and sched.dtype == np.float64
    assert sched[[0, 4, 9, 10, 199]] == pytest.approx([0.98, 0.9, 0.8, 0.8, 0.8], abs=1e-15)
    assert np.all(np.diff(sched) <= 0)
    np.testing.assert_array_equal(sched, [keep_ratio(e, tau=0.2, e_k=10) for e in range(1, 201)])
    np.testing.assert_array_equal(keep_ratio_schedule(7, tau=0.3, e_k=4),
                                  [keep_ratio(e, tau=0.3, e_k=4) for e in range(1, 8)])
    assert keep_ratio_schedule(0).shape == (0,)


@pytest.mark.parametrize("bad", [dict(epoch=0), dict(epoch=-1), dict(epoch=1, tau=1.5), dict(epoch=1, tau=-0.1),
                                 dict(epoch=1, tau=float("nan")), dict(epoch=1, e_k=0), dict(epoch=1, e_k=-3)])
def test_keep_ratio_bad_arguments_raise(bad):
    with pytest.raises(ValueError):
        keep_ratio(**bad)
    if "epoch" in bad and len(bad) > 1:
        with pytest.raises(ValueError):
            keep_ratio_schedule(10, **{k: v for k, v in bad.items() if k != "epoch"})


def test_lambda_of_an_epoch_is_the_one_line_13_set_after_the_epoch_before():
    # epoch 1 trains with λ = 1; epoch e with λ(e - 1) (Algorithm 1 updates λ after the epoch's batches)
    assert keep_ratio_in_epoch(1, tau=0.2, e_k=10) == 1.0
    for e in range(2, 30):
        assert keep_ratio_in_epoch(e, tau=0.2, e_k=10) == keep_ratio(e - 1, tau=0.2, e_k=10)
    assert keep_ratio_in_epoch(2, tau=0.2, e_k=10) == pytest.approx(0.98, abs=1e-15)
    assert keep_ratio_in_epoch(11, tau=0.2, e_k=10) == pytest.approx(0.8, abs=1e-15)
    with pytest.raises(ValueError):
        keep_ratio_in_epoch(0)


def test_lr_schedule_warmup_then_cosine_against_the_formula():
    base, spe, epochs, warm, r = 0.1, 5, 4, 1.0, 0.05
    lrs = lr_schedule(base, epochs=epochs, steps_per_epoch=spe, kind="cosine", warmup_epochs=warm, final_ratio=r)
    assert lrs.shape == (20,)
    np.testing.assert_allclose(lrs[:5], base * np.arange(1, 6) / 5, rtol=0, atol=1e-15)  # linear warm-up to base
    t = np.arange(5, 20)
    p = (t - 5) / 14  # 0 at the first step after warm-up, 1 at the last step
    np.testing.assert_allclose(lrs[5:], base * (r + (1 - r) * 0.5 * (1 + np.cos(np.pi * p))), rtol=0, atol=1e-15)
    assert lrs[5] == pytest.approx(base) and lrs[-1] == pytest.approx(base * r)


def test_lr_schedule_exponential_and_constant():
    lrs = lr_schedule(1e-3, epochs=3, steps_per_epoch=4, kind="exponential", warmup_epochs=0, final_ratio=0.01)
    np.testing.assert_allclose(lrs, 1e-3 * 0.01 ** (np.arange(12) / 11), rtol=1e-12)
    const = lr_schedule(1e-3, epochs=2, steps_per_epoch=3, kind="constant", warmup_epochs=0.5)
    np.testing.assert_allclose(const, [1e-3 / 2, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])  # round(0.5 * 3) = 2 warm-up steps
    assert lr_schedule(1e-3, epochs=0, steps_per_epoch=5).shape == (0,)
    one = lr_schedule(1e-3, epochs=1, steps_per_epoch=1, warmup_epochs=5)  # warm-up capped: the step runs at base
    np.testing.assert_allclose(one, [1e-3])
    for bad in (dict(kind="step"), dict(final_ratio=0.0), dict(final_ratio=1.5)):
        with pytest.raises(ValueError):
            lr_schedule(1e-3, epochs=2, steps_per_epoch=2, **bad)


def test_stage2_lr_scope_round_restarts_and_stage_slices_one_schedule():
    """stage2.lr_scope: ``round`` repeats one round's schedule; ``stage`` cuts one schedule over all
    rounds · epochs_per_round epochs into the rounds' slices (against the formula, written out)."""
    from cometa.config.sections import LRScheduleConfig, Stage2Config
    from cometa.train.stage2 import round_lr_schedule

    s2 = Stage2Config(rounds=3, epochs_per_round=2, beta=0.1,
                      lr_schedule=LRScheduleConfig(kind="cosine", warmup_epochs=1.0, final_ratio=0.1))
    spe, r = 4, 0.1
    per_round = [round_lr_schedule(s2, k, spe) for k in (1, 2, 3)]
    t = np.arange(8)  # one round: 4 warm-up steps, then the cosine over steps 4..7
    one_round = np.where(t < 4, 0.1 * (t + 1) / 4, 0.1 * (r + (1 - r) * 0.5 * (1 + np.cos(np.pi * (t - 4) / 3))))
    for lrs in per_round:
        np.testing.assert_allclose(lrs, one_round, rtol=0, atol=1e-15)
    s2.lr_scope = "stage"
    per_round = [round_lr_schedule(s2, k, spe) for k in (1, 2, 3)]
    assert [len(x) for x in per_round] == [8, 8, 8]
    t = np.arange(24)  # the stage: 4 warm-up steps, then one cosine over steps 4..23
    stage = np.where(t < 4, 0.1 * (t + 1) / 4, 0.1 * (r + (1 - r) * 0.5 * (1 + np.cos(np.pi * (t - 4) / 19))))
    np.testing.assert_allclose(np.concatenate(per_round), stage, rtol=0, atol=1e-15)
    assert per_round[1][0] < 0.1 and per_round[2][-1] == pytest.approx(0.1 * r)  # no second warm-up; one decay


def _adam_update(p0, g, m0, v0, t0, lr, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam step written out (Kingma & Ba, Algorithm 1) from moments m0, v0 after t0 steps."""
    m, v, t = b1 * m0 + (1 - b1) * g, b2 * v0 + (1 - b2) * g * g, t0 + 1
    return p0 - lr * (m / (1 - b1 ** t)) / (torch.sqrt(v / (1 - b2 ** t)) + eps)


def test_optimizer_scope_stage_carries_the_encoders_adam_moments_not_the_heads():
    """stage2.optimizer_scope: stage: the next round's Adam continues the encoder's moments and step
    count (its first update is Adam's step t0 + 1 from them, against the formula written out), while
    the new head starts empty (step 1: a step of ~lr along -sign(g))."""
    from torch import nn

    from cometa.core.strategies import SpeakerClassifier
    from cometa.train.stage2 import adam_moments, carry_moments

    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(5, 4))
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    old = SpeakerClassifier(encoder, 4, 3, margin=0.2, scale=30)
    opt = torch.optim.Adam(old.parameters(), lr=0.01)
    for _ in range(3):  # round r: three steps
        opt.zero_grad()
        old(x, y)[1].mean().backward()
        opt.step()
    moments = adam_moments(old, opt)
    assert set(moments) == {"encoder.0.weight", "encoder.0.bias"}  # the head's are not carried
    assert all(float(s["step"]) == 3 for s in moments.values())

    new = SpeakerClassifier(encoder, 4, 3, margin=0.2, scale=30)  # round r + 1: same encoder, new head
    opt2 = torch.optim.Adam(new.parameters(), lr=0.01)
    assert carry_moments(new, opt2, moments) == 5 * 4 + 4  # parameter values carried
    before = {n: p.detach().clone() for n, p in new.named_parameters()}
    opt2.zero_grad()
    new(x, y)[1].mean().backward()
    grads = {n: p.grad.detach().clone() for n, p in new.named_parameters()}
    opt2.step()
    for name, p in new.named_parameters():
        if name.startswith("encoder."):
            s = moments[name]
            want = _adam_update(before[name], grads[name], s["exp_avg"], s["exp_avg_sq"], 3, 0.01)
        else:  # the head: Adam's first step from zero moments
            want = _adam_update(before[name], grads[name], 0.0, 0.0, 0, 0.01)
        torch.testing.assert_close(p.detach(), want, rtol=1e-5, atol=1e-7)
    assert float(opt2.state[new.encoder[0].weight]["step"]) == 4 and float(opt2.state[new.head.weight]["step"]) == 1
    # the saved moments are copies: stepping the new optimiser left them as they were
    assert float(moments["encoder.0.weight"]["step"]) == 3

    wrong = {"encoder.0.weight": {k: v[:2] if v.ndim else v for k, v in moments["encoder.0.weight"].items()}}
    with pytest.raises(ValueError, match=r"encoder\.0\.weight: shape \(2, 5\)"):
        carry_moments(new, torch.optim.Adam(new.parameters()), wrong)


def test_optimizer_scope_stage_starts_the_reinitialised_distill_map_from_empty_moments():
    """With a peer teacher each round builds a new, randomly initialised distill_map: Adam's moments
    of the old map belong to another parameter, so round r + 1's first update of the map is Adam's
    first step (zero moments), while the encoder continues from its carried moments."""
    from torch import nn

    from cometa.core.strategies import SpeakerClassifier
    from cometa.train.stage2 import adam_moments, carry_moments

    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(5, 4))
    x, y, t = torch.randn(8, 5), torch.randint(0, 3, (8,)), torch.randn(8, 6)

    def loss(model):
        _, ce, dist = model(x, y, teacher=t)
        return (ce + dist).mean()

    old = SpeakerClassifier(encoder, 4, 3, margin=0.2, scale=30, teacher_dim=6)
    opt = torch.optim.Adam(old.parameters(), lr=0.01)
    for _ in range(3):  # round r
        opt.zero_grad()
        loss(old).backward()
        opt.step()
    moments = adam_moments(old, opt)
    assert set(moments) == {"encoder.0.weight", "encoder.0.bias"}  # neither the head's nor the map's

    new = SpeakerClassifier(encoder, 4, 3, margin=0.2, scale=30, teacher_dim=6)  # round r + 1: new head and map
    opt2 = torch.optim.Adam(new.parameters(), lr=0.01)
    assert carry_moments(new, opt2, moments) == 5 * 4 + 4
    before = {n: p.detach().clone() for n, p in new.named_parameters()}
    opt2.zero_grad()
    loss(new).backward()
    grads = {n: p.grad.detach().clone() for n, p in new.named_parameters()}
    opt2.step()
    assert grads["distill_map.weight"].abs().sum() > 0
    for name, p in new.named_parameters():
        if name.startswith("encoder."):
            s = moments[name]
            want = _adam_update(before[name], grads[name], s["exp_avg"], s["exp_avg_sq"], 3, 0.01)
        else:  # the head and the map: Adam's first step from zero moments
            want = _adam_update(before[name], grads[name], 0.0, 0.0, 0, 0.01)
        torch.testing.assert_close(p.detach(), want, rtol=1e-5, atol=1e-7)
    assert float(opt2.state[new.distill_map.weight]["step"]) == 1
