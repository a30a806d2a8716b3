"""`trader sim`: serve the simulator from candle files until interrupted."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from trader.kernels.series import CandleArrays
from trader.simulator.orders_api import USER_WS_PATH, PrivateConfig
from trader.simulator.server import Faults, Simulator
from trader.simulator.tape import tape_from_candles
from trader.store.history import empty_candles, read_candle_file

DAY_S = 86_400
_BUNDLED = re.compile(r"coinbase_([A-Z0-9]+-[A-Z0-9]+)_1m_.*\.csv\.gz$")


def bundled_sources() -> dict[str, Path]:
    """The real sample candles shipped with the package: product id -> file."""
    folder = Path(str(resources.files("trader") / "data"))
    return {m[1]: path for path in sorted(folder.glob("*.csv.gz"))
            if (m := _BUNDLED.search(path.name))}


def aimed_at(config_text: str, sim_url: str) -> str:
    """A config.toml text with its Coinbase URLs pointed at the simulator at `sim_url`."""
    ws_url = sim_url.replace("http://", "ws://") + "/"
    for old, new in (('"wss://advanced-trade-ws.coinbase.com"', f'"{ws_url}"'),
                     ('"wss://advanced-trade-ws-user.coinbase.com"',
                      f'"{ws_url.rstrip("/")}{USER_WS_PATH}"'),
                     ('"https://api.coinbase.com"', f'"{sim_url}"')):
        config_text = config_text.replace(old, new)
    return config_text


def build(sources: dict[str, Path], speed: float, faults: Faults,
          start_s: int | None = None, private: PrivateConfig | None = None) -> Simulator:
    """A simulator replaying each product's 1-minute candle file from `start_s`."""
    candles: dict[str, CandleArrays] = {p: read_candle_file(f) for p, f in sources.items()}
    if start_s is None:
        start_s = min(int(c.time_s[0]) for c in candles.values() if len(c))
    tapes = {p: tape_from_candles(p, c) for p, c in candles.items()}
    return Simulator(tapes, candles, start_s, speed=speed, faults=faults, private=private)


async def serve(simulator: Simulator, host: str, port: int) -> None:
    """Serve until cancelled; the first line on stdout is the base URL."""
    url = await simulator.start(host, port)
    print(url, flush=True)
    print(f"replaying {', '.join(simulator.tapes)} at {simulator.speed:g}x; Ctrl-C stops",
          file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await simulator.close()


def spawn(argv: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start a process that `serve`s (e.g. `trader sim`); returns it and its base URL."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"simulator did not start: {url!r}")
    return proc, url


class TiledCandles:
    """A 1-minute candle series repeated back to back up to `end_s`, cut per request.

    Tile k is the series shifted by k periods (its span rounded up to whole days), so years of
    candles for a backfill hold no more memory than the file. Quacks like CandleArrays where
    the simulator's REST handler needs it (`between`).
    """

    def __init__(self, base: CandleArrays, end_s: int) -> None:
        self.base = base
        self.first_s = int(base.time_s[0]) // DAY_S * DAY_S
        span_s = int(base.time_s[-1]) + 60 - self.first_s
        self.period_s = -(-span_s // DAY_S) * DAY_S
        self.end_s = end_s

    def between(self, start_s: int, end_s: int) -> CandleArrays:
        """The candles with start_s <= time_s < end_s."""
        start_s, end_s = max(start_s, self.first_s), min(end_s, self.end_s)
        if end_s <= start_s:
            return empty_candles()
        parts = []
        first_tile = (start_s - self.first_s) // self.period_s
        last_tile = (end_s - 1 - self.first_s) // self.period_s
        for tile in range(first_tile, last_tile + 1):
            shift = tile * self.period_s
            part = self.base.between(start_s - shift, end_s - shift)
            parts.append(CandleArrays(part.time_s + shift, *part.columns()[1:]))
        return CandleArrays(*(np.concatenate(c) for c in zip(*(p.columns() for p in parts),
                                                               strict=True)))


def build_tiled(sources: dict[str, Path], days: int, public_rps: float = 10.0,
                faults: Faults | None = None) -> Simulator:
    """A simulator whose REST candles repeat each file for `days` days, all of them closed.

    For backfills: exchange time starts where the tiles end; the websocket side replays the
    files' own trades, which are all in the past by then.
    """
    candles = {p: read_candle_file(f) for p, f in sources.items()}
    end_s = max(int(c.time_s[0]) // DAY_S * DAY_S for c in candles.values()) + days * DAY_S
    tiled = {p: TiledCandles(c, end_s) for p, c in candles.items()}
    tapes = {p: tape_from_candles(p, c) for p, c in candles.items()}
    return Simulator(tapes, tiled, end_s, faults=faults or Faults(), public_rps=public_rps)
