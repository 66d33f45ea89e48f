"""``python -m bench`` leaves README.md alone unless asked (issue 33): it writes bench/results.json and
bench/RESULTS.md; ``--readme`` writes the table between the README's bench markers; ``--no-readme`` is accepted."""
from __future__ import annotations

import json

import bench.__main__ as suite


def _fake_bench(name: str, *, quick: bool) -> dict:
    return {"ok": True, "kwargs": {}, "result": {"headline": f"{name}: 2.0x faster"}, "seconds": 0.5}


def test_bench_writes_its_own_files_and_touches_the_readme_only_on_request(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text("# cometa\n\ntext\n")
    monkeypatch.setattr(suite, "README", readme)
    monkeypatch.setattr(suite, "run_one", _fake_bench)
    monkeypatch.setattr(suite, "machine_info", lambda: {"git_sha": "abc", "cpu": "test cpu"})
    monkeypatch.setattr(suite, "describe_machine", lambda m: m["cpu"])
    monkeypatch.setattr(suite.write_readme_table, "__defaults__", (readme,))
    out = {"json": tmp_path / "results.json", "md": tmp_path / "RESULTS.md"}
    files = ["--json", str(out["json"]), "--md", str(out["md"])]
    for extra in ([], ["--no-readme"]):
        assert suite.main(["--only", "bench_metrics", *files, *extra]) == 0
        assert readme.read_text() == "# cometa\n\ntext\n"  # untouched
    results = json.loads(out["json"].read_text())
    assert list(results["benches"]) == ["bench_metrics"]
    md = out["md"].read_text()
    assert md.startswith("### Latest benchmark results")
    assert "| bench_metrics | ok | 0.5 | bench_metrics: 2.0x faster |" in md
    assert suite.main(["--only", "bench_metrics", *files, "--readme"]) == 0
    text = readme.read_text()
    assert text.startswith("# cometa\n\ntext\n") and f"{suite.START}\n{md.rstrip()}\n{suite.END}" in text
