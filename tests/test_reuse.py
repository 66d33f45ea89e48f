"""``cometa run --from RUN``: a new run starts from another run's finished corpus and Stage I where they
match its settings, with those steps' rows and nothing of the source's Stage II (no training here:
only the upstream steps are planned, and they must be skipped as complete)."""
import json
import os

import pandas as pd
import pytest

from cometa.pipeline.reuse import REUSED_FILE
from cometa.pipeline.run import PipelineError, run_pipeline, run_study
from cometa.runs import RunStore

UPSTREAM = ["corpus", "stage1", "analysis/stage1"]
COLUMNS = ["strategy", "stage", "round", "epoch", "step", "modality", "name", "value", "time"]


def _rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[COLUMNS].astype({"round": int, "epoch": float, "step": float, "value": float}).sort_values(
        COLUMNS).reset_index(drop=True)


def test_a_new_run_starts_from_the_sources_corpus_and_stage1(tiny_run, tmp_path):
    run = tmp_path / "variant"
    outcome = run_pipeline("tiny", run_dir=run, progress=False, only=UPSTREAM, reuse=tiny_run,
                           overrides=["stage2.distill.teacher=peer"])  # a Stage II option: Stage I matches
    assert outcome == {"corpus": "skipped", "stage1": "skipped", "analysis/stage1": "skipped"}
    assert json.loads((run / REUSED_FILE).read_text())["steps"] == dict.fromkeys(UPSTREAM, "reused")
    # the checkpoint is the source's file (hard link), not a copy of it
    assert os.path.samefile(run / "stage1" / "model.pt", tiny_run / "stage1" / "model.pt")
    # Stage I's rows (and its AS-norm's), exactly; none of the source's Stage II or projections
    src = RunStore(tiny_run).scalars()
    want = src[src["strategy"].isna() & (src["stage"] != "projection")]
    got = RunStore(run).scalars()
    assert len(want) > 0 and got["strategy"].isna().all()
    pd.testing.assert_frame_equal(_rows(got), _rows(want))
    assert (got["run"] == RunStore(run).run_id).all()
    # the same command again resumes: nothing copied twice
    run_pipeline("tiny", run_dir=run, progress=False, only=UPSTREAM, reuse=tiny_run,
                 overrides=["stage2.distill.teacher=peer"])
    assert len(RunStore(run).scalars()) == len(want)


def test_a_stage1_of_other_settings_is_not_reused(tiny_run, tmp_path):
    run = tmp_path / "pooling"
    # only the corpus is planned to run: query-attention pooling would retrain Stage I
    outcome = run_pipeline("tiny", run_dir=run, progress=False, only=["corpus"], reuse=tiny_run,
                           overrides=["audio_encoder.pooling=query_attention"])
    assert outcome == {"corpus": "skipped"}
    steps = json.loads((run / REUSED_FILE).read_text())["steps"]
    assert steps == {"corpus": "reused", "stage1": "other settings in the source: runs here",
                     "analysis/stage1": "other settings in the source: runs here"}
    assert not (run / "stage1").exists() and RunStore(run).scalars().empty


def test_reuse_refuses_what_it_cannot_do_and_writes_nothing(tiny_run, run_copy, tmp_path):
    with pytest.raises(PipelineError, match="not a run directory"):
        run_pipeline("tiny", run_dir=tmp_path / "a", progress=False, only=UPSTREAM, reuse=tmp_path / "nothing")
    assert not (tmp_path / "a" / REUSED_FILE).exists() and not (tmp_path / "a" / "store.sqlite").exists()
    # a run directory that holds a run already: its store and config stay as they were
    other = run_copy("other")
    config, rows = (other / "config.yaml").read_bytes(), len(RunStore(other).scalars())
    with pytest.raises(PipelineError, match="already holds one"):
        run_pipeline("tiny", run_dir=other, progress=False, only=UPSTREAM, reuse=tiny_run)
    assert (other / "config.yaml").read_bytes() == config and len(RunStore(other).scalars()) == rows
    assert not (other / REUSED_FILE).exists()
    # a run started from one source cannot be continued from another
    run = tmp_path / "b"
    run_pipeline("tiny", run_dir=run, progress=False, only=["corpus"], reuse=tiny_run)
    with pytest.raises(PipelineError, match=f"was started from {tiny_run.resolve()}"):
        run_pipeline("tiny", run_dir=run, progress=False, only=["corpus"], reuse=other)


def test_a_study_starts_each_seed_from_the_same_seed_of_another(tiny_study, tmp_path):
    study = tmp_path / "variant_study"
    run_study("tiny", study_dir=study, seeds=[0, 1], report=False, progress=False, only=["corpus"],
              reuse=tiny_study)
    for seed in (0, 1):
        record = json.loads((study / f"seed_{seed}" / REUSED_FILE).read_text())
        assert record["source"] == str((tiny_study / f"seed_{seed}").resolve())
        assert record["steps"]["corpus"] == "reused"
