"""`trader status`: fetch the daemon's snapshot from its unix socket and render it with rich.

A frame is the header, then sections (equity, positions, open orders, products, health,
recent events) stacked in one column, each given lines by `_allocate` so that the frame fills
the terminal and the events take what the others leave. From 160 columns the tables, health
and events go left, and the equity chart and risk limits right. Tables keep only the columns
the width shows in full, dropping the least useful first, so no header or value is cut
(statusparts.py and statustables.py draw the sections, statusfmt.py formats numbers).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from trader.daemon import statusparts as sp
from trader.daemon import statustables as tables

REFRESH_HZ = 2.0
TWO_COLUMNS_FROM = 160  # columns; below, one column
NATURAL_EVENTS = 12  # events shown when the frame's height is free (a pipe)


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
            print_frame(console, orjson.loads(body))
        return 0
    try:
        asyncio.run(_live(console, socket))
    except KeyboardInterrupt:
        pass
    return 0


def print_frame(console: Console, snapshot: dict[str, Any]) -> None:
    """One frame: the terminal's size (or LINES), else as tall as its content (a pipe)."""
    height = console.height if console.is_terminal or os.environ.get("LINES") else None
    console.print(render(snapshot, console.width, height))


async def _live(console: Console, socket: Path) -> None:
    with Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            width, height = console.size
            try:
                view = render(orjson.loads(await fetch(socket)), width, height)
            except NoDaemon as exc:
                view = Panel(Text(f"{exc}\nretrying every {1 / REFRESH_HZ:.1f} s; Ctrl-C quits",
                                  style="bold red"), title="trader status")
            live.update(view, refresh=True)
            await asyncio.sleep(1 / REFRESH_HZ)


@dataclass
class Section:
    """A part of the frame and the lines it takes: `least` (else it is dropped, lowest `drop`
    first; 0: never), `soft` (what each gets before any gets more), `wants` (all it has to
    show); the `fill` section also takes what is left. `natural`: its lines in a pipe."""

    name: str
    least: int
    soft: int
    wants: int
    draw: Callable[[int], RenderableType]
    drop: int = 0
    fill: bool = False
    natural: int | None = None


def render(snapshot: dict[str, Any], width: int = 120,
           height: int | None = None) -> RenderableType:
    """One frame of the status view, `width` columns by `height` lines (None: as tall as
    the content, the events capped at NATURAL_EVENTS)."""
    view = sp.View(snapshot)
    header = sp.header(view, width)
    rest = None if height is None else max(0, height - len(header))
    if width >= TWO_COLUMNS_FROM:
        left_width = width * 3 // 5
        right_width = width - left_width - 2
        left, left_lines = _column([*_trading_sections(view, left_width),
                                    _health(view, left_width),
                                    _events(view, left_width, fill=True)], rest)
        right, right_lines = _column([_equity(view, right_width, fill=True),
                                      _limits(view)], rest)
        body = Layout()
        body.split_row(Layout(left, size=left_width), Layout(Text(" "), size=2), Layout(right))
        lines = max(left_lines, right_lines)
    else:
        body, lines = _column([_equity(view, width), *_trading_sections(view, width),
                               _health(view, width), _events(view, width, fill=True)], rest)
    return _Sized(Group(*header, _Sized(body, lines)), len(header) + lines)


def _trading_sections(view: sp.View, width: int) -> list[Section]:
    shown = {"positions": (tables.positions_table(view, width), 5),
             "orders": (tables.orders_table(view, width), 5),
             "products": (tables.products_table(view, width), 10)}
    sections = []
    for name, (table, soft_rows) in shown.items():
        least, wants = table.lines()
        sections.append(Section(name, least, min(wants, 3 + soft_rows), wants, table.draw))
    return sections


def _equity(view: sp.View, width: int, fill: bool = False) -> Section:
    return Section("equity", 2, 2, 2, lambda n: sp.equity_lines(view, width, n), drop=2,
                   fill=fill, natural=8 if fill else 2)


def _health(view: sp.View, width: int) -> Section:
    lines = sp.health_lines(view, width)
    return Section("health", 0, min(2, len(lines)), len(lines), lambda n: Group(*lines[:n]))


def _limits(view: sp.View) -> Section:
    lines = sp.limits_lines(view)
    return Section("limits", 0, len(lines), len(lines), lambda n: Group(*lines[:n]))


def _events(view: sp.View, width: int, fill: bool) -> Section:
    lines = sp.event_lines(view, width)
    return Section("events", min(4, len(lines)), min(7, len(lines)), len(lines),
                   lambda n: Group(*lines[:n]), drop=1, fill=fill,
                   natural=min(len(lines), 1 + NATURAL_EVENTS))


def _column(sections: list[Section], height: int | None) -> tuple[Layout, int]:
    """The sections stacked in a layout, and its height in lines."""
    sizes = _allocate(sections, height)
    layout = Layout()
    shown = [s for s in sections if sizes[s.name] > 0]
    layout.split_column(*(Layout(s.draw(sizes[s.name]), name=s.name, size=sizes[s.name])
                          for s in shown), Layout(Text(" "), ratio=1))  # what none needs
    return layout, sum(sizes.values()) if height is None else height


def _allocate(sections: list[Section], height: int | None) -> dict[str, int]:
    """Lines per section: each its least (dropping by `drop` rank while even that is too
    much), then each up to `soft`, then up to `wants`; the `fill` section gets the rest."""
    if height is None:
        return {s.name: s.wants if s.natural is None else s.natural for s in sections}
    sizes = {s.name: s.least for s in sections}
    for section in sorted((s for s in sections if s.drop), key=lambda s: s.drop):
        if sum(sizes.values()) <= height:
            break
        sizes[section.name] = 0
    live = [s for s in sections if sizes[s.name] or not s.least]
    spare = height - sum(sizes.values())
    for limit in ("soft", "wants"):
        for section in live:
            more = max(0, min(spare, getattr(section, limit) - sizes[section.name]))
            sizes[section.name] += more
            spare -= more
    for section in live:
        if section.fill and spare > 0:
            sizes[section.name] += spare
            spare = 0
    return sizes


class _Sized:
    """A renderable drawn at exactly `height` lines (a Layout otherwise takes the console's)."""

    def __init__(self, renderable: RenderableType, height: int) -> None:
        self.renderable = renderable
        self.height = height

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.height > 0:
            yield from console.render(self.renderable, options.update(height=self.height))


def frame_lines(snapshot: dict[str, Any], width: int, height: int | None) -> list[str]:
    """The frame as plain text lines (for tests and docs)."""
    console = Console(width=width, height=height or 1000, record=True, color_system=None,
                      file=open(os.devnull, "w"))
    try:
        console.print(render(snapshot, width, height))
    finally:
        console.file.close()
    return console.export_text().rstrip("\n").split("\n")
