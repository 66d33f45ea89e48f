"""Study specs: cells, their names and overrides, the command-line form, refusals that name the key,
and the plan (what is shared, each step's threads), checked without running anything."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cometa.cli import main
from cometa.config import ConfigError
from cometa.pipeline.study import node_id, plan_study, print_study_plan
from cometa.pipeline.study_spec import load_spec, parse_sweep, spec_from_args, spec_from_dict, study_cells

ROOT = Path(__file__).resolve().parents[1]


def _spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_issue_spec_crosses_variants_with_axes(tmp_path):
    spec = load_spec(_spec(tmp_path, """
name: tau
preset: demo
strategies: [coteaching_plus, cometa]
seeds: [0, 1, 2]
set: {stage2.rounds: 3}
axes: {stage2.tau: [0.1, 0.2, 0.4]}
variants:
  second_order: {}
  first_order: {stage2.second_order: false}
"""))
    cells = study_cells(spec)
    assert [c.name for c in cells] == [f"{v},tau={t}" for v in ("second_order", "first_order") for t in (0.1, 0.2, 0.4)]
    first = cells[5]
    assert first.variant == "first_order" and first.values == {"stage2.tau": 0.4}
    assert first.overrides == {"stage2.rounds": 3, "stage2.second_order": False, "stage2.tau": 0.4}
    assert cells[0].overrides == {"stage2.rounds": 3, "stage2.tau": 0.1}


def test_a_variant_axis_crosses_that_variant_alone(tmp_path):
    spec = spec_from_dict(yaml.safe_load("""
name: noise
preset: tiny
variants:
  kmeans: {}
  uniform: {set: {clustering.method: truth}, axes: {clustering.truth_noise: [0.15, 0.35, 0.55]}}
