"""The status view's tables (positions, open orders, products): each keeps the columns the
width shows in full, by priority, so no header or value is ever cut."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from trader.daemon.statusfmt import compact, duration, money, plain, price, score, signed, size
from trader.daemon.statusparts import View

TABLE_GAP = 3  # columns between two table columns (SIMPLE_HEAD, padding 1 a side)
ALWAYS = 0  # the priority of a column that stays whatever the width


@dataclass
class Column:
    header: str
    cells: list[Text]
    priority: int = ALWAYS
    justify: str = "right"

    @property
    def width(self) -> int:
        return max([len(self.header), *(len(cell) for cell in self.cells)])


class TableSection:
    """A titled table of the columns that fit `width` in full; one line when empty."""

    def __init__(self, title: str, columns: list[Column], width: int, note: str = "") -> None:
        self.title, self.note = title, note
        self.rows = len(columns[0].cells) if columns else 0
        self.columns = fit_columns(columns, width)

    def lines(self) -> tuple[int, int]:
        """(least, wants): title, header and a row (and a "+N more") at least, all at most."""
        if not self.rows:
            return 1, 1
        return 3 + min(self.rows, 2), 3 + self.rows

    def draw(self, lines: int) -> RenderableType:
        title = Text(self.title, style="bold", no_wrap=True, overflow="ellipsis")
        if not self.rows:
            return title.append(": none", style="dim")
        if self.note:
            title.append(f"  {self.note}", style="dim")
        shown = self.rows if lines - 3 >= self.rows else max(0, lines - 4)
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
        for column in self.columns:
            table.add_column(column.header, justify=column.justify,  # type: ignore[arg-type]
                             no_wrap=True, min_width=column.width, header_style="bold")
        for row in range(shown):
            table.add_row(*(column.cells[row] for column in self.columns))
        more = [Text(f"+{self.rows - shown} more", style="dim")] if shown < self.rows else []
        return Group(title, table, *more)


def fit_columns(columns: list[Column], width: int) -> list[Column]:
    """The columns whose full width fits, kept by priority (lower first), in their order."""
    kept: list[Column] = []
    for column in sorted(columns, key=lambda c: c.priority):
        trial = [*kept, column]
        if column.priority == ALWAYS or sum(c.width for c in trial) + TABLE_GAP * (
                len(trial) - 1) <= width:
            kept = trial
    return [column for column in columns if column in kept]


def positions_table(view: View, width: int) -> TableSection:
    rows = view.positions
    exposure = sum(p.get("cost_usd") or 0 for p in rows)
    upnl = sum(p.get("unrealized_pnl") or 0 for p in rows)
    prices = [lambda p, key=key: price(p.get(key), view.increments.get(p["product_id"]))
              for key in ("entry_price", "last_price", "stop_price", "take_profit_price")]
    columns = [
        _column("product", rows, lambda p: Text(p["product_id"], style="bold"), justify="left"),
        _column("size", rows, lambda p: Text(size(p.get("size")))),
        _column("entry", rows, prices[0]), _column("last", rows, prices[1]),
        _column("uPnL", rows, lambda p: signed(p.get("unrealized_pnl"))),
        _column("uPnL %", rows, _pnl_pct, priority=2),
        _column("stop", rows, prices[2], priority=1),
        _column("target", rows, prices[3], priority=1),
        _column("age", rows, lambda p: Text(duration(p.get("age_s"))), priority=1),
        _column("USD", rows, lambda p: Text(money(p.get("cost_usd"))), priority=3),
        _column("strategy", rows, lambda p: Text(p.get("strategy") or "-"), priority=4,
                justify="left"),
    ]
    note = f"cost {money(exposure)} USD, uPnL {signed(upnl).plain}"
    return TableSection(f"Positions ({len(rows)})", columns, width, note)


def orders_table(view: View, width: int) -> TableSection:
    rows = view.orders
    columns = [
        _column("product", rows, lambda o: Text(o["product_id"], style="bold"), justify="left"),
        _column("side", rows, lambda o: Text(o["side"].lower(), style=_side_style(o["side"])),
                justify="left"),
        _column("kind", rows, lambda o: Text(o["kind"]), justify="left"),
        _column("status", rows, lambda o: Text(o["status"].lower()), justify="left"),
        _column("size", rows, _order_size),
        _column("price", rows, lambda o: price(o.get("limit_price"),
                                               view.increments.get(o["product_id"]))),
        _column("filled", rows, lambda o: Text(size(o.get("filled_size"))), priority=1),
        _column("age", rows, lambda o: Text(duration(o.get("age_s"))), priority=1),
        _column("strategy", rows, lambda o: Text(o.get("strategy") or "-"), priority=2,
                justify="left"),
        _column("client id", rows, lambda o: Text(o["client_order_id"][:8], style="dim"),
                priority=3, justify="left"),
    ]
    return TableSection(f"Open orders ({len(rows)})", columns, width)


def products_table(view: View, width: int) -> TableSection:
    rows = view.products
    incs = view.increments
    columns = [
        _column("product", rows, lambda r: Text(r["product_id"], style="bold"), justify="left"),
        _column("price", rows, lambda r: price(r.get("close"), incs.get(r["product_id"]))),
        _column("rank", rows, lambda r: Text(plain(r.get("rank")))),
        _column("score", rows, lambda r: Text(score(r.get("score"))), priority=2),
        _column("signal", rows, _signal_cell, priority=1, justify="left"),
        _column("vol 1m", rows, lambda r: Text(compact(r.get("volume_1m"))), priority=2),
        _column("bid", rows, lambda r: price(r.get("bid"), incs.get(r["product_id"])),
                priority=4),
        _column("ask", rows, lambda r: price(r.get("ask"), incs.get(r["product_id"])),
                priority=4),
        _column("bars", rows, lambda r: Text(plain(r.get("bars"))), priority=5),
    ]
    if any("regime" in r for r in rows):
        columns.insert(5, _column("regime", rows, lambda r: Text(plain(r.get("regime"))),
                                  priority=2, justify="left"))
    if any(r.get("refused") for r in rows):
        columns.append(_column("last refusal", rows, lambda r: Text(r.get("refused") or ""),
                               priority=6, justify="left"))
    selector = view.component("selector") or {}
    note = (f"top {selector['top_n']} by {selector.get('metric', '?')}"
            if selector.get("top_n") else "")
    title = "Products" + ("" if view.component("market") else " (market data not running)")
    return TableSection(title, columns, width, note)


def _column(header: str, rows: Sequence[dict[str, Any]], cell: Callable[[Any], Text],
            priority: int = ALWAYS, justify: str = "right") -> Column:
    return Column(header, [cell(row) for row in rows], priority, justify)


def _signal_cell(row: dict[str, Any]) -> Text:
    signal = row.get("signal") or "-"
    style = "green" if "enter" in signal else "red" if " exit " in signal else ""
    return Text(signal, style=style)


def _pnl_pct(position: dict[str, Any]) -> Text:
    cost, pnl = position.get("cost_usd"), position.get("unrealized_pnl")
    if not cost or pnl is None:
        return Text("-")
    return signed(100 * pnl / cost, suffix=" %")


def _order_size(order: dict[str, Any]) -> Text:
    if order.get("size") is not None:
        return Text(size(order["size"]))
    return Text(f"{money(order.get('quote_size'))} USD")


def _side_style(side: str) -> str:
    return "green" if side.upper() == "BUY" else "red"
