"""The orchestrator: runs each stage's notebook with papermill, resumes, reruns only what changed.

A step is complete when its ``done.json`` holds the hash of its inputs (the config sections it
reads plus the hashes of the steps it depends on). Running the same command again skips complete
steps; a step whose inputs changed is wiped and rerun, and so is everything downstream of it (their
input hashes include its hash). A step that was interrupted (``inputs.json`` present, no matching
``done.json``) is rerun in place, and its training loop resumes from the last epoch checkpoint.
The executed notebook of every step is kept in its directory as the record of that step.
"""
from __future__ import annotations

import fnmatch
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from cometa.config import Config, ConfigError, apply_overrides, check_setting, load_config, load_run_config
from cometa.config.sections import STRATEGY_NAMES
from cometa.core.blas import apply_openblas_coretype
from cometa.pipeline.plan import NOTEBOOK_DIR, Step, inputs_hash, notebook_parameters, plan_steps, report_step
from cometa.pipeline.provenance import record_step, write_run_provenance
from cometa.pipeline.reuse import reuse_upstream, source_run
from cometa.pipeline.schedule import by_priority, chain_lengths, next_steps, step_threads
from cometa.runs import RunStore, atomic_write, remove_temporaries, run_lock

__all__ = ["PipelineError", "RunInputError", "Step", "select_steps", "plan_steps", "inputs_hash", "execute_step",
           "kernel_environment", "run_pipeline", "run_study", "seed_dir", "STUDY_FILE"]


class PipelineError(RuntimeError):
    """A step's notebook failed; the message names the step, the cell, the error and the notebook."""


class RunInputError(PipelineError, ValueError):
    """The run was asked for something it cannot do (``--from`` a directory that is not a run, ...),
    found before anything was written; the message names it."""


def _notebook_failure(path: Path, step: Step, exc: Exception) -> PipelineError:
    """Find the failing cell in the executed notebook and say where to look."""
    cell_no, source = "?", ""
    try:
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c.get("cell_type") == "code"]
        for i, c in enumerate(code, 1):
            if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
                cell_no, source = str(i), "".join(c.get("source", ""))
                break
    except Exception:  # the notebook may not have been written at all
        pass
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    first = source.strip().splitlines()[0] if source.strip() else ""
    return PipelineError(
        f"step '{step.name}' failed in code cell {cell_no} ({first!r}): {ename}: {evalue}\n"
        f"  open the executed notebook for the full traceback: {path}")


def _watch_progress(step_dir: Path, bar: tqdm, stop: threading.Event) -> None:
    """Mirror the step's ``progress.json`` (written by the training loops) into a nested bar."""
    last = None
    while not stop.wait(0.5):
        p = step_dir / "progress.json"
        try:
            info = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if info != last:
            bar.total = info.get("total", bar.total)
            bar.n = info.get("done", 0)
            bar.set_description_str(info.get("desc", ""))
            bar.refresh()
            last = info


