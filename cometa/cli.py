"""Command line: ``cometa run | corpus | report | dashboard`` (also ``python -m cometa``).

The entry point sits above every layer. Each command imports the heavy part it needs when it runs:
torch (the dry run), panel (the dashboard), plotly and kaleido (the report), the corpus generator.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cometa.config import ConfigError, load_config
from cometa.pipeline.run import PipelineError, run_pipeline, run_study
from cometa.runs import RunFormatError, RunLockedError, list_runs


def _run(args: argparse.Namespace) -> int:
    overrides = list(args.set or [])
    if args.data_root:
        overrides.append(f"corpus.root={args.data_root}")
    strategies = args.strategies.split(",") if args.strategies else None
    if args.dry_run:
        from cometa.pipeline.dryrun import dry_run  # loads torch (to count FLOPs): only for --dry-run

        return dry_run(args.preset, config_path=args.config, overrides=overrides, strategies=strategies,
                       rounds=args.rounds)
    common = dict(strategies=strategies, rounds=args.rounds, config_path=args.config, progress=not args.quiet,
                  jobs=args.jobs, reuse=args.reuse_from)
    if args.seeds is not None:
        return _run_seeds(args, overrides, common)
    try:
        outcome = run_pipeline(args.preset, run_dir=args.run_dir, overrides=overrides, **common)
    except PipelineError as e:
        print(f"cometa: {e}", file=sys.stderr)
        return 1
    ran = sum(v == "ran" for v in outcome.values())
    run_dir = Path(args.run_dir or Path("runs") / args.preset).resolve()
    print(f"cometa: {ran} step(s) ran, {len(outcome) - ran} skipped (complete, inputs unchanged)")
    print(f"  run directory: {run_dir}")
    report = run_dir / "report" / "report.html"
    if report.exists():
        print(f"  report:        {report}")
    print(f"  dashboard:     make dashboard RUNS={run_dir}   (or: python -m cometa dashboard {run_dir})")
    return 0


def _parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; ``"0-4"`` -> [0, 1, 2, 3, 4]."""
    try:
        if "-" in text.strip("-") and "," not in text:
            lo, hi = (int(x) for x in text.split("-"))
            return list(range(lo, hi + 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds expects a list like 0,1,2 or a range like 0-2, got {text!r}") from None


def _run_seeds(args: argparse.Namespace, overrides: list[str], common: dict) -> int:
    if any(o.split("=", 1)[0].strip() == "seed" for o in overrides):
        print("cometa: --seeds sets each run's seed; drop --set seed=...", file=sys.stderr)
        return 2
    study_dir = Path(args.run_dir or Path("runs") / f"{args.preset}_seeds").resolve()
    try:
        run_study(args.preset, study_dir=study_dir, seeds=args.seeds, overrides=overrides, **common)
    except PipelineError as e:
        print(f"cometa: {e}", file=sys.stderr)
        return 1
    print(f"cometa: {len(args.seeds)} seed(s) in {study_dir}")
    print(f"  combined report: {study_dir / 'report' / 'report.html'}")
    print(f"  dashboard:       make dashboard RUNS={study_dir}")
    return 0


def _corpus(args: argparse.Namespace) -> int:
    from cometa.data.synthetic import build_corpus  # the generator (scipy, soundfile, PIL): only this command

    cfg = load_config(args.preset, overrides=args.set or [])
    t0 = time.time()
    root = build_corpus(cfg.corpus.synthetic, Path(args.root) if args.root else None)
    print(f"cometa: embedded corpus ({args.preset}) at {root} ({time.time() - t0:.1f} s)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from cometa.results.report import write_report  # plotly (and kaleido when exporting): only this command

    out = write_report(args.run_dir, compare=args.compare or [])
    print(f"cometa: report written to {out}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from dashboards.app import serve  # panel and bokeh take seconds to import: only this command

    runs = [str(run) for r in args.runs for part in r.split(",") for run in list_runs(part)]
    if not runs:
        print(f"cometa: no run directories under {' '.join(args.runs)} (run `make demo` first)", file=sys.stderr)
        return 1
    serve(runs, address=args.address, port=args.port, show=False)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    """``cometa prepare voxceleb SRC DST``: cometa.data.prepare; 1 when a file failed, 2 on bad SRC."""
    import os  # the prepare command's own imports: kept inside it, so the block merges on its own

    from cometa.data.prepare import prepare_voxceleb  # (tqdm and subprocess only when preparing)

    try:
        s = prepare_voxceleb(args.src, args.dst, jobs=args.jobs or os.cpu_count() or 1, dry_run=args.dry_run,
                             progress=not args.quiet)
    except (FileNotFoundError, ValueError) as e:
        print(f"cometa: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"prepare (dry run): {s.total} files, {s.skipped} already made, {s.total - s.skipped} to make; "
              "nothing was written")
        return 0
    print(f"prepare: {s.total} files, {s.done} made, {s.skipped} already made, {s.failed} failed"
          + (f" (listed in {s.errors_path})" if s.failed else ""))
    return 1 if s.failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cometa", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or resume) the study through its notebooks")
    r.add_argument("--preset", default="demo", choices=["tiny", "demo", "paper"])
    r.add_argument("--config", help="a YAML file of overrides on top of the preset")
    r.add_argument("--strategies", help="comma separated: baseline,coteaching_plus,cometa,lgl,dlg_lc, or 'all' "
                   "(default: the paper's three)")
    r.add_argument("--rounds", type=int)
    r.add_argument("--run-dir")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    r.add_argument("--data-root", help="VoxCeleb directory (paper preset)")
    r.add_argument("--dry-run", action="store_true", help="check the data and print the plan; train nothing")
    r.add_argument("--jobs", type=int, help="steps run at once (default: the config's jobs; 2 in tiny/demo)")
    r.add_argument("--seeds", type=_parse_seeds, metavar="S,S,...",
                   help="run the study once per training seed into RUN_DIR/seed_<s>/ (the corpus stays fixed) "
                        "and write a combined report (mean ± std) into RUN_DIR/report/")
    r.add_argument("--from", dest="reuse_from", metavar="RUN_DIR",
                   help="start a new run from this run's finished corpus and Stage I where they match the "
                        "settings (with --seeds: a study, seed by seed); only Stage II then runs")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(fn=_run)
    c = sub.add_parser("corpus", help="build the embedded corpus")
    c.add_argument("--preset", default="demo", choices=["tiny", "demo"])
    c.add_argument("--root")
    c.add_argument("--set", action="append", metavar="KEY=VALUE")
    c.set_defaults(fn=_corpus)
    rep = sub.add_parser("report", help="write tables and figures into RUN_DIR/report")
    rep.add_argument("run_dir")
    rep.add_argument("--compare", action="append", metavar="RUN_DIR",
                     help="another run whose rows join Table 6 (e.g. full fine-tuning vs adapters; repeatable)")
    rep.set_defaults(fn=_report)
    d = sub.add_parser("dashboard", help="serve the dashboard over run directories")
    d.add_argument("runs", nargs="+", help="run directories, or folders of them")
    d.add_argument("--port", type=int, default=5006)
    d.add_argument("--address", default="127.0.0.1")
    d.set_defaults(fn=_dashboard)
    pr = sub.add_parser("prepare", help="convert the VoxCeleb downloads into the layout cometa reads")
    pr.add_argument("dataset", choices=["voxceleb"])
    pr.add_argument("src", help="the downloads: vox2/aac, vox2/mp4, vox1/wav, vox1/mp4, the trial lists")
    pr.add_argument("dst", help="the data root to write (--data-root of `run`)")
    pr.add_argument("--jobs", type=int, help="worker processes (default: one per core)")
    pr.add_argument("--dry-run", action="store_true", help="count what would be made; write nothing")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(fn=_prepare)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"cometa: configuration error: {e}", file=sys.stderr)
        return 2
    except (RunLockedError, RunFormatError) as e:  # nothing was written
        print(f"cometa: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("\ncometa: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
