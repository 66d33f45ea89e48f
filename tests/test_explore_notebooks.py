"""Every exploration notebook (notebooks/explore/) run with papermill against the tiny run, so none
can rot; each test then checks what the notebook produced against the run API or the run's files.

The "what if" notebook reruns round 2 of the tiny run with another τ: its new run directory is checked
for what it reused (the same files and scalars as the source) and what it changed (λ of the rerun
round follows the new τ, Algorithm 1 line 13).
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

import cometa

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
EXPLORE = ROOT / "notebooks" / "explore"
NOTEBOOKS = ["explore_run", "diagnose_label_noise", "paper_figures", "what_if", "dashboard_views"]


def run_notebook(name: str, work: Path, **parameters) -> dict:
    """Execute ``notebooks/explore/<name>.ipynb`` as the pipeline does (its own kernel, this checkout
    on the kernel's path); returns the executed notebook (papermill raises if a cell fails)."""
    import papermill as pm

    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(dict.fromkeys([str(ROOT), *paths])))
        out = work / f"{name}.ipynb"
        pm.execute_notebook(str(EXPLORE / f"{name}.ipynb"), str(out), parameters=parameters, kernel_name="python3",
                            cwd=str(EXPLORE), progress_bar=False, shutdown_kernel="immediate")
    return json.loads(out.read_text())


def outputs(nb: dict, code: str) -> list[dict]:
    """The outputs of the code cell whose source contains ``code``."""
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and code in "".join(c["source"])]
    assert len(cells) == 1, f"{len(cells)} cells contain {code!r}"
    return cells[0]["outputs"]


def text(outs: list[dict]) -> str:
    return "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in outs)


def plotly(outs: list[dict]) -> list[dict]:
    return [o["data"]["application/vnd.plotly.v1+json"] for o in outs
            if "application/vnd.plotly.v1+json" in o.get("data", {})]


def test_the_notebooks_are_committed_without_outputs_and_take_run_dir():
    assert sorted(p.stem for p in EXPLORE.glob("*.ipynb")) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        nb = json.loads((EXPLORE / f"{name}.ipynb").read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), name
        params = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
        assert len(params) == 1 and "".join(params[0]["source"]).startswith('run_dir = ""'), name


def test_explore_run_on_a_study(tiny_study, tmp_path):
    nb = run_notebook("explore_run", tmp_path, run_dir=str(tiny_study), trial_list="O")
    study = cometa.open_run(tiny_study)
    assert text(outputs(nb, "run.table1(trial_list).round(2)")) == repr(study.table1("O").round(2))
    figs = plotly(outputs(nb, "run.eer_per_round("))
    assert len(figs) == 1 and "mean ± std over 2 seeds" in figs[0]["layout"]["title"]["text"]
    side = plotly(outputs(nb, "runs.compare('eer_per_round'"))  # EER and purity, seed by seed
    assert len(side) == 2 and all([a["text"] for a in f["layout"]["annotations"]] == ["study/seed_0", "study/seed_1"]
                                  for f in side)


def test_diagnose_label_noise(tiny_run, tmp_path):
    nb = run_notebook("diagnose_label_noise", tmp_path, run_dir=str(tiny_run), strategy="baseline", round_no=2)
    run = cometa.open_run(tiny_run)
    both = run.wrong_in_both("baseline", 2)
    assert f"round 2: {len(both)} of 96 utterances wrong in both modalities" in text(outputs(nb, "both = run."))
    worst = run.label_history("baseline").sort_values(["rounds_wrong", "wrong_both", "flips"], ascending=False)
    media = outputs(nb, "run.utterance(key)")
    html = "".join("".join(o["data"].get("text/html", "")) for o in media if "data" in o)
    key = worst.index[0]
    assert key in html and "<audio controls src='data:audio/wav;base64," in html
    assert html.count("<img") == len(run.utterance(key).frames) > 0
    pivot = text(outputs(nb, "events.pivot_table("))
    first = run.identity_events("baseline").iloc[0]
    assert first["speaker"] in pivot and first["event"] in pivot
    assert len(plotly(outputs(nb, "run.sample_history("))) == 1


def test_paper_figures(tiny_run, tmp_path):
    from PIL import Image

    out = tmp_path / "figures"
    run_notebook("paper_figures", tmp_path, run_dir=str(tiny_run), out_dir=str(out),
                 figures="eer_per_round,det_curves", width=500, font_size=9, colors="cometa:#000000",
                 formats="pdf,svg,png", scale=2)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{f}.{x}" for f in ("eer_per_round", "det_curves")
                                                           for x in ("pdf", "svg", "png"))
    height = round(420 * 500 / 900)  # eer_per_round is 420 px high at the report's 900 px
    assert Image.open(out / "eer_per_round.png").size == (1000, 2 * height)
    svg = (out / "eer_per_round.svg").read_text()
    assert 'width="500"' in svg[:400] and f'height="{height}"' in svg[:400]
    assert "font-size: 9px" in svg and "EER (%) per round" not in svg  # a paper's font, no title
    assert (out / "det_curves.pdf").read_bytes()[:5] == b"%PDF-"


