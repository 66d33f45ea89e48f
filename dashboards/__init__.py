"""Panel dashboards over cometa run directories (read-only).

``python -m cometa dashboard RUN_DIR ...`` (or ``python -m dashboards.app``) serves
:func:`dashboards.app.create_app`; :mod:`dashboards.data` reads and caches the run directory,
:mod:`dashboards.views` and :mod:`dashboards.noise` hold the views, whose figures come from
:mod:`cometa.results.figures` (shared with the report).
"""
