"""Imports point down only (DESIGN.md section 2); low layers keep to their allowed packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

LAYERS = {
    0: {"trader.types", "trader.money", "trader.clock", "trader.errors", "trader.ports",
        "trader.config", "trader.log", "trader.backoff", "trader.durable"},
    1: {"trader.kernels"},
    2: {"trader.engine", "trader.market", "trader.signals", "trader.trading", "trader.strategy"},
    3: {"trader.coinbase", "trader.execution", "trader.store", "trader.research",
        "trader.simulator"},
    4: {"trader.cli", "trader.__main__", "trader.daemon"},
}
# Third-party packages each layer may use; None: any.
# llvmlite is numba's own code generator (explicit FMA intrinsics).
ALLOWED_PACKAGES = {0: set(), 1: {"numpy", "numba", "llvmlite"},
                    2: {"numpy", "numba", "llvmlite"}, 3: None, 4: None}
STRATEGY_IMPORTS = ("trader.strategy", "trader.types", "trader.kernels")
FORBIDDEN_IN_L2 = {"asyncio", "aiohttp", "asyncpg", "socket", "subprocess"}  # sync, no I/O


def layer_of(module: str) -> int:
    """The layer of a trader module: the longest matching prefix in LAYERS."""
    if module == "trader" or (module.startswith("trader.__") and module != "trader.__main__"):
        return 0  # the package itself and its dunders (__version__)
    best: tuple[int, int] | None = None
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), layer)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and DESIGN.md")
    return best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> list[str]:
    """Absolute names of every module imported by `source` (relative imports resolved)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [f"{base}.{alias.name}" if base == "trader" else base
                      for alias in node.names]
    return found


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    own = layer_of(module)
    problems = []
    for name in imports_of(source, module, is_package):
        top = name.split(".")[0]
        if top == "trader":
            if layer_of(name) > own:
                problems.append(f"{module} (L{own}) imports {name} (L{layer_of(name)})")
        elif top not in sys.stdlib_module_names:
            allowed = ALLOWED_PACKAGES[own]
            if allowed is not None and top not in allowed:
                problems.append(f"{module} (L{own}) imports third-party {top}")
        elif own == 2 and top in FORBIDDEN_IN_L2:
            problems.append(f"{module} (L2, sync, no I/O) imports {top}")
    return problems


def test_every_trader_module_imports_only_downward():
    problems = []
    for path in sorted((REPO / "trader").rglob("*.py")):
        problems += violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert problems == []


def test_strategies_import_only_the_strategy_api():
    problems = []
    for path in sorted((REPO / "strategies").glob("*.py")):
        for name in imports_of(path.read_text(), f"strategies.{path.stem}", False):
            if name.startswith("trader") and not name.startswith(STRATEGY_IMPORTS):
                problems.append(f"{path.name} imports {name}")
    assert problems == []


def test_the_check_catches_an_upward_import_and_a_forbidden_package():
    assert violations("from trader.daemon.app import Daemon", "trader.config") == [
        "trader.config (L0) imports trader.daemon.app (L4)"]
    assert violations("from trader import daemon", "trader.types") == [
        "trader.types (L0) imports trader.daemon (L4)"]
    assert violations("from ..daemon.status import render_metrics", "trader.kernels.ring") == [
        "trader.kernels.ring (L1) imports trader.daemon.status (L4)"]
    assert violations("import orjson", "trader.config") == [
        "trader.config (L0) imports third-party orjson"]
    assert violations("import asyncio", "trader.market.candles") == [
        "trader.market.candles (L2, sync, no I/O) imports asyncio"]
    assert violations("import numpy\nfrom trader.config import parse", "trader.kernels.ring") == []


def test_a_module_missing_from_the_layer_map_is_an_error():
    try:
        layer_of("trader.brand_new")
    except AssertionError as exc:
        assert "add it to LAYERS" in str(exc)
    else:
        raise AssertionError("an unmapped module was given a layer")


def test_the_rest_client_and_the_backfill_command_load_no_numba():
    """Parsing and fetching need no compiled kernels: `trader backfill` starts light."""
    check = ("import sys, trader.coinbase.rest, trader.store.backfill.run; "
             "print(sorted(m for m in ('numba', 'llvmlite') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          cwd=REPO, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
