"""The kill campaign's short version (``tools/kill_campaign.py`` runs the long one), and reading the
store while a run writes it.

A copy of the session's tiny run has its last baseline round and its projections undone (their
folders and rows removed; the report is left out); rerunning them is killed twice, the whole
process tree with SIGKILL: with SQLite rows inserted but not committed, and with the projections half
written (a checkpoint written but not renamed is killed in tests/test_study_run.py, a round SIGKILLed
mid-epoch in tests/test_pipeline.py, all kinds in ``tools/kill_campaign.py``). The run then ends, and must equal the
uninterrupted tiny run: every scalar but wall-clock timings to 1e-9, no duplicate rows, label tables
exactly, every array, checkpoint and record to 1e-9, no temporary file left.

All the while a reader polls the store (``RunStore.scalars``, as the dashboard and the run API do) and
must only ever see whole groups of rows (every (strategy, stage, round, epoch, name) present with all
its rows or absent) and, for every step whose done marker it saw before reading, all of its rows.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from cometa.runs import RunStore
from tools.kill_campaign import compare_runs, fault_kill, launch, step_records

pytestmark = pytest.mark.slow
GROUP = ["strategy", "stage", "round", "epoch", "name"]


def _last_round(run_dir: Path) -> tuple[str, int]:
    """The last round of the run's first strategy: the round the test undoes (baseline/round_2 in tiny)."""
    strategy = RunStore(run_dir).config()["stage2"]["strategies"][0]
    return strategy, max(int(d.name.split("_")[1]) for d in (run_dir / strategy).glob("round_*"))


def _group_counts(df) -> dict[tuple, int]:
    return {k: int(v) for k, v in df.fillna({"epoch": -1}).astype({"epoch": int}).astype(str)
            .groupby(GROUP, dropna=False).size().items()}


def _from_analysis(key: tuple) -> bool:
    """A row group the analysis step writes (cometa.pipeline.analysis): AS-norm metrics, label-issue scores."""
    return key[1].startswith("label_issues/") or key[4].endswith("_asnorm")


class Reader(threading.Thread):
    """Reads the store in a loop; records every snapshot that shows an incomplete group or step."""

    def __init__(self, run_dir: Path, reference: dict[tuple, int], redo: list[str]):
        super().__init__(daemon=True)
        self.run_dir, self.reference, self.redo = run_dir, reference, redo
        self.stop, self.reads, self.problems = threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            done = [(self.run_dir / step / "done.json").exists() for step in self.redo]
            counts = _group_counts(RunStore(self.run_dir).scalars())
            self.reads += 1
            for key, n in counts.items():
                if n != self.reference.get(key):
                    self.problems.append(f"{key}: {n} row(s), complete is {self.reference.get(key)}")
            strategy, r = self.redo[0].split("/round_")
            # the round's own rows, the analysis step's (AS-norm and label-issue scores of every round of
            # the strategy) and the projections step's (stage "projection", every round)
            of_analysis = [k for k in self.reference if k[0] == strategy and _from_analysis(k)]
            of_round = [k for k in self.reference
                        if k[0] == strategy and k[2] == r and k[1] != "projection" and not _from_analysis(k)]
            of_projections = [k for k in self.reference if k[1] == "projection"]
            for step_done, keys in zip(done, (of_round, of_analysis, of_projections), strict=True):
                if step_done:
                    self.problems += [f"{k}: absent though its step is done" for k in keys if k not in counts]
            self.stop.wait(0.05)


def test_killed_twice_the_run_ends_equal_to_the_uninterrupted_one(tiny_run, tmp_path):
    run = tmp_path / "killed"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("report"))
    strategy, last = _last_round(run)
    # the round, the strategy's analysis (it reads the round) and the projections: what a kill of the round redoes
    redo = [f"{strategy}/round_{last}", f"analysis/{strategy}", "projections"]
    for step in redo:
        shutil.rmtree(run / step)
    for p in run.glob("*/round_*/projection.parquet"):
        p.unlink()  # the projections step rewrites every one
    con = sqlite3.connect(run / "store.sqlite")
    with con:
        con.execute("DELETE FROM scalars WHERE (strategy = ? AND round = ?) OR stage = 'projection'", (strategy, last))
    con.close()
    steps = {s: r for s, r in step_records(tiny_run).items() if s in redo}
    cfg = RunStore(tiny_run).config()["stage2"]
    cmd = [sys.executable, "-c", "from cometa.pipeline.run import run_pipeline; "
           f"run_pipeline('tiny', run_dir={str(run)!r}, progress=False, only={redo!r}, "
           f"strategies={cfg['strategies']!r}, rounds={cfg['rounds']})"]
    cache = Path(os.environ["COMETA_CACHE"]) if os.environ.get("COMETA_CACHE") else None  # tiny_run's corpus
    log = tmp_path / "runs.log"
    reader = Reader(run, _group_counts(RunStore(tiny_run).scalars()), redo)
    reader.start()
    try:
        kills = [
            fault_kill(cmd, run, cache=cache, log=log, steps=steps, kind="sqlite", n=2, timeout=1200),
            # a projection written, not renamed, half of them done (tiny: the 3rd of 6)
            fault_kill(cmd, run, cache=cache, log=log, steps=steps, kind="projection", timeout=1200,
                       n=(len(list(tiny_run.glob("*/round_*/projection.parquet"))) + 1) // 2),
        ]
        final = launch(cmd, cache=cache, log=log)
        assert final.wait(timeout=1200) == 0, log.read_text()[-3000:]
    finally:
        reader.stop.set()
        reader.join()
    assert [bool(k.get("killed")) for k in kills] == [True] * 2, kills
    assert kills[0]["fault"].startswith("sqlite:")
    # the analysis may run beside the projections (tiny: jobs 2)
    assert kills[0]["where"] == [redo[0]] and "projections" in kills[1]["where"]
    assert compare_runs(tiny_run, run, ignore=("report/",)) == []
    assert reader.reads > 10 and reader.problems == [], reader.problems[:10]
