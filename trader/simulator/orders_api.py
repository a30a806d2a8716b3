"""Private REST under /api/v3/brokerage (orders, fills, accounts) and the simulator's controls.

Every private request must carry a valid CDP JWT (auth.py); otherwise HTTP 401 `Unauthorized`.
Then the fault dice may answer 429 (with Retry-After) or 5xx instead. Order rejections are HTTP
200 with `success: false`; malformed bodies HTTP 400. Lists are newest first; a cursor is the
position where the next page starts, so new orders never shift a page being read. A PENDING
order (one whose lost answer keeps it off the book, order_faults.py) is in no list and reads
as 404. A repeated client order id is answered per `duplicate_answer` (client_ids.py keeps
who holds an id).
Controls (no auth): `GET /_sim/orders` every order ever created with its fills,
`GET /_sim/accounts`, `GET`/`POST /_sim/faults` (see order_faults.py), `POST /_sim/drop_user`
(cut every user-channel connection now).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from trader.simulator import order_wire, wire
from trader.simulator.auth import JwtVerifier, Unauthorized, bearer_token
from trader.simulator.client_ids import ClientIds
from trader.simulator.exchange import Exchange, ExchangeConfig, Fill, Order
from trader.simulator.order_faults import FaultDice, OrderFaults
from trader.simulator.order_request import BadRequest, ProductRules, Rejection, parse_order
from trader.simulator.user_channel import UserChannel

log = logging.getLogger(__name__)

PREFIX = "/api/v3/brokerage"
USER_WS_PATH = "/ws/user"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class PrivateConfig:
    """The private side: account and fees, faults, and the API keys allowed in."""

    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    faults: OrderFaults = field(default_factory=OrderFaults)
    keys: Mapping[str, Any] = field(default_factory=dict)  # key name -> EC P-256 public key/PEM


class PrivateApi:
    """Routes of the private REST API, the user websocket and the controls."""

    def __init__(self, config: PrivateConfig, products: list[dict[str, Any]],
                 clock: Callable[[], int]) -> None:
        rules = [ProductRules.from_product(p) for p in products]
        prices = {p["product_id"]: float(p["price"]) for p in products}
        self.exchange = Exchange(rules, config.exchange, prices, clock)
        self.dice = FaultDice(config.faults)
        self.client_ids = ClientIds(self.exchange, self.dice)
        self.verifier = JwtVerifier(config.keys)
        self.user = UserChannel(self.exchange, self.verifier, self.dice, clock)
        self.counters: Counter[str] = Counter()
        self._clock = clock
        self._closing = asyncio.Event()

    def add_routes(self, app: web.Application) -> None:
        """Register every route (the fixed paths before `{order_id}`) and the shutdown hook."""
        private = [("POST", "/orders", self._create_order),
                   ("POST", "/orders/batch_cancel", self._cancel_orders),
                   ("GET", "/orders/historical/batch", self._list_orders),
                   ("GET", "/orders/historical/fills", self._list_fills),
                   ("GET", "/orders/historical/{order_id}", self._get_order),
                   ("GET", "/accounts", self._list_accounts),
                   ("GET", "/accounts/{account_uuid}", self._get_account),
                   ("GET", "/transaction_summary", self._transaction_summary),
                   ("GET", "/key_permissions", self._key_permissions)]
        for method, path, handler in private:
            app.router.add_route(method, PREFIX + path, self._guarded(handler))
        app.router.add_get(USER_WS_PATH, self.user.handle)
        app.router.add_get("/_sim/orders", self._sim_orders)
        app.router.add_get("/_sim/accounts", self._sim_accounts)
        app.router.add_get("/_sim/faults", self._sim_faults)
        app.router.add_post("/_sim/faults", self._sim_faults)
        app.router.add_post("/_sim/drop_user", self._sim_drop_user)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, _app: web.Application) -> None:
        self._closing.set()
        await self.user.close()

    # ---- the gate: auth, then faults --------------------------------------------------------

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            self.counters["private_requests"] += 1
            try:
                token = bearer_token(request.headers.get("Authorization"))
                self.verifier.verify_rest(token, request.method, request.host, request.path)
            except Unauthorized as exc:
                self.counters["unauthorized"] += 1
                log.info("simulator: %s %s refused: %s", request.method, request.path,
                         exc.reason)
                return web.Response(status=401, text="Unauthorized")
            if self.dice.roll("rate_limit"):
                retry_after = str(self.dice.faults.retry_after_s)
                return web.Response(status=429, body=wire.RATE_LIMITED, headers={
                    "Retry-After": retry_after}, content_type="application/json")
            if self.dice.roll("server_error"):
                return web.Response(status=self.dice.choice((500, 502, 503)),
                                    content_type="application/json",
                                    body=wire.rest_error("INTERNAL", "Internal server error"))
            return await handler(request)

        return guarded

    # ---- orders -----------------------------------------------------------------------------

    async def _create_order(self, request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
            order_request = parse_order(body)
            existing = self.client_ids.holder(order_request.client_order_id)
            if existing is not None:
                return self._repeated(existing, body.get("order_configuration"))
            order = self.exchange.admit(order_request)
        except orjson.JSONDecodeError:
            return _bad_request(BadRequest("INVALID_ARGUMENT", "request body is not JSON"))
        except BadRequest as exc:
            return _bad_request(exc)
        except Rejection as exc:
            self.counters["rejected"] += 1
            return _json(order_wire.create_failure(exc, body.get("order_configuration")))
        self.counters["created"] += 1
        response = _json(order_wire.create_success(order))
        fault = self.dice.accept_fault()
        hidden_s = self.dice.faults.lost_hidden_s
        if fault is not None and hidden_s > 0:  # off the book and out of sight for a while
            self.counters["hidden"] += 1
            asyncio.get_running_loop().call_later(hidden_s, self.exchange.activate, order)
        else:
            self.exchange.activate(order)
        if fault == "drop" and request.transport is not None:
            request.transport.abort()
        elif fault == "delay":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.dice.faults.accept_delay_s):
                    await self._closing.wait()
        return response

    def _repeated(self, existing: Order, configuration: Any) -> web.Response:
        """A create that repeats a client order id: nothing is created; the answer is the
        existing order, or a DUPLICATE_CLIENT_ORDER_ID refusal (`duplicate_answer`)."""
        self.counters["repeated"] += 1
        if self.dice.faults.duplicate_answer == "refuse":
            refusal = Rejection("DUPLICATE_CLIENT_ORDER_ID", "Duplicate client order id")
            return _json(order_wire.create_failure(refusal, configuration))
        return _json(order_wire.create_success(existing))

    async def _cancel_orders(self, request: web.Request) -> web.StreamResponse:
        try:
            order_ids = orjson.loads(await request.read())["order_ids"]
            if not isinstance(order_ids, list) or not all(isinstance(i, str) for i in order_ids):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return _bad_request(BadRequest("INVALID_ARGUMENT", "order_ids: a list of ids"))
        results = []
        for order_id in order_ids:
            reason = self.exchange.cancel(order_id)
            results.append({"success": reason is None, "order_id": order_id,
                            "failure_reason": reason or "UNKNOWN_CANCEL_FAILURE_REASON"})
        return _json({"results": results})

    async def _get_order(self, request: web.Request) -> web.StreamResponse:
        order = self.exchange.orders.get(request.match_info["order_id"])
        if order is None or order.status == "PENDING":  # reads lag: not visible yet
            message = "order with this orderID was not found"
            return web.Response(status=404, body=wire.rest_error("NOT_FOUND", message),
                                content_type="application/json")
        return _json({"order": order_wire.order(order)})

    async def _list_orders(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        ids, products = set(query.getall("order_ids", [])), set(query.getall("product_ids", []))
        statuses, sides = set(query.getall("order_status", [])), set(query.getall("order_side", []))

        def keep(order: Order) -> bool:  # a PENDING order is not listed yet (PROTOCOL.md 5.6)
            return (order.status != "PENDING" and _among(order.order_id, ids)
                    and _among(order.request.product_id, products)
                    and _among(order.status, statuses) and _among(order.request.side, sides))

        try:
            page, cursor = _page(list(self.exchange.orders.values()), keep, query, 1000, 1000)
        except ValueError as exc:
            return _bad_request(BadRequest("INVALID_ARGUMENT", str(exc)))
        return _json({"orders": [order_wire.order(o) for o in page], "sequence": "0",
                      "has_next": cursor is not None, "cursor": cursor or ""})

    async def _list_fills(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        orders, products = set(query.getall("order_ids", [])), set(query.getall("product_ids", []))
        trades = set(query.getall("trade_ids", []))

        def keep(fill: Fill) -> bool:
            return (_among(fill.order_id, orders) and _among(fill.product_id, products)
                    and _among(fill.trade_id, trades))

        try:
            page, cursor = _page(self.exchange.fills, keep, query, 100, 1000)
        except ValueError as exc:
            return _bad_request(BadRequest("INVALID_ARGUMENT", str(exc)))
        by_id = self.exchange.orders
        fills = [order_wire.fill(f, by_id[f.order_id].request.quote_size is not None)
                 for f in page]
        return _json({"fills": fills, "cursor": cursor or ""})

    # ---- accounts and fees ------------------------------------------------------------------

    async def _list_accounts(self, request: web.Request) -> web.StreamResponse:
        # _page reads from the end: reversed, the accounts come out in currency order
        accounts = list(self.exchange.accounts.values())[::-1]
        try:
            page, cursor = _page(accounts, lambda _: True, request.query, 49, 250)
        except ValueError as exc:
            return _bad_request(BadRequest("INVALID_ARGUMENT", str(exc)))
        now_ns = self._clock()
        return _json({"accounts": [order_wire.account(a, now_ns) for a in page],
                      "has_next": cursor is not None, "cursor": cursor or "",
                      "size": len(page)})

    async def _get_account(self, request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["account_uuid"]
        for account in self.exchange.accounts.values():
            if account.uuid == wanted:
                return _json({"account": order_wire.account(account, self._clock())})
        return web.Response(status=404, content_type="application/json",
                            body=wire.rest_error("NOT_FOUND", "account not found"))

    async def _transaction_summary(self, request: web.Request) -> web.StreamResponse:
        config = self.exchange.config
        volume = float(sum(o.filled_value for o in self.exchange.orders.values()))
        fees = float(sum(o.total_fees for o in self.exchange.orders.values()))
        tier = {"pricing_tier": "Intro", "usd_from": "0", "usd_to": "10000",
                "taker_fee_rate": order_wire.text(config.taker_fee_bps / 10_000),
                "maker_fee_rate": order_wire.text(config.maker_fee_bps / 10_000),
                "aop_from": "", "aop_to": ""}
        return _json({"total_volume": volume, "total_fees": fees, "fee_tier": tier,
                      "margin_rate": None, "goods_and_services_tax": None,
                      "advanced_trade_only_volume": volume, "advanced_trade_only_fees": fees,
                      "coinbase_pro_volume": 0, "coinbase_pro_fees": 0,
                      "total_balance": "0", "has_promo_fee": False})

    async def _key_permissions(self, request: web.Request) -> web.StreamResponse:
        return _json({"can_view": True, "can_trade": True, "can_transfer": False,
                      "portfolio_uuid": order_wire.PORTFOLIO_ID, "portfolio_type": "DEFAULT"})

    # ---- controls ---------------------------------------------------------------------------

    async def _sim_orders(self, request: web.Request) -> web.StreamResponse:
        fills: dict[str, list[dict[str, Any]]] = {}
        for f in self.exchange.fills:
            quoted = self.exchange.orders[f.order_id].request.quote_size is not None
            fills.setdefault(f.order_id, []).append(order_wire.fill(f, quoted))
        orders = [{**order_wire.order(o), "fills": fills.get(o.order_id, [])}
                  for o in self.exchange.orders.values()]
        return _json({"orders": orders})

    async def _sim_accounts(self, request: web.Request) -> web.StreamResponse:
        now_ns = self._clock()
        return _json({"accounts": [order_wire.account(a, now_ns)
                                   for a in self.exchange.accounts.values()]})

    async def _sim_faults(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            try:
                self.dice.update(orjson.loads(await request.read()))
            except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
                return _bad_request(BadRequest("INVALID_ARGUMENT", str(exc)))
        return _json(self.dice.state())


    async def _sim_drop_user(self, request: web.Request) -> web.StreamResponse:
        return _json({"dropped": await self.user.drop_all()})


def _page(items: list[Any], keep: Callable[[Any], bool], query: Mapping[str, str],
          default_limit: int, max_limit: int) -> tuple[list[Any], str | None]:
    """Newest first (items are oldest first): one page and the cursor of the next, if any."""
    try:
        limit = int(query.get("limit") or default_limit)
        end = int(base64.urlsafe_b64decode(query["cursor"])) if query.get("cursor") else None
    except ValueError:
        raise ValueError("limit must be an integer and cursor one this server gave") from None
    if not 0 < limit:
        raise ValueError("limit must be positive")
    limit = min(limit, max_limit)
    page: list[Any] = []
    start = len(items) if end is None else min(end, len(items))
    for i in range(start - 1, -1, -1):
        if not keep(items[i]):
            continue
        if len(page) == limit:
            return page, base64.urlsafe_b64encode(str(i + 1).encode()).decode()
        page.append(items[i])
    return page, None


def _among(value: str, wanted: set[str]) -> bool:
    """A list filter: no values given keeps everything."""
    return not wanted or value in wanted


def _json(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _bad_request(exc: BadRequest) -> web.Response:
    return web.Response(status=400, content_type="application/json",
                        body=wire.rest_error(exc.error, exc.message))
