"""`make lab` in a real browser: JupyterLab opens the "explore a run" notebook, runs all its cells
against the tiny run and shows its figures.

One server (``make lab`` on a free port of 127.0.0.1, through :class:`tools.screenshot_lab.LabServer`,
with autosave off so the committed notebook is never written) and one notebook, in Debian's Chromium
through Playwright. The notebook finds the run through ``COMETA_RUN_DIR``, as its ``run_dir``
parameter is left empty, exactly as a user would run it after ``make demo``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import cometa
from tools.screenshot_lab import CHROMIUM, LabServer, errors_shown, launch_chromium, open_notebook, run_all

pytestmark = [pytest.mark.slow, pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's chromium at {CHROMIUM}")]
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/explore/explore_run.ipynb"


def test_make_lab_runs_the_explore_notebook_in_chromium(tiny_run, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright python package")
    committed = hashlib.sha256((ROOT / NOTEBOOK).read_bytes()).hexdigest()
    with LabServer(env={"COMETA_RUN_DIR": str(tiny_run)}) as lab, sync_api.sync_playwright() as p:
        printed = lab.log.read_text()
        assert f"http://127.0.0.1:{lab.port}/lab/tree/notebooks/explore?token={lab.token}" in printed
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_notebook(page, lab, NOTEBOOK)
            run_all(page)
            assert errors_shown(page) == []
            plots = page.locator(".jp-OutputArea .js-plotly-plot")  # drawn by JupyterLab's plotly renderer
            assert plots.count() == 3  # EER, purity, dynamics (one run: nothing side by side)
            eer = page.locator(".jp-OutputArea .js-plotly-plot",
                               has=page.locator(".gtitle", has_text="EER (%) per round")).first
            eer.scroll_into_view_if_needed()
            eer.wait_for(timeout=20_000)
            drawn = dict(eer.evaluate("el => el._fullData.map(t => [t.name, Array.from(t.y)])"))
            t1 = cometa.open_run(tiny_run).table1()  # the figure shows the store's numbers
            assert drawn["Co-Meta · visual"] == pytest.approx(t1.loc[["Round 1", "Round 2"], ("cometa", "visual")])
            assert drawn["Stage I (contrastive, audio)"] == pytest.approx([t1.loc["Stage I", ("baseline", "audio")]])
            assert len(drawn) == 7  # three strategies x two modalities, and Stage I
            assert page.locator(".jp-OutputArea", has_text="one run: set other_run_dir").count() == 1
            page.screenshot(path=str(tmp_path / "lab_explore_run.png"))
        finally:
            browser.close()
    assert hashlib.sha256((ROOT / NOTEBOOK).read_bytes()).hexdigest() == committed  # never saved
