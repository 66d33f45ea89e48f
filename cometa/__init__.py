"""cometa: a workbench for self-supervised audio-visual speaker representation learning (Co-Meta).

The run API is here, loaded on first use (PEP 562) so that ``import cometa`` stays light and exploring
a run never imports torch::

    import cometa
    run = cometa.open_run("runs/demo")      # cometa.results.explore.open_run
    cometa.open_runs(["runs/a", "runs/b"])  # several runs side by side (cometa.results.several_runs.open_runs)

The package is laid out in layers (README, "Architecture"): config and the run store, data, models,
the noisy-label core, evaluation, training, the pipeline, results. ``cometa.metrics``,
``cometa.selection``, ``cometa.schedules``, ``cometa.ensemble`` and ``cometa.pseudo_labels`` re-export
their layer's modules where they have always been.
"""

import importlib

__version__ = "0.1.0"
__all__ = ["open_run", "open_runs", "what_if"]

_LAZY = {"open_run": "cometa.results.explore", "open_runs": "cometa.results.several_runs",
         "what_if": "cometa.pipeline.rerun"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cometa' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
