"""Record what each kind of step costs, from finished runs, for ``cometa study --dry-run``.

    python -m bench.step_costs RUN_DIR [RUN_DIR ...]

Each run's steps (wall seconds x threads, rounds averaged per strategy) go under its preset in
``bench/step_costs.json``, with the run and the machine that measured them; a later run of the same
preset replaces the entry.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cometa.pipeline.provenance import machine_record
from cometa.pipeline.step_costs import STEP_COSTS_FILE, measure_step_costs, preset_of
from cometa.runs import atomic_write


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="finished run or study directories")
    p.add_argument("--out", default=str(STEP_COSTS_FILE))
    args = p.parse_args(argv)
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    machine = machine_record()
    for run in args.runs:
        try:
            costs = measure_step_costs(run)
        except (ValueError, OSError) as e:
            print(f"step_costs: {e}", file=sys.stderr)
            return 2
        preset = preset_of(run)
        records = [json.loads(p.read_text()) for p in Path(run).glob("**/done.json")]
        measured = [r for r in records if r.get("step") not in (None, "report") and not r.get("shared_from")]
        with_cpu = sum("cpu_seconds" in r for r in measured)
        data[preset] = {"cpu_seconds": costs, "run": str(Path(run).resolve()),
                        "measured_as": f"{with_cpu} of {len(measured)} steps by their kernels' CPU seconds, the "
                                       "rest as wall seconds x threads (an overestimate on a loaded machine)",
                        "cpu": f"{machine['cpu']['model']} ({machine['cpu']['simd']}, {machine['cpu']['cores']} cores)",
                        "commit": machine["git"]["commit"]}
        print(f"{preset}: " + ", ".join(f"{k} {v:.0f} s" for k, v in costs.items()))
    with atomic_write(out) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
