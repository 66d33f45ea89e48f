"""The dashboard's data store: reads run directories (never writes) and caches what it read.

Loaders are module-level functions under ``pn.cache`` whose arguments are short strings: the file's
path and its modification time (so a run still in progress is re-read once its files change, and
Panel never has to hash a large array). :class:`RunData` is the one object the views talk to; it
maps a run id (the folder name) to its directory and returns DataFrames and dicts.

On first load only ``store.sqlite``, ``config.yaml`` and the small ``done.json`` / notebook metadata
are read; labels, projections and scores are read per (run, strategy, round) when a view asks.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import panel as pn
import param
import pyarrow.parquet as pq
import yaml

from cometa.results import figures as F
from cometa.results import study_tables as ST
from cometa.results.label_noise import merged_and_split  # noqa: F401 re-exported: it lived here before cometa.results.label_noise
from cometa.results.report import read_scalars, strategies_of
from cometa.runs import grid_study, lock_holder, recorded_corpus_root, study_runs

__all__ = ["RunData", "merged_and_split"]


def _mtime(path: Path) -> str:
    """The modification time as a string cache key ("" when the file is missing)."""
    try:
        return f"{path.stat().st_mtime_ns}"
    except FileNotFoundError:
        return ""


@pn.cache(max_items=16)
def _load_scalars(run_dir: str, mtime: str) -> pd.DataFrame:
    return read_scalars(run_dir)


@pn.cache(max_items=8)
def _study_tables(study_dir: str, mtimes: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A grid study's ``study_table`` and ``round_table`` (:mod:`cometa.results.study_tables`); ``mtimes``
    (of every run's store) makes a study still running be re-read once a run has logged."""
    study = ST.read_study(study_dir)
    return ST.study_table(study_dir, study), ST.round_table(study_dir, study)


@pn.cache(max_items=16)
def _load_yaml(path: str, mtime: str) -> dict:
    return (yaml.safe_load(Path(path).read_text()) or {}) if mtime else {}


@pn.cache(max_items=256)
def _load_json(path: str, mtime: str) -> dict:
    return json.loads(Path(path).read_text()) if mtime else {}


def notebook_status(nb: dict) -> str:
    """What papermill's record says of an executed notebook: ``failed`` (an exception, or a failed
    cell), ``completed`` (it wrote the end time), ``running`` (started, not finished) or ``pending``.
    papermill keeps a status per cell (``cells[i].metadata.papermill.status``) and, for the whole
    notebook, the start and end times and whether an exception ended it."""
    meta = nb.get("metadata", {}).get("papermill", {})
    cells = {c.get("metadata", {}).get("papermill", {}).get("status") for c in nb.get("cells", [])}
    if meta.get("exception") or "failed" in cells:
        return "failed"
    if meta.get("end_time"):
        return "completed"
    return "running" if meta.get("start_time") or "running" in cells else "pending"


def _step_status(step_dir: Path, notebook: str | None, holder: dict | None) -> str:
    """A step without a done marker: running, failed, interrupted, pending or incomplete (see RunData.steps)."""
    try:
        started = (step_dir / "inputs.json").stat().st_mtime
    except OSError:
        started = None
    if holder is not None and started is not None and started >= float(holder.get("started_at", 0)) - 1:
        return "failed" if notebook == "failed" else "running"
    if notebook == "failed":
        return "failed"
    if notebook in ("running", "completed") or started is not None:
        return "interrupted"
    return "pending" if not step_dir.exists() else "incomplete"


@pn.cache(max_items=256)
def _notebook_meta(path: str, mtime: str) -> dict:
    """papermill's metadata of an executed notebook (start_time, end_time, duration) and its
    :func:`notebook_status`."""
    if not mtime:
        return {}
    try:
        nb = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {"status": "unreadable"}
    return {**nb.get("metadata", {}).get("papermill", {}), "status": notebook_status(nb)}


@pn.cache(max_items=64)
def _load_parquet(path: str, mtime: str) -> pd.DataFrame:
    return pd.read_parquet(path) if mtime else pd.DataFrame()


