"""The cross-lingual transfer paper's options (issue 16): hourglass adapters and adapter-only Stage II,
frozen-teacher cosine distillation, attention pooling with one learnable query; the step hashes they
key; and each option through the pipeline's own round step on the tiny preset."""
import copy
import dataclasses
import math
import shutil

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.func import functional_call

from cometa.config import ConfigError, load_config
from cometa.config.sections import AdapterConfig, DLGLCConfig, LGLConfig
from cometa.core.strategies import Batch, Distillation, EpochStats, SpeakerClassifier, StepStats, build_strategy
from cometa.models.adapters import Adapter, freeze_for_adapters, frozen_norms, is_adapter_parameter
from cometa.models.encoders import EcapaConfig, ResNetConfig, build_audio_encoder, build_visual_encoder
from cometa.models.encoders.ecapa import POOLINGS, QueryAttentionPool
from cometa.models.features import FeatureConfig
from cometa.models.losses import cosine_distillation

TINY_ECAPA = EcapaConfig(channels=16, embed_dim=32, scale=4, se_bottleneck=8, attention_channels=8)
TINY_RESNET = ResNetConfig(depth=10, base_width=8, image_size=32, embed_dim=32)
ON = AdapterConfig(enabled=True, bottleneck=0.25)


def _adapter_params(c, bottleneck=0.25):
    h = max(1, round(bottleneck * c))
    return c * h + h + h * c + c  # 1x1 down (weight + bias), 1x1 up (weight + bias)


