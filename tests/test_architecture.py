"""The layers hold: no import cycles, each layer imports only the layers before it, the dashboards read
results only, imports inside functions say why, no long functions, a torch-free config and dashboard,
and the public API where it has always been.

The import graph is read from the source (``ast``), imports inside functions included, so it is the
graph of what *may* be imported, not of what one run happened to import.
"""
from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cometa", "dashboards")

# The layers, lowest first (README, "Architecture"). A module may import its own layer and those below.
LAYERS = [
    ("foundation", ["cometa.config", "cometa.runs"]),
    ("data", ["cometa.data"]),
    ("models", ["cometa.models"]),
    ("core", ["cometa.core"]),
    ("evaluation", ["cometa.evaluation"]),
    ("training", ["cometa.train"]),
    ("orchestration", ["cometa.pipeline"]),
    ("results", ["cometa.results"]),
    ("dashboards", ["dashboards"]),
    ("entry points", ["cometa", "cometa.cli", "cometa.__main__"]),  # the command line serves the dashboard
]
# the public API kept where it was before the layers (re-exports of cometa.core and cometa.evaluation)
PUBLIC_SHIMS = {"cometa.metrics": "cometa.evaluation", "cometa.selection": "cometa.core",
                "cometa.schedules": "cometa.core", "cometa.ensemble": "cometa.core",
                "cometa.pseudo_labels": "cometa.core"}
# what the dashboards may import from cometa: the results layer and the foundation
DASHBOARD_MAY_IMPORT = ("cometa.results", "cometa.runs", "cometa.config")
PUBLIC_API = ["cometa.metrics.eer", "cometa.metrics.min_dcf", "cometa.selection.disagreement",
              "cometa.selection.small_loss", "cometa.schedules.keep_ratio", "cometa.ensemble.align",
              "cometa.ensemble.vote", "cometa.pseudo_labels.kmeans", "cometa.data.voxceleb.read_trials",
              "cometa.runs.RunStore", "cometa.open_run", "cometa.open_runs",
              "cometa.evaluation.baselines.baseline_eers"]
MAX_FUNCTION_LINES = 80