# the thread pools a kernel's libraries size from the environment when they load (OpenMP: torch, faiss;
# MKL; OpenBLAS: numpy, scipy). Dask's nanny sets them to 1 in its workers: a step sets its own.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def kernel_environment(threads: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a step's kernel starts with: ``base`` (default this process's) with this
    checkout first on ``PYTHONPATH``, the thread variables at ``threads`` (when > 0) and the
    ``OPENBLAS_CORETYPE`` this machine's faiss needs (:func:`cometa.core.blas.apply_openblas_coretype`).

    Decided here, in the process that starts the kernel, rather than inherited, so that a step
    computes the same numbers under any executor (a thread of ``cometa run``, a Dask worker).
    ``base`` itself is not changed: steps in threads never write the process's environment."""
    env = dict(os.environ if base is None else base)
    root = str(NOTEBOOK_DIR.parent)  # the kernel must import this checkout of cometa, whatever else is on the path
    paths = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([root, *paths]))
    if threads > 0:
        env.update(dict.fromkeys(THREAD_VARIABLES, str(int(threads))))
    apply_openblas_coretype(env, announce=False)
    return env


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid``, of the children it has waited for, and of the
    live processes under it (torchrun workers, data-loader workers); 0 when it is gone."""
    import psutil  # only the end of a step reads it

    try:
        proc = psutil.Process(pid)
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for i, p in enumerate(tree):
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + (t.children_user + t.children_system if i == 0 else 0.0)
    return total


class _LocalNotebookFiles:
    """papermill's local notebook I/O without its ``os.chdir``.

    papermill reads and writes local notebooks through one process-wide handler that ``chdir``s into a
    directory it records per ``execute_notebook`` call and restores afterwards. Two steps in threads
    interleave those records: the last one to finish restores the other's directory, which then stays
    recorded, and every later read or write of any step moves the whole process into it for a moment
    (the working directory of every other thread with it). The pipeline hands papermill absolute paths
    only, so this handler opens them as they are and records nothing.
    """

    def read(self, path: str) -> str:
        with open(path, encoding="utf-8") as f:
            return f.read()

    def listdir(self, path: str) -> list[str]:
        return [os.path.join(path, fn) for fn in os.listdir(path)]

    def write(self, buf: str, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(buf)

    def pretty_path(self, path: str) -> str:
        return path

    def cwd(self, new_path: str | None) -> None:  # papermill's local_file_io_cwd: nothing to record
        return None


def _papermill_files_without_chdir() -> None:
    """Route papermill's local paths to :class:`_LocalNotebookFiles` (once per process)."""
    from papermill.iorw import papermill_io  # papermill: imported when a step runs (a heavy import)

    # replaced in place: papermill falls back to the LAST "local" entry of its (LIFO) list for a path of no
    # scheme, so a newly registered one would be the first and never used (papermill 2.7, pinned)
    papermill_io._handlers = [(scheme, _LocalNotebookFiles() if scheme == "local" else handler)
                              for scheme, handler in papermill_io._handlers]


def _kernel_manager(*, cwd: str, env: dict[str, str], usage: dict[str, float] | None = None) -> type:
    """A kernel manager class that starts its kernel in ``cwd`` with ``env`` and, when the step ends,
    records the kernel's CPU seconds in ``usage["cpu_seconds"]`` (what ``cometa study --dry-run``'s
    estimate is made of). papermill's own ``cwd=`` would ``os.chdir`` the calling process for the whole
    step, which moves the working directory of every other thread (steps run side by side in threads);
    this starts the kernel there instead."""
    from jupyter_client.manager import AsyncKernelManager  # as papermill itself: only running a step needs it

    class StepKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw["cwd"] = cwd
            kw["env"] = {**env, **kw.get("env", {})}
            await super().start_kernel(**kw)

        async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:  # type: ignore[override]
            process = getattr(self.provisioner, "process", None)
            if usage is not None and process is not None:
                usage["cpu_seconds"] = round(_cpu_seconds(process.pid), 3)
            await super().shutdown_kernel(now=now, restart=restart)

    return StepKernelManager


KERNEL_START_ATTEMPTS = 3
_KERNEL_DIED_AT_START = "Kernel died before replying to kernel_info"  # nbclient's, before any cell runs


def _retry_kernel_start(execute: Callable[[], object], *, step: str,
                        attempts: int = KERNEL_START_ATTEMPTS) -> None:
    """``execute()`` again (up to ``attempts`` in all) when its kernel died before it answered
    ``kernel_info``: no cell has run then, so nothing of the step is half-done. jupyter_client picks the
    kernel's ports in this process and the kernel binds them a moment later, so a kernel started at the same
    moment by another process (steps side by side in threads, a study's Dask workers, the test suite's
    workers) can take one of them first, and the new kernel exits at once. Any other error is raised as it is."""
    for attempt in range(1, attempts + 1):
        try:
            execute()
            return
        except RuntimeError as exc:
            if _KERNEL_DIED_AT_START not in str(exc) or attempt == attempts:
                raise
            print(f"cometa: {step}: the kernel died while starting (attempt {attempt} of {attempts}); starting "
                  "another", file=sys.stderr, flush=True)


