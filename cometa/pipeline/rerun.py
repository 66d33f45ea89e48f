"""What if: rerun one Stage II round of a finished run with changed settings, into a new run directory.

:func:`what_if` builds a new run directory that starts where the source run stood before round ``r``
of a strategy and reruns that round only, with config overrides (``stage2.tau=0.3``,
``stage2.alpha=0.05``, ``clustering.k=30`` ...) and/or another strategy:

1. the source's finished upstream steps are brought over unchanged: ``corpus/``, ``stage1/`` and
   rounds ``1 .. r-1`` of the strategy (under the new strategy's name when it changes), with their
   scalars; large files are hard-linked (every file of a run is written by an atomic rename, so a
   link is never modified in place), the rest copied;
2. ``config.yaml`` is the source's config with the overrides, ``stage2.strategies`` the one strategy
   and ``stage2.rounds = r``;
3. round ``r`` runs through the pipeline's own notebook (:func:`cometa.pipeline.run.execute_step`) and
   is marked done with the hash of its real inputs: its config sections under the new settings and
   the hash of the round it actually continues from (the source's, recorded in the copied
   ``done.json``). The copied rounds keep their own hashes, so ``cometa run`` on the new directory
   later would rerun them under the new settings rather than pretend they were trained with them.

``what_if.json`` in the new directory records the source, the round, the overrides and what was
copied. Calling :func:`what_if` again with the same arguments skips the round when it is complete.
"""
from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

from cometa.config import apply_overrides, load_run_config
from cometa.config.sections import STRATEGY_NAMES
from cometa.pipeline.plan import inputs_hash, notebook_parameters, plan_steps
from cometa.pipeline.reuse import copy_step
from cometa.pipeline.run import (
    PipelineError,
    _prepare_step_dir,  # the orchestrator's own step set-up
    execute_step,
)
from cometa.runs import LOCK_FILE, RunStore, atomic_write, done_hash, run_lock

__all__ = ["what_if", "default_out_dir", "WHAT_IF_FILE"]

WHAT_IF_FILE = "what_if.json"
def _done_hash(step_dir: Path) -> str:
    h = done_hash(step_dir)
    if h is None:
        raise PipelineError(f"{step_dir} is not a finished step (no done.json): finish the source run first")
    return h


def default_out_dir(run_dir: str | os.PathLike, *, round_: int, overrides: Sequence[str] | dict = (),
                    new_strategy: str | None = None) -> Path:
    """A name for a what-if run beside its source: ``<run>-whatif-r<round>-<changes>``, e.g.
    ``runs/demo-whatif-r3-stage2.tau=0.3`` (beside the source, so ``make dashboard`` lists it too)."""
    src = Path(run_dir).expanduser().resolve()
    items = [f"{k}={v}" for k, v in overrides.items()] if isinstance(overrides, dict) else list(overrides)
    changes = [*(str(o).replace(" ", "") for o in items if str(o).strip()), *([new_strategy] if new_strategy else [])]
    slug = re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join(changes) or "same")[:80]
    return src.parent / f"{src.name}-whatif-r{int(round_)}-{slug}"


