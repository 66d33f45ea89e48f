"""The orchestrator: runs each stage's notebook with papermill, resumes, reruns only what changed.

A step is complete when its ``done.json`` holds the hash of its inputs (the config sections it
reads plus the hashes of the steps it depends on). Running the same command again skips complete
steps; a step whose inputs changed is wiped and rerun, and so is everything downstream of it (their
input hashes include its hash). A step that was interrupted (``inputs.json`` present, no matching
``done.json``) is rerun in place, and its training loop resumes from the last epoch checkpoint.
The executed notebook of every step is kept in its directory as the record of that step.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from cometa.core.blas import apply_openblas_coretype
from cometa.config import Config, load_config
from cometa.runs import RunStore

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
STAGE2_FIELDS_NOT_AFFECTING_ROUNDS = ("strategies", "rounds")
# relative cost of a round step per strategy (bench/bench_steps.py: cometa's second-order step is
# ~4.7x baseline's, but embeddings, clustering and evaluation are shared: a round costs ~1.5x)
STEP_WEIGHT = {"cometa": 1.5}


class PipelineError(RuntimeError):
    """A step's notebook failed; the message names the step, the cell, the error and the notebook."""


@dataclass
class Step:
    name: str  # e.g. "stage1", "cometa/round_2"
    notebook: str  # template in notebooks/
    out_dir: Path
    parameters: dict[str, Any]
    sections: dict[str, Any]  # config content this step reads
    depends: list[str] = field(default_factory=list)
    always: bool = False  # rerun every time (the report)
    inputs_hash: str = ""


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_steps(cfg: Config, run_dir: Path) -> list[Step]:
    """The ordered steps of a run and their input hashes."""
    d = cfg.to_dict()
    common = {k: d[k] for k in ("seed", "device", "num_workers")}
    stage2 = {k: v for k, v in d["stage2"].items() if k not in STAGE2_FIELDS_NOT_AFFECTING_ROUNDS}
    rd = str(run_dir)
    steps = [
        Step("corpus", "00_corpus.ipynb", run_dir / "corpus", {"run_dir": rd, "preset": cfg.preset},
             {"corpus": d["corpus"], "eval": d["eval"], "visual_size": d["visual_encoder"]["image_size"]}),
        Step("stage1", "10_stage1.ipynb", run_dir / "stage1", {"run_dir": rd, "preset": cfg.preset},
             {**common, **{k: d[k] for k in ("features", "audio_encoder", "augment", "stage1", "eval")}},
             depends=["corpus"]),
    ]
    for strategy in cfg.stage2.strategies:
        for r in range(1, cfg.stage2.rounds + 1):
            prev = "stage1" if r == 1 else f"{strategy}/round_{r - 1}"
            steps.append(Step(
                f"{strategy}/round_{r}", "20_round.ipynb", run_dir / strategy / f"round_{r}",
                {"run_dir": rd, "preset": cfg.preset, "strategy": strategy, "round": r},
                {**common, "strategy": strategy, "round": r, "stage2": stage2,
                 **{k: d[k] for k in ("visual_encoder", "clustering", "augment", "features", "eval")}},
                depends=[prev]))
    if cfg.projection.enabled:  # one step for every strategy: UMAP's JIT warm-up is paid once
        strategies = list(cfg.stage2.strategies)
        steps.append(Step(
            "projections", "30_projections.ipynb", run_dir / "projections",
            {"run_dir": rd, "strategies": ",".join(strategies), "rounds": cfg.stage2.rounds},
            {"projection": d["projection"], "seed": cfg.seed},
            depends=[f"{s}/round_{r}" for s in strategies for r in range(1, cfg.stage2.rounds + 1)]))
    steps.append(Step("report", "90_report.ipynb", run_dir / "report", {"run_dir": rd},
                      {}, depends=[s.name for s in steps], always=True))
    by_name: dict[str, Step] = {}
    for s in steps:
        s.inputs_hash = inputs_hash(s, [by_name[n].inputs_hash for n in s.depends])
        by_name[s.name] = s
    return steps