# ------------------------------------------------------------------------------------- adapters
@pytest.mark.parametrize("kind", ["audio", "visual"])
def test_adapters_are_the_identity_when_inserted_and_add_the_hand_counted_parameters(kind):
    torch.manual_seed(0)
    if kind == "audio":
        plain = build_audio_encoder(TINY_ECAPA, FeatureConfig())
        with_ad = build_audio_encoder(dataclasses.replace(TINY_ECAPA, adapters=ON), FeatureConfig())
        x, widths = torch.randn(4, 80, 30), [16] * 3  # one adapter after each SE-Res2 block
    else:
        plain = build_visual_encoder(TINY_RESNET)
        with_ad = build_visual_encoder(dataclasses.replace(TINY_RESNET, adapters=ON))
        x, widths = torch.rand(4, 3, 32, 32), [8, 16, 32, 64]  # one after each stage
    missing, unexpected = with_ad.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(is_adapter_parameter(k) for k in missing)
    extra = sum(p.numel() for p in with_ad.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == sum(_adapter_params(c) for c in widths)
    for mode in ("eval", "train"):
        getattr(plain, mode)(), getattr(with_ad, mode)()
        torch.testing.assert_close(with_ad(x), plain(x), rtol=0, atol=0)


def test_adapter_computes_its_equation():
    torch.manual_seed(1)
    ad = Adapter(6, 0.5, dims=1)
    nn.init.normal_(ad.up.weight)
    h = torch.randn(2, 6, 5)
    w_d, b_d = ad.down.weight[:, :, 0], ad.down.bias  # (3, 6), (3,)
    w_u, b_u = ad.up.weight[:, :, 0], ad.up.bias
    want = h + torch.einsum("oc,bct->bot", w_u, torch.relu(torch.einsum("oc,bct->bot", w_d, h) + b_d[:, None])) \
        + b_u[:, None]
    torch.testing.assert_close(ad(h), want)


def _tiny_classifiers(adapters: bool, *, teacher_dim=None, k=5):
    overrides = ["audio_encoder.adapters.enabled=true", "visual_encoder.adapters.enabled=true"] if adapters else []
    cfg = load_config("tiny", overrides=overrides)
    from cometa.models.build import build_audio_model, build_visual_model  # torch models: only these tests

    torch.manual_seed(0)
    audio = SpeakerClassifier(build_audio_model(cfg), 32, k, margin=0.2, scale=32, teacher_dim=teacher_dim)
    visual = SpeakerClassifier(build_visual_model(cfg), 32, k, margin=0.2, scale=32, teacher_dim=teacher_dim)
    return audio, visual


def _tiny_batch(n=8, k=5, seed=3):
    g = torch.Generator().manual_seed(seed)
    return Batch(audio=0.1 * torch.randn(n, 8000, generator=g), frames=torch.rand(n, 3, 32, 32, generator=g),
                 labels=torch.randint(0, k, (n,), generator=g), noisy=torch.zeros(n, dtype=torch.bool),
                 index=torch.arange(n))


GATED = ("lgl", "dlg_lc")


def _gated(name, audio, visual, batch, *, lr, alpha=0.1, distill=None):
    """A loss-gated strategy whose gate is on and bites on ``batch``: LGL from its first epoch with the
    gate at the larger of the two models' median losses, DLG-LC with each model's gate at its median
    loss (the gates its GMM would have fitted after an epoch) and no label correction."""
    with torch.no_grad():  # on copies: a forward in training mode may move BatchNorm statistics
        med = {k: float(copy.deepcopy(m)(x, batch.labels)[1].median())
               for k, m, x in (("audio", audio, batch.audio), ("visual", visual, batch.frames))}
    options = LGLConfig(gate=max(med.values()), warmup_epochs=0) if name == "lgl" else \
        DLGLCConfig(correct_labels=False)
    strat = build_strategy(name, audio, visual, lr=lr, alpha=alpha, second_order=True, distill=distill,
                           options=options)
    if name == "dlg_lc":
        strat.gates = dict(med)
    return strat


@pytest.mark.parametrize("name", ["baseline", "coteaching_plus", "cometa", *GATED])
def test_adapter_training_moves_only_adapters_and_heads(name):
    """stage2.train: adapters (from round 2: both encoders frozen): a step of every strategy changes the
    adapters and heads only; the frozen BatchNorms keep their running statistics; the optimisers hold
    the trainable parameters only."""
    from cometa.train.stage2 import set_trainable  # the training loop's own freezing

    audio, visual = _tiny_classifiers(adapters=True)
    counts = set_trainable("adapters", 2, audio, visual)
    assert counts["audio"] == 3 * _adapter_params(16) + 5 * 32  # adapters + the head's K x D rows
    assert counts["visual"] == sum(_adapter_params(c) for c in (8, 16, 32, 64)) + 5 * 32
    before = [copy.deepcopy(m.state_dict()) for m in (audio, visual)]
    batch = _tiny_batch()
    if name in GATED:
        strat = _gated(name, audio.train(), visual.train(), batch, lr=1e-2)
    else:
        strat = build_strategy(name, audio.train(), visual.train(), lr=1e-2, alpha=0.1, second_order=True)
    assert all(not bn.training for m in (audio, visual) for bn in frozen_norms(m)) and frozen_norms(audio)
    for opt, key in ((strat.opt_audio, "audio"), (strat.opt_visual, "visual")):
        assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == counts[key]
    stats = strat.step(batch, keep_ratio=0.5)
    assert name in ("baseline", *GATED) or stats.n_disagree > 0  # the strategies that learn from D̄' did step
    if name in GATED:  # each gate kept part of the batch and left part out
        assert 0 < stats.n_selected_audio < len(batch) or 0 < stats.n_selected_visual < len(batch)
        assert stats.extra["n_gate_empty_audio"] == stats.extra["n_gate_empty_visual"] == 0
    for model, old in zip((audio, visual), before):
        new = model.state_dict()
        moved = {k for k in new if not torch.equal(new[k], old[k])}
        assert moved and all(is_adapter_parameter(k) or k.startswith("head.") for k in moved), sorted(moved)
        assert any(k.startswith("head.") for k in moved) and any(is_adapter_parameter(k) for k in moved)


def test_round_one_visual_trains_fully_and_freezing_needs_adapters():
    from cometa.train.stage2 import set_trainable

    audio, visual = _tiny_classifiers(adapters=True)
    counts = set_trainable("adapters", 1, audio, visual)
    assert counts["visual"] == sum(p.numel() for p in visual.parameters())  # no Stage I: all of it trains
    assert not frozen_norms(visual) and frozen_norms(audio)
    plain, _ = _tiny_classifiers(adapters=False)
    with pytest.raises(ValueError, match="no adapters"):
        freeze_for_adapters(plain.encoder)


# -------------------------------------------------------------------------------------- pooling
def test_query_attention_pool_shapes_equation_and_gradient():
    torch.manual_seed(2)
    pool = QueryAttentionPool(6, 4)
    x = torch.randn(3, 6, 7)
    out = pool(x)
    assert out.shape == (3, 6) and pool.out_dim == 6
    for b in range(3):  # sum_t softmax_t(q . tanh(W x_t + c)) x_t, one utterance at a time
        keys = torch.tanh(pool.key.weight[:, :, 0] @ x[b] + pool.key.bias[:, None])  # (4, T)
        w = torch.exp(pool.query @ keys)
        torch.testing.assert_close(out[b], x[b] @ (w / w.sum()))
    out.pow(2).sum().backward()
    assert pool.query.grad is not None and pool.query.grad.abs().sum() > 0 and torch.isfinite(pool.query.grad).all()


def test_ecapa_with_query_attention_pooling():
    assert set(POOLINGS) == {"asp", "query_attention"}
    cfg = dataclasses.replace(TINY_ECAPA, pooling="query_attention")
    model = build_audio_encoder(cfg, FeatureConfig())
    asp = build_audio_encoder(TINY_ECAPA, FeatureConfig())
    c3, a, e = 48, 8, 32  # 3C, attention channels, embedding
    asp_pool = (9 * 16 * a + 3 * a) + (a * c3 + c3) + 2 * 2 * c3 + 2 * c3 * e  # ASP, BN(6C), Linear(6C)
    qa_pool = (c3 * a + a) + a + 2 * c3 + c3 * e  # key conv, query, BN(3C), Linear(3C)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(asp) - n(model) == asp_pool - qa_pool
    x = torch.randn(4, 80, 30)
    emb = model(x)
    assert emb.shape == (4, 32)
    emb.sum().backward()
    assert model.pool.query.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="audio_encoder.pooling"):
        load_config("tiny", overrides=["audio_encoder.pooling=mean"])


