"""The dashboard: its data store on a run directory, and every view in a real browser.

The browser test serves ``python -m dashboards.app`` on a free port of 127.0.0.1, opens every tab in
Debian's Chromium through Playwright, moves the Embeddings round slider, checks that plots rendered
and show the chosen round (title and point count), exports a figure as SVG, and that the console
stayed free of errors. Screenshots go to a temporary directory (printed), and to
``reports/screenshots/<view>.png`` when ``COMETA_SCREENSHOTS=1``. The run directory is the session's
real tiny run (``tests/conftest.py``: three strategies, two rounds, written by the pipeline itself).
A grid study (``cometa study``'s layout: two cells of two seeds, copies of that run with scaled EERs)
opens as its cells: the picker chooses the cell every view shows, and the Study tab shows the study
report's own table and figures; it is served and driven in Chromium too.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cometa.runs import list_runs, run_lock
from tools.screenshot_dashboard import CHROMIUM, launch_chromium
from tools.screenshot_dashboard import free_port as _free_port
from tools.screenshot_dashboard import serve as start_server
from tools.screenshot_dashboard import stop as stop_server

pytestmark = pytest.mark.slow  # the dashboard served and driven in Chromium

ROOT = Path(__file__).resolve().parents[1]
TABS = {  # tab -> text a plot title shows once the tab rendered
    "Label quality": "purity per round",
    "Training dynamics": "training dynamics",
    "Verification": "DET curves · round 1",
    "Embeddings": "round 1",
    "Noise diagnosis": "label history",
}
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture(scope="module")
def run_dir(tiny_run) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def n_train(run_dir) -> int:
    """Training utterances of the run: the labels of every round have one row each."""
    return json.loads((run_dir / "corpus" / "counts.json").read_text())["train"]["utterances"]


# ------------------------------------------------------------------------------------ data store
def test_run_data_reads_the_run(run_dir, n_train):
    from dashboards.data import RunData

    data = RunData([str(run_dir)])
    rid = data.run_ids[0]
    assert data.strategies(rid) == ["baseline", "coteaching_plus", "cometa"]
    assert data.rounds(rid) == [1, 2] and data.planned_rounds(rid) == 2
    steps = data.steps(rid)
    assert set(steps["status"]) == {"done"} and steps["seconds"].notna().all()
    assert steps["step"].tolist()[:3] == ["corpus", "stage1", "baseline/round_1"]
    assert steps["step"].tolist()[-1] == "projections"
    assert "cometa/round_2/round.ipynb" in set(steps["notebook"])
    done = json.loads((run_dir / "stage1" / "done.json").read_text())
    started = datetime.fromtimestamp(done["started_at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert steps.set_index("step").loc["stage1", "started"] == started  # epoch seconds, as UTC
    assert len(data.labels(rid, "cometa", 2)) == n_train
    assert data.labels(rid, "cometa", 2) is data.labels(rid, "cometa", 2)  # cached


def test_media_come_from_the_corpus_the_run_recorded(run_dir):
    from dashboards.data import RunData

    data = RunData([str(run_dir)])
    rid = data.run_ids[0]
    root = Path(json.loads((run_dir / "corpus" / "counts.json").read_text())["root"])
    assert data.corpus_root(rid) == root
    key = data.labels(rid, "cometa", 1)["key"].iloc[0]
    wav, frames = data.media(rid, key)
    assert wav == root / "train" / "wav" / key and wav.exists()
    assert frames and all(f.parent == root / "train" / "faces" / key[:-4] and f.suffix == ".jpg" for f in frames)


def _minimal_run(src: Path, dst: Path, projection: pd.DataFrame, *, labels: bool) -> str:
    """store.sqlite and config.yaml of ``src`` and one round (cometa, 2): the given projection, its labels or not."""
    (dst / "cometa" / "round_2").mkdir(parents=True)
    for name in ("store.sqlite", "config.yaml"):
        shutil.copy(src / name, dst / name)
    projection.to_parquet(dst / "cometa" / "round_2" / "projection.parquet", index=False)
    if labels:
        shutil.copy(src / "cometa" / "round_2" / "labels.parquet", dst / "cometa" / "round_2" / "labels.parquet")
    return str(dst)


def test_points_come_from_the_projection_alone_and_an_older_projection_is_joined(run_dir, tmp_path):
    from cometa.results.figures import projection_frame
    from dashboards.data import RunData

    proj = pd.read_parquet(run_dir / "cometa" / "round_2" / "projection.parquet")
    labels = pd.read_parquet(run_dir / "cometa" / "round_2" / "labels.parquet")
    assert {"speaker", "audio", "correct_audio", "consensus", "correct_consensus"} <= set(proj.columns)  # written
    bare = proj[["key", "x", "y", "n_total", "view"]]  # an older run's projection
    # the projection carries its points' labels: read alone (the round's labels.parquet is not even there)
    alone = RunData([_minimal_run(run_dir, tmp_path / "alone", proj, labels=False)])
    older = RunData([_minimal_run(run_dir, tmp_path / "older", bare, labels=True)])
    for view, column in (("audio", "audio"), ("joint", "consensus")):
        want = projection_frame(bare, labels, view=view, label_column=column)  # the join with all N rows
        assert len(want) and want["correct"].notna().any()
        for data in (alone, older):
            got = data.points(data.run_ids[0], "cometa", 2, view=view, label_column=column)
            pd.testing.assert_frame_equal(got, want, check_dtype=False)
            assert got.attrs["n_total"] == want.attrs["n_total"]


def test_label_issue_curves_are_sent_at_most_pr_points_each(run_dir, monkeypatch):
    import dashboards.noise as noise
    from cometa.results.label_noise import label_issue_ranking, precision_recall
    from dashboards.components import AppState
    from dashboards.data import RunData

    data = RunData([str(run_dir)])
    rid = data.run_ids[0]
    full = precision_recall(label_issue_ranking(data.label_issues(rid, "cometa", 1), view="audio"))
    assert len(full) > 5  # (the tiny run: one point per utterance)
    monkeypatch.setattr(noise, "_PR_POINTS", 5)
    fig = noise.NoiseDiagnosis(state=AppState(data))._issue_pr(rid, "cometa", 1, "self_confidence")
    curve = next(t for t in fig.data if t.name == "audio")
    k = [int(v) for v in curve.customdata]
    assert len(k) == 5 and k[0] == 1 and k[-1] == len(full)  # both ends kept
    assert list(curve.x) == full.set_index("k").loc[k, "recall"].tolist()  # points of the full curve
    assert list(curve.y) == full.set_index("k").loc[k, "precision"].tolist()


def test_corpus_root_before_the_corpus_step_and_a_broken_record(run_copy):
    from dashboards.data import RunData

    run = run_copy("no_corpus_yet", ignore=("*.pt", "corpus"))
    assert RunData([str(run)]).corpus_root("no_corpus_yet") is None  # no media yet: nothing to show
    (run / "corpus").mkdir()
    (run / "corpus" / "counts.json").write_text("{not json")
    with pytest.raises(ValueError, match="counts.json"):  # said, not swallowed
        RunData([str(run)]).media("no_corpus_yet", "id00001/v/u.wav")


def test_steps_show_a_round_in_progress(run_copy):
    from dashboards.data import RunData

    copy = run_copy("partial", ignore=("*.pt", "corpus"))
    (copy / "cometa" / "round_2" / "done.json").unlink()
    shutil.rmtree(copy / "coteaching_plus" / "round_2")
    # baseline round 2 as papermill leaves it while its kernel runs: no end time, a cell running
    nb_path = copy / "baseline" / "round_2" / "round.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["metadata"]["papermill"]["end_time"] = None
    nb["cells"][-1]["metadata"]["papermill"]["status"] = "running"
    nb_path.write_text(json.dumps(nb))
    (copy / "baseline" / "round_2" / "done.json").unlink()
    with run_lock(copy):  # a live `cometa run` holds the directory; baseline round 2 started under it
        time.sleep(0.05)
        (copy / "baseline" / "round_2" / "inputs.json").touch()
        steps = RunData([str(copy)]).steps("partial").set_index("step")
    assert steps.loc["baseline/round_2", "status"] == "running"
    # started before the live run: an earlier, killed run's step, not (yet) resumed by this one
    assert steps.loc["cometa/round_2", "status"] == "interrupted"
    assert steps.loc["cometa/round_1", "status"] == "done"
    assert steps.loc["coteaching_plus/round_2", "status"] == "pending"  # planned by the config, not started
    # the run was killed (its lock died with it): the step it was running shows as interrupted, not running
    steps = RunData([str(copy)]).steps("partial").set_index("step")
    assert steps.loc["baseline/round_2", "status"] == "interrupted"
    assert steps.loc["cometa/round_2", "status"] == "interrupted"  # papermill completed, no done marker


def test_notebook_status_from_papermills_record():
    from dashboards.data import notebook_status

    def nb(*cells, **meta):
        return {"metadata": {"papermill": meta}, "cells": [{"metadata": {"papermill": {"status": c}}} for c in cells]}

    assert notebook_status(nb("completed", "completed", start_time="t0", end_time="t1", exception=None)) == "completed"
    assert notebook_status(nb("completed", "failed", start_time="t0", end_time="t1", exception=True)) == "failed"
    assert notebook_status(nb("completed", "failed", start_time="t0")) == "failed"
    assert notebook_status(nb("completed", "running", "pending", start_time="t0", end_time=None)) == "running"
    assert notebook_status(nb("pending", "pending")) == "pending"
    assert notebook_status({}) == "pending"


def test_merged_and_split_on_known_labels():
    from dashboards.data import merged_and_split

    labels = pd.DataFrame({"speaker": ["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["d"] * 2,
                           "consensus": [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, -1]})
    merged, split = merged_and_split(labels)
    assert merged["cluster"].tolist() == [0] and "a (50%)" in merged["speakers"][0]
    assert split["speaker"].tolist() == ["c"]


def test_views_build_without_a_server(run_dir, n_train):
    import panel as pn

    from dashboards.app import VIEW_CLASSES, AppState
    from dashboards.data import RunData

    state = AppState(RunData([str(run_dir)]))
    for cls in VIEW_CLASSES.values():
        pn.panel(cls(state=state)).get_root()  # renders the bokeh models of every figure
    emb = VIEW_CLASSES["Embeddings"](state=state)
    emb.round = 2
    fig = emb.card.pane.object
    assert "round 2" in fig.layout.title.text and sum(len(t.x) for t in fig.data) == n_train


# ------------------------------------------------------------------------------------- a grid study
GRID = {("tau=0.1", 0): 1.0, ("tau=0.1", 1): 0.5, ("tau=0.4", 0): 0.8, ("tau=0.4", 1): 0.6}  # EER factors


@pytest.fixture(scope="module")
def grid_dir(run_dir, tmp_path_factory) -> Path:
    """A grid study in ``cometa study``'s layout: cells ``tau=0.1`` and ``tau=0.4`` of seeds 0 and 1, each
    run a copy of the tiny run whose EERs are multiplied by its factor in :data:`GRID`."""
    study = tmp_path_factory.mktemp("grid") / "tau"
    cells = []
    for cell, tau in (("tau=0.1", 0.1), ("tau=0.4", 0.4)):
        for seed in (0, 1):
            run = study / cell / f"seed_{seed}"
            shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("*.pt", "report"))
            config = (run / "config.yaml").read_text()
            (run / "config.yaml").write_text(config.replace("\nseed: 0\n", f"\nseed: {seed}\n"))
            con = sqlite3.connect(run / "store.sqlite")
            with con:
                con.execute("UPDATE scalars SET value = value * ? WHERE name IN ('eer', 'eer_untrained')",
                            (GRID[cell, seed],))
            con.close()
        runs = [f"{cell}/seed_{s}" for s in (0, 1)]
        (study / cell / "study.json").write_text(json.dumps({"preset": "tiny", "seeds": [0, 1], "overrides": [],
                                                             "runs": ["seed_0", "seed_1"]}))
        cells.append({"name": cell, "variant": None, "values": {"stage2.tau": tau},
                      "overrides": {"stage2.tau": tau}, "runs": runs})
    (study / "study.json").write_text(json.dumps({
        "kind": "grid", "name": "tau", "preset": "tiny", "strategies": ["baseline", "coteaching_plus", "cometa"],
        "seeds": [0, 1], "axes": {"stage2.tau": [0.1, 0.4]}, "variants": [], "cells": cells,
        "runs": [r for c in cells for r in c["runs"]], "spec": {}, "spec_path": None}))
    return study


def _tiny_eer(sqlite_scalars, run_dir, strategy: str | None, rnd: int) -> float:
    """The tiny run's audio EER on O of one strategy and round (Stage I: None, 0), straight from SQLite."""
    df = sqlite_scalars(run_dir)
    sel = df[(df["stage"] == "eval/O") & (df["round"] == rnd) & (df["modality"] == "audio") & (df["name"] == "eer")]
    sel = sel[sel["strategy"].isna()] if strategy is None else sel[sel["strategy"] == strategy]
    assert len(sel) == 1
    return float(sel["value"].iloc[0])


