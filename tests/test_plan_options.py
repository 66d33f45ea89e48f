"""Step hashing of the new options: a strategy's own options and the analysis settings rerun only the
steps that read them (no retraining of the other strategies, no Stage I rerun)."""
from pathlib import Path

from cometa.pipeline.plan import plan_steps
from cometa.pipeline.run import resolve_config


def _hashes(overrides=(), strategies=("all",)):
    cfg = resolve_config("demo", overrides=list(overrides), strategies=list(strategies))
    return {s.name: s.inputs_hash for s in plan_steps(cfg, Path("/tmp/run"))}


def test_all_is_the_five_strategies_and_the_default_is_the_papers_three():
    names = _hashes()
    assert {n.split("/")[0] for n in names if "/round_" in n} == {"baseline", "coteaching_plus", "cometa", "lgl",
                                                                  "dlg_lc"}
    assert resolve_config("demo").stage2.strategies == ["baseline", "coteaching_plus", "cometa"]
    assert {f"analysis/{s}" for s in ("stage1", "baseline", "lgl", "dlg_lc")} <= set(names)


def test_a_strategys_options_rerun_only_its_own_rounds():
    base, changed = _hashes(), _hashes(["stage2.lgl.gate=3.0", "stage2.dlg_lc.lc_threshold=0.7"])
    differ = {n for n in base if base[n] != changed[n]}
    own = {f"{s}/round_{r}" for s in ("lgl", "dlg_lc") for r in (1, 2, 3)}
    assert differ == own | {"analysis/lgl", "analysis/dlg_lc", "projections", "report"}


def test_analysis_settings_rerun_only_the_analysis():
    base, changed = _hashes(), _hashes(["evaluation.as_norm.top_n=50", "evaluation.label_issues.n_folds=4"])
    differ = {n for n in base if base[n] != changed[n]}
    assert differ == {n for n in base if n.startswith("analysis/")} | {"report"}
    # adding strategies leaves the paper's three (and Stage I) where they were
    three = _hashes(strategies=("baseline", "coteaching_plus", "cometa"))
    assert all(three[n] == base[n] for n in three if "/round_" in n or n in ("corpus", "stage1"))


def test_report_static_reaches_the_report_step_and_keys_nothing():
    base, off = (resolve_config("demo", overrides=o) for o in ([], ["report.static=false"]))
    report = {c.report.static: plan_steps(c, Path("/tmp/run"))[-1] for c in (base, off)}
    assert report[True].name == report[False].name == "report"
    assert report[True].parameters["static"] is True and report[False].parameters["static"] is False
    # only a parameter of the report step (which reruns every time): no step's hash changes
    assert _hashes(["report.static=false"]) == _hashes()


def test_lr_scope_stage_keys_every_round_and_makes_rounds_key_them():
    """lr_scope: stage changes every round's schedule (never Stage I's), and its length is rounds ·
    epochs_per_round, so ``rounds`` keys the rounds too; at the default (round) it keys none of them,
    so a run extended with --rounds keeps its finished rounds."""
    base, stage = _hashes(), _hashes(["stage2.lr_scope=stage"])
    assert stage["corpus"] == base["corpus"] and stage["stage1"] == base["stage1"]
    assert all(stage[n] != base[n] for n in base if "/round_" in n)
    four = _hashes(["stage2.lr_scope=stage", "stage2.rounds=4"])
    assert four["cometa/round_1"] != stage["cometa/round_1"]
    assert _hashes(["stage2.rounds=4"])["cometa/round_1"] == base["cometa/round_1"]


def test_optimizer_scope_stage_keys_every_round_and_round_keys_none():
    """optimizer_scope: stage changes what every round trains from (round 1 must also save its
    moments), never the corpus or Stage I; at the default (round) no hash changes, so runs made
    before the option existed stay complete, and ``rounds`` keys no round under either scope."""
    base, stage = _hashes(), _hashes(["stage2.optimizer_scope=stage"])
    assert _hashes(["stage2.optimizer_scope=round"]) == base
    assert stage["corpus"] == base["corpus"] and stage["stage1"] == base["stage1"]
    assert all(stage[n] != base[n] for n in base if "/round_" in n)
    assert _hashes(["stage2.optimizer_scope=stage", "stage2.rounds=4"])["cometa/round_3"] == stage["cometa/round_3"]


def test_truth_labels_key_the_rounds_only_and_their_noise_keys_nothing_under_kmeans():
    """clustering.truth_noise / truth_noise_unit / truth_noise_target are read only with method: truth,
    so at the default (kmeans) they key no step, and finished runs keep their hashes; with truth they
    key the rounds."""
    base = _hashes()
    assert _hashes(["clustering.truth_noise=0.3", "clustering.truth_noise_unit=video"]) == base
    truth = _hashes(["clustering.method=truth", "clustering.truth_noise=0.3"])
    video = _hashes(["clustering.method=truth", "clustering.truth_noise=0.3", "clustering.truth_noise_unit=video"])
    assert truth["corpus"] == base["corpus"] and truth["stage1"] == base["stage1"]
    rounds = [n for n in base if "/round_" in n]
    assert all(truth[n] != base[n] and video[n] != truth[n] for n in rounds)
    # truth_noise_target keys the rounds only when not its default (runs made before it keep their hashes)
    assert _hashes(["clustering.method=truth", "clustering.truth_noise=0.3",
                    "clustering.truth_noise_target=uniform"]) == truth
    assert _hashes(["clustering.truth_noise_target=audio_nearest"]) == base
    nearest = _hashes(["clustering.method=truth", "clustering.truth_noise=0.3",
                       "clustering.truth_noise_target=audio_nearest"])
    assert nearest["stage1"] == base["stage1"] and all(nearest[n] != truth[n] for n in rounds)
