"""The cometa dashboard: Panel views over one or more run directories (read-only).

    python -m dashboards.app RUN_DIR [RUN_DIR ...] [--port 5006] [--address 127.0.0.1]
    python -m cometa dashboard RUN_DIR ...        (``make dashboard RUNS=...``)
    python -m cometa dashboard STUDY_DIR          (a grid study of ``cometa study``: pick its cells)

One tab per view (:mod:`dashboards.views`, :mod:`dashboards.noise`), all over one
:class:`~dashboards.components.AppState` and its :class:`~dashboards.data.RunData` store. A tab's view
is built the first time it is shown, so the first page reads only the store, the config and the
done markers. The same view classes work in a notebook: ``Embeddings(state=AppState(RunData([dir])))``.

A grid study's cells are the runs of the picker (named ``cell`` then): each view shows the chosen
cell's seed runs, and a first tab, ``Study`` (:class:`~dashboards.study.StudyView`), the study's table
and its metrics against each axis.
"""
from __future__ import annotations

import argparse
import sys

import panel as pn

from dashboards.components import AppState
from dashboards.data import RunData
from dashboards.noise import NoiseDiagnosis
from dashboards.notebooks import notebook_routes
from dashboards.study import StudyView
from dashboards.views import Embeddings, LabelQuality, Overview, TrainingDynamics, Verification

__all__ = ["VIEW_CLASSES", "STUDY_VIEW", "AppState", "create_app", "view_classes", "notebook_views", "serve", "main"]

VIEW_CLASSES = {"Overview": Overview, "Label quality": LabelQuality, "Training dynamics": TrainingDynamics,
                "Verification": Verification, "Embeddings": Embeddings, "Noise diagnosis": NoiseDiagnosis}
STUDY_VIEW = "Study"  # the first tab when a grid study is open


def view_classes(data: RunData) -> dict[str, type]:
    """The tabs over ``data``: :data:`VIEW_CLASSES`, after a ``Study`` tab when a grid study is open."""
    return {STUDY_VIEW: StudyView, **VIEW_CLASSES} if data.studies else dict(VIEW_CLASSES)


def create_app(run_dirs: list[str]) -> pn.template.BootstrapTemplate:
    """The dashboard over ``run_dirs`` (a new set of widgets per call, so per browser session)."""
    pn.extension("plotly", "tabulator", sizing_mode="stretch_width", notifications=False)
    data = RunData([str(d) for d in run_dirs])
    state = AppState(data)
    tabs = pn.Tabs(*[(name, pn.param.ParamFunction(_maker(cls, state), lazy=True, sizing_mode="stretch_width"))
                     for name, cls in view_classes(data).items()], dynamic=True)
    picker = "cell" if data.studies and all(data.cell(r) is not None for r in data.run_ids) else "run"
    sidebar = [pn.widgets.Select.from_param(state.param.run, name=picker),
               pn.pane.Markdown(pn.bind(_run_summary, data, state.param.run))]
    return pn.template.BootstrapTemplate(title="cometa: Co-Meta learning runs", sidebar=sidebar, main=[tabs],
                                         sidebar_width=260)


def notebook_views(run_dirs: list[str]) -> dict[str, object]:
    """The dashboard's views for a notebook: ``{tab name: view}``, the classes of :data:`VIEW_CLASSES`
    over one shared :class:`AppState` (so ``views["Overview"].state.run = ...`` switches them all).

    Load Panel's notebook extension first, in a cell of its own: ``pn.extension("plotly", "tabulator",
    inline=True)`` (inline: the JavaScript comes with the notebook, no CDN needed); then a cell ending
    in ``views["Embeddings"]`` renders that view, live while the kernel runs.
    """
    data = RunData([str(d) for d in run_dirs])
    state = AppState(data)
    return {name: cls(state=state) for name, cls in view_classes(data).items()}


def _maker(cls: type, state: AppState):
    return lambda: cls(state=state)


def _run_summary(data: RunData, run: str) -> str:
    cfg = data.config(run)
    s2 = cfg.get("stage2") or {}
    seeds = cfg.get("seed")
    cell = data.cell(run)
    if data.is_study(run):
        first = data.path(run).name
        seeds = f"{seeds}  \n*{len(data.seed_runs(run))} seeds: EER and purity are mean ± std; the per-round " \
                f"views show {first}*"
    where = "" if cell is None else "cell of the study: " + ", ".join(
        [*([f"variant {cell['variant']}"] if cell.get("variant") else []),
         *(f"{k} = {v}" for k, v in (cell.get("values") or {}).items())]) + "  \n"
    return (f"**{run}**  \n{where}preset `{cfg.get('preset')}`, seed {seeds}  \n"
            f"strategies: {', '.join(data.strategies(run))}  \nrounds: {len(data.rounds(run))} of "
            f"{data.planned_rounds(run)}  \nτ = {s2.get('tau')}, E_k = {s2.get('e_k')}")


def serve(run_dirs: list[str], *, address: str = "127.0.0.1", port: int = 5006, show: bool = False):
    """Serve the dashboard (blocking); executed notebooks are shown under ``/notebooks/<run>/``.

    Bound to ``address`` (loopback unless told otherwise); ``port`` 0 picks a free port.
    """
    data = RunData([str(d) for d in run_dirs])  # fail fast on a wrong directory
    runs = {rid: str(data.path(rid)) for rid in data.run_ids}  # where each entry's notebooks are
    dirs = list(data.run_dirs)  # as given (resolved): a grid study stays one, its cells come from it
    origins = "*" if address in ("0.0.0.0", "::") else [f"{address}:{port}", f"localhost:{port}",
                                                         f"127.0.0.1:{port}"]
    print(f"cometa dashboard: http://{address}:{port}/  ({len(runs)} run(s))", flush=True)
    # warm: one session is built before serving, so the first visitor does not pay for lazy imports
    return pn.serve({"/": lambda: create_app(dirs)}, address=address, port=port, show=show,
                    websocket_origin=origins, title="cometa", extra_patterns=notebook_routes(runs), warm=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m dashboards.app RUN_DIR ... [--port] [--address] [--show]``."""
    ap = argparse.ArgumentParser(prog="python -m dashboards.app", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories (each holding store.sqlite)")
    ap.add_argument("--port", type=int, default=5006)
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--show", action="store_true", help="open a browser")
    args = ap.parse_args(argv)
    try:
        serve(args.runs, address=args.address, port=args.port, show=args.show)
    except FileNotFoundError as e:
        print(f"dashboard: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