def test_a_grid_study_opens_as_its_cells(grid_dir, run_dir, sqlite_scalars):
    from dashboards.data import RunData

    given = [str(r) for r in list_runs(grid_dir)]  # what `cometa dashboard STUDY_DIR` passes: the study and its runs
    assert len(given) == 5
    data = RunData(given)
    assert data.studies == ["tau"] and data.run_ids == ["tau=0.1", "tau=0.4"] == data.cells("tau")
    assert data.seed_runs("tau=0.4") == [grid_dir / "tau=0.4" / "seed_0", grid_dir / "tau=0.4" / "seed_1"]
    assert data.is_study("tau=0.4") and data.config("tau=0.4")["seed"] == [0, 1]
    assert data.cell("tau=0.4")["values"] == {"stage2.tau": 0.4} and data.cell("tau=0.1")["name"] == "tau=0.1"
    s1 = data.scalars("tau=0.4")
    s1 = s1[(s1["stage"] == "eval/O") & s1["strategy"].isna() & (s1["name"] == "eer") & (s1["modality"] == "audio")]
    v = _tiny_eer(sqlite_scalars, run_dir, None, 0)
    assert sorted(s1["value"]) == pytest.approx(sorted([0.8 * v, 0.6 * v]))  # the cell's own two seeds


