"""One run per directory (cometa.runs.run_lock) and the run-format version of the store.

A second ``cometa run`` on a directory that a live run holds is refused with a message naming the
holder, and writes nothing; once the holder dies (SIGKILL: no clean-up runs) the kernel has released
its flock and the next run takes the directory. A store written by another run format is refused
before anything is written, with a message that says what to do.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cometa.cli import main
from cometa.runs import LOCK_FILE, RUN_FORMAT, RunFormatError, RunLockedError, RunStore, lock_holder, run_lock

ROOT = Path(__file__).resolve().parent.parent
HOLD = ("import sys, time\nfrom cometa.runs import run_lock\n"
        "with run_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n")


def _holder(run_dir: Path) -> subprocess.Popen:
    """Another process holding ``run_dir`` (as a live ``cometa run`` does) until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _files(d: Path) -> dict[str, float]:
    return {str(p.relative_to(d)): p.stat().st_mtime for p in d.rglob("*")}


def test_second_run_on_a_held_directory_is_refused_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    proc = _holder(run_dir)
    try:
        before = _files(run_dir)
        rc = main(["run", "--preset", "tiny", "--run-dir", str(run_dir), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 3
        assert f"{run_dir} is in use by a live run (pid {proc.pid} on {os.uname().nodename}" in err
        assert "another --run-dir" in err
        assert _files(run_dir) == before == {LOCK_FILE: before[LOCK_FILE]}  # no config, no store
        assert lock_holder(run_dir)["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_what_if_into_a_held_directory_is_refused_and_writes_nothing(tiny_run, tmp_path):
    from cometa.pipeline.rerun import what_if

    out = tmp_path / "whatif"
    proc = _holder(out)
    try:
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            what_if(tiny_run, round_=1, out_dir=out, overrides=["stage2.tau=0.3"], strategy="cometa")
        assert [p.name for p in out.iterdir()] == [LOCK_FILE]
    finally:
        proc.kill()
        proc.wait()


def test_a_crashed_holder_leaves_no_stale_lock(tmp_path):
    run_dir = tmp_path / "run"
    proc = _holder(run_dir)
    with pytest.raises(RunLockedError):
        with run_lock(run_dir, wait=0.2):
            pass
    os.kill(proc.pid, signal.SIGKILL)  # no finally, no atexit: only the kernel can release the lock
    proc.wait()
    assert (run_dir / LOCK_FILE).exists() and lock_holder(run_dir) is None
    t0 = time.monotonic()
    with run_lock(run_dir, wait=0):
        assert lock_holder(run_dir)["pid"] == os.getpid()
    assert time.monotonic() - t0 < 1.0
    assert lock_holder(run_dir) is None  # released on leaving the block


def test_the_lock_is_not_inherited_by_child_processes(tmp_path):
    """The run's kernels and torchrun workers are children of the orchestrator: they neither inherit
    its lock (a kernel outliving a crashed run would hold the directory) nor need to take it."""
    run_dir = tmp_path / "run"
    with run_lock(run_dir):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], close_fds=False)
    try:
        assert lock_holder(run_dir) is None  # the parent left the block: nobody holds it
        with run_lock(run_dir, wait=0):
            pass
    finally:
        child.kill()
        child.wait()


def test_store_records_the_run_format_and_refuses_another(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    con = sqlite3.connect(store.db_path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == RUN_FORMAT
    con.execute(f"PRAGMA user_version = {RUN_FORMAT + 1}")
    con.close()
    before = store.db_path.read_bytes()
    with pytest.raises(RunFormatError, match=rf"store.sqlite: written by run format {RUN_FORMAT + 1}, this cometa "
                                             rf"reads format {RUN_FORMAT}. Start a new run directory \(--run-dir\)"):
        RunStore(tmp_path / "run")
    assert store.db_path.read_bytes() == before


def test_a_store_from_before_the_format_number_is_format_1(tmp_path):
    """Runs written before the number existed (user_version 0) have format 1's layout: read, and marked."""
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    con = sqlite3.connect(run_dir / "store.sqlite")
    con.execute("CREATE TABLE scalars (run TEXT NOT NULL, strategy TEXT, stage TEXT NOT NULL, round INTEGER NOT "
                "NULL DEFAULT 0, epoch INTEGER, step INTEGER, modality TEXT, name TEXT NOT NULL, value REAL, "
                "time REAL NOT NULL)")
    con.execute("INSERT INTO scalars VALUES ('old', NULL, 'eval/O', 0, NULL, NULL, 'audio', 'eer', 0.25, 1.0)")
    con.commit()
    con.close()
    assert RunStore(run_dir).scalars(name="eer")["value"].tolist() == [0.25]
    con = sqlite3.connect(run_dir / "store.sqlite")
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    con.close()


def test_cli_refuses_a_run_directory_of_another_format(tmp_path, capsys):
    run_dir = tmp_path / "run"
    RunStore(run_dir, create=True)
    con = sqlite3.connect(run_dir / "store.sqlite")
    con.execute("PRAGMA user_version = 99")
    con.close()
    rc = main(["run", "--preset", "tiny", "--run-dir", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 3 and "written by run format 99" in err and "Start a new run directory" in err
    assert not (run_dir / "config.yaml").exists()
