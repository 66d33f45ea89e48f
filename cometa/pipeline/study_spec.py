"""A study as code: the spec (a YAML file, or ``--sweep`` on the command line) and its cells.

A spec declares one comparison::

    name: tau
    preset: demo
    strategies: [coteaching_plus, cometa]
    seeds: [0, 1, 2]
    set: {stage2.rounds: 3}                 # every cell
    axes: {stage2.tau: [0.1, 0.2, 0.4]}     # the cartesian product over the axes
    variants:                               # optional named override sets, crossed with the axes
      second_order: {}
      first_order: {stage2.second_order: false}

A variant is either a mapping of overrides, or ``{set: {...}, axes: {...}}``, whose axes are crossed
with that variant alone (how a grid that is not a full product is written). A cell is one variant and
one value per axis; its name reads like ``first_order,tau=0.4`` (the variant, then each axis by the
last part of its key, the whole key where two axes end alike). :func:`study_cells` expands a spec;
every cell's configuration is resolved here, so a bad key or value is refused before anything runs,
with the spec's file and the cell named.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cometa.config import PRESETS, Config, ConfigError, load_config, parse_override
from cometa.config.sections import STRATEGY_NAMES

__all__ = ["StudySpec", "Cell", "load_spec", "spec_from_args", "parse_sweep", "study_cells", "cell_config",
           "fmt_value"]

_TOP_KEYS = ("name", "description", "preset", "strategies", "seeds", "set", "axes", "variants")
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass
class StudySpec:
    """One comparison: a preset, settings shared by every cell, axes, variants, strategies and seeds."""

    name: str
    preset: str = "demo"
    strategies: list[str] | None = None  # None: the preset's (the paper's three)
    seeds: list[int] = field(default_factory=lambda: [0])
    set: dict[str, Any] = field(default_factory=dict)  # dotted key -> value, every cell
    axes: dict[str, list[Any]] = field(default_factory=dict)  # dotted key -> values, crossed
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"set": {...}, "axes": {...}}
    description: str = ""
    source: str = "<command line>"  # the spec's file, for error messages

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (what ``study.json`` and the report's provenance keep)."""
        return {"name": self.name, "description": self.description, "preset": self.preset,
                "strategies": self.strategies, "seeds": list(self.seeds), "set": dict(self.set),
                "axes": {k: list(v) for k, v in self.axes.items()},
                "variants": {k: {"set": dict(v["set"]), "axes": {a: list(x) for a, x in v["axes"].items()}}
                             for k, v in self.variants.items()}}


@dataclass(frozen=True)
class Cell:
    """One cell of a study: a variant (None without variants) and one value per axis."""

    name: str  # e.g. "first_order,tau=0.4"; the cell's directory under the study
    variant: str | None
    values: dict[str, Any]  # axis key -> this cell's value
    overrides: dict[str, Any]  # everything the cell sets: spec.set <- variant set <- axis values


def _flatten(d: Mapping[str, Any], source: str, where: str, prefix: str = "") -> dict[str, Any]:
    """``{stage2: {tau: 0.2}}`` and ``{stage2.tau: 0.2}`` alike -> ``{"stage2.tau": 0.2}``."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{source}: '{where}' must be a mapping of config keys, got {d!r}")
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, source, where, prefix=f"{key}."))
        else:
            out[key] = v
    return out


def _axes(d: Any, source: str, where: str) -> dict[str, list[Any]]:
    if d is None:
        return {}
    if not isinstance(d, Mapping):
        raise ConfigError(f"{source}: '{where}' must map config keys to lists of values, got {d!r}")
    out = {}
    for k, v in d.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{source}: '{where}.{k}' must be a non-empty list of values, got {v!r}")
        if len({repr(x) for x in v}) != len(v):
            raise ConfigError(f"{source}: '{where}.{k}' repeats a value: {v!r}")
        out[str(k)] = list(v)
    return out


def _variant(name: str, d: Any, source: str) -> dict[str, Any]:
    """A variant's ``{"set": ..., "axes": ...}``: written as plain overrides, or with set/axes of its own."""
    where = f"variants.{name}"
    if d is None:
        d = {}
    if not isinstance(d, Mapping):
        raise ConfigError(f"{source}: '{where}' must be a mapping (overrides, or set/axes), got {d!r}")
    if d and set(d) <= {"set", "axes"}:
        return {"set": _flatten(d.get("set") or {}, source, f"{where}.set"),
                "axes": _axes(d.get("axes"), source, f"{where}.axes")}
    return {"set": _flatten(d, source, where), "axes": {}}


def _seeds(v: Any, source: str) -> list[int]:
    seeds = v if isinstance(v, list) else [v]
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"{source}: 'seeds' must be a list of integers >= 0, got {v!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{source}: 'seeds' repeats a seed: {v!r}")
    return list(seeds)


def _strategies(v: Any, source: str) -> list[str] | None:
    if v is None:
        return None
    names = v.split(",") if isinstance(v, str) else v
    if not isinstance(names, list) or not names:
        raise ConfigError(f"{source}: 'strategies' must be a list of strategy names, got {v!r}")
    names = [str(n).strip() for n in names]
    if names == ["all"]:
        return list(STRATEGY_NAMES)
    unknown = [n for n in names if n not in STRATEGY_NAMES]
    if unknown:
        raise ConfigError(f"{source}: 'strategies': unknown strategy {unknown[0]!r}; "
                          f"choose from {', '.join(STRATEGY_NAMES)}")
    return names