def test_the_cell_picker_switches_every_view(grid_dir, run_dir, sqlite_scalars):
    import panel as pn

    from dashboards.app import create_app, notebook_views

    views = notebook_views([str(grid_dir)])
    assert list(views)[0] == "Study" and len(views) == 7
    overview = views["Overview"]
    for cell in ("tau=0.1", "tau=0.4"):
        overview.state.run = cell  # the picker: every view now shows this cell's seeds
        for view in views.values():
            pn.panel(view).get_root()
    fig = overview._layout.select(pn.pane.Plotly)[0].object  # the headline figure, of tau=0.4
    (stage1,) = [t for t in fig.data if t.name.startswith("Stage I")]
    assert stage1.y[0] == pytest.approx(100 * 0.7 * _tiny_eer(sqlite_scalars, run_dir, None, 0))  # mean of 0.8, 0.6
    from dashboards.app import _run_summary

    assert "cell of the study: stage2.tau = 0.4" in _run_summary(overview.state.data, "tau=0.4")
    app = create_app([str(grid_dir)])
    picker = app.sidebar[0]
    assert picker.name == "cell" and list(picker.options) == ["tau=0.1", "tau=0.4"]


def test_the_study_view_shows_the_reports_table_and_figure(grid_dir, run_dir, sqlite_scalars):
    import panel as pn

    from cometa.results import study_figures as SF
    from cometa.results import study_tables as ST
    from dashboards.app import AppState
    from dashboards.data import RunData
    from dashboards.study import StudyView

    view = StudyView(state=AppState(RunData([str(grid_dir)])))
    assert view.study == "tau" and view.axis == "stage2.tau" and view.metric == "audio_eer_O"
    pn.panel(view).get_root()
    figure, per_round = view._layout.select(pn.pane.Plotly)
    (headline,) = view._layout.select(pn.pane.Markdown)
    fig = figure.object
    (cometa,) = [t for t in fig.data if t.name == "Co-Meta"]
    v = _tiny_eer(sqlite_scalars, run_dir, "cometa", 2)
    assert list(cometa.x) == [0.1, 0.4]
    np.testing.assert_allclose(cometa.y, [100 * 0.75 * v, 100 * 0.7 * v])
    np.testing.assert_allclose(cometa.error_y.array, [100 * np.std([v, 0.5 * v], ddof=1),
                                                      100 * np.std([0.8 * v, 0.6 * v], ddof=1)])
    report_fig = SF.metric_vs_axis(ST.study_table(grid_dir), axis="stage2.tau", metric="audio_eer_O")
    assert fig.to_dict()["data"] == report_fig.to_dict()["data"]  # the report's own figure
    assert headline.object == ST.headline_markdown(ST.study_table(grid_dir), ST.read_study(grid_dir))
    assert "| tau=0.4 | Co-Meta | 2 |" in headline.object
    view.per_round = "purity"
    assert [a.text for a in per_round.object.layout.annotations] == ["tau=0.1", "tau=0.4"]
    assert per_round.object.layout.title.text.startswith("consensus purity per round")


