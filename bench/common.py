"""Helpers the benchmark scripts share: machine description, robust summaries, text/Markdown tables."""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else whatever ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_sha() -> str | None:
    """HEAD of the repository the benchmarks ran from (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict:
    """What the figures were measured on: CPU, cores, RAM, load, library versions, date."""
    import numpy
    import psutil
    import torch

    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2 ** 30, 1),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
        "git_sha": git_sha(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def describe_machine(info: dict) -> str:
    """One line: ``<cpu>, N cores (M physical), R GiB RAM, load a/b/c; torch x, numpy y; date``."""
    load = "/".join(f"{x:g}" for x in info.get("load_avg_1_5_15", []))
    return (f"{info.get('cpu_model')}, {info.get('logical_cores')} cores ({info.get('physical_cores')} physical), "
            f"{info.get('ram_gb')} GiB RAM, load {load} at start; torch {info.get('torch')}, "
            f"numpy {info.get('numpy')}, Python {info.get('python')}; {info.get('date')}")


def summarise(times: list[float]) -> dict:
    """Median, best and worst of repeated timings, in seconds."""
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}


def text_table(rows: list[list], headers: list[str]) -> str:
    """A plain aligned table for the terminal (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(isinstance(r[i], (int, float)) for r in rows) and rows for i in range(len(headers))]

    def line(r):
        return "  ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])


def markdown_table(rows: list[list], headers: list[str]) -> str:
    """A GitHub-flavoured Markdown table ('|' inside cells escaped)."""
    def esc(c):
        return _fmt(c).replace("|", "\\|")

    out = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _fmt(c) -> str:
    if isinstance(c, float):
        return f"{c:.3g}" if abs(c) < 1000 else f"{c:,.0f}"
    return str(c)
