"""The steps of a run: which notebook each runs, with which parameters, after which steps, and the
hash of its inputs that decides whether a finished step is still complete.

A step's inputs hash covers its name, the config sections it reads and the input hashes of the
steps it depends on, so a change reruns the step and everything downstream of it. The run
directory is not part of it: a finished step copied into another run directory is complete there.

Options added after runs existed hash only where they change something (:func:`_encoder_sections`,
:func:`_stage2_section`, :func:`_clustering_section`, :func:`_evaluation_section`): at their defaults a
step's hash is what it was before they existed, so finished runs stay complete. Stage I never has
adapters (``*.adapters``, ``stage2.train`` and ``stage2.distill`` key the rounds only, and one Stage I
serves every such variant); the audio encoder's ``pooling`` changes Stage I's model and keys Stage I
(and so everything after it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cometa.config import Config, ConfigError
from cometa.config.sections import STRATEGY_OPTIONS, check_stage2_options

__all__ = ["NOTEBOOK_DIR", "STEP_WEIGHT", "Step", "plan_steps", "analysis_steps", "report_step", "inputs_hash",
           "notebook_parameters"]

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
# stage2.lgl / stage2.dlg_lc are read by their own strategy's rounds only (added back per strategy below),
# so the other strategies' rounds keep their hashes
STAGE2_FIELDS_NOT_AFFECTING_ROUNDS = ("strategies", "rounds", *STRATEGY_OPTIONS)
# relative cost of a round step per strategy (bench/bench_steps.py: cometa's second-order step is
# ~4.7x baseline's, but embeddings, clustering and evaluation are shared: a round costs ~1.5x)
STEP_WEIGHT = {"cometa": 1.5}


@dataclass
class Step:
    name: str  # e.g. "stage1", "cometa/round_2"
    notebook: str  # template in notebooks/
    out_dir: Path
    parameters: dict[str, Any]  # the notebook's parameters, but for its thread count (notebook_parameters)
    sections: dict[str, Any]  # config content this step reads
    depends: list[str] = field(default_factory=list)
    always: bool = False  # rerun every time (the report)
    threaded: bool = True  # the notebook takes a ``threads`` parameter (its share of the cores)
    inputs_hash: str = ""

    @property
    def weight(self) -> float:
        """The step's estimated cost relative to a baseline round (:data:`STEP_WEIGHT`), for scheduling."""
        return STEP_WEIGHT.get(str(self.parameters.get("strategy")), 1.0)


