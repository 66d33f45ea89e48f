"""Which BLAS kernels the k-means of the pseudo-label step (paper Sec. 2.2) runs on, and what to do
when faiss's are generic.

The faiss-cpu wheel bundles its own OpenBLAS (0.3.15 in faiss-cpu 1.15). On a CPU newer than that
OpenBLAS it falls back to the generic ``Prescott`` SSE kernels: on a 2-core AVX-512 Xeon faiss's
k-means ran at 17 % of numpy's matmul rate (issue 18), while ``OPENBLAS_CORETYPE=SkylakeX`` set
before faiss loads brought it back to 80 %. Two answers, both decided here by pure functions of
(CPU flags, the BLAS core names that threadpoolctl reports, the environment):

- :func:`choose_kmeans_backend`: which Lloyd backend :func:`cometa.core.pseudo_labels.kmeans` uses in
  *this* process (faiss; when faiss's kernels are generic, cometa's chunked Lloyd on numpy's OpenBLAS,
  which recognises the CPU; faiss or torch on a GPU when one is visible);
- :func:`openblas_coretype_for`: the ``OPENBLAS_CORETYPE`` the pipeline gives the processes it
  starts (kernels, torchrun workers), so that faiss is fast there too. A value the user set is
  never overridden.

The probes (:func:`cpu_info`, :func:`blas_cores`) read /proc/cpuinfo and threadpoolctl; they are
cached per process. ``python -m cometa.core.blas`` prints the whole report as JSON; with ``--coretype``
only the value for child processes (``make lab`` exports it for the notebook kernels).
"""
from __future__ import annotations

import functools
import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["CpuInfo", "BackendChoice", "CoretypeDecision", "cpu_info", "simd_level", "core_level", "blas_cores",
           "faiss_is_generic", "choose_kmeans_backend", "openblas_coretype_for", "kmeans_backend",
           "apply_openblas_coretype", "coretype_runs", "blas_report", "BACKENDS"]

BACKENDS = ("auto", "faiss", "sklearn", "torch", "numpy")
SIMD = ("sse", "avx", "avx2", "avx512")  # simd_level's values, by index

