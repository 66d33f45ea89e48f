"""``cometa run --dry-run``: check a data directory and print the plan with its estimated compute.

Nothing is trained. Every data fault is collected and reported by name (missing face folders,
trial entries naming unknown utterances, malformed trial lines, unreadable audio), instead of
stopping at the first. The compute estimate counts the encoders' forward FLOPs with
``torch.utils.flop_counter`` on one input of the configured size, and multiplies by the samples
each step processes (backward ≈ 2× forward; the second-order meta step ≈ 3 passes more). The GPU
plan (:mod:`cometa.pipeline.gpu_plan`) turns them into FLOPs per step, epoch time and GPU-hours per
strategy on one GPU at a stated utilisation, and measures the data loader on this machine's cores:
``loader workers per GPU: N``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from cometa.config import Config
from cometa.data.corpus import scan_corpus
from cometa.data.synthetic import build_corpus
from cometa.data.voxceleb import DataError
from cometa.models.build import build_audio_model, build_visual_model
from cometa.pipeline.gpu_plan import GPU_PEAK_FLOPS, UTILISATION, loader_workers, measure_loader, strategy_plans
from cometa.pipeline.plan import plan_steps
from cometa.pipeline.reuse import reuse_plan, source_run
from cometa.pipeline.run import STUDY_FILE, RunInputError, resolve_config, seed_dir
from cometa.pipeline.steps import corpus_root

# passes of (forward + backward) per sample and model, relative to one forward
# cometa: support fwd+bwd(graph), query fwd, bwd through both
PASSES = {"baseline": 3.0, "coteaching_plus": 3.0, "cometa": 9.0}


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward pass of ``model`` on ``x`` (counted, not guessed)."""
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return float(counter.get_total_flops())


def estimate_compute(cfg: Config, n_train: int, n_test: int) -> dict[str, float]:
    """Total training + embedding FLOPs of the planned run, per part."""
    crop = int(cfg.features.crop_seconds * cfg.features.sample_rate)
    fa = forward_flops(build_audio_model(cfg), torch.zeros(1, crop))
    s = cfg.visual_encoder.image_size
    fv = forward_flops(build_visual_model(cfg), torch.zeros(2, 3, s, s)) / 2
    e_max = cfg.stage2.rounds * cfg.stage2.epochs_per_round
    out = {"audio_forward_gflops": fa / 1e9, "visual_forward_gflops": fv / 1e9,
           "stage1": cfg.stage1.epochs * n_train * 2 * 3 * fa}
    for strat in cfg.stage2.strategies:
        out[strat] = e_max * n_train * PASSES.get(strat, 3.0) * (fa + fv)
    # embeddings every round (train + test; ~4 s utterances, ~4 frames each)
    out["embeddings"] = (1 + cfg.stage2.rounds * len(cfg.stage2.strategies)) * (n_train + n_test) * (
        fa * 4.0 / cfg.features.crop_seconds + 4 * fv)
    return out


def placement(preset: str | None, *, run_dir: Path, seeds: list[int] | None = None, reuse: str | Path | None = None,
              **resolve) -> list[str]:
    """Where ``cometa run`` would write (each seed's run directory with ``--seeds``) and, with ``--from``,
    what each run would bring over from the source (:func:`cometa.pipeline.reuse.reuse_plan`). Reads only.

    Parameters
    ----------
    preset, resolve : the configuration (:func:`cometa.pipeline.run.resolve_config`'s arguments).
    run_dir : the run's directory, or the study's with ``seeds``.
    seeds : ``--seeds``: one run per seed, ``run_dir/seed_<s>``.
    reuse : ``--from``: a run (or, with ``seeds``, a study whose ``seed_<s>`` each seed starts from).
    """
    overrides = list(resolve.pop("overrides", None) or [])
    runs = ([(seed_dir(run_dir, s), [*overrides, f"seed={int(s)}"], s) for s in seeds] if seeds
            else [(run_dir, overrides, None)])
    lines = [f"   study directory {run_dir} ({len(runs)} seed(s))"] if seeds else []
    for path, ov, seed in runs:
        lines.append(f"   {'seed ' + str(seed) + ' -> ' if seed is not None else 'run directory '}{path}")
        if reuse is None:
            continue
        source = seed_dir(reuse, seed) if seed is not None and (Path(reuse) / STUDY_FILE).exists() else reuse
        try:
            src = source_run(source)
        except ValueError as e:
            raise RunInputError(str(e)) from None
        steps = plan_steps(resolve_config(preset, overrides=ov, **resolve), Path(path).resolve())
        lines.append(f"     from {src}: " + ", ".join(f"{k} {v}" for k, v in reuse_plan(src, steps).items()))
    return lines


