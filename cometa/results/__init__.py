"""Layer 7, results: what a run directory says, read from the run store only.

- :mod:`~cometa.results.figures`: every figure of the study (the notebooks', the dashboard's, the report's)
- :mod:`~cometa.results.report`: Table 1, Table 2 and the figures as files (:mod:`~cometa.results.export`
  writes them)
- :mod:`~cometa.results.study_report`: a grid study's report (``cometa study``): the tables of
  :mod:`~cometa.results.study_tables` (one row per cell x strategy, mean ± std over seeds, the last round of
  :mod:`~cometa.results.last_round`), the figures of :mod:`~cometa.results.study_figures`, its provenance
- :mod:`~cometa.results.label_noise`: which identities merge or split, what is wrong in both modalities
- :mod:`~cometa.results.explore`, :mod:`~cometa.results.several_runs`: the run API (``cometa.open_run``)
- :mod:`~cometa.results.paper`: the report's figures styled for a paper

Reading a run imports no torch and no training code; only :meth:`~cometa.results.explore.Run.what_if`
reaches back into the pipeline.
"""
