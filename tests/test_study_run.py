"""A tiny two-value study run for real: once in threads of this process, once on a Dask cluster
(a ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1), and once killed and resumed.

- Stage I is trained once per seed: the second cell's corpus and Stage I are hard links of the first
  cell's (the same inode), with the rows they logged, and ``reused.json`` / ``done.json`` say so.
- The Dask study stores the same numbers as the local one (every scalar to 1e-9, every array and
  checkpoint, :func:`tools.kill_campaign.compare_runs`), and its provenance names the two workers,
  which ran its steps.
- A study SIGKILLed in a round and rerun ends equal to the uninterrupted one.
- Rerunning skips what is finished; adding a value to the axis runs only the new cell.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cometa.runs import RunStore, done_hash
from tools.kill_campaign import compare_runs, kill_tree, launch

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SPEC = """\
name: tiny_tau
preset: tiny
strategies: [coteaching_plus]
seeds: [0]
set: {stage2.rounds: 1, projection.enabled: false, evaluation.as_norm.enabled: false,
      evaluation.label_issues.enabled: false, report.static: false}
axes: {stage2.tau: [0.1, 0.3]}
"""
CELLS = ("tau=0.1", "tau=0.3")


def _cometa(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "cometa", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("specs") / "tiny_tau.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def local_study(spec_file, tmp_path_factory) -> Path:
    study = tmp_path_factory.mktemp("study_local") / "tiny_tau"
    _cometa("study", str(spec_file), "--study-dir", str(study), "--jobs", "2", "--quiet", cwd=spec_file.parent)
    return study


def test_stage1_is_trained_once_per_seed_and_shared(local_study):
    a, b = (local_study / c / "seed_0" for c in CELLS)
    for step in ("corpus", "stage1"):
        src, dst = json.loads((a / step / "done.json").read_text()), json.loads((b / step / "done.json").read_text())
        assert "shared_from" not in src and dst["shared_from"] == "tau=0.1/seed_0"
        assert dst["inputs_hash"] == src["inputs_hash"] and dst["worker"] == src["worker"]
        assert src["cpu_seconds"] > 0  # the kernel's process tree, measured as it was shut down
    assert os.stat(a / "stage1" / "model.pt").st_ino == os.stat(b / "stage1" / "model.pt").st_ino  # a hard link
    assert json.loads((b / "reused.json").read_text())["shared"] == {"corpus": "tau=0.1/seed_0",
                                                                      "stage1": "tau=0.1/seed_0"}
    # the copy holds Stage I's rows: the same values as the run that trained it
    rows = [RunStore(r).scalars(strategy=None, stage="eval/O", name="eer").sort_values("modality")["value"].tolist()
            for r in (a, b)]
    assert rows[0] == rows[1] and len(rows[0]) >= 1
    # the rounds differ (tau differs), each computed in its own run
    ra, rb = (json.loads((r / "coteaching_plus" / "round_1" / "done.json").read_text()) for r in (a, b))
    assert "shared_from" not in ra and "shared_from" not in rb and ra["inputs_hash"] != rb["inputs_hash"]
    record = json.loads((local_study / "study.json").read_text())
    assert record["kind"] == "grid" and [c["name"] for c in record["cells"]] == list(CELLS)
    assert record["runs"] == [f"{c}/seed_0" for c in CELLS] and record["axes"] == {"stage2.tau": [0.1, 0.3]}
    cell = json.loads((local_study / "tau=0.3" / "study.json").read_text())
    assert cell["runs"] == ["seed_0"] and cell["seeds"] == [0]
    prov = json.loads((local_study / "provenance.json").read_text())
    assert prov["executor"]["kind"] == "local" and prov["command"].startswith("cometa study")
    assert prov["machine"]["cpu"]["model"] and prov["machine"]["git"]["commit"]


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    t0 = time.time()
    while not path.exists():
        assert time.time() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.2)


def test_a_dask_cluster_stores_the_same_numbers(local_study, spec_file, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    sched_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
                               "--scheduler-file", str(sched_file)], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        _wait_for(sched_file)
        address = json.loads(sched_file.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
                 "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"], env=env, cwd=tmp_path,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        study = tmp_path / "tiny_tau"
        _cometa("study", str(spec_file), "--study-dir", str(study), "--jobs", "2", "--dask", address, "--quiet",
                cwd=tmp_path)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    for cell in CELLS:
        assert compare_runs(local_study / cell / "seed_0", study / cell / "seed_0") == []
    prov = json.loads((study / "provenance.json").read_text())
    assert prov["executor"]["kind"] == "dask" and prov["executor"]["address"] == address
    workers = set(prov["executor"]["workers"])
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    ran_on = {json.loads(d.read_text())["worker"] for d in study.glob("*/seed_0/*/**/done.json")
              if "shared_from" not in json.loads(d.read_text())}
    ran_on |= {json.loads(d.read_text())["worker"] for d in study.glob("*/seed_0/*/done.json")
               if "shared_from" not in json.loads(d.read_text())}
    assert ran_on and ran_on <= workers  # every computed step ran on a worker of the cluster


def test_a_killed_study_resumes_to_the_same_numbers(local_study, spec_file, tmp_path):
    study = tmp_path / "tiny_tau"
    cmd = [sys.executable, "-m", "cometa", "study", str(spec_file), "--study-dir", str(study), "--jobs", "2",
           "--quiet", "--no-report"]
    # SIGKILL the whole tree with a round's checkpoint written but not renamed (Stage I and its copy finished)
    mark = tmp_path / "fault.mark"
    proc = launch(cmd, cache=None, log=tmp_path / "kill.log", fault=r"write:.*round_1/.*\.pt$:1", mark=mark)
    t0 = time.time()
    while not mark.exists():
        assert proc.poll() is None, (tmp_path / "kill.log").read_text()[-3000:]
        assert time.time() - t0 < 900, "the fault point was never reached"
        time.sleep(0.2)
    assert kill_tree(proc) >= 2  # the orchestrator and at least one kernel
    assert "round_1" in mark.read_text()
    assert done_hash(study / "tau=0.1" / "seed_0" / "stage1") is not None
    _cometa("study", str(spec_file), "--study-dir", str(study), "--jobs", "2", "--quiet", "--no-report", cwd=tmp_path)
    for cell in CELLS:
        assert compare_runs(local_study / cell / "seed_0", study / cell / "seed_0") == []


def test_rerun_skips_the_finished_and_a_new_value_runs_only_its_cell(local_study, spec_file, tmp_path):
    study = tmp_path / "tiny_tau"
    shutil.copytree(local_study, study, symlinks=True)
    out = _cometa("study", str(spec_file), "--study-dir", str(study), "--jobs", "2", "--no-report", cwd=tmp_path)
    assert "0 ran, 0 shared" in out.stdout
    before = {c: done_hash(study / c / "seed_0" / "coteaching_plus" / "round_1") for c in CELLS}
    out = _cometa("study", str(spec_file), "--study-dir", str(study), "--sweep", "stage2.tau=0.5", "--jobs", "2",
                  "--no-report", "--dry-run", cwd=tmp_path, check=False)
    assert out.returncode == 2 and "already an axis" in out.stderr  # the spec's axis is extended in the spec
    spec2 = tmp_path / "tiny_tau.yaml"
    spec2.write_text(SPEC.replace("[0.1, 0.3]", "[0.1, 0.3, 0.5]"))
    out = _cometa("study", str(spec2), "--study-dir", str(study), "--jobs", "2", "--no-report", cwd=tmp_path)
    assert "1 ran, 2 shared" in out.stdout, out.stdout
    assert {c: done_hash(study / c / "seed_0" / "coteaching_plus" / "round_1") for c in CELLS} == before
    assert json.loads((study / "tau=0.5" / "seed_0" / "stage1" / "done.json").read_text())["shared_from"] == \
        "tau=0.1/seed_0"


def test_ls_and_compare_read_a_study(local_study):
    out = _cometa("ls", str(local_study), cwd=local_study.parent).stdout
    assert "study (grid)" in out and "2 cells, 2 runs, 2 complete" in out  # the study's runs plan no report
    out = _cometa("compare", str(local_study), cwd=local_study.parent).stdout
    header = out.splitlines()[0]
    assert "tau=0.1 / coteaching_plus / audio" in header and "tau=0.3 / coteaching_plus / audio" in header
    stage1 = next(line for line in out.splitlines() if line.startswith("Stage I"))
    assert len(stage1.split()) >= 4  # the Stage I audio EER of both cells
