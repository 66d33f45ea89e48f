"""The run store: one directory per run, scalars in SQLite, arrays and tables written atomically.

Layout (DESIGN.md)::

    runs/<run_id>/
      config.yaml            resolved config + git SHA (+ runtime: machine-dependent decisions)
      store.sqlite           scalars: run, strategy, stage, round, epoch, step, modality, name, value, time
      stage1/ <strategy>/round_<r>/ ...   arrays (.npz), tables (.parquet), json, done.json markers
      report/

Scalars are rows of one long table. ``strategy`` is NULL for what precedes Stage II (the corpus,
Stage I); ``round`` is 0 there. ``stage`` is one of ``stage1``, ``labels``, ``train``,
``eval/<list>`` (``eval/O``), ``projection``. The SQLite file is opened in WAL mode with a busy
timeout, so several processes (DDP ranks, a notebook and the dashboard) can write and read at once.

Every file is written to a temporary name in the same folder and then renamed, so a reader never
sees half a file; a step is complete only when its ``done.json`` exists (``mark_done``).
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

__all__ = ["RunStore", "COLUMNS", "git_sha", "list_runs", "study_runs", "atomic_write", "recorded_corpus_root",
           "RUN_FORMAT", "RunFormatError", "RunLockedError", "LOCK_FILE", "run_lock", "lock_holder", "fault_point",
           "is_temporary", "remove_temporaries", "done_hash", "grid_study"]

# The version of the run directory's layout and its store's schema, kept in the store (SQLite's
# ``user_version``). Bump it when a run written by one cometa can no longer be read or resumed by
# another; a store without one (0) predates the number and has the layout of format 1.
RUN_FORMAT = 1
LOCK_FILE = ".cometa.lock"  # held (flock) by the live run that writes the directory


class RunFormatError(RuntimeError):
    """The run directory was written by an incompatible version of the run format."""


class RunLockedError(RuntimeError):
    """Another live run holds the run directory."""

COLUMNS = ("run", "strategy", "stage", "round", "epoch", "step", "modality", "name", "value", "time")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scalars (
    run TEXT NOT NULL, strategy TEXT, stage TEXT NOT NULL, round INTEGER NOT NULL DEFAULT 0,
    epoch INTEGER, step INTEGER, modality TEXT, name TEXT NOT NULL, value REAL, time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS scalars_by_stage ON scalars (stage, strategy, round, name);
"""
_KEYS = frozenset(COLUMNS) - {"run", "time"}


def fault_point(where: str) -> None:
    """A place where a crash hurts most (a file written but not yet renamed, rows inserted but not yet
    committed), for the kill campaign (``tools/kill_campaign.py``). With ``COMETA_FAULT=<regex>:<n>``
    in the environment, the n-th time this process reaches a point whose ``where`` matches the regex
    it writes ``where`` to the file ``COMETA_FAULT_MARK`` and stops there, for the campaign to SIGKILL
    the whole process tree. Without ``COMETA_FAULT`` (always, outside the campaign) it does nothing."""
    spec = os.environ.get("COMETA_FAULT")
    if not spec:
        return
    pattern, _, n = spec.rpartition(":")
    if not re.search(pattern, where):
        return
    _FAULT_HITS[pattern] = _FAULT_HITS.get(pattern, 0) + 1
    if _FAULT_HITS[pattern] == int(n):
        Path(os.environ["COMETA_FAULT_MARK"]).write_text(where)
        while True:  # frozen mid-write until the campaign kills the tree
            time.sleep(60)


_FAULT_HITS: dict[str, int] = {}


def is_temporary(path: str | Path) -> bool:
    """A temporary file of an atomic write (:func:`atomic_write`, checkpoints, progress, the report's
    tables): never read, renamed onto its target when complete; left behind only by a killed writer."""
    name = Path(path).name
    return ".tmp-" in name or name.endswith(".tmp")


def remove_temporaries(run_dir: str | Path) -> list[Path]:
    """Remove what killed writers left in ``run_dir`` (:func:`is_temporary`); call it only while
    holding the run directory (:func:`run_lock`), when no writer is alive. Returns what was removed."""
    removed = []
    for p in sorted(Path(run_dir).rglob("*")):
        if is_temporary(p) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextmanager
