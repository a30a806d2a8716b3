"""Prometheus metrics of one daemon: its own registry, the snapshot collector, the histograms.

The counters and gauges the components already keep are read from the daemon's snapshot at
scrape time (`SnapshotCollector`, see the `Component.snapshot()` contract in `trader.ports`):
`trader_<component>_<key>` (a counter gets `_total`), per-product figures as
`trader_<component>_product_<key>{product=...}`. Latencies are histograms the parts observe
through callbacks handed to their constructors (`daemon.parts`). A registry per daemon, never
the global default one, so several daemons can run in one process (tests).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from trader.config import interval_name
from trader.types import Order, OrderStatus

Snapshot = dict[str, Any]
Family = CounterMetricFamily | GaugeMetricFamily

DAEMON_STATES = ("starting", "running", "stopping")
# Counter keys that hold a level, not a count: exported as gauges (so are keys with a unit
# suffix in GAUGE_SUFFIXES: rates, ages, money).
GAUGE_KEYS = frozenset({
    "open_orders", "positions", "working", "fees", "trading_state", "loss_streak",
    "backlog_rows", "buffered_rows", "spill_files", "version", "products", "minutes_held",
    "unknown", "foreign_orders", "user_channel_connected"})
GAUGE_SUFFIXES = ("_per_s", "_s", "_usd", "_pnl", "_bytes")
# Counters a component starts keeping when they first happen: exported as 0 until then, so a
# series (and a dashboard's rate()) exists from the start.
COUNTED_FROM_ZERO = {
    "feed": ("bad_frames", "sequence_gaps", "stale_frames", "server_errors", "disconnects",
             "stale_reconnects", "connect_errors"),
    "trading": ("fills", "refused", "rejected", "reprices", "fallbacks", "cancels"),
    "risk": ("entries_allowed", "entries_denied", "breaker_trips", "kills", "cooldowns"),
}
# Counter families whose last part is a bounded name: one series per name, as a label.
# (component, key prefix) -> (metric key, label)
LABELLED = {
    ("strategies", "signals_"): ("signals_by_action", "action"),
    ("trading", "intents_"): ("intents_by_kind", "kind"),
    ("trading", "error_"): ("execution_errors", "kind"),
    ("risk", "denied_"): ("entries_denied_by_limit", "limit"),
    ("risk", "entered_"): ("state_entries", "state"),
    ("risk", "errors_"): ("errors", "kind"),
    ("storage", "rows_written_"): ("rows_written", "table"),
    ("storage", "rows_per_s_"): ("rows_per_s", "table"),
}
HELP = {
    "frames": "websocket frames read",
    "trades": "trades received",
    "bad_frames": "malformed frames counted and skipped",
    "connections": "websocket connections opened",
    "sequence_gaps": "jumps in the feed's sequence_num (minutes repaired from REST)",
    "frames_per_s": "frames per second over the last seconds",
    "last_frame_age_s": "seconds since the last frame",
    "minutes_closed": "1-minute candles closed from trades and heartbeats",
    "minutes_repaired": "1-minute candles repaired from REST",
    "intents": "order intents recorded",
    "fills": "fills applied",
    "open_orders": "orders working at the exchange",
    "positions": "products held",
    "realized_pnl": "realized profit and loss of the session, USD, before fees",
    "unrealized_pnl": "unrealized profit and loss of what is held, USD",
    "net_pnl": "realized plus unrealized profit and loss minus fees, USD",
    "fees": "fees paid in the session, USD",
    "refused": "decisions that made no order (no quote, not ready, money rules, risk)",
    "reprices": "resting orders cancelled to go out again at a new price",
    "fallbacks": "resting orders that fell back to market after the last reprice",
    "stale_frames": "frames at or below the last sequence_num, dropped",
    "disconnects": "websocket sessions that ended",
    "breaker_trips": "error breaker halts",
    "kills": "kill switch activations",
    "rejected": "orders rejected or failed at the exchange",
    "trading_state": "risk state: 0 active, 1 reducing (exits only), 2 halted",
    "daily_pnl_usd": "net profit and loss since the start of the UTC day, USD",
    "exposure_usd": "value of what is held, USD",
    "loss_streak": "losing trades in a row",
    "entries_allowed": "entries the risk checks allowed",
    "entries_denied": "entries the risk checks denied",
    "backlog_rows": "rows waiting for the database, buffered or spilled",
    "buffered_rows": "rows buffered in memory",
    "spill_files": "spill files waiting for replay",
    "spilled_rows": "rows spilled to disk during an outage",
    "flush_failures": "batch commits that failed (an outage)",
    "requests": "requests served",
    "version": "config version (1 at start, +1 per applied reload)",
    "equity_usd": "account equity, USD",
    "ready": "1 once the execution has reconciled with the exchange",
    "connected": "1 while connected",
    "close": "last 1-minute close",
    "position_size": "size held, base currency",
    "entry_price": "average entry price of what is held",
    "rank": "selector rank (1 is best)",
    "score": "selector score",
}

BAR_CLOSE_BUCKETS_S = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5)
ORDER_BUCKETS_S = (.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1.0)
FLUSH_BUCKETS_S = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0)
REST_BUCKETS_S = (.005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0, 30.0)
# REST paths with an id in them, named by their template so the label stays bounded
_REST_TEMPLATES = (
    (re.compile(r"^/market/products/[^/]+"), "/market/products/{product_id}"),
    (re.compile(r"^/orders/historical/(?!batch$|fills$)[^/]+$"), "/orders/historical/{order_id}"),
)


class Metrics:
    """One daemon's registry: the snapshot collector, process figures and the histograms."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(snapshot))
        ProcessCollector(registry=self.registry)  # process_* (memory, CPU, open files)
        self.bar_close = Histogram(
            "trader_bar_close_seconds", "time Engine.on_bar took for one bar close of all "
            "products (selector, strategies, trading, bar sinks)", ["interval"],
            buckets=BAR_CLOSE_BUCKETS_S, registry=self.registry)
        self.frame_to_order = Histogram(
            "trader_frame_to_order_seconds", "from a market frame's receipt to the order "
            "intent it caused (synchronous: parse, candles, strategies, risk, order rules)",
            ["strategy", "kind"], buckets=ORDER_BUCKETS_S, registry=self.registry)
        self.writer_flush = Histogram(
            "trader_writer_flush_seconds", "time one batch commit to the database took",
            ["table"], buckets=FLUSH_BUCKETS_S, registry=self.registry)
        self.rest_request = Histogram(
            "trader_rest_request_seconds", "time one Coinbase REST request attempt took "
            "(pacing and retry backoff excluded)", ["method", "endpoint"],
            buckets=REST_BUCKETS_S, registry=self.registry)
        self.frame_timer = FrameToOrder(self.frame_to_order)

    def observe_bar_close(self, interval_s: int, seconds: float) -> None:
        self.bar_close.labels(interval_name(interval_s)).observe(seconds)

    def observe_flush(self, table: str, seconds: float) -> None:
        self.writer_flush.labels(table).observe(seconds)

    def observe_rest(self, method: str, path: str, seconds: float) -> None:
        self.rest_request.labels(method, rest_endpoint(path)).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of everything, read now."""
        return generate_latest(self.registry)


class FrameToOrder:
    """Times each new order intent from the receipt of the market frame that caused it.

    The feed calls `received()` and `done()` around each frame; the trading core hands every
    order change to `on_order` (an order sink). Between a frame and its intents nothing awaits
    (DESIGN.md section 1), so an intent recorded inside that span was caused by that frame;
    intents made elsewhere (a resend after an exchange update, the kill switch) are not timed.
    """

    def __init__(self, histogram: Histogram,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._histogram = histogram
        self._clock = clock
        self._received_at: float | None = None

    def received(self) -> None:
        self._received_at = self._clock()

    def done(self) -> None:
        self._received_at = None

    def on_order(self, order: Order) -> None:
        """An order sink: a new intent (pending, no update yet) is observed."""
        if (self._received_at is None or order.updated_ns
                or order.status is not OrderStatus.PENDING):
            return
        elapsed = self._clock() - self._received_at
        self._histogram.labels(order.strategy, str(order.kind)).observe(elapsed)


def render_snapshot(snapshot: Snapshot) -> bytes:
    """The exposition of one snapshot alone (no histograms, no process figures)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snapshot))
    return generate_latest(registry)


