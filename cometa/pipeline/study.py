"""``cometa study``: every cell × seed of a spec as an ordinary run, all their steps on one scheduler.

Layout::

    STUDY_DIR/study.json               the spec, its cells and their runs (``"kind": "grid"``)
    STUDY_DIR/provenance.json          spec, command, executor and its workers, the machine
    STUDY_DIR/<cell>/study.json        the cell as a study of several seeds (``cometa report`` reads it)
    STUDY_DIR/<cell>/seed_<s>/         an ordinary run directory
    STUDY_DIR/report/                  the study's report (:mod:`cometa.results.study_report`)

**Shared steps.** A step that computes what it logs and writes from its input hash alone (the corpus,
Stage I and its AS-norm, and every round of a strategy) and whose input hash is the same in several runs
is computed once, in the first run that plans it, and hard-linked into the others with the rows it
logged, as ``--from`` does (a τ sweep trains one corpus and one Stage I per seed, not one per cell).
With ``--from`` (another study or run) such steps that the source finished with the same input hash are
brought over from it instead of computed. A copy's ``done.json`` says where it came from
(``shared_from``), and so does its run's ``reused.json``.

**Scheduling.** Every step of every run goes to one scheduler (:mod:`cometa.pipeline.schedule`):
longest chain first, ``jobs`` at once, each step's threads fixed by the whole study's plan, so that a
step computes the same numbers however the study is interrupted, resumed or extended. Rerunning the
command skips what is finished; adding a value to an axis runs only the new cells. The steps run in
threads of this process (:class:`cometa.pipeline.executors.LocalExecutor`) or as tasks on a Dask
cluster (:class:`cometa.pipeline.executors.DaskExecutor`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm.auto import tqdm

from cometa.config import Config, ConfigError
from cometa.core.blas import apply_openblas_coretype
from cometa.pipeline.plan import Step, notebook_parameters, plan_steps, report_step
from cometa.pipeline.provenance import PROVENANCE_FILE, machine_record, record_step, write_run_provenance
from cometa.pipeline.reuse import REUSED_FILE, UPSTREAM, copy_step
from cometa.pipeline.run import STUDY_FILE, PipelineError, _prepare_step_dir, execute_step, seed_dir
from cometa.pipeline.schedule import by_priority, chain_lengths, next_steps, step_threads
from cometa.pipeline.step_costs import step_kind
from cometa.pipeline.study_spec import Cell, StudySpec, cell_config, fmt_value, study_cells
from cometa.runs import RunStore, atomic_write, done_hash, remove_temporaries, run_lock

__all__ = ["StudyRun", "Node", "StudyPlan", "plan_study", "run_grid_study", "print_study_plan", "node_id",
           "link_shared", "publish_report", "shareable"]

_ROUND = re.compile(r"^[a-z_]+/round_\d+$")
# files a round's directory receives from later steps (the projections, the analysis): not the round's
_LATER_FILES = ("projection.parquet", "label_issues.parquet")


def shareable(step: str) -> bool:
    """Whether a step's outputs and rows are a function of its input hash alone, and can be copied."""
    return step in UPSTREAM or bool(_ROUND.match(step))


@dataclass
class StudyRun:
    """One cell × seed: an ordinary run directory and its planned steps (the run's report left out:
    the study writes one report over every run)."""

    rel: str  # "<cell>/seed_<s>", relative to the study directory
    cell: Cell
    seed: int
    cfg: Config
    run_dir: Path
    steps: list[Step]


@dataclass
class Node:
    """A step of one run in the study's graph: computed here, or a copy of another run's (``shared_from``)."""

    id: str  # "<run rel>::<step name>"
    run: str
    step: Step
    depends: list[str] = field(default_factory=list)  # node ids
    shared_from: str | None = None  # a copy: the node computing it ("<run rel>::<step>"), or the --from run
    source_dir: Path | None = None  # a copy: the run directory it is copied from


@dataclass
class StudyPlan:
    spec: StudySpec
    study_dir: Path
    cells: list[Cell]
    runs: dict[str, StudyRun]
    nodes: dict[str, Node]  # in plan order
    threads: dict[str, int]  # computed nodes -> their threads
    jobs: int
    reuse: Path | None = None  # --from


