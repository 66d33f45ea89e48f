"""Stage I and a Stage II round resume from their epoch checkpoints to the same weights."""
import numpy as np
import pytest
import torch

from cometa.config import load_config
from cometa.pipeline import steps
from cometa.runs import RunStore

pytestmark = pytest.mark.slow  # Stage I and rounds trained, interrupted and resumed


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("train") / "run"
    cfg = load_config("tiny", overrides=["stage1.epochs=3", "stage2.epochs_per_round=2"])
    RunStore(run, create=True).write_config(cfg.to_dict())
    steps.corpus_step(run, progress=False)
    return run


def _weights(path, key):
    return {k: v.clone() for k, v in torch.load(path, weights_only=True)[key].items()}


def test_stage1_resumed_equals_uninterrupted(run_dir, tmp_path):
    steps.stage1_step(run_dir, progress=False)
    straight = _weights(run_dir / "stage1" / "checkpoint.pt", "model")
    losses = RunStore(run_dir).scalars(stage="stage1", name="loss_csl")["value"].to_numpy()

    other = tmp_path / "resumed"
    other.mkdir()
    (other / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    RunStore(other, create=True)
    steps.stage1_step(other, progress=False, stop_after_epoch=1)  # "interrupted" after epoch 1
    assert torch.load(other / "stage1" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    steps.stage1_step(other, progress=False)  # resumes at epoch 2
    resumed = _weights(other / "stage1" / "checkpoint.pt", "model")
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    again = RunStore(other).scalars(stage="stage1", name="loss_csl")
    assert again["epoch"].tolist() == [1, 2, 3]  # no duplicated rows
    np.testing.assert_array_equal(again["value"].to_numpy(), losses)


def test_round_resumed_equals_uninterrupted(run_dir, tmp_path):
    if not (run_dir / "stage1" / "model.pt").exists():
        steps.stage1_step(run_dir, progress=False)
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    steps.round_step(run_dir, "cometa", 1, progress=False)
    steps.round_step(copy, "cometa", 1, progress=False, stop_after_epoch=1)
    assert not (copy / "cometa" / "round_1" / "checkpoint.pt").exists()
    steps.round_step(copy, "cometa", 1, progress=False)
    a = _weights(run_dir / "cometa" / "round_1" / "checkpoint.pt", "audio")
    b = _weights(copy / "cometa" / "round_1" / "checkpoint.pt", "audio")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    used = RunStore(run_dir).load_json("cometa/round_1/clustering_backend.json")  # where k-means ran, and why
    assert used["backend"] in ("faiss", "sklearn", "torch") and used["reason"] and "faiss" in used["blas_cores"]
    sel = RunStore(copy).scalars(strategy="cometa", stage="train", name="lambda")
    # λ(e) of line 13 is set after epoch e: epoch 1 trains with 1, epoch 2 with λ(1) = 1 - τ/E_k = 0.98
    assert sel["epoch"].tolist() == [1, 2] and sel["value"].tolist() == pytest.approx([1.0, 0.98])


def test_lr_scope_round_and_stage_reach_the_optimiser(run_dir, tmp_path):
    """The rate Adam holds after each epoch (the ``lr`` row: the epoch's last step) is the schedule's:
    round scope restarts it every round, stage scope runs one schedule over both rounds."""
    import shutil

    import yaml

    from cometa.core.schedules import lr_schedule

    if not (run_dir / "stage1" / "model.pt").exists():
        steps.stage1_step(run_dir, progress=False)
    got = {}
    for scope in ("round", "stage"):
        run = tmp_path / scope
        shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("baseline", "cometa", "coteaching_plus"))
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["stage2"]["lr_scope"] = scope
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        for r in (1, 2):
            steps.round_step(run, "baseline", r, progress=False)
        rows = RunStore(run).scalars(strategy="baseline", stage="train", name="lr")
        got[scope] = rows.sort_values("epoch")["value"].to_numpy()
    s2 = load_config("tiny", overrides=["stage2.epochs_per_round=2"]).stage2
    per_step = RunStore(run).scalars(strategy="baseline", stage="train", name="disagreement_frac")
    per_step = per_step.dropna(subset=["step"])
    spe = int((per_step["epoch"] == 1).sum())  # steps per epoch: one disagreement row per step (and one per epoch)
    kw = dict(steps_per_epoch=spe, kind=s2.lr_schedule.kind, warmup_epochs=s2.lr_schedule.warmup_epochs,
              final_ratio=s2.lr_schedule.final_ratio)
    one_round = lr_schedule(s2.beta, epochs=2, **kw)
    whole = lr_schedule(s2.beta, epochs=4, **kw)
    last = np.arange(1, 5) * spe - 1  # the last step of each epoch, counted over the stage
    np.testing.assert_allclose(got["round"], one_round[[spe - 1, 2 * spe - 1] * 2], rtol=1e-12)
    np.testing.assert_allclose(got["stage"], whole[last], rtol=1e-12)
    assert got["stage"][-1] == pytest.approx(s2.beta * s2.lr_schedule.final_ratio) and got["round"][2] > got["stage"][2]


def test_optimizer_scope_stage_continues_the_encoders_adam_into_the_next_round(run_dir, tmp_path):
    """With optimizer_scope: stage, round 1's checkpoint holds its encoders' Adam state (what round 1's
    own last epoch state holds, by name), and round 2's Adam continues it: after round 2's first epoch
    an encoder parameter has taken 3 epochs of steps, the new head one epoch's."""
    import shutil

    import yaml

    if not (run_dir / "stage1" / "model.pt").exists():
        steps.stage1_step(run_dir, progress=False)
    run = tmp_path / "carry"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("baseline", "cometa", "coteaching_plus"))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["stage2"]["optimizer_scope"] = "stage"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    steps.round_step(run, "baseline", 1, progress=False)
    r1 = run / "baseline" / "round_1"
    moments = torch.load(r1 / "checkpoint.pt", weights_only=True)["moments"]
    state = torch.load(r1 / "train_state.pt", weights_only=True)
    for key in ("audio", "visual"):
        params = [n for n, _ in _named(run, key)]  # the optimiser's order (every parameter trains)
        opt = state["strategy"][f"opt_{key}"]["state"]
        assert set(moments[key]) == {n for n in params if not n.startswith("head.")}
        for i, name in enumerate(params):
            if not name.startswith("head."):
                assert torch.equal(moments[key][name]["exp_avg_sq"], opt[i]["exp_avg_sq"].cpu()), name
    spe = int(float(state["strategy"]["opt_audio"]["state"][0]["step"])) // 2  # round 1: two epochs
    steps.round_step(run, "baseline", 2, progress=False, stop_after_epoch=3)  # round 2's first epoch (epoch 3)
    after = torch.load(run / "baseline" / "round_2" / "train_state.pt", weights_only=True)
    for key in ("audio", "visual"):
        names = [n for n, _ in _named(run, key)]
        opt = after["strategy"][f"opt_{key}"]["state"]
        got = {n: int(float(opt[i]["step"])) for i, n in enumerate(names)}
        assert {n: v for n, v in got.items() if n.startswith("head.")} == {"head.weight": spe}
        assert all(v == 3 * spe for n, v in got.items() if not n.startswith("head.")), got
    carried = RunStore(run).scalars(strategy="baseline", stage="train", round=2, name="adam_carried_params")
    trainable = RunStore(run).scalars(strategy="baseline", stage="train", round=2, name="trainable_params")
    for key in ("audio", "visual"):
        c = carried[carried["modality"] == key]["value"].tolist()
        t = trainable[trainable["modality"] == key]["value"].tolist()
        assert c == [t[0] - after[key]["head.weight"].numel()]  # every trainable value but the head's


