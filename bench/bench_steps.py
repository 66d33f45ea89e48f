"""Benchmark: the time of ONE Stage II training step per strategy, on the same batch, as a ratio to `baseline`.

Strategies timed (cometa.core.strategies, the real models of cometa.models.build at the chosen preset):
``baseline``, ``coteaching_plus``, ``cometa`` first order and ``cometa`` second order (Algorithm 1).

The batch is random: ``stage2.batch_size`` white-noise waveform crops of ``features.crop_seconds``
and uniform-noise face frames, labels drawn uniformly over ``clustering.k`` classes. Two freshly
initialised encoders then disagree (Eq. 3) on almost every sample, the realistic early-round case;
the figures report |D̄'| so this can be checked. For ``cometa`` the step's cost hardly depends on
|D̄'| (the query forward runs on the whole D̄ under θ'), except that an empty D̄' (the models
agree everywhere) skips the update and costs one forward pass per model.

Every timed step starts from the same state: the initial θ (the same for all variants, by seed)
and the Adam moments left by one untimed warm-up step are restored (untimed) before every timed
step, so all repeats and all strategies see the same θ, the same batch and the same D̄'. The
strategies are interleaved within each repeat (order reversed on alternate repeats) so that a
change in machine load hits them all alike. ``ratio_median`` is the ratio of the medians;
``ratio_min`` compares the best steps; ``ratio_paired_median`` is the median over repeats of each
step's ratio to the baseline step of the same repeat.
Run: ``python -m bench.bench_steps [--preset tiny] [--repeats N]``.

``--profile`` says where each step's time goes instead: the same batch and states, a few steps of
each variant under ``torch.profiler``, split by the ranges the strategies mark (``cometa.forward[audio]``,
``cometa.inner_gradient[visual]``, ...: :data:`PHASES`), each model's part of the step as a multiple
of the baseline's forward + backward of that model, and the second-order outer gradient by the
autograd node whose work it is, beside the baseline's backward. The profiler's own overhead inflates
small operators; read the ratios, not the milliseconds, as the result.
Run: ``python -m bench.bench_steps --profile [--threads 1]``.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch
from torch.profiler import ProfilerActivity, record_function

from bench.common import summarise, text_table
from cometa.config import load_config
from cometa.core.strategies import Batch, SpeakerClassifier, build_strategy
from cometa.models.build import build_audio_model, build_visual_model

# (label, strategy name, second_order); `baseline` first: the ratios are to it
VARIANTS = (
    ("baseline", "baseline", True),
    ("coteaching_plus", "coteaching_plus", True),
    ("cometa_1st_order", "cometa", False),
    ("cometa_2nd_order", "cometa", True),
)


# the profiler ranges the strategies mark (cometa.core.strategies, cometa.core.meta), in step order;
# "[m]" stands for each modality
PHASES = ("front_end", "forward[m]", "selection", "backward[m]", "inner_gradient[m]", "query_forward[m]",
          "outer_gradient[m]", "optimiser")


def _phase_names() -> list[str]:
    return [p.replace("[m]", f"[{m}]") for p in PHASES for m in (("audio", "visual") if "[m]" in p else ("",))]


def random_batch(cfg, *, seed: int = 0) -> Batch:
    """A Stage II mini-batch of noise at the preset's sizes (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    b = cfg.stage2.batch_size
    t = int(round(cfg.features.crop_seconds * cfg.features.sample_rate))
    s = cfg.visual_encoder.image_size
    audio = 0.1 * torch.randn(b, t, generator=g)  # (B, T) waveform crops
    frames = torch.rand(b, 3, s, s, generator=g)  # (B, 3, S, S) in [0, 1]
    labels = torch.randint(0, cfg.clustering.k, (b,), generator=g)  # (B,) consensus labels
    noisy = torch.rand(b, generator=g) < cfg.stage2.tau  # (B,) instrumentation only
    return Batch(audio, frames, labels, noisy, torch.arange(b))


def build_variant(cfg, name: str, second_order: bool, *, seed: int = 0, device: str = "cpu"):
    """Both classifiers (same initial θ for every variant, via the seed) on ``device``, and the strategy."""
    s2 = cfg.stage2
    torch.manual_seed(seed)
    audio = SpeakerClassifier(build_audio_model(cfg), cfg.audio_encoder.embed_dim, cfg.clustering.k,
                              margin=s2.margin, scale=s2.scale)
    visual = SpeakerClassifier(build_visual_model(cfg), cfg.visual_encoder.embed_dim, cfg.clustering.k,
                               margin=s2.margin, scale=s2.scale)
    audio.train(), visual.train()
    audio.to(device), visual.to(device)  # before the optimisers are built
    return build_strategy(name, audio, visual, lr=s2.beta, alpha=s2.alpha, second_order=second_order)


