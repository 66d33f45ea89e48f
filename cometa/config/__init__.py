"""Strict, typed configuration: dataclasses loaded from YAML and the presets `tiny`, `demo`, `paper`.

The sections' dataclasses are plain data in :mod:`cometa.config.sections` (each re-exported by the
module it configures: ``FeatureConfig`` by ``cometa.models.features``, ``Stage2Config`` by
``cometa.train.stage2`` ...), so this package imports no torch. It composes them into
:class:`Config` and loads them strictly: an unknown key, or a value of the wrong type, raises
:class:`ConfigError` naming the key (as a dotted path) and the file it came from.

Resolution order: dataclass defaults (the paper's values) <- preset YAML <- user YAML file
<- ``--set key=value`` overrides.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cometa.config.bounds import bounded, check_bounds
from cometa.config.sections import (
    AugmentConfig,
    ClusteringConfig,
    CorpusConfig,
    EcapaConfig,
    EvalConfig,
    EvaluationConfig,
    FeatureConfig,
    LRScheduleConfig,
    ProjectionConfig,
    ReportConfig,
    ResNetConfig,
    Stage1Config,
    Stage2Config,
    SyntheticConfig,
)

__all__ = ["Config", "ConfigError", "load_config", "apply_overrides", "config_from_dict", "load_run_config",
           "parse_override", "check_setting", "file_preset", "field_type", "DEFAULT_PRESET", "PRESETS", "PRESET_DIR",
           "AugmentConfig", "ClusteringConfig", "CorpusConfig",
           "EcapaConfig", "EvalConfig", "FeatureConfig", "LRScheduleConfig", "ProjectionConfig", "ReportConfig",
           "ResNetConfig", "Stage1Config", "Stage2Config", "SyntheticConfig"]

PRESET_DIR = Path(__file__).parent / "presets"
PRESETS = ("tiny", "demo", "paper")
DEFAULT_PRESET = "demo"  # what the command line runs when neither --preset nor the --config file names one


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key and its source."""