# --------------------------------------------------------------------------------- distillation
def test_cosine_distillation_hand_values():
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    t = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0]])
    torch.testing.assert_close(cosine_distillation(s, t), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="differ in shape"):
        cosine_distillation(s, t[:, :1])


B, D_IN, D, K, D_T = 12, 5, 4, 3, 6


def _linear_models(teacher_dim=None):
    torch.manual_seed(0)
    audio = SpeakerClassifier(nn.Linear(D_IN, D), D, K, margin=0.2, scale=8.0, teacher_dim=teacher_dim).double()
    visual = SpeakerClassifier(nn.Sequential(nn.Flatten(), nn.Linear(12, D)), D, K, margin=0.2, scale=8.0,
                               teacher_dim=teacher_dim).double()
    return audio, visual


def _batch():
    g = torch.Generator().manual_seed(1)
    return Batch(audio=torch.randn(B, D_IN, generator=g, dtype=torch.float64),
                 frames=torch.rand(B, 3, 2, 2, generator=g, dtype=torch.float64),
                 labels=torch.randint(0, K, (B,), generator=g), noisy=torch.zeros(B, dtype=torch.bool),
                 index=torch.arange(B).flip(0))  # rows of the teacher tables, not in order


def _teachers(dim):
    g = torch.Generator().manual_seed(5)
    return torch.randn(B, dim, generator=g, dtype=torch.float64), torch.randn(B, dim, generator=g, dtype=torch.float64)