def what_if(run_dir: str | os.PathLike, *, round_: int, out_dir: str | os.PathLike,
            overrides: Sequence[str] | dict = (), strategy: str = "cometa", new_strategy: str | None = None,
            threads: int = 0, progress: bool = False) -> Path:
    """Rerun round ``round_`` of ``strategy`` of the run at ``run_dir`` with changed settings.

    Parameters
    ----------
    run_dir : a finished single run (for a study, pass one of its seed runs).
    round_ : the round to rerun (1 .. the source's rounds); the rounds before it are reused.
    out_dir : the new run directory (created; it must be new, or an earlier what-if of the same arguments).
    overrides : config changes, ``["stage2.tau=0.3"]`` or ``{"stage2.tau": 0.3}`` (checked strictly).
    strategy : the source strategy whose earlier rounds are reused.
    new_strategy : train round ``round_`` with this strategy instead (default: ``strategy``).
    threads : torch/faiss threads of the round's kernel (0 = their default).
    progress : show the round's progress bars.

    Returns
    -------
    The new run directory (open it with :func:`cometa.results.explore.open_run`).
    """
    src = Path(run_dir).expanduser().resolve()
    out = Path(out_dir).expanduser().resolve()
    if not (src / "store.sqlite").exists():
        raise FileNotFoundError(f"{src}: not a run directory (for a study, pass one of its seed runs)")
    if out == src:
        raise ValueError("out_dir must be a new directory, not the source run")
    target = new_strategy or strategy
    if target not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {target!r}; choose from {', '.join(STRATEGY_NAMES)}")
    round_ = int(round_)
    if round_ < 1:
        raise ValueError(f"round_ must be >= 1, got {round_}")
    overrides = dict(overrides) if isinstance(overrides, dict) else [o for o in overrides if str(o).strip()]
    cfg = apply_overrides(load_run_config(src / "config.yaml"), overrides)
    cfg.stage2.strategies = [target]
    cfg.stage2.rounds = round_
    spec = {"source": str(src), "strategy": strategy, "new_strategy": target, "round": round_,
            "overrides": overrides}

    upstream = [("corpus", "corpus"), ("stage1", "stage1")]
    upstream += [(f"{strategy}/round_{r}", f"{target}/round_{r}") for r in range(1, round_)]
    for name, _ in upstream:
        _done_hash(src / name)  # fail before writing anything
    with run_lock(out):  # one writer per directory, as for cometa run (RunLockedError names the other)
        return _rerun_round(src, out, cfg, spec, upstream, strategy=strategy, target=target, round_=round_,
                            threads=threads, progress=progress)


def _rerun_round(src: Path, out: Path, cfg, spec: dict, upstream: list[tuple[str, str]], *, strategy: str,
                 target: str, round_: int, threads: int, progress: bool) -> Path:
    """:func:`what_if`'s work, while it holds ``out``: copy the upstream steps (once), run the round."""
    record = out / WHAT_IF_FILE
    if any(p.name != LOCK_FILE for p in out.iterdir()):
        try:
            previous = json.loads(record.read_text())
        except (OSError, ValueError):
            previous = None
        if previous is None or {k: previous.get(k) for k in spec} != json.loads(json.dumps(spec)):
            raise FileExistsError(f"{out} exists and is not a what-if of {src} with these settings; "
                                  "choose a new out_dir")
    else:
        for name, dest in upstream:
            copy_step(src / name, out / dest)
        store = RunStore(out, create=True)
        source = RunStore(src)
        store.copy_scalars(source, strategy=None)  # the corpus and Stage I
        if round_ > 1:
            store.copy_scalars(source, strategy=strategy, round=list(range(1, round_)), strategy_as=target)
        with atomic_write(record) as tmp:
            tmp.write_text(json.dumps({**spec, "copied": [f"{a} -> {b}" for a, b in upstream],
                                       "created_at": time.time()}, indent=2))
    store = RunStore(out)
    store.write_config(cfg.to_dict())

    step = next(s for s in plan_steps(cfg, out) if s.name == f"{target}/round_{round_}")
    before = "stage1" if round_ == 1 else f"{target}/round_{round_ - 1}"
    step.inputs_hash = inputs_hash(step, [_done_hash(out / before)])  # what the round really continues from
    if store.is_done(step.out_dir, inputs_hash=step.inputs_hash):
        return out
    _prepare_step_dir(step)
    seconds = execute_step(step, progress=progress, parameters=notebook_parameters(step, threads))
    store.mark_done(step.out_dir, inputs_hash=step.inputs_hash, seconds=round(seconds, 3), step=step.name,
                    started_at=time.time() - seconds, what_if=spec)
    return out
