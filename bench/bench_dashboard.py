"""Benchmark: the dashboard in Chromium, on a run of realistic size.

Serves a run directory with ``python -m dashboards.app`` (default: a sample run of 3 strategies x 5
rounds with 8,000 utterances, so 8,000 points per projection; or a given run) and measures, in
Debian's Chromium through Playwright:

* first load: navigation until the overview's figure is drawn, in the server's first browser
  session (cold) and in a second one (warm);
* the Embeddings tab: click until its WebGL scatter of round 1 is drawn;
* a slider move: one step of the Embeddings round slider until the new round's plot is drawn
  (median and worst over every step forward through the rounds and back).

Targets (printed, not asserted): first load <= 3 s, slider move <= 0.5 s.
Run: ``python bench/bench_dashboard.py [RUN_DIR]`` (or call ``main()``, which returns the figures).
"""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SAMPLE = dict(strategies=("baseline", "coteaching_plus", "cometa"), rounds=5, n=8000)
TARGET_LOAD_S, TARGET_SLIDER_S = 3.0, 0.5


def _serve(run_dir: Path) -> tuple[subprocess.Popen, str]:
    """The dashboard in a subprocess on a free port of 127.0.0.1; (process, url) once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "dashboards.app", str(run_dir), "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the dashboard exited with status {proc.returncode}")
        try:
            urllib.request.urlopen(f"{url}/notebooks/none/x.ipynb", timeout=2)
        except urllib.error.HTTPError:  # 404: the server answers
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the dashboard did not answer within 60 s")


def _title(page, text: str) -> None:
    page.locator(".js-plotly-plot .gtitle", has_text=text).first.wait_for(timeout=60_000)


def _first_load(browser, url: str) -> float:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    t0 = time.perf_counter()
    page.goto(url)
    _title(page, "EER (%) per round")
    seconds = time.perf_counter() - t0
    page.close()
    return seconds


def slider_walk(browser, url: str, rounds: int):
    """Open the Embeddings tab and move its round slider one step at a time, 1 -> ``rounds`` -> 1.

    Returns ``(page, tab_s, points, moves)``: the page (left open, on round 1), the tab's first draw in
    seconds, the points drawn per projection, and each move's seconds (forward moves first).
    """
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    _title(page, "EER (%) per round")
    t0 = time.perf_counter()
    page.locator(".bk-tab", has_text="Embeddings").first.click()
    _title(page, "round 1 ·")
    page.locator(".js-plotly-plot canvas").first.wait_for()
    tab = time.perf_counter() - t0
    points = page.locator(".js-plotly-plot").first.evaluate(
        "el => el.data.filter(t => t.type === 'scattergl').reduce((n, t) => n + t.x.length, 0)")
    handle = page.locator(".noUi-handle").first
    handle.focus()
    moves = []
    path = list(range(2, rounds + 1)) + list(range(rounds - 1, 0, -1))  # 1 -> N -> 1
    for r, key in zip(path, ["ArrowRight"] * (rounds - 1) + ["ArrowLeft"] * (rounds - 1)):
        t0 = time.perf_counter()
        handle.press(key)
        _title(page, f"round {r} ·")
        moves.append(time.perf_counter() - t0)
    return page, tab, int(points), moves


def _measure(url: str, rounds: int) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            cold = _first_load(browser, url)
            warm = _first_load(browser, url)
            _, tab, points, moves = slider_walk(browser, url, rounds)
        finally:
            browser.close()
    return {"first_load_s": round(cold, 3), "first_load_warm_s": round(warm, 3), "embeddings_tab_s": round(tab, 3),
            "slider_s": round(statistics.median(moves), 3), "slider_max_s": round(max(moves), 3),
            "slider_moves": len(moves), "points_per_projection": int(points)}


def main(run_dir: str | Path | None = None) -> dict:
    """Serve ``run_dir`` (default: a fresh sample run of realistic size); print and return the timings."""
    if not Path(CHROMIUM).exists():
        print(f"bench_dashboard: skipped, no Chromium at {CHROMIUM}")
        return {"skipped": f"no Chromium at {CHROMIUM}"}
    with tempfile.TemporaryDirectory(prefix="cometa-bench-dashboard-") as tmp:
        built = None
        if run_dir is None:
            sys.path.insert(0, str(ROOT))
            from bench.sample_run import build_sample_run  # (run as a script: the checkout onto sys.path first)

            t0 = time.perf_counter()
            run_dir = build_sample_run(Path(tmp) / "bench", media=False, **SAMPLE)
            built = round(time.perf_counter() - t0, 2)
        from dashboards.data import RunData

        data = RunData([str(run_dir)])
        rid = data.run_ids[0]
        rounds = max(len(data.rounds(rid)), 1)
        proc, url = _serve(Path(run_dir))
        try:
            result = _measure(url, rounds)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    result.update(run=str(run_dir) if built is None else f"sample run ({SAMPLE['n']} utterances, "
                  f"{len(SAMPLE['strategies'])} strategies x {SAMPLE['rounds']} rounds)", rounds=rounds,
                  sample_build_s=built, target_first_load_s=TARGET_LOAD_S, target_slider_s=TARGET_SLIDER_S)
    ok = lambda v, t: "ok" if v <= t else "SLOWER than target"  # noqa: E731
    print(f"dashboard on {result['run']}, {result['points_per_projection']:,} points per projection:")
    print(f"  first load      {result['first_load_s']:.2f} s cold, {result['first_load_warm_s']:.2f} s warm "
          f"(target <= {TARGET_LOAD_S} s: {ok(result['first_load_s'], TARGET_LOAD_S)})")
    print(f"  embeddings tab  {result['embeddings_tab_s']:.2f} s")
    print(f"  slider move     {result['slider_s']:.3f} s median, {result['slider_max_s']:.3f} s worst of "
          f"{result['slider_moves']} (target <= {TARGET_SLIDER_S} s: {ok(result['slider_s'], TARGET_SLIDER_S)})")
    return result


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