def _snapshot(strategy) -> dict:
    # deep copies: Optimizer.load_state_dict may alias the given CPU tensors, which step() then mutates
    return copy.deepcopy({"audio": strategy.audio.state_dict(), "visual": strategy.visual.state_dict(),
                          "strategy": strategy.state_dict()})


def _restore(strategy, theta: dict, opt: dict, *, seed: int) -> None:
    """θ (and BatchNorm buffers) from ``theta``, Adam moments from ``opt``, and the RNG."""
    strategy.audio.load_state_dict(theta["audio"])
    strategy.visual.load_state_dict(theta["visual"])
    strategy.load_state_dict(copy.deepcopy(opt["strategy"]))
    torch.manual_seed(seed)


def main(preset: str = "demo", *, quick: bool = False, repeats: int | None = None, threads: int | None = None,
         seed: int = 0, device: str = "cpu") -> dict:
    """Time one step of each strategy; print a table and return seconds and ratios to `baseline`.

    ``quick`` switches to the ``tiny`` preset and 3 repeats (unless given explicitly). ``threads``
    sets torch's intra-op threads for the measurement (default: torch's own choice). On a quiet
    2-core machine the ratios agreed at 1 and 2 threads; with other jobs running (load 5-6) single
    2-thread steps varied up to x7 between repeats, so check ``load_disturbed``. ``device``: where the
    models and the batch live (``cuda``: each timed step ends with a synchronisation).
    """
    if quick:
        preset = "tiny"
    if threads is None:
        return _measure(preset, repeats=repeats or (3 if quick else 9), seed=seed, device=device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(preset, repeats=repeats or (3 if quick else 9), seed=seed, device=device)
    finally:
        torch.set_num_threads(before)


def _measure(preset: str, *, repeats: int, seed: int, device: str = "cpu") -> dict:
    """The measurement itself, under the current torch thread setting (see :func:`main`)."""
    cfg = load_config(preset)
    keep = 1.0 - cfg.stage2.tau  # λ(e) after the ramp (cometa.core.schedules)
    batch = random_batch(cfg, seed=seed).to(torch.device(device))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)  # GPU work is asynchronous
    strategies, snaps, stats = {}, {}, {}
    for label, name, order in VARIANTS:
        strategies[label] = build_variant(cfg, name, order, seed=seed, device=device)
    n_params = {m: sum(p.numel() for p in getattr(strategies["baseline"], m).parameters()) for m in ("audio", "visual")}

    # every timed step starts from the initial θ (identical across variants, hence the same
    # disagreement set) and from the Adam moments left by one warm-up step (allocated state)
    theta = {label: _snapshot(st) for label, st in strategies.items()}
    warmup = {}
    for label, st in strategies.items():
        torch.manual_seed(seed)
        sync()
        t0 = time.perf_counter()
        st.step(batch, keep_ratio=keep)
        sync()
        warmup[label] = time.perf_counter() - t0
        snaps[label] = _snapshot(st)

    times = {label: [] for label in strategies}
    labels = list(strategies)
    for r in range(repeats):
        for label in (labels if r % 2 == 0 else labels[::-1]):
            st = strategies[label]
            _restore(st, theta[label], snaps[label], seed=seed)
            sync()
            t0 = time.perf_counter()
            s = st.step(batch, keep_ratio=keep)
            sync()
            times[label].append(time.perf_counter() - t0)
            stats[label] = s

    base = summarise(times["baseline"])
    result = {
        "preset": preset, "batch_size": len(batch), "crop_seconds": cfg.features.crop_seconds,
        "image_size": cfg.visual_encoder.image_size, "k": cfg.clustering.k, "keep_ratio": keep,
        "repeats": repeats, "torch_threads": torch.get_num_threads(), "device": device,
        "params_audio": n_params["audio"], "params_visual": n_params["visual"],
        "strategies": {},
    }
    for label, _, _ in VARIANTS:
        summ = summarise(times[label])
        s = stats[label]
        result["strategies"][label] = {
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in summ.items()},
            "warmup_s": round(warmup[label], 4),
            "ratio_median": round(summ["median_s"] / base["median_s"], 3),
            "ratio_min": round(summ["min_s"] / base["min_s"], 3),
            # per repeat, against the baseline step timed next to it: robust to slow load drift
            "ratio_paired_median": round(statistics.median(t / b for t, b in zip(times[label], times["baseline"])), 3),
            "n_disagree": s.n_disagree, "n_selected_audio": s.n_selected_audio,
            "n_selected_visual": s.n_selected_visual, "skipped_empty": bool(s.empty),
        }
    strat = result["strategies"]
    # a quiet machine keeps every step within a few % of its best; more means other load
    # disturbed the medians, and the best-of-N ratios are then the more trustworthy
    spread = max(v["median_s"] / v["min_s"] for v in strat.values())
    result["median_over_min_max"] = round(spread, 3)
    result["load_disturbed"] = bool(spread > 1.25)
    result["headline"] = ("step time / baseline, median (best of N): "
                          + ", ".join(f"{k} x{strat[k]['ratio_median']:.2f} (x{strat[k]['ratio_min']:.2f})"
                                      for k in strat if k != "baseline")
                          + f"; baseline {strat['baseline']['median_s']:.2f} s ({strat['baseline']['min_s']:.2f} s)"
                          + f" at {preset}, B={len(batch)}"
                          + (f"; LOAD-DISTURBED (median/min up to x{spread:.1f})" if result["load_disturbed"] else ""))

    rows = [[label, v["median_s"], v["min_s"], v["max_s"], v["ratio_median"], v["ratio_min"], v["ratio_paired_median"],
             *(["-", "-"] if label == "baseline" else  # the baseline computes no disagreement
               [f"{v['n_disagree']}/{len(batch)}", f"{v['n_selected_audio']}/{v['n_selected_visual']}"])]
            for label, v in strat.items()]
    print(f"Stage II step, preset {preset}: B={len(batch)}, crop {cfg.features.crop_seconds} s, "
          f"faces {cfg.visual_encoder.image_size}px, K={cfg.clustering.k}, λ={keep:.2f}; "
          f"{n_params['audio']:,} audio + {n_params['visual']:,} visual parameters; "
          f"{repeats} interleaved repeats, {torch.get_num_threads()} torch threads")
    print(text_table(rows, ["strategy", "median s", "min s", "max s", "x baseline", "x (min)", "x (paired)",
                            "|D'|/B", "sel A/V"]))
    if result["load_disturbed"]:
        print(f"warning: median/min up to x{spread:.2f}: other load disturbed the timings; "
              "trust the best-of-N ratios ('x (min)') over the medians")
    if any(v["n_disagree"] < 0.9 * len(batch) for v in strat.values() if v is not strat["baseline"]):
        print("note: the models agree on part of this random batch (|D'| < 0.9 B)")
    return result