def test_baseline_with_a_peer_teacher_follows_aam_plus_weighted_cosine():
    """With SGD at lr 1 the baseline's update is minus the gradient of mean AAM + w mean(1 - cos(f(x),
    M t)) over the batch (M: the learned map, which trains too), computed here independently."""
    audio, visual = _linear_models(teacher_dim=D_T)
    t_a, t_v = _teachers(D_T)
    batch, w = _batch(), 0.7
    params0 = {k: v.detach().clone() for k, v in audio.named_parameters()}

    def loss(p):
        emb = functional_call(audio.encoder, {k[8:]: v for k, v in p.items() if k.startswith("encoder.")},
                              (batch.audio,))
        ce = functional_call(audio.head, {"weight": p["head.weight"]}, (emb, batch.labels))  # mean AAM-softmax
        target = t_a[batch.index] @ p["distill_map.weight"].T  # (B, D)
        cos = (emb * target).sum(1) / (emb.norm(dim=1) * target.norm(dim=1))
        return ce + w * (1 - cos).mean(), (1 - cos).mean()

    p = {k: v.clone().requires_grad_(True) for k, v in params0.items()}
    total, dist = loss(p)
    grads = dict(zip(p, torch.autograd.grad(total, list(p.values()))))
    strat = build_strategy("baseline", audio, visual, lr=1.0, alpha=0.01, second_order=True,
                           distill=Distillation(w, audio=t_a, visual=t_v))
    strat.opt_audio = torch.optim.SGD(audio.parameters(), lr=1.0)
    strat.opt_visual = torch.optim.SGD(visual.parameters(), lr=1.0)
    stats = strat.step(batch, keep_ratio=0.5)
    assert math.isclose(stats.loss_distill_audio, float(dist.detach()), rel_tol=1e-9)
    assert grads["distill_map.weight"].abs().sum() > 0  # the map learns
    for k, v in audio.named_parameters():
        torch.testing.assert_close(params0[k] - v.detach(), grads[k])


@pytest.mark.parametrize("round_", [1, 2])
def test_the_peer_teacher_of_round_one_teaches_the_visual_model_only(round_):
    """Round 1's visual encoder is freshly initialised: its embeddings teach the audio model nothing, so
    the peer teacher of round 1 gives the audio model no teacher (and no map); from round 2 on (the
    visual encoder trained) each model is taught by the other's embeddings of the round's rows."""
    from cometa.models.build import build_audio_model, build_visual_model
    from cometa.train.stage2 import RoundSamples, _classifiers, distillation

    cfg = load_config("tiny", overrides=["stage2.distill.teacher=peer", "stage2.distill.weight=0.5"])
    rng = np.random.default_rng(0)
    n, rows = 10, np.array([1, 3, 4, 6, 8, 9])
    samples = RoundSamples(rows=rows, labels=np.array([0, 1, 2, 0, 1, 2]), noisy=np.zeros(6, bool), k=3)
    audio_emb = rng.normal(size=(n, cfg.audio_encoder.embed_dim)).astype(np.float32)
    visual_emb = rng.normal(size=(n, cfg.visual_encoder.embed_dim)).astype(np.float32)
    d = distillation(cfg, samples, round_=round_, audio_emb=audio_emb, visual_emb=visual_emb, stage1_emb=None,
                     device=torch.device("cpu"))
    assert d.weight == 0.5
    torch.testing.assert_close(d.visual, torch.from_numpy(audio_emb[rows]))
    audio, visual = _classifiers(cfg, round_, build_audio_model(cfg), build_visual_model(cfg), samples,
                                 audio_emb=audio_emb, visual_emb=visual_emb, device=torch.device("cpu"))
    assert visual.distill_map is not None
    if round_ == 1:
        assert d.audio is None and audio.distill_map is None
    else:
        torch.testing.assert_close(d.audio, torch.from_numpy(visual_emb[rows]))
        assert audio.distill_map.weight.shape == (cfg.audio_encoder.embed_dim, cfg.visual_encoder.embed_dim)


