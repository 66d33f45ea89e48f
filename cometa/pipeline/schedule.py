"""Which steps of a run start next: a pure function of the step graph and what has happened so far.

Longest chain first: a step's priority is the estimated work on the longest path from it to the
end of the run (:func:`chain_lengths`), so that the slow strategy (Co-Meta's second-order steps)
starts early and the others fill the free slots beside it, instead of running alone at the end.
:func:`next_steps` then walks the waiting steps in that order: a step whose dependencies are done
is skipped when it is already complete on disk, else started while slots are free. After a failure
nothing new starts (the running steps finish).

A step's thread count (:func:`step_threads`) is fixed by the plan, not by what happens to run beside
it: ``cores // min(jobs, w)``, ``w`` being how many steps could ever run at once with it (itself and
the steps that are neither upstream nor downstream of it). A run resumed after a crash, with fewer
steps left to run side by side, therefore gives every step the same threads as an uninterrupted run,
and computes the same numbers (reductions over a different number of threads differ in the last bits).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

__all__ = ["Launch", "Decision", "chain_lengths", "by_priority", "step_threads", "next_steps"]


@dataclass(frozen=True)
class Launch:
    step: str
    threads: int  # torch/faiss threads of its kernel (:func:`step_threads`)


@dataclass(frozen=True)
class Decision:
    skip: tuple[str, ...] = ()  # complete on disk with unchanged inputs: marked skipped, nothing runs
    start: tuple[Launch, ...] = ()  # to start now, in this order


def chain_lengths(depends: Mapping[str, Sequence[str]], weight: Mapping[str, float]) -> dict[str, float]:
    """Each step's weight plus the largest chain length among the steps that depend on it: the
    estimated work on the longest path from the step to the end. Dependencies on steps outside
    ``depends`` (not planned) are ignored."""
    children: dict[str, list[str]] = {s: [] for s in depends}
    for s, deps in depends.items():
        for d in deps:
            if d in children:
                children[d].append(s)
    chain: dict[str, float] = {}

    def length(s: str) -> float:
        if s not in chain:
            chain[s] = weight[s] + max((length(c) for c in children[s]), default=0.0)
        return chain[s]

    for s in depends:
        length(s)
    return chain


def by_priority(steps: Sequence[str], chain: Mapping[str, float]) -> list[str]:
    """``steps`` longest chain first (a stable sort: equal chains keep their plan order)."""
    return sorted(steps, key=lambda s: -chain[s])


def step_threads(depends: Mapping[str, Sequence[str]], *, jobs: int, cores: int) -> dict[str, int]:
    """Each planned step's threads: ``max(1, cores // min(jobs, w))`` with ``w`` = 1 + the planned steps
    that are neither upstream nor downstream of it (those that may run beside it). A function of the
    plan alone, so the same step gets the same threads however many steps are left when it starts."""
    upstream: dict[str, set[str]] = {}

    def ancestors(s: str) -> set[str]:
        if s not in upstream:
            upstream[s] = set()
            for d in depends[s]:
                if d in depends:
                    upstream[s] |= {d} | ancestors(d)
        return upstream[s]

    for s in depends:
        ancestors(s)
    out = {}
    for s in depends:
        beside = [t for t in depends if t != s and t not in upstream[s] and s not in upstream[t]]
        out[s] = max(1, int(cores) // min(max(1, int(jobs)), 1 + len(beside)))
    return out


def next_steps(pending: Sequence[str], depends: Mapping[str, Sequence[str]], *, done: Set[str],
               failed: Set[str], complete: Set[str], free_slots: int, threads: Mapping[str, int]) -> Decision:
    """What to do now.

    Parameters
    ----------
    pending : the steps neither started nor finished, in priority order (:func:`by_priority`).
    depends : every planned step -> the steps it waits for (those not planned count as done).
    done : finished steps (ran or skipped); ``failed``: steps that failed (then nothing starts).
    complete : steps whose done-marker matches their inputs: skipped once their dependencies are done.
    free_slots : how many more steps may start now (``jobs`` at once in all).
    threads : each step's threads (:func:`step_threads`); a step missing from it gets 1.
    """
    if failed:
        return Decision()
    finished, waiting = set(done), list(pending)
    skip: list[str] = []
    start: list[Launch] = []

    def ready(step: str) -> bool:
        return all(d in finished for d in depends[step] if d in depends)

    progressed = True
    while progressed:  # a skipped step may make the steps after it ready
        progressed = False
        for step in list(waiting):
            if not ready(step):
                continue
            if step in complete:
                skip.append(step)
                finished.add(step)
            elif len(start) < free_slots:
                start.append(Launch(step, int(threads.get(step, 1))))
            else:
                break
            waiting.remove(step)
            progressed = True
    return Decision(tuple(skip), tuple(start))
