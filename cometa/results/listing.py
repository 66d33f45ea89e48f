"""``cometa ls``: one line per run or study directory, read from the directories only.

A run's line: its preset, strategies, Stage II rounds finished of those planned (the least finished
strategy's), steps finished of those planned, its state, each strategy's last finished round's audio
EER on the O trials, and when it started. The state is ``complete`` (every planned step finished with
the inputs it plans), ``running`` (a live process holds the run's lock) or ``interrupted`` (neither).
A study (``study.json``: seeds, or the cells of a grid) gets one line with its cells and runs, and how
many of its runs are complete.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from cometa.config import load_run_config
from cometa.pipeline.plan import plan_steps
from cometa.pipeline.provenance import read_provenance
from cometa.pipeline.run import STUDY_FILE
from cometa.runs import RunStore, done_hash, grid_study, lock_holder

__all__ = ["RunLine", "run_line", "study_line", "list_dirs", "format_lines"]


@dataclass
class RunLine:
    """What ``cometa ls`` says of one run directory."""

    path: Path
    preset: str
    strategies: list[str]
    rounds_done: int  # Stage II rounds finished by every strategy
    rounds_planned: int
    steps_done: int
    steps_planned: int
    state: str  # complete | running | interrupted
    eer_o_audio: dict[str, float]  # strategy -> EER (fraction) of its last finished round, audio, O
    started_at: float | None  # Unix time

    def text(self) -> str:
        eer = " ".join(f"{s}={100 * v:.1f}%" for s, v in self.eer_o_audio.items()) or "-"
        state = "running (lock held)" if self.state == "running" else self.state
        return (f"{self.path}  {self.preset}  {','.join(self.strategies)}  rounds {self.rounds_done}/"
                f"{self.rounds_planned}  steps {self.steps_done}/{self.steps_planned}  {state}  "
                f"EER O audio {eer}  started {_when(self.started_at)}")


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t is not None else "?"


def _started_at(run_dir: Path) -> float | None:
    """The first session's start (``provenance.json``), else when the config was written."""
    record = read_provenance(run_dir)
    if record and record["sessions"] and record["sessions"][0].get("started_at") is not None:
        return float(record["sessions"][0]["started_at"])
    config = run_dir / "config.yaml"
    return config.stat().st_mtime if config.exists() else None


def run_line(run_dir: str | Path) -> RunLine:
    """Read one run directory (``config.yaml`` and ``store.sqlite``) into its :class:`RunLine`."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir / "config.yaml")
    steps = plan_steps(cfg, run_dir.resolve())
    if grid_study(run_dir.parent.parent) is not None:  # a study's run: the study writes one report for all
        steps = [s for s in steps if s.name != "report"]
    done = {s.name for s in steps if done_hash(s.out_dir) == s.inputs_hash}
    strategies = list(cfg.stage2.strategies)
    rounds = [max([r for r in range(1, cfg.stage2.rounds + 1) if f"{s}/round_{r}" in done], default=0)
              for s in strategies]
    eer = RunStore(run_dir).scalars(stage="eval/O", modality="audio", name="eer")
    last = {}
    for s, r in zip(strategies, rounds):
        values = [float(v) for v in eer[(eer["strategy"] == s) & (eer["round"] == r)]["value"]] if r else []
        if values and not math.isnan(values[-1]):
            last[s] = values[-1]
    state = ("running" if lock_holder(run_dir) is not None
             else "complete" if len(done) == len(steps) else "interrupted")
    return RunLine(run_dir, cfg.preset, strategies, min(rounds, default=0), cfg.stage2.rounds, len(done),
                   len(steps), state, last, _started_at(run_dir))


def study_line(study_dir: str | Path) -> str:
    """One line for a study directory: its kind, cells and runs, how many runs are complete, its start."""
    study_dir = Path(study_dir)
    spec = json.loads((study_dir / STUDY_FILE).read_text())
    runs = [study_dir / r for r in spec.get("runs", [])]
    cells = spec.get("cells")
    kind = spec.get("kind", "seeds")
    complete = sum(1 for r in runs if (r / "store.sqlite").exists() and run_line(r).state == "complete")
    started = [t for r in runs if (r / "store.sqlite").exists() and (t := _started_at(r)) is not None]
    size = f"{len(cells)} cells, {len(runs)} runs" if cells is not None else f"{len(runs)} runs"
    running = " running (lock held)" if lock_holder(study_dir) is not None else ""
    return (f"{study_dir}  study ({kind})  {spec.get('preset') or '-'}  {size}, {complete} complete{running}  "
            f"started {_when(min(started) if started else None)}")


def list_dirs(paths: list[str | Path]) -> list[Path]:
    """The runs and studies ``cometa ls PATH ...`` lists: each path that is one, else its children that are
    (a study's own runs are not listed apart from it)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if _is_listed(p):
            out.append(p)
        elif p.is_dir():
            out += [c for c in sorted(p.iterdir()) if _is_listed(c)]
    return out


def _is_listed(p: Path) -> bool:
    return ((p / "store.sqlite").exists() and (p / "config.yaml").exists()) or (p / STUDY_FILE).exists()


def format_lines(paths: list[Path]) -> list[str]:
    """``cometa ls``'s lines, one per run or study of ``paths`` (:func:`list_dirs`)."""
    return [study_line(p) if (p / STUDY_FILE).exists() else run_line(p).text() for p in paths]