def inputs_hash(step: Step, depends: list[str]) -> str:
    """The hash that keys a step: its name, the config sections it reads and the input hashes of the
    steps it depends on (``depends``, in the order of ``step.depends``). The run directory is not
    part of it, so a finished step copied into another run directory is still complete there."""
    return _hash({"step": step.name, "sections": step.sections, "depends": list(depends)})


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


def execute_step(step: Step, *, progress: bool = True, log_output: bool = False, kernel: str = "python3",
                 parameters: dict | None = None, position: int = 1) -> float:
    """Run one step's notebook with papermill into its directory; returns seconds taken."""
    import os

    import papermill as pm

    # the kernel is a child process: it must import this checkout of cometa, whatever the cwd
    root = str(NOTEBOOK_DIR.parent)
    # (relative entries are made absolute: the kernel runs in notebooks/)
    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([root, *paths]))
    step.out_dir.mkdir(parents=True, exist_ok=True)
    inputs = step.out_dir / "inputs.json"
    inputs.write_text(json.dumps({"inputs_hash": step.inputs_hash, "step": step.name}))
    nb_out = step.out_dir / f"{Path(step.notebook).stem.split('_', 1)[1]}.ipynb"
    t0 = time.time()
    bar = tqdm(total=1, desc="", position=position, leave=False, disable=not progress,
               bar_format="    {desc} {bar} {n}/{total}")
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_progress, args=(step.out_dir, bar, stop), daemon=True)
    watcher.start()
    try:
        pm.execute_notebook(str(NOTEBOOK_DIR / step.notebook), str(nb_out), parameters=parameters or step.parameters,
                            kernel_name=kernel, progress_bar=False, log_output=log_output,
                            cwd=str(NOTEBOOK_DIR),
                            # the kernel listens on 127.0.0.1 only; silence its plain-TCP warning
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except Exception as exc:  # papermill raises PapermillExecutionError with ename/evalue
        raise _notebook_failure(nb_out, step, exc) from None
    finally:
        stop.set()
        watcher.join()
        bar.close()
    seconds = time.time() - t0
    return seconds


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
) -> dict[str, str]:
    """Run (or resume) the whole study. Returns each step's outcome: "ran", "skipped".

    Parameters
    ----------
    preset, config_path, overrides : the configuration (see :func:`cometa.config.load_config`).
    strategies, rounds : shorthands for ``stage2.strategies`` / ``stage2.rounds``.
    run_dir : where the run lives (default ``runs/<preset>``).
    only : run just these steps (by name) — their upstream steps must be complete.
    jobs : steps run at once (default ``cfg.jobs``). Independent steps (the strategies' rounds)
        then share the cores: each kernel gets ``cores // running`` threads, so two kernels keep
        both cores of a laptop busy through each other's start-up, data loading and Python work.
    """
    import os
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    ov: dict[str, Any] = {}
    if isinstance(overrides, dict):
        ov.update(overrides)
    cfg = load_config(preset, path=config_path, overrides=[*(overrides or [])] if isinstance(overrides, list) else ov)
    if strategies:
        from cometa.core.strategies import STRATEGIES

        unknown = [s for s in strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
        cfg.stage2.strategies = list(strategies)
    if rounds is not None:
        cfg.stage2.rounds = int(rounds)
    jobs = max(1, int(jobs if jobs is not None else cfg.jobs))
    run_dir = Path(run_dir or Path("runs") / cfg.preset).resolve()
    store = RunStore(run_dir, create=True)
    # faiss-cpu's bundled OpenBLAS runs generic kernels on CPUs newer than it (issue 18): the kernels
    # started below (and their torchrun workers) inherit os.environ, so they get the matching core
    blas = apply_openblas_coretype()
    store.write_config(cfg.to_dict(), runtime={"openblas_coretype": asdict(blas)})
    steps = plan_steps(cfg, run_dir)
    if only:
        steps = [s for s in steps if s.name in only]
    names = {s.name for s in steps}
    outcome: dict[str, str] = {}
    pending = list(steps)
    running: dict[Any, tuple[Step, int]] = {}
    free_slots = list(range(1, jobs + 1))
    failure: PipelineError | None = None
    cores = os.cpu_count() or 1
    bar = tqdm(total=len(steps), desc="cometa", unit="step", disable=not progress, position=0)

    def ready(step: Step) -> bool:
        return all(outcome.get(d) in ("ran", "skipped") for d in step.depends if d in names)

    # Longest chain first: a step's priority is the estimated work on the longest path from it to
    # the end, so that the slow strategy (cometa's second-order steps) starts early and the others
    # fill the second slot beside it, instead of running alone at the end.
    weight = {s.name: STEP_WEIGHT.get(s.parameters.get("strategy"), 1.0) for s in steps}
    children: dict[str, list[str]] = {s.name: [] for s in steps}
    for s in steps:
        for d in s.depends:
            if d in children:
                children[d].append(s.name)
    chain: dict[str, float] = {}
    for s in reversed(steps):  # plan order is topological
        chain[s.name] = weight[s.name] + max((chain[c] for c in children[s.name]), default=0.0)
    pending.sort(key=lambda s: -chain[s.name])

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            launched = True
            while launched and failure is None:
                launched = False
                for step in list(pending):
                    if not ready(step):
                        continue
                    if not step.always and store.is_done(step.out_dir, inputs_hash=step.inputs_hash):
                        outcome[step.name] = "skipped"
                        pending.remove(step)
                        bar.update()
                        launched = True
                        continue
                    if not free_slots:
                        break
                    runnable = len(running) + 1 + sum(ready(s) for s in pending if s is not step)
                    threads = max(1, cores // min(jobs, runnable))
                    _prepare_step_dir(step)
                    slot = free_slots.pop(0)
                    params = dict(step.parameters, threads=threads)
                    fut = pool.submit(execute_step, step, progress=progress, log_output=log_output,
                                      parameters=params, position=slot)
                    running[fut] = (step, slot)
                    pending.remove(step)
                    launched = True
                    bar.set_postfix_str(", ".join(s.name for s, _ in running.values()))
            if not running:
                if failure is not None or not pending:
                    break
                blocked = ", ".join(s.name for s in pending)
                raise PipelineError(f"steps {blocked} wait on steps that are neither complete nor planned")
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
                store.mark_done(step.out_dir, inputs_hash=step.inputs_hash, seconds=round(seconds, 3), step=step.name,
                                started_at=time.time() - seconds)
                outcome[step.name] = "ran"
                bar.update()
            if failure is not None:
                pending.clear()  # let the running steps finish, start nothing new
    bar.close()
    if failure is not None:
        raise failure
    return outcome


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
    1/2 and the figures as mean ± std over the seeds (:func:`cometa.results.report.write_report`).
    Other keyword arguments go to :func:`run_pipeline` for every seed.
    """
    from cometa.runs import atomic_write

    if not seeds:
        raise ValueError("run_study needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {seeds}")
    study_dir = Path(study_dir).resolve()
    if (study_dir / "store.sqlite").exists():
        raise PipelineError(f"{study_dir} is a single run's directory; give the study its own --run-dir")
    study_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(study_dir / STUDY_FILE) as tmp:
        tmp.write_text(json.dumps({"preset": preset, "seeds": [int(x) for x in seeds],
                                   "overrides": list(overrides or []),
                                   "runs": [seed_dir(study_dir, x).name for x in seeds]}, indent=2))
    outcomes = {}
    for i, seed in enumerate(seeds, 1):
        print(f"cometa: seed {seed} ({i} of {len(seeds)}) -> {seed_dir(study_dir, seed)}", flush=True)
        outcomes[int(seed)] = run_pipeline(preset, run_dir=seed_dir(study_dir, seed),
                                           overrides=[*(overrides or []), f"seed={int(seed)}"], **kwargs)
    if report:
        from cometa.results.report import write_report

        write_report(study_dir)
    return outcomes
