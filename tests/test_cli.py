"""The command line a researcher expects (issue 33): ``cometa config``, ``ls``, ``compare``, ``run --steps``,
``report --no-static``, the preset a ``--config`` file names, the comma form of ``--set`` for lists, and the dry
run's run directories. Each runs on the shared tiny run (tests/conftest.py) or on a copy of it."""
from __future__ import annotations

import csv
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import yaml

import cometa
from cometa.cli import main
from cometa.config import config_from_dict, load_config, parse_override
from cometa.pipeline.provenance import PROVENANCE_FILE
from cometa.pipeline.run import plan_steps, select_steps
from cometa.runs import LOCK_FILE, run_lock
from tests.conftest import TINY_STUDY_EER_FACTOR


# ---------------------------------------------------------------------------------- cometa config
def test_config_prints_the_resolved_yaml_with_each_values_source(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text("preset: tiny\nstage2: {tau: 0.3}\n")
    assert main(["config", "--config", str(path), "--set", "stage2.strategies=baseline,cometa",
                 "--set", "clustering.k=7"]) == 0
    out = capsys.readouterr().out
    data = yaml.safe_load(out)
    cfg = load_config("tiny", path=path, overrides=["stage2.strategies=baseline,cometa", "clustering.k=7"])
    assert config_from_dict(data) == cfg  # exactly what a run would use: the YAML reads back to the resolved config
    lines = {line.strip().split(":")[0]: line for line in out.splitlines() if not line.startswith("#")}
    assert lines["tau"].endswith(f"# file {path}")
    assert lines["strategies"].endswith("# --set") and lines["k"].endswith("# --set")
    assert lines["jobs"].endswith("# preset tiny")  # tiny.yaml sets jobs
    assert lines["alpha"].endswith("# default")  # the paper's value, no layer sets it
    assert lines["preset"].endswith(f"# file {path}")


def test_the_config_files_preset_is_used_without_preset(tmp_path, capsys):
    """``preset: tiny`` in the file plans tiny's k, not the demo's (--preset had the default demo)."""
    path = tmp_path / "mine.yaml"
    path.write_text("preset: tiny\n")
    assert main(["config", "--config", str(path)]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["preset"] == "tiny" and data["clustering"]["k"] == load_config("tiny").clustering.k == 24
    assert load_config("demo").clustering.k != 24
    assert main(["config", "--preset", "tiny", "--config", str(path)]) == 0  # the same preset twice: fine


def test_the_dry_run_plans_the_config_files_preset_and_shows_where_runs_go(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text("preset: tiny\n")
    assert main(["run", "--config", str(path), "--dry-run", "--seeds", "3,4", "--run-dir", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "preset tiny" in out and "k = 24," in out
    assert f"seed 3 -> {tmp_path.resolve()}/s/seed_3" in out and f"seed 4 -> {tmp_path.resolve()}/s/seed_4" in out
    assert not (tmp_path / "s").exists()


def test_the_dry_run_shows_what_from_would_reuse(tiny_run, tmp_path, capsys):
    assert main(["run", "--preset", "tiny", "--dry-run", "--from", str(tiny_run),
                 "--run-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert f"run directory {tmp_path.resolve()}/r" in out
    assert f"from {tiny_run}: corpus reused, stage1 reused, analysis/stage1 reused" in out
    # another seed: the corpus is shared, Stage I (seeded) is not
    assert main(["run", "--preset", "tiny", "--dry-run", "--from", str(tiny_run), "--seeds", "5",
                 "--run-dir", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert f"seed 5 -> {tmp_path.resolve()}/s/seed_5" in out
    assert "corpus reused, stage1 other settings in the source: runs here" in out
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- --set lists
def test_set_takes_the_comma_form_for_list_valued_keys():
    assert parse_override("stage2.strategies=baseline,cometa") == ("stage2.strategies", ["baseline", "cometa"])
    assert parse_override("eval.p_targets=0.01,0.1") == ("eval.p_targets", [0.01, 0.1])
    assert parse_override("stage2.strategies=[lgl]") == ("stage2.strategies", ["lgl"])  # YAML still works
    assert parse_override("corpus.root=/data/a,b") == ("corpus.root", "/data/a,b")  # a string keeps its comma
    cfg = load_config("tiny", overrides=["stage2.strategies=baseline,cometa"])
    assert cfg.stage2.strategies == ["baseline", "cometa"]


# ------------------------------------------------------------------------------------ cometa ls
def _ls(capsys, *dirs) -> list[str]:
    assert main(["ls", *map(str, dirs)]) == 0
    return capsys.readouterr().out.splitlines()


def test_ls_lists_a_run_with_its_rounds_steps_state_and_eer(tiny_run, capsys):
    (line,) = _ls(capsys, tiny_run)
    cfg = load_config("tiny")
    steps = plan_steps(cfg, tiny_run)
    assert line.startswith(f"{tiny_run}  tiny  baseline,coteaching_plus,cometa  rounds 2/2  ")
    # the shared run has every step but the report finished, and no live process holds it
    assert f"steps {len(steps) - 1}/{len(steps)}  interrupted" in line
    eer = cometa.open_run(tiny_run).table1().loc["Round 2"]
    for s in cfg.stage2.strategies:
        assert f"{s}={eer[(s, 'audio')]:.1f}%" in line
    started = json.loads((tiny_run / PROVENANCE_FILE).read_text())["sessions"][0]["started_at"]
    assert line.endswith("started " + time.strftime("%Y-%m-%d %H:%M", time.localtime(started)))


def test_ls_says_complete_and_running(run_copy, capsys):
    run = run_copy("complete")
    (run / "report").mkdir(exist_ok=True)
    report = [s for s in plan_steps(load_config("tiny"), run) if s.name == "report"][0]
    (run / "report" / "done.json").write_text(json.dumps({"inputs_hash": report.inputs_hash}))
    assert "  complete  " in _ls(capsys, run)[0]
    with run_lock(run):
        assert "  running (lock held)  " in _ls(capsys, run)[0]
    assert (run / LOCK_FILE).exists() and "  complete  " in _ls(capsys, run)[0]  # a released lock: not running


def test_ls_lists_a_study_as_one_line(tiny_study, tmp_path, capsys):
    assert _ls(capsys, tiny_study) == [_ls(capsys, tiny_study.parent)[0]]
    (line,) = _ls(capsys, tiny_study)
    assert line.startswith(f"{tiny_study}  study (seeds)  tiny  2 runs, 0 complete")
    grid = tmp_path / "grid"
    for cell in ("tau=0.1", "tau=0.2"):
        shutil.copytree(tiny_study / "seed_0", grid / cell / "seed_0", ignore=shutil.ignore_patterns("*.pt"))
    (grid / "study.json").write_text(json.dumps({"kind": "grid", "preset": "tiny", "cells": ["tau=0.1", "tau=0.2"],
                                                 "runs": ["tau=0.1/seed_0", "tau=0.2/seed_0"]}))
    (line,) = _ls(capsys, grid)
    # a grid study's runs plan no report step of their own (the study writes one), and the tiny run
    # finished every other step: both complete (as seed runs of a seeds study they lack their report)
    assert line.startswith(f"{grid}  study (grid)  tiny  2 cells, 2 runs, 2 complete")


# ------------------------------------------------------------------------------- cometa compare
def test_compare_puts_table1_side_by_side_and_writes_it(tiny_run, tiny_study, tmp_path, capsys):
    files = {fmt: tmp_path / f"t.{fmt}" for fmt in ("csv", "latex", "markdown")}
    argv = ["compare", str(tiny_run), str(tiny_study / "seed_1"), str(tiny_study)]
    assert main([*argv, *(x for fmt, f in files.items() for x in (f"--{fmt}", str(f)))]) == 0
    out = capsys.readouterr().out
    rows = list(csv.reader(files["csv"].open()))
    header, body = rows[0], {r[0]: r[1:] for r in rows[1:]}
    t1 = cometa.open_run(tiny_run).table1()
    assert header[1] == "tiny / baseline / audio" and header[1 + len(t1.columns)] == "seed_1 / baseline / audio"
    factor = TINY_STUDY_EER_FACTOR[1]
    for i, col in enumerate(t1.columns):
        want = t1.loc["Round 2", col]
        assert body["Round 2"][i] == f"{want:.2f}"
        assert body["Round 2"][len(t1.columns) + i] == f"{want * factor:.2f}"
        # the study: mean and sample std over its two seeds (EERs x1 and x0.5)
        mean, std = np.mean([want, want * factor]), np.std([want, want * factor], ddof=1)
        assert body["Round 2"][2 * len(t1.columns) + i] == f"{mean:.2f} ± {std:.2f}"
    assert "Round 2" in out and "seed_1 / cometa / visual" in out.splitlines()[0]
    md = files["markdown"].read_text().splitlines()
    assert md[0] == "| " + " | ".join(header) + " |" and md[-1] == "| " + " | ".join(rows[-1]) + " |"
    tex = files["latex"].read_text()
    assert tex.startswith(r"\begin{tabular}") and r"$\pm$" in tex and r"coteaching\_plus" in tex


# --------------------------------------------------------------------------------- run --steps
def test_select_steps_takes_patterns_and_what_they_need():
    steps = plan_steps(load_config("tiny"), Path("/tmp/x"))
    assert select_steps(steps, ["stage1", "baseline/*"]) == ["corpus", "stage1", "baseline/round_1", "baseline/round_2"]
    assert select_steps(steps, ["analysis/cometa"]) == ["corpus", "stage1", "cometa/round_1", "cometa/round_2",
                                                         "analysis/cometa"]


def test_steps_runs_the_named_steps_and_the_unfinished_ones_they_need(run_copy, capsys):
    run = run_copy("steps", ignore=())
    (run / "analysis" / "stage1" / "done.json").unlink()  # an unfinished step the selection needs
    before = {p: p.stat().st_mtime_ns for p in run.rglob("done.json")}
    assert main(["run", "--preset", "tiny", "--run-dir", str(run), "--steps", "analysis/stage*", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1 step(s) ran, 2 skipped" in out  # corpus and stage1 were finished
    after = {p: p.stat().st_mtime_ns for p in run.rglob("done.json")}
    assert set(after) - set(before) == {run / "analysis" / "stage1" / "done.json"}
    assert all(after[p] == t for p, t in before.items())  # nothing else ran
    record = json.loads((run / PROVENANCE_FILE).read_text())
    assert list(record["sessions"][-1]["steps"]) == ["analysis/stage1"]


# ----------------------------------------------------------------------------- report --no-static
def test_report_takes_no_static_and_numbers_its_tables_in_order(run_copy, capsys):
    run = run_copy("report")
    shutil.rmtree(run / "report")
    assert main(["report", str(run), "--no-static"]) == 0
    captions = [f.read_text().splitlines()[0] for f in sorted((run / "report").glob("table*.md"))]
    numbers = [int(re.match(r"Table (\d+)\.", c).group(1)) for c in captions]
    assert numbers == list(range(1, len(captions) + 1)), captions
    page = (run / "report" / "report.html").read_text()
    assert numbers and all(f"Table {n}." in page for n in numbers) and "Table 6." not in page
    assert not list((run / "report").glob("*.svg"))  # no static figures
