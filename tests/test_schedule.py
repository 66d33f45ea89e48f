"""The scheduler of ``run_pipeline`` (:mod:`cometa.pipeline.schedule`), a pure function: longest chain
first, at most ``jobs`` steps at once, each with the threads the plan gives it, complete steps skipped,
and after a failure nothing new starts (so the failed step's dependents never run)."""
from __future__ import annotations

from cometa.config import load_config
from cometa.pipeline.plan import plan_steps
from cometa.pipeline.schedule import Decision, Launch, by_priority, chain_lengths, next_steps, step_threads

# corpus -> stage1 -> baseline/round_1 -> baseline/round_2 -+-> report
#                  -> cometa/round_1   -> cometa/round_2   -+
DEPENDS = {
    "corpus": [], "stage1": ["corpus"],
    "baseline/round_1": ["stage1"], "baseline/round_2": ["baseline/round_1"],
    "cometa/round_1": ["stage1"], "cometa/round_2": ["cometa/round_1"],
    "report": ["baseline/round_2", "cometa/round_2"],
}
WEIGHT = {s: 1.5 if s.startswith("cometa/") else 1.0 for s in DEPENDS}


def _next(pending, *, done=(), failed=(), complete=(), free_slots=2, jobs=2, cores=4) -> Decision:
    return next_steps(pending, DEPENDS, done=set(done), failed=set(failed), complete=set(complete),
                      free_slots=free_slots, threads=step_threads(DEPENDS, jobs=jobs, cores=cores))


def test_chain_lengths_are_the_work_on_the_longest_path_to_the_end():
    chain = chain_lengths(DEPENDS, WEIGHT)
    assert chain["report"] == 1.0
    assert chain["cometa/round_2"] == 2.5 and chain["cometa/round_1"] == 4.0
    assert chain["baseline/round_2"] == 2.0 and chain["baseline/round_1"] == 3.0
    assert chain["stage1"] == 5.0 and chain["corpus"] == 6.0  # through Co-Meta's chain, the longer


def test_longest_chain_first():
    order = by_priority(list(DEPENDS), chain_lengths(DEPENDS, WEIGHT))
    assert order == ["corpus", "stage1", "cometa/round_1", "baseline/round_1", "cometa/round_2",
                     "baseline/round_2", "report"]
    # one free slot once Stage I is done: the slow strategy's round starts, though planned second
    pending = order[2:]
    assert _next(pending, done={"corpus", "stage1"}, free_slots=1, jobs=1).start == (Launch("cometa/round_1", 4),)


def test_equal_chains_keep_the_plan_order():
    depends = {"a": [], "b": [], "c": []}
    assert by_priority(list(depends), chain_lengths(depends, dict.fromkeys(depends, 1.0))) == ["a", "b", "c"]


def test_at_most_jobs_steps_and_the_cores_shared_among_them():
    pending = ["cometa/round_1", "baseline/round_1", "cometa/round_2", "baseline/round_2", "report"]
    d = _next(pending, done={"corpus", "stage1"}, free_slots=2, jobs=2, cores=4)
    assert d.start == (Launch("cometa/round_1", 2), Launch("baseline/round_1", 2)) and d.skip == ()
    # one slot taken by a running step: one more starts, with half the cores
    d = _next(pending[1:], done={"corpus", "stage1"}, free_slots=1, jobs=2, cores=4)
    assert d.start == (Launch("baseline/round_1", 2),)
    # no free slot: nothing starts
    assert _next(pending, done={"corpus", "stage1"}, free_slots=0).start == ()


def test_threads_come_from_the_plan_not_from_what_runs_beside():
    """A round that could run beside the other strategy's rounds keeps its share even when it is the
    last step left (a resumed run): the same threads as in an uninterrupted run, the same numbers."""
    pending = ["cometa/round_2", "report"]
    d = _next(pending, done={"corpus", "stage1", "baseline/round_1", "cometa/round_1", "baseline/round_2"},
              free_slots=2, jobs=2, cores=4)
    assert d.start == (Launch("cometa/round_2", 2),)
    threads = step_threads(DEPENDS, jobs=2, cores=4)
    # corpus, Stage I and the report never run beside another step: every core
    assert threads == {"corpus": 4, "stage1": 4, "baseline/round_1": 2, "baseline/round_2": 2,
                       "cometa/round_1": 2, "cometa/round_2": 2, "report": 4}
    assert step_threads(DEPENDS, jobs=1, cores=4)["cometa/round_2"] == 4  # one at a time: all of them
    assert step_threads(DEPENDS, jobs=3, cores=9)["cometa/round_2"] == 3  # w = 3 (itself, both baselines)
    assert step_threads(DEPENDS, jobs=8, cores=1)["cometa/round_2"] == 1  # never below one


def test_steps_wait_for_their_dependencies():
    assert _next(list(DEPENDS)[1:], done=set()).start == ()
    assert _next(list(DEPENDS), done=set()).start == (Launch("corpus", 4),)


def test_complete_steps_are_skipped_and_unblock_their_dependents_at_once():
    pending = by_priority(list(DEPENDS), chain_lengths(DEPENDS, WEIGHT))
    d = _next(pending, complete={"corpus", "stage1", "cometa/round_1"}, free_slots=2, jobs=2, cores=4)
    assert d.skip == ("corpus", "stage1", "cometa/round_1")
    # in the same pass, in priority order: both ready, two slots, two cores each
    assert d.start == (Launch("baseline/round_1", 2), Launch("cometa/round_2", 2))


def test_a_complete_step_waits_for_its_dependencies_like_any_other():
    d = _next(["cometa/round_2", "report"], complete={"cometa/round_2", "report"}, done={"corpus"})
    assert d == Decision()  # cometa/round_1 has not finished: its complete successor is not skipped yet


def test_a_failure_stops_its_dependents_and_starts_nothing_new():
    pending = ["cometa/round_2", "baseline/round_1", "baseline/round_2", "report"]
    d = _next(pending, done={"corpus", "stage1"}, failed={"cometa/round_1"}, free_slots=2)
    assert d == Decision()  # not cometa/round_2 (its dependent), and nothing else either
    # even without the rule, the dependents of a failed step would never be ready
    d = next_steps(["cometa/round_2", "report"], DEPENDS, done={"corpus", "stage1", "baseline/round_1",
                                                                "baseline/round_2"},
                   failed=set(), complete=set(), free_slots=2, threads=step_threads(DEPENDS, jobs=2, cores=4))
    assert d == Decision()


def test_dependencies_outside_the_plan_count_as_done():
    """``run_pipeline(only=[...])`` plans some steps; the others must be complete already."""
    depends = {"cometa/round_2": ["cometa/round_1"]}
    assert next_steps(["cometa/round_2"], depends, done=set(), failed=set(), complete=set(), free_slots=1,
                      threads={"cometa/round_2": 2}).start == (Launch("cometa/round_2", 2),)


def test_the_plan_of_a_run_schedules_the_slow_strategy_first(tmp_path):
    steps = plan_steps(load_config("tiny"), tmp_path)
    depends = {s.name: s.depends for s in steps}
    order = by_priority(list(depends), chain_lengths(depends, {s.name: s.weight for s in steps}))
    assert order[:3] == ["corpus", "stage1", "cometa/round_1"] and order[-1] == "report"
    assert order.index("cometa/round_2") < order.index("baseline/round_2")