# OpenBLAS core names (openblas_get_corename, lower-cased) by the widest SIMD their kernels use;
# a name not listed (ARM, POWER, a future x86 core) is not judged
_CORE_LEVELS = {
    **dict.fromkeys(("katmai", "coppermine", "northwood", "prescott", "banias", "core2", "penryn", "dunnington",
                     "nehalem", "atom", "athlon", "opteron", "opteron_sse3", "barcelona", "bobcat", "generic"), 0),
    **dict.fromkeys(("sandybridge", "bulldozer", "piledriver", "steamroller", "excavator"), 1),
    **dict.fromkeys(("haswell", "zen"), 2),
    **dict.fromkeys(("skylakex", "cooperlake", "sapphirerapids"), 3),
}


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as /proc/cpuinfo describes it (``flags`` lower-case, e.g. ``{"avx2", "fma"}``)."""

    model: str = "unknown"
    vendor: str = "unknown"  # GenuineIntel | AuthenticAMD | ...
    flags: frozenset = field(default_factory=frozenset)


@dataclass(frozen=True)
class BackendChoice:
    """Where k-means runs: ``backend`` (faiss | sklearn | torch) on ``device`` (cpu | cuda), and why."""

    backend: str
    device: str
    reason: str


@dataclass(frozen=True)
class CoretypeDecision:
    """``OPENBLAS_CORETYPE`` for the processes a run starts: ``value`` (None: leave the environment
    as it is), ``source`` (user | cometa | none) and the reason, in words."""

    value: str | None
    source: str
    reason: str


def simd_level(flags: frozenset | set) -> int:
    """0 (SSE only), 1 (AVX), 2 (AVX2 + FMA), 3 (AVX-512 F/BW/DQ/VL, what OpenBLAS's SkylakeX kernels use)."""
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return 3
    if {"avx2", "fma"} <= flags:
        return 2
    return 1 if "avx" in flags else 0


def core_level(core: str | None) -> int | None:
    """The SIMD level (as :func:`simd_level`) of an OpenBLAS core's kernels; None for a name not known."""
    return None if core is None else _CORE_LEVELS.get(core.lower())


def faiss_is_generic(*, flags: frozenset | set, faiss_core: str | None) -> bool:
    """True when faiss's OpenBLAS runs pre-AVX2 kernels (``Prescott``, ``Sandybridge``, ...) on a CPU
    with AVX2 or AVX-512: its k-means then runs at a fraction of the machine's speed."""
    level = core_level(faiss_core)
    return level is not None and level < 2 <= simd_level(flags)


def choose_kmeans_backend(*, backend: str = "auto", gpu: str | bool = "auto", flags: frozenset | set,
                          faiss_core: str | None, vendor: str = "unknown", scipy_core: str | None = None,
                          numpy_core: str | None = None, torch_blas: str | None = "MKL", faiss_gpus: int = 0,
                          cuda: bool = False) -> BackendChoice:
    """Which Lloyd backend k-means uses, from what the process sees (a pure function).

    Parameters
    ----------
    backend : "auto" | "faiss" | "sklearn" | "torch" | "numpy". "auto": on a GPU, faiss's GPU k-means
        when the faiss build has GPUs (``faiss_gpus > 0``), else torch on CUDA. On the CPU, faiss
        unless its OpenBLAS is generic on this CPU (:func:`faiss_is_generic`); then the chunked Lloyd
        on numpy's OpenBLAS when that recognises the CPU (AVX2 kernels or better; on a 2-core AVX-512
        Xeon, issue 36, it ran at 1.12x faiss's speed on its native kernels in one thread, torch's
        loop at 0.77x), else torch when its BLAS is MKL on an Intel CPU, else scikit-learn when
        scipy's OpenBLAS recognises the CPU, else torch.
    gpu : "auto" (a GPU when one is visible), True (a GPU or an error), False (the CPU).
    flags, vendor : the CPU's flags and vendor id (:func:`cpu_info`).
    faiss_core, scipy_core, numpy_core : the OpenBLAS core names of faiss, scipy and numpy
        (:func:`blas_cores`).
    torch_blas : "MKL" when torch's CPU BLAS is MKL. faiss_gpus : ``faiss.get_num_gpus()``;
    cuda : ``torch.cuda.is_available()``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"k-means backend must be {'|'.join(BACKENDS)}, got {backend!r}")
    if gpu not in ("auto", True, False):
        raise ValueError(f"gpu must be 'auto', True or False, got {gpu!r}")
    want_gpu = gpu is True or gpu == "auto"
    on_faiss_gpu = want_gpu and faiss_gpus > 0 and backend in ("auto", "faiss")
    on_torch_gpu = want_gpu and cuda and (backend == "torch" or (backend == "auto" and not on_faiss_gpu))
    if on_faiss_gpu:
        return BackendChoice("faiss", "cuda", f"faiss's GPU k-means ({faiss_gpus} GPU(s) visible to faiss)")
    if on_torch_gpu:
        why = "asked for" if backend == "torch" else "this faiss build has no GPU support"
        return BackendChoice("torch", "cuda", f"torch k-means on CUDA ({why})")
    if gpu is True:
        raise ValueError(f"gpu=True but no GPU for the {backend} k-means backend (faiss sees {faiss_gpus} GPU(s), "
                         f"torch.cuda.is_available() is {cuda})")
    level = SIMD[simd_level(flags)]
    if backend != "auto":
        return BackendChoice(backend, "cpu", f"asked for (CPU: {level})")
    if not faiss_is_generic(flags=flags, faiss_core=faiss_core):
        return BackendChoice("faiss", "cpu", f"faiss's OpenBLAS runs {faiss_core!r} kernels on this {level} CPU")
    generic = f"faiss's OpenBLAS runs generic {faiss_core!r} kernels on this {level} CPU"
    if (core_level(numpy_core) or 0) >= 2:
        return BackendChoice("numpy", "cpu", f"{generic}: a chunked Lloyd on numpy's OpenBLAS ({numpy_core!r} "
                                             "kernels) instead")
    if torch_blas == "MKL" and vendor == "GenuineIntel":
        return BackendChoice("torch", "cpu", f"{generic}: the assignment runs on torch's MKL instead")
    if (core_level(scipy_core) or 0) >= 2:
        return BackendChoice("sklearn", "cpu", f"{generic}: scikit-learn's Lloyd on scipy's OpenBLAS "
                                               f"({scipy_core!r} kernels) instead")
    return BackendChoice("torch", "cpu", f"{generic}: the assignment runs on torch's BLAS ({torch_blas}) instead")


def openblas_coretype_for(*, cpu: CpuInfo, faiss_core: str | None, env: Mapping[str, str]) -> CoretypeDecision:
    """The ``OPENBLAS_CORETYPE`` for the processes a run starts (a pure function).

    A value already in ``env`` is kept. Otherwise, when faiss's OpenBLAS is generic on this CPU
    (:func:`faiss_is_generic`), the core matching the CPU: ``SkylakeX`` with AVX-512, else ``Zen``
    on AMD and ``Haswell`` on Intel; else nothing.
    """
    current = env.get("OPENBLAS_CORETYPE")
    if current:
        return CoretypeDecision(current, "user", f"OPENBLAS_CORETYPE={current} was already set (by the user or the "
                                                 "process that started this one): left as it is")
    level = simd_level(cpu.flags)
    if not faiss_is_generic(flags=cpu.flags, faiss_core=faiss_core):
        return CoretypeDecision(None, "none", f"faiss's OpenBLAS runs {faiss_core!r} kernels on this {SIMD[level]} "
                                              "CPU: nothing to set")
    value = "SkylakeX" if level == 3 else ("Zen" if cpu.vendor == "AuthenticAMD" else "Haswell")
    return CoretypeDecision(value, "cometa", f"faiss's OpenBLAS runs generic {faiss_core!r} kernels on this "
                                             f"{SIMD[level]} CPU ({cpu.model}): the processes cometa starts get "
                                             f"OPENBLAS_CORETYPE={value}")


# ---------------------------------------------------------------------------------------------
# probes (cached per process)


@functools.cache
def cpu_info(path: str = "/proc/cpuinfo") -> CpuInfo:
    """Model, vendor and flags of the first CPU in ``path`` (Linux). Elsewhere, or when the file is
    unreadable, the flags come from numpy's runtime CPU detection (empty if that fails too)."""
    fields: dict[str, str] = {}
    try:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                if fields:
                    break  # the first processor's block is enough
                continue
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    flags = frozenset(fields.get("flags", "").lower().split())
    if not flags:
        try:  # numpy's dispatch table: {"AVX2": True, "AVX512F": False, ...}; a private module: may move
            from numpy._core._multiarray_umath import __cpu_features__

            flags = frozenset(f.lower() for f, on in __cpu_features__.items() if on)
        except ImportError:
            pass
    return CpuInfo(model=fields.get("model name") or platform.processor() or platform.machine() or "unknown",
                   vendor=fields.get("vendor_id", "unknown"), flags=flags)


@functools.cache
def blas_cores() -> dict[str, str | None]:
    """The BLAS each library runs, as threadpoolctl reports it once faiss, numpy and scipy are
    loaded: ``{"faiss": "Prescott", "numpy": "SkylakeX", "scipy": "SkylakeX", "torch": "MKL"}``
    (OpenBLAS core names; torch's MKL is linked statically, threadpoolctl cannot see it)."""
    # loaded here, when asked: the orchestrator imports this module and must stay free of torch and faiss
    import faiss  # noqa: F401  (loads its OpenBLAS)
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401  (scikit-learn's BLAS)
    import torch
    from threadpoolctl import threadpool_info

    cores: dict[str, str | None] = {}
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        owner = next((o for o in ("faiss", "numpy", "scipy", "torch", "sklearn") if o in lib["filepath"]), None)
        if owner and owner not in cores:
            cores[owner] = lib.get("architecture") or lib.get("internal_api")
    if "torch" not in cores:
        cores["torch"] = "MKL" if torch.backends.mkl.is_available() else None
    cores.setdefault("faiss", None)
    return cores


@functools.cache
def _gpus() -> tuple[int, bool]:
    # as in blas_cores: faiss and torch only when a backend is chosen, not on import
    import faiss
    import torch

    return int(faiss.get_num_gpus()), bool(torch.cuda.is_available())


def kmeans_backend(*, backend: str = "auto", gpu: str | bool = "auto") -> BackendChoice:
    """:func:`choose_kmeans_backend` for this process (probes cached)."""
    if backend not in BACKENDS:  # before the probes: a typo fails fast
        raise ValueError(f"k-means backend must be {'|'.join(BACKENDS)}, got {backend!r}")
    faiss_gpus, cuda = _gpus() if gpu is not False else (0, False)
    cores = blas_cores() if backend == "auto" else {}
    cpu = cpu_info()
    return choose_kmeans_backend(backend=backend, gpu=gpu, flags=cpu.flags, vendor=cpu.vendor,
                                 faiss_core=cores.get("faiss"), scipy_core=cores.get("scipy"),
                                 numpy_core=cores.get("numpy"), torch_blas=cores.get("torch"),
                                 faiss_gpus=faiss_gpus, cuda=cuda)


_applied: list[CoretypeDecision] = []  # what apply_openblas_coretype set in os.environ, once

# what a child runs to try a core before the pipeline hands it on: every OpenBLAS the kernels load
# (numpy's, scipy's, faiss's) does one sgemm, and faiss one k-means iteration
_PROBE_CODE = ("import numpy as np, scipy.linalg.blas as b, faiss\n"
               "a = np.ones((96, 96), np.float32); a @ a; b.sgemm(1.0, a, a)\n"
               "faiss.Kmeans(8, 4, niter=1, seed=0).train(np.random.default_rng(0).random((256, 8), np.float32))\n")


@functools.cache
def coretype_runs(value: str, timeout: float = 120.0) -> tuple[bool, str]:
    """Whether a child process with ``OPENBLAS_CORETYPE=value`` loads and uses numpy's, scipy's and
    faiss's OpenBLAS without dying, and if not, how it died. OpenBLAS takes a forced core without
    checking the CPU: a core whose instructions the CPU (or the hypervisor) lacks kills every
    process that does a matrix product with SIGILL, so the pipeline tries the value once first."""
    env = {**os.environ, "OPENBLAS_CORETYPE": value}
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE_CODE], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"a probe process with OPENBLAS_CORETYPE={value} did not finish in {timeout:.0f} s"
    if proc.returncode == 0:
        return True, ""
    if proc.returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-proc.returncode).name}"
        except ValueError:
            how = f"was killed by signal {-proc.returncode}"
    else:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        how = f"exited with {proc.returncode} ({tail})"
    return False, f"a probe process with OPENBLAS_CORETYPE={value} {how}"


