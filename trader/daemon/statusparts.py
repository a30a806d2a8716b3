"""The parts of a status frame drawn from the daemon's snapshot: the snapshot's view, the
header, equity (sparkline or chart), health lines, risk limits and recent events (the tables
are in statustables.py)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from trader.daemon.statusfmt import (
    chart,
    compact,
    duration,
    figure,
    money,
    signed,
    sparkline,
    utc_time,
)

KIND_STYLES = {"fill": "green", "order": "cyan", "signal": "blue", "risk": "yellow",
               "reload": "magenta", "feed": "yellow", "trading": "cyan", "daemon": "dim",
               "warning": "yellow", "error": "bold red"}
STATE_STYLES = {"active": "green", "reducing": "yellow", "halted": "bold red"}
FEED_SILENT_S = 5.0  # no frame for this long: the header says so (heartbeats come each second)
STATE_PRIORITY = 1  # of the trading state in the header (a piece with no equal in priority)


class View:
    """The parts of a snapshot the sections read, with defaults for what is absent."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.daemon: dict[str, Any] = snapshot.get("daemon") or {}
        self.config: dict[str, Any] = snapshot.get("config") or {}
        self.components: dict[str, Any] = snapshot.get("components") or {}
        session = snapshot.get("session") or {}
        self.events: list[dict[str, Any]] = session.get("events") or []
        self.equity: dict[str, Any] = session.get("equity") or {}
        self.positions: list[dict[str, Any]] = session.get("positions") or []
        self.orders: list[dict[str, Any]] = session.get("open_orders") or []
        self.increments: dict[str, str] = session.get("price_increments") or {}
        self.products = self._products(snapshot.get("products") or [])

    def component(self, name: str) -> dict[str, Any] | None:
        return self.components.get(name)

    def counters(self, name: str) -> dict[str, Any]:
        return (self.components.get(name) or {}).get("counters") or {}

    def _products(self, names: list[str]) -> list[dict[str, Any]]:
        """One row per product, the figures of every component merged, best rank first."""
        rows = {name: {"product_id": name} for name in names}
        for component in ("market", "selector", "strategies", "trading"):
            products = (self.components.get(component) or {}).get("products") or {}
            for product, figures in products.items():
                rows.setdefault(product, {"product_id": product}).update(figures)
        order = {name: i for i, name in enumerate(rows)}
        return sorted(rows.values(), key=lambda r: (r.get("rank") or math.inf,
                                                    order[r["product_id"]]))


# ---- header ---------------------------------------------------------------------------------


def header(view: View, width: int) -> list[Text]:
    """The header line (mode, state and reason, uptime, config, feed health), then any
    rejected-config and restart lines."""
    pieces = _header_pieces(view)
    kept = sorted(pieces, key=lambda p: p[0])
    while len(kept) > 1 and _joined_length(kept) > width:
        kept.remove(max(kept, key=lambda p: p[0]))
    lines = _reason(view, kept, width - _joined_length(kept))
    line = Text(no_wrap=True, overflow="ellipsis")
    for i, (_, piece) in enumerate(sorted(kept, key=lambda p: pieces.index(p))):
        line.append("  " if i else "")
        line.append_text(piece)
    return [line, *lines, *_reload_lines(view.config)]


def _reason(view: View, kept: list[tuple[int, Text]], room: int) -> list[Text]:
    """The trading state's reason after the state in the header if it fits there in full,
    else on a line of its own; the lines to add."""
    trading = view.component("trading") or {}
    reason = trading.get("reason") or ""
    state = next((text for priority, text in kept if priority == STATE_PRIORITY), None)
    if not reason or state is None:
        return []
    if room >= len(reason) + 2:
        state.append(f": {reason}")
    else:
        return [Text(f"{trading.get('state')}: {reason}",
                     style=STATE_STYLES.get(str(trading.get("state")), "yellow"),
                     no_wrap=True, overflow="ellipsis")]
    return []


def _header_pieces(view: View) -> list[tuple[int, Text]]:
    """(priority, text) in display order; the highest priorities go first when narrow."""
    daemon, config = view.daemon, view.config
    state = daemon.get("state", "?")
    pieces = [(0, Text(f"trader {daemon.get('version', '?')}", style="bold")),
              (0, Text(str(daemon.get("mode", "?")), style="bold magenta")),
              (0, Text(state, style="bold green" if state == "running" else "bold yellow"))]
    trading = view.component("trading")
    if trading is not None:
        risk_state = str(trading.get("state", "?"))
        pieces.append((STATE_PRIORITY, Text(risk_state,
                                            style=STATE_STYLES.get(risk_state, "yellow"))))
    pieces.append((4, Text(f"up {duration(daemon.get('uptime_s'))}")))
    pieces.append((3, _config_piece(config, daemon.get("now_ns", 0))))
    pieces.append((2, _feed_piece(view)))
    pieces.append((6, Text(f"pid {daemon.get('pid', '?')}", style="dim")))
    rss = daemon.get("rss_bytes")
    pieces.append((5, Text("RSS ?" if rss is None else f"RSS {rss / 2**20:.0f} MiB",
                           style="dim")))
    return pieces