def module_files() -> dict[str, Path]:
    """Every module of the packages: dotted name -> file."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _targets(module: str, node: ast.Import | ast.ImportFrom, *, is_package: bool, files: dict[str, Path]) -> set[str]:
    """The modules of the packages an import statement imports: ``import a.b`` imports ``a.b``;
    ``from a import b`` the submodule ``a.b`` when there is one, else ``a``."""

    def known(name: str) -> str | None:  # the longest prefix of ``name`` that is one of our modules
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    if isinstance(node, ast.Import):
        return {t for a in node.names if (t := known(a.name))}
    base = node.module or ""
    if node.level:  # relative: resolved against this module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    out = set()
    for a in node.names:
        full = f"{base}.{a.name}"
        t = full if full in files else known(base)
        if t:
            out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of the packages it imports, at module level or inside functions."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets |= _targets(module, node, is_package=path.name == "__init__.py", files=files)
        graph[module] = targets - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each one a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int:
    """The index in LAYERS of the layer holding ``module`` (the longest matching prefix wins)."""
    module = PUBLIC_SHIMS.get(module, module)
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            inside = module.startswith(p + ".") and p != "cometa"  # the package itself is an entry point
            if (module == p or inside) and len(p) > best:
                best, rank = len(p), i
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS"
    return rank


# ------------------------------------------------------------------------------------ the graph
def test_the_graph_walker_sees_imports_inside_functions_and_relative_ones():
    graph = import_graph()
    assert "cometa.pipeline.ddp" in graph["cometa.pipeline.steps"]  # a module-level import
    assert "cometa.pipeline.dryrun" in graph["cometa.cli"]  # inside a function
    assert "dashboards.app" in graph["cometa.cli"]
    assert {"cometa.core.strategies.base", "cometa.core.strategies.stats"} <= graph["cometa.core.strategies"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_each_layer_imports_only_the_layers_before_it():
    bad = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
           for m, targets in import_graph().items() for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert bad == []


def test_the_dashboards_read_results_only():
    graph = import_graph()
    bad = [f"{m} imports {t}" for m, targets in graph.items() if m.startswith("dashboards")
           for t in targets if t.startswith("cometa") and not t.startswith(DASHBOARD_MAY_IMPORT)]
    assert bad == []


# ------------------------------------------------------------------------------------ the code
def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_every_import_inside_a_function_says_why():
    """A function-level import keeps torch (or another heavy library) out of a light path; the
    comment on its line, or on the line just above its block of imports, says which."""
    missing = []
    for path in module_files().values():
        lines = path.read_text().splitlines()
        for fn in _functions(path):
            for node in ast.walk(fn):
                if not isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                i = node.lineno - 1
                while "#" not in lines[i] and i > fn.lineno and (
                        lines[i - 1].strip().startswith(("import ", "from ")) or not lines[i - 1].strip()):
                    i -= 1
                if "#" not in lines[i] and "#" not in lines[i - 1]:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno} in {fn.name}()")
    assert missing == []


def test_no_function_in_cometa_is_longer_than_80_lines():
    long = []
    for path in sorted((ROOT / "cometa").rglob("*.py")):
        for fn in _functions(path):
            first = min([fn.lineno, *(d.lineno for d in fn.decorator_list)])
            n = fn.end_lineno - first + 1
            if n > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}() has {n} lines")
    assert long == []


def test_nan_checks_use_isnan_not_self_comparison():
    """``x != x`` is true only for NaN, which a reader has to know; ``math.isnan`` says it."""
    found = []
    for pkg in (*PACKAGES, "tests", "bench", "tools"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq | ast.NotEq)
                        and ast.dump(node.left) == ast.dump(node.comparators[0])):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert found == []


# ------------------------------------------------------------------------------ light imports
@pytest.mark.parametrize("module", ["cometa.config", "dashboards.app", "cometa.results.explore",
                                    "cometa.pipeline.run"])
def test_light_modules_load_no_torch(module):
    """The config, the dashboard, the run API and the orchestrator load without torch (a fresh
    interpreter, so nothing else has loaded it already)."""
    code = (f"import json, sys; import {module}; "
            "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_config_dataclasses_are_the_modules_own():
    """Each section's dataclass is one class, re-exported by the module it configures."""
    from cometa.config import sections
    from cometa.core import projections, pseudo_labels, schedules
    from cometa.data import corpus, synthetic
    from cometa.evaluation import evaluate
    from cometa.models import augment, features
    from cometa.models.encoders import ecapa, resnet
    from cometa.train import stage1, stage2

    assert stage2.Stage2Config is sections.Stage2Config and stage1.Stage1Config is sections.Stage1Config
    assert features.FeatureConfig is sections.FeatureConfig and augment.AugmentConfig is sections.AugmentConfig
    assert ecapa.EcapaConfig is sections.EcapaConfig and resnet.ResNetConfig is sections.ResNetConfig
    assert corpus.CorpusConfig is sections.CorpusConfig and synthetic.SyntheticConfig is sections.SyntheticConfig
    assert pseudo_labels.ClusteringConfig is sections.ClusteringConfig
    assert projections.ProjectionConfig is sections.ProjectionConfig
    assert schedules.LRScheduleConfig is sections.LRScheduleConfig and evaluate.EvalConfig is sections.EvalConfig


def test_the_strategy_names_match_the_registry():
    from cometa.config.sections import STRATEGY_NAMES
    from cometa.core.strategies import STRATEGIES

    assert tuple(STRATEGIES) == STRATEGY_NAMES


# ------------------------------------------------------------------------------------ public API
@pytest.mark.parametrize("name", PUBLIC_API)
def test_the_public_api_is_where_it_was(name):
    module, _, attr = name.rpartition(".")
    assert callable(getattr(importlib.import_module(module), attr))


def test_no_shim_sits_in_a_lower_layer_than_what_it_re_exports():
    """A re-export takes the layer of its module's path: cometa.data holds the data layer only (it once
    re-exported the evaluation layer's baselines as cometa.data.baselines)."""
    assert all(not shim.startswith(("cometa.data.", "cometa.models.")) for shim in PUBLIC_SHIMS)
    assert not (ROOT / "cometa" / "data" / "baselines.py").exists()


def test_the_public_api_re_exports_the_layered_modules():
    import cometa.ensemble
    import cometa.metrics
    import cometa.pseudo_labels
    import cometa.schedules
    import cometa.selection
    from cometa.core import ensemble, pseudo_labels, schedules, selection
    from cometa.evaluation import metrics

    for shim, real in ((cometa.metrics, metrics),
                       (cometa.selection, selection), (cometa.schedules, schedules),
                       (cometa.ensemble, ensemble), (cometa.pseudo_labels, pseudo_labels)):
        assert sorted(shim.__all__) == sorted(real.__all__)
        assert all(getattr(shim, n) is getattr(real, n) for n in real.__all__)
