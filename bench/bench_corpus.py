"""Benchmark: build the demo-size embedded corpus from scratch, then score the handcrafted baselines.

Prints the build time, file counts, size on disk and the baselines' EER on the O/E/H-like lists
(the generator is calibrated so that both land between about 10 % and 35 % on O).
Run: ``python bench/bench_corpus.py [--workers N] [--keep DIR]``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from cometa.data.synthetic import TRIAL_FILES, SyntheticConfig, build_corpus, preset_config
from cometa.evaluation.baselines import baseline_eers


def main(argv: list[str] | None = None) -> dict:
    """Build the demo corpus into a temporary directory; print and return the measurements.

    ``argv`` defaults to no options (not ``sys.argv``), so a suite runner can call ``main()``.
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=None, help="corpus worker processes (default: all cores)")
    ap.add_argument("--keep", default=None, help="build here and keep it instead of a temporary directory")
    args = ap.parse_args(argv or [])
    cfg: SyntheticConfig = preset_config("demo")
    with tempfile.TemporaryDirectory(prefix="cometa-bench-corpus-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp) / "corpus"
        t0 = time.perf_counter()
        build_corpus(cfg, root, progress=False, workers=args.workers)
        wall = time.perf_counter() - t0
        files = [p for p in root.rglob("*") if p.is_file()]
        t1 = time.perf_counter()
        eers = {name: baseline_eers(root, trials=fname) for name, fname in TRIAL_FILES.items()}
        result = {
            "build_seconds": round(wall, 2),
            "files": len(files),
            "wav_files": sum(p.suffix == ".wav" for p in files),
            "jpg_files": sum(p.suffix == ".jpg" for p in files),
            "total_mb": round(sum(p.stat().st_size for p in files) / 2 ** 20, 1),
            "counts": json.loads((root / "corpus.json").read_text())["counts"],
            "baseline_seconds": round(time.perf_counter() - t1, 2),
            "eer": {name: {m: round(v, 4) for m, v in e.items()} for name, e in eers.items()},
        }
    print(f"demo corpus: built in {result['build_seconds']} s; {result['files']} files "
          f"({result['wav_files']} wav, {result['jpg_files']} jpg), {result['total_mb']} MiB")
    for name, e in result["eer"].items():
        print(f"  baseline EER {name}-like: audio {100 * e['audio']:.1f} %, face {100 * e['face']:.1f} %")
    print(f"  (baselines scored in {result['baseline_seconds']} s)")
    return result


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