@pytest.mark.parametrize("name", ["baseline", "coteaching_plus", "cometa", *GATED])
def test_distillation_weight_zero_is_the_plain_step_and_positive_weight_changes_it(name):
    batch = _batch()
    t_a, _ = _teachers(D)

    def run(distill):
        audio, visual = _linear_models()
        if name in GATED:  # with its gate on (the teacher's term covers the whole batch)
            strat = _gated(name, audio, visual, batch, lr=1e-2, distill=distill)
        else:
            strat = build_strategy(name, audio, visual, lr=1e-2, alpha=0.1, second_order=True, distill=distill)
        stats = strat.step(batch, keep_ratio=0.5)
        assert name not in GATED or 0 < stats.n_selected_audio < len(batch)
        return audio, stats

    plain, st0 = run(None)
    zero, stz = run(Distillation(0.0, audio=t_a))  # stage1-like: the audio model only
    pos, stp = run(Distillation(1.0, audio=t_a))
    assert math.isnan(st0.loss_distill_audio) and math.isnan(stp.loss_distill_visual)
    assert 0 <= stz.loss_distill_audio <= 2 and stp.loss_distill_audio == stz.loss_distill_audio
    for a, b in zip(plain.parameters(), zero.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(plain.encoder.parameters(), pos.encoder.parameters()))


def test_epoch_rows_carry_loss_distill_only_with_a_teacher():
    acc = EpochStats()
    for v in (0.2, 0.4, float("nan")):  # the last step took none
        acc.add(StepStats(n=4, loss_support_audio=1.0, loss_support_visual=1.0, loss_distill_audio=v))
    rows = acc.rows(n_batches=3, lam=1.0)
    got = [r for r in rows if r["name"] == "loss_distill"]
    assert got == [dict(name="loss_distill", modality="audio", value=pytest.approx(0.3))]
    plain = EpochStats()
    plain.add(StepStats(n=4, loss_support_audio=1.0, loss_support_visual=1.0))
    assert not [r for r in plain.rows(n_batches=1, lam=1.0) if r["name"] == "loss_distill"]


# ------------------------------------------------------------------------------- config, hashes
def _hashes(overrides=()):
    from pathlib import Path

    from cometa.pipeline.plan import plan_steps

    return {s.name: s.inputs_hash for s in plan_steps(load_config("tiny", overrides=list(overrides)), Path("r"))}