class SnapshotCollector(Collector):
    """Reads the daemon's snapshot at scrape time and types what the components keep."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        families = _Families()
        snapshot = self._snapshot()
        _daemon_figures(families, snapshot.get("daemon") or {})
        for component, body in (snapshot.get("components") or {}).items():
            families.gauge("trader_component_running", "1 while the component runs",
                           {"component": component}, 0 if body is None else 1)
            if body is not None:
                _component_figures(families, component, body)
        yield from families.all()


class _Families:
    """Metric families by name, filled sample by sample; the first sample of a series wins
    (a figure both at the top of a snapshot and among its counters is exported once)."""

    def __init__(self) -> None:
        self._by_name: dict[str, Family] = {}
        self._seen: set[tuple[str, tuple[str, ...]]] = set()

    def gauge(self, name: str, help_text: str, labels: Mapping[str, str], value: Any) -> None:
        self._add(GaugeMetricFamily, name, help_text, labels, value)

    def counter(self, name: str, help_text: str, labels: Mapping[str, str], value: Any) -> None:
        self._add(CounterMetricFamily, name, help_text, labels, value)

    def _add(self, kind: type[Family], name: str, help_text: str, labels: Mapping[str, str],
             value: Any) -> None:
        number = _number(value)
        series = (name, tuple(labels.values()))
        if number is None or series in self._seen:
            return  # no number: an absent sample says "unknown"
        family = self._by_name.get(name)
        if family is None:
            family = self._by_name[name] = kind(name, help_text, labels=list(labels))
        elif not isinstance(family, kind):
            return  # a counter and a gauge of one name: the first kept
        self._seen.add(series)
        family.add_metric(list(labels.values()), number)

    def all(self) -> Iterator[Family]:
        return iter(self._by_name.values())


def _daemon_figures(families: _Families, daemon: Snapshot) -> None:
    families.gauge("trader_info", "the daemon's version and mode (always 1)",
                   {"version": str(daemon.get("version", "")),
                    "mode": str(daemon.get("mode", ""))}, 1)
    families.gauge("trader_uptime_seconds", "seconds since the daemon started", {},
                   daemon.get("uptime_s"))
    state = daemon.get("state")
    for name in DAEMON_STATES:
        families.gauge("trader_daemon_state", "1 for the daemon's lifecycle state",
                       {"state": name}, int(state == name))


def _component_figures(families: _Families, component: str, body: Snapshot) -> None:
    for key, value in body.items():
        if isinstance(value, bool | int | float):  # connected, ready, equity_usd, ...
            families.gauge(metric_name(component, key), _help(component, key), {}, value)
    counters = {**dict.fromkeys(COUNTED_FROM_ZERO.get(component, ()), 0),
                **(body.get("counters") or {})}
    for key, value in counters.items():
        _counter_figure(families, component, key, value)
    for product, figures in (body.get("products") or {}).items():
        for key, value in figures.items():
            families.gauge(metric_name(component, f"product_{key}"), _help(component, key),
                           {"product": product}, value)


def _counter_figure(families: _Families, component: str, key: str, value: Any) -> None:
    labels: dict[str, str] = {}
    for (owner, prefix), (family_key, label) in LABELLED.items():
        if owner == component and key.startswith(prefix):
            labels = {label: key.removeprefix(prefix)}
            key = family_key
            break
    name, help_text = metric_name(component, key), _help(component, key)
    if key in GAUGE_KEYS or key.endswith(GAUGE_SUFFIXES):
        families.gauge(name, help_text, labels, value)
    else:
        families.counter(name, help_text, labels, value)


def metric_name(component: str, key: str) -> str:
    """`trader_<component>_<key>` in Prometheus's characters and base units (seconds)."""
    if key.endswith("_per_s"):
        key = key.removesuffix("_per_s") + "_per_second"
    elif key.endswith("_s"):
        key = key.removesuffix("_s") + "_seconds"
    return re.sub(r"[^a-zA-Z0-9_]", "_", f"trader_{component}_{key}")


def _help(component: str, key: str) -> str:
    text = HELP.get(key) or key.replace("_per_s", " per second").replace("_", " ")
    return f"{component}: {text} (status snapshot)"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and value == value:  # NaN: no number to report
        return float(value)
    return None



def rest_endpoint(path: str) -> str:
    """A REST path with its ids replaced by their names, e.g. /orders/historical/{order_id}."""
    for pattern, template in _REST_TEMPLATES:
        if pattern.match(path):
            return pattern.sub(template, path, count=1)
    return path