def notebook_parameters(step: Step, threads: int) -> dict[str, Any]:
    """What papermill passes to the step's notebook: its parameters, and ``threads`` where it takes them."""
    return dict(step.parameters, threads=int(threads)) if step.threaded else dict(step.parameters)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _encoder_sections(d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(audio encoder as Stage I reads it, visual encoder as a round reads it, the audio adapters a
    round adds): ``adapters`` only when enabled, ``pooling`` only when not ``asp``."""
    audio = {k: v for k, v in d["audio_encoder"].items() if k != "adapters"}
    if audio.get("pooling") == "asp":
        del audio["pooling"]
    visual = {k: v for k, v in d["visual_encoder"].items() if k != "adapters" or v["enabled"]}
    adapters = d["audio_encoder"]["adapters"]
    return audio, visual, ({"audio_adapters": adapters} if adapters["enabled"] else {})


def _clustering_section(d: dict[str, Any]) -> dict[str, Any]:
    """The clustering keys a round reads: ``truth_noise`` and ``truth_noise_unit`` only with
    ``method: truth``, ``truth_noise_target`` only there and when not ``uniform`` (so the runs made
    before it existed keep their hashes)."""
    out = dict(d["clustering"])
    if out["method"] != "truth":
        out.pop("truth_noise", None)
        out.pop("truth_noise_unit", None)
    if out["method"] != "truth" or out.get("truth_noise_target") == "uniform":
        out.pop("truth_noise_target", None)
    return out


def _evaluation_section(d: dict[str, Any]) -> dict[str, Any]:
    """The evaluation keys an analysis step reads: ``label_issues``' ``method``, ``temperature`` and
    ``top_k`` only when the method is not ``exact`` (so the runs made before they existed keep their hashes)."""
    issues = dict(d["evaluation"]["label_issues"])
    if issues.get("method", "exact") == "exact":
        for key in ("method", "temperature", "top_k"):
            issues.pop(key, None)
    return {**d["evaluation"], "label_issues": issues}


def _stage2_section(d: dict[str, Any]) -> dict[str, Any]:
    """The stage2 keys a round reads: ``train`` only when not ``full``, ``distill`` only with a teacher,
    ``lr_scope`` only when not ``round`` (and then ``rounds`` too), ``optimizer_scope`` only when not
    ``round``."""
    out = {k: v for k, v in d["stage2"].items() if k not in STAGE2_FIELDS_NOT_AFFECTING_ROUNDS}
    if out.get("train") == "full":
        del out["train"]
    if out.get("distill", {}).get("teacher") == "none":
        del out["distill"]
    if out.get("lr_scope") == "round":
        del out["lr_scope"]
    elif "lr_scope" in out:  # one schedule over the whole stage: its length, so every round's slice, reads rounds
        out["rounds"] = d["stage2"]["rounds"]
    if out.get("optimizer_scope") == "round":
        del out["optimizer_scope"]
    return out


def plan_steps(cfg: Config, run_dir: Path) -> list[Step]:
    """The ordered (topologically) steps of a run and their input hashes."""
    try:
        check_stage2_options(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    d = cfg.to_dict()
    common = {k: d[k] for k in ("seed", "device", "num_workers")}
    stage2 = _stage2_section(d)
    audio_encoder, visual_encoder, audio_adapters = _encoder_sections(d)
    rd = str(run_dir)
    steps = [
        Step("corpus", "00_corpus.ipynb", run_dir / "corpus", {"run_dir": rd},
             {"corpus": d["corpus"], "eval": d["eval"], "visual_size": d["visual_encoder"]["image_size"]}),
        Step("stage1", "10_stage1.ipynb", run_dir / "stage1", {"run_dir": rd},
             {**common, "audio_encoder": audio_encoder, **{k: d[k] for k in ("features", "augment", "stage1", "eval")}},
             depends=["corpus"]),
    ]
    for strategy in cfg.stage2.strategies:
        for r in range(1, cfg.stage2.rounds + 1):
            prev = "stage1" if r == 1 else f"{strategy}/round_{r - 1}"
            steps.append(Step(
                f"{strategy}/round_{r}", "20_round.ipynb", run_dir / strategy / f"round_{r}",
                {"run_dir": rd, "strategy": strategy, "round_no": r},
                {**common, "strategy": strategy, "round": r,
                 "stage2": {**stage2, **({strategy: d["stage2"][strategy]} if strategy in STRATEGY_OPTIONS else {})},
                 "visual_encoder": visual_encoder, **audio_adapters, "clustering": _clustering_section(d),
                 **{k: d[k] for k in ("augment", "features", "eval")}},
                depends=[prev]))
    if cfg.projection.enabled:  # one step for every strategy: UMAP's JIT warm-up is paid once
        strategies = list(cfg.stage2.strategies)
        steps.append(Step(
            "projections", "30_projections.ipynb", run_dir / "projections",
            {"run_dir": rd, "strategies": ",".join(strategies), "rounds": cfg.stage2.rounds},
            {"projection": d["projection"], "seed": cfg.seed},
            depends=[f"{s}/round_{r}" for s in strategies for r in range(1, cfg.stage2.rounds + 1)]))
    steps += analysis_steps(cfg, run_dir)
    steps.append(report_step(run_dir, depends=[s.name for s in steps], static=cfg.report.static))
    by_name: dict[str, Step] = {}
    for s in steps:
        s.inputs_hash = inputs_hash(s, [by_name[n].inputs_hash for n in s.depends])
        by_name[s.name] = s
    return steps


def analysis_steps(cfg: Config, run_dir: Path) -> list[Step]:
    """AS-norm and label-issue scores (``evaluation``), read from finished steps, training nothing:
    ``analysis/stage1`` (AS-norm of Stage I) and one ``analysis/<strategy>`` per strategy, after its
    last round (so that one strategy's analysis runs while another still trains)."""
    ev, d = cfg.evaluation, cfg.to_dict()
    if not (ev.as_norm.enabled or ev.label_issues.enabled):
        return []
    sections = {**{k: d[k] for k in ("seed", "device", "num_workers")}, "evaluation": _evaluation_section(d),
                "eval": d["eval"]}
    rounds = cfg.stage2.rounds
    steps = [Step("analysis/stage1", "40_analysis.ipynb", run_dir / "analysis" / "stage1",
                  {"run_dir": str(run_dir), "strategies": "", "rounds": 0, "stage1": True},
                  sections, depends=["stage1"])]
    for s in cfg.stage2.strategies:
        steps.append(Step(f"analysis/{s}", "40_analysis.ipynb", run_dir / "analysis" / s,
                          {"run_dir": str(run_dir), "strategies": s, "rounds": rounds, "stage1": False},
                          dict(sections, strategy=s), depends=[f"{s}/round_{r}" for r in range(1, rounds + 1)]))
    return steps if ev.as_norm.enabled else steps[1:]


def report_step(run_dir: Path, *, depends: list[str] | None = None, static: bool = True) -> Step:
    """The report of a run (its last step, rerun every time) or of a study of several seeds;
    ``static``: export the figures as SVG/PDF/PNG too (config ``report.static``)."""
    return Step("report", "90_report.ipynb", Path(run_dir) / "report", {"run_dir": str(run_dir), "static": static}, {},
                depends=list(depends or []), always=True, threaded=False)


def inputs_hash(step: Step, depends: list[str]) -> str:
    """The hash that keys a step: its name, the config sections it reads and the input hashes of the
    steps it depends on (``depends``, in the order of ``step.depends``). The run directory is not
    part of it, so a finished step copied into another run directory is still complete there."""
    return _hash({"step": step.name, "sections": step.sections, "depends": list(depends)})
