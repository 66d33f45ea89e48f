"""Steps in threads never move the process's working directory (issue: papermill's ``cwd=`` did an
``os.chdir`` in the calling process for each step, so two steps side by side saved and restored each
other's directory, and a relative ``--from`` then resolved against ``notebooks/``)."""
from __future__ import annotations

import os
import threading
import time

import pytest

from cometa.pipeline.run import _papermill_files_without_chdir, run_pipeline
from cometa.runs import RunStore

pytestmark = pytest.mark.slow


def test_two_rounds_side_by_side_leave_the_working_directory_alone(run_copy, tmp_path, monkeypatch):
    run = run_copy("cwd", ignore=())  # with the checkpoints: round 2 embeds with round 1's encoders
    strategies = RunStore(run).config()["stage2"]["strategies"][:2]
    redo = [f"{s}/round_2" for s in strategies]
    for name in redo:  # undone: they rerun, in two threads at once (jobs 2)
        (run / name / "done.json").unlink()
    monkeypatch.chdir(tmp_path)
    # what two papermill calls in threads leave behind (each records the working directory in papermill's one
    # local handler and restores the other's): a recorded directory, which papermill's reads and writes chdir to
    from papermill.iorw import papermill_io

    stale = tmp_path / "stale"
    stale.mkdir()
    papermill_io.get_handler(str(run)).cwd(str(stale))
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
    assert seen == {str(tmp_path)}  # never notebooks/ nor the stale directory, at no moment of either step


def test_papermill_reads_and_writes_notebooks_without_chdir(tmp_path, monkeypatch):
    """The handler execute_step installs: a directory recorded in it (as two papermill calls in threads leave
    one) moves nothing, and papermill's own reads and writes of absolute paths never call os.chdir."""
    import nbformat
    from papermill.iorw import load_notebook_node, papermill_io, write_ipynb

    _papermill_files_without_chdir()
    path = tmp_path / "nb.ipynb"
    papermill_io.get_handler(str(path)).cwd(str(tmp_path / "elsewhere"))  # a stale record: ignored
    moves: list[str] = []
    monkeypatch.setattr(os, "chdir", lambda p: moves.append(str(p)))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    write_ipynb(nb, str(path))
    assert load_notebook_node(str(path)).cells[0].source == "1 + 1"
    assert moves == []
    _papermill_files_without_chdir()  # twice: still one local handler, ours
    assert sum(scheme == "local" for scheme, _ in papermill_io._handlers) == 1
