"""The run store: scalars round-trip with their keys, concurrent writers lose nothing, files are atomic."""
import multiprocessing as mp

import numpy as np
import pandas as pd
import pytest
import yaml

from cometa.runs import COLUMNS, RunStore, list_runs


def test_scalars_round_trip_with_filters(tmp_path):
    store = RunStore(tmp_path / "r1", create=True)
    store.log("loss_csl", 2.5, stage="stage1", epoch=1)
    store.log_many([dict(name="eer", value=0.1 * i, stage="eval/O", strategy="cometa", round=i, modality="audio")
                    for i in range(1, 4)])
    df = store.scalars()
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 4 and set(df["run"]) == {"r1"}
    stage1 = store.scalars(strategy=None)
    assert len(stage1) == 1 and stage1["round"].iloc[0] == 0 and stage1["value"].iloc[0] == 2.5
    eer = store.scalars(strategy="cometa", round=[2, 3])
    assert eer["value"].tolist() == pytest.approx([0.2, 0.3])
    assert eer["modality"].tolist() == ["audio", "audio"]


def test_unknown_columns_are_errors(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    with pytest.raises(KeyError, match="modalty"):
        store.log("eer", 0.1, stage="eval/O", modalty="audio")
    with pytest.raises(KeyError, match="strat"):
        store.scalars(strat="x")


def test_delete_scalars_keeps_completed_epochs(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    store.log_many([dict(name="lambda", value=1.0, stage="train", strategy="cometa", round=1, epoch=e)
                    for e in (1, 2, 3)]
                   + [dict(name="lambda", value=1.0, stage="train", strategy="baseline", round=1, epoch=3),
                      dict(name="loss_csl", value=1.0, stage="stage1", epoch=3)])
    n = store.delete_scalars(strategy="cometa", stage="train", round=1, min_epoch=2)
    assert n == 2
    assert store.scalars(strategy="cometa")["epoch"].tolist() == [1]
    assert len(store.scalars(strategy="baseline")) == 1  # other strategies untouched
    store.delete_scalars(strategy=None, stage=["stage1"])
    assert len(store.scalars(stage="stage1")) == 0


def _writer(run_dir, worker, n):
    store = RunStore(run_dir)
    for i in range(n):
        store.log("x", worker * 1000 + i, stage="train", strategy=f"w{worker}", epoch=i)


def test_concurrent_writers_lose_nothing(tmp_path):
    run = tmp_path / "r"
    RunStore(run, create=True)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(run, w, 150)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    df = RunStore(run).scalars(stage="train")
    assert len(df) == 600
    for w in range(4):
        assert sorted(df[df["strategy"] == f"w{w}"]["value"]) == [w * 1000 + i for i in range(150)]
    import sqlite3

    assert sqlite3.connect(run / "store.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_arrays_and_tables_are_written_atomically(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    store.save_array("a/emb.npz", keys=np.array(["u1", "u2"]), audio=np.eye(2, dtype=np.float32))
    z = store.load_arrays("a/emb.npz")
    assert z["keys"].tolist() == ["u1", "u2"] and np.array_equal(z["audio"], np.eye(2))

    class Boom:  # np.asarray of this raises half-way through writing
        def __array__(self, *a, **k):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.save_array("a/emb.npz", audio=np.zeros(3), bad=Boom())
    assert np.array_equal(store.load_arrays("a/emb.npz")["audio"], np.eye(2))  # old file intact
    assert sorted(p.name for p in (tmp_path / "r" / "a").iterdir()) == ["emb.npz"]  # no temp left
    df = pd.DataFrame({"key": ["u1", "u2"], "consensus": [3, -1]})
    store.save_table("a/labels.parquet", df)
    pd.testing.assert_frame_equal(store.load_table("a/labels.parquet"), df)
    with pytest.raises(ValueError, match="relative"):
        store.save_json("../escape.json", {})


def test_config_git_sha_and_done_markers(tmp_path):
    run = tmp_path / "r"
    store = RunStore(run, create=True)
    store.write_config({"preset": "tiny", "seed": 3})
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["preset"] == "tiny" and cfg["seed"] == 3 and "git_sha" in cfg
    assert cfg["git_sha"] is None or len(cfg["git_sha"].split("-")[0]) == 40
    step = run / "cometa" / "round_1"
    assert not store.is_done(step, inputs_hash="abc")
    store.mark_done(step, inputs_hash="abc", seconds=1.5)
    assert store.is_done(step, inputs_hash="abc") and not store.is_done(step, inputs_hash="abd")
    assert store.load_json("cometa/round_1/done.json")["seconds"] == 1.5
    assert list_runs(tmp_path) == [run] and list_runs(run) == [run]
    with pytest.raises(FileNotFoundError, match="store.sqlite"):
        RunStore(tmp_path / "nothing")


def test_runtime_decisions_go_into_the_config_and_loading_ignores_them(tmp_path):
    from cometa.config import load_config, load_run_config

    cfg = load_config("tiny")
    store = RunStore(tmp_path / "r", create=True)
    record = {"openblas_coretype": {"value": "SkylakeX", "source": "cometa", "reason": "generic faiss kernels"}}
    store.write_config(cfg.to_dict(), runtime=record)
    assert store.config()["runtime"] == record
    assert load_run_config(tmp_path / "r" / "config.yaml").to_dict() == cfg.to_dict()


def test_copy_scalars_keeps_values_and_times(tmp_path):
    src = RunStore(tmp_path / "src", create=True)
    src.log_many([dict(name="eer", value=0.1 * r, stage="eval/O", strategy="cometa", round=r, modality="audio")
                  for r in (1, 2, 3)] + [dict(name="eer", value=0.5, stage="eval/O", round=0, modality="audio"),
                                         dict(name="lambda", value=None, stage="train", strategy="cometa", round=1,
                                              epoch=1, step=4)])
    dst = RunStore(tmp_path / "dst", create=True)
    assert dst.copy_scalars(src, strategy=None) == 1
    assert dst.copy_scalars(src, strategy="cometa", round=[1, 2], strategy_as="baseline") == 3
    got, want = dst.scalars(), src.scalars()
    assert set(got["run"]) == {"dst"} and got["strategy"].tolist() == [None, "baseline", "baseline", "baseline"]
    want = pd.concat([want[want["strategy"].isna()], want[want["strategy"].notna() & (want["round"] <= 2)]])
    for col in ("stage", "round", "epoch", "step", "modality", "name", "value", "time"):
        pd.testing.assert_series_equal(got[col].reset_index(drop=True), want[col].reset_index(drop=True),
                                       check_names=False, obj=col)