def dry_run(preset: str | None, *, config_path=None, overrides=None, strategies: list[str] | None = None,
            rounds: int | None = None, run_dir: str | Path | None = None, seeds: list[int] | None = None,
            reuse: str | Path | None = None, file=None) -> int:
    """Print the data check and the plan of the run ``cometa run`` would make with the same arguments
    (``strategies``/``rounds``: its shorthands; ``run_dir``, ``seeds``, ``reuse``: ``--run-dir``,
    ``--seeds``, ``--from``: where each run would go, what it would reuse); return 1 when the data has
    faults, else 0."""
    cfg = resolve_config(preset, config_path=config_path, overrides=overrides, strategies=strategies, rounds=rounds)
    default_dir = Path("runs") / (f"{cfg.preset}_seeds" if seeds else cfg.preset)  # as `cometa run` chooses
    placed = placement(preset, run_dir=Path(run_dir or default_dir).resolve(), seeds=seeds, reuse=reuse,
                      config_path=config_path, overrides=overrides, strategies=strategies, rounds=rounds)
    if cfg.corpus.kind == "synthetic" and not cfg.corpus.root:
        build_corpus(cfg.corpus.synthetic, progress=False)
    root = corpus_root(cfg)
    file = file or sys.stdout
    p = lambda *a: print(*a, file=file)  # noqa: E731
    p(f"cometa dry run: preset {cfg.preset}, data root {root}")
    scan = scan_corpus(root, trial_lists=cfg.eval.trial_lists)
    counts, faults = scan["counts"], scan["faults"]
    p("\n data")
    for key, value in _flatten(counts):
        p(f"   {key:<40} {value}")
    if faults:
        p(f"\n faults ({len(faults)})")
        for f in faults[:50]:
            p(f"   - {f}")
        if len(faults) > 50:
            p(f"   ... and {len(faults) - 50} more")
    n_train = int(counts["train"]["utterances"])  # scan_corpus keeps both splits (zeros when missing)
    n_test = int(counts["test"]["utterances"])
    steps = plan_steps(cfg, Path("runs") / "dry-run")
    p(f"\n plan: {len(steps)} steps" + (f" per seed, {len(seeds)} seeds" if seeds else ""))
    for line in placed:
        p(line)
    p(f"   stage I: {cfg.stage1.epochs} epochs x {n_train} utterances, batch {cfg.stage1.batch_size}")
    p(f"   stage II: strategies {', '.join(cfg.stage2.strategies)}; {cfg.stage2.rounds} rounds x "
      f"{cfg.stage2.epochs_per_round} epochs (E_max {cfg.stage2.rounds * cfg.stage2.epochs_per_round}), "
      f"k = {cfg.clustering.k}, tau {cfg.stage2.tau}, E_k {cfg.stage2.e_k}, alpha {cfg.stage2.alpha}, "
      f"beta {cfg.stage2.beta}")
    if cfg.clustering.method == "truth":
        where = (" (those Stage I's audio encoder confuses most, to the identity each sounds nearest)"
                 if cfg.clustering.truth_noise_target == "audio_nearest" else " (at random)")
        p(f"   labels: the TRUE identities, {cfg.clustering.truth_noise:.0%} moved by "
          f"{cfg.clustering.truth_noise_unit}{where} (clustering.method: truth, a controlled experiment that "
          f"reads the ground truth; k is the number of identities)")
    est = estimate_compute(cfg, n_train, n_test)
    p(f"\n estimated compute (forward: audio {est['audio_forward_gflops']:.2f} GFLOP per "
      f"{cfg.features.crop_seconds:g} s crop, visual {est['visual_forward_gflops']:.2f} GFLOP per face)")
    total = 0.0
    for key, value in est.items():
        if key.endswith("_gflops"):
            continue
        total += value
        p(f"   {key:<16} {_flops(value):>14}   ~{value / 200e12 / 3600:10.3f} GPU-hours at 200 TFLOP/s sustained")
    p(f"   {'total':<16} {_flops(total):>14}   ~{total / 200e12 / 3600:10.3f} GPU-hours")
    _print_gpu_plan(p, cfg, root, n_train, est)
    p("\n nothing was trained (dry run).")
    return 1 if faults else 0