def _joined_length(pieces: list[tuple[int, Text]]) -> int:
    return sum(len(text) for _, text in pieces) + 2 * (len(pieces) - 1)


def _config_piece(config: dict[str, Any], now_ns: int) -> Text:
    text = Text(f"config v{config.get('version', '?')}")
    last = config.get("last_reload")
    if last:
        ago = duration((now_ns - last["at_ns"]) / 1e9)
        text.append(f" ({last['outcome']} {ago} ago)",
                    style="red" if last["outcome"] == "rejected" else "dim")
    return text


def _feed_piece(view: View) -> Text:
    feed = view.component("feed")
    if feed is None:
        return Text("feed not running", style="yellow")
    counters = feed.get("counters") or {}
    age = counters.get("last_frame_age_s")
    if not feed.get("connected"):
        text = Text("feed down", style="bold red")
    elif age is not None and age > FEED_SILENT_S:
        text = Text(f"feed silent {duration(age)}", style="yellow")
    else:
        text = Text(f"feed ok {compact(counters.get('frames_per_s'))}/s", style="green")
    reconnects = max(0, (counters.get("connections") or 0) - 1)
    if reconnects:
        text.append(f" reconnects {reconnects}", style="yellow")
    if counters.get("sequence_gaps"):
        text.append(f" gaps {counters['sequence_gaps']}", style="yellow")
    return text


def _reload_lines(config: dict[str, Any]) -> list[Text]:
    last = config.get("last_reload") or {}
    lines = [Text(f"  {key}: {reason}", style="red") for key, reason in last.get("errors", [])]
    if lines:
        lines.insert(0, Text(f"edit of {config.get('path')} rejected; running on config "
                             f"v{config.get('version')}", style="bold red"))
    if config.get("restart_required"):
        keys = ", ".join(config["restart_required"])
        lines.append(Text(f"changed, waiting for a restart: {keys}", style="yellow"))
    for line in lines:
        line.no_wrap, line.overflow = True, "ellipsis"
    return lines


# ---- equity, health, events -----------------------------------------------------------------


def equity_lines(view: View, width: int, lines: int = 2) -> RenderableType:
    """The account's figures, then its equity over the session: a sparkline in 2 lines, a
    chart in more."""
    trading = view.component("trading") or {}
    counters = view.counters("trading")
    figures = Text(no_wrap=True, overflow="ellipsis")
    figures.append("Equity ", style="bold")
    figures.append(f"{money(trading.get('equity_usd'))} USD")
    pairs = [("net", signed(counters.get("net_pnl"))),
             ("realized", signed(counters.get("realized_pnl"))),
             ("unrealized", signed(counters.get("unrealized_pnl"))),
             ("fees", Text(money(counters.get("fees")))),
             ("day", signed(view.counters("risk").get("daily_pnl_usd")))]
    _append_pairs(figures, pairs, width)
    values = [v for v in view.equity.get("equity_usd") or [] if v is not None]
    times = view.equity.get("times_ns") or []
    if len(values) < 2:
        return Group(figures, Text("session: no 1-minute close yet", style="dim"))
    since = f" since {utc_time(times[0])}" if times else ""
    labels = f"  {money(min(values))} .. {money(max(values))}{since}"
    if lines <= 2:
        line = Text("session ", style="bold", no_wrap=True, overflow="ellipsis")
        line.append(sparkline(values, max(8, width - len(line) - len(labels))), style="cyan")
        return Group(figures, line.append(labels, style="dim"))
    return Group(figures, Text("Equity over the session" + labels, style="bold"),
                 *_chart_lines(values, width, lines - 2))


def _chart_lines(values: list[float], width: int, rows: int) -> list[Text]:
    """A block chart with the highest and lowest equity written at its left edge."""
    top, bottom = money(max(values)), money(min(values))
    margin = max(len(top), len(bottom)) + 1
    lines = []
    for row, blocks in enumerate(chart(values, width - margin - 1, rows)):
        label = top if row == 0 else bottom if row == rows - 1 else ""
        line = Text(f"{label:>{margin - 1}} ", style="dim", no_wrap=True)
        lines.append(line.append("│" + blocks, style="cyan"))
    return lines


