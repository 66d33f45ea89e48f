"""The run API (cometa.results.explore) on the tiny run, against independent computations.

Numbers are checked against the run store read with sqlite3, the label and array files read with
pandas and numpy, and label correctness recomputed here with a Counter.
"""
from __future__ import annotations

import base64
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cometa
from cometa.results import explore
from tests.conftest import TINY_STUDY_EER_FACTOR

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ["baseline", "coteaching_plus", "cometa"]


# ------------------------------------------------------------------------------------ independent
def _store_value(run_dir: Path, *, strategy, stage: str, round_: int, modality: str, name: str) -> float:
    """The latest value of one scalar, straight from store.sqlite."""
    con = sqlite3.connect(run_dir / "store.sqlite")
    try:
        strat = "strategy IS NULL" if strategy is None else "strategy = ?"
        rows = con.execute(f"SELECT value FROM scalars WHERE {strat} AND stage = ? AND round = ? AND modality = ? "
                           "AND name = ? ORDER BY time, rowid", [*([] if strategy is None else [strategy]),
                                                                 stage, round_, modality, name]).fetchall()
    finally:
        con.close()
    assert rows, (strategy, stage, round_, modality, name)
    return rows[-1][0]


def _correct(labels: pd.DataFrame, view: str) -> dict[str, float]:
    """key -> 1.0 right / 0.0 wrong / nan dropped, a cluster's speaker being its most frequent one
    (ties: the first seen), recomputed with a Counter per cluster."""
    members: dict[int, Counter] = {}
    for spk, c in zip(labels["speaker"], labels[view]):
        if c >= 0:
            members.setdefault(int(c), Counter())[spk] += 1
    major = {c: cnt.most_common(1)[0][0] for c, cnt in members.items()}
    return {k: (np.nan if c < 0 else float(major[int(c)] == spk))
            for k, spk, c in zip(labels["key"], labels["speaker"], labels[view])}


@pytest.fixture(scope="module")
def run(tiny_run):
    return cometa.open_run(tiny_run)


