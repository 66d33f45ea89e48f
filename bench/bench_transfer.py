"""Benchmark: the time of ONE Stage II step under each transfer option, as a ratio to full fine-tuning.

For each strategy (``baseline``, ``coteaching_plus``, ``cometa`` second order) and each option of the
cross-lingual transfer paper (Table 6 of the report):

- ``full``: everything trains (the study's default);
- ``adapters``: ``audio_encoder.adapters`` and ``visual_encoder.adapters`` on, ``stage2.train: adapters``,
  as from round 2 on (both encoders frozen but for their adapters; the heads train);
- ``distill_stage1``: ``stage2.distill.teacher: stage1`` (a frozen teacher embedding for the audio model);
- ``distill_peer``: ``stage2.distill.teacher: peer`` (both models, each through a learned 192 x 192 map);
- ``query_attention``: ``audio_encoder.pooling: query_attention`` instead of ASP.

The batch is :func:`bench.bench_steps.random_batch`'s (noise at the preset's sizes); the teachers'
embeddings are random unit vectors (a step's cost does not depend on their values). As in
``bench_steps``, every timed step starts from the same θ and Adam moments (restored, untimed), and
the configurations are interleaved within each repeat (reversed on alternate repeats) so that a
change of load hits them alike. ``ratio`` is each option's median over full fine-tuning's median for
the same strategy; ``ratio_paired`` the median over repeats of the per-repeat ratio.
Run: ``python -m bench.bench_transfer [--preset tiny] [--repeats N] [--threads T]``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bench.bench_steps import _restore, _snapshot, random_batch
from bench.common import summarise, text_table
from cometa.config import load_config
from cometa.core.strategies import Distillation, SpeakerClassifier, build_strategy
from cometa.models.build import build_audio_model, build_visual_model
from cometa.train.stage2 import set_trainable

STRATEGIES = ("baseline", "coteaching_plus", "cometa")
OPTIONS = {  # label -> config overrides; "full" first: the ratios are to it
    "full": [],
    "adapters": ["audio_encoder.adapters.enabled=true", "visual_encoder.adapters.enabled=true",
                 "stage2.train=adapters"],
    "distill_stage1": ["stage2.distill.teacher=stage1"],
    "distill_peer": ["stage2.distill.teacher=peer"],
    "query_attention": ["audio_encoder.pooling=query_attention"],
}


def _teachers(cfg, n: int, *, seed: int) -> Distillation | None:
    """Random unit teacher embeddings for rows 0..n-1 (the batch's ``index``), as the option asks."""
    d = cfg.stage2.distill
    if d.teacher == "none":
        return None
    g = torch.Generator().manual_seed(seed + 1)

    def rows(dim: int) -> torch.Tensor:
        return F.normalize(torch.randn(n, dim, generator=g), dim=1)

    if d.teacher == "stage1":
        return Distillation(d.weight, audio=rows(cfg.audio_encoder.embed_dim))
    return Distillation(d.weight, audio=rows(cfg.visual_encoder.embed_dim), visual=rows(cfg.audio_encoder.embed_dim))


def build(cfg, strategy: str, *, batch_size: int, seed: int = 0):
    """Both classifiers as a round >= 2 builds them under ``cfg`` (trainable parts per ``stage2.train``),
    and the strategy; returns (strategy, trainable parameters per modality)."""
    s2 = cfg.stage2
    peer = s2.distill.teacher == "peer"
    d_a, d_v = cfg.audio_encoder.embed_dim, cfg.visual_encoder.embed_dim
    torch.manual_seed(seed)
    audio = SpeakerClassifier(build_audio_model(cfg), d_a, cfg.clustering.k, margin=s2.margin, scale=s2.scale,
                              teacher_dim=d_v if peer else None)
    visual = SpeakerClassifier(build_visual_model(cfg), d_v, cfg.clustering.k, margin=s2.margin, scale=s2.scale,
                               teacher_dim=d_a if peer else None)
    trainable = set_trainable(s2.train, 2, audio, visual)
    audio.train(), visual.train()
    st = build_strategy(strategy, audio, visual, lr=s2.beta, alpha=s2.alpha, second_order=s2.second_order,
                        distill=_teachers(cfg, batch_size, seed=seed))
    return st, trainable


def main(preset: str = "demo", *, quick: bool = False, repeats: int | None = None, threads: int | None = 1,
         seed: int = 0) -> dict:
    """Time one step of every (strategy, option); print a table and return seconds and ratios.

    ``quick``: the tiny preset and 3 repeats. ``threads``: torch's intra-op threads (default 1, as a
    step gets when the pipeline runs two strategies' rounds at once on 2 cores; None: torch's own)."""
    if quick:
        preset = "tiny"
    repeats = repeats or (3 if quick else 7)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _measure(preset, repeats=repeats, seed=seed)
    finally:
        torch.set_num_threads(before)


def _measure(preset: str, *, repeats: int, seed: int) -> dict:
    base = load_config(preset)
    keep = 1.0 - base.stage2.tau
    batch = random_batch(base, seed=seed)
    runs, params = {}, {}
    for option, overrides in OPTIONS.items():
        cfg = load_config(preset, overrides=overrides)
        for strategy in STRATEGIES:
            runs[(strategy, option)], params[(strategy, option)] = build(cfg, strategy, batch_size=len(batch),
                                                                         seed=seed)
    theta, snaps = {}, {}
    for key, st in runs.items():  # one untimed step each: Adam's moments allocated
        theta[key] = _snapshot(st)
        torch.manual_seed(seed)
        st.step(batch, keep_ratio=keep)
        snaps[key] = _snapshot(st)
    times: dict[tuple, list[float]] = {k: [] for k in runs}
    keys = list(runs)
    for r in range(repeats):
        for key in (keys if r % 2 == 0 else keys[::-1]):
            st = runs[key]
            _restore(st, theta[key], snaps[key], seed=seed)
            t0 = time.perf_counter()
            st.step(batch, keep_ratio=keep)
            times[key].append(time.perf_counter() - t0)

    result = {"preset": preset, "batch_size": len(batch), "repeats": repeats, "torch_threads": torch.get_num_threads(),
              "options": {o: OPTIONS[o] for o in OPTIONS}, "steps": {}}
    rows = []
    for strategy in STRATEGIES:
        full = times[(strategy, "full")]
        for option in OPTIONS:
            t = times[(strategy, option)]
            summ = summarise(t)
            entry = {**{k: round(v, 4) if isinstance(v, float) else v for k, v in summ.items()},
                     "trainable_audio": params[(strategy, option)]["audio"],
                     "trainable_visual": params[(strategy, option)]["visual"],
                     "ratio": round(summ["median_s"] / statistics.median(full), 3),
                     "ratio_paired": round(statistics.median(a / b for a, b in zip(t, full)), 3)}
            result["steps"][f"{strategy}/{option}"] = entry
            rows.append([strategy, option, entry["trainable_audio"], entry["trainable_visual"], entry["median_s"],
                         entry["min_s"], entry["ratio"], entry["ratio_paired"]])
    spread = max(v["median_s"] / v["min_s"] for v in result["steps"].values())
    result["median_over_min_max"] = round(spread, 3)
    result["load_disturbed"] = bool(spread > 1.25)
    s = result["steps"]
    result["headline"] = ("step time / full fine-tuning, median: " + "; ".join(
        f"{st}: " + ", ".join(f"{o} x{s[f'{st}/{o}']['ratio']:.2f}" for o in OPTIONS if o != "full")
        for st in STRATEGIES) + f" at {preset}, B={len(batch)}, {torch.get_num_threads()} thread(s)"
        + (f"; LOAD-DISTURBED (median/min up to x{spread:.1f})" if result["load_disturbed"] else ""))
    print(f"Stage II step per transfer option, preset {preset}: B={len(batch)}, {repeats} interleaved repeats, "
          f"{torch.get_num_threads()} torch thread(s); trainable parameters as from round 2 (heads of k rows)")
    print(text_table(rows, ["strategy", "option", "trainable A", "trainable V", "median s", "min s", "x full",
                            "x full (paired)"]))
    if result["load_disturbed"]:
        print(f"warning: median/min up to x{spread:.2f}: other load disturbed the timings")
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo", choices=["tiny", "demo", "paper"])
    ap.add_argument("--repeats", type=int, default=None, help="interleaved timed steps per configuration")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's own)")
    ap.add_argument("--quick", action="store_true", help="tiny preset, 3 repeats")
    a = ap.parse_args()
    main(a.preset, quick=a.quick, repeats=a.repeats, threads=a.threads or None)
