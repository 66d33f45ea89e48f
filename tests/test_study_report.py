"""The grid study's report: its tables carry the seeds' numbers as mean ± sample std, the enrichment is the
selection's "left out / D̄′", the figures' error bars are those stds, and provenance.json names the workers.

The study directory is written here in the study engine's layout (``study.json`` with ``"kind": "grid"``,
``<cell>/study.json``, ``<cell>/seed_<s>/`` run stores with hand-written scalars, ``done.json`` per step,
``provenance.json``): no training. Three cells: ``kmeans`` (a variant without the noise axis) and
``uniform`` at two truth-label noise rates; seeds 0, 1, 2; baseline and Co-Meta, two rounds each, except
seed 2 of ``kmeans`` which has finished round 1 only (a seed still running).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cometa.results import study_figures as SF
from cometa.results import study_tables as ST
from cometa.results.last_round import selection_enrichment
from cometa.results.report import ReportError, read_scalars, write_report
from cometa.results.study_report import write_study_report
from cometa.runs import RunStore

SEEDS = (0, 1, 2)
AXIS = "clustering.truth_noise"
CELLS = {"kmeans": ("kmeans", {}), "uniform,truth_noise=0.15": ("uniform", {AXIS: 0.15}),
         "uniform,truth_noise=0.35": ("uniform", {AXIS: 0.35})}
# Co-Meta's last-round audio EER on O per cell and seed (the headline number, checked by hand below)
AUDIO_O = {"kmeans": (0.18, 0.20, None), "uniform,truth_noise=0.15": (0.20, 0.22, 0.27),
           "uniform,truth_noise=0.35": (0.30, 0.33, 0.36)}
STAGE1_O = (0.25, 0.27, 0.29)  # seed -> Stage I's audio EER on O (every cell)
WORKERS = ("tcp://127.0.0.1:40001", "tcp://127.0.0.1:40002")
MACHINE = {"command": "cometa study noise.yaml --dask tcp://127.0.0.1:8786",
           "git": {"commit": "0123456789abcdef", "dirty": False}, "packages": {"numpy": "2.1.3"}, "python": "3.12.1",
           "cpu": {"model": "Intel(R) Xeon(R) Platinum 8481C", "vendor": "GenuineIntel", "simd": "AVX-512",
                   "flags": ["avx2", "fma", "avx512f"], "cores": 2, "cores_usable": 2},
           "openblas_coretype": "Haswell", "gpu": None, "host": "node1", "recorded_at": 1.0}


def _eer(cell: str, seed: int, strategy: str, rnd: int, lst: str, modality: str) -> float:
    """Every other EER: a formula, so that no two cells or lists coincide."""
    if (strategy, rnd, lst, modality) == ("cometa", 2, "O", "audio"):
        return AUDIO_O[cell][seed]  # type: ignore[return-value]
    base = {"kmeans": 0.10, "uniform,truth_noise=0.15": 0.12, "uniform,truth_noise=0.35": 0.14}[cell]
    return (base + 0.01 * seed + 0.02 * "OEH".index(lst) + {"audio": 0.0, "visual": 0.1, "fused": -0.02}[modality]
            + (0.03 if strategy == "baseline" else 0.0) - 0.01 * rnd)


def _rows(cell: str, seed: int) -> list[dict]:
    rounds = (1,) if AUDIO_O[cell][seed] is None else (1, 2)
    rows = [dict(stage=f"eval/{lst}", round=0, modality="audio", name="eer", value=STAGE1_O[seed] + 0.03 * i)
            for i, lst in enumerate("OEH")]
    for s in ("baseline", "cometa"):
        for r in rounds:
            rows += [dict(strategy=s, stage=f"eval/{lst}", round=r, modality=m, name="eer",
                          value=_eer(cell, seed, s, r, lst, m)) for lst in "OEH" for m in ("audio", "visual", "fused")]
            # consensus purity 0.60 + 0.01 s in round 1, 0.70 + 0.02 s in round 2: a gain of 0.10 + 0.01 s
            rows.append(dict(strategy=s, stage="labels", round=r, modality="consensus", name="purity",
                             value=(0.60 + 0.01 * seed) if r == 1 else (0.70 + 0.02 * seed)))
            for e, (d, drop_a, drop_v) in enumerate(((0.2, 0.40, 0.25), (0.3, 0.50, 0.35)), 1):
                rows.append(dict(strategy=s, stage="train", round=r, epoch=e, name="disagreement_noisy_frac", value=d))
                if s == "cometa":  # the baseline selects nothing: no dropped_noisy_frac
                    rows += [dict(strategy=s, stage="train", round=r, epoch=e, modality="audio",
                                  name="dropped_noisy_frac", value=drop_a + 0.05 * seed + (0.2 if r == 1 else 0.0)),
                             dict(strategy=s, stage="train", round=r, epoch=e, modality="visual",
                                  name="dropped_noisy_frac", value=drop_v)]
            # a per-step row: not an epoch mean, must not enter the enrichment
            rows.append(dict(strategy=s, stage="train", round=r, epoch=1, step=3, modality="audio",
                             name="dropped_noisy_frac", value=9.0))
    return rows


def _done(path: Path, **info) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "done.json").write_text(json.dumps({"inputs_hash": "h", **info}))


def _write_run(study: Path, cell: str, seed: int, k: int) -> None:
    run = study / cell / f"seed_{seed}"
    RunStore(run, create=True).log_many(_rows(cell, seed))
    (run / "config.yaml").write_text(f"seed: {seed}\npreset: tiny\n")
    shared = cell == "uniform,truth_noise=0.35"  # its corpus and Stage I come from the 0.15 cell
    for i, step in enumerate(["corpus", "stage1", "baseline/round_1", "cometa/round_1"]
                             + (["baseline/round_2", "cometa/round_2"] if AUDIO_O[cell][seed] is not None else [])):
        linked = shared and step in ("corpus", "stage1")
        _done(run / step, step=step, seconds=10.0 * (i + 1), started_at=1000.0 + 100 * k + i,
              finished_at=1000.0 + 100 * k + i + 10.0 * (i + 1), worker=WORKERS[(k + i) % 2],
              **({"shared_from": f"uniform,truth_noise=0.15/seed_{seed}"} if linked else {}))


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    study = tmp_path_factory.mktemp("grid") / "noise"
    cells = []
    for k, (cell, (variant, values)) in enumerate(CELLS.items()):
        runs = [f"{cell}/seed_{s}" for s in SEEDS]
        overrides = {"clustering.method": "truth", **values} if variant == "uniform" else {}
        cells.append({"name": cell, "variant": variant, "values": values, "overrides": overrides, "runs": runs})
        for s in SEEDS:
            _write_run(study, cell, s, 3 * k + s)
        (study / cell / "study.json").write_text(json.dumps({"preset": "tiny", "seeds": list(SEEDS),
                                                             "overrides": [], "runs": [f"seed_{s}" for s in SEEDS]}))
    (study / "study.json").write_text(json.dumps({
        "kind": "grid", "name": "noise", "preset": "tiny", "strategies": ["baseline", "cometa"], "seeds": list(SEEDS),
        "axes": {AXIS: [0.15, 0.35]}, "variants": ["kmeans", "uniform"], "cells": cells,
        "runs": [r for c in cells for r in c["runs"]], "spec": {"name": "noise"}, "spec_path": "/specs/noise.yaml"}))
    (study / "provenance.json").write_text(json.dumps({
        "spec": {"name": "noise"}, "command": MACHINE["command"],
        "executor": {"kind": "dask", "address": "tcp://127.0.0.1:8786", "workers": list(WORKERS)}, "machine": MACHINE}))
    return study


@pytest.fixture(scope="module")
def report_dir(study) -> Path:
    return write_report(study, static=False)  # cometa report STUDY_DIR: dispatched to the grid study's report


@pytest.fixture(scope="module")
def table(study):
    return ST.study_table(study).set_index(["cell", "strategy"])


# --------------------------------------------------------------------------------------------- tables
def test_headline_numbers_are_mean_and_sample_std_over_seeds(table):
    row = table.loc[("uniform,truth_noise=0.15", "cometa")]
    # hand-checked: 0.20, 0.22, 0.27 -> mean 0.23, deviations -0.03, -0.01, 0.04, sample var 26e-4 / 2
    assert row["audio_eer_O_mean"] == pytest.approx(0.23)
    assert row["audio_eer_O_std"] == pytest.approx(math.sqrt(13e-4))
    assert row["n_seeds"] == 3 and row["round"] == 2
    # purity gains 0.10, 0.11, 0.12
    assert row["purity_gain_mean"] == pytest.approx(0.11) and row["purity_gain_std"] == pytest.approx(0.01)
    assert row["stage1_audio_eer_O_mean"] == pytest.approx(0.27)
    assert row["stage1_audio_eer_O_std"] == pytest.approx(0.02)
    # a seed that has finished round 1 only does not count in round 2
    km = table.loc[("kmeans", "cometa")]
    assert km["n_seeds"] == 2 and km["audio_eer_O_mean"] == pytest.approx(0.19)
    assert km["audio_eer_O_std"] == pytest.approx(np.std([0.18, 0.20], ddof=1))
    assert km["stage1_audio_eer_O_n"] == 3  # Stage I is done in all three


def test_every_list_and_modality_of_the_last_round(table):
    for cell in CELLS:
        for s in ("baseline", "cometa"):
            row = table.loc[(cell, s)]
            seeds = [x for x in SEEDS if AUDIO_O[cell][x] is not None]
            for lst in "OEH":
                for m in ("audio", "visual", "fused"):
                    v = [_eer(cell, x, s, 2, lst, m) for x in seeds]
                    assert row[f"{m}_eer_{lst}_mean"] == pytest.approx(np.mean(v)), (cell, s, lst, m)
                    assert row[f"{m}_eer_{lst}_std"] == pytest.approx(np.std(v, ddof=1)), (cell, s, lst, m)


def test_enrichment_is_left_out_over_d_prime(table):
    # Co-Meta, round 2, per seed: audio epochs (0.40 + 0.05 s, 0.50 + 0.05 s) over D̄′'s (0.2, 0.3)
    ratios = [(0.45 + 0.05 * s) / 0.25 for s in SEEDS]  # 1.8, 2.0, 2.2 (round 1's larger values left out)
    row = table.loc[("uniform,truth_noise=0.35", "cometa")]
    assert row["enrichment_audio_mean"] == pytest.approx(2.0) == pytest.approx(np.mean(ratios))
    assert row["enrichment_audio_std"] == pytest.approx(0.2)
    assert row["enrichment_visual_mean"] == pytest.approx(0.30 / 0.25) and row["enrichment_visual_n"] == 3
    base = table.loc[("uniform,truth_noise=0.35", "baseline")]
    assert math.isnan(base["enrichment_audio_mean"]) and base["enrichment_audio_n"] == 0


def test_selection_enrichment_by_hand():
    import pandas as pd

    train = pd.DataFrame([{"name": "disagreement_noisy_frac", "modality": None, "value": 0.1},
                          {"name": "disagreement_noisy_frac", "modality": None, "value": 0.3},
                          {"name": "dropped_noisy_frac", "modality": "audio", "value": 0.5},
                          {"name": "selected_noisy_frac", "modality": "audio", "value": 0.05},
                          {"name": "dropped_noisy_frac", "modality": "visual", "value": 0.1}])
    e = selection_enrichment(train)
    assert e["disagreement_noisy"] == pytest.approx(0.2) and e["dropped_ratio_audio"] == pytest.approx(2.5)
    assert e["dropped_ratio_visual"] == pytest.approx(0.5) and e["selected_noisy_audio"] == pytest.approx(0.05)
    assert math.isnan(e["selected_noisy_visual"])
    assert math.isnan(selection_enrichment(train[train["name"] != "disagreement_noisy_frac"])["dropped_ratio_audio"])


def _md_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each Markdown table of ``text``: (heading cells, body rows)."""
    out, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            out.append((block[0], block[2:]))
            block = []
    return out


