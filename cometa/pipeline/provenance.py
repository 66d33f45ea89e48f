"""Where a number came from: the machine, the code and the command that made a run or a study.

Results differ in the last bits across CPU kinds (AVX2 and AVX-512 machines reduce in other orders),
so every run and study records the kind that made it. :func:`machine_record` collects, once per
process, what a reader needs to place a number: the command line, the git commit (and whether the
tree was dirty), every pinned package's version, Python, the CPU model and its SIMD flags, the cores
this process may use, ``OPENBLAS_CORETYPE``, the GPU where one was used, and the host name. The
records are plain JSON (``provenance.json``); the results layer only reads them.
"""
from __future__ import annotations

import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from cometa.core.blas import SIMD, cpu_info, simd_level
from cometa.runs import git_sha

__all__ = ["PROVENANCE_FILE", "machine_record", "pinned_versions", "command_line", "gpu_model"]

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
