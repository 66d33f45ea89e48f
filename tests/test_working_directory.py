"""Steps in threads never move the process's working directory (issue: papermill's ``cwd=`` did an
``os.chdir`` in the calling process for each step, so two steps side by side saved and restored each
other's directory, and a relative ``--from`` then resolved against ``notebooks/``)."""
from __future__ import annotations

import os
import threading
import time

import pytest

from cometa.pipeline.run import run_pipeline
from cometa.runs import RunStore

pytestmark = pytest.mark.slow


def test_two_rounds_side_by_side_leave_the_working_directory_alone(run_copy, tmp_path, monkeypatch):
    run = run_copy("cwd", ignore=())  # with the checkpoints: round 2 embeds with round 1's encoders
    strategies = RunStore(run).config()["stage2"]["strategies"][:2]
    redo = [f"{s}/round_2" for s in strategies]
    for name in redo:  # undone: they rerun, in two threads at once (jobs 2)
        (run / name / "done.json").unlink()
    monkeypatch.chdir(tmp_path)
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.add(os.getcwd())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        outcome = run_pipeline("tiny", run_dir=os.path.relpath(run), progress=False, only=redo, jobs=2)
    finally:
        stop.set()
        watcher.join()
    assert sorted(n for n, o in outcome.items() if o == "ran") == sorted(redo)
    assert seen == {str(tmp_path)}  # never notebooks/, at no moment of either step
