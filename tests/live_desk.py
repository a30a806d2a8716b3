"""A trading desk (real Trading, Registry and RiskManager) over any execution, and live
execution against the in-process simulator of tests/test_simulator_orders.py.

The simulator's BTC-USD starts at a last price of 100 (touch 99.99 / 100.01); its tape
prints 100, 100, 99, 99 (size 1 each) at +63, +78, +93 and +114 s of exchange time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import eventually
from tests.simulator.test_orders import KEY_NAME, Api, FakeClock, Rig, pem, started
from trader.clock import ManualClock
from trader.coinbase.auth import Credentials
from trader.config import CoinbaseConfig, ExecutionConfig, RiskConfig
from trader.execution.live import LiveExecution
from trader.simulator.order_faults import OrderFaults
from trader.trading.orders import Trading
from trader.trading.registry import Registry, client_order_id
from trader.trading.risk import RiskManager
from trader.types import (
    Action,
    Fill,
    Order,
    OrderIntent,
    OrderKind,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Product,
    Quote,
    Side,
    Signal,
    TimeInForce,
)

T0 = 1_767_225_600 * 10**9  # the trading core's clock: 2026-01-01T00:00:00Z
PRODUCT = "BTC-USD"
BTC = Product(PRODUCT, "BTC", "USD", Decimal("0.00000001"), Decimal("0.01"),
              Decimal("0.00000001"), Decimal("3400"), Decimal("1"), "online", False, False,
              False, False, 100.0, 0.0)  # the simulator's rules for BTC-USD
BID, ASK = 99.99, 100.01
FAST = dataclasses.replace(ExecutionConfig(), unknown_grace_s=1.0, poll_interval_s=0.2)


class Desk:
    """The trading core and its registry; the execution it is given reports here."""

    def __init__(self) -> None:
        self.clock = ManualClock(T0)
        self.registry = Registry()
        self.risk = RiskManager(RiskConfig(), self.registry, self.clock)
        self.quotes: dict[str, Quote] = {}
        self.updates: list[OrderUpdate] = []
        self.fills: list[Fill] = []
        self.errors: list[tuple[str, str]] = []
        self.trading: Trading | None = None
        self.quote(BID, ASK)

    def attach(self, execution: Any) -> None:
        """The trading core built from `execution`, which reports to this desk."""
        self.execution = execution
        self.trading = Trading(self.registry, self.risk, execution, ExecutionConfig(),
                               self.quotes, self.clock)
        self.trading.set_products([BTC])
        self.products = self.trading.products
        execution.bind(self)

    # ---- OrderEvents, and what live execution asks besides ---------------------------------

    def on_update(self, update: OrderUpdate) -> None:
        self.updates.append(update)
        self.trading.on_update(update)

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)
        self.trading.on_fill(fill)

    def on_error(self, kind: str, detail: str) -> None:
        self.errors.append((kind, detail))
        self.trading.on_error(kind, detail)

    def is_open_position(self, product_id: str) -> bool:
        return self.registry.position(product_id) is not None

    def restore_intent(self, intent: OrderIntent) -> None:
        self.registry.record_intent(intent)

    # ---- driving ---------------------------------------------------------------------------

    def quote(self, bid: float, ask: float) -> None:
        self.quotes[PRODUCT] = Quote(PRODUCT, (bid + ask) / 2, bid, ask, 1.0, 1.0, 0.0, 0.0,
                                     0.0, 0.0, self.clock())

    def enter(self, bar: int = 0) -> None:
        """A strategy's entry signal: the core sends a post-only limit buy at the bid."""
        self.trading.on_signals([Signal("s", PRODUCT, T0 + bar * 60 * 10**9, 0.5,
                                        Action.ENTER_LONG, None, None, "test")])

    def send(self, intent: OrderIntent) -> None:
        """What the core does with an intent: record it, then submit it."""
        self.registry.record_intent(intent)
        self.execution.submit(intent)

    def only_order(self) -> Order:
        (order,) = self.registry.orders()
        return order

    def status(self, cid: str) -> OrderStatus | None:
        order = self.registry.order(cid)
        return None if order is None else order.status

    def filled(self) -> Decimal:
        return sum((f.size for f in self.fills), Decimal(0))


def intent(order_type: OrderType = OrderType.MARKET, side: Side = Side.BUY,
           size: str = "0.5", price: str | None = None, post_only: bool = False,
           bar: int = 0, kind: OrderKind | None = None) -> OrderIntent:
    kind = kind or (OrderKind.ENTRY if side is Side.BUY else OrderKind.EXIT)
    tif = TimeInForce.IOC if order_type is OrderType.MARKET else TimeInForce.GTC
    bar_ns = T0 + bar * 60 * 10**9
    return OrderIntent("s", PRODUCT, side, kind, order_type, Decimal(size), None,
                       None if price is None else Decimal(price), post_only, tif, bar_ns, 0,
                       client_order_id(f"s/{kind}", PRODUCT, bar_ns, 0), "test")


def coinbase_config(url: str, **overrides: Any) -> CoinbaseConfig:
    ws = url.replace("http://", "ws://")
    settings = {"ws_url": ws + "/", "user_ws_url": ws + "/ws/user", "rest_url": url,
                "private_rest_rps": 30.0, "request_timeout_s": 1.0, "stale_after_s": 60.0}
    return CoinbaseConfig(**{**settings, **overrides})


def credentials(which: str = "ours") -> Credentials:
    return Credentials(KEY_NAME, pem(which), "test")


@dataclass
class LiveRig(Rig):
    """The simulator, a signed client for it, and live executions over one journal."""

    url: str = ""
    journal: Path = Path()
    tasks: list[asyncio.Task] = field(default_factory=list)

    async def start(self, desk: Desk, section: ExecutionConfig = FAST,
                    creds: Credentials | None = None, wait_ready: bool = True,
                    **coinbase: Any) -> LiveExecution:
        """A live execution reporting to `desk`, running; ready unless told not to wait."""
        live = LiveExecution(self.journal, creds or credentials(),
                             coinbase_config(self.url, **coinbase), section, desk.quotes)
        desk.attach(live)
        self.tasks.append(asyncio.create_task(live.run(), name="live"))
        if wait_ready:
            await eventually(live.ready, timeout_s=10)
        return live

    async def crash(self, task: asyncio.Task | None = None) -> None:
        """Abandon a running live execution without draining it."""
        task = task or self.tasks[-1]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def faults(self, **body: Any) -> None:
        await self.api.control("POST", "/_sim/faults", body)

    async def sim_orders(self) -> list[dict[str, Any]]:
        return (await self.api.control("GET", "/_sim/orders"))["orders"]


@contextlib.asynccontextmanager
async def live_rig(tmp_path: Path, faults: OrderFaults | None = None) -> AsyncIterator[LiveRig]:
    sim, clock, url = await started(faults)
    try:
        async with aiohttp.ClientSession() as session:
            rig = LiveRig(sim, clock, Api(session, url), url, tmp_path / "orders.journal")
            try:
                yield rig
            finally:
                for task in rig.tasks:
                    await rig.crash(task)
    finally:
        await sim.close()


__all__ = ["ASK", "BID", "BTC", "FAST", "PRODUCT", "Desk", "FakeClock", "LiveRig", "intent",
           "live_rig"]
