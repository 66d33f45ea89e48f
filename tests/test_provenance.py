"""Run records (issue 33): every run directory's ``provenance.json`` says where its numbers came from (command,
commit and dirty flag, pinned versions, Python, CPU model and SIMD flags, cores, OPENBLAS_CORETYPE, GPU, host, and
every step's start and end); a resumed run adds a session; the report's header and ``open_run(...).provenance``
show it. Each field is checked against an independent reading of the same fact."""
from __future__ import annotations

import html
import json
import os
import platform
import re
import socket
import threading
from importlib import metadata
from pathlib import Path

import yaml

import cometa
from cometa.config import load_config
from cometa.pipeline.plan import plan_steps
from cometa.pipeline.provenance import PROVENANCE_FILE, read_provenance, record_step, write_run_provenance
from cometa.results.run_record import provenance_lines

ROOT = Path(__file__).resolve().parents[1]


def _cpuinfo() -> tuple[str | None, set[str]]:
    """The first CPU's model name and flags, read from /proc/cpuinfo here (not by cometa)."""
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    return (model.group(1).strip() if model else None), set(flags.group(1).split() if flags else ())


def test_a_run_records_where_its_numbers_came_from(tiny_run):
    record = json.loads((tiny_run / PROVENANCE_FILE).read_text())
    (session,) = record["sessions"]  # the shared run ran once
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert session["command"]  # the command line of the process that ran it
    sha = config["git_sha"]  # written by the same process, by another reader (RunStore.write_config)
    assert session["git"] == {"commit": sha.removesuffix("-dirty"), "dirty": sha.endswith("-dirty")}
    assert re.fullmatch(r"[0-9a-f]{40}", session["git"]["commit"])
    pins = [m.group(1) for line in (ROOT / "requirements.txt").read_text().splitlines()
            if (m := re.match(r"\s*([A-Za-z0-9_.\-]+)==", line))]
    assert list(session["packages"]) == pins
    assert all(session["packages"][p] == metadata.version(p) for p in pins)
    assert session["python"] == platform.python_version()
    model, flags = _cpuinfo()
    assert session["cpu"]["model"] == model
    assert set(session["cpu"]["flags"]) <= flags and ("avx2" in flags) == ("avx2" in session["cpu"]["flags"])
    assert ("avx512f" in flags) == ("avx512f" in session["cpu"]["flags"])
    assert session["cpu"]["cores"] == os.cpu_count() and session["cpu"]["cores_usable"] == len(os.sched_getaffinity(0))
    assert session["openblas_coretype"] == config["runtime"]["openblas_coretype"]["value"]
    assert session["gpu"] is None  # tests run on the CPU (device auto, no GPU here)
    assert session["host"] == socket.gethostname()
    # every step the run ran, with its start and end: those of its done marker
    planned = [s.name for s in plan_steps(load_config("tiny"), tiny_run) if s.name != "report"]
    assert sorted(session["steps"]) == sorted(planned)
    for name, step in session["steps"].items():
        done = json.loads((tiny_run / name / "done.json").read_text())
        assert session["started_at"] <= step["started_at"] <= step["finished_at"]
        assert abs(step["started_at"] - done["started_at"]) < 1e-3 and step["seconds"] == done["seconds"]
        assert abs(step["finished_at"] - step["started_at"] - step["seconds"]) < 1e-2
        assert step["worker"] is None


def test_a_resumed_run_appends_a_session_and_keeps_the_first(tmp_path):
    write_run_provenance(tmp_path, command="cometa run --preset tiny")
    record_step(tmp_path, "corpus", started_at=10.0, finished_at=12.5, seconds=2.5)
    first = read_provenance(tmp_path)["sessions"][0]
    write_run_provenance(tmp_path, command="cometa run --preset tiny  # resumed")
    record_step(tmp_path, "stage1", started_at=20.0, finished_at=21.0, seconds=1.0, worker="tcp://10.0.0.2:4000")
    sessions = read_provenance(tmp_path)["sessions"]
    assert len(sessions) == 2 and sessions[0] == first
    assert sessions[0]["steps"] == {"corpus": {"started_at": 10.0, "finished_at": 12.5, "seconds": 2.5, "worker": None}}
    assert sessions[1]["command"].endswith("# resumed")
    assert sessions[1]["steps"] == {"stage1": {"started_at": 20.0, "finished_at": 21.0, "seconds": 1.0,
                                               "worker": "tcp://10.0.0.2:4000"}}
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # written atomically


def test_steps_finishing_at_once_are_all_recorded(tmp_path):
    """Steps run in threads: record_step's read-modify-write of the file is guarded, so none is lost."""
    write_run_provenance(tmp_path, command="cometa run")
    start = threading.Barrier(8)

    def finish(worker: int) -> None:
        start.wait()
        for i in range(25):
            record_step(tmp_path, f"w{worker}/step_{i}", started_at=float(i), finished_at=i + 1.0, seconds=1.0)

    threads = [threading.Thread(target=finish, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    steps = read_provenance(tmp_path)["sessions"][-1]["steps"]
    assert sorted(steps) == sorted(f"w{w}/step_{i}" for w in range(8) for i in range(25))


def test_the_report_and_the_run_api_show_the_record(tiny_run):
    record = json.loads((tiny_run / PROVENANCE_FILE).read_text())
    assert cometa.open_run(tiny_run).provenance == record
    lines = provenance_lines(tiny_run)
    session = record["sessions"][0]
    assert lines[0] == f"command: {session['command']}"
    assert session["git"]["commit"][:12] in lines[1] and f"Python {session['python']}" in lines[1]
    assert lines[2].startswith(f"machine: {session['host']}, {session['cpu']['model']}")
    assert f"{len(session['steps'])} step(s)" in lines[3]
    page = (tiny_run / "report" / "report.html").read_text()
    assert all(html.escape(line) in page for line in lines)


def test_a_run_without_a_record_says_so(run_copy):
    run = run_copy("no_record")
    (run / PROVENANCE_FILE).unlink()
    assert cometa.open_run(run).provenance is None
    assert provenance_lines(run) == ["provenance: none recorded (a run made before run records were kept)"]