@pn.cache(max_items=32)
def _load_npz(path: str, mtime: str) -> dict:
    if not mtime:
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


_HISTORY_COLUMNS = ["key", "speaker", "audio", "visual", "consensus"]  # what label_history and the Sankey read


def _read_columns(path: str, mtime: str, columns: list[str]) -> pd.DataFrame:
    """Those columns of a Parquet file that it has, uncached (an N-row round read once for an aggregate)."""
    if not mtime:
        return pd.DataFrame()
    names = pq.read_schema(path).names
    return pd.read_parquet(path, columns=[c for c in columns if c in names])


def _by_round(files: str, columns: list[str]) -> dict[int, pd.DataFrame]:
    """``files``: JSON list of (labels.parquet path, mtime); ``{round: those columns}``."""
    by_round = {}
    for path, mtime in json.loads(files):
        found = _ROUND.search(str(Path(path).parent))
        assert found is not None  # (the paths are <strategy>/round_<r>/labels.parquet)
        by_round[int(found.group(1))] = _read_columns(path, mtime, columns)
    return by_round


@pn.cache(max_items=8)
def _history(files: str) -> pd.DataFrame:
    """``files``: JSON list of (labels.parquet path, mtime), one per round, in round order. The rounds are
    read (their five columns) one history at a time and not kept: the history is what is cached."""
    return F.label_history(_by_round(files, _HISTORY_COLUMNS))


@pn.cache(max_items=32)
def _transitions(files: str, mode: str, title: str):
    """:func:`cometa.results.figures.label_transitions` of a strategy's rounds (the figure is what is cached)."""
    return F.label_transitions(_by_round(files, _HISTORY_COLUMNS), mode=mode, title=title)


@pn.cache(max_items=64)
def _points(projection: str, projection_mtime: str, labels: str, labels_mtime: str, view: str,
            label_column: str, max_points: int | None = None) -> pd.DataFrame:
    """:func:`_view_points` thinned to ``max_points`` (:func:`cometa.results.figures.thin_points`), cached."""
    return F.thin_points(_view_points(projection, projection_mtime, labels, labels_mtime, view, label_column),
                         max_points)


def _view_points(projection: str, projection_mtime: str, labels: str, labels_mtime: str, view: str,
                 label_column: str) -> pd.DataFrame:
    """:func:`cometa.results.figures.projection_frame` of one round and view (empty when a file is missing).

    A projection written with its points' labels (the pipeline's, :func:`cometa.core.projections.projection_labels`)
    is read alone: a slider move reads its 50,000 points a view, not the round's N-row labels table. An
    older run's projection is joined with ``labels.parquet`` as before."""
    if not projection_mtime:
        return pd.DataFrame()
    carried = ["speaker", label_column, f"correct_{label_column}"]
    names = pq.read_schema(projection).names
    if set(carried) <= set(names):  # the view's rows and the columns shown, nothing else
        proj = pq.read_table(projection, columns=[c for c in ("key", "x", "y", "n_total", "view", *carried)
                                                  if c in names],
                             filters=[("view", "=", view)] if "view" in names else None).to_pandas()
        return F.projection_frame(proj, None, view=view, label_column=label_column)
    proj = _load_parquet(projection, projection_mtime)
    if proj.empty:
        return pd.DataFrame()
    lab = _load_parquet(labels, labels_mtime)
    if lab.empty:
        return pd.DataFrame()
    return F.projection_frame(proj, lab, view=view, label_column=label_column)


_ROUND = re.compile(r"round_(\d+)$")


def _when(value) -> str | None:
    """A done marker's epoch seconds or papermill's ISO time as ``YYYY-mm-dd HH:MM:SS`` (UTC)."""
    if value is None or value == "":
        return None
    try:
        t = pd.Timestamp(value, unit="s", tz="UTC") if isinstance(value, (int, float)) else pd.Timestamp(value)
    except (ValueError, TypeError):
        return str(value)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")  # papermill writes UTC, no zone
    return t.strftime("%Y-%m-%d %H:%M:%S")


