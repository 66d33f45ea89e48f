"""The README is a guide: at most 300 lines, no commit SHA, no dates, no issue numbers, and its results
table is the committed demo study's, pasted by tools/readme_table.py (the first table of
reports/demo/study.md). The script's table extraction and pasting are checked on hand-written markdown."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import readme_table  # noqa: E402  (tools/ is not a package)

README = ROOT / "README.md"
# 7-40 hex characters holding at least one digit and at least one of a-f: what git prints for a commit
SHA = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")
MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
DATE = re.compile(rf"\b\d{{4}}-\d{{2}}(-\d{{2}})?\b|\b(19|20)\d{{2}}\b|\b({MONTHS})\b")


# ------------------------------------------------------------------------------ the README itself
def test_readme_table_equals_the_committed_report():
    """The block between the headline-table markers is the first table of the report it names.
    Fails until the demo study's report (reports/demo/study.md) is generated and committed."""
    rel, body = readme_table.headline_block(README.read_text())
    assert rel == "reports/demo/study.md"
    report = ROOT / rel
    assert report.is_file(), f"{rel} is not committed yet: run cometa study reports/studies/demo.yaml"
    assert body.rstrip("\n") == readme_table.first_table(report.read_text())
    assert readme_table.main(["--check"]) == 0


def test_readme_is_a_short_guide_without_history():
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    assert SHA.findall(text) == []
    assert [m.group(0) for m in DATE.finditer(text)] == []
    assert re.findall(r"\bissues? #?\d+|the issue's", text, re.I) == []


def test_the_patterns_catch_what_they_are_for():
    """The SHA and date patterns fire on history and stay quiet on ordinary technical text."""
    assert SHA.findall("at c9af3b3, then 45b755c and db7a5d597ce7") == ["c9af3b3", "45b755c", "db7a5d597ce7"]
    assert SHA.findall("1147 s, 3703 MiB, decade, facade, 0.0623, cafebabe, 12345678") == []
    assert [m.group(0) for m in DATE.finditer("2026-12-02 and 2026-12, in December, ICASSP 2022")] == \
        ["2026-12-02", "2026-12", "December", "2022"]
    assert list(DATE.finditer("ECAPA C=512, k = 6000, 8 epochs, port 8786, 16000 Hz")) == []


# ------------------------------------------------------------------------------ the script
REPORT = """# Study demo

Provenance: 2 cores. A line with | a pipe | is prose, not a table.

| cell | strategy | audio EER % |
|---|---|---:|
| study | baseline | 13.6 ± 0.8 |
| study | cometa | 19.0 ± 0.8 |

Later text.

| second | table |
|:--|--:|
| not | this |
"""


def test_first_table_is_the_header_the_delimiter_and_its_rows():
    assert readme_table.first_table(REPORT) == (
        "| cell | strategy | audio EER % |\n|---|---|---:|\n"
        "| study | baseline | 13.6 ± 0.8 |\n| study | cometa | 19.0 ± 0.8 |")
    assert readme_table.first_table("| a | b |\n|:-:|--:|\n") == "| a | b |\n|:-:|--:|"
    with pytest.raises(ValueError, match="no markdown table"):
        readme_table.first_table("| a pipe line | without a delimiter row |\ntext\n")


def test_paste_and_check(tmp_path):
    (tmp_path / "reports" / "demo").mkdir(parents=True)
    (tmp_path / "reports" / "demo" / "study.md").write_text(REPORT)
    readme = tmp_path / "README.md"
    before = "# Guide\n\ntext\n\n<!-- headline-table: reports/demo/study.md -->\n<!-- /headline-table -->\n\nafter\n"
    readme.write_text(before)
    assert readme_table.main(["--check", "--readme", str(readme)]) == 1
    assert readme.read_text() == before  # --check writes nothing
    assert readme_table.main(["--readme", str(readme)]) == 0
    assert readme.read_text() == before.replace(
        "-->\n<!-- /", "-->\n" + readme_table.first_table(REPORT) + "\n<!-- /")
    assert readme_table.main(["--check", "--readme", str(readme)]) == 0
    # a hand edit of the pasted table is caught
    readme.write_text(readme.read_text().replace("13.6 ± 0.8", "12.0 ± 0.8"))
    assert readme_table.main(["--check", "--readme", str(readme)]) == 1


def test_missing_report_or_markers_name_the_file(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- headline-table: reports/demo/study.md -->\n<!-- /headline-table -->\n")
    assert readme_table.main(["--check", "--readme", str(readme)]) == 2
    assert str(tmp_path / "reports" / "demo" / "study.md") in capsys.readouterr().err
    readme.write_text("# no block\n")
    assert readme_table.main(["--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert str(readme) in err and "no <!-- headline-table: PATH -->" in err


# ------------------------------------------------------------------------------ the specs it cites
SPECS = sorted((ROOT / "reports" / "studies").glob("*.yaml"))


def spec_cells(spec: dict) -> list[dict]:
    """Every cell's overrides: the spec's ``set``, then its variant's, then one value of each axis
    (the spec's axes crossed with the variant's), as plain dicts."""
    import itertools

    cells = []
    for variant in (spec.get("variants") or {"": {}}).values():
        variant = variant or {}
        axes = {**spec.get("axes", {}), **variant.get("axes", {})}
        for values in itertools.product(*axes.values()):
            cells.append({**spec.get("set", {}), **variant.get("set", {}), **dict(zip(axes, values))})
    return cells


def test_spec_cells_cross_each_variant_with_its_own_axes():
    spec = {"set": {"a": 1}, "axes": {"t": [1, 2]},
            "variants": {"k": {}, "u": {"set": {"m": "x"}, "axes": {"r": [5, 6]}}}}
    assert spec_cells(spec) == [{"a": 1, "t": 1}, {"a": 1, "t": 2},
                                {"a": 1, "m": "x", "t": 1, "r": 5}, {"a": 1, "m": "x", "t": 1, "r": 6},
                                {"a": 1, "m": "x", "t": 2, "r": 5}, {"a": 1, "m": "x", "t": 2, "r": 6}]


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_study_spec_names_itself_and_every_cell_loads(path):
    """Each spec under reports/studies/ is named after its file, says what it asks in a leading
    comment, and every cell's keys exist and lie within their bounds."""
    import yaml

    from cometa.config import load_config
    from cometa.config.sections import STRATEGY_NAMES, check_stage2_options

    text = path.read_text()
    assert text.startswith("# "), f"{path.name}: no comment saying what it asks"
    spec = yaml.safe_load(text)
    assert spec["name"] == path.stem
    assert set(spec) <= {"name", "preset", "strategies", "seeds", "set", "axes", "variants"}
    assert spec["strategies"] and set(spec["strategies"]) <= set(STRATEGY_NAMES)
    assert spec["seeds"] and all(isinstance(s, int) for s in spec["seeds"])
    for cell in spec_cells(spec):
        cfg = load_config(spec["preset"], overrides=cell)
        check_stage2_options(cfg)


def test_the_specs_cover_every_finding():
    names = {p.stem for p in SPECS}
    assert {"demo", "epochs_per_round", "restarts", "alpha", "meta_order", "tau", "known_noise", "transfer",
            "strategies", "label_noise"} <= names
