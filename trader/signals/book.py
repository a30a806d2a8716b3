"""The signal book: the latest signal per product, counters, and the sinks signals go to."""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from trader.types import Signal

SignalSink = Callable[[Signal], None]


class SignalBook:
    """What the strategies said last, for the status view; forwards every signal to sinks."""

    name = "strategies"

    def __init__(self, sinks: Sequence[SignalSink] = ()) -> None:
        self.latest: dict[str, Signal] = {}
        self.sinks = tuple(sinks)  # e.g. the store's signals table
        self.counters = collections.Counter[str]()
        self.loaded: dict[str, str] = {}  # strategy name -> interval
        self.errors: list[tuple[str, str]] = []  # of the last (re)load

    def record(self, signals: list[Signal]) -> None:
        for signal in signals:
            self.latest[signal.product_id] = signal
            self.counters["signals"] += 1
            self.counters[f"signals_{signal.action}"] += 1
            for sink in self.sinks:
                sink(signal)

    def set_loaded(self, loaded: Mapping[str, str], errors: list[tuple[str, str]]) -> None:
        self.loaded = dict(loaded)
        self.errors = list(errors)
        self.counters["load_errors"] = len(errors)

    def forget(self, product_id: str) -> None:
        self.latest.pop(product_id, None)

    def snapshot(self) -> dict[str, Any]:
        return {
            "running": ", ".join(f"{n} ({i})" for n, i in self.loaded.items()) or "none",
            "errors": [list(e) for e in self.errors],
            "counters": dict(self.counters),
            "products": {p: {"signal": f"{s.strategy} {s.action} {s.score:+.2f}"}
                         for p, s in self.latest.items()},
        }
