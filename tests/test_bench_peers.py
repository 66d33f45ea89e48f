"""bench/bench_peers.py: its torch.func MAML step is Algorithm 1's meta step computed independently
(same gradients as cometa's CoMeta), its peers have the widths it claims, and it runs end to end
at a tiny size. No timing is asserted."""
from __future__ import annotations

import copy
import re
import sys

import pytest
import torch

from bench import bench_peers
from bench.bench_steps import build_variant, random_batch
from cometa.config import load_config
from cometa.models.encoders import EcapaTDNN, FaceResNet, count_parameters


@pytest.fixture(autouse=True, scope="module")
def _forget_speechbrain():
    """SpeechBrain registers lazy modules (k2, ...) in sys.modules that raise ImportError when touched;
    hypothesis walks sys.modules in later test files: leave none of speechbrain's behind."""
    yield
    for name in [m for m in sys.modules if m == "speechbrain" or m.startswith("speechbrain.")]:
        del sys.modules[name]

TINY_ECAPA = {"tiny": {"channels": 16, "scale": 4, "se_bottleneck": 8, "attention_channels": 8}}


def _record_gradients(strategy) -> list[list[torch.Tensor]]:
    """The gradients ``strategy`` hands its optimisers from now on, one list per model (audio, then visual)."""
    recorded: list[list[torch.Tensor]] = []
    apply = strategy._apply

    def record(opt, params, grads):
        recorded.append([g.detach().clone() for g in grads])
        apply(opt, params, grads)

    strategy._apply = record
    return recorded


def test_torch_func_step_has_cometas_gradients():
    cfg = load_config("tiny")
    keep = 1.0 - cfg.stage2.tau
    batch = random_batch(cfg, seed=3)
    ours = build_variant(cfg, "cometa", True, seed=3)
    audio, visual = copy.deepcopy(ours.audio), copy.deepcopy(ours.visual)  # θ before cometa's step moves it

    recorded = _record_gradients(ours)
    stats = ours.step(batch, keep_ratio=keep)
    assert not stats.empty and len(recorded) == 2  # the meta step ran for both models

    peer = bench_peers.TorchFuncCoMeta(audio, visual, lr=cfg.stage2.beta, alpha=cfg.stage2.alpha)
    prepared = ours.prepare(batch)
    ga, gv, n_disagree = bench_peers.torch_func_meta_gradients(peer.audio, peer.visual, prepared, keep_ratio=keep,
                                                               alpha=cfg.stage2.alpha)
    assert n_disagree == stats.n_disagree
    for model, grads, theirs in ((peer.audio, ga, recorded[0]), (peer.visual, gv, recorded[1])):
        names = [n for n, _ in model.named_parameters()]
        assert len(names) == len(theirs)
        assert sum(float(g.abs().sum()) for g in theirs) > 0
        atol = _second_order_atol(theirs)
        for name, g in zip(names, theirs):
            torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=atol, msg=name)


def _second_order_atol(grads) -> float:
    """Float32 rounding of a second-order gradient scales with the model's largest gradient (cometa's
    BatchNorm double backward is its own, torch.func's is PyTorch's): parameters whose gradient is zero
    in exact arithmetic (a bias before BatchNorm) agree to that scale, not to 1e-6."""
    return 1e-5 * max(float(g.abs().max()) for g in grads)


