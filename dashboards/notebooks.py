"""The executed notebooks of a run, served read-only next to the dashboard.

``/notebooks/<run key>/<path>.ipynb`` renders the notebook papermill executed (the record of that step)
to HTML with nbconvert; ``?raw=1`` returns the ``.ipynb`` itself to open in JupyterLab. Only
``.ipynb`` files inside a served run directory are reachable: the run's checkpoints and arrays are not.
"""
from __future__ import annotations

import asyncio
import functools
import re
from pathlib import Path

import tornado.web

__all__ = ["run_key", "notebook_url", "notebook_routes", "render_notebook"]


def run_key(run_id: str) -> str:
    """A run id as one URL path segment."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


def notebook_url(run_id: str, relpath: str, *, raw: bool = False) -> str:
    """Where the dashboard's server shows the notebook ``relpath`` (relative to the run directory)."""
    return f"/notebooks/{run_key(run_id)}/{relpath}" + ("?raw=1" if raw else "")


@functools.lru_cache(maxsize=32)
def render_notebook(path: str, mtime_ns: int) -> str:
    """The notebook as a standalone HTML page (cached per file version)."""
    # nbconvert takes a second or two to import: loaded when a notebook is first opened, not with the dashboard
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return body


class NotebookHandler(tornado.web.RequestHandler):
    """GET ``/notebooks/<run key>/<relpath>``: the rendered (or ``?raw=1``) executed notebook."""

    def initialize(self, runs: dict[str, str]) -> None:
        self.runs = runs  # run key -> run directory

    async def get(self, key: str, relpath: str) -> None:
        if key not in self.runs:
            raise tornado.web.HTTPError(404, f"no run {key!r}")
        base = Path(self.runs[key]).resolve()
        path = (base / relpath).resolve()
        if path.suffix != ".ipynb" or not path.is_relative_to(base) or not path.is_file():
            raise tornado.web.HTTPError(404, f"no notebook {relpath!r} in run {key!r}")
        if self.get_argument("raw", None):
            self.set_header("Content-Type", "application/x-ipynb+json")
            self.set_header("Content-Disposition", f'attachment; filename="{path.name}"')
            self.write(path.read_bytes())
            return
        loop = asyncio.get_running_loop()  # nbconvert takes a second: keep the dashboard responsive
        html = await loop.run_in_executor(None, render_notebook, str(path), path.stat().st_mtime_ns)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(html)


def notebook_routes(runs: dict[str, str]) -> list[tuple]:
    """Tornado routes for ``pn.serve(extra_patterns=...)``; ``runs`` maps run id -> directory."""
    keys = {run_key(rid): str(d) for rid, d in runs.items()}
    return [(r"/notebooks/([^/]+)/(.+\.ipynb)", NotebookHandler, {"runs": keys})]
