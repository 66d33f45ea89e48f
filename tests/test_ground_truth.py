"""No strategy reads the ground truth: only the instrumentation does.

The true identities of the embedded corpus are shuffled across its training utterances; every
strategy's trained weights and pseudo labels must come out bit-identical, while the instrumentation
(wrong-label fractions, purity) changes.
"""
import shutil

import numpy as np
import pytest
import torch

from cometa.config import load_config
from cometa.core.pseudo_labels import truth_labels
from cometa.pipeline import steps
from cometa.runs import RunStore

pytestmark = pytest.mark.slow  # Stage I and a round trained twice

STRATEGIES = ("baseline", "coteaching_plus", "cometa", "lgl", "dlg_lc")


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("truth") / "run"
    # two epochs per round: DLG-LC's gate is fitted after the first (ungated) one; LGL gated from its first
    # epoch, at a gate inside the tiny preset's range of losses (~5-20) so that its gated steps train
    cfg = load_config("tiny", overrides=["stage1.epochs=1", "stage2.epochs_per_round=2", "projection.enabled=false",
                                         "stage2.lgl.warmup_epochs=0", "stage2.lgl.gate=10"])
    RunStore(run, create=True).write_config(cfg.to_dict())
    steps.corpus_step(run, progress=False)
    steps.stage1_step(run, progress=False)
    return run


def _shuffled_identities(monkeypatch):
    real = steps.load_corpus

    def load(cfg):
        corpus = real(cfg)
        rng = np.random.default_rng(123)
        corpus.train["speaker"] = rng.permutation(corpus.train["speaker"].to_numpy())
        return corpus

    monkeypatch.setattr(steps, "load_corpus", load)


def _weights(run, strategy, r):
    state = torch.load(run / strategy / f"round_{r}" / "checkpoint.pt", weights_only=True)
    return {f"{m}.{k}": v for m in ("audio", "visual") for k, v in state[m].items()}


def _rounds(strategy: str) -> tuple[int, ...]:
    """Round 2 (its visual view clustered, the gates fitted in round 1) for the strategies that carry state
    from a round to the next (DLG-LC's gate) or cluster the faces on their own weights; round 1 for the rest."""
    return (1, 2) if strategy in ("cometa", "dlg_lc") else (1,)


def _gated_steps_trained(store: RunStore, strategy: str) -> None:
    """In every round the gate was on in an epoch (LGL: both; DLG-LC: the second), left samples out and
    kept some: steps were taken under it (the bit-identity check above covers gated training)."""
    train = store.scalars(strategy=strategy, stage="train")
    steps = train[train["step"].notna() & (train["name"] == "disagreement_frac")]  # one row per batch
    train = train[train["step"].isna()]
    for r in _rounds(strategy):
        rows = train[train["round"] == r]
        gated = sorted(rows.loc[rows["name"] == "loss_gate", "epoch"].unique())
        assert gated, (strategy, r, "no gated epoch")
        n_batches = steps[steps["epoch"].isin(gated)].groupby("epoch").size()
        for m in ("audio", "visual"):
            sel = rows[(rows["name"] == f"selected_frac_{m}") & rows["epoch"].isin(gated)]["value"]
            empty = rows[(rows["name"] == f"n_gate_empty_{m}") & rows["epoch"].isin(gated)].set_index("epoch")["value"]
            assert len(sel) == len(gated) and (sel > 0).all(), (strategy, r, m, sel.tolist())  # trained
            assert len(empty) == len(gated) and (empty < n_batches.reindex(empty.index)).all()  # steps were taken
        sel = rows[rows["name"].str.startswith("selected_frac_") & rows["epoch"].isin(gated)]["value"]
        assert (sel < 1).any(), (strategy, r, "the gate left nothing out")


