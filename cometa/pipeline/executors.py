"""Where a study's steps run: threads of this process, or tasks on a Dask distributed cluster.

Both run one step as :func:`run_step` (one papermill execution, :func:`cometa.pipeline.run.execute_step`)
with the threads the study's plan gave it, and report who ran it and for how long. The numbers do not
depend on the executor: the step's kernel is started with its own thread variables and
``OPENBLAS_CORETYPE`` (:func:`cometa.pipeline.run.kernel_environment`), whatever the environment of
the process that starts it (Dask's nanny sets ``OMP_NUM_THREADS=1`` and the like in its workers).

A Dask cluster's workers need this checkout and the study directory on a shared file system, as on
any Slurm cluster; a step that trains on CUDA asks for the worker resource ``GPU=1`` (start such
workers with ``dask worker ADDRESS --resources GPU=1``), a CPU step asks for nothing.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from cometa.pipeline.plan import Step
from cometa.pipeline.run import execute_step

__all__ = ["run_step", "LocalExecutor", "DaskExecutor", "open_executor", "ExecutorError"]


class ExecutorError(RuntimeError):
    """The executor could not be started or reached (a bad ``--dask`` address, no scheduler there)."""


def _worker_address() -> str:
    """This process's Dask worker address, or ``local:<host>`` outside a worker."""
    try:
        from distributed import get_worker  # only a step run by a Dask worker needs distributed loaded

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"local:{socket.gethostname()}"


def run_step(step: Step, parameters: dict[str, Any], *, progress: bool = False, position: int = 1) -> dict[str, Any]:
    """Run one step; return when it started and finished, its wall and CPU seconds (``cpu_seconds``, the
    kernel's process tree) and the worker that ran it.
    :class:`cometa.pipeline.run.PipelineError` (the failing cell named) when its notebook fails."""
    started, usage = time.time(), dict[str, float]()
    seconds = execute_step(step, progress=progress, parameters=parameters, position=position, usage=usage)
    return {"seconds": round(seconds, 3), "started_at": started, "finished_at": time.time(),
            "worker": _worker_address(), "host": socket.gethostname(), **usage}


class LocalExecutor:
    """``jobs`` steps at once, each in a thread of this process (its kernel a child process)."""

    def __init__(self, jobs: int, *, progress: bool = True):
        self.jobs = max(1, int(jobs))
        self.progress = progress
        self._pool = ThreadPoolExecutor(max_workers=self.jobs)
        self._slots = list(range(1, self.jobs + 1))
        self._slot_of: dict[Future, int] = {}

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "address": None, "workers": [f"local:{socket.gethostname()}"], "jobs": self.jobs}

    def submit(self, step: Step, parameters: dict[str, Any], *, gpu: bool = False, label: str = "") -> Future:
        slot = self._slots.pop(0) if self._slots else self.jobs + 1
        fut = self._pool.submit(run_step, step, parameters, progress=self.progress, position=slot)
        self._slot_of[fut] = slot
        return fut

    def wait(self, futures: list) -> list:
        done, _ = wait(futures, return_when=FIRST_COMPLETED)
        for fut in done:
            slot = self._slot_of.pop(fut, None)
            if slot is not None and slot <= self.jobs:
                self._slots = sorted([*self._slots, slot])
        return list(done)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class DaskExecutor:
    """Each step a task on a Dask distributed cluster: ``address`` a scheduler (``tcp://HOST:8786``),
    or ``local:N`` for a :class:`distributed.LocalCluster` of N single-threaded worker processes started
    for the study and bound to 127.0.0.1 (its dashboard too)."""

    def __init__(self, address: str, *, timeout: float = 30.0):
        try:
            from distributed import Client, LocalCluster  # tornado, msgpack...: only with --dask
        except ImportError as e:  # pragma: no cover - distributed is pinned
            raise ExecutorError(f"--dask needs the 'distributed' package: {e}") from None
        self.address = address
        self._cluster = None
        if address.startswith("local:"):
            try:
                n = int(address.split(":", 1)[1])
            except ValueError:
                n = 0
            if n < 1:
                raise ExecutorError(f"--dask {address}: expected local:N with N >= 1 worker processes")
            gpus = _visible_gpus()
            self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                         dashboard_address="127.0.0.1:0", resources={"GPU": gpus} if gpus else None)
            self.client = Client(self._cluster)
        else:
            try:
                self.client = Client(address, timeout=timeout)
            except (OSError, TimeoutError, ValueError) as e:
                raise ExecutorError(f"--dask {address}: no Dask scheduler answered ({e})") from None
        self._seen: set[str] = set()

    def describe(self) -> dict[str, Any]:
        workers = sorted(self._seen | set(self.client.scheduler_info().get("workers", {})))
        self._seen |= set(workers)
        return {"kind": "dask", "address": self.client.scheduler.address, "workers": workers,
                "dashboard": self.client.dashboard_link, "local_cluster": self._cluster is not None}

    def submit(self, step: Step, parameters: dict[str, Any], *, gpu: bool = False, label: str = ""):
        self._seen |= set(self.client.scheduler_info().get("workers", {}))
        return self.client.submit(run_step, step, parameters, key=f"cometa-{label}-{time.time_ns()}", pure=False,
                                  resources={"GPU": 1} if gpu else None)

    def wait(self, futures: list) -> list:
        from distributed import wait as dask_wait  # only with --dask (this class)

        return list(dask_wait(futures, return_when="FIRST_COMPLETED").done)

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _visible_gpus() -> int:
    """GPUs this machine's workers could use (``CUDA_VISIBLE_DEVICES`` or nvidia-smi), without torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return len(out.stdout.strip().splitlines()) if out.returncode == 0 else 0


def open_executor(dask: str | None, *, jobs: int, progress: bool = True) -> LocalExecutor | DaskExecutor:
    """The executor ``--dask`` names (None: this process's threads, ``jobs`` at once)."""
    return DaskExecutor(dask) if dask else LocalExecutor(jobs, progress=progress)
