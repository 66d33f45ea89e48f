"""The dashboard's views of a run: overview, pseudo-label quality, training dynamics, verification,
embeddings. (The label-noise diagnosis is in :mod:`dashboards.noise`.)

Each view is a :class:`~dashboards.components.RunView`: widgets come from its ``param`` parameters,
figures from :mod:`cometa.results.figures` (the report's own functions), redrawn with ``pn.bind``.
"""
from __future__ import annotations

import html
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import panel as pn
import param
import yaml

from cometa.results import figures as F
from dashboards.components import LABEL_METRICS, TABLE_CSS, VIEWS, FigureCard, RunView, pivot, table
from dashboards.notebooks import notebook_url

__all__ = ["Overview", "LabelQuality", "TrainingDynamics", "Verification", "Embeddings"]

POINTS_SHOWN = (10_000, 20_000, 50_000)  # the Embeddings view's choices, its default first
_PREFETCH = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cometa-prefetch")  # a slider's neighbours

_STATUS_COLOUR = {"done": "#2e7d32", "completed": "#2e7d32", "running": "#1565c0", "failed": "#c62828",
                  "interrupted": "#e65100"}


# ----------------------------------------------------------------------------------------- overview
class Overview(RunView):
    """Runs, strategies, config, each step's status and duration, links to the executed notebooks."""

    def __init__(self, **params):
        super().__init__(**params)
        run = self.state.param.run
        self._layout = pn.Column(
            pn.pane.HTML(self._runs_html(), sizing_mode="stretch_width", stylesheets=[TABLE_CSS]),
            FigureCard(pn.bind(self._headline, run), "eer_per_round"),
            pn.Row(pn.Column("### Steps", pn.pane.HTML(pn.bind(self._steps_html, run), stylesheets=[TABLE_CSS],
                                                        sizing_mode="stretch_width"), sizing_mode="stretch_width"),
                   pn.Column("### Config", pn.pane.Markdown(pn.bind(self._config_md, run)), width=440),
                   sizing_mode="stretch_width"),
            sizing_mode="stretch_width")

    def _runs_html(self) -> str:
        rows = []
        for rid in self.data.run_ids:
            cfg = self.data.config(rid)
            steps = self.data.steps(rid)
            rows.append({"run": rid, "preset": cfg.get("preset"), "seed": cfg.get("seed"),
                         "git": str(cfg.get("git_sha") or "")[:10], "strategies": ", ".join(self.data.strategies(rid)),
                         "rounds done / planned": f"{len(self.data.rounds(rid))} / {self.data.planned_rounds(rid)}",
                         "steps done": f"{(steps['status'] == 'done').sum()} / {len(steps)}",
                         "hours": f"{steps['seconds'].sum() / 3600:.2f}", "directory": str(self.data.directory(rid))})
        return "<h3>Runs</h3>" + pd.DataFrame(rows).to_html(index=False, classes="runs", border=0)

    def _headline(self, run: str):
        return F.eer_per_round(self.data.scalars(run), trial_list="O",
                               title=f"{run}: EER (%) per round, Vox1-O (Table 1 as a figure)")

    def _steps_html(self, run: str) -> str:
        body = []
        for r in self.data.steps(run).itertuples():
            link = ""
            if isinstance(r.notebook, str):
                nb = html.escape(r.notebook)
                link = (f'<a href="{notebook_url(run, r.notebook)}" target="_blank">{nb}</a> '
                        f'<a href="{notebook_url(run, r.notebook, raw=True)}" title="download the .ipynb">(ipynb)</a>')
            secs = "" if r.seconds is None or pd.isna(r.seconds) else f"{float(r.seconds):.1f}"
            body.append(f"<tr><td>{html.escape(r.step)}</td><td style='color:{_STATUS_COLOUR.get(r.status, '#777')}'>"
                        f"{html.escape(str(r.status))}</td><td>{html.escape(str(r.started or ''))}</td>"
                        f"<td style='text-align:right'>{secs}</td><td>{link}</td></tr>")
        return ("<table class='steps'><thead><tr><th>step</th><th>status</th><th>started (UTC)</th>"
                "<th>seconds</th><th>executed notebook</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>")

    def _config_md(self, run: str) -> str:
        return "```yaml\n" + yaml.safe_dump(self.data.config(run), sort_keys=False) + "```"

    def __panel__(self):
        return self._layout


