"""Layer 6, orchestration: a run as papermill notebooks, resumed, scheduled, launched.

- :mod:`~cometa.pipeline.run`: the steps of a run, ``run_pipeline`` and ``run_study``, each step's
  notebook through papermill
- :mod:`~cometa.pipeline.steps`: the work of each step, called from its notebook
- :mod:`~cometa.pipeline.ddp`: a step on several processes (torchrun)
- :mod:`~cometa.pipeline.rerun`: rerun one round with other settings into a new run directory
- :mod:`~cometa.pipeline.dryrun`: check the data and print the plan without training

Imports the training layer and below.
"""