def atomic_write(path: str | Path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        fault_point(f"write:{path}")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def lock_holder(run_dir: str | Path) -> dict | None:
    """Who holds the run directory: the lock file's record (pid, host, started, command) while a live
    process holds its lock, else None (no lock file, or the holder died: the kernel released it)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(path: Path) -> dict:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return {}  # the holder is still writing its record


@contextmanager
def run_lock(run_dir: str | Path, *, wait: float = 2.0):
    """Hold ``run_dir`` for this process while the block runs; :class:`RunLockedError` naming the
    holder when another live process holds it.

    An exclusive ``flock`` on ``run_dir/.cometa.lock``: the kernel releases it when the holder ends,
    however it ends (SIGKILL, OOM, power loss), so a lock left by a crash is never stale; the file
    stays and the next run takes it. The descriptor is not inherited by the run's kernels and
    torchrun workers (``O_CLOEXEC``), which never take the lock themselves. ``wait``: seconds to keep
    trying (a reader's momentary probe, :func:`lock_holder`, is not a run).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            os.close(fd)
            h = _read_holder(path)
            raise RunLockedError(
                f"{run_dir} is in use by a live run (pid {h.get('pid', '?')} on {h.get('host', '?')}, started "
                f"{h.get('started', '?')}: {h.get('command', '?')}). Wait for it to finish, stop it, or give this "
                f"run another --run-dir") from None
    try:
        record = {"pid": os.getpid(), "host": os.uname().nodename, "started_at": time.time(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()),
                  "command": " ".join(["cometa", *sys.argv[1:]])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield path
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def git_sha(cwd: str | Path | None = None) -> str | None:
    """The code version: HEAD's SHA (with ``-dirty`` when the tree has changes), None outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


class RunStore:
    """Reader and writer of one run directory.

    Parameters
    ----------
    run_dir : the run's directory; its name is the run id.
    create : make the directory and the database when missing (else a missing store is an error).
    """

    def __init__(self, run_dir: str | Path, *, create: bool = False):
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        self.db_path = self.run_dir / "store.sqlite"
        if not self.db_path.exists():
            if not create:
                raise FileNotFoundError(f"{self.run_dir}: no store.sqlite (is this a run directory?)")
            self.run_dir.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            version = int(con.execute("PRAGMA user_version").fetchone()[0])
            if version not in (0, RUN_FORMAT):  # checked before anything is written
                raise RunFormatError(
                    f"{self.db_path}: written by run format {version}, this cometa reads format {RUN_FORMAT}. "
                    f"Start a new run directory (--run-dir), or read and resume this one with the cometa that wrote "
                    f"it (its config.yaml names the git_sha)")
            con.executescript(_SCHEMA)
            if version == 0:
                con.execute(f"PRAGMA user_version = {RUN_FORMAT}")

    # ------------------------------------------------------------------------------ scalars
    def _connect(self) -> _Closing:
        con = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout = 60000")
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
        return _Closing(con)

    def log(self, name: str, value: float, **keys: Any) -> None:
        """Write one scalar; ``keys`` among strategy, stage, round, epoch, step, modality."""
        self.log_many([dict(keys, name=name, value=value)])

    def log_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Write many scalars in one transaction; returns how many. Unknown keys are an error."""
        now = time.time()
        records = []
        for row in rows:
            unknown = set(row) - _KEYS
            if unknown:
                raise KeyError(f"unknown scalar column(s) {sorted(unknown)}; columns are {sorted(_KEYS)}")
            if "name" not in row or "stage" not in row:
                raise KeyError(f"a scalar needs 'name' and 'stage': {dict(row)}")
            value = row.get("value")
            records.append((self.run_id, row.get("strategy"), row["stage"], int(row.get("round") or 0),
                            _int_or_none(row.get("epoch")), _int_or_none(row.get("step")), row.get("modality"),
                            row["name"], None if value is None else float(value), now))
        return self._insert(records)

    def _insert(self, records: list[tuple]) -> int:
        """Append rows (tuples in :data:`COLUMNS` order) in one transaction; returns how many."""
        if not records:
            return 0
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            con.executemany(f"INSERT INTO scalars ({', '.join(COLUMNS)}) VALUES (?,?,?,?,?,?,?,?,?,?)", records)
            fault_point(f"sqlite:{self.db_path}")
            con.execute("COMMIT")
        return len(records)

    def scalars(self, **filters: Any) -> pd.DataFrame:
        """Scalars matching every filter (column=value; None matches NULL; a list matches any).

        Returns a DataFrame with the columns of :data:`COLUMNS`, in insertion order.
        """
        where, params = _where(filters)
        with self._connect() as con:
            df = pd.read_sql_query(f"SELECT {', '.join(COLUMNS)} FROM scalars{where} ORDER BY rowid", con,
                                   params=params)
        for col in ("strategy", "modality"):
            df[col] = df[col].astype(object).where(df[col].notna(), None)
        return df

    def copy_scalars(self, source: RunStore, *, strategy_as: str | None = None, **filters: Any) -> int:
        """Copy the scalars of ``source`` that match ``filters`` (as in :meth:`scalars`) into this store,
        keeping their times; ``run`` becomes this run's id and, with ``strategy_as``, ``strategy``
        becomes that name. Returns how many rows were copied."""
        df = source.scalars(**filters)
        if strategy_as is not None:
            df["strategy"] = strategy_as
        return self.insert_scalars(df)

    def insert_scalars(self, df: pd.DataFrame) -> int:
        """Insert rows as :meth:`scalars` returns them (another run's), keeping their times; ``run``
        becomes this run's id. Returns how many rows were inserted."""
        records = [(self.run_id, r.strategy, r.stage, int(r.round), _int_or_none(r.epoch), _int_or_none(r.step),
                    r.modality, r.name, None if r.value is None or math.isnan(r.value) else float(r.value),
                    float(r.time)) for r in df.itertuples(index=False)]
        return self._insert(records)

    def delete_scalars(self, *, strategy: str | None, stage: str | list[str], round: int | None = None,
                       min_epoch: int | None = None, name: str | list[str] | None = None) -> int:
        """Remove a step's scalars before it (re)writes them, so a rerun never duplicates rows.

        ``strategy=None`` means the rows without a strategy (Stage I); ``min_epoch`` keeps the
        epochs before it (a resumed step keeps what its completed epochs logged); ``name`` limits
        the deletion to those scalar names.
        """
        filters: dict[str, Any] = {"strategy": strategy, "stage": stage}
        if round is not None:
            filters["round"] = round
        if name is not None:
            filters["name"] = name
        where, params = _where(filters)
        if min_epoch is not None:
            where += " AND (epoch IS NULL OR epoch >= ?)"
            params.append(int(min_epoch))
        with self._connect() as con:
            return con.execute(f"DELETE FROM scalars{where}", params).rowcount

    # ------------------------------------------------------------------------------ files
    def path(self, relpath: str | Path) -> Path:
        """Absolute path of a file of this run (relative paths may not leave the run directory)."""
        p = Path(relpath)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"{relpath}: run-store paths are relative to the run directory")
        return self.run_dir / p

    def save_array(self, relpath: str | Path, **arrays: np.ndarray) -> Path:
        """Write named arrays to ``relpath`` (.npz, uncompressed), atomically."""
        target = self.path(relpath)
        with atomic_write(target) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **{k: _plain(v) for k, v in arrays.items()})  # type: ignore[arg-type]  # (numpy's stub)
        return target

    def load_arrays(self, relpath: str | Path, *, finite: bool = False) -> dict[str, np.ndarray]:
        """Every array of an ``.npz`` file; a file that is not one raises an error naming it. With
        ``finite`` (embeddings), a NaN or infinity in a float array raises an error naming the file,
        the array and the first row holding one."""
        path = self.path(relpath)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f"{path}: not a readable .npz array file ({e}); delete it and rerun the step "
                             "that writes it") from None
        for name, a in arrays.items() if finite else ():
            bad = ~np.isfinite(a) if a.dtype.kind == "f" else None
            if bad is not None and bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise ValueError(f"{path}: array '{name}' holds {int(bad.sum())} NaN or infinite value(s), the "
                                 f"first in row {row}; delete the file and rerun the step that writes it")
        return arrays

    def save_table(self, relpath: str | Path, df: pd.DataFrame) -> Path:
        """Write a DataFrame as Parquet, atomically."""
        target = self.path(relpath)
        with atomic_write(target) as tmp:
            df.to_parquet(tmp, index=False)
        return target

    def load_table(self, relpath: str | Path) -> pd.DataFrame:
        return pd.read_parquet(self.path(relpath))

    def save_json(self, relpath: str | Path, obj: Any) -> Path:
        target = self.path(relpath)
        with atomic_write(target) as tmp:
            tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default))
        return target

    def load_json(self, relpath: str | Path) -> Any:
        return json.loads(self.path(relpath).read_text())

    def write_config(self, config: Mapping[str, Any], *, runtime: Mapping[str, Any] | None = None) -> Path:
        """The resolved config and the code version (``git_sha``) as ``config.yaml``; ``runtime``
        (what the run decided about the machine, e.g. ``OPENBLAS_CORETYPE``) goes under ``runtime``."""
        data = dict(config)
        data["git_sha"] = git_sha()
        if runtime is not None:
            data["runtime"] = dict(runtime)
        target = self.run_dir / "config.yaml"
        with atomic_write(target) as tmp:
            tmp.write_text(yaml.safe_dump(data, sort_keys=False))
        return target

    def config(self) -> dict:
        return yaml.safe_load((self.run_dir / "config.yaml").read_text())

    # ------------------------------------------------------------------------------ steps
    def mark_done(self, step_dir: str | Path, *, inputs_hash: str, **info: Any) -> None:
        """Record that a step completed with these inputs (``done.json``: hash, seconds, ...)."""
        step_dir = Path(step_dir)
        rel = step_dir.relative_to(self.run_dir) if step_dir.is_absolute() else step_dir
        self.save_json(Path(rel) / "done.json", {"inputs_hash": inputs_hash, "finished_at": time.time(), **info})

    def is_done(self, step_dir: str | Path, *, inputs_hash: str) -> bool:
        """True when the step's done-marker exists and records the same input hash."""
        step_dir = Path(step_dir)
        return done_hash(step_dir if step_dir.is_absolute() else self.run_dir / step_dir) == inputs_hash


