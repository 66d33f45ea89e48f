"""Where a number came from: the machine, the code and the command that made a run or a study.

Results differ in the last bits across CPU kinds (AVX2 and AVX-512 machines reduce in other orders),
so every run and study records the kind that made it. :func:`machine_record` collects, once per
process, what a reader needs to place a number: the command line, the git commit (and whether the
tree was dirty), every pinned package's version, Python, the CPU model and its SIMD flags, the cores
this process may use, ``OPENBLAS_CORETYPE``, the GPU where one was used, and the host name. The
records are plain JSON (``provenance.json``); the results layer only reads them.

A run directory's ``provenance.json`` (:func:`write_run_provenance`, :func:`record_step`)::

    {"sessions": [{<machine_record>, "started_at": ..., "steps": {"stage1": {"started_at": ...,
                   "finished_at": ..., "seconds": ..., "worker": ...}, ...}}, ...]}

one session per ``cometa run`` that worked in the directory (a resumed run appends its own, so the
record of the first is kept), each with the steps that session ran.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from cometa.core.blas import SIMD, cpu_info, simd_level
from cometa.runs import atomic_write, git_sha

__all__ = ["PROVENANCE_FILE", "machine_record", "pinned_versions", "command_line", "gpu_model",
           "write_run_provenance", "record_step", "read_provenance"]

PROVENANCE_FILE = "provenance.json"
_ROOT = Path(__file__).resolve().parents[2]
# the SIMD flags that change a result's last bits (kernel choice in OpenBLAS, MKL, oneDNN, faiss)
_SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
               "amx_tile")


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed (``cometa study ...``), quoted so that it can be pasted back into a shell."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name in ("__main__.py", "cli.py"):
        argv[0] = "cometa"  # python -m cometa
    elif argv:
        argv[0] = Path(argv[0]).name
    return shlex.join(argv)


def pinned_versions(requirements: str | Path = _ROOT / "requirements.txt") -> dict[str, str | None]:
    """Every pinned package (``requirements.txt``) and the version installed here (None: missing)."""
    names: list[str] = []
    try:
        for line in Path(requirements).read_text().splitlines():
            m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*==", line.split("#")[0])
            if m:
                names.append(m.group(1))
    except OSError:  # an installed copy without the checkout: what the package itself requires
        names = [re.split(r"[=<>!~ ;\[]", r, maxsplit=1)[0] for r in (metadata.requires("cometa") or [])]
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def gpu_model(device: str = "cpu") -> str | None:
    """The GPU a run used (``device`` ``cuda...``): its name as torch reports it; None on the CPU."""
    if not str(device).startswith("cuda"):
        return None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return str(torch.cuda.get_device_name(0))
    try:  # the orchestrator does not import torch: ask the driver
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_record(*, command: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """What made a number: command, code, packages, Python, CPU, cores, BLAS core type, GPU and host.

    Parameters
    ----------
    command : the command line to record (default: this process's, :func:`command_line`).
    device : the run's ``device`` setting; a ``cuda`` device records the GPU's model.
    """
    sha = git_sha(_ROOT)
    cpu = cpu_info()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    return {
        "command": command if command is not None else command_line(),
        "git": {"commit": sha.removesuffix("-dirty") if sha else None, "dirty": bool(sha and sha.endswith("-dirty"))},
        "packages": pinned_versions(),
        "python": platform.python_version(),
        "cpu": {"model": cpu.model, "vendor": cpu.vendor, "simd": SIMD[simd_level(cpu.flags)],
                "flags": [f for f in _SIMD_FLAGS if f in cpu.flags], "cores": os.cpu_count(), "cores_usable": usable},
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "gpu": gpu_model(device),
        "host": socket.gethostname(),
        "recorded_at": time.time(),
    }


# one lock for every provenance file of this process: the orchestrator's step threads (and a study's
# scheduler) finish steps concurrently, and each record is a read-modify-write of the whole file
_LOCK = threading.Lock()


def read_provenance(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's ``provenance.json`` as a dict (``{"sessions": [...]}``); None when it has none."""
    try:
        data = json.loads((Path(run_dir) / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("sessions"), list) else None


def _write(run_dir: Path, data: dict[str, Any]) -> None:
    with atomic_write(run_dir / PROVENANCE_FILE) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def write_run_provenance(run_dir: str | Path, *, command: str | None = None, device: str = "cpu") -> Path:
    """Start a session of the run's record: :func:`machine_record` and the start time, appended to
    ``RUN_DIR/provenance.json`` (a resumed run keeps the earlier sessions). Returns the file.

    Parameters
    ----------
    run_dir : the run directory (it exists: the run holds its lock).
    command : the command line to record (default: this process's).
    device : the run's ``device`` setting; a ``cuda`` device records the GPU's model.
    """
    run_dir = Path(run_dir)
    session = {**machine_record(command=command, device=device), "started_at": time.time(), "steps": {}}
    with _LOCK:
        data = read_provenance(run_dir) or {"sessions": []}
        data["sessions"].append(session)
        _write(run_dir, data)
    return run_dir / PROVENANCE_FILE


def record_step(run_dir: str | Path, name: str, *, started_at: float, finished_at: float, seconds: float,
                worker: str | None = None) -> None:
    """Record a finished step's start and end (Unix times), its seconds and where it ran (``worker``:
    a Dask worker's address, None for this process) in the current (last) session of the run's
    ``provenance.json``. Thread-safe; a run without a record gets one first."""
    run_dir = Path(run_dir)
    entry = {"started_at": started_at, "finished_at": finished_at, "seconds": round(float(seconds), 3),
             "worker": worker}
    with _LOCK:
        data = read_provenance(run_dir)
        if data is None:  # a step finished in a directory nobody started a record in (an API caller)
            data = {"sessions": [{**machine_record(), "started_at": started_at, "steps": {}}]}
        data["sessions"][-1].setdefault("steps", {})[name] = entry
        _write(run_dir, data)
