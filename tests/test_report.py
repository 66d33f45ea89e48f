"""cometa.results.report: the tables carry the run store's numbers exactly; every file is written and well formed.

The run directory is a copy of the session's real tiny run (``tests/conftest.py``): three strategies,
two rounds, written by the pipeline itself.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cometa.results import report

FIGURES = ("eer_per_round", "purity_per_round", "disagreement_lambda", "umap_grid", "det_curves")
NAMES = {"Baseline": "baseline", "Co-teaching+": "coteaching_plus", "Co-Meta": "cometa"}


@pytest.fixture(scope="module")
def run_dir(run_copy) -> Path:
    return run_copy("report_run", ignore=("*.pt", "report"))


@pytest.fixture(scope="module")
def report_dir(run_dir) -> Path:
    return report.write_report(run_dir)


def _md_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("|")]
    split = lambda ln: [c.strip().strip("*") for c in ln.strip().strip("|").split("|")]  # noqa: E731
    return split(lines[0]), [split(ln) for ln in lines[2:]]


def _eer(df: pd.DataFrame, lst: str, strategy: str | None, rnd: int, modality: str, name: str = "eer") -> float:
    sel = df[(df["stage"] == f"eval/{lst}") & (df["round"] == rnd) & (df["modality"] == modality)
             & (df["name"] == name)]
    sel = sel[sel["strategy"].isna()] if strategy is None else sel[sel["strategy"] == strategy]
    assert len(sel) == 1, (lst, strategy, rnd, modality, name)
    return float(sel["value"].iloc[0])


def test_table1_matches_store(run_dir, report_dir, sqlite_scalars):
    df = sqlite_scalars(run_dir)
    head, rows = _md_rows(report_dir / "table1.md")
    assert head[0] == "Stage" and [r[0] for r in rows] == ["Untrained", "Stage I", "Round 1", "Round 2"]
    assert head[1:] == [f"{s} {m}" for s in NAMES for m in ("Audio", "Visual")]
    # the encoder before Stage I, and Stage I, only in the first strategy's Audio column, as in the paper
    assert rows[0][1] == f"{100 * _eer(df, 'O', None, 0, 'audio', 'eer_untrained'):.2f}"
    assert rows[1][1] == f"{100 * _eer(df, 'O', None, 0, 'audio'):.2f}"
    assert set(rows[0][2:]) == set(rows[1][2:]) == {"-"}
    for row in rows[2:]:
        rnd = int(row[0].split()[1])
        for col, cell in zip(head[1:], row[1:]):
            name, mod = col.rsplit(" ", 1)
            assert float(cell) == round(100 * _eer(df, "O", NAMES[name], rnd, mod.lower()), 2), (row[0], col)
    # the best last-round cell is bold, like the paper's 1.27
    assert "**" in (report_dir / "table1.md").read_text().splitlines()[-1]


def test_table2_matches_store(run_dir, report_dir, sqlite_scalars):
    df = sqlite_scalars(run_dir)
    head, rows = _md_rows(report_dir / "table2.md")
    assert head[:3] == ["Strategy", "Modality", "Round"] and len(rows) == 9
    for row in rows:
        strategy, mod, rnd = NAMES[row[0]], row[1].lower(), int(row[2])
        assert rnd == df.loc[df["strategy"] == strategy, "round"].max()
        for col, cell in zip(head[3:], row[3:]):
            lst = col.split()[0].split("-")[1]
            base = col.removesuffix(" AS-norm")  # the analysis step's AS-norm value beside each metric
            metric = ("eer" if base.endswith("EER %") else "min_dcf_" + base.split()[-1]) \
                + ("_asnorm" if col.endswith(" AS-norm") else "")
            v = _eer(df, lst, strategy, rnd, mod, metric)
            assert float(cell) == (round(100 * v, 2) if metric.startswith("eer") else round(v, 4)), (row[:2], col)
    assert sum(c.endswith("AS-norm") for c in head) == 9  # O, E, H x EER, minDCF 0.01, 0.05


def test_strategy_comparison_and_label_issue_tables_match_store(run_dir, report_dir, sqlite_scalars):
    df = sqlite_scalars(run_dir)
    head, rows = _md_rows(report_dir / "table3.md")
    assert [r[0] for r in rows] == list(NAMES)
    for row in rows:
        s, rnd = NAMES[row[0]], int(row[1])
        cells = dict(zip(head, row))
        for m in ("audio", "visual", "fused"):
            assert float(cells[f"EER % {m}"]) == round(100 * _eer(df, "O", s, rnd, m), 2)
            assert float(cells[f"EER % {m} AS-norm"]) == round(100 * _eer(df, "O", s, rnd, m, "eer_asnorm"), 2)
        tr = df[(df["strategy"] == s) & (df["stage"] == "train") & (df["round"] == rnd) & df["step"].isna()
                & (df["name"] == "selected_noisy_frac") & (df["modality"] == "audio")]
        assert float(cells["selected_noisy_frac audio"]) == round(tr.loc[tr["epoch"].idxmax(), "value"], 3)
    head, rows = _md_rows(report_dir / "table4.md")
    assert [(r[0], r[1]) for r in rows] == [(n, str(r)) for n in NAMES for r in (1, 2)]
    li = df[(df["stage"] == "label_issues/self_confidence") & (df["name"] == "label_issue_auroc")
            & (df["modality"] == "joint") & (df["strategy"] == "cometa") & (df["round"] == 2)]
    assert float(dict(zip(head, rows[-1]))["SC joint AUROC"]) == round(li["value"].iloc[0], 3)


def test_tables_json_has_exact_numbers(run_dir, report_dir, sqlite_scalars):
    df = sqlite_scalars(run_dir)
    t = json.loads((report_dir / "tables.json").read_text())
    assert t["table1"]["values"]["Round 2"]["cometa/visual"] == _eer(df, "O", "cometa", 2, "visual")
    assert t["table1"]["values"]["Stage I"] == {"baseline/audio": _eer(df, "O", None, 0, "audio")}
    last = next(r for r in t["table2"]["rows"] if r["strategy"] == "coteaching_plus" and r["modality"] == "fused")
    assert last["H/min_dcf_0.05"] == _eer(df, "H", "coteaching_plus", 2, "fused", "min_dcf_0.05")


def test_latex_uses_booktabs(report_dir):
    for name in ("table1.tex", "table2.tex"):
        tex = (report_dir / name).read_text()
        assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule")), name
        assert tex.count(r"\begin{tabular}") == 1 and r"\hline" not in tex


def test_every_file_written(report_dir):
    for stem in FIGURES:
        svg = (report_dir / f"{stem}.svg").read_bytes()
        pdf = (report_dir / f"{stem}.pdf").read_bytes()
        png = (report_dir / f"{stem}.png").read_bytes()
        assert b"<svg" in svg[:500] and len(svg) > 1000, stem
        assert pdf.startswith(b"%PDF") and b"/FontFile" in pdf, stem  # vector, fonts embedded
        assert png.startswith(b"\x89PNG"), stem
    page = (report_dir / "report.html").read_text()
    assert page.count("plotly.js v") == 1  # plotly.js inlined once
    assert page.count("Plotly.newPlot") == len(FIGURES)
    assert "<table>" in page and "Stage I" in page and "src=\"http" not in page  # self-contained


def test_missing_browser_names_the_fix(run_dir, monkeypatch):
    from choreographer.browsers.chromium import Chromium

    monkeypatch.setattr(Chromium, "find_browser", classmethod(lambda cls, **kw: None))
    with pytest.raises(report.ReportError, match="apt-get install chromium"):
        report.write_report(run_dir)


def test_no_static_skips_browser_and_main_reports_errors(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 1
    assert "no store.sqlite" in capsys.readouterr().err


def test_grid_rounds_are_evenly_spaced_with_the_first_and_the_last():
    assert report.grid_rounds(range(1, 21)) == [1, 5, 9, 12, 16, 20]  # j * 19 / 5 rounded, j = 0..5
    assert report.grid_rounds([3, 1, 2]) == [1, 2, 3]
    assert report.grid_rounds(range(1, 11), at_most=3) == [1, 5, 10]  # indices 0, 4.5 -> 4 (half to even), 9


def test_umap_grid_shows_every_step_th_key_the_same_utterances_in_every_panel(run_dir, monkeypatch):
    from cometa.results import figures as F

    monkeypatch.setattr(report, "GRID_POINTS", 7)
    fig = report.report_figures(run_dir)["umap_grid"]
    proj = pd.read_parquet(run_dir / "cometa" / "round_2" / "projection.parquet")
    joint = F.projection_frame(proj, None)  # the grid's panel before the cap
    want = sorted(joint["key"])[::-(-len(joint) // 7)]  # every step-th key in key order
    assert 0 < len(want) <= 7
    panels: dict[str, list[str]] = {}
    for trace in fig.data:  # one panel per (x axis) subplot, its points over the right/wrong/dropped traces
        panels.setdefault(trace.xaxis, []).extend(str(t).split("<br>")[0] for t in trace.text)
    assert len(panels) == 6  # 3 strategies x 2 rounds
    assert all(sorted(keys) == sorted(want) for keys in panels.values())