_NODE = "autograd::engine::evaluate_function: "  # the profiler's name of a backward node's work


def _enclosing(event, prefix: str) -> str | None:
    """The name, ``prefix`` removed, of the innermost range around ``event`` whose name starts with
    ``prefix`` (None when there is none)."""
    e = event.cpu_parent
    while e is not None and not e.name.startswith(prefix):
        e = e.cpu_parent
    return None if e is None else e.name.removeprefix(prefix)


def _profile_variant(strategy, batch, keep: float, theta: dict, snap: dict, *, steps: int, seed: int):
    """µs per step: (phase -> inclusive time of the range), ((phase, autograd node) -> self time of the
    operators the node ran; "(forward)" outside every node), step total."""
    ranges: dict[str, float] = {}
    nodes: dict[tuple[str, str], float] = {}
    step_us = 0.0
    for _ in range(steps):
        _restore(strategy, theta, snap, seed=seed)  # outside the profile
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Profiler clears events.*")  # read once, below
            with torch.profiler.profile(activities=[ProfilerActivity.CPU]) as prof, record_function("cometa.step"):
                strategy.step(batch, keep_ratio=keep)
        for e in prof.events():
            if e.name == "cometa.step":
                step_us += e.cpu_time_total
            elif e.name.startswith("cometa."):
                phase = e.name.removeprefix("cometa.")
                ranges[phase] = ranges.get(phase, 0.0) + e.cpu_time_total
            elif not e.name.startswith("autograd::engine"):
                key = (_enclosing(e, "cometa.") or "(unmarked)", _enclosing(e, _NODE) or "(forward)")
                nodes[key] = nodes.get(key, 0.0) + e.self_cpu_time_total
    return ({k: v / steps for k, v in ranges.items()}, {k: v / steps for k, v in nodes.items()}, step_us / steps)


