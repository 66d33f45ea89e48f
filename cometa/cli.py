"""Command line: ``cometa run | study | corpus | report | dashboard | config | ls | compare | prepare``
(also ``python -m cometa``).

The entry point sits above every layer. Each command imports the heavy part it needs when it runs:
torch (the dry run), panel (the dashboard), plotly and kaleido (the report), the corpus generator.

A subcommand is two functions: ``_add_<name>(sub)`` declares its parser (and ``set_defaults(fn=...)``),
``_<name>(args) -> int`` does the work; :data:`COMMANDS` lists the parsers' builders. Errors a user
can cause are mapped to a one-line ``cometa: ...`` message and an exit status in :func:`main`, once
for every subcommand: 2 for a bad argument, configuration or path, 3 for a run directory held by a
live run or written by another run format, 1 for a step that failed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cometa.config import DEFAULT_PRESET, PRESETS, ConfigError, check_setting, file_preset, load_config
from cometa.pipeline.run import (
    PipelineError,
    RunInputError,
    plan_steps,
    resolve_config,
    run_pipeline,
    run_study,
    select_steps,
)
from cometa.runs import RunFormatError, RunLockedError, atomic_write, list_runs


class UsageError(ValueError):
    """A command-line argument cannot be used (the message names it); exit status 2."""


def _preset(args: argparse.Namespace) -> str:
    """The preset a command runs: ``--preset``, else the ``--config`` file's ``preset:``, else the default.
    Both naming different presets is an error (:func:`cometa.config.load_config` names both)."""
    return args.preset or file_preset(getattr(args, "config", None)) or DEFAULT_PRESET


# ----------------------------------------------------------------------------------------- run
def _check_numbers(args: argparse.Namespace) -> None:
    """Every number on the command line through the config's bounds (ConfigError naming the option)."""
    if args.rounds is not None:
        check_setting("stage2.rounds", args.rounds, source="--rounds")
    if args.jobs is not None:
        check_setting("jobs", args.jobs, source="--jobs")
    for seed in args.seeds or []:
        check_setting("seed", seed, source="--seeds")


