"""Fixtures shared across test files. Each is self-contained and named for what it gives.

``tiny_run``: one finished run of the ``tiny`` preset (corpus, Stage I, three strategies x two
rounds, projections; the report's tables without its static figures), made once per test session
through the real pipeline (papermill notebooks and all), for the tests that explore a finished run,
the dashboard's and the report's. Tests must not change it: ``run_copy`` gives a copy to change.
While developing, ``COMETA_TEST_TINY_RUN=/path/to/a/finished/tiny/run`` reuses one instead of making
it (about 1.5-3 min on 2 cores). Under pytest-xdist (``make test`` runs a worker per core) the workers share one:
the first to need it makes it under a file lock in the session's common temporary directory, the others
wait for it there.

``tiny_study``: a two-seed study directory built from ``tiny_run`` without training: ``seed_0`` is a
copy of it, ``seed_1`` a copy whose config says seed 1 and whose EERs (``eer``, ``eer_untrained``) are
halved, so that means and standard deviations over the seeds are known exactly.

``run_copy``: ``run_copy(name)`` copies ``tiny_run`` (without its checkpoints) into a fresh directory.

``sqlite_scalars``: ``sqlite_scalars(run_dir)`` reads a run's scalars straight from SQLite, independent
of the run store's own reader, to check what the readers show against.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

TINY_STUDY_EER_FACTOR = {0: 1.0, 1: 0.5}  # seed -> factor applied to every EER of tiny_run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    reuse = os.environ.get("COMETA_TEST_TINY_RUN")
    if reuse:
        run_dir = Path(reuse).resolve()
        assert (run_dir / "report" / "table1.md").exists(), f"COMETA_TEST_TINY_RUN={reuse} is not a finished run"
        return run_dir
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _make_tiny_run(tmp_path_factory.mktemp("tiny_run") / "tiny")
    # xdist: every worker's basetemp (…/pytest-N/popen-gwK) shares the parent …/pytest-N of this session only
    shared = tmp_path_factory.getbasetemp().parent / "tiny_run"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the worker dies)
        if not (shared / "complete").exists():
            shutil.rmtree(shared / "tiny", ignore_errors=True)  # a worker that failed midway
            _make_tiny_run(shared / "tiny")
            (shared / "complete").touch()
    return shared / "tiny"


def _make_tiny_run(run_dir: Path) -> Path:
    from cometa.config import load_config
    from cometa.pipeline.run import plan_steps, run_pipeline
    from cometa.results.report import write_report

    steps = [s.name for s in plan_steps(load_config("tiny"), run_dir) if s.name != "report"]
    outcome = run_pipeline("tiny", run_dir=run_dir, progress=False, only=steps)
    assert set(outcome.values()) == {"ran"} and len(outcome) == len(steps), outcome
    write_report(run_dir, static=False)  # the report's tables without the SVG/PDF/PNG export (~30 s)
    return run_dir


@pytest.fixture(scope="session")
def tiny_study(tiny_run, tmp_path_factory) -> Path:
    study = tmp_path_factory.mktemp("tiny_study") / "study"
    for seed, factor in TINY_STUDY_EER_FACTOR.items():
        run = study / f"seed_{seed}"
        shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("*.pt", "report"))
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "seed": seed}, sort_keys=False))
        con = sqlite3.connect(run / "store.sqlite")
        with con:
            con.execute("UPDATE scalars SET value = value * ? WHERE name IN ('eer', 'eer_untrained')", (factor,))
            con.execute("UPDATE scalars SET run = ?", (run.name,))
        con.close()
    (study / "study.json").write_text(json.dumps({"preset": "tiny", "seeds": list(TINY_STUDY_EER_FACTOR),
                                                  "overrides": [],
                                                  "runs": [f"seed_{s}" for s in TINY_STUDY_EER_FACTOR]}))
    return study


@pytest.fixture(scope="session")
def run_copy(tiny_run, tmp_path_factory) -> Callable[..., Path]:
    def copy(name: str = "run", *, ignore: tuple[str, ...] = ("*.pt",)) -> Path:
        dest = tmp_path_factory.mktemp("run_copy") / name
        shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns(*ignore))
        return dest

    return copy


@pytest.fixture(scope="session")
def sqlite_scalars() -> Callable[[Path], pd.DataFrame]:
    def read(run_dir: Path) -> pd.DataFrame:
        con = sqlite3.connect(Path(run_dir) / "store.sqlite")
        try:
            return pd.read_sql_query("SELECT * FROM scalars", con)
        finally:
            con.close()

    return read