def execute_step(step: Step, *, progress: bool = True, log_output: bool = False, kernel: str = "python3",
                 parameters: dict | None = None, position: int = 1, usage: dict[str, float] | None = None) -> float:
    """Run one step's notebook with papermill into its directory; returns seconds taken.

    The kernel starts in ``notebooks/`` with :func:`kernel_environment` for the step's ``threads``
    parameter; this process's working directory and environment are left as they are. ``usage``, when
    given, receives the kernel's ``cpu_seconds`` (its process tree's user + system time)."""
    # papermill brings nbclient and jupyter_client (a second to import): only running a step needs them,
    # not reading this module (the run API's what_if and dry runs import it)
    import papermill as pm

    _papermill_files_without_chdir()
    parameters = parameters if parameters is not None else notebook_parameters(step, 0)
    env = kernel_environment(int(parameters.get("threads", 0)))
    step.out_dir.mkdir(parents=True, exist_ok=True)
    inputs = step.out_dir / "inputs.json"
    with atomic_write(inputs) as tmp:  # a truncated record would wipe the step's checkpoints on resume
        tmp.write_text(json.dumps({"inputs_hash": step.inputs_hash, "step": step.name}))
    nb_out = step.out_dir / f"{Path(step.notebook).stem.split('_', 1)[1]}.ipynb"
    t0 = time.time()
    bar = tqdm(total=1, desc="", position=position, leave=False, disable=not progress,
               bar_format="    {desc} {bar} {n}/{total}")
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_progress, args=(step.out_dir, bar, stop), daemon=True)
    watcher.start()
    execute = partial(pm.execute_notebook,
                      str(NOTEBOOK_DIR / step.notebook), str(nb_out), parameters=parameters,
                      kernel_name=kernel, progress_bar=False, log_output=log_output,
                      kernel_manager_class=_kernel_manager(cwd=str(NOTEBOOK_DIR), env=env, usage=usage),
                      # the kernel's own log, not the notebook's output or errors (those come back
                      # through papermill): its plain-TCP warning (it listens on 127.0.0.1 only) and
                      # the "KeyboardInterrupt caught in kernel" it logs as an error when jupyter_client's
                      # SIGINT, sent to every kernel before its shutdown request, finds it still
                      # finishing its last message
                      extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                      # nbclient waits 4 s for a finished cell's last output by default: on a loaded
                      # machine (a study's steps side by side, a shared cluster node) a kernel can take
                      # longer to flush it, and the step would fail although its cell succeeded
                      iopub_timeout=120,
                      # once the last cell has returned, the kernel holds nothing the run needs (every
                      # output is written atomically and committed inside the cells, and the done marker
                      # is this process's to write), so it is killed rather than asked to exit: a graceful
                      # shutdown waits 2.5 s per step for an interpreter with torch loaded to tear down
                      shutdown_kernel="immediate")
    try:
        _retry_kernel_start(execute, step=step.name)
    except Exception as exc:  # papermill raises PapermillExecutionError with ename/evalue
        raise _notebook_failure(nb_out, step, exc) from None
    finally:
        stop.set()
        watcher.join()
        bar.close()
    seconds = time.time() - t0
    return seconds


def resolve_config(preset: str | None, *, config_path: str | Path | None = None,
                   overrides: list[str] | dict | None = None, strategies: list[str] | None = None,
                   rounds: int | None = None) -> Config:
    """The run's configuration: preset <- file <- overrides, then the ``strategies``/``rounds`` shorthands."""
    ov: dict[str, Any] = {}
    if isinstance(overrides, dict):
        ov.update(overrides)
    cfg = load_config(preset, path=config_path, overrides=[*(overrides or [])] if isinstance(overrides, list) else ov)
    if strategies and list(strategies) == ["all"]:  # every registered strategy (the paper's three + LGL, DLG-LC)
        strategies = list(STRATEGY_NAMES)
    if strategies:
        unknown = [s for s in strategies if s not in STRATEGY_NAMES]
        if unknown:
            raise ConfigError(f"--strategies: unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGY_NAMES)}")
        cfg.stage2.strategies = list(strategies)
    if rounds is not None:  # through the bounds, as --set stage2.rounds=... (ConfigError naming --rounds)
        cfg = apply_overrides(cfg, {"stage2.rounds": rounds}, source="--rounds")
    if cfg.corpus.kind != "synthetic" and not cfg.corpus.root:  # before any step: the corpus step needs it
        raise ConfigError(f"preset {cfg.preset}: 'corpus.root' is not set; give the VoxCeleb directory with "
                          "--data-root DIR (or --set corpus.root=DIR); see README, 'Preparing VoxCeleb'")
    return cfg


