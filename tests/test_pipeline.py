"""The tiny study end to end through papermill: resume after SIGKILL, failing notebooks, reruns.

These tests share one tiny run (module-scoped), which starts from the session's tiny run's corpus and
Stage I (``--from``), to keep the suite fast.
"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cometa.pipeline.run import PipelineError, run_pipeline
from cometa.runs import RunStore

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
# cometa only, 2 rounds of 2 epochs: a round long enough to be killed in the middle of; the report
# without its SVG/PDF/PNG export (test_report.py tests that; each export starts a Chromium, ~20 s)
RESUME_ARGS = dict(strategies=["cometa"], rounds=2, overrides=["stage2.epochs_per_round=2", "projection.enabled=false",
                                                              "evaluation.as_norm.enabled=false",
                                                              "evaluation.label_issues.enabled=false",
                                                              "report.static=false"])


def _final_metrics(run_dir):
    df = RunStore(run_dir).scalars(stage="eval/O")
    df = df[df["round"] == df["round"].max()]
    columns = ["strategy", "modality", "name", "value"]
    return df.sort_values(["strategy", "modality", "name"])[columns].reset_index(drop=True)


@pytest.fixture(scope="module")
def uninterrupted(tiny_run, tmp_path_factory):
    # the session's tiny run has the same corpus and Stage I (RESUME_ARGS changes neither): start from them
    run_dir = tmp_path_factory.mktemp("pipe") / "straight"
    outcome = run_pipeline("tiny", run_dir=run_dir, progress=False, reuse=tiny_run, **RESUME_ARGS)
    assert outcome == {"corpus": "skipped", "stage1": "skipped", "cometa/round_1": "ran", "cometa/round_2": "ran",
                       "report": "ran"}, outcome
    assert json.loads((run_dir / "reused.json").read_text())["steps"] == {"corpus": "reused", "stage1": "reused"}
    return run_dir


def test_rerun_skips_complete_steps(uninterrupted):
    outcome = run_pipeline("tiny", run_dir=uninterrupted, progress=False, **RESUME_ARGS)
    assert {k: v for k, v in outcome.items() if k != "report"} == {
        "corpus": "skipped", "stage1": "skipped", "cometa/round_1": "skipped", "cometa/round_2": "skipped"}
    # every step kept its executed notebook
    for nb in ("corpus/corpus.ipynb", "stage1/stage1.ipynb", "cometa/round_1/round.ipynb",
               "cometa/round_2/round.ipynb"):
        assert (uninterrupted / nb).exists(), nb


def test_sigkill_mid_round_then_resume_matches_uninterrupted(uninterrupted, tmp_path):
    run_dir = tmp_path / "killed"
    # the uninterrupted run with its last round (folder and rows) and report undone: the killed run redoes
    # only round 2 (Stage I and round 1 are skipped as complete), which saves a Stage I and a round
    shutil.copytree(uninterrupted, run_dir, ignore=shutil.ignore_patterns("report"))
    shutil.rmtree(run_dir / "cometa" / "round_2")
    con = sqlite3.connect(run_dir / "store.sqlite")
    with con:
        con.execute("DELETE FROM scalars WHERE strategy = 'cometa' AND round = 2")
    con.close()
    # the same run as RESUME_ARGS (the same plan, so every step gets the same threads as the uninterrupted run)
    cmd = [sys.executable, "-m", "cometa", "run", "--preset", "tiny", "--run-dir", str(run_dir), "--quiet",
           "--strategies", ",".join(RESUME_ARGS["strategies"]), "--rounds", str(RESUME_ARGS["rounds"]),
           *(a for o in RESUME_ARGS["overrides"] for a in ("--set", o))]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = run_dir / "cometa" / "round_2" / "progress.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # wait for the first epoch of round 2 to be checkpointed
            if progress.exists() and json.loads(progress.read_text())["done"] >= 1:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("round 2 never started")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole tree: papermill's kernel too
        proc.wait()
    assert not (run_dir / "cometa" / "round_2" / "done.json").exists()
    assert (run_dir / "cometa" / "round_2" / "train_state.pt").exists()

    outcome = run_pipeline("tiny", run_dir=run_dir, progress=False, **RESUME_ARGS)
    assert outcome["stage1"] == "skipped" and outcome["cometa/round_1"] == "skipped"
    assert outcome["cometa/round_2"] == "ran"
    a, b = _final_metrics(uninterrupted), _final_metrics(run_dir)
    assert len(a) > 0
    np.testing.assert_allclose(a["value"], b["value"], rtol=0, atol=1e-9)
    # the resumed epoch's rows were replaced, not duplicated
    train = RunStore(run_dir).scalars(strategy="cometa", stage="train", name="lambda")
    assert sorted(train["epoch"].tolist()) == [1, 2, 3, 4]


def test_failing_notebook_names_step_cell_and_notebook(uninterrupted, tmp_path):
    run_dir = tmp_path / "failing"
    shutil.copytree(uninterrupted, run_dir)
    (run_dir / "stage1" / "embeddings.npz").write_bytes(b"not an npz")  # what round 1 reads first
    with pytest.raises(PipelineError) as e:  # τ changed: the rounds rerun, Stage I is kept
        run_pipeline("tiny", run_dir=run_dir, progress=False, strategies=["cometa"], rounds=2,
                     overrides=RESUME_ARGS["overrides"] + ["stage2.tau=0.3"])
    msg = str(e.value)
    assert "cometa/round_1" in msg and "code cell" in msg and "embeddings.npz" in msg
    assert str(run_dir / "cometa" / "round_1" / "round.ipynb") in msg


def test_out_of_range_value_is_refused_before_any_step(uninterrupted, tmp_path):
    from cometa.config import ConfigError

    run_dir = tmp_path / "refused"
    with pytest.raises(ConfigError, match=r"'stage2.tau' must be in \[0, 1\), got 1.5"):
        run_pipeline("tiny", run_dir=run_dir, progress=False, overrides=["stage2.tau=1.5"])
    assert not run_dir.exists()  # nothing half-written


def test_changed_value_reruns_only_dependent_steps(uninterrupted, tmp_path):
    run_dir = tmp_path / "edited"
    shutil.copytree(uninterrupted, run_dir)
    outcome = run_pipeline("tiny", run_dir=run_dir, progress=False, strategies=["cometa"], rounds=2,
                           overrides=RESUME_ARGS["overrides"] + ["stage2.tau=0.3"])
    assert outcome["corpus"] == "skipped" and outcome["stage1"] == "skipped"
    assert outcome["cometa/round_1"] == "ran" and outcome["cometa/round_2"] == "ran"
    lam = RunStore(run_dir).scalars(strategy="cometa", stage="train", name="lambda").sort_values("epoch")
    # τ = 0.3, E_k = 10: epoch e trains with λ(e - 1), epoch 1 with λ = 1
    assert lam["value"].tolist() == pytest.approx([1.0, 1 - 0.03, 1 - 0.06, 1 - 0.09])


def test_report_tables_match_the_store(uninterrupted):
    """The pipeline's last step wrote Table 1/2 from the store: every cell equals the stored EER."""
    import re

    report = uninterrupted / "report"
    tables = json.loads((report / "tables.json").read_text())
    store = RunStore(uninterrupted)
    ev = store.scalars(stage="eval/O", name="eer")
    t1 = tables["table1"]
    assert t1["rows"][:2] == ["Untrained", "Stage I"] and "Round 2" in t1["rows"]
    s1 = ev[ev["strategy"].isna() & (ev["round"] == 0)]["value"].iloc[-1]
    assert t1["values"]["Stage I"]["cometa/audio"] == pytest.approx(s1)
    for r in (1, 2):
        for m in ("audio", "visual"):
            want = ev[(ev["strategy"] == "cometa") & (ev["round"] == r) & (ev["modality"] == m)]["value"].iloc[-1]
            assert t1["values"][f"Round {r}"][f"cometa/{m}"] == pytest.approx(want)
    # the Markdown shows the same numbers, as percentages with two decimals
    md = (report / "table1.md").read_text()
    row2 = next(line for line in md.splitlines() if line.startswith("| Round 2 |"))
    shown = [float(x) for x in re.findall(r"\d+\.\d+", row2)]
    want = [ev[(ev["strategy"] == "cometa") & (ev["round"] == 2) & (ev["modality"] == m)]["value"].iloc[-1] * 100
            for m in ("audio", "visual")]
    assert shown == pytest.approx(want, abs=0.006)
    for row in tables["table2"]["rows"]:
        stored = store.scalars(stage="eval/H", name="min_dcf_0.01", strategy=row["strategy"], round=row["round"],
                               modality=row["modality"])["value"].iloc[-1]
        assert row["H/min_dcf_0.01"] == pytest.approx(stored)
    # report.static=false: tables and report.html, no exported figure (and so no Chromium started)
    assert (report / "report.html").exists()
    assert [p.name for p in report.iterdir() if p.suffix in (".svg", ".pdf", ".png")] == []