def test_study_md_headline_table_first(report_dir):
    text = (report_dir / "study.md").read_text()
    (head, rows), (gain_head, gain_rows), (full_head, full_rows), (s1_head, s1_rows) = _md_tables(text)
    assert gain_head == ["Cell", "Strategy", "Seeds", "gain", "95 % interval", "wins"]
    # hand-checked (see test_gain_over_the_baseline_is_paired_by_seed)
    assert gain_rows[1] == ["uniform,truth_noise=0.15", "Co-Meta", "3", "-9.00", "[-15.57, -2.43]", "0/3"]
    assert head[:3] == ["Cell", "Strategy", "Seeds"] and len(head) == 9 and len(rows) == 6
    # visual 0.20 + 0.01 s, fused 0.08 + 0.01 s (see _eer); enrichment 1.8, 2.0, 2.2 and 1.2 in every seed
    assert rows[3] == ["uniform,truth_noise=0.15", "Co-Meta", "3", "23.00 ± 3.61", "21.00 ± 1.00", "9.00 ± 1.00",
                       "0.110 ± 0.010", "2.00 ± 0.20", "1.20 ± 0.00"]
    assert rows[2][:2] == ["uniform,truth_noise=0.15", "Baseline"] and rows[2][-2:] == ["-", "-"]  # no selection
    assert rows[1][:4] == ["kmeans", "Co-Meta", "2", "19.00 ± 1.41"]
    # the full table: variant and axis columns (kmeans has no noise rate), O, E and H
    assert full_head[:6] == ["Cell", "Variant", AXIS, "Strategy", "Round", "Seeds"]
    assert full_rows[0][:3] == ["kmeans", "kmeans", "-"] and full_rows[4][:3] == ["uniform,truth_noise=0.35", "uniform",
                                                                                     "0.35"]
    assert len(full_head) == 6 + 14 and "audio EER H (%)" in full_head
    assert s1_head[0] == "Cell" and s1_rows[0][:3] == ["kmeans", "3", "27.00 ± 2.00"]
    # the header: commit, CPU and SIMD, cores, OPENBLAS_CORETYPE, executor, command
    for needle in ("0123456789abcdef", "Platinum 8481C", "AVX-512", "2 cores", "OPENBLAS_CORETYPE Haswell",
                   "Executor dask at tcp://127.0.0.1:8786, 2 worker(s)", MACHINE["command"]):
        assert needle in text.split("|")[0], needle