"""), source="noise.yaml")
    cells = study_cells(spec)
    assert [c.name for c in cells] == ["kmeans", "uniform,truth_noise=0.15", "uniform,truth_noise=0.35",
                                       "uniform,truth_noise=0.55"]
    assert cells[0].overrides == {}
    assert cells[2].overrides == {"clustering.method": "truth", "clustering.truth_noise": 0.35}


def test_two_axes_make_their_product_and_keys_that_end_alike_are_spelt_out():
    spec = spec_from_args(name=None, preset="tiny", sweeps=["stage2.tau=0.1,0.2", "stage1.epochs=1,2"],
                          overrides=[], strategies=None, seeds=None)
    assert [c.name for c in study_cells(spec)] == ["tau=0.1,epochs=1", "tau=0.1,epochs=2", "tau=0.2,epochs=1",
                                                   "tau=0.2,epochs=2"]
    clash = spec_from_args(name="x", preset="tiny", sweeps=["stage1.epochs=1,2", "stage2.epochs_per_round=1,2"],
                           overrides=[], strategies=None, seeds=None)
    assert study_cells(clash)[0].name == "epochs=1,epochs_per_round=1"
    same_end = spec_from_dict({"name": "x", "preset": "tiny", "axes": {"stage1.batch_size": [8, 16],
                                                                     "stage2.batch_size": [8]}}, source="x")
    assert study_cells(same_end)[0].name == "stage1.batch_size=8,stage2.batch_size=8"


def test_sweep_values_are_read_as_yaml_and_brackets_keep_their_commas():
    assert parse_sweep("stage2.tau=0.1,0.2,0.4") == ("stage2.tau", [0.1, 0.2, 0.4])
    assert parse_sweep("stage2.second_order=true,false") == ("stage2.second_order", [True, False])
    assert parse_sweep("stage2.strategies=[baseline,cometa],[lgl]") == (
        "stage2.strategies", [["baseline", "cometa"], ["lgl"]])
    with pytest.raises(ConfigError, match="expected key=value1,value2"):
        parse_sweep("stage2.tau")


@pytest.mark.parametrize("text, message", [
    ("name: x\npreset: tiny\nbogus: 1\n", "unknown key 'bogus'"),
    ("name: x y\n", "'name' must be a word"),
    ("name: x\npreset: huge\n", "'preset': unknown preset 'huge'"),
    ("name: x\nseeds: [0, 0]\n", "'seeds' repeats a seed"),
    ("name: x\naxes: {stage2.tau: []}\n", "'axes.stage2.tau' must be a non-empty list"),
    ("name: x\nstrategies: [baseline, nope]\n", "unknown strategy 'nope'"),
    ("name: x\naxes: {stage2.tau: 0.2}\n", "'axes.stage2.tau' must be a non-empty list"),
])
def test_bad_specs_are_refused_naming_the_file_and_key(tmp_path, text, message):
    path = _spec(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_a_bad_value_in_a_cell_names_the_spec_the_cell_and_the_key(tmp_path):
    path = _spec(tmp_path, "name: x\npreset: tiny\naxes: {stage2.tau: [0.2, 1.5]}\n")
    with pytest.raises(ConfigError) as err:
        plan_study(load_spec(path), tmp_path / "study")
    assert str(path) in str(err.value) and "tau=1.5" in str(err.value) and "stage2.tau" in str(err.value)
    assert not (tmp_path / "study").exists()  # refused before anything is written
    path = _spec(tmp_path, "name: x\npreset: tiny\naxes: {stage2.nope: [1, 2]}\n", "b.yaml")
    with pytest.raises(ConfigError, match="stage2.nope"):
        plan_study(load_spec(path), tmp_path / "study")


def test_the_plan_shares_corpus_and_stage1_across_a_tau_sweep_and_fixes_threads(tmp_path):
    spec = spec_from_args(name="tau", preset="tiny", sweeps=["stage2.tau=0.1,0.2,0.4"],
                          overrides=["projection.enabled=false"], strategies=["coteaching_plus"], seeds=[0, 1])
    plan = plan_study(spec, tmp_path / "s", jobs=2)
    computed = [n for n in plan.nodes.values() if n.shared_from is None]
    names = [n.step.name for n in computed]
    # one corpus (the corpus does not depend on the seed), one Stage I per seed, every round of every cell
    assert names.count("corpus") == 1 and names.count("stage1") == 2
    assert names.count("coteaching_plus/round_1") == 6
    copy = plan.nodes[node_id("tau=0.4/seed_1", "stage1")]
    assert copy.shared_from == node_id("tau=0.1/seed_1", "stage1")
    assert node_id("tau=0.4/seed_1", "corpus") in copy.depends  # its own run's corpus copy comes first
    # threads from the computed steps' graph: cores // min(jobs, steps that may run beside)
    assert set(plan.threads) == {n.id for n in computed}
    cores = plan.runs["tau=0.1/seed_0"].cfg.cores or os.cpu_count()
    assert plan.threads[node_id("tau=0.1/seed_0", "corpus")] == max(1, cores)  # nothing beside the corpus
    assert plan.threads[node_id("tau=0.2/seed_1", "coteaching_plus/round_2")] == max(1, cores // 2)


def test_the_dry_run_prints_cells_and_what_they_share(tmp_path, capsys):
    spec_path = _spec(tmp_path, "name: tau\npreset: tiny\nstrategies: [baseline]\nseeds: [0]\n"
                                "axes: {stage2.tau: [0.1, 0.4]}\n")
    assert main(["study", str(spec_path), "--dry-run", "--study-dir", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "study tau: preset tiny, 2 cell(s) x 1 seed(s) = 2 run(s)" in out
    assert "cell tau=0.1  (stage2.tau=0.1)" in out and "cell tau=0.4  (stage2.tau=0.4)" in out
    assert "shares corpus, stage1, analysis/stage1 with tau=0.1/seed_0" in out
    assert "estimated CPU time" in out
    assert not (tmp_path / "s").exists()
    assert main(["study", "--preset", "tiny", "--sweep", "stage2.tau=0.1,0.2", "--seeds", "0,1", "--dry-run",
                 "--study-dir", str(tmp_path / "s2")]) == 0
    out = capsys.readouterr().out
    assert "2 cell(s) x 2 seed(s) = 4 run(s)" in out and "cell tau=0.2" in out


def test_the_dry_run_estimate_sums_the_measured_step_costs(tmp_path):
    spec = spec_from_args(name="t", preset="tiny", sweeps=["stage2.tau=0.1,0.4"], overrides=["projection.enabled=false",
                          "evaluation.as_norm.enabled=false", "evaluation.label_issues.enabled=false"],
                          strategies=["baseline"], seeds=[0])
    plan = plan_study(spec, tmp_path / "s")
    costs = {"corpus": 10.0, "stage1": 100.0, "round:baseline": 36.0}
    buf = io.StringIO()
    print_study_plan(plan, costs=costs, file=buf)
    # one corpus, one Stage I, 2 cells x 2 rounds: 10 + 100 + 4 x 36 = 254 s
    assert f"{254 / 3600:.2f} core-hours" in buf.getvalue()


def test_cli_study_errors_exit_2_with_one_line(tmp_path):
    bad = _spec(tmp_path, "name: x\npreset: tiny\naxes: {stage2.tau: [2.0]}\n")
    proc = subprocess.run([sys.executable, "-m", "cometa", "study", str(bad), "--dry-run"], cwd=tmp_path,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and str(bad) in proc.stderr and "stage2.tau" in proc.stderr
    other = _spec(tmp_path, "name: x\npreset: tiny\n", "p.yaml")
    assert main(["study", str(other), "--preset", "demo", "--dry-run"]) == 2  # two presets: both named
    assert main(["study", "--dry-run"]) == 2  # no study given


def test_rounds_that_an_axis_does_not_touch_are_computed_once(tmp_path):
    # LGL's gate keys LGL's rounds only: the baseline's rounds are the same in every cell
    spec = spec_from_args(name="gate", preset="tiny", sweeps=["stage2.lgl.gate=1.0,2.0,4.0"],
                          overrides=["projection.enabled=false"], strategies=["baseline", "lgl"], seeds=[0])
    plan = plan_study(spec, tmp_path / "s")
    computed = [n.step.name for n in plan.nodes.values() if n.shared_from is None]
    assert computed.count("baseline/round_1") == 1 and computed.count("baseline/round_2") == 1
    assert computed.count("lgl/round_2") == 3
    copy = plan.nodes[node_id("gate=4.0/seed_0", "baseline/round_2")]
    assert copy.shared_from == node_id("gate=1.0/seed_0", "baseline/round_2")
    # a copy of round 2 waits for its source and for its own run's round 1 (a copy too)
    assert set(copy.depends) == {copy.shared_from, node_id("gate=4.0/seed_0", "baseline/round_1")}


def test_from_brings_the_steps_a_source_finished_with_the_same_inputs(tmp_path):
    import json

    from cometa.runs import RunStore

    spec = spec_from_args(name="t", preset="tiny", sweeps=["stage2.tau=0.2,0.4"], overrides=[],
                          strategies=["coteaching_plus"], seeds=[0])
    plain = plan_study(spec, tmp_path / "s")
    # a finished source run: the corpus, Stage I and the tau=0.2 cell's round 1 done with the planned hashes
    source = tmp_path / "source"
    RunStore(source, create=True)
    for name in ("corpus", "stage1", "coteaching_plus/round_1"):
        step = plain.nodes[node_id("tau=0.2/seed_0", name)].step
        (source / name).mkdir(parents=True)
        (source / name / "done.json").write_text(json.dumps({"inputs_hash": step.inputs_hash, "step": name}))
    plan = plan_study(spec, tmp_path / "s2", reuse=source)
    brought = {n.id for n in plan.nodes.values() if n.shared_from == str(source.resolve())}
    assert brought == {node_id("tau=0.2/seed_0", n) for n in ("corpus", "stage1", "coteaching_plus/round_1")}
    # the other cell copies the corpus and Stage I from the first, and computes its own rounds
    assert plan.nodes[node_id("tau=0.4/seed_0", "stage1")].shared_from == node_id("tau=0.2/seed_0", "stage1")
    assert plan.nodes[node_id("tau=0.4/seed_0", "coteaching_plus/round_1")].shared_from is None
    assert node_id("tau=0.2/seed_0", "stage1") not in plan.threads  # brought, not computed
    with pytest.raises(ConfigError, match="not a run directory"):
        plan_study(spec, tmp_path / "s3", reuse=tmp_path / "nowhere")


def test_step_costs_prefer_the_measured_cpu_seconds(tmp_path):
    import json

    from cometa.pipeline.step_costs import load_step_costs, measure_step_costs

    def done(rel: str, **info):
        (tmp_path / "run" / rel).mkdir(parents=True)
        (tmp_path / "run" / rel / "done.json").write_text(json.dumps(info))

    done("stage1", step="stage1", seconds=100.0, cpu_seconds=150.0)
    done("baseline/round_1", step="baseline/round_1", seconds=40.0, cpu_seconds=30.0)
    done("baseline/round_2", step="baseline/round_2", seconds=50.0, cpu_seconds=50.0)
    done("corpus", step="corpus", seconds=20.0)  # no measurement: wall seconds x threads (1 without a notebook)
    done("cometa/round_1", step="cometa/round_1", seconds=1.0, shared_from="x/seed_0")  # a copy: not a cost
    done("report", step="report", seconds=9.0)
    costs = measure_step_costs(tmp_path / "run")
    assert costs == {"corpus": 20.0, "round:baseline": 40.0, "stage1": 150.0}
    (tmp_path / "costs.json").write_text(json.dumps({"tiny": {"cpu_seconds": costs}}))
    assert load_step_costs("tiny", tmp_path / "costs.json") == costs
    assert load_step_costs("demo", tmp_path / "costs.json") is None