def _steps(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def _run(args: argparse.Namespace) -> int:
    _check_numbers(args)
    preset = _preset(args)
    overrides = list(args.set or [])
    if args.data_root:
        overrides.append(f"corpus.root={args.data_root}")
    strategies = args.strategies.split(",") if args.strategies else None
    if args.seeds is not None and any(o.split("=", 1)[0].strip() == "seed" for o in overrides):
        raise UsageError("--seeds sets each run's seed; drop --set seed=...")
    if args.dry_run:
        from cometa.pipeline.dryrun import dry_run  # loads torch (to count FLOPs): only for --dry-run

        return dry_run(preset, config_path=args.config, overrides=overrides, strategies=strategies,
                       rounds=args.rounds, run_dir=args.run_dir, seeds=args.seeds, reuse=args.reuse_from)
    only = _steps(args.steps)
    if only:  # a pattern that matches no step is refused before anything is written
        cfg = resolve_config(preset, config_path=args.config, overrides=overrides, strategies=strategies,
                             rounds=args.rounds)
        select_steps(plan_steps(cfg, Path(args.run_dir or Path("runs") / preset).resolve()), only)
    common = dict(strategies=strategies, rounds=args.rounds, config_path=args.config, progress=not args.quiet,
                  jobs=args.jobs, reuse=args.reuse_from, only=only)
    if args.seeds is not None:
        return _run_seeds(args, preset, overrides, common)
    run_dir = Path(args.run_dir or Path("runs") / preset).resolve()
    outcome = run_pipeline(preset, run_dir=run_dir, overrides=overrides, **common)
    ran = sum(v == "ran" for v in outcome.values())
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


def _run_seeds(args: argparse.Namespace, preset: str, overrides: list[str], common: dict) -> int:
    study_dir = Path(args.run_dir or Path("runs") / f"{preset}_seeds").resolve()
    run_study(preset, study_dir=study_dir, seeds=args.seeds, overrides=overrides, **common)
    print(f"cometa: {len(args.seeds)} seed(s) in {study_dir}")
    print(f"  combined report: {study_dir / 'report' / 'report.html'}")
    print(f"  dashboard:       make dashboard RUNS={study_dir}")
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run (or resume) the study through its notebooks")
    _add_config_options(r)
    r.add_argument("--strategies", help="comma separated: baseline,coteaching_plus,cometa,lgl,dlg_lc, or 'all' "
                   "(default: the paper's three)")
    r.add_argument("--rounds", type=int)
    r.add_argument("--run-dir")
    r.add_argument("--data-root", help="VoxCeleb directory (paper preset)")
    r.add_argument("--dry-run", action="store_true", help="check the data and print the plan; train nothing")
    r.add_argument("--jobs", type=int, help="steps run at once (default: the config's jobs; 2 in tiny/demo)")
    r.add_argument("--seeds", type=_parse_seeds, metavar="S,S,...",
                   help="run the study once per training seed into RUN_DIR/seed_<s>/ (the corpus stays fixed) "
                        "and write a combined report (mean ± std) into RUN_DIR/report/")
    r.add_argument("--from", dest="reuse_from", metavar="RUN_DIR",
                   help="start a new run from this run's finished corpus and Stage I where they match the "
                        "settings (with --seeds: a study, seed by seed); only Stage II then runs")
    r.add_argument("--steps", metavar="PATTERN,...",
                   help="run only the steps whose names match (shell patterns: 'stage1,baseline/*'), and the "
                        "steps they need that are not finished")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(fn=_run)


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """``--preset``, ``--config``, ``--set``: how every command that resolves a configuration names it."""
    p.add_argument("--preset", choices=list(PRESETS),
                   help=f"default: the --config file's preset:, else {DEFAULT_PRESET}")
    p.add_argument("--config", help="a YAML file of overrides on top of the preset (it may name preset:)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value (repeatable; a list as a,b)")


# ---------------------------------------------------------------------------------------- study
def _study(args: argparse.Namespace) -> int:
    """``cometa study [SPEC] [--sweep K=V1,V2 ...]``: plan, then run every cell x seed, then the report."""
    # the study's modules bring papermill and distributed (a second or two): only this command needs them
    from cometa.pipeline.executors import ExecutorError, open_executor
    from cometa.pipeline.study import plan_study, print_study_plan, run_grid_study
    from cometa.pipeline.study_spec import load_spec, spec_from_args, spec_from_dict

    if args.jobs is not None:
        check_setting("jobs", args.jobs, source="--jobs")
    for seed in args.seeds or []:
        check_setting("seed", seed, source="--seeds")
    strategies = args.strategies.split(",") if args.strategies else None
    if args.spec:
        spec = load_spec(args.spec)
        if args.preset and args.preset != spec.preset:
            raise ConfigError(f"--preset {args.preset} differs from {args.spec}'s preset {spec.preset}: "
                              "drop one of them")
        if args.sweep or args.set or strategies or args.seeds is not None:  # the command line adds to the spec
            extra = spec_from_args(name=spec.name, preset=spec.preset, sweeps=args.sweep or [],
                                   overrides=args.set or [], strategies=strategies, seeds=args.seeds)
            data = spec.to_dict()
            data["set"].update(extra.set)
            clash = [k for k in extra.axes if k in data["axes"]]
            if clash:
                raise ConfigError(f"--sweep {clash[0]}: already an axis of {args.spec}")
            data["axes"].update(extra.axes)
            data["strategies"] = extra.strategies or data["strategies"]
            data["seeds"] = extra.seeds if args.seeds is not None else data["seeds"]
            spec = spec_from_dict(data, source=args.spec)
    else:
        if not (args.sweep or args.set or args.preset or args.seeds):
            raise ConfigError("cometa study: give a spec file, or the study on the command line "
                              "(--preset, --sweep KEY=V1,V2, --set, --seeds)")
        spec = spec_from_args(name=args.name, preset=args.preset or "demo", sweeps=args.sweep or [],
                              overrides=args.set or [], strategies=strategies, seeds=args.seeds)
    study_dir = Path(args.study_dir or Path("runs") / "studies" / spec.name).resolve()
    plan = plan_study(spec, study_dir, jobs=args.jobs, reuse=args.reuse_from)
    if args.dry_run:
        from cometa.pipeline.step_costs import load_step_costs  # only a dry run reads the measured costs

        print_study_plan(plan, costs=load_step_costs(spec.preset))
        return 0
    try:
        executor = open_executor(args.dask, jobs=plan.jobs, progress=not args.quiet)
    except ExecutorError as e:  # a --dask address where no scheduler answers
        raise UsageError(str(e)) from None
    try:
        with executor:
            outcome = run_grid_study(plan, executor=executor, spec_path=args.spec, progress=not args.quiet,
                                     report=not args.no_report, report_dir=args.report_dir)
    except PipelineError as e:
        print(f"cometa: {e}", file=sys.stderr)
        print(f"cometa: what finished is kept; rerun the same command to resume {study_dir}", file=sys.stderr)
        return 1
    counts = {k: sum(v == k for v in outcome.values()) for k in ("ran", "shared", "skipped")}
    print(f"cometa: study {spec.name}: {len(plan.cells)} cell(s) x {len(spec.seeds)} seed(s); steps: "
          f"{counts['ran']} ran, {counts['shared']} shared, {counts['skipped']} already finished")
    print(f"  study directory: {study_dir}")
    if not args.no_report:
        print(f"  report:          {Path(args.report_dir or study_dir / 'report').resolve() / 'study.md'}")
    print(f"  dashboard:       python -m cometa dashboard {study_dir}")
    return 0


def _add_study(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser("study", help="run a study: every cell x seed of a spec (or of --sweep axes), one report")
    st.add_argument("spec", nargs="?", help="a study spec (YAML: name, preset, strategies, seeds, set, axes, variants)")
    st.add_argument("--preset", choices=list(PRESETS), help="without a spec: the preset (default demo)")
    st.add_argument("--sweep", action="append", metavar="KEY=V1,V2,...",
                    help="an axis: the values comma separated (repeatable, one per axis; the cells are their product)")
    st.add_argument("--name", help="without a spec: the study's name (default: from the swept keys)")
    st.add_argument("--study-dir", help="where the study lives (default runs/studies/<name>)")
    st.add_argument("--set", action="append", metavar="KEY=VALUE", help="a config value for every cell (repeatable)")
    st.add_argument("--strategies", help="comma separated (default: the spec's, else the preset's)")
    st.add_argument("--seeds", type=_parse_seeds, metavar="S,S,...",
                    help="the seeds of every cell (default: the spec's)")
    st.add_argument("--jobs", type=int, help="steps at once, and so each step's threads (default: the config's jobs)")
    st.add_argument("--dask", metavar="ADDRESS",
                    help="run each step as a task on a Dask cluster: tcp://HOST:8786, or local:N for N local workers")
    st.add_argument("--from", dest="reuse_from", metavar="RUN_OR_STUDY",
                    help="bring over the steps this run (or this study's same seed) finished with the same inputs")
    st.add_argument("--dry-run", action="store_true",
                    help="print the cells, what they share and the estimated CPU time")
    st.add_argument("--no-report", action="store_true", help="skip the study's report (cometa report STUDY_DIR later)")
    st.add_argument("--report-dir", help="a copy of the report there too (reports/<name>/ for a committed study)")
    st.add_argument("--quiet", action="store_true")
    st.set_defaults(fn=_study)


# ------------------------------------------------------------------------------ corpus, report
def _corpus(args: argparse.Namespace) -> int:
    from cometa.data.synthetic import build_corpus  # the generator (scipy, soundfile, PIL): only this command

    cfg = load_config(args.preset, overrides=args.set or [])
    t0 = time.time()
    root = build_corpus(cfg.corpus.synthetic, Path(args.root) if args.root else None)
    print(f"cometa: embedded corpus ({args.preset}) at {root} ({time.time() - t0:.1f} s)")
    return 0


def _add_corpus(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("corpus", help="build the embedded corpus")
    c.add_argument("--preset", default=DEFAULT_PRESET, choices=["tiny", "demo"])
    c.add_argument("--root")
    c.add_argument("--set", action="append", metavar="KEY=VALUE")
    c.set_defaults(fn=_corpus)


def _report(args: argparse.Namespace) -> int:
    from cometa.results.report import ReportError, write_report  # plotly (and kaleido): only this command

    try:
        out = write_report(args.run_dir, static=not args.no_static, compare=args.compare or [])
    except ReportError as e:  # not a run directory, or no browser for the static figures
        raise UsageError(str(e)) from None
    print(f"cometa: report written to {out}")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("report", help="write tables and figures into RUN_DIR/report")
    rep.add_argument("run_dir")
    rep.add_argument("--no-static", action="store_true", help="skip the SVG/PDF/PNG figures (no Chromium needed)")
    rep.add_argument("--compare", action="append", metavar="RUN_DIR",
                     help="another run whose rows join the transfer table (e.g. full fine-tuning vs adapters; "
                          "repeatable)")
    rep.set_defaults(fn=_report)


def _dashboard(args: argparse.Namespace) -> int:
    from dashboards.app import serve  # panel and bokeh take seconds to import: only this command

    runs = [str(run) for r in args.runs for part in r.split(",") for run in list_runs(part)]
    if not runs:
        raise UsageError(f"no run directories under {' '.join(args.runs)} (run `make demo` first)")
    serve(runs, address=args.address, port=args.port, show=False)
    return 0


def _add_dashboard(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("dashboard", help="serve the dashboard over run directories")
    d.add_argument("runs", nargs="+", help="run directories, or folders of them")
    d.add_argument("--port", type=int, default=5006)
    d.add_argument("--address", default="127.0.0.1")
    d.set_defaults(fn=_dashboard)


# ----------------------------------------------------------------------- config, ls, compare
def _config(args: argparse.Namespace) -> int:
    from cometa.config.explain import explain_config  # reads the preset files again: only this command

    sys.stdout.write(explain_config(_preset(args), path=args.config, overrides=args.set or []))
    return 0


def _add_config(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("config", help="print the resolved configuration as YAML, each value's source as a comment")
    _add_config_options(c)
    c.set_defaults(fn=_config)


def _ls(args: argparse.Namespace) -> int:
    from cometa.results.listing import format_lines, list_dirs  # the results layer (pandas): only this command

    missing = [d for d in args.dirs if not Path(d).exists()]
    if missing:
        raise UsageError(f"{missing[0]}: no such directory")
    found = list_dirs(args.dirs)
    if not found:
        raise UsageError(f"no run or study directory in {' '.join(args.dirs)}")
    for line in format_lines(found):
        print(line)
    return 0


def _add_ls(sub: argparse._SubParsersAction) -> None:
    ls = sub.add_parser("ls", help="list runs and studies, one line each")
    ls.add_argument("dirs", nargs="*", default=["runs"], metavar="DIR",
                    help="run or study directories, or folders of them (default: runs)")
    ls.set_defaults(fn=_ls)


def _compare(args: argparse.Namespace) -> int:
    from cometa.results.table_export import FORMATS, table1_cells  # plotly and the run API: only this command

    for d in args.runs:
        if not (Path(d) / "store.sqlite").exists() and not (Path(d) / "study.json").exists():
            raise UsageError(f"{d}: neither a run directory (store.sqlite) nor a study (study.json)")
    try:
        header, rows = table1_cells(args.runs, trial_list=args.trials)
    except ValueError as e:  # the same run twice
        raise UsageError(str(e)) from None
    sys.stdout.write(FORMATS["text"](header, rows))
    for fmt in ("csv", "latex", "markdown"):
        target = getattr(args, fmt)
        if target:
            with atomic_write(target) as tmp:
                tmp.write_text(FORMATS[fmt](header, rows))
            print(f"cometa: {fmt} written to {target}")
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("compare", help="Table 1 of several runs or studies side by side")
    c.add_argument("runs", nargs="+", metavar="RUN_OR_STUDY")
    c.add_argument("--trials", default="O", choices=["O", "E", "H"], help="the trial list (default O)")
    c.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    c.add_argument("--latex", metavar="FILE", help="also write the table as a booktabs tabular")
    c.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    c.set_defaults(fn=_compare)


# -------------------------------------------------------------------------------------- prepare
def _prepare(args: argparse.Namespace) -> int:
    """``cometa prepare voxceleb SRC DST``: cometa.data.prepare; 1 when a file failed, 2 on bad SRC."""
    from cometa.data.prepare import prepare_voxceleb  # tqdm and ffmpeg's workers: only when preparing

    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    try:
        s = prepare_voxceleb(args.src, args.dst, jobs=args.jobs or os.cpu_count() or 1, dry_run=args.dry_run,
                             progress=not args.quiet)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    if args.dry_run:
        print(f"prepare (dry run): {s.total} files, {s.skipped} already made, {s.total - s.skipped} to make; "
              "nothing was written")
        return 0
    print(f"prepare: {s.total} files, {s.done} made, {s.skipped} already made, {s.failed} failed"
          + (f" (listed in {s.errors_path})" if s.failed else ""))
    return 1 if s.failed else 0


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser("prepare", help="convert the VoxCeleb downloads into the layout cometa reads")
    pr.add_argument("dataset", choices=["voxceleb"])
    pr.add_argument("src", help="the downloads: vox2/aac, vox2/mp4, vox1/wav, vox1/mp4, the trial lists")
    pr.add_argument("dst", help="the data root to write (--data-root of `run`)")
    pr.add_argument("--jobs", type=int, help="worker processes (default: one per core)")
    pr.add_argument("--dry-run", action="store_true", help="count what would be made; write nothing")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(fn=_prepare)


# ------------------------------------------------------------------------------ the parser, main
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_run, _add_study, _add_corpus, _add_report, _add_dashboard, _add_config, _add_ls, _add_compare,
    _add_prepare]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cometa", description=__doc__.split("\n\n", 1)[0])
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"cometa: configuration error: {e}", file=sys.stderr)
        return 2
    except (UsageError, RunInputError) as e:  # found before anything was written
        print(f"cometa: {e}", file=sys.stderr)
        return 2
    except (RunLockedError, RunFormatError) as e:  # nothing was written
        print(f"cometa: {e}", file=sys.stderr)
        return 3
    except PipelineError as e:  # a step failed: the message names its executed notebook
        print(f"cometa: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ncometa: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