# ------------------------------------------------------------------------------------ label quality
class LabelQuality(RunView):
    """Purity, inverse purity, NMI, ARI, cluster count per view; strategies side by side."""

    metric = param.Selector(default="purity", objects=LABEL_METRICS)
    views = param.ListSelector(default=list(VIEWS), objects=list(VIEWS))
    round = param.Integer(default=1, bounds=(1, 2))

    def __init__(self, **params):
        super().__init__(**params)
        self._round_bounds()
        self.state.param.watch(lambda *_: self._round_bounds(), "run")
        p, run = self.param, self.state.param.run
        controls = pn.Row(pn.widgets.Select.from_param(p.metric, width=180),
                          pn.widgets.CheckButtonGroup.from_param(p.views),
                          pn.widgets.IntSlider.from_param(p.round, name="round (table)", width=220))
        self._layout = pn.Column(
            controls,
            FigureCard(pn.bind(self._figure, run, p.metric, p.views), "label_quality"),
            pn.pane.Markdown(pn.bind(lambda r: f"#### Label quality at round {r}", p.round)),
            table(pn.bind(self._table, run, p.round)),
            sizing_mode="stretch_width")

    def _figure(self, run, metric, views):
        return F.purity_per_round(self.data.scalars(run), metric=metric, views=views or VIEWS)

    def _table(self, run, round_):
        df = self.data.scalars(run)
        df = df[(df["stage"] == "labels") & (df["round"] == round_)]
        extra = ["vote_all_agree", "vote_two_agree", "vote_all_differ"]
        return pivot(df, f"no labels for round {round_}", LABEL_METRICS + extra).round(4)

    def __panel__(self):
        return self._layout


# ------------------------------------------------------------------------------- training dynamics
class TrainingDynamics(RunView):
    """|D̄'|/|D̄| and λ(e) per epoch (and per step), selected fractions and overlap, noise, losses."""

    strategies = param.ListSelector(default=[], objects=[])
    smooth = param.Integer(default=1, bounds=(1, 50), doc="running mean over this many steps (per-step plot)")

    def __init__(self, **params):
        super().__init__(**params)
        self._sync()
        self.state.param.watch(lambda *_: self._sync(), "run")
        p, run = self.param, self.state.param.run
        self._layout = pn.Column(
            pn.widgets.CheckButtonGroup.from_param(p.strategies),
            FigureCard(pn.bind(self._epochs, run, p.strategies), "training_dynamics"),
            pn.widgets.IntSlider.from_param(p.smooth, name="smooth over steps", width=260),
            FigureCard(pn.bind(self._steps, run, p.strategies, p.smooth), "training_steps"),
            sizing_mode="stretch_width")

    def _sync(self):
        names = self.data.strategies(self.state.run)
        self.param.strategies.objects = names
        self.strategies = list(names)

    def _epochs(self, run, strategies):
        return F.training_dynamics(self.data.scalars(run), strategies=strategies or None,
                                   title=f"{run}: Stage II training dynamics, per epoch")

    def _steps(self, run, strategies, smooth):
        return F.training_steps(self.data.scalars(run), strategies=strategies or None, smooth=smooth,
                                title=f"{run}: Stage II training, per step")

    def __panel__(self):
        return self._layout


# ------------------------------------------------------------------------------------- verification
class Verification(RunView):
    """EER / minDCF per modality, trial list and round; DET curves of a round."""

    trial_list = param.Selector(default="O", objects=["O", "E", "H"])
    metric = param.Selector(default="eer", objects=["eer", "min_dcf_0.01", "min_dcf_0.05"])
    modalities = param.ListSelector(default=["audio", "visual"], objects=["audio", "visual", "fused"])
    round = param.Integer(default=1, bounds=(1, 2))

    def __init__(self, **params):
        super().__init__(**params)
        self._round_bounds()
        self.state.param.watch(lambda *_: self._round_bounds(), "run")
        p, run = self.param, self.state.param.run
        controls = pn.Row(pn.widgets.RadioButtonGroup.from_param(p.trial_list),
                          pn.widgets.Select.from_param(p.metric, width=160),
                          pn.widgets.CheckButtonGroup.from_param(p.modalities),
                          pn.widgets.IntSlider.from_param(p.round, name="round (DET, table)", width=220))
        self._layout = pn.Column(
            controls,
            FigureCard(pn.bind(self._per_round, run, p.trial_list, p.metric, p.modalities), "eer_per_round"),
            pn.Row(FigureCard(pn.bind(self._det, run, p.trial_list, p.modalities, p.round), "det_curves"),
                   pn.Column(pn.bind(lambda r, t: f"#### Round {r}, Vox1-{t}", p.round, p.trial_list),
                             table(pn.bind(self._table, run, p.trial_list, p.round)), width=520),
                   sizing_mode="stretch_width"),
            sizing_mode="stretch_width")

    def _per_round(self, run, trial_list, metric, modalities):
        return F.eer_per_round(self.data.scalars(run), trial_list=trial_list, metric=metric,
                               modalities=modalities or ["audio"])

    def _det(self, run, trial_list, modalities, round_):
        curves = {}
        for s in self.data.strategies(run):
            z = self.data.scores(run, s, round_)
            for m in modalities:
                if f"{trial_list}_{m}" in z and f"{trial_list}_labels" in z:
                    curves[(s, m)] = (z[f"{trial_list}_{m}"], z[f"{trial_list}_labels"])
        return F.det_curves(curves, title=f"DET curves · round {round_} · Vox1-{trial_list}")

    def _table(self, run, trial_list, round_):
        df = self.data.scalars(run)
        df = df[(df["stage"] == f"eval/{trial_list}") & (df["round"] == round_) & df["strategy"].notna()]
        t = pivot(df, f"no evaluation for round {round_}")
        if "eer" in t:
            t = t.assign(eer=100 * t["eer"]).rename(columns={"eer": "EER %"})
        return t.round(4)

    def __panel__(self):
        return self._layout