def health_lines(view: View, width: int) -> list[Text]:
    """One line per component: the figures an operator checks first, as many as fit."""
    feed, market, strategies, risk = (view.counters(n) for n in
                                      ("feed", "market", "strategies", "risk"))
    market_body = view.component("market") or {}
    lines = [
        ("feed", view.component("feed"), [
            ("frames/s", feed.get("frames_per_s")), ("trades/s", feed.get("trades_per_s")),
            ("frame age s", feed.get("last_frame_age_s")),
            ("connections", feed.get("connections")), ("seq gaps", feed.get("sequence_gaps")),
            ("bad frames", feed.get("bad_frames"))]),
        ("candles", market_body or None, [
            ("last bar", market_body.get("last_bar")), ("emitted", market.get("minutes_emitted")),
            ("repaired", market.get("minutes_repaired")), ("held", market.get("minutes_held")),
            ("late", market.get("late_trades"))]),
        ("strategies", view.component("strategies"), [
            ("running", (view.component("strategies") or {}).get("running")),
            ("signals", strategies.get("signals")),
            ("entries", strategies.get("signals_enter_long")),
            ("exits", strategies.get("signals_exit")), ("errors", strategies.get("load_errors"))]),
        ("risk", view.component("risk"), [
            ("exposure USD", risk.get("exposure_usd")),
            ("of", _limit(view, "max_exposure_usd")),
            ("loss streak", risk.get("loss_streak")), ("denied", risk.get("entries_denied")),
            ("allowed", risk.get("entries_allowed"))]),
        ("writer", view.component("storage"), _writer_pairs(view))]
    return [_health_line(title, body, pairs, width) for title, body, pairs in lines]


def _writer_pairs(view: View) -> list[tuple[str, Any]]:
    storage = view.component("storage") or {}
    counters = storage.get("counters") or {}
    return [("backlog rows", counters.get("backlog_rows")),
            ("connected", storage.get("connected")), ("spilled rows", counters.get("spilled_rows")),
            ("mode", storage.get("mode")), ("error", storage.get("last_error") or None)]


def _limit(view: View, name: str) -> Any:
    value = ((view.component("risk") or {}).get("limits") or {}).get(name)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return value


def _health_line(title: str, body: dict[str, Any] | None,
                 pairs: list[tuple[str, Any]], width: int) -> Text:
    line = Text(f"{title:<11}", style="bold cyan", no_wrap=True, overflow="ellipsis")
    if body is None:
        return line.append("not running", style="dim")
    shown = [(label, Text(value if isinstance(value, str) else figure(value)))
             for label, value in pairs if value is not None]
    _append_pairs(line, shown, width, label_style="cyan")
    return line


def _append_pairs(line: Text, pairs: list[tuple[str, Text]], width: int,
                  label_style: str = "dim") -> None:
    """`label value` pairs appended while the whole of each fits."""
    for label, value in pairs:
        if len(line) + 2 + len(label) + 1 + len(value) > width:
            break
        line.append("  " if line.plain.strip() and not line.plain.endswith(" ") else "")
        line.append(label, style=label_style)
        line.append(" ")
        line.append_text(value)


def limits_lines(view: View) -> list[Text]:
    """Risk limits and how much of each is used (0 in the config: off)."""
    risk = view.component("risk")
    if risk is None:
        return []
    limits, counters = risk.get("limits") or {}, risk.get("counters") or {}
    positions = view.counters("trading").get("positions")
    day_loss = max(0.0, -(counters.get("daily_pnl_usd") or 0.0))
    rows = [("exposure USD", _used(counters.get("exposure_usd"), limits.get("max_exposure_usd"))),
            ("open positions", _used(positions, limits.get("max_open_positions"), 0)),
            ("day loss USD", _used(day_loss, limits.get("daily_loss_limit_usd"))),
            ("loss streak", _used(counters.get("loss_streak"),
                                  limits.get("max_consecutive_losses"), 0)),
            ("position USD", _used(None, limits.get("max_position_usd"))),
            ("order USD", _used(None, limits.get("max_order_usd"))),
            ("stop / target %", f"{_pct(limits.get('stop_loss_pct'))} / "
                                f"{_pct(limits.get('take_profit_pct'))}"),
            ("trailing stop %", _pct(limits.get("trailing_stop_pct"))),
            ("max hold", _ns_duration(limits.get("max_hold_ns"))),
            ("kill switch", "ON" if limits.get("kill_switch") == "True" else "off")]
    lines = [Text("Risk limits (used / limit)", style="bold")]
    for label, value in rows:
        line = Text(f"{label:<17}", style="cyan", no_wrap=True, overflow="ellipsis")
        lines.append(line.append(value, style="bold red" if value == "ON" else ""))
    return lines


def _used(used: float | None, limit: str | None, decimals: int = 2) -> str:
    cap = _number(limit)
    shown = "-" if used is None else f"{used:,.{decimals}f}"
    cap_text = "off" if not cap else f"{cap:,.{decimals}f}"
    return cap_text if used is None else f"{shown} / {cap_text}"


def _pct(value: str | None) -> str:
    number = _number(value)
    return "off" if not number else f"{number:g}"


def _ns_duration(value: str | None) -> str:
    number = _number(value)
    return "off" if not number else duration(number / 1e9)


def _number(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def event_lines(view: View, width: int) -> list[Text]:
    """The title, then the events, newest first."""
    lines = [Text("Recent events (UTC)", style="bold")]
    if not view.events:
        lines[0].append(": none yet", style="dim")
    for event in reversed(view.events):
        kind = event.get("kind", "?")
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(utc_time(event.get("time_ns")), style="dim")
        line.append(f" {kind:<8}", style=KIND_STYLES.get(kind, ""))
        if event.get("product_id"):
            line.append(f" {event['product_id']}", style="bold")
        line.append(f" {event.get('text', '')}")
        lines.append(line)
    return lines