def run_pipeline(
    preset: str | None = "demo",
    *,
    run_dir: str | Path | None = None,
    strategies: list[str] | None = None,
    rounds: int | None = None,
    overrides: list[str] | dict | None = None,
    config_path: str | Path | None = None,
    progress: bool = True,
    log_output: bool = False,
    only: list[str] | None = None,
    jobs: int | None = None,
    reuse: str | Path | None = None,
) -> dict[str, str]:
    """Run (or resume) the whole study. Returns each step's outcome: "ran", "skipped".

    Parameters
    ----------
    preset, config_path, overrides : the configuration (see :func:`cometa.config.load_config`).
    strategies, rounds : shorthands for ``stage2.strategies`` / ``stage2.rounds``.
    run_dir : where the run lives (default ``runs/<preset>``).
    only : run just these steps (names, or shell patterns such as ``baseline/*``; ``--steps``) and the
        steps upstream of them that are not complete (:func:`select_steps`).
    reuse : another run whose finished corpus and Stage I (and Stage I's analysis) this new run starts
        from where they match its settings (:func:`cometa.pipeline.reuse.reuse_upstream`; ``--from``).
    jobs : steps run at once (default ``cfg.jobs``). Independent steps (the strategies' rounds)
        then share the cores (``cfg.cores``, 0 = this machine's): each kernel gets ``cores // min(jobs,
        w)`` threads, ``w`` the steps that could run beside it in the plan
        (:func:`cometa.pipeline.schedule.step_threads`), so two kernels keep both cores of a laptop busy
        through each other's start-up, data loading and Python work, and a resumed run gives each step
        the threads an uninterrupted one does.
    """
    cfg = resolve_config(preset, config_path=config_path, overrides=overrides, strategies=strategies, rounds=rounds)
    jobs = check_setting("jobs", jobs, source="--jobs") if jobs is not None else cfg.jobs
    run_dir = Path(run_dir or Path("runs") / cfg.preset).resolve()
    if reuse is not None:
        _check_source(reuse)  # before the lock: a bad --from writes nothing
    # None (or []): every step; else the selection, [] when its patterns match no step
    only = select_steps(plan_steps(cfg, run_dir), only, strict=False) if only else None
    with run_lock(run_dir):  # one run per directory (RunLockedError names the live one), before any write
        steps = plan_steps(cfg, run_dir)
        if reuse is not None:  # before the store exists: it refuses a directory that holds another run
            _reuse(reuse, run_dir, steps, progress=progress)
        store = RunStore(run_dir, create=True)  # RunFormatError for a run of another format, before any write
        remove_temporaries(run_dir)  # left by a killed run: nobody else writes here now
        # faiss-cpu's bundled OpenBLAS runs generic kernels on CPUs newer than it (issue 18): the kernels
        # started below (and their torchrun workers) inherit os.environ, so they get the matching core
        blas = apply_openblas_coretype()
        store.write_config(cfg.to_dict(), runtime={"openblas_coretype": asdict(blas)})
        # after the BLAS core type is set: the record names the one the kernels run with
        write_run_provenance(run_dir, device="cuda" if cfg.device == "auto" else cfg.device)
        # from the whole plan, before ``only`` narrows it: a step's threads never depend on what else runs
        threads = step_threads({s.name: s.depends for s in steps}, jobs=jobs,
                               cores=cfg.cores or os.cpu_count() or 1)
        if only is not None:  # [] (patterns that match nothing): no step runs
            steps = [s for s in steps if s.name in only]
        return _run_steps(steps, store, jobs=jobs, threads=threads, progress=progress, log_output=log_output)