def test_defaults_keep_the_step_hashes_and_stage2_options_reuse_stage1():
    import hashlib
    import json

    from cometa.pipeline.plan import STAGE2_FIELDS_NOT_AFFECTING_ROUNDS

    base = _hashes()
    # Stage I's hash as it was before these options existed: its sections without them
    d = load_config("tiny").to_dict()
    old_audio = {k: v for k, v in d["audio_encoder"].items() if k not in ("adapters", "pooling")}
    common = {k: d[k] for k in ("seed", "device", "num_workers")}
    sections = {**common, "audio_encoder": old_audio, **{k: d[k] for k in ("features", "augment", "stage1", "eval")}}
    want = hashlib.sha256(json.dumps({"step": "stage1", "sections": sections, "depends": [base["corpus"]]},
                                     sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert base["stage1"] == want
    assert "train" in d["stage2"] and "train" not in STAGE2_FIELDS_NOT_AFFECTING_ROUNDS
    adapters = _hashes(["audio_encoder.adapters.enabled=true", "visual_encoder.adapters.enabled=true",
                        "stage2.train=adapters"])
    for variant in (adapters, _hashes(["stage2.distill.teacher=peer"]), _hashes(["stage2.distill.teacher=stage1"]),
                    _hashes(["audio_encoder.adapters.enabled=true"])):
        assert variant["corpus"] == base["corpus"] and variant["stage1"] == base["stage1"]
        assert variant["baseline/round_1"] != base["baseline/round_1"]
    assert _hashes(["stage2.distill.weight=0.5"]) == base  # no teacher: the weight is not read
    pooled = _hashes(["audio_encoder.pooling=query_attention"])
    assert pooled["stage1"] != base["stage1"] and pooled["corpus"] == base["corpus"]


def test_adapter_training_without_adapters_is_refused_naming_the_keys():
    with pytest.raises(ConfigError, match=r"stage2.train.*visual_encoder.adapters.enabled"):
        _hashes(["stage2.train=adapters", "audio_encoder.adapters.enabled=true"])
    with pytest.raises(ConfigError, match="stage2.distill.teacher"):
        load_config("tiny", overrides=["stage2.distill.teacher=labse"])
    with pytest.raises(ConfigError, match="audio_encoder.adapters.bottleneck"):
        load_config("tiny", overrides=["audio_encoder.adapters.bottleneck=0"])


# ------------------------------------------------------------------- the tiny pipeline, per option
def _variant(tiny_run, tmp_path, overrides):
    """A run directory holding ``tiny_run``'s corpus and Stage I (its store without the Stage II rows),
    its config with ``overrides``."""
    import sqlite3

    from cometa.config import apply_overrides, load_run_config

    run = tmp_path / "run"
    run.mkdir()
    for part in ("corpus", "stage1", "store.sqlite"):
        src = tiny_run / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, run / part)
    con = sqlite3.connect(run / "store.sqlite")
    with con:
        con.execute("DELETE FROM scalars WHERE strategy IS NOT NULL")
    con.close()
    cfg = apply_overrides(load_run_config(tiny_run / "config.yaml"), overrides)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return run


def _train_rows(run, strategy, name, **filters):
    from cometa.runs import RunStore

    return RunStore(run).scalars(strategy=strategy, stage="train", name=name, **filters)


@pytest.mark.slow
def test_tiny_adapters_with_stage1_teacher_keep_stage1_and_freeze_the_visual_from_round_2(tiny_run, tmp_path):
    """Adapter-only Stage II (Co-Meta, two rounds) with the Stage I teacher: the audio encoder stays
    Stage I's to the last buffer, the visual one is frozen after round 1 but for its adapters; the
    trainable counts are logged; loss_distill is logged for the audio model; Table 6 shows it all."""
    from cometa.pipeline.steps import round_step
    from cometa.results.ablation import table6, table6_markdown, variant_label
    from cometa.results.report import ablation_table, read_scalars
    from cometa.runs import RunStore

    run = _variant(tiny_run, tmp_path, ["audio_encoder.adapters.enabled=true", "visual_encoder.adapters.enabled=true",
                                        "stage2.train=adapters", "stage2.distill.teacher=stage1"])
    for r in (1, 2):
        out = round_step(run, "cometa", r, progress=False)
        assert set(out["metrics"]["modality"]) >= {"audio", "visual"}
    got = _train_rows(run, "cometa", "trainable_params").groupby(["round", "modality"])["value"].last()
    k = {r: torch.load(run / "cometa" / f"round_{r}" / "train_state.pt", weights_only=True)["audio"]["head.weight"]
         .shape[0] for r in (1, 2)}  # the heads' rows: the round's clusters
    for r in (1, 2):
        assert got[(r, "audio")] == 3 * _adapter_params(16) + k[r] * 32
    assert got[(2, "visual")] == sum(_adapter_params(c) for c in (8, 16, 32, 64)) + k[2] * 32
    assert got[(1, "visual")] > 10 * got[(2, "visual")]  # round 1: the whole face network
    stage1 = torch.load(run / "stage1" / "model.pt", weights_only=True)["audio"]
    r1, r2 = (torch.load(run / "cometa" / f"round_{r}" / "checkpoint.pt", weights_only=True) for r in (1, 2))
    assert all(torch.equal(stage1[key], r2["audio"][key]) for key in stage1)  # buffers included
    assert any(not torch.equal(r1["audio"][key], r2["audio"][key]) for key in r2["audio"] if is_adapter_parameter(key))
    frozen = [key for key in r1["visual"] if not is_adapter_parameter(key)]
    assert frozen and all(torch.equal(r1["visual"][key], r2["visual"][key]) for key in frozen)
    distill = _train_rows(run, "cometa", "loss_distill")
    assert set(distill["modality"]) == {"audio"} and distill["step"].notna().any() and distill["step"].isna().any()
    assert np.all((distill["value"] >= 0) & (distill["value"] <= 2))

    label = variant_label(RunStore(run).config())
    assert label == "adapters + distill stage1 (w 1)" and variant_label(RunStore(tiny_run).config()) == "full"
    rows = table6({"full": read_scalars(tiny_run), label: read_scalars(run)})
    mine = [r for r in rows if r["variant"] == label and r["strategy"] == "cometa"][0]
    full = [r for r in rows if r["variant"] == "full" and r["strategy"] == "cometa"][0]
    assert mine["params_audio"] == got[(2, "audio")] and full["params_audio"] > 10 * mine["params_audio"]
    assert mine["step_seconds"] > 0 and mine["round"] == 2
    assert "| adapters + distill stage1 (w 1) | Co-Meta | 2 |" in table6_markdown(rows)
    assert len(ablation_table(tiny_run, [run])) == len(rows)


@pytest.mark.slow
def test_tiny_query_attention_pooling_with_a_peer_teacher(tiny_run, tmp_path):
    """query_attention trains its own Stage I (one epoch here), then a co-teaching+ round with the
    cross-modal (peer) teacher logs loss_distill for the visual model (round 1: no audio teacher)."""
    from cometa.pipeline.steps import round_step, stage1_step

    run = _variant(tiny_run, tmp_path, ["audio_encoder.pooling=query_attention", "stage1.epochs=1",
                                        "stage2.distill.teacher=peer", "stage2.distill.weight=0.5"])
    shutil.rmtree(run / "stage1")
    metrics = stage1_step(run, progress=False)
    assert set(metrics["modality"]) == {"audio"} and metrics["value"].between(0, 1).all()
    state = torch.load(run / "stage1" / "model.pt", weights_only=True)["audio"]
    assert any(k.endswith("pool.query") for k in state)
    out = round_step(run, "coteaching_plus", 1, progress=False)
    assert set(out["metrics"]["modality"]) >= {"audio", "visual"}
    rows = _train_rows(run, "coteaching_plus", "loss_distill", round=1)
    assert set(rows["modality"]) == {"visual"}  # round 1's face network is untrained: it teaches no one
    assert np.all((rows["value"] >= 0) & (rows["value"] <= 2))


def test_training_dynamics_view_shows_loss_distill_and_trainable_params():
    import pandas as pd

    from cometa.results import figures as F

    rows = [dict(strategy="baseline", stage="train", round=1, epoch=e, step=None, modality=m, name=n, value=v)
            for e in (1, 2) for m in ("audio", "visual")
            for n, v in (("loss_support", 3.0), ("loss_distill", 0.5 / e), ("trainable_params", 1000.0))]
    fig = F.training_dynamics(pd.DataFrame(rows))
    titles = [a.text for a in fig.layout.annotations]
    assert any(t.startswith("loss_distill") for t in titles) and "trainable parameters" in titles
    ys = [list(t.y) for t in fig.data if "loss_distill" in t.hovertemplate]
    assert ys == [[0.5, 0.25], [0.5, 0.25]]  # audio and visual, per epoch
    assert not any(t.startswith("loss_distill") for t in
                   [a.text for a in F.training_dynamics(pd.DataFrame([r for r in rows if r["name"] != "loss_distill"]))
                    .layout.annotations])  # no teacher: no panel
    steps = F.training_steps(pd.DataFrame([dict(r, step=1) for r in rows]))
    assert "distillation loss (1 − cos) per step" in [a.text for a in steps.layout.annotations]