# --------------------------------------------------------------------------------------- embeddings
class Embeddings(RunView):
    """One round's 2-D projection (WebGL), coloured by pseudo label / true identity / label correct.

    The projection is the pipeline's (``projection.parquet``): nothing is projected here. The round
    slider and its player scrub across rounds; rounds are aligned, so the same utterances stay put.
    ``max_points`` (default 10,000) draws every step-th of the projection's points in key order (the
    same utterances in every round; 50,000 draws the pipeline's cap of them all), and the rounds
    before and after the one shown are read in a background thread, so that a slider step finds its
    points read (``bench/bench_paper_scale.py`` measures the move on a 20-round run at VoxCeleb2 size).
    """

    strategy = param.Selector(default=None, objects=[])
    view = param.Selector(default="joint", objects=["audio", "visual", "joint"])
    color_by = param.Selector(default="pseudo label", objects=list(F.COLOR_MODES))
    label_column = param.Selector(default="consensus", objects=VIEWS, doc="which pseudo label colours the points")
    round = param.Integer(default=1, bounds=(1, 2))
    max_points = param.Selector(default=POINTS_SHOWN[0], objects=list(POINTS_SHOWN),
                                doc="points drawn, of the projection's (every step-th in key order)")

    def __init__(self, **params):
        super().__init__(**params)
        self._sync()
        self.state.param.watch(lambda *_: self._sync(), "run")
        self.param.watch(lambda *_: self._round_bounds(self.strategy), "strategy")
        p = self.param
        player = pn.widgets.Player.from_param(  # its buttons only: the round slider sits beside it
            p.round, interval=1500, loop_policy="once", show_loop_controls=False, show_value=False, width=230,
            visible_buttons=["first", "previous", "play", "pause", "next", "last"], name="play rounds",
            stylesheets=["input[type=range] {display: none !important}"])
        controls = pn.Row(pn.widgets.Select.from_param(p.strategy, width=170),
                          pn.widgets.RadioButtonGroup.from_param(p.view, width=260),
                          pn.widgets.Select.from_param(p.color_by, width=150),
                          pn.widgets.Select.from_param(p.label_column, name="pseudo label of", width=130),
                          pn.widgets.Select.from_param(p.max_points, name="points drawn", width=120))
        self.card = FigureCard(pn.bind(self._figure, self.state.param.run, p.strategy, p.view, p.color_by,
                                       p.label_column, p.round, p.max_points), "projection")
        self._layout = pn.Column(controls, pn.Row(pn.widgets.IntSlider.from_param(p.round, width=320), player),
                                 self.card, sizing_mode="stretch_width")

    def _sync(self):
        self._strategy_choices()
        self._round_bounds(self.strategy)

    def _figure(self, run, strategy, view, color_by, label_column, round_, max_points=None):
        title = f"{F.STRATEGY_NAMES.get(strategy, strategy)} · round {round_} · {view} embeddings"
        pts = self.data.points(run, strategy, round_, view=view, label_column=label_column,
                               max_points=max_points) if strategy else None
        if strategy:  # the next and the previous round read in the background, while the browser draws this one
            for r in (round_ + 1, round_ - 1):
                if self.param.round.bounds[0] <= r <= self.param.round.bounds[1]:
                    _PREFETCH.submit(self.data.points, run, strategy, r, view=view, label_column=label_column,
                                     max_points=max_points)
        return F.projection_scatter(pd.DataFrame() if pts is None else pts, color_by=color_by, title=title,
                                    width=960, height=640)

    def __panel__(self):
        return self._layout