def test_study_csv_and_tex(report_dir, table):
    with open(report_dir / "study.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and list(rows[0])[:6] == ["cell", "variant", AXIS, "strategy", "round", "n_seeds"]
    row = next(r for r in rows if r["cell"] == "uniform,truth_noise=0.15" and r["strategy"] == "cometa")
    assert float(row["audio_eer_O_mean"]) == pytest.approx(0.23) and float(row[AXIS]) == 0.15
    assert float(row["audio_eer_O_std"]) == pytest.approx(math.sqrt(13e-4)) and row["audio_eer_O_n"] == "3"
    assert next(r for r in rows if r["cell"] == "kmeans")[AXIS] == ""
    tex = (report_dir / "study.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 2 and tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 2
    assert r"uniform,truth\_noise=0.15 & Co-Meta & 3 & 23.00 $\pm$ 3.61" in tex
    assert r"$\bar{D}'$" in tex and "±" not in tex


def test_provenance_names_the_workers_and_wall_times(study, report_dir):
    prov = json.loads((report_dir / "provenance.json").read_text())
    assert prov["machine"] == MACHINE and prov["executor"]["workers"] == list(WORKERS)
    steps = {(s["run"], s["step"]): s for s in prov["steps"]}
    assert len(steps) == 9 * 4 + 8 * 2  # kmeans seed 2 has no round 2
    s = steps[("uniform,truth_noise=0.15/seed_1", "cometa/round_2")]
    done = json.loads((study / "uniform,truth_noise=0.15" / "seed_1" / "cometa" / "round_2" / "done.json").read_text())
    assert (s["worker"], s["seconds"], s["started_at"], s["finished_at"]) == \
        (done["worker"], 60.0, done["started_at"], done["finished_at"]) and s["shared_from"] is None
    linked = steps[("uniform,truth_noise=0.35/seed_2", "stage1")]
    assert linked["shared_from"] == "uniform,truth_noise=0.15/seed_2"
    computed = [x for x in prov["steps"] if x["shared_from"] is None]
    assert len(computed) == len(steps) - 6  # corpus and Stage I of three seeds were hard-linked
    for w in WORKERS:
        mine = [x for x in computed if x["worker"] == w]
        assert prov["workers"][w] == {"steps": len(mine), "seconds": pytest.approx(sum(x["seconds"] for x in mine))}
    header = (report_dir / "study.md").read_text().split("|")[0]
    assert f"{len(computed)} steps computed, 6 shared" in header
    assert all(f"{w} {prov['workers'][w]['steps']} steps, {prov['workers'][w]['seconds']:.0f} s" in header
               for w in WORKERS)


def test_axis_figure_error_bars_are_the_sample_std(study):
    t = ST.study_table(study)
    fig = SF.metric_vs_axis(t, axis=AXIS, metric="audio_eer_O")
    (trace,) = [tr for tr in fig.data if tr.name == "Co-Meta · uniform"]
    assert list(trace.x) == [0.15, 0.35]
    np.testing.assert_allclose(trace.y, [23.0, 33.0])
    np.testing.assert_allclose(trace.error_y.array, [100 * math.sqrt(13e-4), 3.0])
    assert trace.error_y.visible and len(fig.data) == 4
    # kmeans has no noise rate: a dotted line at its mean (0.18, 0.20: seed 2 has not finished) across the axis
    (ref,) = [tr for tr in fig.data if tr.name == f"Co-Meta · kmeans (no {AXIS})"]
    assert list(ref.x) == [0.15, 0.35] and list(ref.y) == pytest.approx([19.0, 19.0]) and ref.line.dash == "dot"
    grid = SF.axis_figure(t, axis=AXIS)
    assert {tr.name for tr in grid.data} == {"Co-Meta · uniform", "Baseline · uniform", f"Co-Meta · kmeans (no {AXIS})",
                                             f"Baseline · kmeans (no {AXIS})"}
    # one line per strategy and cell in every panel but the enrichment's, where the baseline has none
    assert len(grid.data) == 4 * len(ST.HEADLINE) - 2 and sum(tr.showlegend for tr in grid.data) == 4


def test_round_curves_of_every_cell(study):
    rounds = ST.round_table(study)
    fig = SF.round_curves(rounds, metric="audio_eer_O")
    assert [a.text for a in fig.layout.annotations] == list(CELLS)
    lines = [tr for tr in fig.data if tr.mode == "lines+markers"]
    assert len(lines) == 2 * len(CELLS)
    km = rounds[(rounds["cell"] == "kmeans") & (rounds["strategy"] == "cometa") & (rounds["metric"] == "audio_eer_O")]
    assert km.set_index("round")["n"].to_dict() == {1: 3, 2: 2}
    assert km.set_index("round").loc[2, "mean"] == pytest.approx(0.19)
    pur = rounds[(rounds["cell"] == "kmeans") & (rounds["metric"] == "purity") & (rounds["round"] == 1)]
    assert pur["mean"].tolist() == pytest.approx([0.61, 0.61])


def test_report_files_and_html(report_dir):
    names = {p.name for p in report_dir.iterdir()}
    assert {"study.md", "study.csv", "study.tex", "provenance.json", "report.html"} <= names
    page = (report_dir / "report.html").read_text()
    assert "Platinum 8481C" in page and "fig-vs_clustering_truth_noise" in page and "fig-purity_per_round" in page
    assert "<caption>Study noise: the last round of each cell." in page


def test_a_study_without_provenance_says_so(study, tmp_path):
    import shutil

    copy = tmp_path / "noise"
    shutil.copytree(study, copy, ignore=shutil.ignore_patterns("report", "provenance.json"))
    done = copy / "kmeans" / "seed_0" / "stage1" / "done.json"  # a step recorded before the study engine
    done.write_text(json.dumps({k: v for k, v in json.loads(done.read_text()).items() if k != "worker"}))
    out = write_study_report(copy, static=False)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["spec"] == {"name": "noise"} and "machine" not in prov and len(prov["steps"]) == 52
    assert prov["workers"]["unrecorded"] == {"steps": 1, "seconds": 20.0}
    assert "No provenance.json in the study directory" in (out / "study.md").read_text()


# ----------------------------------------------------------------------------- a grid is not a seed study
def test_a_grid_study_is_never_read_as_the_seeds_of_one_study(study):
    with pytest.raises(ReportError, match="grid study"):
        read_scalars(study)
    with pytest.raises(ReportError, match="--compare"):
        write_report(study, static=False, compare=[study / "kmeans"])


def test_a_cell_is_a_seed_study_with_its_own_report(study):
    cell = study / "uniform,truth_noise=0.15"
    scalars = read_scalars(cell)
    assert sorted(scalars["seed"].unique()) == [0, 1, 2]
    out = write_report(cell, static=False)
    t1 = (out / "table1.md").read_text()
    assert "over 3 seeds" in t1 and "23.00 ± 3.61" in t1  # Co-Meta audio, round 2


def test_a_bad_study_json_is_named(tmp_path):
    (tmp_path / "study.json").write_text(json.dumps({"kind": "grid", "axes": {}, "cells": [{"name": "a"}]}))
    with pytest.raises(ReportError, match=r"study.json: cells\[0\] needs"):
        write_study_report(tmp_path, static=False)
    assert not (tmp_path / "report").exists()


def test_gain_over_the_baseline_is_paired_by_seed(study, report_dir):
    """baseline minus Co-Meta in last-round audio EER on O, seed by seed (see _eer and AUDIO_O): in the
    0.15 cell the baseline's is 0.13 + 0.01 s and Co-Meta's 0.20, 0.22, 0.27, so the gains are -0.07,
    -0.08, -0.12: mean -0.09, sample std 0.026458, 95 % half-width t(0.975, 2) 4.302653 x 0.026458 /
    sqrt(3) = 0.065724. In the k-means cell seed 2 stopped after round 1 (no pair): gains -0.07, -0.08
    over two seeds, half-width t(0.975, 1) 12.706205 x 0.0070711 / sqrt(2) = 0.063531."""
    from cometa.results.study_gain import baseline_gain

    study_record = ST.read_study(study)
    gain = baseline_gain(ST.seed_table(study, study_record), axes=[AXIS]).set_index("cell")
    g = gain.loc["uniform,truth_noise=0.15"]
    assert g["strategy"] == "cometa" and g["n"] == 3 and g["wins"] == 0
    assert g["gain_mean"] == pytest.approx(-0.09, abs=1e-12)
    assert g["gain_lo"] == pytest.approx(-0.09 - 0.065724, abs=1e-6)
    assert g["gain_hi"] == pytest.approx(-0.024276, abs=1e-6)
    k = gain.loc["kmeans"]
    assert k["n"] == 2 and k["gain_mean"] == pytest.approx(-0.075, abs=1e-12)
    assert k["gain_hi"] - k["gain_mean"] == pytest.approx(0.063531, abs=1e-6) and math.isnan(k[AXIS])
    assert (report_dir / "gain_over_baseline.csv").exists()
    fig = SF.gain_figure(gain.reset_index(), axis=AXIS)
    line = next(t for t in fig.data if t.name == "Co-Meta · uniform")
    assert list(line.x) == [0.15, 0.35] and line.y[0] == pytest.approx(-9.0)
    assert line.error_y.array[0] == pytest.approx(6.5724, abs=1e-3)
    assert any(t.name.endswith("kmeans") and t.line.dash == "dot" for t in fig.data)  # the cell without the axis
