"""Allowed ranges of config values, declared beside each field and checked when a config loads.

A config dataclass declares a bounded field with :func:`bounded`::

    tau: float = bounded(0.2, ge=0, lt=1)   # estimated noise rate τ ∈ [0, 1)

and :func:`cometa.config.load_config` refuses a value outside the range with an error that names
the key (``'stage2.tau' must be in [0, 1), got 1.5``). Plain data, no torch.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Bounds", "bounded", "check_bounds"]


@dataclass(frozen=True)
class Bounds:
    """Inclusive (``ge``, ``le``) or exclusive (``gt``, ``lt``) limits, or a set of ``choices``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + "|".join(str(c) for c in self.choices)
        lo = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None else "(-inf"
        hi = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})" if self.lt is not None else "inf)"
        if self.ge is not None and self.le is None and self.lt is None:
            return f">= {self.ge:g}"
        if self.gt is not None and self.le is None and self.lt is None:
            return f"> {self.gt:g}"
        return f"in {lo}, {hi}"

    def admits(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, choices: tuple | None = None) -> Any:
    """A dataclass field with ``default`` whose values must lie within the given limits."""
    return field(default=default, metadata={"bounds": Bounds(ge, gt, le, lt, choices)})


def check_bounds(obj: Any) -> list[tuple[str, str]]:
    """``[(field name, message)]`` for every bounded field of dataclass ``obj`` whose value is out of range."""
    bad = []
    for f in dataclasses.fields(obj):
        b = f.metadata.get("bounds")
        value = getattr(obj, f.name)
        if b is not None and not b.admits(value):
            bad.append((f.name, f"must be {b.describe()}, got {value!r}"))
    return bad
