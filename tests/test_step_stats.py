"""The per-epoch training metrics from the summed step statistics (:class:`EpochStats`): hand-worked
cases, and the same numbers as the dict-based sums the training loop kept before."""
from __future__ import annotations

import math
import random
from collections import defaultdict

import pytest

from cometa.core.strategies.stats import EpochStats, StepStats

NAN = float("nan")


def _by_key(rows: list[dict]) -> dict[tuple[str, str | None], float]:
    return {(r["name"], r.get("modality")): r["value"] for r in rows}


def test_two_steps_by_hand():
    """Step 1: |D̄| 4, |D̄'| 2 (1 wrong label); audio selects 1 (wrong), visual 1 (right), no overlap.
    Step 2: |D̄| 4 and an empty D̄' (no query loss)."""
    acc = EpochStats()
    acc.add(StepStats(n=4, n_disagree=2, n_disagree_noisy=1, n_selected_audio=1, n_selected_noisy_audio=1,
                      n_selected_visual=1, n_selected_noisy_visual=0, n_overlap=0, n_union=2,
                      loss_support_audio=1.0, loss_support_visual=2.0, loss_query_audio=0.5))
    acc.add(StepStats(n=4, empty=True, loss_support_audio=3.0, loss_support_visual=4.0))
    got = _by_key(acc.rows(n_batches=2, lam=0.9))
    assert got[("lambda", None)] == 0.9
    assert got[("disagreement_frac", None)] == 2 / 8
    assert got[("empty_disagreement_batches", None)] == 1.0
    assert got[("disagreement_noisy_frac", None)] == 0.5
    assert got[("selection_overlap", None)] == 0.0
    assert got[("selected_frac_audio", None)] == got[("selected_frac_visual", None)] == 1 / 8
    assert got[("selected_noisy_frac", "audio")] == 1.0 and got[("selected_noisy_frac", "visual")] == 0.0
    # left out of the selection: D̄' minus the selection, 1 sample each; audio left the right one
    assert got[("dropped_noisy_frac", "audio")] == 0.0 and got[("dropped_noisy_frac", "visual")] == 1.0
    assert got[("loss_support", "audio")] == 2.0 and got[("loss_support", "visual")] == 3.0  # over 2 batches
    assert got[("loss_query", "audio")] == 0.5  # over the one step that had a query loss
    assert math.isnan(got[("loss_query", "visual")])
    assert len(got) == 5 + 2 * 5


def test_an_epoch_without_disagreement_has_no_fractions_of_it():
    acc = EpochStats()
    acc.add(StepStats(n=3, empty=True, loss_support_audio=1.0, loss_support_visual=1.0))
    got = _by_key(acc.rows(n_batches=1, lam=1.0))
    assert got[("disagreement_frac", None)] == 0.0 and got[("selected_frac_audio", None)] == 0.0
    for key in (("disagreement_noisy_frac", None), ("selection_overlap", None), ("selected_noisy_frac", "audio"),
                ("dropped_noisy_frac", "visual"), ("loss_query", "audio")):
        assert math.isnan(got[key]), key


def test_no_batches_at_all():
    got = _by_key(EpochStats().rows(n_batches=0, lam=1.0))
    assert got[("disagreement_frac", None)] == 0.0 and got[("loss_support", "audio")] == 0.0


def _dict_rows(steps: list[StepStats], *, n_batches: int, lam: float) -> list[dict]:
    """The sums as the training loop kept them before EpochStats (a defaultdict(float) filled through
    ``st.__dict__``), and its per-epoch rows: the reference the accumulator must reproduce exactly."""
    acc: dict = defaultdict(float)
    for st in steps:
        for f in ("n", "n_disagree", "n_disagree_noisy", "n_selected_audio", "n_selected_visual",
                  "n_selected_noisy_audio", "n_selected_noisy_visual", "n_overlap", "n_union"):
            acc[f] += getattr(st, f)
        acc["empty"] += st.empty
        for m in ("audio", "visual"):
            acc[f"loss_support_{m}"] += st.__dict__[f"loss_support_{m}"]
            q = st.__dict__[f"loss_query_{m}"]
            if not math.isnan(q):
                acc[f"loss_query_{m}"] += q
                acc[f"q_{m}"] += 1
    n, d = max(acc["n"], 1), acc["n_disagree"]
    rows = [dict(name="lambda", value=lam), dict(name="disagreement_frac", value=d / n),
            dict(name="empty_disagreement_batches", value=float(acc["empty"])),
            dict(name="disagreement_noisy_frac", value=acc["n_disagree_noisy"] / d if d else NAN),
            dict(name="selection_overlap", value=acc["n_overlap"] / acc["n_union"] if acc["n_union"] else NAN)]
    for m in ("audio", "visual"):
        sel = acc[f"n_selected_{m}"]
        left, left_noisy = d - sel, acc["n_disagree_noisy"] - acc[f"n_selected_noisy_{m}"]
        rows += [dict(name=f"selected_frac_{m}", value=sel / n),
                 dict(name="selected_noisy_frac", modality=m, value=acc[f"n_selected_noisy_{m}"] / sel if sel else NAN),
                 dict(name="dropped_noisy_frac", modality=m, value=left_noisy / left if left else NAN),
                 dict(name="loss_support", modality=m, value=acc[f"loss_support_{m}"] / max(n_batches, 1)),
                 dict(name="loss_query", modality=m,
                      value=acc[f"loss_query_{m}"] / acc[f"q_{m}"] if acc[f"q_{m}"] else NAN)]
    return rows


def _random_step(rng: random.Random) -> StepStats:
    n = rng.randint(2, 64)
    d = rng.randint(0, n)
    sa, sv = rng.randint(0, d), rng.randint(0, d)
    noisy = rng.randint(0, d)
    return StepStats(n=n, n_disagree=d, n_disagree_noisy=noisy, n_selected_audio=sa, n_selected_visual=sv,
                     n_selected_noisy_audio=min(sa, noisy), n_selected_noisy_visual=rng.randint(0, min(sv, noisy)),
                     n_overlap=min(sa, sv), n_union=max(sa, sv), empty=d == 0,
                     loss_support_audio=rng.uniform(0, 20), loss_support_visual=rng.uniform(0, 20),
                     loss_query_audio=rng.uniform(0, 20) if d else NAN,
                     loss_query_visual=rng.uniform(0, 20) if d else NAN)


@pytest.mark.parametrize("seed", range(20))
def test_the_accumulator_gives_the_numbers_of_the_dict_sums_exactly(seed):
    rng = random.Random(seed)
    steps = [_random_step(rng) for _ in range(rng.randint(0, 30))]
    acc = EpochStats()
    for st in steps:
        acc.add(st)
    lam = rng.uniform(0.5, 1.0)
    new, old = acc.rows(n_batches=len(steps), lam=lam), _dict_rows(steps, n_batches=len(steps), lam=lam)
    assert [(r["name"], r.get("modality")) for r in new] == [(r["name"], r.get("modality")) for r in old]
    for a, b in zip(new, old):
        assert a["value"] == b["value"] or (math.isnan(a["value"]) and math.isnan(b["value"])), a["name"]