def apply_openblas_coretype(env: MutableMapping[str, str] | None = None, *, announce: bool = True) -> CoretypeDecision:
    """Decide :func:`openblas_coretype_for` this machine and set it in ``env`` (default ``os.environ``,
    which the processes started later inherit); print one line the first time a value is set. A
    value that was there before (the user's) is never touched. cometa's own value is tried in a
    child first (:func:`coretype_runs`) and left unset if that child dies."""
    env = os.environ if env is None else env
    current = env.get("OPENBLAS_CORETYPE")
    if current and _applied and current == _applied[0].value:
        return _applied[0]  # set by an earlier call in this process
    # faiss's core as it loads without the variable (probed before cometa sets it in this process)
    faiss_core = None if current else blas_cores()["faiss"]
    decision = openblas_coretype_for(cpu=cpu_info(), faiss_core=faiss_core, env=env)
    if decision.source == "cometa" and decision.value:
        ok, why = coretype_runs(decision.value)
        if not ok:  # the CPU does not run that core after all: faiss stays generic, but alive
            return CoretypeDecision(None, "none", f"{decision.reason}; but {why}: left unset")
        env["OPENBLAS_CORETYPE"] = decision.value
        if announce and not _applied:
            print(f"cometa: {decision.reason}", flush=True)
        _applied[:] = [decision]
    return decision


