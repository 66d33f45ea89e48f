"""The strategies wire Algorithm 1 correctly: each model learns from its PEER's small-loss selection
of the disagreement set, through the inner step for `cometa`."""
import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from cometa.core.batchnorm import _HandDoubleBackward
from cometa.core.selection import disagreement, small_loss
from cometa.core.strategies import STRATEGIES, Batch, SpeakerClassifier, build_strategy

B, D_IN, D, K = 12, 5, 4, 3


def _models(seed=0):
    torch.manual_seed(seed)
    audio = SpeakerClassifier(nn.Linear(D_IN, D), D, K, margin=0.2, scale=8.0).double()
    visual = SpeakerClassifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 2, D)), D, K, margin=0.2,
                               scale=8.0).double()
    return audio, visual


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return Batch(audio=torch.randn(B, D_IN, generator=g, dtype=torch.float64),
                 frames=torch.rand(B, 3, 2, 2, generator=g, dtype=torch.float64),
                 labels=torch.randint(0, K, (B,), generator=g),
                 noisy=torch.zeros(B, dtype=torch.bool), index=torch.arange(B))


def _selections(audio, visual, batch, lam):
    with torch.no_grad():
        la, loss_a = audio(batch.audio, batch.labels)
        lv, loss_v = visual(batch.frames, batch.labels)
    d = disagreement(la.argmax(1), lv.argmax(1))
    return d, d[small_loss(loss_a[d], lam)], d[small_loss(loss_v[d], lam)]


def _sgd(strategy):
    # plain SGD with lr 1: the parameter change is exactly minus the gradient the strategy used
    strategy.opt_audio = torch.optim.SGD(strategy.audio.parameters(), lr=1.0)
    strategy.opt_visual = torch.optim.SGD(strategy.visual.parameters(), lr=1.0)


def _delta(before, after):
    return [b.detach() - a.detach() for b, a in zip(before.parameters(), after.parameters())]


def test_registry_lists_the_five_strategies():
    assert set(STRATEGIES) == {"baseline", "coteaching_plus", "cometa", "lgl", "dlg_lc"}
    with pytest.raises(ValueError, match="choose from"):
        build_strategy("cotaught", *_models(), lr=1e-3, alpha=0.01, second_order=True)


def test_coteaching_plus_audio_learns_from_visual_selection():
    audio, visual = _models()
    batch, lam = _batch(), 0.5
    d, sel_a, sel_v = _selections(audio, visual, batch, lam)
    assert len(d) >= 4 and set(sel_a.tolist()) != set(sel_v.tolist())  # the case is informative
    a0, v0 = copy.deepcopy(audio), copy.deepcopy(visual)
    strat = build_strategy("coteaching_plus", audio, visual, lr=1.0, alpha=0.01, second_order=True)
    _sgd(strat)
    stats = strat.step(batch, keep_ratio=lam)
    assert stats.n_disagree == len(d) and stats.n_selected_audio == len(sel_a)

    def grads(model, x, sel):
        _, losses = model(x, batch.labels)
        return torch.autograd.grad(losses[sel].mean(), list(model.parameters()))

    for got, peer in zip(_delta(a0, audio), grads(a0, batch.audio, sel_v)):
        torch.testing.assert_close(got, peer)
    assert any((g - o).abs().max() > 1e-8 for g, o in zip(_delta(a0, audio), grads(a0, batch.audio, sel_a)))
    for got, peer in zip(_delta(v0, visual), grads(v0, batch.frames, sel_a)):
        torch.testing.assert_close(got, peer)


def _bn_models(seed=0):
    torch.manual_seed(seed)
    audio = SpeakerClassifier(nn.Sequential(nn.Linear(D_IN, D), nn.BatchNorm1d(D)), D, K, margin=0.2,
                              scale=8.0).double()
    visual = SpeakerClassifier(nn.Sequential(nn.Flatten(), nn.Linear(12, D), nn.BatchNorm1d(D)), D, K, margin=0.2,
                               scale=8.0).double()
    return audio, visual