def node_id(run: str, step: str) -> str:
    return f"{run}::{step}"


def plan_study(spec: StudySpec, study_dir: str | Path, *, jobs: int | None = None,
               reuse: str | Path | None = None) -> StudyPlan:
    """Every cell × seed of ``spec`` under ``study_dir``, their steps, which are shared (within the study,
    or brought from ``reuse``: a run, a study of seeds or a grid study, each seed from its same seed),
    and each computed step's threads. Every cell's configuration is checked first (ConfigError names it)."""
    study_dir = Path(study_dir).resolve()
    cells = study_cells(spec)
    runs: dict[str, StudyRun] = {}
    for cell in cells:
        for seed in spec.seeds:
            cfg = cell_config(spec, cell, seed)
            rel = f"{cell.name}/{seed_dir('', seed).name}"
            run_dir = study_dir / rel
            try:
                steps = [s for s in plan_steps(cfg, run_dir) if s.name != "report"]
            except ConfigError as e:
                raise ConfigError(f"{spec.source}: cell {cell.name!r}: {e}") from None
            runs[rel] = StudyRun(rel, cell, int(seed), cfg, run_dir, steps)
    first_cfg = next(iter(runs.values())).cfg
    jobs = max(1, int(jobs if jobs is not None else first_cfg.jobs))
    nodes: dict[str, Node] = {}
    computed_by: dict[str, str] = {}  # inputs hash of a shareable step -> the node computing (or bringing) it
    for r in runs.values():
        external = _reuse_source(Path(reuse).resolve(), r.seed) if reuse is not None else None
        for s in r.steps:
            nid = node_id(r.rel, s.name)
            deps = [node_id(r.rel, d) for d in s.depends]
            source = computed_by.get(s.inputs_hash) if shareable(s.name) else None
            if source is not None:  # a copy: after its source, and after its own run's earlier steps
                nodes[nid] = Node(nid, r.rel, s, [source, *deps], shared_from=source,
                                  source_dir=runs[nodes[source].run].run_dir)
                continue
            if shareable(s.name):
                computed_by[s.inputs_hash] = nid
                if external is not None and done_hash(external / s.name) == s.inputs_hash:
                    nodes[nid] = Node(nid, r.rel, s, deps, shared_from=str(external), source_dir=external)
                    continue
            nodes[nid] = Node(nid, r.rel, s, deps)
    # threads from the graph of computed steps alone (a copy takes no cores): a step waiting on a copy
    # waits on what the copy comes from
    def computing(nid: str) -> list[str]:
        node = nodes[nid]
        if node.shared_from is None:
            return [nid]
        return computing(node.shared_from) if node.shared_from in nodes else []  # brought: computes nothing

    graph = {n.id: sorted({c for d in n.depends for c in computing(d)}) for n in nodes.values()
             if n.shared_from is None}
    threads = step_threads(graph, jobs=jobs, cores=first_cfg.cores or os.cpu_count() or 1)
    return StudyPlan(spec, study_dir, cells, runs, nodes, threads, jobs, Path(reuse).resolve() if reuse else None)


# ---------------------------------------------------------------------------------------------
# the study's records


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str))


def _study_record(plan: StudyPlan, spec_path: str | Path | None) -> dict[str, Any]:
    """``STUDY_DIR/study.json``: what the report, ``cometa ls`` and the dashboard read."""
    spec = plan.spec
    axes = dict(spec.axes)
    for v in spec.variants.values():
        axes.update(v["axes"])
    return {"kind": "grid", "name": spec.name, "preset": spec.preset,
            "strategies": list(next(iter(plan.runs.values())).cfg.stage2.strategies), "seeds": list(spec.seeds),
            "axes": axes, "variants": list(spec.variants),
            "cells": [{"name": c.name, "variant": c.variant, "values": c.values, "overrides": c.overrides,
                       "runs": [r.rel for r in plan.runs.values() if r.cell == c]} for c in plan.cells],
            "runs": list(plan.runs), "spec": spec.to_dict(),
            "spec_path": str(Path(spec_path).resolve()) if spec_path else None}