# ------------------------------------------------------------------------------------------ browser
def wait_title(page, text: str, timeout: float = 20_000) -> None:
    """Wait until a plotly figure whose title contains ``text`` has been drawn."""
    page.locator(".js-plotly-plot .gtitle", has_text=text).first.wait_for(timeout=timeout)


def scatter_points(page) -> int:
    """Points in the WebGL scatter traces of the first plotly figure on the page."""
    return page.locator(".js-plotly-plot").first.evaluate(
        "el => el.data.filter(t => t.type === 'scattergl').reduce((n, t) => n + t.x.length, 0)")


@pytest.fixture(scope="module")
def server(run_dir):
    port = _free_port()
    proc = start_server([run_dir], port)
    yield f"http://127.0.0.1:{port}"
    stop_server(proc)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("screenshots")
    print(f"dashboard screenshots: {out}")
    return out


def _shoot(page, out: Path, view: str) -> None:
    path = out / f"{view}.png"
    page.screenshot(path=str(path))
    if os.environ.get("COMETA_SCREENSHOTS") == "1":  # the README's pictures
        (ROOT / "reports" / "screenshots").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, ROOT / "reports" / "screenshots" / path.name)


def test_notebooks_are_served_rendered_and_raw(server, run_dir):
    from dashboards.notebooks import run_key

    key = run_key(run_dir.name)
    page = urllib.request.urlopen(f"{server}/notebooks/{key}/cometa/round_2/round.ipynb", timeout=30).read()
    assert b"<html" in page and b"cometa, round 2" in page  # the executed cell's output (its figure's title)
    raw = urllib.request.urlopen(f"{server}/notebooks/{key}/cometa/round_2/round.ipynb?raw=1", timeout=10).read()
    assert b'"papermill"' in raw
    for bad in (f"{key}/../{key}/config.yaml", f"{key}/store.sqlite", "other/cometa/round_2/round.ipynb"):
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{server}/notebooks/{bad}", timeout=10)


