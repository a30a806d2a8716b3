"""The simulator's own JSON for Coinbase frames and REST bodies.

Built independently of trader/coinbase/messages.py, from the protocol notes and the real
captures, so that a wire-format mistake cannot hide by being made the same way on both sides.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import orjson

GRANULARITIES = {"ONE_MINUTE": 60, "FIVE_MINUTE": 300, "FIFTEEN_MINUTE": 900,
                 "THIRTY_MINUTE": 1800, "ONE_HOUR": 3600, "TWO_HOUR": 7200,
                 "FOUR_HOUR": 14400, "SIX_HOUR": 21600, "ONE_DAY": 86400}


def rfc3339(time_ns: int, digits: int = 9) -> str:
    """'2026-08-09T21:05:48.854840045Z' with `digits` fractional digits."""
    seconds, fraction = divmod(time_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{fraction:09d}"[: len(stamp) + 1 + digits] + "Z"


def go_time(time_ns: int, uptime_s: float) -> str:
    """Heartbeat `current_time`, as Go prints a time with its monotonic reading."""
    seconds, fraction = divmod(time_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{fraction:09d} +0000 UTC m=+{uptime_s:.9f}"


def number(value: float) -> str:
    """A price or size as Coinbase sends it: a plain decimal string, shortest round-trip."""
    text = format(Decimal(repr(float(value))), "f")
    return text[:-2] if text.endswith(".0") else text


def envelope(channel: str, sequence_num: int, time_ns: int, events: list[Any]) -> bytes:
    return orjson.dumps({"channel": channel, "timestamp": rfc3339(time_ns),
                         "sequence_num": sequence_num, "events": events})


def trade_event(kind: str, trades: list[dict[str, str]]) -> dict[str, Any]:
    return {"type": kind, "trades": trades}


def trade(product_id: str, trade_id: int, price: float, size: float, time_ns: int,
          maker_sells: bool) -> dict[str, str]:
    return {"product_id": product_id, "trade_id": str(trade_id), "price": number(price),
            "size": number(size), "time": rfc3339(time_ns, 6),
            "side": "SELL" if maker_sells else "BUY"}


def ticker_event(kind: str, product_id: str, price: float, tick: float,
                 volume_24h: float) -> dict[str, Any]:
    return {"type": kind, "tickers": [{
        "type": "ticker", "product_id": product_id, "price": number(price),
        "volume_24_h": number(volume_24h), "low_24_h": number(price), "high_24_h": number(price),
        "low_52_w": number(price), "high_52_w": number(price), "price_percent_chg_24_h": "0",
        # one tick off the last price, in the tick's decimals (a float sum leaves noise)
        "best_bid": number(round(price - tick, 10)), "best_ask": number(round(price + tick, 10)),
        "best_bid_quantity": "1", "best_ask_quantity": "1"}]}


def heartbeat_event(time_ns: int, counter: int, uptime_s: float) -> dict[str, Any]:
    return {"current_time": go_time(time_ns, uptime_s), "heartbeat_counter": counter}


def subscriptions_event(subscriptions: dict[str, list[str]]) -> dict[str, Any]:
    return {"subscriptions": subscriptions}


def error_frame(message: str) -> bytes:
    return orjson.dumps({"type": "error", "message": message})


def product(product_id: str, price: float) -> dict[str, Any]:
    base, quote = product_id.split("-")
    return {
        "product_id": product_id, "price": number(price), "price_percentage_change_24h": "0",
        "volume_24h": "0", "volume_percentage_change_24h": "0",
        "base_increment": "0.00000001", "quote_increment": "0.01", "price_increment": "0.01",
        "quote_min_size": "1", "quote_max_size": "150000000", "base_min_size": "0.00000001",
        "base_max_size": "3400", "base_name": base, "quote_name": quote, "watched": False,
        "is_disabled": False, "new": False, "status": "online", "cancel_only": False,
        "limit_only": False, "post_only": False, "trading_disabled": False,
        "auction_mode": False, "product_type": "SPOT", "quote_currency_id": quote,
        "base_currency_id": base, "fcm_trading_session_details": None, "mid_market_price": "",
        "alias": "", "alias_to": [], "base_display_symbol": base,
        "quote_display_symbol": quote, "view_only": False, "price_increment_decimals": 2,
        "display_name": f"{base}-{quote}", "product_venue": "CBE",
        "approximate_quote_24h_volume": "0",
        "best_bid_price": "", "best_ask_price": "",
    }


def candle(start_s: int, o: float, h: float, lo: float, c: float, v: float) -> dict[str, str]:
    return {"start": str(start_s), "low": number(lo), "high": number(h), "open": number(o),
            "close": number(c), "volume": number(v)}


def rest_error(error: str, message: str, details: str = "") -> bytes:
    return orjson.dumps({"error": error, "error_details": details or message,
                         "message": message})


RATE_LIMITED = orjson.dumps({"errors": [{"id": "rate_limit_exceeded",
                                         "message": "Too many requests"}]})