def test_a_kernel_that_dies_while_starting_is_started_again_and_other_errors_are_not(capsys):
    """Two kernels started at once by different processes can race for a port (jupyter_client picks them,
    the kernel binds them later): nbclient then raises "Kernel died before replying to kernel_info" before
    any cell ran. The step is executed again, up to KERNEL_START_ATTEMPTS in all; any other error at once."""
    from cometa.pipeline.run import KERNEL_START_ATTEMPTS, _retry_kernel_start

    calls = []

    def dies_then_runs(n_deaths):
        def execute():
            calls.append(1)
            if len(calls) <= n_deaths:
                raise RuntimeError("Kernel died before replying to kernel_info")
        return execute

    _retry_kernel_start(dies_then_runs(KERNEL_START_ATTEMPTS - 1), step="stage1")
    assert len(calls) == KERNEL_START_ATTEMPTS
    assert capsys.readouterr().err.count("stage1: the kernel died while starting") == KERNEL_START_ATTEMPTS - 1

    calls.clear()
    with pytest.raises(RuntimeError, match="kernel_info"):  # it keeps dying: the last error is the step's
        _retry_kernel_start(dies_then_runs(KERNEL_START_ATTEMPTS), step="stage1")
    assert len(calls) == KERNEL_START_ATTEMPTS

    calls.clear()

    def fails_in_a_cell():
        calls.append(1)
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        _retry_kernel_start(fails_in_a_cell, step="stage1")
    assert len(calls) == 1
