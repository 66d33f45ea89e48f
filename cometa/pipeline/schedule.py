"""Which steps of a run start next: a pure function of the step graph and what has happened so far.

Longest chain first: a step's priority is the estimated work on the longest path from it to the
end of the run (:func:`chain_lengths`), so that the slow strategy (Co-Meta's second-order steps)
starts early and the others fill the free slots beside it, instead of running alone at the end.
:func:`next_steps` then walks the waiting steps in that order: a step whose dependencies are done
is skipped when it is already complete on disk, else started while slots are free, with its share
of the cores. After a failure nothing new starts (the running steps finish).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

__all__ = ["Launch", "Decision", "chain_lengths", "by_priority", "next_steps"]


@dataclass(frozen=True)
class Launch:
    step: str
    threads: int  # torch/faiss threads of its kernel: cores // steps that can run now (at most jobs)


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


def next_steps(pending: Sequence[str], depends: Mapping[str, Sequence[str]], *, done: Set[str],
               failed: Set[str], complete: Set[str], running: int, free_slots: int, jobs: int,
               cores: int) -> Decision:
    """What to do now.

    Parameters
    ----------
    pending : the steps neither started nor finished, in priority order (:func:`by_priority`).
    depends : every planned step -> the steps it waits for (those not planned count as done).
    done : finished steps (ran or skipped); ``failed``: steps that failed (then nothing starts).
    complete : steps whose done-marker matches their inputs: skipped once their dependencies are done.
    running, free_slots : steps running now, and how many more may start (``jobs`` at once in all).
    cores : CPU cores shared by the kernels: a step starts with ``cores // min(jobs, n)`` threads,
        ``n`` being the running steps plus those that could start now.
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
                runnable = running + len(start) + 1 + sum(ready(s) for s in waiting if s != step)
                start.append(Launch(step, max(1, cores // min(jobs, runnable))))
            else:
                break
            waiting.remove(step)
            progressed = True
    return Decision(tuple(skip), tuple(start))
