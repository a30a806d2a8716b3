"""The shapes components plug into the app with (stdlib only)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Component(Protocol):
    """A long-lived part of the daemon, run as one named task.

    `run()` loops until cancelled and cleans up in `finally`. `snapshot()` returns its
    counters for the status view: a dict with an optional "counters" mapping of name -> number
    and an optional "products" mapping of product id -> {name: number}; both are exported as
    Prometheus metrics. Anything else in the dict is for display only.
    """

    name: str

    async def run(self) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


@runtime_checkable
class Drains(Protocol):
    """A component with work to finish before it is cancelled at shutdown."""

    async def drain(self) -> None: ...


@runtime_checkable
class Reconfigurable(Protocol):
    """A component that takes the config sections it reads while running.

    `config_sections` names them; `apply_section` receives only a section that changed.
    """

    config_sections: tuple[str, ...]

    def apply_section(self, name: str, section: Any) -> None: ...
