"""Several runs side by side (cometa.results.several_runs): tables and figures next to each other, the numbers of
each run unchanged (the second run is tiny_study's seed_1: tiny_run with its EERs halved)."""
from __future__ import annotations

import numpy as np
import pytest

import cometa
from tests.conftest import TINY_STUDY_EER_FACTOR


@pytest.fixture(scope="module")
def run(tiny_run):
    return cometa.open_run(tiny_run)


def test_open_runs_puts_runs_side_by_side(run, tiny_study):
    runs = cometa.open_runs([run, tiny_study / "seed_1"])
    assert runs.names == ["tiny", "seed_1"] and runs["seed_1"].path == (tiny_study / "seed_1").resolve()
    t1 = runs.table1()
    assert list(t1.columns.get_level_values(0).unique()) == ["tiny", "seed_1"]
    np.testing.assert_allclose(t1["seed_1"].to_numpy(), t1["tiny"].to_numpy() * TINY_STUDY_EER_FACTOR[1])
    assert set(runs.scalars["run"]) == {"tiny", "seed_1"}
    fig = runs.compare("eer_per_round")
    assert [a.text for a in fig.layout.annotations] == ["tiny", "seed_1"]
    one = run.eer_per_round()
    assert len(fig.data) == 2 * len(one.data)
    right = [t for t in fig.data if t.xaxis == "x2"]
    for a, b in zip(one.data, right):  # the same traces, the second run's EERs halved
        np.testing.assert_allclose(np.asarray(b.y, float), np.asarray(a.y, float) * TINY_STUDY_EER_FACTOR[1])
        assert a.line.color == b.line.color
    assert sum(bool(t.showlegend is not False) for t in fig.data) == len(one.data)  # one legend entry each
    with pytest.raises(ValueError, match="several panels"):
        runs.compare("purity_per_round")
    same = cometa.open_runs([tiny_study / "seed_1", tiny_study / "seed_1"], names=["a", "b"])
    assert same.names == ["a", "b"]


def test_side_by_side_keeps_each_runs_round_boundaries(run, tiny_study):
    from cometa.results.several_runs import side_by_side

    one = run.training_dynamics(panels=["λ"])
    fig = side_by_side({"a": one, "b": cometa.open_run(tiny_study / "seed_1").training_dynamics(panels=["λ"])})
    assert len(one.layout.shapes) == 1  # round 2 begins at epoch 2
    assert [(s.xref, s.x0) for s in fig.layout.shapes] == [("x", one.layout.shapes[0].x0),
                                                            ("x2", one.layout.shapes[0].x0)]
    assert fig.layout.xaxis2.title.text == "epoch" and fig.layout.yaxis2.matches == "y"