def test_shuffled_identities_leave_training_bit_identical(stage1_run, tmp_path, monkeypatch):
    shuffled = tmp_path / "shuffled"
    shutil.copytree(stage1_run, shuffled)
    for s in STRATEGIES:
        for r in _rounds(s):
            steps.round_step(stage1_run, s, r, progress=False)
    with monkeypatch.context() as m:
        _shuffled_identities(m)
        for s in STRATEGIES:
            for r in _rounds(s):
                steps.round_step(shuffled, s, r, progress=False)
    store_a, store_b = RunStore(stage1_run), RunStore(shuffled)
    for s in STRATEGIES:
        for r in _rounds(s):
            a, b = _weights(stage1_run, s, r), _weights(shuffled, s, r)
            assert a.keys() == b.keys()
            for k in a:
                assert torch.equal(a[k], b[k]), (s, r, k)
            la = store_a.load_table(f"{s}/round_{r}/labels.parquet")
            lb = store_b.load_table(f"{s}/round_{r}/labels.parquet")
            for col in ("audio", "visual", "joint", "consensus", "kept"):
                np.testing.assert_array_equal(la[col].to_numpy(), lb[col].to_numpy())
            assert not (la["speaker"].to_numpy() == lb["speaker"].to_numpy()).all()  # the truth did change
        if s in ("lgl", "dlg_lc"):
            _gated_steps_trained(store_a, s)
        # ... and so did what the instrumentation measured with it
        pa = store_a.scalars(strategy=s, stage="labels", name="purity")["value"].to_numpy()
        pb = store_b.scalars(strategy=s, stage="labels", name="purity")["value"].to_numpy()
        assert not np.array_equal(pa, pb)


def test_truth_labels_are_the_same_every_round_and_measured_as_injected(stage1_run, tmp_path):
    """clustering.method: truth, 30 % moved by video to the nearest voice: rounds 1 and 2 train on one
    labelling, the one truth_labels gives on Stage I's audio embeddings (round 2 embeds with round 1's
    encoder, yet its labels still follow Stage I's); every video carries one label; what the
    instrumentation counts as wrong is what was moved (purity of the consensus = the unmoved fraction,
    every wrong label in a wholly wrong video); and what round 1 trains on is exactly those labels."""
    import yaml

    run = tmp_path / "truth"
    shutil.copytree(stage1_run, run, ignore=shutil.ignore_patterns(*STRATEGIES))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["clustering"].update(method="truth", truth_noise=0.3, truth_noise_unit="video",
                             truth_noise_target="audio_nearest")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    steps.round_step(run, "baseline", 1, progress=False)
    steps.round_step(run, "baseline", 2, progress=False)
    store = RunStore(run)
    t1, t2 = (store.load_table(f"baseline/round_{r}/labels.parquet") for r in (1, 2))
    np.testing.assert_array_equal(t1["consensus"].to_numpy(), t2["consensus"].to_numpy())
    sessions = t1["key"].str.rsplit("/", n=1).str[0].to_numpy()
    expected = truth_labels(t1["speaker"].to_numpy(), sessions, noise=0.3, unit="video", seed=0,
                            target="audio_nearest", embeddings=store.load_arrays("stage1/embeddings.npz")["audio"])
    np.testing.assert_array_equal(t1["consensus"].to_numpy(), expected)
    assert (t1["visual"] == -1).all() and (t2["visual"] == t2["consensus"]).all()  # round 1 has no visual view
    true = np.unique(t1["speaker"].to_numpy(), return_inverse=True)[1]
    moved = t1["consensus"].to_numpy() != true
    assert 0.3 <= moved.mean() < 0.3 + 8 / len(true)  # whole videos until 30 % is reached
    assert t1.groupby(t1["key"].str.rsplit("/", n=1).str[0])["consensus"].nunique().max() == 1
    quality = store.scalars(strategy="baseline", stage="labels", round=1, modality="consensus")
    value = dict(zip(quality["name"], quality["value"]))
    labels = t1["consensus"].to_numpy()
    direct = sum(np.bincount(true[labels == c]).max() for c in np.unique(labels)) / len(labels)
    assert value["purity"] == pytest.approx(direct) and direct >= 1 - moved.mean()  # a moved video may win a cluster
    assert value["session_coherence"] == 1.0
    flips = store.scalars(strategy="baseline", stage="labels", round=2, name="flip_rate")["value"].tolist()
    assert flips == [0.0]