def profile(preset: str = "demo", *, steps: int = 3, threads: int | None = None, seed: int = 0,
            top: int = 8) -> dict:
    """Where one step of each variant spends its time (see the module docstring).

    Returns per variant the milliseconds of each phase (:data:`PHASES`), the step, and each model's
    part of the step over the baseline's forward + backward of the same model (``x_fwd_bwd_<m>``;
    the shared log-mel front end counts to the audio part, as the baseline's audio forward holds
    it); and, per modality, the ``top`` autograd nodes of the second-order outer gradient by the self
    time of the operators they ran, beside the same node's time in the baseline's backward: there
    ``ConvolutionBackward0`` is a backward through a forward graph, ``ConvolutionBackwardBackward0``
    the double backward of the inner gradient's convolutions. Each of ``steps`` profiled steps starts
    from the same θ and Adam state, as in :func:`main`.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        cfg = load_config(preset)
        keep = 1.0 - cfg.stage2.tau
        batch = random_batch(cfg, seed=seed)
        result: dict = {"preset": preset, "steps": steps, "torch_threads": torch.get_num_threads(), "variants": {}}
        nodes = {}
        for label, name, order in VARIANTS:
            st = build_variant(cfg, name, order, seed=seed)
            theta = _snapshot(st)
            torch.manual_seed(seed)
            st.step(batch, keep_ratio=keep)  # untimed: allocates Adam's state
            snap = _snapshot(st)
            for _ in range(2):  # untimed: the kernels' first calls (oneDNN builds its primitives then)
                _restore(st, theta, snap, seed=seed)
                st.step(batch, keep_ratio=keep)
            ranges, nodes[label], step_us = _profile_variant(st, batch, keep, theta, snap, steps=steps,
                                                           seed=seed)
            phases = {n: round(ranges[n] / 1e3, 1) for n in _phase_names() if n in ranges}
            result["variants"][label] = {"step_ms": round(step_us / 1e3, 1), "phases_ms": phases,
                                         "unmarked_ms": round(step_us / 1e3 - sum(phases.values()), 1)}
    finally:
        torch.set_num_threads(before)
    var = result["variants"]
    base = var["baseline"]["phases_ms"]
    for v in var.values():
        for m in ("audio", "visual"):
            part = sum(t for k, t in v["phases_ms"].items() if k.endswith(f"[{m}]"))
            part += v["phases_ms"].get("front_end", 0.0) if m == "audio" else 0.0
            v[f"x_fwd_bwd_{m}"] = round(part / (base[f"forward[{m}]"] + base[f"backward[{m}]"]), 2)
    result["outer_gradient_nodes"] = {}
    for m in ("audio", "visual"):
        outer = {nd: us for (ph, nd), us in nodes["cometa_2nd_order"].items() if ph == f"outer_gradient[{m}]"}
        result["outer_gradient_nodes"][m] = [
            {"node": nd, "outer_ms": round(us / 1e3, 1),
             "baseline_backward_ms": round(nodes["baseline"].get((f"backward[{m}]", nd), 0.0) / 1e3, 1)}
            for nd, us in sorted(outer.items(), key=lambda kv: -kv[1])[:top]]

    labels = [label for label, _, _ in VARIANTS]
    rows = [[n, *(var[lb]["phases_ms"].get(n, "-") for lb in labels)] for n in _phase_names()]
    rows += [["(unmarked)", *(var[lb]["unmarked_ms"] for lb in labels)],
             ["step", *(var[lb]["step_ms"] for lb in labels)],
             ["step / baseline", *(round(var[lb]["step_ms"] / var["baseline"]["step_ms"], 2) for lb in labels)],
             *[[f"{m} part / baseline {m} fwd+bwd", *(var[lb][f"x_fwd_bwd_{m}"] for lb in labels)]
               for m in ("audio", "visual")]]
    print(f"Stage II step profile, preset {preset}, ms per step (mean of {steps}), "
          f"{result['torch_threads']} torch threads; the profiler's overhead is included")
    print(text_table(rows, ["phase", *labels]))
    for m, rows_m in result["outer_gradient_nodes"].items():
        print(f"second-order outer gradient [{m}] by autograd node, and the same node in the baseline's backward")
        print(text_table([[o["node"], o["outer_ms"], o["baseline_backward_ms"]] for o in rows_m],
                         ["autograd node", "outer gradient ms", "baseline backward ms"]))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo", choices=["tiny", "demo", "paper"])
    ap.add_argument("--repeats", type=int, default=None, help="interleaved timed steps per strategy")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="tiny preset, 3 repeats")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--profile", action="store_true", help="where the step's time goes (torch.profiler; CPU)")
    a = ap.parse_args()
    if a.profile:
        profile(a.preset if not a.quick else "tiny", threads=a.threads)
    else:
        main(a.preset, quick=a.quick, repeats=a.repeats, threads=a.threads, device=a.device)
