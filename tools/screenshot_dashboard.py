"""The dashboard on a real run, in a real browser, one screenshot per view.

    python tools/screenshot_dashboard.py RUN_DIR [RUN_DIR ...] --out reports/screenshots

Serves ``python -m dashboards.app RUN_DIR ...`` (what ``make dashboard`` serves) on a free port of
127.0.0.1, opens it in Debian's Chromium through Playwright, waits for each view's headline figure,
clicks the worst utterance in the noise diagnosis (its faces and audio), scrolls the verification
view to its DET curves, and writes ``<view>.png`` (overview, label_quality, training_dynamics,
verification, embeddings, noise_diagnosis) into ``--out``. The README's pictures are this script
run on ``runs/demo`` (``make demo``'s run). Each picture is written to a temporary file first, so an
interrupted run leaves the previous pictures whole.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: tools/ is on the path, the checkout is not
    sys.path.insert(0, str(ROOT))
from tools.screenshot_lab import CHROMIUM, launch_chromium  # noqa: E402  (the one Chromium set-up)

TABS = {  # tab -> text that a plot title shows once the tab rendered
    "Label quality": "purity per round",
    "Training dynamics": "training dynamics",
    "Verification": "DET curves",
    "Embeddings": "round 1",
    "Noise diagnosis": "label history",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(run_dirs: list, port: int, *, timeout: float = 60) -> subprocess.Popen:
    """``python -m dashboards.app RUN_DIR ...`` in a subprocess on 127.0.0.1; returns once it answers
    HTTP (a 404 for a page that does not exist is an answer). Raises RuntimeError otherwise."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([sys.executable, "-m", "dashboards.app", *map(str, run_dirs), "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the dashboard exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/liveness-probe-does-not-exist", timeout=2)
        except urllib.error.HTTPError:  # the server answers (404): it is up
            return proc
        except OSError:
            time.sleep(0.25)
        else:
            return proc
    proc.kill()
    raise RuntimeError(f"the dashboard did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def shoot(page, out: Path, view: str) -> Path:
    path = out / f"{view}.png"
    tmp = out / f".{view}.png.part"
    page.screenshot(path=str(tmp), type="png")
    os.replace(tmp, path)
    print(f"{path}")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dirs", nargs="+", help="run or study directories, as for make dashboard")
    ap.add_argument("--out", default=str(ROOT / "reports" / "screenshots"), help="folder for the PNG files")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000)
    args = ap.parse_args(argv)
    for d in args.run_dirs:
        if not Path(d).is_dir():
            raise SystemExit(f"{d}: no such run directory")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    try:
        proc = serve(args.run_dirs, port)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.goto(f"http://127.0.0.1:{port}/")
                page.locator(".js-plotly-plot .gtitle", has_text="EER (%) per round").first.wait_for(timeout=60_000)
                shoot(page, out, "overview")
                for tab, text in TABS.items():
                    page.locator(".bk-tab", has_text=tab).first.click()
                    page.locator(".js-plotly-plot .gtitle", has_text=text).first.wait_for(timeout=60_000)
                    if tab == "Noise diagnosis":  # the worst utterance: its faces and its audio
                        page.locator(".tabulator-row").first.click()
                        page.locator("audio").first.wait_for(state="attached", timeout=20_000)
                    if tab == "Verification":  # the DET curves are below the fold
                        page.locator(".js-plotly-plot").last.scroll_into_view_if_needed()
                    page.wait_for_timeout(1000)  # let plotly finish its transitions
                    shoot(page, out, tab.lower().replace(" ", "_"))
            finally:
                browser.close()
    finally:
        stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