@dataclass
class Config:
    """The whole study's configuration (one per run directory)."""

    preset: str = "paper"
    seed: int = bounded(0, ge=0)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    nproc_per_node: int = bounded(1, ge=1)  # > 1 launches torchrun (DDP) for the training steps
    jobs: int = bounded(1, ge=1)  # pipeline steps run at once (independent strategies' rounds share the cores)
    cores: int = bounded(0, ge=0)  # CPU cores the steps share (0 = this machine's); fixes each step's threads
    num_workers: int = bounded(0, ge=0)  # DataLoader workers (0 = load in the training process)
    cache_data: bool = True  # keep decoded audio and face frames in memory (embedded corpora)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    audio_encoder: EcapaConfig = field(default_factory=EcapaConfig)
    visual_encoder: ResNetConfig = field(default_factory=ResNetConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    eval: EvalConfig = field(default_factory=EvalConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)  # AS-norm, label issues
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    report: ReportConfig = field(default_factory=ReportConfig)  # the report step's static figures

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON serialisable)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def section_hash(self, *sections: str) -> str:
        """A short stable hash of the named sections (for resume: a step reruns when its inputs change)."""
        d = self.to_dict()
        payload = json.dumps({s: d[s] for s in sections}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# strict conversion from plain dicts


def _check_value(tp: Any, value: Any, key: str, source: str) -> Any:
    """Convert ``value`` to annotation ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {type(value).__name__}")
        return _from_dict(tp, value, key, source)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(a, value, key, source)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{source}: bad value for '{key}'")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{source}: '{key}' must have {len(args)} items, got {len(value)}")
            return tuple(_check_value(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        items = [_check_value(inner, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: '{key}' must be true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: '{key}' must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{source}: '{key}' must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}")
    return value


def _from_dict(cls: Any, data: dict[str, Any], prefix: str, source: str, base: Any = None) -> Any:
    """Build dataclass ``cls`` from ``data`` on top of ``base`` (an instance), strictly."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    obj = base if base is not None else cls()
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            norm = lambda k: str(k).lower().replace("_", "")  # noqa: E731
            close = ([n for n in fields if norm(n) == norm(key)]
                     or difflib.get_close_matches(str(key), list(fields), n=1))
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown config key '{path}'{hint}")
        tp = hints[key]
        current = getattr(obj, key)
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            setattr(obj, key, _from_dict(tp, value, path, source, base=current))
        else:
            setattr(obj, key, _check_value(tp, value, path, source))
    for name, message in check_bounds(obj):
        raise ConfigError(f"{source}: '{prefix + '.' if prefix else ''}{name}' {message}")
    if hasattr(obj, "validate"):
        try:
            obj.validate()
        except ValueError as e:
            raise ConfigError(f"{source}: '{prefix or 'config'}': {e}") from None
    return obj


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``a.b.c=value`` (value read as YAML: numbers, booleans, lists).

    A list-valued key also takes the command line's comma form, as ``--strategies`` does:
    ``stage2.strategies=baseline,cometa`` is ``[baseline, cometa]`` (each item read as YAML).
    """
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML") from None
    if isinstance(value, str) and "," in value and _is_list_type(field_type(key)):
        value = [yaml.safe_load(item) for item in value.split(",") if item.strip()]
    return key, value


def field_type(key: str) -> Any:
    """The annotation of the config field a dotted key names (``stage2.strategies`` -> ``list[str]``);
    None when the key names no field (the strict loader then says so, naming the key)."""
    tp: Any = Config
    for part in key.split("."):
        if not dataclasses.is_dataclass(tp):
            return None
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return tp


def _is_list_type(tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_is_list_type(a) for a in typing.get_args(tp))
    return typing.get_origin(tp) in (list, tuple)


def _nest(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cur = out
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def load_config(
    preset: str | None = "tiny",
    *,
    path: str | Path | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> Config:
    """Resolve a configuration: defaults <- preset <- YAML file <- overrides.

    Parameters
    ----------
    preset : one of ``tiny``, ``demo``, ``paper`` (or None for the bare defaults).
    path : a user YAML file; it may itself name ``preset:`` when ``preset`` is None.
    overrides : ``{"stage2.tau": 0.3}`` or ``["stage2.tau=0.3"]``.
    """
    user = _read_yaml(Path(path)) if path is not None else {}
    if preset and user.get("preset") and user["preset"] != preset:
        raise ConfigError(f"--preset {preset} and {path}'s 'preset: {user['preset']}' differ: name one preset "
                          "(drop --preset to use the file's, or change the file)")
    preset = preset or user.get("preset")
    cfg = Config()
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
        ppath = PRESET_DIR / f"{preset}.yaml"
        cfg = _from_dict(Config, _read_yaml(ppath), "", str(ppath), base=cfg)
        cfg.preset = preset
    if user:
        cfg = _from_dict(Config, user, "", str(path), base=cfg)
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: dict[str, Any] | list[str] | None, *, source: str = "--set") -> Config:
    """``cfg`` with ``overrides`` (``{"stage2.tau": 0.3}`` or ``["stage2.tau=0.3"]``) applied strictly:
    an unknown key or a mistyped value raises :class:`ConfigError` naming it (and ``source``, the
    option it came from)."""
    if overrides:
        items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
        for key, value in items:
            cfg = _from_dict(Config, _nest(key, value), "", source, base=cfg)
    return cfg


def check_setting(key: str, value: Any, *, source: str) -> Any:
    """``value`` if the config field ``key`` admits it (type and bounds), else :class:`ConfigError` naming
    ``source`` and the key: how a command-line number that sets no config value (``--jobs``, ``--seeds``)
    meets the same bounds as ``--set``."""
    apply_overrides(Config(), {key: value}, source=source)
    return value


def file_preset(path: str | Path | None) -> str | None:
    """The ``preset:`` a user YAML file names (None when it names none, or there is no file)."""
    if path is None:
        return None
    preset = _read_yaml(Path(path)).get("preset")
    return str(preset) if preset is not None else None


def config_from_dict(data: dict[str, Any], *, source: str = "<dict>") -> Config:
    """Rebuild a Config from ``Config.to_dict()`` output (e.g. a run's config.yaml), strictly."""
    return _from_dict(Config, data, "", source)


def load_run_config(path: str | Path) -> Config:
    """Load the resolved ``config.yaml`` written into a run directory."""
    path = Path(path)
    data = _read_yaml(path)
    data.pop("git_sha", None)
    data.pop("runtime", None)  # recorded decisions about the machine (RunStore.write_config), not settings
    return config_from_dict(data, source=str(path))
