"""`trader sim`: serve the simulator from candle files until interrupted."""

from __future__ import annotations

import asyncio
import re
import sys
from importlib import resources
from pathlib import Path

from trader.kernels.series import CandleArrays
from trader.simulator.server import Faults, Simulator
from trader.simulator.tape import tape_from_candles
from trader.store.history import read_candle_file

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
                     ('"wss://advanced-trade-ws-user.coinbase.com"', f'"{ws_url}"'),
                     ('"https://api.coinbase.com"', f'"{sim_url}"')):
        config_text = config_text.replace(old, new)
    return config_text


def build(sources: dict[str, Path], speed: float, faults: Faults,
          start_s: int | None = None) -> Simulator:
    """A simulator replaying each product's 1-minute candle file from `start_s`."""
    candles: dict[str, CandleArrays] = {p: read_candle_file(f) for p, f in sources.items()}
    if start_s is None:
        start_s = min(int(c.time_s[0]) for c in candles.values() if len(c))
    tapes = {p: tape_from_candles(p, c) for p, c in candles.items()}
    return Simulator(tapes, candles, start_s, speed=speed, faults=faults)


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
