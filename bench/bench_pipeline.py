"""Benchmark: the whole study (``python -m cometa run``) as a subprocess: wall time and peak memory.

The resident set size (RSS) of the whole process tree (the CLI, papermill kernels, torchrun
workers, DataLoader workers: children found recursively) is sampled every ``interval`` seconds;
the peak is the maximum over time of the per-sample sum. Pages shared between processes (forked
workers, shared libraries) are counted once per process, so the sum overstates the physical
memory used; processes that live less than one interval may be missed.

The pipeline is not assumed to succeed: the exit code is reported, and on failure the last lines
of its output. ``command`` replaces the pipeline (e.g. :func:`stand_in_command`, to check the
sampler). Run: ``python -m bench.bench_pipeline [--preset tiny] [--run-dir DIR] [--stand-in MB]``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import psutil

from bench.common import ROOT


def stand_in_command(mb: int = 500, *, parent_mb: int = 50, hold_s: float = 2.0) -> list[str]:
    """A python process holding ``parent_mb`` MiB that starts a child holding ``mb`` MiB for ``hold_s`` s.

    The bytes are written (not zero pages the kernel may leave unmapped), so both count in RSS;
    the expected peak is about ``mb + parent_mb`` MiB plus two interpreters.
    """
    child = f"import time; b = bytearray(b'x') * ({mb} * 2**20); time.sleep({hold_s})"
    parent = (f"import subprocess, sys; a = bytearray(b'y') * ({parent_mb} * 2**20); "
              f"print('stand-in: parent {parent_mb} MiB, child {mb} MiB', flush=True); "
              f"sys.exit(subprocess.call([sys.executable, '-c', {child!r}]))")
    return [sys.executable, "-c", parent]


def _pss(pid: int) -> int:
    """Proportional set size in bytes (shared pages split among their users), from smaps_rollup."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(proc: psutil.Process, *, with_pss: bool = False):
    """(sum of RSS in bytes over ``proc`` and all its descendants, number of processes[, sum of PSS]).

    RSS counts a page shared by several processes (libraries, forked workers, Chromium's helpers)
    once per process; PSS splits it among them, so the PSS sum is the physical memory the tree uses.
    """
    try:
        procs = [proc] + proc.children(recursive=True)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return (0, 0, 0) if with_pss else (0, 0)
    total = n = pss = 0
    for p in procs:
        try:
            total += p.memory_info().rss
            n += 1
            if with_pss:
                pss += _pss(p.pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass  # exited between the listing and the read
    return (total, n, pss) if with_pss else (total, n)


def _kill_tree(popen: subprocess.Popen) -> None:
    """SIGKILL the descendants, then the process itself (reaped by ``popen.wait`` so its rc survives)."""
    try:
        children = psutil.Process(popen.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for p in children:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    popen.kill()
    psutil.wait_procs(children, timeout=10)


def run_sampled(command: list[str], *, log_path: Path, interval: float = 1.0, timeout_s: float | None = None,
                env: dict | None = None, cwd: str | Path | None = None) -> dict:
    """Run ``command`` (stdout and stderr to ``log_path``) and sample its tree's RSS until it exits."""
    peak = peak_root = peak_pss = 0
    max_procs = samples = 0
    timed_out = False
    me = psutil.Process()
    cpu0 = sum(me.cpu_times()[:2])
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        popen = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        proc = psutil.Process(popen.pid)
        while popen.poll() is None:
            total, n, pss = tree_rss(proc, with_pss=True)
            peak_pss = max(peak_pss, pss)
            try:
                root = proc.memory_info().rss
            except psutil.Error:
                root = 0
            peak, peak_root, max_procs = max(peak, total), max(peak_root, root), max(max_procs, n)
            samples += 1
            if timeout_s is not None and time.perf_counter() - t0 > timeout_s:
                timed_out = True
                _kill_tree(popen)
                break
            time.sleep(interval)
        rc = popen.wait()
        wall = time.perf_counter() - t0
    return {"rc": rc, "timed_out": timed_out, "wall_s": round(wall, 2), "peak_rss_mb": round(peak / 2 ** 20, 1),
            "peak_pss_mb": round(peak_pss / 2 ** 20, 1), "peak_rss_root_mb": round(peak_root / 2 ** 20, 1),
            "max_processes": max_procs, "samples": samples,
            "interval_s": interval,
            # the sampler's own CPU (reading smaps of a few GB-sized processes is not free): it is
            # taken from the cores the pipeline runs on, so it is reported beside the wall time
            "sampler_cpu_s": round(sum(me.cpu_times()[:2]) - cpu0, 1)}


def _tail(path: Path, n: int) -> list[str]:
    with open(path, "rb") as f:
        lines = deque(f, maxlen=n)
    return [ln.decode("utf-8", "replace").rstrip("\n") for ln in lines]


def _dir_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2 ** 20, 1) if path.exists() else 0.0


def main(preset: str = "demo", run_dir: str | Path | None = None, *, quick: bool = False,
         command: list[str] | None = None, interval: float = 1.0, timeout_s: float | None = 3600.0,
         tail_lines: int = 30) -> dict:
    """Run the pipeline (or ``command``) once; print and return wall time, peak tree RSS and the exit code.

    ``run_dir`` defaults to a fresh folder in a temporary directory (removed afterwards); ``quick``
    switches to the ``tiny`` preset. ``timeout_s`` kills the whole tree (None: no limit).
    """
    if quick:
        preset = "tiny"
    with tempfile.TemporaryDirectory(prefix="cometa-bench-pipeline-") as tmp:
        rd = Path(run_dir) if run_dir is not None else Path(tmp) / "run"
        custom = command is not None
        if not custom:
            command = [sys.executable, "-m", "cometa", "run", "--preset", preset, "--run-dir", str(rd), "--quiet"]
            what = f"python -m cometa run --preset {preset}"
        else:
            what = shlex.join(command).replace("\n", " ")[:120]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        log_path = Path(tmp) / "output.log"
        print(f"bench_pipeline: {what} (sampling tree RSS every {interval} s)", flush=True)
        r = run_sampled(command, log_path=log_path, interval=interval, timeout_s=timeout_s, env=env, cwd=ROOT)
        result = {"command": command, "preset": None if custom else preset,
                  "run_dir": str(rd) if run_dir is not None else None, **r,
                  "run_dir_mb": _dir_mb(rd), "load_avg_1min_after": round(os.getloadavg()[0], 2)}
        ok = r["rc"] == 0 and not r["timed_out"]
        if not ok:
            result["output_tail"] = _tail(log_path, tail_lines)
        if run_dir is None:
            shutil.rmtree(rd, ignore_errors=True)
    status = "ok" if ok else ("TIMED OUT" if r["timed_out"] else f"FAILED (rc {r['rc']})")
    result["headline"] = (f"{status}: wall {r['wall_s']:.1f} s, peak tree PSS {r['peak_pss_mb']:.0f} MiB "
                          f"(RSS sum {r['peak_rss_mb']:.0f} MiB, {r['max_processes']} processes at most; "
                          f"the sampler used {r['sampler_cpu_s']:.0f} CPU s)")
    print(f"bench_pipeline: {result['headline']}")
    if not ok:
        print(f"--- last {tail_lines} lines of output ---")
        print("\n".join(result["output_tail"]))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo", choices=["tiny", "demo", "paper"])
    ap.add_argument("--run-dir", default=None, help="run here (kept) instead of a temporary directory")
    ap.add_argument("--stand-in", type=int, metavar="MB", default=None,
                    help="time a stand-in child allocating MB MiB instead of the pipeline (checks the sampler)")
    ap.add_argument("--timeout", type=float, default=3600.0)
    a = ap.parse_args()
    out = main(a.preset, a.run_dir, command=stand_in_command(a.stand_in) if a.stand_in else None, timeout_s=a.timeout)
    sys.exit(0 if out["rc"] == 0 else 1)