# ------------------------------------------------------------------------------------- import
def test_readme_example_runs_and_imports_no_torch(tiny_run, tiny_study):
    """The README's run-API example, verbatim but for its two paths, in a fresh interpreter: it runs,
    every figure method builds, and torch was never imported."""
    text = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- run-api-example:start -->\s*```python\n(.*?)```\s*<!-- run-api-example:end -->",
                     text, re.S).group(1)
    assert '"runs/demo"' in code and '"runs/demo-seed1"' in code
    code = code.replace('"runs/demo"', repr(str(tiny_run))).replace('"runs/demo-seed1"',
                                                                    repr(str(tiny_study / "seed_1")))
    check = """
import sys
for name in cometa.results.explore.FIGURES:
    fig = getattr(run, name)()
    assert fig.data or fig.layout.annotations, name
assert "torch" not in sys.modules, "exploring a run imported torch"
print("ok", len(labels), runs.names)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "ok 96 ['tiny', 'seed_1']"


def test_open_run_checks_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a run directory"):
        cometa.open_run(tmp_path)


def test_find_run(tiny_run, monkeypatch):
    monkeypatch.setenv("COMETA_RUN_DIR", str(tiny_run))
    assert explore.find_run("") == tiny_run.resolve()
    assert explore.find_run(tiny_run.parent / "elsewhere") == (tiny_run.parent / "elsewhere").resolve()


# ------------------------------------------------------------------------------------- the run
def test_run_knows_its_strategies_and_rounds(run):
    assert run.strategies == STRATEGIES and run.rounds() == [1, 2] and not run.is_study
    assert run.config["preset"] == "tiny" and run.seeds == [run]


def test_table1_equals_the_store(run, tiny_run):
    t1 = run.table1("O")
    assert list(t1.index) == ["Untrained", "Stage I", "Round 1", "Round 2"]
    assert list(t1.columns) == [(s, m) for s in STRATEGIES for m in ("audio", "visual")]
    stage1 = _store_value(tiny_run, strategy=None, stage="eval/O", round_=0, modality="audio", name="eer")
    assert t1.loc["Stage I", ("baseline", "audio")] == pytest.approx(100 * stage1, abs=1e-12)
    assert t1.loc["Stage I"].isna().sum() == 5  # Stage I sits under the first strategy's audio only
    for s in STRATEGIES:
        for m in ("audio", "visual"):
            for r in (1, 2):
                want = _store_value(tiny_run, strategy=s, stage="eval/O", round_=r, modality=m, name="eer")
                assert t1.loc[f"Round {r}", (s, m)] == pytest.approx(100 * want, abs=1e-12), (s, m, r)
    assert (run.table1("O", std=True).fillna(0) == 0).all().all()  # one run: no spread


def test_table2_equals_the_store(run, tiny_run):
    t2 = run.table2()
    assert list(t2.index) == [(s, m, 2) for s in STRATEGIES for m in ("audio", "visual", "fused")]
    for (s, m, r) in t2.index:
        for lst in ("O", "E", "H"):
            eer = _store_value(tiny_run, strategy=s, stage=f"eval/{lst}", round_=r, modality=m, name="eer")
            dcf = _store_value(tiny_run, strategy=s, stage=f"eval/{lst}", round_=r, modality=m, name="min_dcf_0.01")
            assert t2.loc[(s, m, r), (lst, "eer")] == pytest.approx(100 * eer, abs=1e-12)
            assert t2.loc[(s, m, r), (lst, "min_dcf_0.01")] == pytest.approx(dcf, abs=1e-12)
    assert run.table_text(1) == (tiny_run / "report" / "table1.md").read_text()  # the report's own text
    assert run.table_text(2, "latex") == (tiny_run / "report" / "table2.tex").read_text()


def test_round_summary_equals_the_store(run, tiny_run):
    s = run.round_summary("coteaching_plus", 2)
    eer = _store_value(tiny_run, strategy="coteaching_plus", stage="eval/H", round_=2, modality="visual", name="eer")
    purity = _store_value(tiny_run, strategy="coteaching_plus", stage="labels", round_=2, modality="consensus",
                          name="purity")
    assert s["EER % H visual"] == pytest.approx(100 * eer) and s["consensus purity"] == pytest.approx(purity)
    con = sqlite3.connect(tiny_run / "store.sqlite")
    lam = con.execute("SELECT AVG(value) FROM scalars WHERE strategy = 'coteaching_plus' AND stage = 'train' "
                      "AND round = 2 AND name = 'lambda' AND step IS NULL").fetchone()[0]
    con.close()
    assert s["λ (epoch mean)"] == pytest.approx(lam)


def test_per_round_files_are_the_files(run, tiny_run):
    d = tiny_run / "cometa" / "round_2"
    pd.testing.assert_frame_equal(run.labels("cometa", 2), pd.read_parquet(d / "labels.parquet"))
    pd.testing.assert_frame_equal(run.labels(), pd.read_parquet(d / "labels.parquet"))  # cometa, last round
    with np.load(d / "embeddings.npz") as z:
        emb = run.embeddings("cometa", 2)
        assert set(emb) == set(z.files) == {"keys", "audio", "visual", "joint"}
        for k in z.files:
            np.testing.assert_array_equal(emb[k], z[k])
    with np.load(tiny_run / "stage1" / "embeddings.npz") as z:
        np.testing.assert_array_equal(run.embeddings(round_=0)["audio"], z["audio"])
    with np.load(d / "scores.npz") as z:
        np.testing.assert_array_equal(run.scores("cometa", 2)["O_visual"], z["O_visual"])
    pd.testing.assert_frame_equal(run.projection("cometa", 2), pd.read_parquet(d / "projection.parquet"))
    with pytest.raises(FileNotFoundError, match="no round 3"):
        run.labels("cometa", 3)
    with pytest.raises(KeyError, match="no strategy"):
        run.labels("nope", 1)


def test_label_history_equals_the_labels_files(run, tiny_run):
    history = run.label_history("baseline")
    files = {r: pd.read_parquet(tiny_run / "baseline" / f"round_{r}" / "labels.parquet") for r in (1, 2)}
    assert set(history.index) == set(files[1]["key"])
    wrong_both = Counter()
    for r, lab in files.items():
        right = {v: _correct(lab, v) for v in ("audio", "visual", "consensus")}
        for v, per_key in right.items():
            got = history[f"r{r}_{v}"]
            want = pd.Series(per_key).reindex(got.index)
            np.testing.assert_array_equal(got.to_numpy(), want.to_numpy(), err_msg=f"round {r} {v}")
        for k in lab["key"]:
            wrong_both[k] += right["audio"][k] == 0 and right["visual"][k] == 0
    assert history["wrong_both"].to_dict() == {k: wrong_both[k] for k in history.index}
    ids = run.label_ids("baseline", "consensus")
    assert ids.loc[files[2]["key"].iloc[5], 2] == files[2]["consensus"].iloc[5]


def test_wrong_in_both_on_the_run(run, tiny_run):
    lab = pd.read_parquet(tiny_run / "cometa" / "round_2" / "labels.parquet")
    a, v = _correct(lab, "audio"), _correct(lab, "visual")
    want = sorted(k for k in lab["key"] if a[k] == 0 and v[k] == 0)
    both = run.wrong_in_both("cometa", 2)
    assert sorted(both.index) == want and len(want) > 0
    assert (both["heard_as"] != both["speaker"]).all() and (both["seen_as"] != both["speaker"]).all()


def test_utterance_plays_and_shows_the_corpus_files(run):
    key = run.labels("cometa", 1)["key"].iloc[0]
    utt = run.utterance(key)
    root = run.corpus_root
    assert utt.wav == root / "train" / "wav" / key
    assert utt.frames == sorted((root / "train" / "faces" / key[:-4]).glob("*.jpg")) and utt.frames
    page = utt._repr_html_()
    assert base64.b64encode(utt.wav.read_bytes()).decode() in page and page.count("<img") == len(utt.frames)
    samples, rate = utt.audio()
    assert rate == 16000 and samples.ndim == 1 and len(samples) > rate


# ------------------------------------------------------------------------------------ a study
def test_study_is_the_mean_and_sample_std_of_its_seeds(run, tiny_study):
    study = cometa.open_run(tiny_study)
    assert study.is_study and [s.name for s in study.seeds] == ["study/seed_0", "study/seed_1"]
    assert study.config["seed"] == [0, 1]
    base = run.table1("O")
    values = np.stack([base.to_numpy() * f for f in TINY_STUDY_EER_FACTOR.values()])  # (seeds, rows, cols)
    np.testing.assert_allclose(study.table1("O").to_numpy(), values.mean(0), rtol=1e-12)
    np.testing.assert_allclose(study.table1("O", std=True).to_numpy(), values.std(0, ddof=1), rtol=1e-12)
    fig = study.eer_per_round()
    assert "mean ± std over 2 seeds" in fig.layout.title.text