@pytest.mark.browser
@needs_chromium
def test_every_view_renders_in_chromium(server, screenshots, n_train):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright python package")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server)
            wait_title(page, "EER (%) per round")  # the overview's headline figure
            assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 6
            assert page.get_by_text("cometa/round_2/round.ipynb").count() == 1  # the notebook link
            with page.expect_download() as download:
                page.locator(".export-svg button").first.click()
            assert download.value.suggested_filename == "eer_per_round.svg"
            assert Path(download.value.path()).read_text()[:200].lstrip().startswith("<svg")
            _shoot(page, screenshots, "overview")
            for tab, text in TABS.items():
                page.locator(".bk-tab", has_text=tab).first.click()
                wait_title(page, text)
                assert page.locator(".js-plotly-plot .main-svg").count() >= 1, tab
                if tab == "Embeddings":  # the round slider: round 1 -> 2
                    assert page.locator(".js-plotly-plot canvas").count() >= 1  # Scattergl draws on WebGL
                    handle = page.locator(".noUi-handle").first
                    handle.focus()
                    handle.press("ArrowRight")
                    wait_title(page, "round 2")
                    assert page.locator(".js-plotly-plot .gtitle", has_text=f"{n_train} utterances").count() == 1
                    assert scatter_points(page) == n_train
                if tab == "Noise diagnosis":  # select the worst utterance: its faces and its audio
                    page.locator(".tabulator-row").first.click()
                    page.locator("audio").first.wait_for(state="attached", timeout=10_000)
                    assert page.locator("img").count() >= 2
                if tab == "Verification":  # the DET curves are below the fold
                    page.locator(".js-plotly-plot").last.scroll_into_view_if_needed()
                _shoot(page, screenshots, tab.lower().replace(" ", "_"))
        finally:
            browser.close()
    assert not errors, errors


@pytest.mark.browser
@needs_chromium
def test_a_grid_study_served_in_chromium(grid_dir, screenshots):
    """What `cometa dashboard STUDY_DIR` serves (the study and, from list_runs, its runs): the Study tab
    first, then the picker's cell in the other views."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright python package")
    port = _free_port()
    proc = start_server([str(r) for r in list_runs(grid_dir)], port)
    errors: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"http://127.0.0.1:{port}/")
                wait_title(page, "audio EER O (%) against stage2.tau")
                assert page.get_by_text("tau=0.4").count() >= 1 and page.locator("table").count() >= 1
                _shoot(page, screenshots, "study")
                page.locator("select").first.select_option("tau=0.4")  # the sidebar's cell picker
                page.locator(".bk-tab", has_text="Overview").first.click()
                wait_title(page, "tau=0.4: EER (%) per round")
                wait_title(page, "mean ± std over 2 seeds")
            finally:
                browser.close()
    finally:
        stop_server(proc)
    assert not errors, errors