def _prepare_runs(plan: StudyPlan, *, command: str | None) -> None:
    """Each run's directory as ``cometa run`` prepares it: the store, the resolved config, no temporaries
    left by a killed study, a new session in its ``provenance.json``. Each cell also gets a ``study.json``
    of its seeds, so that ``cometa report STUDY_DIR/<cell>`` works."""
    blas = apply_openblas_coretype()
    for r in plan.runs.values():
        store = RunStore(r.run_dir, create=True)
        remove_temporaries(r.run_dir)
        store.write_config(r.cfg.to_dict(), runtime={"openblas_coretype": asdict(blas)})
        write_run_provenance(r.run_dir, command=command, device=r.cfg.device)
    for c in plan.cells:
        seeds = [r for r in plan.runs.values() if r.cell == c]
        _write_json(plan.study_dir / c.name / STUDY_FILE,
                    {"preset": plan.spec.preset, "seeds": [r.seed for r in seeds],
                     "overrides": [f"{k}={json.dumps(v)}" for k, v in c.overrides.items()],
                     "runs": [r.run_dir.name for r in seeds]})


def _reuse_source(source: Path, seed: int) -> Path:
    """``--from``: a run, a study of seeds (its ``seed_<s>``) or a grid study (its first cell's ``seed_<s>``).
    ConfigError when it is none of these, before anything is written."""
    try:
        record = json.loads((source / STUDY_FILE).read_text())
    except (OSError, ValueError):
        record = None
    if record is None:
        run = source
    elif record.get("kind") == "grid":
        runs = [source / rel for rel in record.get("runs", []) if Path(rel).name == seed_dir("", seed).name]
        if not runs:
            raise ConfigError(f"--from {source}: a study without seed {seed}")
        run = runs[0]
    else:
        run = seed_dir(source, seed)
    if not (run / "store.sqlite").exists():
        raise ConfigError(f"--from {run}: not a run directory")
    return run


# ---------------------------------------------------------------------------------------------
# a shared step: copied, with its rows, from the run that computed it


def _step_rows(store: RunStore, name: str):
    """The rows a shareable step logged: Stage I's and its AS-norm's (no strategy, round 0), or a round's
    (its strategy and round: the label metrics, the training log and the evaluation, without what the
    projections and the analysis add there later)."""
    if _ROUND.match(name):
        strategy, r = name.split("/round_")
        rows = store.scalars(strategy=strategy, round=int(r))
        keep = rows["stage"].isin(["labels", "train"]) | (
            rows["stage"].str.startswith("eval/") & ~rows["name"].str.endswith("_asnorm"))
        return rows[keep]
    rows = store.scalars(strategy=None)
    rows = rows[rows["stage"] != "projection"]
    asnorm = rows["name"].str.endswith("_asnorm")
    if name == "analysis/stage1":
        return rows[asnorm]
    if name == "stage1":
        return rows[~asnorm]
    return rows.iloc[:0]  # the corpus logs none


def link_shared(node: Node, plan: StudyPlan) -> None:
    """Bring the finished step ``node`` copies into its run: files hard-linked, rows copied (those of an
    interrupted earlier copy replaced), then the done-marker, last, so a kill leaves no half copy that
    counts as done."""
    assert node.source_dir is not None and node.shared_from is not None
    src = node.source_dir / node.step.name
    dst = node.step.out_dir
    if dst.exists():
        shutil.rmtree(dst)
    copy_step(src, dst, exclude=_LATER_FILES if _ROUND.match(node.step.name) else ())
    (dst / "done.json").unlink(missing_ok=True)
    rows = _step_rows(RunStore(node.source_dir), node.step.name)
    store = RunStore(plan.runs[node.run].run_dir)
    if len(rows):
        strategy, r = node.step.name.split("/round_") if _ROUND.match(node.step.name) else (None, 0)
        store.delete_scalars(strategy=strategy, stage=sorted(set(rows["stage"])), round=int(r),
                             name=sorted(set(rows["name"])))
        store.insert_scalars(rows)
    origin = plan.nodes[node.shared_from].run if node.shared_from in plan.nodes else node.shared_from
    record_path = store.run_dir / REUSED_FILE
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {"source": None, "steps": {}}
    record.setdefault("shared", {})[node.step.name] = origin
    _write_json(record_path, record)
    info = json.loads((src / "done.json").read_text())
    store.mark_done(dst, **{**info, "shared_from": origin, "linked_at": time.time()})


