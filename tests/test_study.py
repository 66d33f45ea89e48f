"""Several seeds of one study: the combined tables are the mean ± sample std of the seeds' numbers."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from cometa.cli import _parse_seeds
from cometa.results import figures as F
from cometa.results import report
from cometa.runs import list_runs, study_runs

EER = {  # seed -> (Stage I audio, round-1 baseline audio, round-2 baseline audio, round-2 baseline visual)
    0: (0.20, 0.16, 0.14, 0.30),
    1: (0.22, 0.15, 0.12, 0.26),
    2: (0.19, 0.17, 0.13, 0.28),
}


def _scalars(seed: int) -> pd.DataFrame:
    s1, r1, r2a, r2v = EER[seed]
    rows = [(None, "eval/O", 0, "audio", "eer", s1), ("baseline", "eval/O", 1, "audio", "eer", r1),
            ("baseline", "eval/O", 2, "audio", "eer", r2a), ("baseline", "eval/O", 2, "visual", "eer", r2v),
            ("baseline", "eval/H", 2, "audio", "eer", r2a + 0.1), ("baseline", "labels", 1, "consensus", "purity",
                                                                    0.6 + 0.01 * seed)]
    df = pd.DataFrame(rows, columns=["strategy", "stage", "round", "modality", "name", "value"])
    return df.assign(run=f"seed_{seed}", epoch=np.nan, step=np.nan, time=1.0 + np.arange(len(df)), seed=seed)


def test_table1_over_seeds_is_mean_and_sample_std():
    scalars = pd.concat([_scalars(s) for s in EER], ignore_index=True)
    t1 = report.table1(scalars)
    assert t1["n_seeds"] == 3 and t1["rows"] == ["Stage I", "Round 1", "Round 2"]
    for row, col, i in (("Stage I", "baseline/audio", 0), ("Round 1", "baseline/audio", 1),
                        ("Round 2", "baseline/audio", 2), ("Round 2", "baseline/visual", 3)):
        vals = np.array([EER[s][i] for s in EER])
        assert t1["values"][row][col] == pytest.approx(vals.mean(), abs=1e-15)
        assert t1["std"][row][col] == pytest.approx(vals.std(ddof=1), abs=1e-15)
    md = report.table1_markdown(t1)
    assert "Mean ± standard deviation over 3 seeds" in md
    assert "| Round 2 | **13.00 ± 1.00** | 28.00 ± 2.00 |" in md  # hand-checked: 14, 12, 13 and 30, 26, 28
    assert r"13.00 $\pm$ 1.00" in report.table1_latex(t1)


def test_table1_of_one_run_prints_plain_numbers():
    t1 = report.table1(_scalars(0).drop(columns="seed"))
    assert t1["n_seeds"] == 1
    md = report.table1_markdown(t1)
    assert "±" not in md and "| Round 2 | **14.00** | 30.00 |" in md


def test_table2_over_seeds():
    scalars = pd.concat([_scalars(s) for s in EER], ignore_index=True)
    t2 = report.table2(scalars, modalities=("audio",))
    (row,) = t2["rows"]
    h = np.array([EER[s][2] + 0.1 for s in EER])
    assert row["H/eer"] == pytest.approx(h.mean()) and row["std"]["H/eer"] == pytest.approx(h.std(ddof=1))
    assert "23.00 ± 1.00" in report.table2_markdown(t2)


def test_a_seed_that_logged_twice_counts_once():
    again = _scalars(1).iloc[[2]].assign(value=0.5, time=99.0)  # a resumed step: the later value wins
    scalars = pd.concat([_scalars(0), _scalars(1), again], ignore_index=True)
    t1 = report.table1(scalars)
    assert t1["values"]["Round 2"]["baseline/audio"] == pytest.approx((0.14 + 0.5) / 2)
    agg = F.seed_mean_std(scalars[(scalars["name"] == "eer") & (scalars["stage"] == "eval/O")],
                          ["strategy", "round", "modality"])
    r2 = agg[(agg["round"] == 2) & (agg["modality"] == "audio")].iloc[0]
    assert r2["n"] == 2 and r2["mean"] == pytest.approx(0.32)
    assert r2["std"] == pytest.approx(np.std([0.14, 0.5], ddof=1))


def test_figures_show_mean_with_std_error_bars():
    scalars = pd.concat([_scalars(s) for s in EER], ignore_index=True)
    fig = F.eer_per_round(scalars, modalities=("audio",))
    (trace,) = [t for t in fig.data if t.name.startswith("Baseline")]
    np.testing.assert_allclose(trace.y, [100 * np.mean([EER[s][r] for s in EER]) for r in (1, 2)])
    np.testing.assert_allclose(trace.error_y.array, [100 * np.std([EER[s][i] for s in EER], ddof=1) for i in (1, 2)])
    assert "3 seeds" in fig.layout.title.text


def test_parse_seeds():
    assert _parse_seeds("0,1,2") == [0, 1, 2]
    assert _parse_seeds("3-5") == [3, 4, 5]
    assert _parse_seeds("7") == [7]
    with pytest.raises(Exception, match="--seeds"):
        _parse_seeds("a,b")


def test_study_directory_is_listed_with_its_seed_runs(tmp_path):
    study = tmp_path / "study"
    for s in (0, 2):
        (study / f"seed_{s}").mkdir(parents=True)
        (study / f"seed_{s}" / "store.sqlite").touch()
    (study / "study.json").write_text(json.dumps({"seeds": [0, 2], "runs": ["seed_0", "seed_2"]}))
    (tmp_path / "single").mkdir()
    (tmp_path / "single" / "store.sqlite").touch()
    assert study_runs(study) == [study / "seed_0", study / "seed_2"]
    assert list_runs(study) == [study, study / "seed_0", study / "seed_2"]
    assert list_runs(tmp_path) == [tmp_path / "single", study, study / "seed_0", study / "seed_2"]
    assert study_runs(tmp_path / "single") == [] and not math.isnan(len(list_runs(tmp_path / "single")))