def select_steps(steps: list[Step], patterns: list[str], *, strict: bool = True) -> list[str]:
    """The names of the steps ``patterns`` select (each a step's name or a shell pattern, ``fnmatch``)
    and of every step upstream of them, in plan order. Upstream steps that are complete are skipped
    when the run starts, so what runs is the selection and what it needs that is not finished.
    ``strict``: :class:`RunInputError` naming a pattern that matches no step (``--steps``); else such
    a pattern selects nothing (``run_pipeline(only=["no-such-step"])`` sets a run up and runs no step)."""
    names = [s.name for s in steps]
    chosen: set[str] = set()
    for pattern in patterns:
        hit = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hit and strict:
            raise RunInputError(f"--steps {pattern!r} matches no step; the steps are: {', '.join(names)}")
        chosen.update(hit)
    depends = {s.name: s.depends for s in steps}
    todo = list(chosen)
    while todo:
        for dep in depends[todo.pop()]:
            if dep not in chosen:
                chosen.add(dep)
                todo.append(dep)
    return [n for n in names if n in chosen]


def _check_source(source: str | Path) -> None:
    """``--from``: :class:`RunInputError` unless ``source`` is a run directory."""
    try:
        source_run(source)
    except ValueError as e:
        raise RunInputError(str(e)) from None


def _reuse(source: str | Path, run_dir: Path, steps: list[Step], *, progress: bool) -> None:
    """``run_pipeline(reuse=...)``: bring the source's matching upstream steps over, and say what was."""
    try:
        outcome = reuse_upstream(source, run_dir, steps)
    except ValueError as e:
        raise PipelineError(str(e)) from None
    if progress:
        print(f"cometa: from {Path(source).resolve()}: " + ", ".join(f"{k} {v}" for k, v in outcome.items()),
              flush=True)


def _run_steps(steps: list[Step], store: RunStore, *, jobs: int, threads: dict[str, int], progress: bool,
               log_output: bool) -> dict[str, str]:
    """Run ``steps`` (:mod:`cometa.pipeline.schedule` decides the order), ``jobs`` at once, each with
    its ``threads``; each step's outcome. The first failure is raised once the steps already running
    have finished."""
    by_name = {s.name: s for s in steps}
    depends = {s.name: list(s.depends) for s in steps}
    pending = by_priority(list(by_name), chain_lengths(depends, {s.name: s.weight for s in steps}))
    complete = {s.name for s in steps if not s.always and store.is_done(s.out_dir, inputs_hash=s.inputs_hash)}
    outcome: dict[str, str] = {}
    running: dict[Future, tuple[Step, int]] = {}
    free_slots = list(range(1, jobs + 1))
    failure: PipelineError | None = None
    bar = tqdm(total=len(steps), desc="cometa", unit="step", disable=not progress, position=0)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            decision = next_steps(pending, depends, done={n for n, o in outcome.items() if o != "failed"},
                                  failed={n for n, o in outcome.items() if o == "failed"}, complete=complete,
                                  free_slots=len(free_slots), threads=threads)
            for name in decision.skip:
                outcome[name] = "skipped"
                pending.remove(name)
                bar.update()
            for launch in decision.start:
                step, slot = by_name[launch.step], free_slots.pop(0)
                _prepare_step_dir(step)
                fut = pool.submit(execute_step, step, progress=progress, log_output=log_output,
                                  parameters=notebook_parameters(step, launch.threads), position=slot)
                running[fut] = (step, slot)
                pending.remove(step.name)
                bar.set_postfix_str(", ".join(s.name for s, _ in running.values()))
            if not running:
                if failure is not None or not pending:
                    break
                raise PipelineError(f"steps {', '.join(pending)} wait on steps that are neither complete nor planned")
            failure = failure or _collect(running, free_slots, store, outcome, bar)
            if failure is not None:
                pending.clear()  # let the running steps finish, start nothing new
    bar.close()
    if failure is not None:
        raise failure
    return outcome


def _collect(running: dict[Future, tuple[Step, int]], free_slots: list[int], store: RunStore,
             outcome: dict[str, str], bar: tqdm) -> PipelineError | None:
    """Wait for the next step(s) to finish; mark each done (or failed) and free its slot. Returns
    the first failure among them."""
    failure = None
    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
    for fut in done:
        step, slot = running.pop(fut)
        free_slots.append(slot)
        free_slots.sort()
        try:
            seconds = fut.result()
        except PipelineError as e:
            failure = failure or e
            outcome[step.name] = "failed"
            continue
        finished = time.time()
        store.mark_done(step.out_dir, inputs_hash=step.inputs_hash, seconds=round(seconds, 3), step=step.name,
                        started_at=finished - seconds)
        record_step(store.run_dir, step.name, started_at=finished - seconds, finished_at=finished, seconds=seconds)
        outcome[step.name] = "ran"
        bar.update()
    return failure


