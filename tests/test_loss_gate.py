"""LGL's fixed gate, DLG's GMM gate and LC's label correction against direct computations, and the
two strategies' steps against the gradient of the loss they should train on."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from cometa.config.sections import DLGLCConfig, LGLConfig
from cometa.core.loss_gate import correct_labels, fit_loss_gmm, fixed_gate, gmm_gate
from cometa.core.strategies import STRATEGIES, Batch, build_strategy
from tests.test_strategies import D_IN as _D_IN_MODELS
from tests.test_strategies import D as _D_MODELS
from tests.test_strategies import K as _K_MODELS
from tests.test_strategies import _models

B, D_IN, D, K = 16, 5, 4, 3  # D_IN, D, K as tests/test_strategies.py, whose _models these tests use


def test_fixed_gate_keeps_losses_at_or_below_the_gate():
    losses = np.array([0.2, 1.0, 1.0000001, 3.0, 0.99])
    np.testing.assert_array_equal(fixed_gate(losses, 1.0), [True, True, False, False, True])
    t = fixed_gate(torch.tensor(losses), 1.0)
    assert t.dtype == torch.bool and t.tolist() == [True, True, False, False, True]
    with pytest.raises(ValueError, match="gate"):
        fixed_gate(losses, 0.0)


@pytest.mark.parametrize("w, m, v, p", [
    ((0.7, 0.3), (1.0, 6.0), (0.5, 2.0), 0.5),
    ((0.4, 0.6), (2.0, 5.0), (1.0, 1.0), 0.5),
    ((0.5, 0.5), (0.5, 4.0), (0.3, 3.0), 0.8),
])
def test_gmm_gate_is_where_the_clean_posterior_reaches_p(w, m, v, p):
    g = gmm_gate(w, m, v, posterior=p)
    # direct: the clean component's posterior on a fine grid between the means, first crossing of p
    x = np.linspace(m[0], m[1], 200001)
    d0, d1 = w[0] * norm.pdf(x, m[0], math.sqrt(v[0])), w[1] * norm.pdf(x, m[1], math.sqrt(v[1]))
    post = d0 / (d0 + d1)
    expected = x[np.flatnonzero(post < p)[0]]
    assert g == pytest.approx(expected, abs=1e-4)
    assert w[0] * norm.pdf(g, m[0], math.sqrt(v[0])) / (w[0] * norm.pdf(g, m[0], math.sqrt(v[0]))
                                                       + w[1] * norm.pdf(g, m[1], math.sqrt(v[1]))) \
        == pytest.approx(p, abs=1e-9)


def test_gmm_gate_equal_variances_closed_form():
    # σ0 = σ1 = σ, p = 1/2: g = (μ0 + μ1)/2 + σ² log(w0/w1) / (μ1 − μ0)
    w, m, s2 = (0.4, 0.6), (2.0, 5.0), 1.0
    assert gmm_gate(w, m, (s2, s2)) == pytest.approx(3.5 + s2 * math.log(0.4 / 0.6) / 3.0, abs=1e-12)


def test_gmm_gate_without_a_crossing_falls_back_to_a_mean():
    # a tiny, wide noisy component: the clean one dominates everywhere between the means
    assert gmm_gate((0.99, 0.01), (1.0, 1.5), (1.0, 4.0)) == 1.5


def test_fit_loss_gmm_recovers_two_components_and_gate_matches_sklearn_posterior():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.normal(1.0, 0.3, 700), rng.normal(5.0, 1.0, 300)])
    w, m, v = fit_loss_gmm(losses, seed=0)
    np.testing.assert_allclose(m, [1.0, 5.0], atol=0.15)
    np.testing.assert_allclose(w, [0.7, 0.3], atol=0.03)
    g = gmm_gate(w, m, v)
    gm = GaussianMixture(2, random_state=0, reg_covar=1e-6).fit(losses[:, None])
    clean = int(np.argmin(gm.means_.ravel()))
    assert gm.predict_proba([[g]])[0, clean] == pytest.approx(0.5, abs=1e-6)
    assert fit_loss_gmm(np.ones(10)) is None and fit_loss_gmm([1.0, 2.0]) is None


def test_correct_labels_hand_case():
    probs = np.array([[0.9, 0.05, 0.05],   # gated in: keeps label 2 whatever it predicts
                      [0.7, 0.2, 0.1],     # above the gate, confident: corrected to 0
                      [0.4, 0.35, 0.25],   # above the gate, unsure: does not train
                      [0.1, 0.8, 0.1]])    # above the gate, confident in its own label: trains with it
    labels, gated = np.array([2, 1, 1, 1]), np.array([True, False, False, False])
    targets, train, corrected = correct_labels(probs, labels, gated, threshold=0.5)
    np.testing.assert_array_equal(targets, [2, 0, 1, 1])
    np.testing.assert_array_equal(train, [True, True, False, True])
    np.testing.assert_array_equal(corrected, [False, True, False, True])
    tt, ttrain, tcorr = correct_labels(torch.tensor(probs), torch.tensor(labels), torch.tensor(gated), threshold=0.5)
    assert tt.tolist() == [2, 0, 1, 1] and ttrain.tolist() == train.tolist() and tcorr.tolist() == corrected.tolist()


# ------------------------------------------------------------------ the strategies' steps


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return Batch(audio=torch.randn(B, D_IN, generator=g, dtype=torch.float64),
                 frames=torch.rand(B, 3, 2, 2, generator=g, dtype=torch.float64),
                 labels=torch.randint(0, K, (B,), generator=g),
                 noisy=torch.arange(B) % 3 == 0, index=torch.arange(B))


def _sgd(strategy):  # lr 1: the parameter change is minus the gradient the strategy used
    strategy.opt_audio = torch.optim.SGD(strategy.audio.parameters(), lr=1.0)
    strategy.opt_visual = torch.optim.SGD(strategy.visual.parameters(), lr=1.0)


def _expected_delta(model, x, targets, train):
    model = model  # the direct computation: mean AAM-softmax loss over the trained samples, its gradient
    logits, _ = model(x, targets)
    losses = model.head.from_cosine(logits / model.head.scale, targets, reduction="none")
    grads = torch.autograd.grad(losses[train].mean(), list(model.parameters()), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(model.parameters(), grads)]


def _check_step(strategy, ref_audio, batch, targets, train):
    before = [p.detach().clone() for p in strategy.audio.parameters()]
    expected = _expected_delta(ref_audio, batch.audio, targets, train)
    stats = strategy.step(batch, keep_ratio=1.0)
    for b, a, g in zip(before, strategy.audio.parameters(), expected):
        torch.testing.assert_close(b - a.detach(), g, atol=1e-10, rtol=1e-8)
    assert stats.n_selected_audio == int(train.sum())
    return stats


def test_registry_has_the_gated_strategies_and_they_need_their_options():
    assert {"lgl", "dlg_lc"} <= set(STRATEGIES)
    with pytest.raises(ValueError, match="stage2.lgl"):
        build_strategy("lgl", *_models(), lr=1e-3, alpha=0.01, second_order=True)


def test_lgl_trains_on_the_samples_under_its_gate_after_warmup():
    audio, visual = _models()
    batch = _batch()
    s = build_strategy("lgl", audio, visual, lr=1.0, alpha=0.01, second_order=True,
                       options=LGLConfig(gate=1e-9, warmup_epochs=1))
    _sgd(s)
    ref, _ = _models()
    _check_step(s, ref, batch, batch.labels, torch.ones(B, dtype=torch.bool))  # warm-up: every sample
    assert s.epoch_rows() == []
    s.end_epoch()
    ref.load_state_dict(audio.state_dict())
    with torch.no_grad():
        _, losses = audio(batch.audio, batch.labels)
    s.options = LGLConfig(gate=float(losses.median()), warmup_epochs=1)  # half of the batch under the gate
    train = losses <= s.options.gate
    assert 0 < int(train.sum()) < B
    stats = _check_step(s, ref, batch, batch.labels, train)
    assert stats.n_selected_noisy_audio == int((batch.noisy & train).sum())
    assert stats.extra["n_dropped_audio"] == int((~train).sum())


def test_dlg_lc_gate_comes_from_the_gmm_of_last_epochs_losses_and_corrects_labels():
    audio, visual = _models()
    s = build_strategy("dlg_lc", audio, visual, lr=1.0, alpha=0.01, second_order=True,
                       options=DLGLCConfig(gmm_posterior=0.5, lc_threshold=0.4))
    _sgd(s)
    seen = []
    for seed in (1, 2, 3):  # epoch 1: ungated, every sample trains with its label
        batch = _batch(seed)
        with torch.no_grad():
            seen.append(audio(batch.audio, batch.labels)[1])
        assert s.step(batch, keep_ratio=1.0).n_selected_audio == B
    s.end_epoch()
    gate = gmm_gate(*fit_loss_gmm(torch.cat(seen).numpy()), posterior=0.5)
    assert s.gates["audio"] == pytest.approx(gate, rel=1e-12)
    assert s.epoch_rows()[0] == dict(name="loss_gate", modality="audio", value=pytest.approx(gate))
    batch = _batch(4)
    ref, _ = _models()
    ref.load_state_dict(audio.state_dict())
    with torch.no_grad():
        logits, losses = audio(batch.audio, batch.labels)
    gate = s.gates["audio"] = float(losses.median())  # half of this batch above the gate, for the LC part
    conf = torch.softmax(logits, 1).max(1).values[losses > gate]
    s.options = DLGLCConfig(lc_threshold=float(conf.sort().values[len(conf) // 2]))  # half of those corrected
    targets, train, corrected = correct_labels(torch.softmax(logits, 1), batch.labels, losses <= gate,
                                               threshold=s.options.lc_threshold)
    assert (corrected & (targets != batch.labels)).any() and not train.all()  # the case is informative
    s.label_is_wrong = lambda index, labels: labels != 0  # a stand-in truth: only class 0 is right
    stats = _check_step(s, ref, batch, targets, train)
    assert stats.n_selected_noisy_audio == int(((targets != 0) & train).sum())
    state = s.state_dict()
    again = build_strategy("dlg_lc", *_models(), lr=1.0, alpha=0.01, second_order=True, options=DLGLCConfig())
    again.load_state_dict(state)
    assert again.gates == s.gates and again.epochs_done == 1


def test_the_shared_models_have_this_modules_sizes():
    assert (_D_IN_MODELS, _D_MODELS, _K_MODELS) == (D_IN, D, K)


def test_a_batch_whose_gate_keeps_nothing_takes_no_step_and_is_counted_per_modality():
    """n_gate_empty_<m>: batches whose gate kept nothing for model m (no step for m); they are not the
    batches where the models agree (empty_disagreement_batches)."""
    from cometa.core.strategies import EpochStats

    audio, visual = _models()
    s = build_strategy("lgl", audio, visual, lr=1.0, alpha=0.01, second_order=True,
                       options=LGLConfig(gate=1e-9, warmup_epochs=0))  # no loss is that small
    _sgd(s)
    before = {k: v.clone() for k, v in {**audio.state_dict(), **visual.state_dict()}.items()}
    acc = EpochStats()
    empty = s.step(_batch(1), keep_ratio=1.0)
    assert empty.extra["n_gate_empty_audio"] == empty.extra["n_gate_empty_visual"] == 1
    assert all(torch.equal(v, {**audio.state_dict(), **visual.state_dict()}[k]) for k, v in before.items())
    acc.add(empty)
    with torch.no_grad():
        _, losses = audio(_batch(2).audio, _batch(2).labels)
    s.options = LGLConfig(gate=float(losses.max()), warmup_epochs=0)  # every audio sample under the gate
    st = s.step(_batch(2), keep_ratio=1.0)
    assert st.extra["n_gate_empty_audio"] == 0 and st.n_selected_audio == B
    acc.add(st)
    rows = {r["name"]: r["value"] for r in acc.rows(n_batches=2, lam=1.0) if "modality" not in r}
    assert rows["n_gate_empty_audio"] == 1.0 and rows["n_gate_empty_visual"] == 1.0 + st.extra["n_gate_empty_visual"]
    assert rows["empty_disagreement_batches"] == float(empty.empty) + float(st.empty)
    assert "n_gate_empty_audio" not in {r["name"] for r in EpochStats().rows(n_batches=1, lam=1.0)}