def test_torch_func_step_is_second_order():
    """The peer's gradient differs from the first-order one (cometa's ``second_order=False``)."""
    cfg = load_config("tiny")
    keep = 1.0 - cfg.stage2.tau
    batch = random_batch(cfg, seed=3)
    first = build_variant(cfg, "cometa", False, seed=3)
    peer = bench_peers.TorchFuncCoMeta(copy.deepcopy(first.audio), copy.deepcopy(first.visual), lr=1e-3,
                                       alpha=cfg.stage2.alpha)  # θ before the step moves it
    recorded = _record_gradients(first)
    first.step(batch, keep_ratio=keep)
    ga, gv, _ = bench_peers.torch_func_meta_gradients(peer.audio, peer.visual, first.prepare(batch), keep_ratio=keep,
                                                      alpha=cfg.stage2.alpha)
    diff = max(float((ga[n] - g).abs().max()) for (n, _), g in zip(peer.audio.named_parameters(), recorded[0]))
    assert diff > 1e-7
    # ... and beyond the tolerance at which cometa's second-order gradient must equal the peer's
    for model, grads, first_order in ((peer.audio, ga, recorded[0]), (peer.visual, gv, recorded[1])):
        atol = _second_order_atol(grads.values())
        assert any(not torch.allclose(grads[n], g, rtol=1e-4, atol=atol)
                   for (n, _), g in zip(model.named_parameters(), first_order))


@pytest.mark.parametrize("width", ["demo", "paper"])
def test_speechbrain_peer_has_cometas_widths(width):
    opts = bench_peers.ECAPA_WIDTHS[width]
    ours = count_parameters(EcapaTDNN(bench_peers.N_MELS, embed_dim=bench_peers.EMBED_DIM, **opts))
    theirs = count_parameters(bench_peers.speechbrain_ecapa(**opts))
    assert ours - theirs == 2 * bench_peers.EMBED_DIM  # cometa's final BatchNorm1d(192): weight and bias
    if width == "paper":
        assert ours == 6_194_432  # tests/test_encoders.py's hand count


def test_torchvision_peer_is_cometas_resnet34_at_224px():
    ours = FaceResNet(34, image_size=224, embed_dim=bench_peers.EMBED_DIM)
    peer = bench_peers.torchvision_resnet34()
    assert [(n, p.shape) for n, p in ours.net.named_parameters()] == [(n, p.shape) for n, p in peer.named_parameters()]


@pytest.mark.parametrize("size", [224, 32])
def test_the_same_architecture_control_computes_cometas_function(size):
    """torchvision_as_cometa(size) is cometa's FaceResNet as a function: with FaceResNet's weights loaded it
    gives the same embeddings (the same normalisation, and at 32 px the same stem), so that timing it
    beside both networks splits the ratio into implementation and architecture."""
    torch.manual_seed(0)
    ours = FaceResNet(34, image_size=size, embed_dim=bench_peers.EMBED_DIM).eval()
    control = bench_peers.torchvision_as_cometa(size).eval()
    control.net.load_state_dict(ours.net.state_dict())  # strict: the same modules and shapes
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(control(x), ours(x), atol=1e-5)
        # and the control is not torchvision's own network at small sizes: its stem keeps every position
        stem = control.net.conv1(x)
    assert stem.shape[-1] == (size if size < 112 else size // 2)


def test_bench_runs_end_to_end_at_tiny_size(capsys):
    res = bench_peers.main(quick=True, repeats=1, batch=2, ecapa_widths=TINY_ECAPA, image_sizes={"tiny": 32},
                           frames=20, meta_preset="tiny")
    names = ["ecapa_vs_speechbrain_train", "ecapa_vs_speechbrain_infer", "resnet34_vs_torchvision_train",
             "resnet34_vs_torchvision_infer", "meta_vs_torch_func"]
    assert list(res["ratios"]) == names
    for name in names:
        m = re.search(rf"{name} x(\d+\.\d\d)", res["headline"])
        assert m and abs(float(m.group(1)) - res["ratios"][name]) < 0.006, name
    v = res["ecapa"]["tiny"]["train"]
    assert res["ratios"]["ecapa_vs_speechbrain_train"] == pytest.approx(v["cometa_s"] / v["peer_s"], rel=0.01)
    assert res["meta"]["n_disagree"]["ours"] == res["meta"]["n_disagree"]["peer"] > 0
    assert "meta_vs_torch_func x" in capsys.readouterr().out
    r = res["resnet34"]["tiny"]["infer"]  # the control was timed with the two: the split multiplies back
    assert r["ratio_same_arch"] * r["arch_cost"] == pytest.approx(r["ratio"], rel=0.01)
