"""`trader status`: fetch the daemon's snapshot from its unix socket and render it with rich."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

REFRESH_HZ = 2.0
PANELS = (("feed", "Feed"), ("market", "Candles"), ("trading", "Trading"),
          ("risk", "Risk limits"), ("storage", "Database writer"), ("strategies", "Strategies"))
PRODUCT_COLUMNS = ("close", "bid", "ask", "volume_1m", "bars", "rank", "score", "signal",
                   "position_size", "unrealized_pnl")
# What a panel shows when its component reports more than fits (all of it is in --json).
PANEL_FIELDS = {
    "feed": ("connected", "frames_per_s", "trades_per_s", "last_frame_age_s", "connections",
             "sequence_gaps", "bad_frames"),
    "market": ("last_bar", "minutes_emitted", "minutes_repaired", "minutes_held",
               "late_trades"),
    "strategies": ("running", "signals", "signals_enter_long", "signals_exit", "load_errors"),
    "trading": ("mode", "ready", "equity_usd", "positions", "open_orders", "net_pnl",
                "fees"),
    "risk": ("state", "reason", "daily_pnl_usd", "exposure_usd", "loss_streak",
             "entries_denied"),
    "storage": ("connected", "mode", "backlog_rows", "spilled_rows", "last_error"),
}
LABELS = {"frames_per_s": "frames/s", "trades_per_s": "trades/s", "last_frame_age_s":
          "frame age s", "sequence_gaps": "seq gaps", "minutes_emitted": "emitted",
          "minutes_repaired": "repaired", "minutes_held": "held", "signals_enter_long":
          "entries", "signals_exit": "exits", "volume_1m": "vol 1m", "late_trades": "late",
          "load_errors": "errors", "position_size": "position", "unrealized_pnl": "upnl",
          "equity_usd": "equity USD", "daily_pnl_usd": "day PnL USD",
          "exposure_usd": "exposure USD"}
NARROW_COLUMNS = ("close", "rank", "signal")  # what a terminal under 110 columns shows


class NoDaemon(Exception):
    """Nothing answers on the status socket."""


async def fetch(socket: Path, path: str = "/status", timeout_s: float = 2.0) -> bytes:
    """GET `path` from the daemon's status socket; NoDaemon when nothing answers."""
    try:
        connector = aiohttp.UnixConnector(path=str(socket))
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with session.get(f"http://trader{path}") as response:
                response.raise_for_status()
                return await response.read()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise NoDaemon(f"no daemon running at {socket} ({reason})") from exc


def show_status(socket: Path, *, once: bool, raw_json: bool) -> int:
    """The `trader status` command; exit 1 when no daemon answers (--once / --json)."""
    console = Console()
    if raw_json or once:
        try:
            body = asyncio.run(fetch(socket))
        except NoDaemon as exc:
            console.print(f"[bold red]{exc}[/]")
            return 1
        if raw_json:
            print(body.decode())
        else:
            console.print(render(orjson.loads(body), console.width))
        return 0
    try:
        asyncio.run(_live(console, socket))
    except KeyboardInterrupt:
        pass
    return 0


async def _live(console: Console, socket: Path) -> None:
    with Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            try:
                view = render(orjson.loads(await fetch(socket)), console.width)
            except NoDaemon as exc:
                view = Panel(Text(f"{exc}\nretrying every {1 / REFRESH_HZ:.1f} s; Ctrl-C quits",
                                  style="bold red"), title="trader status")
            live.update(view, refresh=True)
            await asyncio.sleep(1 / REFRESH_HZ)


def render(snapshot: dict[str, Any], width: int = 200) -> RenderableType:
    """One frame of the status view from a daemon snapshot, for a terminal `width` wide."""
    components = snapshot.get("components", {})
    parts: list[RenderableType] = [_header(snapshot)]
    reload_note = _reload_note(snapshot.get("config", {}))
    if reload_note is not None:
        parts.append(reload_note)
    parts.append(_panel_grid(components))
    parts.append(_products(snapshot.get("products", []), components, narrow=width < 110))
    return Group(*parts)