def _print_gpu_plan(p, cfg: Config, root: Path, n_train: int, est: dict[str, float]) -> None:
    """Per strategy on one GPU: FLOPs per step, epoch time, GPU-hours (:mod:`cometa.pipeline.gpu_plan`),
    and the loader workers a GPU needs from the loader's throughput measured on ``root/train``."""
    rate = GPU_PEAK_FLOPS * UTILISATION
    plans = strategy_plans(cfg, n_train, est["audio_forward_gflops"] * 1e9, est["visual_forward_gflops"] * 1e9,
                           PASSES, flops_per_s=rate)
    p(f"\n GPU plan, one GPU (assumed: {GPU_PEAK_FLOPS / 1e12:.0f} TFLOP/s dense bf16, an H100 SXM, at "
      f"{UTILISATION:.0%} utilisation = {rate / 1e12:.0f} TFLOP/s; tools/gpu_check.sh measures it on a GPU)")
    p(f"   {'strategy':<16} {'FLOPs/step':>12} {'steps/epoch':>12} {'epoch':>10} {'GPU-hours':>10} {'samples/s':>10}"
      f"   (batch {cfg.stage2.batch_size}, E_max {cfg.stage2.rounds * cfg.stage2.epochs_per_round})")
    for sp in plans:
        p(f"   {sp.strategy:<16} {_flops(sp.flops_per_step):>12} {sp.steps_per_epoch:>12} "
          f"{_duration(sp.epoch_s):>10} {sp.gpu_hours:>10.1f} {sp.samples_per_s:>10.0f}")
    try:
        lr = measure_loader(cfg, root / "train")
    except (FileNotFoundError, DataError, OSError, ValueError) as e:
        p(f"   data loader: not measured ({e})")
        return
    p(f"   data loader, one CPU core, measured on {lr.n} utterances of {root / 'train'} "
      f"({lr.frames:.1f} face frames each):")
    p(f"     wav read {lr.wav_read_ms:.1f} ms, crop + augmentation {lr.crop_augment_ms:.1f} ms, one face jpeg "
      f"{lr.jpeg_decode_ms:.2f} ms (all the utterance's frames, as FrameBank reads them: {lr.all_frames_ms:.1f} ms),"
      f" face transform {lr.visual_transform_ms:.1f} ms")
    p(f"     fbank {lr.fbank_ms:.1f} ms (on the GPU in training: the model's first layer)")
    p(f"     a training sample (PairedSamples) {lr.sample_ms:.1f} ms = {lr.samples_per_s:.0f} samples/s per core")
    fastest = max(plans, key=lambda sp: sp.samples_per_s)
    p(f"   loader workers per GPU: {loader_workers(fastest.samples_per_s, lr)}   ({fastest.strategy} consumes "
      f"{fastest.samples_per_s:.0f} samples/s; "
      + ", ".join(f"{sp.strategy} {loader_workers(sp.samples_per_s, lr)}" for sp in plans) + ")")


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 \
        else f"{seconds:.1f} s"


def _flops(x: float) -> str:
    for unit, scale in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if x >= scale:
            return f"{x / scale:.1f} {unit}"
    return f"{x / 1e6:.1f} MFLOP"


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v

