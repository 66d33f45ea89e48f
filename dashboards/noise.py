"""The label-noise diagnosis view: which utterances carry wrong pseudo labels, how, and for how long.

Per strategy: each utterance's label history across rounds (rounds wrong, flips), utterances wrong
in both modalities vs one only (the case the paper's gradient regularisation targets), true speakers
merged into one cluster or split over several, and the flow of utterances between consecutive
rounds (Sankey), and a round's utterances sorted by a label-issue score (cleanlab's self-confidence
or normalised margin, out of sample; :mod:`cometa.pipeline.analysis`) with the precision/recall curve
of that order against the wrong labels. Selecting an utterance shows its face frames and plays its
audio, read from the corpus named in the run's config (``train/wav/<key>``,
``train/faces/<key without .wav>/*.jpg``).
"""
from __future__ import annotations

import pandas as pd
import panel as pn
import param

from cometa.results import figures as F
from cometa.results.label_noise import label_issue_ranking, merged_and_split, precision_recall
from dashboards.components import FigureCard, RunView, table

__all__ = ["NoiseDiagnosis"]

_SAMPLE_COLUMNS = {"rounds_wrong": "rounds wrong", "flips": "flips",
                   "wrong_both": "both wrong", "wrong_audio_only": "audio only", "wrong_visual_only": "visual only"}

_PR_POINTS = 2_000  # a precision/recall curve sent to the browser: this many points, whatever N

_COMPACT = (":host .tabulator, :host .tabulator-row, :host .tabulator-header {font-size: 13px !important} "
            ":host .tabulator-cell {padding: 4px 6px !important}")