def blas_report(*, backend: str = "auto", gpu: str | bool = "auto") -> dict:
    """CPU, BLAS cores, GPUs, the k-means backend and the OPENBLAS_CORETYPE decision, as plain data."""
    cpu = cpu_info()
    faiss_gpus, cuda = _gpus()
    children = _applied[0] if _applied else openblas_coretype_for(cpu=cpu, faiss_core=blas_cores()["faiss"],
                                                                  env=os.environ)
    return {
        "cpu": cpu.model, "vendor": cpu.vendor, "simd": SIMD[simd_level(cpu.flags)],
        "blas_cores": blas_cores(), "faiss_gpus": faiss_gpus, "torch_cuda": cuda,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "kmeans_backend": asdict(kmeans_backend(backend=backend, gpu=gpu)),
        "openblas_coretype_for_children": asdict(children),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m cometa.core.blas``: the report as JSON; ``--coretype``: only the ``OPENBLAS_CORETYPE``
    the pipeline would hand its processes (:func:`apply_openblas_coretype`; an empty line for none),
    its reason on stderr: what ``make lab`` gives the notebook kernels."""
    import argparse  # the command line of this module only

    ap = argparse.ArgumentParser(prog="python -m cometa.core.blas",
                                 description="which BLAS kernels cometa's k-means runs on, as JSON")
    ap.add_argument("--coretype", action="store_true", help="print the OPENBLAS_CORETYPE for child processes")
    args = ap.parse_args(argv)
    if args.coretype:
        decision = apply_openblas_coretype(announce=False)
        print(f"cometa: {decision.reason}", file=sys.stderr)
        print(decision.value or "")
    else:
        print(json.dumps(blas_report(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
