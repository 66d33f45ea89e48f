"""Start a new run from another run's finished corpus and Stage I (``cometa run --from RUN``).

Variants of a study (adapters, a teacher, another τ) change Stage II only; retraining Stage I for each
would cost time and add Stage I's seed-to-seed spread to every comparison. :func:`reuse_upstream`
brings the source run's ``corpus/``, ``stage1/`` and ``analysis/stage1/`` into a new run directory,
each only if the source finished it with the inputs this run plans for it (the same input hash: the
same corpus, encoder, Stage I settings and seed), with the rows those steps logged, and nothing of
the source's Stage II: the new run's store holds only what its own plan produces. A step whose
settings differ (``audio_encoder.pooling`` changes Stage I) is not brought over and runs here.

Large files are hard-linked (every file of a run is written by an atomic rename, so a link is never
modified in place), the rest copied. ``reused.json`` records the source and what was brought over;
rerunning the same command resumes the new run without copying again.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from cometa.pipeline.plan import Step
from cometa.runs import RunStore, atomic_write, done_hash

__all__ = ["REUSED_FILE", "UPSTREAM", "copy_step", "reuse_upstream", "source_run", "reuse_plan"]

REUSED_FILE = "reused.json"
UPSTREAM = ("corpus", "stage1", "analysis/stage1")  # the steps before Stage II, in order
_LINKED = (".pt", ".npz", ".parquet")  # large, and only ever replaced by a rename


def copy_step(src: Path, dst: Path, *, exclude: tuple[str, ...] = ()) -> None:
    """Copy a finished step's directory: large files hard-linked (copied across file systems);
    ``exclude``: names (glob patterns) of files that later steps wrote there, left behind."""
    def link_or_copy(a: str, b: str) -> None:
        if a.endswith(_LINKED):
            try:
                os.link(a, b)
                return
            except OSError:
                pass
        shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link_or_copy,
                    ignore=shutil.ignore_patterns(".*.tmp-*", "*.tmp-*", "progress.json", *exclude))


def source_run(source: str | os.PathLike) -> Path:
    """``source`` resolved, once checked to be a run directory (``ValueError`` naming it if not)."""
    src = Path(source).expanduser().resolve()
    if not (src / "store.sqlite").exists():
        hint = " (a study: give one of its seed_<s> runs, or use --seeds)" if (src / "study.json").exists() else ""
        raise ValueError(f"--from {src}: not a run directory{hint}")
    return src


def reuse_plan(src: Path, steps: list[Step]) -> dict[str, str]:
    """What :func:`reuse_upstream` would do with each upstream step of the plan ``steps``, reading only:
    {step: "reused" | why not}."""
    planned = {s.name: s for s in steps}
    outcome: dict[str, str] = {}
    for name in UPSTREAM:
        if name not in planned:
            continue
        have = done_hash(src / name)
        if have is None:
            outcome[name] = "not finished in the source"
        elif have != planned[name].inputs_hash:
            outcome[name] = "other settings in the source: runs here"
        else:
            outcome[name] = "reused"
    return outcome


def reuse_upstream(source: str | os.PathLike, run_dir: Path, steps: list[Step]) -> dict[str, str]:
    """Bring ``source``'s finished upstream steps that match this run's plan (``steps``) into ``run_dir``
    (its store is created here). Returns {step: "reused" | why not}. Raises ``ValueError``, having
    written nothing, when ``source`` is not a run, or ``run_dir`` holds a run not started from it.
    """
    src = source_run(source)
    if src == run_dir.resolve():
        raise ValueError(f"--from {src}: the run itself")
    record = run_dir / REUSED_FILE
    if record.exists():  # a resumed run: the copy was made
        previous = json.loads(record.read_text())
        if previous.get("source") != str(src):
            raise ValueError(f"{run_dir} was started from {previous.get('source')}, not {src}")
        return dict(previous.get("steps", {}))
    if (run_dir / "store.sqlite").exists() or any(s.out_dir.exists() for s in steps):
        raise ValueError(f"--from starts a new run, and {run_dir} already holds one: give a new --run-dir")
    store = RunStore(run_dir, create=True)

    planned = {s.name: s for s in steps}
    outcome = reuse_plan(src, steps)
    for name, what in outcome.items():
        if what == "reused":
            copy_step(src / name, planned[name].out_dir)
    if outcome.get("stage1") == "reused":  # Stage I's rows (and its AS-norm's, when that was brought too)
        rows = RunStore(src).scalars(strategy=None)
        rows = rows[rows["stage"] != "projection"]
        if outcome.get("analysis/stage1") != "reused":
            rows = rows[~rows["name"].str.endswith("_asnorm")]
        store.insert_scalars(rows)
    with atomic_write(record) as tmp:
        tmp.write_text(json.dumps({"source": str(src), "steps": outcome, "created_at": time.time()}, indent=2))
    return outcome
