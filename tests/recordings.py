"""Loading the real captured Coinbase traffic and the protocol samples in tests/data."""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass

from tests.helpers import DATA

ADVANCED_TRADE = DATA / "recordings" / "cryptofeed_COINBASE_advanced_trade_2026-08-09.jsonl.gz"
SAMPLES = DATA / "coinbase_samples"


@dataclass(frozen=True, slots=True)
class Received:
    """One websocket frame as cryptofeed recorded it: local receive time and the raw text."""

    received_s: float
    conn: str
    data: bytes


@functools.cache
def advanced_trade_frames() -> tuple[Received, ...]:
    """Every received frame of the 2026-08-09 Advanced Trade capture, in order.

    The file is cryptofeed's format 2: one JSON record per line with a "t" kind ("header",
    "http", "connect", "send", "recv"); a "recv" record holds the raw frame text in "data".
    """
    frames = []
    with gzip.open(ADVANCED_TRADE, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record["t"] == "recv":
                frames.append(Received(record["ts"], record["conn"], record["data"].encode()))
    return tuple(frames)


@functools.cache
def advanced_trade_sent() -> tuple[bytes, ...]:
    """The frames cryptofeed sent during the capture (its subscribe messages)."""
    with gzip.open(ADVANCED_TRADE, "rt", encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines]
    return tuple(r["data"].encode() for r in records if r["t"] == "send")


def ws_samples() -> dict[str, bytes]:
    """The websocket message samples, by file name."""
    return {p.name: p.read_bytes() for p in sorted(SAMPLES.glob("ws_*.json"))}