def _prepare_step_dir(step: Step) -> None:
    """Keep an interrupted step's checkpoints when its inputs are unchanged; wipe a stale step."""
    inputs = step.out_dir / "inputs.json"
    if not step.out_dir.exists():
        return
    try:
        previous = json.loads(inputs.read_text())["inputs_hash"]
    except (OSError, ValueError, KeyError):
        previous = None
    if previous != step.inputs_hash and step.name not in ("corpus", "report"):
        shutil.rmtree(step.out_dir)
    done = step.out_dir / "done.json"
    if done.exists():
        done.unlink()


# ---------------------------------------------------------------------------------------------
# several seeds: one ordinary run directory per seed, and a combined report


STUDY_FILE = "study.json"


def seed_dir(study_dir: str | Path, seed: int) -> Path:
    """Where seed ``seed`` of a study lives: ``STUDY_DIR/seed_<seed>/``, an ordinary run directory."""
    return Path(study_dir) / f"seed_{int(seed)}"


def run_study(preset: str | None = "demo", *, study_dir: str | Path, seeds: list[int],
              overrides: list[str] | None = None, report: bool = True, **kwargs) -> dict[int, dict[str, str]]:
    """Run (or resume) the study once per training seed, then write the combined report.

    Each seed is an ordinary run in ``study_dir/seed_<s>/`` (``--set seed=<s>``): the corpus is the
    same for all (``corpus.synthetic.seed`` is not touched), the initialisations, batches and
    augmentations differ. ``study_dir/study.json`` lists the seeds; ``study_dir/report/`` gets Table
    1/2 and the figures as mean ± std over the seeds (:func:`cometa.results.report.write_report`,
    run through the report step's notebook, as a run's own report). Other keyword arguments go to
    :func:`run_pipeline` for every seed; ``reuse`` may name another study, whose ``seed_<s>`` run
    each seed then starts from.
    """
    if not seeds:
        raise ValueError("run_study needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {seeds}")
    study_dir = Path(study_dir).resolve()
    reuse = kwargs.get("reuse")
    if reuse is not None and not (Path(reuse) / STUDY_FILE).exists():
        _check_source(reuse)  # before the study's lock: a bad --from writes nothing
    if (study_dir / "store.sqlite").exists():
        raise PipelineError(f"{study_dir} is a single run's directory; give the study its own --run-dir")
    with run_lock(study_dir):
        return _run_seeds(preset, study_dir, seeds, overrides, report, kwargs)


def _run_seeds(preset: str | None, study_dir: Path, seeds: list[int], overrides: list[str] | None, report: bool,
               kwargs: dict) -> dict[int, dict[str, str]]:
    """:func:`run_study`'s work, while it holds the study directory."""
    with atomic_write(study_dir / STUDY_FILE) as tmp:
        tmp.write_text(json.dumps({"preset": preset, "seeds": [int(x) for x in seeds],
                                   "overrides": list(overrides or []),
                                   "runs": [seed_dir(study_dir, x).name for x in seeds]}, indent=2))
    outcomes = {}
    reuse = kwargs.pop("reuse", None)  # another study: each seed starts from the same seed's run
    for i, seed in enumerate(seeds, 1):
        print(f"cometa: seed {seed} ({i} of {len(seeds)}) -> {seed_dir(study_dir, seed)}", flush=True)
        source = seed_dir(Path(reuse), seed) if reuse and (Path(reuse) / STUDY_FILE).exists() else reuse
        outcomes[int(seed)] = run_pipeline(preset, run_dir=seed_dir(study_dir, seed), reuse=source,
                                           overrides=[*(overrides or []), f"seed={int(seed)}"], **kwargs)
    if report:
        static = load_run_config(seed_dir(study_dir, seeds[0]) / "config.yaml").report.static
        execute_step(report_step(study_dir, static=static), progress=kwargs.get("progress", True),
                     log_output=kwargs.get("log_output", False))
    return outcomes