# ---------------------------------------------------------------------------------------------
# running it


def _complete(node: Node) -> bool:
    return done_hash(node.step.out_dir) == node.step.inputs_hash


def _launch(executor, node: Node, threads: int):
    return executor.submit(node.step, notebook_parameters(node.step, threads), gpu=_trains_on_gpu(node),
                           label=node.id)


def _trains_on_gpu(node: Node) -> bool:
    cfg = node.step.sections
    return str(cfg.get("device", "cpu")).startswith("cuda") and (
        node.step.name == "stage1" or "/round_" in node.step.name)


def run_grid_study(plan: StudyPlan, *, executor, spec_path: str | Path | None = None, progress: bool = True,
                   report: bool = True, report_dir: str | Path | None = None,
                   command: str | None = None) -> dict[str, str]:
    """Run (or resume) every step of ``plan`` on ``executor``; returns each node's outcome ("ran",
    "shared", "skipped"). The first failure is raised (:class:`PipelineError`) once the steps already
    running have finished; what finished is kept, and the same command resumes. The report is written
    into ``STUDY_DIR/report/`` and, with ``report_dir``, copied there (``reports/<name>/``)."""
    plan.study_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(plan.study_dir):
        _prepare_runs(plan, command=command)
        record = _study_record(plan, spec_path)
        _write_json(plan.study_dir / STUDY_FILE, record)
        provenance = {"spec": record["spec"], "spec_path": record["spec_path"], "executor": executor.describe(),
                      "jobs": plan.jobs, "from": str(plan.reuse) if plan.reuse else None,
                      "machine": machine_record(command=command)}
        provenance["command"] = provenance["machine"]["command"]
        _write_json(plan.study_dir / PROVENANCE_FILE, provenance)
        outcome = _schedule(plan, executor, progress=progress)
        provenance["executor"] = executor.describe()  # the workers seen while it ran
        _write_json(plan.study_dir / PROVENANCE_FILE, provenance)
        if report:
            static = plan.runs[next(iter(plan.runs))].cfg.report.static
            execute_step(report_step(plan.study_dir, static=static), progress=progress)
            if report_dir is not None:
                publish_report(plan.study_dir / "report", Path(report_dir))
    return outcome


_NOT_PUBLISHED = ("*.ipynb", "inputs.json", "done.json", "progress.json", ".*")


def publish_report(src: Path, dest: Path) -> None:
    """Copy a study's report (not the step's own records) to ``dest``, replacing what was there only
    once the copy is whole."""
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(*_NOT_PUBLISHED))
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def _schedule(plan: StudyPlan, executor, *, progress: bool, out: TextIO | None = None) -> dict[str, str]:
    nodes = plan.nodes
    depends = {n.id: list(n.depends) for n in nodes.values()}
    weight = {n.id: 0.01 if n.shared_from else n.step.weight for n in nodes.values()}
    pending = by_priority(list(nodes), chain_lengths(depends, weight))
    complete = {n.id for n in nodes.values() if _complete(n)}
    outcome: dict[str, str] = {}
    running: dict[Any, Node] = {}
    failure: PipelineError | None = None
    bar = tqdm(total=len(nodes), desc=f"study {plan.spec.name}", unit="step", disable=not progress, file=out)
    while pending or running:
        finished = {n for n, o in outcome.items() if o != "failed"}
        decision = next_steps(pending, depends, done=finished, failed={n for n, o in outcome.items() if o == "failed"},
                              complete=complete, free_slots=max(0, plan.jobs - len(running)), threads=plan.threads)
        for name in decision.skip:
            outcome[name] = "skipped"
            pending.remove(name)
            bar.update()
        copied = False
        for launch in decision.start:
            node = nodes[launch.step]
            pending.remove(node.id)
            if node.shared_from is not None:  # a copy: done here and now, it takes no slot
                link_shared(node, plan)
                outcome[node.id] = "shared"
                bar.update()
                copied = True
                continue
            _prepare_step_dir(node.step)
            running[_launch(executor, node, plan.threads.get(node.id, 1))] = node
        if copied:
            continue  # what waited on the copies may start now
        if running:
            bar.set_postfix_str(", ".join(n.id for n in running.values())[:120])
        if not running:
            if failure is not None or not pending:
                break
            raise PipelineError(f"steps {', '.join(pending)} wait on steps that are neither complete nor planned")
        for fut in executor.wait(list(running)):
            node = running.pop(fut)
            try:
                info = fut.result()
            except Exception as e:  # PipelineError names the cell; a lost worker (Dask) says what it is
                why = str(e) if isinstance(e, PipelineError) else f"step '{node.step.name}': {type(e).__name__}: {e}"
                failure = failure or PipelineError(f"{node.run}: {why}")
                outcome[node.id] = "failed"
                continue
            run_dir = plan.runs[node.run].run_dir
            RunStore(run_dir).mark_done(node.step.out_dir, inputs_hash=node.step.inputs_hash, step=node.step.name,
                                        threads=plan.threads.get(node.id, 1), **info)
            record_step(run_dir, node.step.name, started_at=info["started_at"], finished_at=info["finished_at"],
                        seconds=info["seconds"], worker=info["worker"])
            outcome[node.id] = "ran"
            bar.update()
        if failure is not None:
            pending.clear()  # let the running steps finish, start nothing new
    bar.close()
    if failure is not None:
        raise failure
    return outcome


