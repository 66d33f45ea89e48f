"""JupyterLab with an exploration notebook run on a real run, in a real browser, as a screenshot.

    python tools/screenshot_lab.py RUN_DIR OUT.png [--notebook diagnose_label_noise] [--scroll-to TEXT]

Starts ``make lab`` (the same JupyterLab a user gets) on a free port of 127.0.0.1 with a throwaway
settings directory (autosave off, so the committed notebook is never written), opens
``notebooks/explore/<notebook>.ipynb`` in Debian's Chromium through Playwright, sets ``run_dir`` in
its parameters cell (in the browser only), runs all cells, closes the file browser, scrolls to the
heading ``--scroll-to`` and saves the screenshot. The README's picture is this script run on ``runs/demo``::

    python tools/screenshot_lab.py runs/demo reports/screenshots/lab_diagnose_label_noise.png

:class:`LabServer` and the page helpers are shared with ``tests/test_lab.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import socket
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
# user settings of the throwaway Lab: never save the notebook, no news or update pop-ups
SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``make lab`` in its own process group on a free port; a context manager that stops it.

    Parameters
    ----------
    env : extra environment for the server and its kernels (e.g. ``COMETA_RUN_DIR``).
    timeout : seconds to wait for the server to answer.
    """

    def __init__(self, *, env: dict[str, str] | None = None, timeout: float = 90.0):
        self.port, self.token = free_port(), secrets.token_urlsafe(16)
        self._tmp = tempfile.TemporaryDirectory(prefix="cometa-lab-")
        tmp = Path(self._tmp.name)
        for rel, value in SETTINGS.items():
            (tmp / "settings" / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / "settings" / rel).write_text(json.dumps(value))
        self.log = tmp / "lab.log"
        full_env = {**os.environ, "LAB_PORT": str(self.port), "LAB_TOKEN": self.token, "COMETA_NO_APT": "1",
                    "COMETA_VENV": os.environ.get("COMETA_VENV", sys.prefix),
                    "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
                    "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), **(env or {})}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["make", "--no-print-directory", "lab"], cwd=ROOT, env=full_env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self._wait(timeout)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """``path`` (e.g. ``lab/tree/notebooks/explore/explore_run.ipynb``) with the token."""
        return f"{self.base}/{path.lstrip('/')}?token={self.token}"

    def _wait(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"make lab exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=3) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM to the server's process group (make, jupyter and its kernels), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._tmp.cleanup()

    def __enter__(self) -> LabServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ----------------------------------------------------------------------------------------- the page
def launch_chromium(p):
    """Debian's Chromium through Playwright (never a downloaded browser)."""
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def open_notebook(page, lab: LabServer, relpath: str, *, timeout: float = 90_000) -> None:
    """Open ``relpath`` in JupyterLab and wait for its kernel to be idle."""
    page.goto(lab.url(f"lab/tree/{relpath}"))
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=timeout)
    wait_idle(page, timeout=timeout)


def wait_idle(page, *, timeout: float = 90_000) -> None:
    """Wait until the notebook's kernel has started and is idle (the status bar says so)."""
    page.wait_for_function(
        "() => { const bar = document.querySelector('#jp-main-statusbar');"
        " return bar !== null && /\\|\\s*Idle/.test(bar.textContent); }", timeout=timeout, polling=250)


def set_parameter(page, relpath: str, name: str, value: str) -> None:
    """Set ``name = value`` in the parameters cell (the first code cell) of the notebook open in the
    browser; ``relpath`` is the notebook in this checkout, whose cell source is edited. Not saved."""
    nb = json.loads((ROOT / relpath).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    source = "".join(cell["source"])
    new = "\n".join(f"{name} = {json.dumps(value)}" if ln.split("=")[0].strip() == name else ln
                     for ln in source.splitlines())
    editor = page.locator(".jp-NotebookPanel .jp-CodeCell .cm-content").first
    page.wait_for_function("([el, n]) => el.textContent.includes(n)", arg=[editor.element_handle(), name])
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(new)  # as text, not keys: no auto-closed quotes
    page.keyboard.press("Escape")
    shown = editor.inner_text()
    if json.dumps(value) not in shown:
        raise RuntimeError(f"could not set {name} in the parameters cell; it reads {shown!r}")


def run_all(page, *, timeout: float = 300_000) -> None:
    """Run > Run All Cells, then wait until every code cell has run (an execution count, none pending)."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    prompts = page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt")
    deadline = time.time() + timeout / 1000
    while time.time() < deadline:
        texts = prompts.all_text_contents()
        if texts and all(re.fullmatch(r"\[\d+\]:?", t.strip()) for t in texts):
            break
        time.sleep(0.5)
    else:
        raise TimeoutError(f"the notebook's cells did not all run within {timeout / 1000:.0f} s: prompts {texts}")
    wait_idle(page, timeout=timeout)


def errors_shown(page) -> list[str]:
    """The text of every error output (a traceback) in the notebook."""
    return page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").evaluate_all(
        "els => els.map(e => e.textContent).filter(t => t.includes('Traceback') || t.includes('Error:'))")


def scroll_to(page, text: str) -> None:
    """Bring the notebook heading that contains ``text`` to the top of the view."""
    page.locator(".jp-NotebookPanel .jp-MarkdownOutput :is(h1, h2, h3)", has_text=text).first.evaluate(
        "el => el.scrollIntoView({block: 'start'})")
    time.sleep(1.0)  # let plotly redraw what scrolled into view


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="the run (or study) directory the notebook opens")
    ap.add_argument("out", help="where the PNG goes")
    ap.add_argument("--notebook", default="diagnose_label_noise", help="a notebook of notebooks/explore/")
    ap.add_argument("--scroll-to", default="Each sample's label history", help="a heading to show ('' = the top)")
    ap.add_argument("--size", default="1600x1000", help="viewport, WIDTHxHEIGHT")
    ap.add_argument("--file-browser", action="store_true", help="keep the file browser open")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    run_dir = Path(args.run_dir)
    width, height = (int(x) for x in args.size.split("x"))
    shown = os.path.relpath(run_dir.resolve(), ROOT) if run_dir.resolve().is_relative_to(ROOT) else str(run_dir)
    with LabServer() as lab, sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            relpath = f"notebooks/explore/{args.notebook}.ipynb"
            open_notebook(page, lab, relpath)
            set_parameter(page, relpath, "run_dir", shown)
            t0 = time.time()
            run_all(page)
            errors = errors_shown(page)
            if errors:
                print("\n\n".join(errors)[-3000:], file=sys.stderr)
                return 1
            if not args.file_browser:  # more room for the notebook
                page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").first.click()
            if args.scroll_to:
                scroll_to(page, args.scroll_to)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out)
        finally:
            browser.close()
    print(f"{args.out}: {args.notebook} on {shown}, all cells run in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