class NoiseDiagnosis(RunView):
    """Each utterance's label history; wrong in both modalities vs one; merges, splits; transitions."""

    strategy = param.Selector(default=None, objects=[])
    round = param.Integer(default=1, bounds=(1, 2))
    transitions = param.Selector(default="purity", objects=["purity", "correct", "clusters"])
    sample = param.String(default="", doc="the utterance key shown with its faces and audio")
    issue_view = param.Selector(default="joint", objects=["audio", "visual", "joint"])
    issue_score = param.Selector(default="self_confidence", objects=["self_confidence", "normalized_margin"])

    def __init__(self, **params):
        super().__init__(**params)
        self._sync()
        self.state.param.watch(lambda *_: self._sync(), "run")
        self.param.watch(lambda *_: self._round_bounds(self.strategy), "strategy")
        p, run = self.param, self.state.param.run
        self._samples = pn.widgets.Tabulator(pn.bind(self._sample_table, run, p.strategy), selectable=1,
                                             disabled=True, pagination="remote", page_size=12, height=440,
                                             layout="fit_columns", titles=_SAMPLE_COLUMNS, show_index=False,
                                             sizing_mode="stretch_width", stylesheets=[_COMPACT])
        self._samples.param.watch(self._on_select, "selection")
        history = FigureCard(pn.bind(self._history, run, p.strategy), "sample_history")
        history.pane.param.watch(self._on_click, "click_data")
        self._issues = pn.widgets.Tabulator(pn.bind(self._issue_table, run, p.strategy, p.round, p.issue_view,
                                                    p.issue_score), selectable=1, disabled=True,
                                            pagination="remote", page_size=12, height=440, layout="fit_columns",
                                            show_index=False, sizing_mode="stretch_width", stylesheets=[_COMPACT])
        self._issues.param.watch(self._on_select_issue, "selection")
        issues_pr = FigureCard(pn.bind(self._issue_pr, run, p.strategy, p.round, p.issue_score), "label_issue_pr")
        merged = table(pn.bind(lambda *a: self._merge_split(*a)[0], run, p.strategy, p.round))
        split = table(pn.bind(lambda *a: self._merge_split(*a)[1], run, p.strategy, p.round))
        self._layout = pn.Column(
            pn.Row(pn.widgets.Select.from_param(p.strategy, width=170),
                   pn.widgets.IntSlider.from_param(p.round, name="round (merges / splits)", width=260),
                   pn.widgets.RadioButtonGroup.from_param(p.transitions, width=330)),
            pn.Row(FigureCard(pn.bind(self._breakdown, run, p.strategy), "noise_breakdown"),
                   FigureCard(pn.bind(self._sankey, run, p.strategy, p.transitions), "label_transitions"),
                   sizing_mode="stretch_width"),
            pn.Row(pn.Column("### Utterances, worst first: select one", self._samples, sizing_mode="stretch_width"),
                   pn.Column("### Faces and audio", pn.bind(self._media, run, p.sample), width=360),
                   sizing_mode="stretch_width"),
            history,
            pn.Row(pn.widgets.RadioButtonGroup.from_param(p.issue_view, width=240),
                   pn.widgets.RadioButtonGroup.from_param(p.issue_score, width=330)),
            pn.Row(pn.Column(pn.bind(lambda r: f"### Label-issue scores (round {r}): most suspect first", p.round),
                             self._issues, sizing_mode="stretch_width"),
                   issues_pr, sizing_mode="stretch_width"),
            pn.Row(pn.Column(pn.bind(lambda r: f"### Merged clusters (round {r})", p.round), merged,
                             sizing_mode="stretch_width"),
                   pn.Column(pn.bind(lambda r: f"### Split speakers (round {r})", p.round), split,
                             sizing_mode="stretch_width"),
                   sizing_mode="stretch_width"),
            sizing_mode="stretch_width")

    def _sync(self):
        self._strategy_choices()
        self._round_bounds(self.strategy)
        self.sample = ""

    def _hist(self, run, strategy) -> pd.DataFrame:
        return self.data.history(run, strategy) if strategy else pd.DataFrame()

    def _breakdown(self, run, strategy):
        return F.noise_breakdown(self._hist(run, strategy),
                                 title=f"{F.STRATEGY_NAMES.get(strategy, strategy)}: wrong pseudo labels by modality")

    def _sankey(self, run, strategy, mode):
        return self.data.transitions(run, strategy, mode=mode,
                                     title=f"{F.STRATEGY_NAMES.get(strategy, strategy)}: consensus labels from "
                                           f"round to round ({mode})")

    def _history(self, run, strategy):
        return F.sample_history(self._hist(run, strategy),
                                title=f"{F.STRATEGY_NAMES.get(strategy, strategy)}: per-utterance label history "
                                      "(click a row to see and hear it)")

    def _sample_table(self, run, strategy) -> pd.DataFrame:
        h = self._hist(run, strategy)
        if h.empty:
            return pd.DataFrame(columns=["key"])
        return (h[[c for c in _SAMPLE_COLUMNS if c in h]].reset_index()
                .sort_values(["rounds_wrong", "wrong_both", "flips"], ascending=False).reset_index(drop=True))

    def _issue_table(self, run, strategy, round_, view, score) -> pd.DataFrame:
        issues = self.data.label_issues(run, strategy, round_) if strategy else pd.DataFrame()
        return label_issue_ranking(issues, view=view, score=score)

    def _issue_pr(self, run, strategy, round_, score):
        issues = self.data.label_issues(run, strategy, round_) if strategy else pd.DataFrame()
        curves = {v: precision_recall(label_issue_ranking(issues, view=v, score=score), max_points=_PR_POINTS)
                  for v in ("audio", "visual", "joint")} if not issues.empty else {}
        base = float(issues.loc[issues["view"] == "joint", "wrong"].mean()) if not issues.empty else None
        return F.label_issue_pr(curves, base_rate=base,
                                title=f"{F.STRATEGY_NAMES.get(strategy, strategy)}, round {round_}: {score} "
                                      "ranking the wrong labels (precision / recall)")

    def _on_select_issue(self, event):
        if event.new:
            self.sample = str(self._issues.value.iloc[event.new[0]]["key"])

    def _merge_split(self, run, strategy, round_):
        labels = self.data.labels(run, strategy, round_) if strategy else pd.DataFrame()
        if labels.empty:
            empty = pd.DataFrame({"": [f"no labels for round {round_}"]})
            return empty, empty
        return merged_and_split(labels)

    def _on_select(self, event):
        if event.new:
            self.sample = str(self._samples.value.iloc[event.new[0]]["key"])

    def _on_click(self, event):
        points = (event.new or {}).get("points") or []
        if points and isinstance(points[0].get("y"), str):
            self.sample = points[0]["y"]

    def _media(self, run, key):
        if not key:
            return pn.pane.Markdown("Select an utterance in the table, or click a row of the label history.")
        wav, frames = self.data.media(run, key)
        h = self._hist(run, self.strategy)
        facts = ""
        if key in h.index:
            row = h.loc[key]
            facts = (f"speaker **{row['speaker']}** · wrong in {int(row['rounds_wrong'])} round(s) · "
                     f"{int(row['flips'])} flip(s)")
        parts = [pn.pane.Markdown(f"**{key}**  \n{facts}")]
        parts.append(pn.pane.Audio(str(wav), name="audio", width=340) if wav else
                     pn.pane.Markdown(f"_no audio at corpus root {self.data.corpus_root(run)}_"))
        parts.append(pn.FlexBox(*[pn.pane.JPG(str(f), width=84, height=84) for f in frames]) if frames else
                     pn.pane.Markdown("_no face frames_"))
        return pn.Column(*parts)

    def __panel__(self):
        return self._layout