def _header(snapshot: dict[str, Any]) -> RenderableType:
    daemon, config = snapshot.get("daemon", {}), snapshot.get("config", {})
    line = Text()
    line.append(f"trader {daemon.get('version', '?')}", style="bold")
    line.append(f"  {daemon.get('mode', '?')}", style="bold magenta")
    state = daemon.get("state", "?")
    line.append(f"  {state}", style="bold green" if state == "running" else "bold yellow")
    line.append(f"  up {_duration(daemon.get('uptime_s'))}")
    line.append(f"  pid {daemon.get('pid', '?')}")
    line.append(f"  RSS {_bytes(daemon.get('rss_bytes'))}")
    line.append(f"  config v{config.get('version', '?')}")
    last = config.get("last_reload")
    if last:
        ago = _duration((daemon.get("now_ns", 0) - last["at_ns"]) / 1e9)
        style = "red" if last["outcome"] == "rejected" else "dim"
        line.append(f" ({last['outcome']} {ago} ago)", style=style)
    return line


def _reload_note(config: dict[str, Any]) -> RenderableType | None:
    last = config.get("last_reload") or {}
    lines = [Text(f"{key}: {reason}", style="red") for key, reason in last.get("errors", [])]
    if lines:
        lines.insert(0, Text(f"edit of {config.get('path')} rejected; running on config "
                             f"v{config.get('version')}", style="bold red"))
    if config.get("restart_required"):
        keys = ", ".join(config["restart_required"])
        lines.append(Text(f"changed, waiting for a restart: {keys}", style="yellow"))
    return Group(*lines) if lines else None


def _panel_grid(components: dict[str, Any]) -> RenderableType:
    columns = 3
    grid = Table.grid(expand=True, padding=(0, 0))
    for _ in range(columns):
        grid.add_column(ratio=1)
    items = [(title, _panel_items(name, components.get(name))) for name, title in PANELS]
    for start in range(0, len(items), columns):
        row = items[start:start + columns]
        height = 2 + max(len(fields or {}) or 1 for _, fields in row)
        grid.add_row(*(_component_panel(title, fields, height) for title, fields in row))
    return grid


def _component_panel(title: str, fields: dict[str, Any] | None, height: int) -> Panel:
    if fields is None:
        return Panel(Text("not running", style="dim"), title=title, box=box.ROUNDED,
                     height=height)
    table = Table.grid(padding=(0, 1))
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(overflow="ellipsis", no_wrap=True)
    for name, value in fields.items():
        table.add_row(LABELS.get(name, name.replace("_", " ")), _value(value))
    return Panel(table, title=title, box=box.ROUNDED, height=height)


def _panel_items(name: str, body: dict[str, Any] | None) -> dict[str, Any] | None:
    """The figures a panel shows; None when the component is not running."""
    if body is None:
        return None
    scalars = {k: v for k, v in body.items()
               if k not in ("counters", "products") and not isinstance(v, dict | list)}
    everything = {**scalars, **body.get("counters", {})}
    chosen = PANEL_FIELDS.get(name)
    return everything if chosen is None else {k: everything.get(k) for k in chosen}


def _products(products: list[str], components: dict[str, Any],
              narrow: bool = False) -> RenderableType:
    market = components.get("market")
    rows: dict[str, dict[str, Any]] = {}
    for name in ("market", "selector", "strategies", "trading"):
        for product, figures in ((components.get(name) or {}).get("products") or {}).items():
            rows.setdefault(product, {}).update(figures)
    table = Table(box=box.SIMPLE_HEAD, expand=True, title_justify="left", show_edge=False,
                  title="Products" + ("" if market else " (market data not running)"))
    present = {name for figures in rows.values() for name in figures}
    columns = [c for c in PRODUCT_COLUMNS if c in present] + sorted(present - set(PRODUCT_COLUMNS))
    if narrow:
        columns = [c for c in columns if c in NARROW_COLUMNS]
    table.add_column("product", style="bold", no_wrap=True, min_width=7)
    for name in columns:
        table.add_column(LABELS.get(name, name.replace("_", " ")), justify="right", no_wrap=True,
                         overflow="ellipsis")
    for product in products:
        figures = rows.get(product, {})
        table.add_row(product, *(_value(figures.get(name)) for name in columns))
    return table


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.6g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _bytes(count: int | None) -> str:
    return "?" if count is None else f"{count / 2**20:.1f} MiB"