def test_what_if_reruns_one_round_and_reuses_the_rest(tiny_run, tmp_path):
    new_dir = tmp_path / "tiny-tau0.45"
    nb = run_notebook("what_if", tmp_path, run_dir=str(tiny_run), round_no=2, strategy="cometa", tau=0.45,
                      out_dir=str(new_dir), threads=1)
    src_cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    cfg = yaml.safe_load((new_dir / "config.yaml").read_text())
    assert cfg["stage2"]["tau"] == 0.45 and src_cfg["stage2"]["tau"] == 0.2
    assert cfg["stage2"]["strategies"] == ["cometa"] and cfg["stage2"]["rounds"] == 2
    record = json.loads((new_dir / "what_if.json").read_text())
    assert record["overrides"] == ["stage2.tau=0.45"] and record["round"] == 2

    # reused, not rerun: the same done markers, the same checkpoints (hard links), the same scalars
    for step in ("corpus", "stage1", "cometa/round_1"):
        assert (new_dir / step / "done.json").read_bytes() == (tiny_run / step / "done.json").read_bytes(), step
    assert (new_dir / "stage1" / "model.pt").read_bytes() == (tiny_run / "stage1" / "model.pt").read_bytes()
    assert not (new_dir / "baseline").exists() and not (new_dir / "cometa" / "round_3").exists()

    def rows(run_dir: Path, where: str) -> pd.DataFrame:
        con = sqlite3.connect(run_dir / "store.sqlite")
        df = pd.read_sql_query(f"SELECT strategy, stage, round, epoch, step, modality, name, value, time FROM scalars "
                               f"WHERE {where} ORDER BY stage, name, modality, epoch, step, time", con)
        con.close()
        return df

    before = "(strategy IS NULL OR (strategy = 'cometa' AND round = 1))"
    pd.testing.assert_frame_equal(rows(new_dir, before), rows(tiny_run, before))

    # rerun with the new τ: epoch 2 (round 2's) trains with λ(1) = 1 - min(1/E_k · τ, τ)
    e_k = cfg["stage2"]["e_k"]
    lam = "strategy = 'cometa' AND round = 2 AND name = 'lambda' AND step IS NULL"
    assert rows(new_dir, lam)["value"].tolist() == pytest.approx([1 - min(1 / e_k * 0.45, 0.45)])
    assert rows(tiny_run, lam)["value"].tolist() == pytest.approx([1 - min(1 / e_k * 0.2, 0.2)])
    done = json.loads((new_dir / "cometa" / "round_2" / "done.json").read_text())
    assert done["inputs_hash"] != json.loads((tiny_run / "cometa" / "round_2" / "done.json").read_text())["inputs_hash"]
    assert len(rows(new_dir, "strategy = 'cometa' AND round = 2 AND stage = 'eval/O'")) == 9  # 3 metrics x 3 modalities

    summary = text(outputs(nb, "summary = pd.DataFrame("))
    assert "λ (epoch mean)" in summary and "what if" in summary
    new = cometa.open_run(new_dir)
    assert new.round_summary("cometa", 2)["λ (epoch mean)"] == pytest.approx(1 - 0.045)
    assert len(plotly(outputs(nb, "both.compare('eer_per_round')"))) == 1

    # again with the same arguments: nothing to do; with others into the same place: refused
    from cometa.pipeline.rerun import what_if

    mtime = (new_dir / "cometa" / "round_2" / "done.json").stat().st_mtime_ns
    what_if(tiny_run, round_=2, out_dir=new_dir, overrides=["stage2.tau=0.45"], strategy="cometa")
    assert (new_dir / "cometa" / "round_2" / "done.json").stat().st_mtime_ns == mtime
    with pytest.raises(FileExistsError, match="not a what-if"):
        what_if(tiny_run, round_=2, out_dir=new_dir, overrides=["stage2.tau=0.3"], strategy="cometa")


def test_dashboard_views_render_in_the_notebook(tiny_run, tmp_path):
    nb = run_notebook("dashboard_views", tmp_path, run_dir=str(tiny_run))
    titles = {"Overview": "EER (%) per round", "Label quality": "purity per round",
              "Training dynamics": "training dynamics", "Verification": "DET curves",
              "Embeddings": "joint embeddings", "Noise diagnosis": "label history"}
    for view, title in titles.items():
        outs = outputs(nb, f'views["{view}"]')
        data = [o["data"] for o in outs if "application/vnd.holoviews_exec.v0+json" in o.get("data", {})]
        assert len(data) == 1, view  # rendered by Panel's notebook extension
        assert title in "".join(data[0]["text/html"]), (view, title)
