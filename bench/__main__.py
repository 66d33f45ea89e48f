"""The benchmark suite: ``python -m bench [--only NAME ...] [--quick] [--json PATH] [--md PATH] [--readme]``.

Runs each script's ``main(...) -> dict`` in one process, in the order of :data:`SCRIPTS`; a script
that is missing, fails to import or raises is recorded as an error entry and the rest still run.
``--quick`` passes ``quick=True`` to the scripts whose ``main`` accepts it (checked with
:mod:`inspect`). Results and a description of the machine go to ``bench/results.json``; one
summary table is printed and written to ``bench/RESULTS.md``. README.md is written only on request
(``--readme``: the table between its bench markers), so a benchmark leaves the checkout clean and the
runs made after it record a commit without ``-dirty``. ``--no-readme`` (the old opt-out) is accepted
and does nothing.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import time
import traceback
from pathlib import Path

from bench.common import ROOT, describe_machine, machine_info, markdown_table, text_table

SCRIPTS = ("bench_steps", "bench_peers", "bench_hvp", "bench_transfer", "bench_kmeans", "bench_metrics", "bench_corpus",
           "bench_pipeline", "bench_dashboard", "bench_paper_scale")
RESULTS = ROOT / "bench" / "results.json"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
HEADLINE_CELL = 240  # characters of a result's summary shown in the tables


def run_one(name: str, *, quick: bool) -> dict:
    """Import ``bench.<name>`` and call its ``main``; an error entry instead of an exception."""
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(f"bench.{name}")
        fn = module.main
        params = inspect.signature(fn).parameters
        kwargs = {"quick": True} if quick and "quick" in params else {}
        result = fn(**kwargs)
        if not isinstance(result, dict):
            raise TypeError(f"bench.{name}.main returned {type(result).__name__}, expected dict")
        entry = {"ok": True, "kwargs": kwargs, "result": result}
    except (Exception, SystemExit) as e:  # SystemExit: a script's argparse or sys.exit
        tb = traceback.format_exc()
        print(f"bench: {name} failed: {type(e).__name__}: {e}", file=sys.stderr)
        entry = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": tb}
    entry["seconds"] = round(time.perf_counter() - t0, 2)
    return entry


def headline(entry: dict) -> str:
    """A one-cell summary: the script's ``headline`` if it gives one, else its first scalar figures."""
    if not entry["ok"]:
        return "ERROR " + entry["error"].splitlines()[0]
    res = entry["result"]
    if isinstance(res.get("headline"), str):
        text = res["headline"]
    elif "skipped" in res:
        text = f"skipped: {res['skipped']}"
    else:
        scalars = [(k, v) for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        # ratios first: they are what the suite is for
        scalars.sort(key=lambda kv: not any(w in kv[0] for w in ("speedup", "ratio")))
        text = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in scalars[:6])
    return text if len(text) <= HEADLINE_CELL else text[:HEADLINE_CELL - 1] + "…"


def summary_rows(results: dict) -> list[list]:
    return [[name, "ok" if e["ok"] else "error", e["seconds"], headline(e)] for name, e in results["benches"].items()]


def results_markdown(results: dict) -> str:
    """The summary as Markdown: a heading, the machine and commit, one row per bench."""
    m = results["machine"]
    return "\n".join([
        "### Latest benchmark results",
        "",
        f"`python -m bench{' --quick' if results.get('quick') else ''}` on {describe_machine(m)}"
        f" (git {m.get('git_sha')}). Wall-clock figures depend on the machine and its load; the ratios"
        " compare peers measured in the same process. Full figures: `bench/results.json`.",
        "",
        markdown_table(summary_rows(results), ["bench", "status", "seconds", "summary"]),
    ])


def write_readme_table(results: dict, readme: str | Path = README) -> None:
    """Render the summary as Markdown between the bench markers of ``readme`` (appended if missing)."""
    readme = Path(readme)
    text = readme.read_text()
    body = "\n".join([START, results_markdown(results), END])
    if START in text and END in text and text.index(START) < text.index(END):
        text = text[:text.index(START)] + body + text[text.index(END) + len(END):]
    elif START in text or END in text:
        raise ValueError(f"{readme}: only one of the markers {START} / {END} is present, or they are out of order")
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    readme.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help=f"run only these ({', '.join(SCRIPTS)})")
    ap.add_argument("--quick", action="store_true", help="small sizes where a script supports `quick`")
    ap.add_argument("--json", default=str(RESULTS), metavar="PATH", help="where to write the results")
    ap.add_argument("--md", default=str(RESULTS_MD), metavar="PATH", help="where to write the summary table")
    ap.add_argument("--readme", action="store_true", help="also write the table into README.md (its bench markers)")
    ap.add_argument("--no-readme", action="store_true", help="accepted for old scripts: the README is written only "
                    "with --readme")
    args = ap.parse_args(argv)
    names = list(SCRIPTS)
    if args.only:
        unknown = [n for n in args.only if n.removeprefix("bench.") not in SCRIPTS]
        if unknown:
            ap.error(f"unknown bench {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}")
        wanted = {n.removeprefix("bench.") for n in args.only}
        names = [n for n in SCRIPTS if n in wanted]

    results = {"machine": machine_info(), "quick": args.quick, "benches": {}}
    print(f"bench: {describe_machine(results['machine'])}")
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        results["benches"][name] = run_one(name, quick=args.quick)
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))  # partial results survive a crash
    results["machine"]["load_avg_1_5_15_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.json).write_text(json.dumps(results, indent=2, default=str))

    print("\n=== summary ===")
    print(text_table(summary_rows(results), ["bench", "status", "seconds", "summary"]))
    Path(args.md).write_text(results_markdown(results) + "\n")
    print(f"results: {args.json}, {args.md}")
    if args.readme:
        write_readme_table(results)
        print(f"table written into {README.name} between {START} and {END}")
    return 0 if all(e["ok"] for e in results["benches"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