def _named(run, key):
    """(name, parameter) of a tiny classifier of modality ``key`` as a round builds it (names in order)."""
    from cometa.config import load_run_config
    from cometa.core.strategies import SpeakerClassifier
    from cometa.models.build import build_audio_model, build_visual_model

    cfg = load_run_config(run / "config.yaml")
    enc = build_audio_model(cfg) if key == "audio" else build_visual_model(cfg)
    dim = (cfg.audio_encoder if key == "audio" else cfg.visual_encoder).embed_dim
    return list(SpeakerClassifier(enc, dim, cfg.clustering.k, margin=0.2, scale=30).named_parameters())


def test_heads_start_at_cluster_means_except_round_1_visual():
    from torch import nn

    from cometa.core.strategies import SpeakerClassifier
    from cometa.train.stage2 import start_heads

    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 1, 2, 2, 2])
    a_emb, v_emb = rng.standard_normal((6, 4)), rng.standard_normal((6, 5))
    torch.manual_seed(0)
    for trained in (True, False):
        audio = SpeakerClassifier(nn.Identity(), 4, 3, margin=0.2, scale=30)
        visual = SpeakerClassifier(nn.Identity(), 5, 3, margin=0.2, scale=30)
        random_rows = visual.head.weight.detach().clone()
        start_heads(audio, visual, a_emb, v_emb, labels, visual_trained=trained)
        for head, emb in ((audio.head, a_emb), (visual.head, v_emb)):
            unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
            means = np.stack([unit[labels == c].mean(0) for c in range(3)])
            means /= np.linalg.norm(means, axis=1, keepdims=True)  # independent: mean of unit rows, normalised
            if head is visual.head and not trained:
                assert torch.equal(head.weight.detach(), random_rows)
            else:
                np.testing.assert_allclose(head.weight.detach().numpy(), means, rtol=0, atol=1e-6)
