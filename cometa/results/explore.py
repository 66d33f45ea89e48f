"""Explore finished runs from a notebook: the run API.

One entry point, :func:`open_run`, gives a :class:`Run` over a run directory or a study directory
(several seeds): its scalars as a DataFrame, the label tables, embeddings, projections and scores of a
strategy and round, Table 1 and Table 2, the label-noise tables and every figure of
:mod:`cometa.results.figures` (:func:`cometa.results.several_runs.open_runs` puts several runs side by side)::

    import cometa
    run = cometa.open_run("runs/demo")
    run.table1()                                # EER (%) per round, strategy x modality (Table 1)
    run.eer_per_round().show()                  # the report's figure
    labels = run.labels("cometa", 2)            # one row per utterance: speaker, a cluster id per view

Only the run directory is read, through :mod:`cometa.runs`, :mod:`cometa.results.report` and
:mod:`cometa.results.figures`: importing this module imports no torch and no training code.
(:meth:`Run.what_if` reruns a round through the orchestrator, :mod:`cometa.pipeline.rerun`, whose
notebook kernel does the training.)
"""
from __future__ import annotations

import base64
import functools
import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import soundfile as sf
import yaml

from cometa.pipeline import rerun
from cometa.results import figures as F
from cometa.results import label_noise, report
from cometa.results.run_record import run_provenance
from cometa.runs import recorded_corpus_root, study_runs

__all__ = ["Run", "Utterance", "open_run", "find_run", "FIGURES"]

#: the figures of :mod:`cometa.results.figures`, each a method of :class:`Run` of the same name
FIGURES = ("eer_per_round", "purity_per_round", "training_dynamics", "training_steps", "det_curves",
           "projection_scatter", "umap_grid", "label_transitions", "sample_history", "noise_breakdown")
REPO = Path(__file__).resolve().parents[2]


def find_run(run_dir: str | os.PathLike = "") -> Path:
    """The run a notebook opens: ``run_dir`` when given, else ``$COMETA_RUN_DIR``, else ``runs/demo``
    of this checkout, else the most recently changed run or study under ``runs/``. A relative path
    that does not exist from the working directory is taken relative to this checkout.

    Raises FileNotFoundError (saying what to do) when there is none.
    """
    given = str(run_dir) or os.environ.get("COMETA_RUN_DIR", "")
    if given:
        path = Path(given).expanduser()
        if not path.is_absolute() and not path.exists() and (REPO / path).exists():
            path = REPO / path  # a notebook's kernel runs in its own folder: "runs/demo" means this checkout's
        return path.resolve()
    runs = REPO / "runs"
    if _is_run(runs / "demo"):
        return runs / "demo"
    found = [p for p in runs.iterdir() if _is_run(p)] if runs.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no run under {runs}: set run_dir (or COMETA_RUN_DIR), or make one with "
                                "`make demo` (or `python -m cometa run --preset tiny`)")
    return max(found, key=lambda p: p.stat().st_mtime)


def _is_run(path: Path) -> bool:
    return (path / "store.sqlite").exists() or bool(study_runs(path))


def open_run(path: str | os.PathLike, *, name: str | None = None) -> Run:
    """Open a run directory (``store.sqlite``) or a study directory (``study.json`` + ``seed_<s>/``).

    Parameters
    ----------
    path : the directory.
    name : how the run is labelled when compared with others (default: the directory's name).
    """
    return Run(path, name=name)