class RunData(param.Parameterized):
    """Read-only access to one or more run directories, cached per (run id, strategy, round)."""

    run_dirs = param.List(default=[], item_type=str, doc="the run directories shown")

    def __init__(self, run_dirs: list[str], **params):
        dirs = [str(Path(d).resolve()) for d in run_dirs]
        missing = [d for d in dirs if not (Path(d) / "store.sqlite").exists() and not study_runs(d)]
        if missing:
            raise FileNotFoundError(f"not run directories (no store.sqlite) nor studies (study.json with seed "
                                    f"runs): {', '.join(missing)}")
        super().__init__(run_dirs=dirs, **params)
        self._paths: dict[str, Path] = {}
        self._seeds: dict[str, list[Path]] = {}  # study (or cell) id -> its seed runs
        self._studies: dict[str, Path] = {}  # grid study id -> its directory
        self._cells: dict[str, tuple[str, dict]] = {}  # cell id -> (grid study id, the cell of its study.json)
        grids = [Path(d) for d in dirs if grid_study(d) is not None]
        for g in grids:
            self._add_grid(g)
        for d in dirs:
            p = Path(d)
            if p in grids or any(p.is_relative_to(g) for g in grids):  # a grid's runs: reached through its cells
                continue
            rid = self._free_id(p.name, p.parent.name)
            self._paths[rid] = p
            if not (p / "store.sqlite").exists():
                self._seeds[rid] = study_runs(p)

    def _free_id(self, name: str, parent: str) -> str:
        return name if name not in self._paths else f"{parent}/{name}"

    def _add_grid(self, study_dir: Path) -> None:
        """Each cell of a grid study with a started run becomes a study of its seeds (id: the cell's name)."""
        study = grid_study(study_dir) or {}
        sid = study_dir.name if study_dir.name not in self._studies else str(study_dir)
        self._studies[sid] = study_dir
        for cell in study.get("cells") or []:
            seeds = [study_dir / r for r in cell.get("runs") or [] if (study_dir / r / "store.sqlite").exists()]
            if seeds:
                rid = self._free_id(str(cell["name"]), sid)
                self._paths[rid], self._seeds[rid], self._cells[rid] = study_dir / cell["name"], seeds, (sid, cell)
        if not any(c[0] == sid for c in self._cells.values()):
            raise FileNotFoundError(f"{study_dir}: a grid study none of whose runs has started yet")

    # -------------------------------------------------------------------------------- the run
    @property
    def run_ids(self) -> list[str]:
        return list(self._paths)

    def is_study(self, run_id: str) -> bool:
        """A study (several seeds): its scalars hold every seed (a ``seed`` column), the EER and
        purity figures show mean ± std, and its per-round files are those of its first seed."""
        return run_id in self._seeds

    # ------------------------------------------------------------------------------ grid studies
    @property
    def studies(self) -> list[str]:
        """The grid studies shown (``cometa study``), by id (the directory's name)."""
        return list(self._studies)

    def study_dir(self, study_id: str) -> Path:
        return self._studies[study_id]

    def cells(self, study_id: str) -> list[str]:
        """The ids of a grid study's cells that have a started run, in the study's order."""
        return [rid for rid, (sid, _) in self._cells.items() if sid == study_id]

    def cell(self, run_id: str) -> dict | None:
        """The cell (``name``, ``variant``, ``values``, ``overrides``, ``runs``) an id stands for; None for a run."""
        found = self._cells.get(run_id)
        return found[1] if found else None

    def study_tables(self, study_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(``study_table``, ``round_table``) of a grid study, as its report computes them (cached)."""
        stores = [self.study_dir(study_id) / "study.json", *sorted(self.study_dir(study_id).glob("*/*/store.sqlite"))]
        return _study_tables(str(self.study_dir(study_id)), ",".join(_mtime(p) for p in stores))

    def seed_runs(self, run_id: str) -> list[Path]:
        return list(self._seeds.get(run_id, []))

    def path(self, run_id: str) -> Path:
        """The directory whose files are shown: the run, or a study's first seed run."""
        return self._seeds[run_id][0] if run_id in self._seeds else self._paths[run_id]

    def directory(self, run_id: str) -> Path:
        """The run's (or the study's own) directory."""
        return self._paths[run_id]

    def scalars(self, run_id: str) -> pd.DataFrame:
        if run_id in self._seeds:
            parts = []
            for run in self._seeds[run_id]:
                seed = self._config_of(run).get("seed")
                parts.append(_load_scalars(str(run), _mtime(run / "store.sqlite")).assign(seed=seed))
            return pd.concat(parts, ignore_index=True)
        db = self.path(run_id) / "store.sqlite"
        return _load_scalars(str(self.path(run_id)), _mtime(db))

    @staticmethod
    def _config_of(run: Path) -> dict:
        p = run / "config.yaml"
        return _load_yaml(str(p), _mtime(p))

    def config(self, run_id: str) -> dict:
        cfg = self._config_of(self.path(run_id))
        if run_id in self._seeds:
            cfg = {**cfg, "seed": [self._config_of(r).get("seed") for r in self._seeds[run_id]]}
        return cfg

    def strategies(self, run_id: str) -> list[str]:
        """Strategies with scalars, else those the config plans."""
        found = strategies_of(self.scalars(run_id))
        planned = (self.config(run_id).get("stage2") or {}).get("strategies") or []
        return found + [s for s in planned if s not in found]

    def rounds(self, run_id: str, strategy: str | None = None) -> list[int]:
        """Rounds with a round directory holding labels (any strategy when ``strategy`` is None)."""
        run = self.path(run_id)
        out = set()
        for s in [strategy] if strategy else self.strategies(run_id):
            for d in (run / s).glob("round_*"):
                m = _ROUND.search(d.name)
                if m and (d / "labels.parquet").exists():
                    out.add(int(m.group(1)))
        return sorted(out)

    def planned_rounds(self, run_id: str) -> int:
        return int((self.config(run_id).get("stage2") or {}).get("rounds") or 0)

    # ------------------------------------------------------------------------ per-round files
    def _file(self, run_id: str, strategy: str, round_: int, name: str) -> tuple[str, str]:
        p = self.path(run_id) / strategy / f"round_{int(round_)}" / name
        return str(p), _mtime(p)

    def labels(self, run_id: str, strategy: str, round_: int) -> pd.DataFrame:
        return _load_parquet(*self._file(run_id, strategy, round_, "labels.parquet"))

    def label_issues(self, run_id: str, strategy: str, round_: int) -> pd.DataFrame:
        """The round's label-issue scores (``label_issues.parquet``; empty before the analysis step)."""
        return _load_parquet(*self._file(run_id, strategy, round_, "label_issues.parquet"))

    def projection(self, run_id: str, strategy: str, round_: int) -> pd.DataFrame:
        return _load_parquet(*self._file(run_id, strategy, round_, "projection.parquet"))

    def scores(self, run_id: str, strategy: str, round_: int) -> dict[str, np.ndarray]:
        return _load_npz(*self._file(run_id, strategy, round_, "scores.npz"))

    def points(self, run_id: str, strategy: str, round_: int, *, view: str = "joint",
               label_column: str = "consensus", max_points: int | None = None) -> pd.DataFrame:
        """One view of a round's projection joined with its labels (key, x, y, speaker, label, correct);
        ``max_points``: at most that many, every step-th in key order (the same utterances every round)."""
        return _points(*self._file(run_id, strategy, round_, "projection.parquet"),
                       *self._file(run_id, strategy, round_, "labels.parquet"), view, label_column, max_points)

    def labels_by_round(self, run_id: str, strategy: str) -> dict[int, pd.DataFrame]:
        return {r: self.labels(run_id, strategy, r) for r in self.rounds(run_id, strategy)}

    def history(self, run_id: str, strategy: str) -> pd.DataFrame:
        """:func:`cometa.results.figures.label_history` of every round of one strategy (cached)."""
        files = [self._file(run_id, strategy, r, "labels.parquet") for r in self.rounds(run_id, strategy)]
        return _history(json.dumps(files))

    def transitions(self, run_id: str, strategy: str, *, mode: str = "purity", title: str | None = None):
        """:func:`cometa.results.figures.label_transitions` of every round of one strategy (the figure, cached)."""
        files = [self._file(run_id, strategy, r, "labels.parquet") for r in self.rounds(run_id, strategy)]
        return F.go.Figure(_transitions(json.dumps(files), mode, title or ""))  # a copy: a pane may change it

    # ----------------------------------------------------------------------------- the steps
    def steps(self, run_id: str) -> pd.DataFrame:
        """One row per pipeline step: status, started, finished (UTC), seconds, notebook (relative path).

        Status: ``done`` (done.json present); ``running`` while a live ``cometa run`` holds the run
        directory (its lock, :func:`cometa.runs.lock_holder`) and the step started under it (its
        ``inputs.json`` written since); ``failed`` when papermill's record of the executed notebook
        says so; ``interrupted`` when the step started but no live run is finishing it (killed: its
        notebook's record stops at ``running``, or at ``completed`` without a done marker);
        ``pending`` for rounds the config plans but nothing exists yet (``incomplete``: a folder
        without a record). The projections step may sit at the run's top level (one step for every
        strategy) or per strategy (older runs).
        """
        run = self.path(run_id)
        holder = lock_holder(run)  # the live run writing this directory, if any
        dirs = [run / "corpus", run / "stage1"]
        for s in self.strategies(run_id):
            rounds = sorted({*range(1, self.planned_rounds(run_id) + 1),
                             *(int(m.group(1)) for d in (run / s).glob("round_*") if (m := _ROUND.search(d.name)))})
            dirs += [run / s / f"round_{r}" for r in rounds] + [run / s / "projections"]
        dirs += [run / "projections", run / "report"]
        rows = []
        for d in dirs:
            done_p = d / "done.json"
            done = _load_json(str(done_p), _mtime(done_p))
            nbs = sorted(d.glob("*.ipynb")) if d.is_dir() else []
            meta = _notebook_meta(str(nbs[0]), _mtime(nbs[0])) if nbs else {}
            if not done and not nbs and d.name in ("projections", "report"):
                continue  # optional steps that this run does not have (yet)
            status = "done" if done else _step_status(d, meta.get("status"), holder)
            seconds = done.get("seconds", meta.get("duration"))
            rows.append({"step": str(d.relative_to(run)), "status": status,
                         "started": _when(done.get("started_at") or meta.get("start_time")),
                         "finished": _when(done.get("finished_at") or meta.get("end_time")),
                         "seconds": None if seconds is None else float(seconds),
                         "notebook": str(nbs[0].relative_to(run)) if nbs else None})
        return pd.DataFrame(rows, columns=["step", "status", "started", "finished", "seconds", "notebook"])

    # ------------------------------------------------------------------------------- media
    def corpus_root(self, run_id: str) -> Path | None:
        """The corpus the run read, as its corpus step recorded it in ``corpus/counts.json``
        (:func:`cometa.runs.recorded_corpus_root`); None before that step has run."""
        return recorded_corpus_root(self.path(run_id))

    def media(self, run_id: str, key: str, *, max_frames: int = 8) -> tuple[Path | None, list[Path]]:
        """The utterance's wav (``train/wav/<key>``) and face frames (``train/faces/<key - .wav>/*.jpg``)."""
        root = self.corpus_root(run_id)
        if root is None:
            return None, []
        wav = root / "train" / "wav" / key
        stem = key[:-4] if key.endswith(".wav") else key
        frames = sorted((root / "train" / "faces" / stem).glob("*.jpg"))[:max_frames]
        return (wav if wav.exists() else None), frames
