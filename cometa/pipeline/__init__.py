"""Layer 6, orchestration: a run as papermill notebooks, resumed, scheduled, launched.

- :mod:`~cometa.pipeline.plan`: the steps of a run, their notebooks' parameters and the hash of their inputs
- :mod:`~cometa.pipeline.schedule`: which step starts next (longest chain first, a jobs limit), a pure function
- :mod:`~cometa.pipeline.run`: ``run_pipeline`` and ``run_study``, each step's notebook through papermill
- :mod:`~cometa.pipeline.steps`: the work of each step, called from its notebook
- :mod:`~cometa.pipeline.ddp`, :mod:`~cometa.pipeline.ddp_worker`: a step on several processes (torchrun)
- :mod:`~cometa.pipeline.rerun`: rerun one round with other settings into a new run directory
- :mod:`~cometa.pipeline.dryrun`: check the data and print the plan without training

Imports the training layer and below.
"""
from cometa.pipeline.plan import Step, plan_steps
from cometa.pipeline.run import PipelineError, execute_step, run_pipeline, run_study

__all__ = ["PipelineError", "Step", "execute_step", "plan_steps", "run_pipeline", "run_study"]
