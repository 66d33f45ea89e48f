"""``corpus.missing_faces: audio_only`` through Stage I and two rounds: utterances without face frames
train and are evaluated on audio only, and no NaN reaches the clustering, the scorer or the labels."""
import shutil

import numpy as np
import pytest

from cometa.config import load_config
from cometa.data.synthetic import build_corpus
from cometa.pipeline import steps
from cometa.runs import RunStore

pytestmark = pytest.mark.slow  # a corpus with missing faces through every round


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("faces")
    cfg = load_config("tiny")
    root = base / "corpus"
    shutil.copytree(build_corpus(cfg.corpus.synthetic, progress=False), root)
    gone = []
    for split, n in (("train", 9), ("test", 4)):  # remove the face frames of some utterances
        dirs = sorted(p for p in (root / split / "faces").glob("*/*/*") if p.is_dir())
        for d in dirs[1::max(1, len(dirs) // n)][:n]:
            shutil.rmtree(d)
            gone.append((split, "/".join(d.parts[-3:]) + ".wav"))
    run = base / "run"
    cfg = load_config("tiny", overrides=[f"corpus.root={root}", "corpus.missing_faces=audio_only", "stage1.epochs=1",
                                         "stage2.epochs_per_round=1", "stage2.strategies=[coteaching_plus]"])
    RunStore(run, create=True).write_config(cfg.to_dict())
    steps.corpus_step(run, progress=False)
    steps.stage1_step(run, progress=False)
    for r in (1, 2):
        steps.round_step(run, "coteaching_plus", r, progress=False)
    return run, gone


def test_audio_only_utterances_go_through_every_round(run):
    run, gone = run
    store = RunStore(run)
    no_face = {key for split, key in gone if split == "train"}
    for r in (1, 2):
        labels = store.load_table(f"coteaching_plus/round_{r}/labels.parquet")
        missing = labels["key"].isin(no_face).to_numpy()
        assert missing.sum() == len(no_face)
        assert (labels["audio"] >= 0).all() and (labels["joint"] >= 0).all()
        if r == 2:  # from round 2 the visual view is clustered: the utterances without faces have none
            assert (labels.loc[missing, "visual"] == -1).all() and (labels.loc[~missing, "visual"] >= 0).all()
            # ... and keep the joint (voice-only) label, which their audio label agrees or disagrees with
            assert (labels.loc[missing, "consensus"] == labels.loc[missing, "joint"]).all()
        emb = store.load_arrays(f"coteaching_plus/round_{r}/embeddings.npz")
        assert np.isnan(emb["visual"][missing]).all() and np.isfinite(emb["visual"][~missing]).all()
        assert np.isfinite(emb["audio"]).all() and np.isfinite(emb["joint"]).all()
    metrics = store.scalars(strategy="coteaching_plus", round=2)
    ev = metrics[metrics["stage"].str.startswith("eval/")]
    eer = ev[ev["name"] == "eer"]
    assert set(eer["modality"]) == {"audio", "visual", "fused"} and np.isfinite(eer["value"]).all()
    unscored = ev[ev["name"] == "trials_unscored"]
    assert set(unscored["modality"]) == {"visual", "fused"} and (unscored["value"] > 0).all()
    quality = metrics[(metrics["stage"] == "labels") & (metrics["name"] == "purity")]
    assert np.isfinite(quality["value"]).all() and "visual" in set(quality["modality"])