@pytest.mark.parametrize("make_models", [_models, _bn_models], ids=["linear", "batchnorm"])
def test_cometa_outer_step_goes_through_inner_step_on_peer_selection(make_models):
    """With BatchNorm in the encoders the step's second derivative of BatchNorm is core/batchnorm.py's
    closed form (it must run: one call per model), checked here against PyTorch's own through functional_call."""
    audio, visual = make_models()
    batch, lam, alpha = _batch(), 0.5, 0.3
    _, sel_a, sel_v = _selections(audio, visual, batch, lam)
    a0 = copy.deepcopy(audio)
    strat = build_strategy("cometa", audio, visual, lr=1.0, alpha=alpha, second_order=True)
    _sgd(strat)
    hand_calls = _HandDoubleBackward.calls
    strat.step(batch, keep_ratio=lam)
    assert _HandDoubleBackward.calls - hand_calls == (2 if make_models is _bn_models else 0)

    # independent: θ' = θ − α∇ mean ℓ(D̄; θ); g = ∇_θ mean_{i ∈ D̄'^(V)} ℓ_i(θ')
    names = [n for n, _ in a0.named_parameters()]
    theta = [p.detach().clone().requires_grad_(True) for p in a0.parameters()]
    _, sup = functional_call(a0, dict(zip(names, theta)), (batch.audio, batch.labels))
    g_s = torch.autograd.grad(sup.mean(), theta, create_graph=True)
    prime = {n: t - alpha * g for n, t, g in zip(names, theta, g_s)}
    _, q = functional_call(a0, prime, (batch.audio, batch.labels))
    expected = torch.autograd.grad(q[sel_v].mean(), theta)
    for got, e in zip(_delta(a0, audio), expected):
        torch.testing.assert_close(got, e, rtol=1e-10, atol=1e-12)


def test_empty_disagreement_takes_no_step():
    audio, visual = _models()
    batch = _batch()
    # make the visual head predict exactly what the audio head predicts: same logits
    with torch.no_grad():
        pred = audio(batch.audio, batch.labels)[0].argmax(1)
    visual_same = SpeakerClassifier(nn.Sequential(nn.Flatten(), nn.Linear(12, D)), D, K, margin=0.2, scale=8.0).double()

    class Fixed(nn.Module):  # an encoder whose embedding is the head row of the audio prediction
        def forward(self, x):
            return visual_same.head.weight[pred] * 1.0

    visual_same.encoder = Fixed()
    for name in ("coteaching_plus", "cometa"):
        a0 = copy.deepcopy(audio)
        strat = build_strategy(name, audio, visual_same, lr=1.0, alpha=0.01, second_order=True)
        stats = strat.step(batch, keep_ratio=0.8)
        assert stats.empty and stats.n_disagree == 0
        for p, q in zip(a0.parameters(), audio.parameters()):
            assert torch.equal(p, q)


def test_baseline_trains_each_model_on_the_whole_batch():
    audio, visual = _models()
    batch = _batch()
    a0 = copy.deepcopy(audio)
    strat = build_strategy("baseline", audio, visual, lr=1.0, alpha=0.01, second_order=True)
    _sgd(strat)
    strat.step(batch, keep_ratio=0.5)
    _, losses = a0(batch.audio, batch.labels)
    expected = torch.autograd.grad(losses.mean(), list(a0.parameters()))
    for got, e in zip(_delta(a0, audio), expected):
        torch.testing.assert_close(got, e)


@pytest.mark.parametrize("name", ["baseline", "coteaching_plus", "cometa"])
def test_batchnorm_running_statistics_move_once_per_step(name):
    """Every strategy updates BatchNorm's running statistics exactly as ONE training-mode forward
    of the batch under θ does (cometa's forward under θ' uses batch statistics but updates nothing)."""
    audio, visual = _bn_models()
    batch = _batch()
    ref_a, ref_v = copy.deepcopy(audio).train(), copy.deepcopy(visual).train()
    with torch.no_grad():
        ref_a(batch.audio, batch.labels)
        ref_v(batch.frames, batch.labels)
    strat = build_strategy(name, audio.train(), visual.train(), lr=1e-3, alpha=0.3, second_order=True)
    stats = strat.step(batch, keep_ratio=0.5)
    assert name == "baseline" or stats.n_disagree > 0  # cometa did take its θ' forward
    for got, want in ((audio, ref_a), (visual, ref_v)):
        for (n, b), (_, e) in zip(got.named_buffers(), want.named_buffers()):
            assert torch.equal(b, e), n


def test_front_end_prepared_once_equals_the_plain_forward():
    from cometa.config import load_config
    from cometa.models.build import build_audio_model, build_visual_model

    cfg = load_config("tiny")
    torch.manual_seed(0)
    audio = SpeakerClassifier(build_audio_model(cfg), cfg.audio_encoder.embed_dim, 5, margin=0.2, scale=32).eval()
    visual = SpeakerClassifier(build_visual_model(cfg), cfg.visual_encoder.embed_dim, 5, margin=0.2, scale=32).eval()
    wave, img, y = 0.1 * torch.randn(4, 16000), torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    feats = audio.prepare(wave)
    assert feats.shape[:2] == (4, cfg.features.n_mels)  # the log-mel front end ran
    assert torch.equal(visual.prepare(img), img)  # the face model has no front end
    for model, x, prepared in ((audio, wave, feats), (visual, img, img)):
        plain, ready = model(x, y), model(prepared, y, prepared=True)
        torch.testing.assert_close(plain[0], ready[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(plain[1], ready[1], rtol=0, atol=1e-6)