def done_hash(step_dir: str | Path) -> str | None:
    """The input hash a finished step recorded in its ``done.json``; None when it has none (not finished)."""
    try:
        return json.loads((Path(step_dir) / "done.json").read_text())["inputs_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _Closing:
    """sqlite3.Connection as a context manager that closes (the stdlib one only commits)."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def __enter__(self) -> sqlite3.Connection:
        return self.con

    def __exit__(self, *exc) -> None:
        if exc[0] is not None and self.con.in_transaction:
            self.con.execute("ROLLBACK")
        self.con.close()


def _where(filters: Mapping[str, Any]) -> tuple[str, list]:
    clauses, params = [], []
    for col, value in filters.items():
        if col not in COLUMNS:
            raise KeyError(f"unknown scalar column {col!r}; columns are {list(COLUMNS)}")
        if value is None:
            clauses.append(f"{col} IS NULL")
        elif isinstance(value, (list, tuple, set)):
            value = list(value)
            clauses.append(f"{col} IN ({', '.join('?' * len(value))})")
            params += value
        else:
            clauses.append(f"{col} = ?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _plain(v: Any) -> np.ndarray:
    """Arrays loadable without pickle: strings (pandas' object/str columns) become unicode arrays."""
    a = np.asarray(v)
    if a.dtype == object:
        a = a.astype(str)
    return a


def _int_or_none(x: Any) -> int | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else int(x)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def study_runs(study_dir: str | Path) -> list[Path]:
    """The seed runs of a study directory (``study.json`` + ``seed_<s>/``), in the order of its seeds;
    [] when ``study_dir`` is not a study or none of its runs has started."""
    study_dir = Path(study_dir)
    try:
        names = json.loads((study_dir / "study.json").read_text())["runs"]
    except (OSError, ValueError, KeyError):
        return []
    return [study_dir / n for n in names if (study_dir / n / "store.sqlite").exists()]


def list_runs(root: str | Path) -> list[Path]:
    """Run directories under ``root``: itself, or its children holding a store.sqlite. A study
    directory (several seeds, see :func:`study_runs`) is listed itself, followed by its seed runs."""
    root = Path(root)
    if (root / "store.sqlite").exists():
        return [root]
    if study_runs(root):
        return [root, *study_runs(root)]
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir()):
        out += [p] if (p / "store.sqlite").exists() else ([p, *study_runs(p)] if study_runs(p) else [])
    return out


def recorded_corpus_root(run_dir: str | Path) -> Path | None:
    """The corpus a run read: the ``root`` of its ``corpus/counts.json`` (written by the corpus step),
    else ``corpus.root`` of its ``config.yaml``; None while neither is known (the corpus step has not
    run yet and the config leaves the root to the embedded corpus's cache). A counts file that is not
    valid JSON, or has no root, raises ValueError naming it."""
    run_dir = Path(run_dir)
    counts = run_dir / "corpus" / "counts.json"
    if counts.exists():
        try:
            return Path(json.loads(counts.read_text())["root"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{counts}: no corpus root in it ({type(e).__name__}: {e})") from None
    config = run_dir / "config.yaml"
    root = ((yaml.safe_load(config.read_text()) or {}).get("corpus") or {}).get("root") if config.exists() else None
    return Path(root).expanduser() if root else None



def grid_study(study_dir: str | Path) -> dict | None:
    """The ``study.json`` of a grid study (``cometa study``: ``"kind": "grid"``, cells of seed runs);
    None for anything else, a seed study (``cometa run --seeds``) included. A grid study's
    :func:`study_runs` are the runs of every cell, so it must never be read as the seeds of one study."""
    try:
        study = json.loads((Path(study_dir) / "study.json").read_text())
    except (OSError, ValueError):
        return None
    return study if isinstance(study, dict) and study.get("kind") == "grid" else None