class Run:
    """A finished (or running) run, or a study of several seeds, read from its directory.

    Parameters
    ----------
    path : a run directory (``store.sqlite``) or a study directory (``study.json`` and seed runs).
    name : the label used when runs are compared (default: the directory's name).

    For a study the scalars hold every seed (a ``seed`` column), so the tables and the EER and purity
    figures show the mean ± sample std over the seeds; the per-round files (labels, embeddings,
    projections, scores) are those of its first seed (:attr:`files_dir`), and :attr:`seeds` opens
    each seed as a run of its own.
    """

    def __init__(self, path: str | os.PathLike, *, name: str | None = None):
        self.path = Path(path).expanduser().resolve()
        if not _is_run(self.path):
            raise FileNotFoundError(f"{self.path}: neither a run directory (store.sqlite) nor a study "
                                    "(study.json with seed runs)")
        self.name = name or self.path.name
        self.is_study = not (self.path / "store.sqlite").exists()

    def __repr__(self) -> str:
        kind = f"study of {len(self.seeds)} seeds" if self.is_study else "run"
        return f"<cometa {kind} {self.name!r}: {', '.join(self.strategies)}; rounds {self.rounds()} at {self.path}>"

    # ------------------------------------------------------------------------------------ the run
    @property
    def seeds(self) -> list[Run]:
        """The seed runs of a study (named ``<study>/seed_<s>``); ``[self]`` for a single run."""
        if not self.is_study:
            return [self]
        return [Run(p, name=f"{self.name}/{p.name}") for p in study_runs(self.path)]

    @property
    def files_dir(self) -> Path:
        """Where the per-round files are read: the run itself, or a study's first seed run."""
        return report.files_dir(self.path)

    @functools.cached_property
    def config(self) -> dict:
        """The resolved config (``config.yaml``, with ``git_sha``); a study's ``seed`` lists its seeds."""
        cfg = yaml.safe_load((self.files_dir / "config.yaml").read_text()) or {}
        if self.is_study:
            cfg["seed"] = [r.config.get("seed") for r in self.seeds]
        return cfg

    @functools.cached_property
    def provenance(self) -> dict | None:
        """The run's record (``provenance.json``; a study's: its first seed run's): ``{"sessions": [...]}``,
        one session per ``cometa run`` that worked in it, each with the command, git commit and dirty flag,
        pinned packages, Python, CPU (model, SIMD flags, cores), ``OPENBLAS_CORETYPE``, GPU, host, and
        the start and end of every step it ran. None for a run made before records were kept."""
        return run_provenance(self.path)

    @functools.cached_property
    def scalars(self) -> pd.DataFrame:
        """Every scalar: columns ``run, strategy, stage, round, epoch, step, modality, name, value,
        time`` (and ``seed`` for a study), one row each (:func:`cometa.results.report.read_scalars`)."""
        return report.read_scalars(self.path)

    def reload(self) -> Run:
        """Forget what was read (a run still in progress has written more); returns ``self``."""
        for attr in ("scalars", "config"):
            self.__dict__.pop(attr, None)
        return self

    @property
    def strategies(self) -> list[str]:
        """Strategies with scalars (the paper's order first), then those the config plans."""
        found = report.strategies_of(self.scalars)
        planned = (self.config.get("stage2") or {}).get("strategies") or []
        return found + [s for s in planned if s not in found]

    def rounds(self, strategy: str | None = None) -> list[int]:
        """Rounds whose labels exist, of ``strategy`` (of any strategy when None)."""
        out = set()
        for s in [strategy] if strategy else self.strategies:
            for d in (self.files_dir / s).glob("round_*"):
                if d.name[6:].isdigit() and (d / "labels.parquet").exists():
                    out.add(int(d.name[6:]))
        return sorted(out)

    def _strategy(self, strategy: str | None) -> str:
        if strategy:
            if strategy not in self.strategies:
                raise KeyError(f"{self.name}: no strategy {strategy!r}; it has {', '.join(self.strategies)}")
            return strategy
        return "cometa" if "cometa" in self.strategies else self.strategies[0]

    def _round(self, strategy: str, round_: int | None) -> int:
        rounds = self.rounds(strategy)
        if not rounds:
            raise FileNotFoundError(f"{self.name}: {strategy} has no finished round yet")
        if round_ is None or round_ == -1:
            return rounds[-1]
        if round_ not in rounds:
            raise FileNotFoundError(f"{self.name}: {strategy} has no round {round_} (rounds: {rounds})")
        return int(round_)

    def _file(self, strategy: str, round_: int, name: str) -> Path:
        return self.files_dir / strategy / f"round_{int(round_)}" / name

    # ----------------------------------------------------------------------------- per-round files
    def labels(self, strategy: str | None = None, round_: int | None = None) -> pd.DataFrame:
        """A round's pseudo labels: ``key, speaker`` and a cluster id per view (``audio, visual, joint,
        consensus``; -1 = dropped). ``strategy`` defaults to cometa, ``round_`` to the last round."""
        s = self._strategy(strategy)
        return pd.read_parquet(self._file(s, self._round(s, round_), "labels.parquet"))

    def labels_by_round(self, strategy: str | None = None) -> dict[int, pd.DataFrame]:
        """``{round: labels}`` of every finished round of a strategy."""
        s = self._strategy(strategy)
        return {r: self.labels(s, r) for r in self.rounds(s)}

    def embeddings(self, strategy: str | None = None, round_: int | None = None) -> dict[str, np.ndarray]:
        """The embeddings a round clustered: ``keys`` (N,), ``audio`` (N, D_a), ``visual`` (N, D_v),
        ``joint`` (N, D_a + D_v). ``round_=0`` gives Stage I's (``keys``, ``audio``)."""
        if round_ == 0:
            path = self.files_dir / "stage1" / "embeddings.npz"
        else:
            s = self._strategy(strategy)
            path = self._file(s, self._round(s, round_), "embeddings.npz")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def projection(self, strategy: str | None = None, round_: int | None = None) -> pd.DataFrame:
        """A round's 2-D projections (``key, x, y, view``); empty when the run has none."""
        s = self._strategy(strategy)
        path = self._file(s, self._round(s, round_), "projection.parquet")
        return pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=["key", "x", "y", "view"])

    def scores(self, strategy: str | None = None, round_: int | None = None) -> dict[str, np.ndarray]:
        """A round's trial scores: ``<list>_labels`` (T,) and ``<list>_<modality>`` (T,) per trial list.
        ``round_=0`` gives Stage I's."""
        if round_ == 0:
            path = self.files_dir / "stage1" / "scores.npz"
        else:
            s = self._strategy(strategy)
            path = self._file(s, self._round(s, round_), "scores.npz")
        if not path.exists():
            return {}
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    # ---------------------------------------------------------------------------------- tables
    def table1(self, trial_list: str = "O", *, modalities: Sequence[str] = ("audio", "visual"),
               std: bool = False) -> pd.DataFrame:
        """Table 1: EER (%) on ``trial_list`` per stage (rows ``Untrained``, ``Stage I``, ``Round r``)
        and (strategy, modality) (columns), as :func:`cometa.results.report.table1` computes it. For a study
        the mean over the seeds, or with ``std=True`` their sample standard deviation."""
        t1 = report.table1(self.scalars, trial_list=trial_list, modalities=tuple(modalities))
        values = t1["std" if std else "values"]
        df = pd.DataFrame({c: {row: 100 * values.get(row, {}).get(c, np.nan) for row in t1["rows"]}
                           for c in t1["columns"]}, index=t1["rows"], columns=t1["columns"])
        df.columns = pd.MultiIndex.from_tuples([tuple(c.split("/")) for c in t1["columns"]],
                                               names=["strategy", "modality"])
        df.index.name = f"EER % (Vox1-{trial_list})" + (" std" if std else "")
        return df

    def table2(self, *, std: bool = False) -> pd.DataFrame:
        """Table 2: each strategy's last round; rows (strategy, modality, round), columns (trial list,
        metric), EER in % and minDCF as is, as :func:`cometa.results.report.table2` computes them. For a study
        the mean over the seeds, or with ``std=True`` their sample standard deviation."""
        t2 = report.table2(self.scalars)
        keys = [f"{lst}/{m}" for lst in t2["lists"] for m in t2["metrics"]]
        pct = {k: 100.0 if k.split("/")[1].startswith("eer") else 1.0 for k in keys}  # eer and eer_asnorm in %
        rows = {(r["strategy"], r["modality"], r["round"]):
                {k: pct[k] * (r.get("std", {}) if std else r).get(k, np.nan) for k in keys} for r in t2["rows"]}
        df = pd.DataFrame.from_dict(rows, orient="index", columns=keys)
        df.index = pd.MultiIndex.from_tuples(list(rows), names=["strategy", "modality", "round"])
        df.columns = pd.MultiIndex.from_tuples([tuple(k.split("/")) for k in keys], names=["list", "metric"])
        return df

    def table_text(self, which: int = 1, fmt: str = "markdown", *, trial_list: str = "O") -> str:
        """Table 1 or 2 as the report prints it: ``fmt`` ``"markdown"`` or ``"latex"`` (booktabs)."""
        if which not in (1, 2) or fmt not in ("markdown", "latex"):
            raise ValueError(f"table_text(which=1|2, fmt='markdown'|'latex'), got which={which!r}, fmt={fmt!r}")
        table = report.table1(self.scalars, trial_list=trial_list) if which == 1 else report.table2(self.scalars)
        return getattr(report, f"table{which}_{fmt}")(table)

    # ------------------------------------------------------------------------------ label noise
    def label_history(self, strategy: str | None = None) -> pd.DataFrame:
        """Each utterance's label correctness per round and view, and its summaries
        (:func:`cometa.results.figures.label_history`): index ``key``; ``r{round}_{view}`` 1 right / 0 wrong /
        NaN dropped; ``rounds_wrong``, ``flips``, ``wrong_both``, ``wrong_audio_only``, ``wrong_visual_only``."""
        return F.label_history(self.labels_by_round(strategy))

    def label_ids(self, strategy: str | None = None, view: str = "consensus") -> pd.DataFrame:
        """Each utterance's cluster id of ``view`` per round (index ``key``, columns the rounds)."""
        by_round = self.labels_by_round(strategy)
        return pd.DataFrame({r: lab.set_index("key")[view] for r, lab in by_round.items()}).rename_axis("key")

    def identity_events(self, strategy: str | None = None, *, view: str = "consensus",
                        share: float = 0.2) -> pd.DataFrame:
        """Which true identities merge or split, and in which round
        (:func:`cometa.results.label_noise.identity_events`)."""
        return label_noise.identity_events(self.labels_by_round(strategy), view, share=share)

    def merged_and_split(self, strategy: str | None = None, round_: int | None = None, *,
                         view: str = "consensus", share: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
        """One round's merged clusters and split speakers (:func:`cometa.results.label_noise.merged_and_split`)."""
        return label_noise.merged_and_split(self.labels(strategy, round_), view, share=share)

    def wrong_in_both(self, strategy: str | None = None, round_: int | None = None) -> pd.DataFrame:
        """The utterances wrong in both modalities in a round (:func:`cometa.results.label_noise.wrong_in_both`)."""
        return label_noise.wrong_in_both(self.labels(strategy, round_))

    @property
    def corpus_root(self) -> Path | None:
        """The corpus the run read (:func:`cometa.runs.recorded_corpus_root`): ``corpus/counts.json``'s
        root, else ``corpus.root`` of the config; None when neither is known."""
        return recorded_corpus_root(self.files_dir)

    def utterance(self, key: str, *, max_frames: int = 8) -> Utterance:
        """A training utterance's audio and face frames (``train/wav/<key>``, ``train/faces/<key
        without .wav>/*.jpg`` under :attr:`corpus_root`); displayed in a notebook, it plays and shows them."""
        root = self.corpus_root
        wav = root / "train" / "wav" / key if root else None
        stem = key[:-4] if key.endswith(".wav") else key
        frames = sorted((root / "train" / "faces" / stem).glob("*.jpg"))[:max_frames] if root else []
        return Utterance(key, wav if wav is not None and wav.exists() else None, frames)

    # --------------------------------------------------------------------------------- figures
    def eer_per_round(self, **kw) -> go.Figure:
        """:func:`cometa.results.figures.eer_per_round` (``trial_list``, ``metric``, ``modalities``, ...)."""
        return F.eer_per_round(self.scalars, **kw)

    def purity_per_round(self, **kw) -> go.Figure:
        """:func:`cometa.results.figures.purity_per_round` (``metric``, ``views``, ``strategies``, ...)."""
        return F.purity_per_round(self.scalars, **kw)

    def training_dynamics(self, **kw) -> go.Figure:
        """:func:`cometa.results.figures.training_dynamics` (``strategies``, ``panels``, ...)."""
        return F.training_dynamics(self.scalars, **kw)

    def training_steps(self, **kw) -> go.Figure:
        """:func:`cometa.results.figures.training_steps` (``names``, ``strategies``, ``smooth``, ...)."""
        return F.training_steps(self.scalars, **kw)

    def det_curves(self, round_: int | None = None, *, trial_list: str = "O",
                   modalities: Sequence[str] = ("audio", "visual"), strategies: Sequence[str] | None = None,
                   **kw) -> go.Figure:
        """:func:`cometa.results.figures.det_curves` of a round (default: each strategy's last) on ``trial_list``."""
        curves = {}
        for s in strategies or self.strategies:
            if not self.rounds(s):
                continue
            z = self.scores(s, round_ if round_ is not None else self.rounds(s)[-1])
            for m in modalities:
                if f"{trial_list}_{m}" in z and f"{trial_list}_labels" in z:
                    curves[(s, m)] = (z[f"{trial_list}_{m}"], z[f"{trial_list}_labels"])
        kw.setdefault("title", f"DET curves, {'last round' if round_ is None else f'round {round_}'}, "
                               f"Vox1-{trial_list} trials")
        return F.det_curves(curves, **kw)

    def points(self, strategy: str | None = None, round_: int | None = None, *, view: str = "joint",
               label_column: str = "consensus") -> pd.DataFrame:
        """A round's projection joined with its labels (:func:`cometa.results.figures.projection_frame`)."""
        s = self._strategy(strategy)
        r = self._round(s, round_)
        return F.projection_frame(self.projection(s, r), self.labels(s, r), view=view, label_column=label_column)

    def projection_scatter(self, strategy: str | None = None, round_: int | None = None, *, view: str = "joint",
                           label_column: str = "consensus", **kw) -> go.Figure:
        """:func:`cometa.results.figures.projection_scatter` of a round (``color_by``, ``height``, ``width``)."""
        s = self._strategy(strategy)
        r = self._round(s, round_)
        kw.setdefault("title", f"{F.STRATEGY_NAMES.get(s, s)} · round {r} · {view} embeddings")
        return F.projection_scatter(self.points(s, r, view=view, label_column=label_column), **kw)

    def umap_grid(self, *, view: str = "joint", strategies: Sequence[str] | None = None, **kw) -> go.Figure:
        """:func:`cometa.results.figures.umap_grid` of every round that has a projection (``color_by``, ``title``)."""
        panels = {(s, r): self.points(s, r, view=view) for s in strategies or self.strategies for r in self.rounds(s)
                  if self._file(s, r, "projection.parquet").exists()}
        return F.umap_grid(panels, **kw)

    def label_transitions(self, strategy: str | None = None, **kw) -> go.Figure:
        """:func:`cometa.results.figures.label_transitions` of a strategy's rounds (``mode``, ``top``, ``title``)."""
        return F.label_transitions(self.labels_by_round(strategy), **kw)

    def sample_history(self, strategy: str | None = None, **kw) -> go.Figure:
        """:func:`cometa.results.figures.sample_history` of a strategy (``max_samples``, ``views``, ``title``)."""
        return F.sample_history(self.label_history(strategy), **kw)

    def noise_breakdown(self, strategy: str | None = None, **kw) -> go.Figure:
        """:func:`cometa.results.figures.noise_breakdown` of a strategy (wrong in both modalities vs one)."""
        return F.noise_breakdown(self.label_history(strategy), **kw)

    def report_figures(self) -> dict[str, go.Figure]:
        """The report's figures by file stem (:func:`cometa.results.report.report_figures`)."""
        return report.report_figures(self.path, self.scalars)

    def round_summary(self, strategy: str | None = None, round_: int | None = None) -> pd.Series:
        """The headline numbers of one round (the last when None), for comparing runs round by round.

        EER (%) and minDCF (P_tar 0.01) per trial list and modality, consensus pseudo-label quality
        (purity, NMI, clusters), and the training's epoch means of λ, |D̄'|/|D̄| and the wrong-label
        fraction of the audio selection; for a study the means over the seeds. Missing ones are left out.
        """
        s = self._strategy(strategy)
        r = self._round(s, round_) if round_ is None else int(round_)
        df = self.scalars
        df = df[(df["strategy"] == s) & (df["round"] == r)]
        out: dict[str, float] = {}
        ev = F.seed_mean_std(df[df["stage"].str.startswith("eval/")], ["stage", "name", "modality"])
        ev = ev.set_index(["stage", "name", "modality"])["mean"]
        for name, label, scale in (("eer", "EER %", 100.0), ("min_dcf_0.01", "minDCF 0.01", 1.0)):
            for lst in report.LISTS:
                for m in ("audio", "visual", "fused"):
                    if (f"eval/{lst}", name, m) in ev.index:
                        out[f"{label} {lst} {m}"] = scale * float(ev[(f"eval/{lst}", name, m)])
        lab = df[(df["stage"] == "labels") & (df["modality"] == "consensus") &
                 df["name"].isin(["purity", "nmi", "n_clusters"])]
        for name, v in F.seed_mean_std(lab, ["name"]).set_index("name")["mean"].items():
            out[f"consensus {name}"] = v
        train = df[(df["stage"] == "train") & df["step"].isna()]
        for name, label in (("lambda", "λ"), ("disagreement_frac", "|D̄'|/|D̄|")):
            v = train.loc[train["name"] == name, "value"]
            if len(v):
                out[f"{label} (epoch mean)"] = float(v.mean())
        noisy = train[(train["name"] == "selected_noisy_frac") & (train["modality"] == "audio")]["value"]
        if len(noisy):
            out["wrong labels in the audio selection (epoch mean)"] = float(noisy.mean())
        return pd.Series(out, name=f"{self.name}: {s} round {r}", dtype=float)

    # ---------------------------------------------------------------------------------- what if
    def what_if(self, round_: int, *, out_dir: str | os.PathLike, overrides: Sequence[str] | dict = (),
                strategy: str | None = None, new_strategy: str | None = None, **kw) -> Run:
        """Rerun one round with changed settings into a new run directory (:func:`cometa.pipeline.rerun.what_if`)
        and open it."""
        if self.is_study:
            raise ValueError(f"{self.name} is a study: rerun one of its seeds (run.seeds[0].what_if(...))")
        out = rerun.what_if(self.path, round_=round_, out_dir=out_dir, overrides=overrides,
                      strategy=self._strategy(strategy), new_strategy=new_strategy, **kw)
        return Run(out)


class Utterance:
    """One training utterance's audio and face frames; a notebook shows the frames and an audio player.

    Attributes
    ----------
    key : the utterance key (``<speaker>/<video>/<utt>.wav``).
    wav : its audio file, or None when the corpus is not on this machine.
    frames : its face frames (JPEG files), possibly empty.
    """

    def __init__(self, key: str, wav: Path | None, frames: list[Path]):
        self.key, self.wav, self.frames = key, wav, list(frames)

    def __repr__(self) -> str:
        return f"<utterance {self.key}: {'audio' if self.wav else 'no audio'}, {len(self.frames)} face frame(s)>"

    def audio(self) -> tuple[np.ndarray, int]:
        """(samples (T,) float32, sample rate)."""
        if self.wav is None:
            raise FileNotFoundError(f"{self.key}: no audio file (is the corpus on this machine?)")
        samples, rate = sf.read(self.wav, dtype="float32")
        return samples, rate

    def _repr_html_(self) -> str:
        parts = [f"<div class='cometa-utterance'><b>{html.escape(self.key)}</b><br>"]
        if self.wav is not None:
            data = base64.b64encode(self.wav.read_bytes()).decode()
            parts.append(f"<audio controls src='data:audio/wav;base64,{data}'></audio><br>")
        else:
            parts.append("<i>no audio on this machine</i><br>")
        for f in self.frames:
            data = base64.b64encode(f.read_bytes()).decode()
            parts.append(f"<img src='data:image/jpeg;base64,{data}' width='96' height='96' "
                         f"style='margin:2px;image-rendering:pixelated' title='{html.escape(f.name)}'>")
        if not self.frames:
            parts.append("<i>no face frames</i>")
        return "".join(parts) + "</div>"