# ---------------------------------------------------------------------------------------------
# --dry-run


def print_study_plan(plan: StudyPlan, *, costs: dict[str, float] | None = None, file: TextIO | None = None) -> None:
    """The cells by name, what each computes, what it shares and with whom, what is finished already,
    and the estimated CPU time of what is left (``costs``: CPU seconds by step kind, measured by
    ``bench/step_costs.py``; without them no estimate is printed)."""
    def say(text: str = "") -> None:
        print(text, file=file)

    spec = plan.spec
    n_runs = len(plan.runs)
    say(f"study {spec.name}: preset {spec.preset}, {len(plan.cells)} cell(s) x {len(spec.seeds)} seed(s) = "
        f"{n_runs} run(s) under {plan.study_dir}")
    strategies = ", ".join(next(iter(plan.runs.values())).cfg.stage2.strategies)
    say(f"  strategies {strategies}; {plan.jobs} step(s) at once")
    if spec.set:
        say(f"  every cell: {', '.join(f'{k}={fmt_value(v)}' for k, v in spec.set.items())}")
    total_cpu, missing = 0.0, set()
    for cell in plan.cells:
        own = {k: v for k, v in cell.overrides.items() if k not in spec.set or spec.set[k] != v}
        say(f"cell {cell.name}" + (f"  ({', '.join(f'{k}={fmt_value(v)}' for k, v in own.items())})" if own else ""))
        for r in (r for r in plan.runs.values() if r.cell == cell):
            mine = [plan.nodes[node_id(r.rel, s.name)] for s in r.steps]
            computed = [n for n in mine if n.shared_from is None]
            done = [n for n in computed if _complete(n)]
            shared: dict[str, list[str]] = {}
            for n in mine:
                if n.shared_from:
                    origin = plan.nodes[n.shared_from].run if n.shared_from in plan.nodes else n.shared_from
                    shared.setdefault(origin, []).append(n.step.name)
            cpu = 0.0
            for n in computed:
                if n in done:
                    continue
                kind = step_kind(n.step.name)
                if costs is not None and kind in costs:
                    cpu += costs[kind]
                else:
                    missing.add(kind)
            total_cpu += cpu
            line = f"  {r.run_dir.name}: computes {len(computed)} step(s)"
            if done:
                line += f" ({len(done)} finished)"
            line += "".join(f"; shares {', '.join(names)} with {src}" for src, names in shared.items())
            say(line)
    if costs is None:
        say("estimated CPU time: no measured step costs for this preset (python -m bench.step_costs RUN_DIR "
            "records them from a finished run)")
    else:
        note = f" (not counted: {', '.join(sorted(missing))}, no measured cost)" if missing else ""
        say(f"estimated CPU time of what is left: {total_cpu / 3600:.2f} core-hours{note}")

