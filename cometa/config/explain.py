"""``cometa config``: the resolved configuration as YAML, each value with where it came from.

A value comes from the dataclass defaults (the paper's values), the preset's YAML, the user's
``--config`` file or a ``--set`` override, the last of these that names it (the order
:func:`cometa.config.load_config` applies them in). :func:`annotated_yaml` prints the resolved
config with that source as a comment on each line; the YAML reads back to the same values.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from cometa.config import PRESET_DIR, Config, _read_yaml, load_config, parse_override

__all__ = ["value_sources", "annotated_yaml", "explain_config"]


def _flatten(data: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of every leaf of nested mappings (``{"a": {"b": 1}}`` -> ``["a.b"]``)."""
    out = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        out += _flatten(value, f"{path}.") if isinstance(value, dict) and value else [path]
    return out


def value_sources(preset: str | None, *, path: str | Path | None = None,
                  overrides: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """The layers a config is resolved from, lowest first: ``[(source, dotted keys it sets)]``.

    Parameters
    ----------
    preset : the preset (None: the file's ``preset:``, if it names one).
    path : the user YAML file.
    overrides : ``["stage2.tau=0.3", ...]`` (``--set``).
    """
    user = _read_yaml(Path(path)) if path is not None else {}
    layers: list[tuple[str, list[str]]] = [("--preset", ["preset"])] if preset else []
    preset = preset or user.get("preset")
    if preset is not None:
        layers.append((f"preset {preset}", _flatten(_read_yaml(PRESET_DIR / f"{preset}.yaml"))))
    if user:
        layers.append((f"file {path}", _flatten(user)))
    for text in overrides or []:
        key, _ = parse_override(text)
        layers.append(("--set", [key]))
    return layers


def _source_of(key: str, layers: list[tuple[str, list[str]]]) -> str:
    """The last layer that sets ``key`` itself, a mapping above it, or a key inside it (a mapping value)."""
    source = "default"
    for name, keys in layers:
        if any(k == key or key.startswith(k + ".") or k.startswith(key + ".") for k in keys):
            source = name
    return source


def _scalar(value: Any) -> str:
    """One value as YAML on one line (lists and mappings in flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def annotated_yaml(cfg: Config, layers: list[tuple[str, list[str]]]) -> str:
    """``cfg`` as YAML, every value followed by ``# <source>`` (:func:`value_sources`'s layers)."""
    lines: list[str] = []

    def walk(data: dict[str, Any], prefix: str, indent: str) -> None:
        for key, value in data.items():
            path = f"{prefix}{key}"
            if _is_section(cfg, path):
                lines.append(f"{indent}{key}:")
                walk(value, f"{path}.", indent + "  ")
            else:
                lines.append(f"{indent}{key}: {_scalar(value)}  # {_source_of(path, layers)}")

    walk(cfg.to_dict(), "", "")
    return "\n".join(lines) + "\n"


def _field(cfg: Config, path: str) -> Any:
    obj: Any = cfg
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _is_section(cfg: Config, path: str) -> bool:
    """True when ``path`` names a nested config dataclass (printed as a block), not a mapping value."""
    return dataclasses.is_dataclass(_field(cfg, path))


def explain_config(preset: str | None, *, path: str | Path | None = None, overrides: list[str] | None = None) -> str:
    """The configuration a run with these arguments would use, as commented YAML (``cometa config``)."""
    cfg = load_config(preset, path=path, overrides=overrides)
    header = (f"# cometa config: preset {cfg.preset}" + (f", file {path}" if path else "")
              + (f", {len(overrides)} --set" if overrides else "") + "\n"
              "# each value's source: default (the paper's value) <- preset <- file <- --set\n")
    return header + annotated_yaml(cfg, value_sources(preset, path=path, overrides=overrides))
