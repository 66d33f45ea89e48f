"""Kill campaign: SIGKILL the tiny pipeline's whole process tree at random moments, rerun after each
kill, and check that the run ends exactly where an uninterrupted run ends.

    python tools/kill_campaign.py --out /tmp/campaign --kills 30 [--chains 3] [--seed 0] [--set key=value ...]
    python tools/kill_campaign.py --out /tmp/campaign --kills 12 --study reports/studies/SPEC.yaml

With ``--study`` the command killed is ``cometa study SPEC`` (without its report), the reference is an
uninterrupted study, and every run of the study is compared.

1. A reference run: ``cometa run --preset tiny`` into ``OUT/reference`` (its own fresh corpus cache,
   so the corpus is built too), timed step by step (``done.json``).
2. ``--chains`` chains, each in a fresh run directory and corpus cache: the same command is started
   again and again, and each start is killed (the orchestrator, its papermill kernels, their
   workers, the corpus builder's pool, Chromium: every process of the tree, SIGKILL) at one of:
   - a random moment of a step (a step still to finish, drawn at random, and a random fraction of
     its reference duration after it starts; the first kill of a chain falls in the corpus build);
   - a write frozen at its critical moment (:func:`cometa.runs.fault_point`: a checkpoint, npz,
     parquet, progress or done-marker file written but not renamed, SQLite rows inserted but not
     committed, the corpus generated but not renamed into place), the n-th such write of a process.
   After its kills the chain runs to the end, and its run directory is compared with the reference
   (:func:`compare_runs`): every scalar except wall-clock timings to 1e-9, no duplicate rows, label
   tables exactly, every array, checkpoint, projection and JSON record to 1e-9, the same files,
   no temporary file left in the run directory or a partial corpus in its cache.
3. The figure: kills survived / kills tried (a kill counts as survived when every rerun after it
   succeeded and its chain ended equal to the reference). ``OUT/campaign.json`` has every kill.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cometa.runs import LOCK_FILE, is_temporary  # noqa: E402  (after the checkout is on sys.path)

TIMING_NAMES = ("epoch_seconds", "projection_seconds")  # wall-clock scalars: not compared
# in JSON records: wall-clock times, the corpus cache's path and the run id (the directory's name)
# (``step_seconds``: Table 6's wall-clock seconds per training step, in report/tables.json)
# and where and how a step ran (``worker``, ``host``, its kernel's ``cpu_seconds``; a study's copy of a
# shared step: ``linked_at``)
TIMING_KEYS = {"seconds", "started_at", "finished_at", "build_seconds", "time", "root", "run", "step_seconds",
               "worker", "host", "linked_at", "cpu_seconds"}
KEY_COLUMNS = ["strategy", "stage", "round", "epoch", "step", "modality", "name"]
# the writes a fault kill freezes (regex on fault_point's ``where``) and the largest n drawn for each
FAULTS = {"checkpoint": (r"^write:.*\.pt$", 3), "npz": (r"^write:.*\.npz$", 3),
          "parquet": (r"^write:.*\.parquet$", 2), "projection": (r"^write:.*projection\.parquet$", 4),
          "progress": (r"^write:.*progress\.json$", 2),
          "done-marker": (r"^write:.*done\.json$", 2), "sqlite": (r"^sqlite:", 12),
          "corpus": (r"^write:.*synthetic-", 1)}
# the steps that make each kind of write (a fault kill is drawn only among kinds a remaining step makes)
FAULT_STEPS = {"checkpoint": ("stage1", "/round_"), "npz": ("stage1", "/round_"),
               "parquet": ("/round_", "projections"), "projection": ("projections",),
               "progress": ("stage1", "/round_"), "sqlite": ("stage1", "/round_", "projections"),
               "done-marker": ("",), "corpus": ("corpus",)}
# records of a step (times, paths inside): exist only; table6.md prints wall-clock seconds per step (its
# numbers are compared through report/tables.json, without them)
# provenance.json: the machine and the times of each session (a resumed run has one session per start)
NOT_COMPARED = (".ipynb", ".svg", ".pdf", ".png", ".html", "table6.md", "provenance.json")


# ------------------------------------------------------------------------------------- processes
def launch(cmd: Sequence[str], *, cache: Path | None, log: Path, fault: str | None = None,
           mark: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own session, with its corpus cache (None: this process's) and (for a fault
    kill) COMETA_FAULT."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if cache is not None:
        env["COMETA_CACHE"] = str(cache)
    env.pop("COMETA_FAULT", None)
    if fault is not None and mark is not None:
        env.update(COMETA_FAULT=fault, COMETA_FAULT_MARK=str(mark))
    with open(log, "a") as f:
        return subprocess.Popen(list(cmd), env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def kill_tree(proc: subprocess.Popen) -> int:
    """SIGKILL ``proc`` and every descendant (the kernels run in sessions of their own, so a process
    group is not enough); returns how many processes were killed."""
    killed: set[int] = set()
    for _ in range(3):  # a process may spawn a child while we walk the tree
        try:
            root = psutil.Process(proc.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        tree += [p for p in _orphans(proc.pid, killed)]
        for p in tree:
            try:
                p.kill()
                killed.add(p.pid)
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    proc.wait()
    psutil.wait_procs([p for p in map(_process, killed) if p is not None], timeout=10)
    return len(killed)


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _orphans(root_pid: int, killed: set[int]) -> list[psutil.Process]:
    """Descendants of already-killed processes that were re-parented before we saw them."""
    out = []
    for p in psutil.process_iter(["pid", "environ"]):
        try:
            env = p.info.get("environ") or {}
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        if env.get("JPY_PARENT_PID") and int(env["JPY_PARENT_PID"]) in killed | {root_pid}:
            out.append(p)
    return out


def _wait(proc: subprocess.Popen, until: Callable[[], bool], timeout: float) -> bool:
    """Poll until ``until()`` (True) or the process ends (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if until():
            return True
        if proc.poll() is not None:
            return until()
        time.sleep(0.02)
    raise TimeoutError(f"nothing happened in {timeout:.0f} s")


# ------------------------------------------------------------------------------------- steps
def step_records(run_dir: Path) -> dict[str, dict]:
    """Each finished step's ``done.json`` (its directory relative to ``run_dir`` -> record with ``seconds``),
    from a run directory (``stage1``, ``baseline/round_2``: the step names) or a study directory
    (``tau=0.1/seed_0/stage1``). A study's copies of shared steps are left out: they are not computed, so
    there is no moment in them to kill."""
    out = {}
    for done in sorted(run_dir.rglob("done.json")):
        rec = json.loads(done.read_text())
        if rec.get("shared_from"):
            continue
        rel = str(done.parent.relative_to(run_dir))
        out[rel] = dict(rec, dir=rel)
    return out


def started_since(run_dir: Path, rel: str, t0: float) -> bool:
    """Has the step in ``run_dir/rel`` started since ``t0`` (its ``inputs.json`` written by this start)?"""
    try:
        return (run_dir / rel / "inputs.json").stat().st_mtime >= t0
    except OSError:
        return False


def running_steps(run_dir: Path, steps: dict[str, dict], t0: float) -> list[str]:
    """The steps started since ``t0`` and not finished: where a kill landed."""
    return [s for s, rec in steps.items() if started_since(run_dir, rec["dir"], t0)
            and not _done_since(run_dir / rec["dir"], t0)]


def _done_since(d: Path, t0: float) -> bool:
    try:
        return (d / "done.json").stat().st_mtime >= t0
    except OSError:
        return False


# ------------------------------------------------------------------------------------- kills
def moment_kill(cmd: Sequence[str], run_dir: Path, *, cache: Path | None, log: Path, steps: dict[str, dict],
                target: str,
                fraction: float, timeout: float) -> dict[str, Any]:
    """Start the run; ``fraction`` of the target step's reference duration after it starts, kill the tree."""
    t0 = time.time()
    proc = launch(cmd, cache=cache, log=log)
    rel = steps[target]["dir"]
    if not _wait(proc, lambda: started_since(run_dir, rel, t0), timeout):
        return {"ended": proc.returncode}
    delay = fraction * float(steps[target]["seconds"])
    if not _wait(proc, lambda: _slept(run_dir / rel, delay), timeout):
        return {"ended": proc.returncode}
    where = running_steps(run_dir, steps, t0)
    return {"killed": kill_tree(proc), "where": where, "after_s": round(time.time() - t0, 2)}


def _slept(step_dir: Path, delay: float) -> bool:
    """``delay`` seconds have passed since the step started (its inputs.json was written)."""
    try:
        return time.time() >= (step_dir / "inputs.json").stat().st_mtime + delay
    except OSError:
        return True


def fault_kill(cmd: Sequence[str], run_dir: Path, *, cache: Path | None, log: Path, steps: dict[str, dict], kind: str,
               n: int, timeout: float) -> dict[str, Any]:
    """Start the run with a write frozen at its critical moment (the n-th of ``kind`` in a process); kill the tree."""
    mark = run_dir.parent / f".{run_dir.name}.fault"
    mark.unlink(missing_ok=True)
    t0 = time.time()
    proc = launch(cmd, cache=cache, log=log, fault=f"{FAULTS[kind][0]}:{n}", mark=mark)
    if not _wait(proc, mark.exists, timeout):
        return {"ended": proc.returncode}
    time.sleep(0.05)  # the mark is written: the writer sleeps at its point
    where = running_steps(run_dir, steps, t0)
    info = {"killed": kill_tree(proc), "where": where, "fault": mark.read_text(), "after_s": round(time.time() - t0, 2)}
    mark.unlink()
    return info


# ------------------------------------------------------------------------------------- comparison
def store_rows(run_dir: Path) -> pd.DataFrame:
    """Every scalar of the run but the wall-clock ones, sorted by key and value (``time`` dropped)."""
    con = sqlite3.connect(f"file:{run_dir / 'store.sqlite'}?mode=ro", uri=True)
    try:
        df = pd.read_sql_query("SELECT * FROM scalars", con)
    finally:
        con.close()
    df = df[~df["name"].isin(TIMING_NAMES)].drop(columns=["time", "run"])
    return df.sort_values([*KEY_COLUMNS, "value"], na_position="first", kind="stable").reset_index(drop=True)


def _compare_store(ref: Path, run: Path, diffs: list[str]) -> None:
    a, b = store_rows(ref), store_rows(run)
    dup = int(b.duplicated(KEY_COLUMNS).sum()) - int(a.duplicated(KEY_COLUMNS).sum())
    if dup:
        diffs.append(f"store: {dup} duplicated row(s) more than the reference")
    if len(a) != len(b):
        diffs.append(f"store: {len(b)} rows, reference {len(a)}")
        return
    keys_a, keys_b = a[KEY_COLUMNS].astype(str), b[KEY_COLUMNS].astype(str)
    if not keys_a.equals(keys_b):
        i = int(np.argmax((keys_a != keys_b).any(axis=1).to_numpy()))
        diffs.append(f"store: row keys differ, first {keys_b.iloc[i].to_dict()} vs {keys_a.iloc[i].to_dict()}")
        return
    va, vb = a["value"].to_numpy(float), b["value"].to_numpy(float)
    bad = ~((np.abs(va - vb) <= 1e-9) | (np.isnan(va) & np.isnan(vb)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        diffs.append(f"store: {int(bad.sum())} value(s) differ by > 1e-9, first {b.iloc[i][KEY_COLUMNS].to_dict()}: "
                     f"{vb[i]!r} vs {va[i]!r}")


def _close(a: Any, b: Any, path: str, diffs: list[str]) -> None:
    """Recursive comparison of loaded records: arrays and floats to 1e-9, the rest exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        ka, kb = set(a) - TIMING_KEYS, set(b) - TIMING_KEYS
        if ka != kb:
            diffs.append(f"{path}: keys {sorted(map(str, kb ^ ka))} differ")
        for k in sorted(ka & kb, key=str):
            _close(a[k], b[k], f"{path}/{k}", diffs)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]", diffs)
    elif hasattr(a, "numpy") and hasattr(b, "numpy"):  # torch tensors
        _close(a.numpy(), b.numpy(), path, diffs)
    elif isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        if a.shape != b.shape or a.dtype != b.dtype:
            diffs.append(f"{path}: {b.dtype}{b.shape} vs {a.dtype}{a.shape}")
        elif a.dtype.kind in "fc":
            if not np.allclose(a, b, rtol=0, atol=1e-9, equal_nan=True):
                diffs.append(f"{path}: max difference {np.nanmax(np.abs(a - b)):.3g}")
        elif not np.array_equal(a, b):
            diffs.append(f"{path}: differs")
    elif isinstance(a, float) and isinstance(b, float):
        if not (abs(a - b) <= 1e-9 or (math.isnan(a) and math.isnan(b))):
            diffs.append(f"{path}: {b!r} vs {a!r}")
    elif a != b:
        diffs.append(f"{path}: {b!r} vs {a!r}")


def _load(path: Path) -> Any:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if path.suffix == ".pt":
        import torch  # only for comparing checkpoints (a second to import)

        return torch.load(path, map_location="cpu", weights_only=True)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return path.read_bytes()


def _files(run_dir: Path) -> set[str]:
    skip = {LOCK_FILE, "store.sqlite", "store.sqlite-wal", "store.sqlite-shm", "config.yaml"}
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and p.name not in skip}


def compare_runs(ref: Path, run: Path, *, cache: Path | None = None, ignore: Sequence[str] = ()) -> list[str]:
    """How ``run`` differs from the uninterrupted ``ref`` ([] when it does not); see the module doc.
    ``ignore``: files of ``ref`` under these relative prefixes are not expected in ``run``."""
    diffs: list[str] = []
    left = [str(p.relative_to(run)) for p in run.rglob("*") if is_temporary(p)]
    if cache is not None:
        left += [str(p) for p in cache.glob("corpora/.*.partial-*")]
    if left:
        diffs.append(f"temporary files left: {left}")
    _compare_store(ref, run, diffs)
    fa, fb = {f for f in _files(ref) if not f.startswith(tuple(ignore))}, _files(run)
    if fa != fb:
        diffs.append(f"files: missing {sorted(fa - fb)}, extra {sorted(fb - fa)}")
    for rel in sorted(fa & fb):
        if rel.endswith(NOT_COMPARED):
            continue
        a, b = _load(ref / rel), _load(run / rel)
        if isinstance(a, pd.DataFrame):
            if rel.endswith("labels.parquet"):  # label tables: exactly
                if not a.equals(b):
                    diffs.append(f"{rel}: label table differs")
                continue
            a, b = {c: a[c].to_numpy() for c in a}, {c: b[c].to_numpy() for c in b}
        _close(a, b, rel, diffs)
    return diffs


# ------------------------------------------------------------------------------------- campaign
def run_chain(cmd: Sequence[str], run_dir: Path, *, cache: Path, log: Path, steps: dict[str, dict], kills: int,
              rng: random.Random, timeout: float, first_in: str | None = "corpus",
              deadline: float = math.inf) -> list[dict]:
    """Kill ``kills`` starts of ``cmd`` on ``run_dir`` (see the module doc; fewer when the clock passes
    ``deadline``), then run it to the end. Returns the events: one per start, the last the final run
    (``ended``: its exit status)."""
    events: list[dict] = []
    tried = 0
    while tried < kills and time.time() < deadline:
        remaining = [s for s in steps if s == "report" or not (run_dir / steps[s]["dir"] / "done.json").exists()]
        if not remaining:  # a study (no report step) that a start has finished: nothing left to kill
            break
        if tried == 0 and first_in in steps and first_in in remaining:
            target = first_in
            ev = {"kind": "moment", "target": target}
            ev.update(moment_kill(cmd, run_dir, cache=cache, log=log, steps=steps, target=target,
                                  fraction=rng.uniform(0.1, 0.9), timeout=timeout))
        elif rng.random() < 0.5:
            target = rng.choice(remaining)
            ev = {"kind": "moment", "target": target}
            ev.update(moment_kill(cmd, run_dir, cache=cache, log=log, steps=steps, target=target,
                                  fraction=rng.random(), timeout=timeout))
        else:
            kind = rng.choice([k for k in FAULTS if any(m in s for m in FAULT_STEPS[k] for s in remaining)])
            ev = {"kind": "fault", "target": kind}
            ev.update(fault_kill(cmd, run_dir, cache=cache, log=log, steps=steps, kind=kind,
                                 n=rng.randint(1, FAULTS[kind][1]), timeout=timeout))
        events.append(ev)
        print(f"  {run_dir.name}: {json.dumps(ev)}", flush=True)
        if "killed" in ev:
            tried += 1
        elif ev.get("ended") != 0:
            break  # a rerun failed: the chain is lost
    proc = launch(cmd, cache=cache, log=log)
    proc.wait(timeout=timeout)
    events.append({"kind": "final", "ended": proc.returncode})
    return events


def compare_any(ref: Path, run: Path, *, cache: Path | None = None) -> list[str]:
    """:func:`compare_runs` for a run, or for each run of a study (``study.json`` lists them)."""
    try:
        runs = json.loads((ref / "study.json").read_text())["runs"]
    except (OSError, ValueError, KeyError):
        return compare_runs(ref, run, cache=cache)
    return [f"{rel}: {d}" for i, rel in enumerate(runs)
            for d in compare_runs(ref / rel, run / rel, cache=cache if i == 0 else None)]


def campaign(out: Path, *, kills: int, chains: int, seed: int, extra: Sequence[str], timeout: float,
             budget: float = math.inf, study: Path | None = None) -> dict:
    """The whole campaign (see the module doc); writes and returns ``OUT/campaign.json``. ``budget``:
    seconds after which no chain kills any more (each still runs to its end and is compared);
    ``study``: a study spec, run with ``cometa study`` instead of the tiny run."""
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + budget
    if study is None:
        cmd_for = lambda d: [sys.executable, "-m", "cometa", "run", "--preset", "tiny",  # noqa: E731
                             "--run-dir", str(d), "--quiet", *extra]
    else:  # a study (issue: a kill during a study, then a rerun, gives the same numbers); no report
        cmd_for = lambda d: [sys.executable, "-m", "cometa", "study", str(study), "--study-dir", str(d),  # noqa: E731
                             "--quiet", "--no-report", *extra]
    ref = out / "reference"
    t0 = time.time()
    finished = ref / ("report/done.json" if study is None else ".reference-complete")
    if not finished.exists():
        proc = launch(cmd_for(ref), cache=out / "cache_reference", log=out / "reference.log")
        if proc.wait(timeout=timeout) != 0:
            raise SystemExit(f"the reference run failed: see {out / 'reference.log'}")
        if study is not None:
            finished.write_text("")
    steps = step_records(ref)
    print(f"reference: {len(steps)} steps in {time.time() - t0:.0f} s: "
          + ", ".join(f"{s} {r['seconds']:.0f}s" for s, r in steps.items()), flush=True)
    rng = random.Random(seed)
    per_chain = [kills // chains + (i < kills % chains) for i in range(chains)]
    results = []
    for c, k in enumerate(per_chain):
        run_dir, cache = out / f"chain_{c}", out / f"cache_{c}"
        t1 = time.time()
        first = next((s for s in steps if s.endswith("corpus")), None)
        events = run_chain(cmd_for(run_dir), run_dir, cache=cache, log=out / f"chain_{c}.log", steps=steps,
                           kills=k, rng=rng, timeout=timeout, deadline=deadline, first_in=first)
        diffs = compare_any(ref, run_dir, cache=cache) if events[-1]["ended"] == 0 else ["the final run failed"]
        reruns_ok = all(e.get("ended", 0) == 0 for e in events)
        n_killed = sum("killed" in e for e in events)
        survived = n_killed if (reruns_ok and not diffs) else 0
        results.append({"chain": c, "kills": n_killed, "survived": survived, "differences": diffs,
                        "events": events, "seconds": round(time.time() - t1, 1)})
        print(f"chain {c}: {survived}/{n_killed} kills survived in {time.time() - t1:.0f} s"
              + ("" if not diffs else f"; differences: {diffs[:5]}"), flush=True)
        (out / "campaign.json").write_text(json.dumps({"partial": True, "chains": results}, indent=2))
    tried = sum(r["kills"] for r in results)
    survived = sum(r["survived"] for r in results)
    where: dict[str, int] = {}
    for r in results:
        for e in r["events"]:
            for s in e.get("where", []):
                where[s] = where.get(s, 0) + 1
    summary = {"kills_tried": tried, "kills_survived": survived, "kills_by_running_step": where,
               "fault_kinds": sorted({e["target"] for r in results for e in r["events"] if e["kind"] == "fault"
                                      and "killed" in e}),
               "seconds": round(time.time() - t0, 1), "chains": results}
    (out / "campaign.json").write_text(json.dumps(summary, indent=2))
    print(f"kills survived / kills tried: {survived}/{tried}; kills landed in: {where}", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="campaign directory (reference, chains, logs)")
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--chains", type=int, default=3, help="run directories the kills are spread over")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds one start may take")
    ap.add_argument("--budget-minutes", type=float, default=math.inf,
                    help="stop killing after this long (the chains still end and are compared)")
    ap.add_argument("--study", type=Path, help="a study spec: kill `cometa study SPEC` instead of the tiny run")
    ap.add_argument("extra", nargs="*", help="more `cometa run` arguments (after --), e.g. --set stage2.rounds=1")
    args = ap.parse_args(argv)
    summary = campaign(args.out.resolve(), kills=args.kills, chains=args.chains, seed=args.seed, extra=args.extra,
                       timeout=args.timeout, budget=60 * args.budget_minutes,
                       study=args.study.resolve() if args.study else None)
    return 0 if summary["kills_survived"] == summary["kills_tried"] else 1


if __name__ == "__main__":
    sys.exit(main())