def spec_from_dict(data: Any, *, source: str) -> StudySpec:
    """A spec from plain data (a YAML file's contents), checked key by key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a study spec must be a mapping with name, preset, axes, ...")
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise ConfigError(f"{source}: unknown key '{unknown[0]}' (a spec has {', '.join(_TOP_KEYS)})")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{source}: 'name' must be a word of letters, digits, '_', '-' or '.', got {name!r}")
    preset = data.get("preset", "demo")
    if preset not in PRESETS:
        raise ConfigError(f"{source}: 'preset': unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    variants = data.get("variants") or {}
    if not isinstance(variants, Mapping):
        raise ConfigError(f"{source}: 'variants' must map variant names to overrides, got {variants!r}")
    for v in variants:
        if not _NAME.fullmatch(str(v)) or "=" in str(v):
            raise ConfigError(f"{source}: variant name {v!r}: use letters, digits, '_', '-' or '.'")
    return StudySpec(name=name, preset=str(preset), strategies=_strategies(data.get("strategies"), source),
                     seeds=_seeds(data.get("seeds", [0]), source),
                     set=_flatten(data.get("set") or {}, source, "set"),
                     axes=_axes(data.get("axes"), source, "axes"),
                     variants={str(k): _variant(str(k), v, source) for k, v in variants.items()},
                     description=str(data.get("description") or ""), source=source)


def load_spec(path: str | Path) -> StudySpec:
    """Read a spec file (``reports/studies/<name>.yaml``); ConfigError names the file and the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"study spec not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return spec_from_dict(data, source=str(path))


def _split_values(text: str) -> list[str]:
    """``0.1,0.2,[a,b]`` -> ``["0.1", "0.2", "[a,b]"]``: commas inside brackets stay."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """``--sweep stage2.tau=0.1,0.2,0.4`` -> ``("stage2.tau", [0.1, 0.2, 0.4])`` (Hydra's multirun
    convention: the values comma separated, each read as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise ConfigError(f"--sweep {text!r}: expected key=value1,value2,...")
    try:
        values = [yaml.safe_load(v) for v in _split_values(raw)]
    except yaml.YAMLError as e:
        raise ConfigError(f"--sweep {text!r}: {e}") from None
    if any(v is None for v in values):
        raise ConfigError(f"--sweep {text!r}: an empty value")
    return key.strip(), values


def spec_from_args(*, name: str | None, preset: str, sweeps: list[str], overrides: list[str],
                   strategies: list[str] | None, seeds: list[int] | None) -> StudySpec:
    """The spec ``cometa study --preset P --sweep K=V1,V2 ... --set K=V`` declares (one axis per
    ``--sweep``, no variants)."""

    axes: dict[str, list[Any]] = {}
    for s in sweeps:
        key, values = parse_sweep(s)
        if key in axes:
            raise ConfigError(f"--sweep {key}: given twice")
        axes[key] = values
    data: dict[str, Any] = {"name": name or "_".join(k.rsplit(".", 1)[-1] for k in axes) or "study",
                            "preset": preset, "set": dict(parse_override(o) for o in overrides), "axes": axes}
    if strategies:
        data["strategies"] = strategies
    if seeds is not None:
        data["seeds"] = seeds
    return spec_from_dict(data, source="the command line")


def fmt_value(v: Any) -> str:
    """A value as it reads in a cell's name: ``0.4``, ``true``, ``audio_nearest``, ``a+b`` for a list."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return "+".join(fmt_value(x) for x in v)
    return str(v).replace("/", "_").replace(",", "+")


def _short_names(keys: list[str]) -> dict[str, str]:
    """Each axis by the last part of its key (``tau``), or the whole key where two end alike."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def study_cells(spec: StudySpec) -> list[Cell]:
    """Every cell of ``spec``, in order: variants as written, then the axes' product (last axis fastest)."""
    variants: dict[str | None, dict[str, Any]] = {None: {"set": {}, "axes": {}}}
    if spec.variants:
        variants = {name: v for name, v in spec.variants.items()}
    all_keys = list(dict.fromkeys([*spec.axes, *(k for v in variants.values() for k in v["axes"])]))
    short = _short_names(all_keys)
    cells: list[Cell] = []
    for vname, v in variants.items():
        clash = [k for k in v["axes"] if k in spec.axes]
        if clash:
            raise ConfigError(f"{spec.source}: 'variants.{vname}.axes.{clash[0]}' is an axis of the whole spec too")
        axes = {**spec.axes, **v["axes"]}
        for combo in itertools.product(*axes.values()):
            values = dict(zip(axes, combo))
            parts = ([vname] if vname is not None else []) + [f"{short[k]}={fmt_value(x)}" for k, x in values.items()]
            cells.append(Cell(name=",".join(parts) or "base", variant=vname, values=values,
                              overrides={**spec.set, **v["set"], **values}))
    names = [c.name for c in cells]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"{spec.source}: two cells are both named {dup!r}; make the variants' values differ")
    return cells


def cell_config(spec: StudySpec, cell: Cell, seed: int) -> Config:
    """The resolved configuration of one cell and seed; ConfigError names the spec, the cell and the key."""
    if "seed" in cell.overrides:
        raise ConfigError(f"{spec.source}: cell {cell.name!r} sets 'seed': the spec's 'seeds' list sets it")
    try:
        cfg = load_config(spec.preset, overrides={**cell.overrides, "seed": int(seed)})
    except ConfigError as e:
        msg = str(e).replace("--set: ", "")
        raise ConfigError(f"{spec.source}: cell {cell.name!r}: {msg}") from None
    if spec.strategies:
        cfg.stage2.strategies = list(spec.strategies)
    return cfg
