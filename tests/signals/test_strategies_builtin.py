"""The built-in strategies, run by StrategyRunner on real candles, against plain-Python rules.

Each reference below restates a strategy's rules from its docstring with the *_series kernels
and Python floats, bar by bar; the runner's signals must be the same bars, actions, levels and
scores. Every strategy must also enter and exit at least once on the real data.

The rules compare as the strategy API says (trader.kernels.compare, restated below in Python):
values within TIE_REL * scale of each other are a tie, neither above nor below.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from trader.config import StrategyConfig
from trader.kernels import indicators as k
from trader.kernels import ring
from trader.signals.loader import load_strategies
from trader.signals.runner import StrategyRunner
from trader.strategy import TIE_REL
from trader.types import Action

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = REPO / "tests" / "data"
FILES = {"BTC-USD": "coinbase_BTC-USD_1m.csv.gz", "ETH-USD": "coinbase_ETH-USD_1m.csv.gz",
         "LTC-USD": "coinbase_LTC-USD_1m.csv.gz"}
BARS = 3800
Decision = tuple[int, Action, float, float | None, float | None]  # bar, action, score, levels


@cache
def candles(product_id: str) -> np.ndarray:
    path = DATA_DIR / FILES[product_id]
    if not path.exists():
        pytest.fail(f"missing real candle data {path}", pytrace=False)
    with gzip.open(path, "rt") as f:
        return np.loadtxt(f, delimiter=",", skiprows=1, max_rows=BARS)


def clip(x: float) -> float:
    return max(-1.0, min(1.0, x))


def above(a: float, b: float, scale: float) -> bool:
    return a - b > TIE_REL * abs(scale)


def below(a: float, b: float, scale: float) -> bool:
    return b - a > TIE_REL * abs(scale)


def crossed_above(was_a: float, was_b: float, a: float, b: float, scale: float) -> bool:
    return was_a - was_b <= TIE_REL * abs(scale) and above(a, b, scale)


def crossed_below(was_a: float, was_b: float, a: float, b: float, scale: float) -> bool:
    return was_b - was_a <= TIE_REL * abs(scale) and below(a, b, scale)


def ref_sma_cross(rows: np.ndarray, p: dict) -> list[Decision]:
    c = rows[:, 4].copy()
    fast, slow = k.sma_series(c, p["fast"]), k.sma_series(c, p["slow"])
    out = []
    for t in range(1, len(c)):
        score = clip(100.0 * (fast[t] - slow[t]) / c[t])
        if crossed_above(fast[t - 1], slow[t - 1], fast[t], slow[t], c[t]):
            out.append((t, Action.ENTER_LONG, score, None, None))
        elif crossed_below(fast[t - 1], slow[t - 1], fast[t], slow[t], c[t]):
            out.append((t, Action.EXIT, score, None, None))
    return out


def ref_ema_rsi(rows: np.ndarray, p: dict) -> list[Decision]:
    c = rows[:, 4].copy()
    fast, slow = k.ema_series(c, p["fast"]), k.ema_series(c, p["slow"])
    r = k.rsi_series(c, p["rsi_period"])
    out = []
    for t in range(1, len(c)):
        golden = crossed_above(fast[t - 1], slow[t - 1], fast[t], slow[t], c[t])
        death = crossed_below(fast[t - 1], slow[t - 1], fast[t], slow[t], c[t])
        score = (r[t] - 50.0) / 50.0
        if golden and above(r[t], p["rsi_buy"], 100.0):
            out.append((t, Action.ENTER_LONG, score, None, None))
        elif death and below(r[t], p["rsi_sell"], 100.0):
            out.append((t, Action.EXIT, score, None, None))
    return out


def ref_macd_bbands(rows: np.ndarray, p: dict) -> list[Decision]:
    c = rows[:, 4].copy()
    upper, middle, lower = k.bbands_series(c, p["bb_period"], p["bb_dev"])
    hist = k.macd_series(c, p["fast"], p["slow"], p["signal"])[2]
    out = []
    for t in range(1, len(c)):
        half = upper[t] - middle[t]
        score = clip((middle[t] - c[t]) / half) if half > 0 else 0.0
        if below(c[t], lower[t], c[t]) and above(hist[t], hist[t - 1], c[t]):
            stop = c[t] - p["stop_dev"] * half / p["bb_dev"]
            out.append((t, Action.ENTER_LONG, score, stop, middle[t]))
        elif crossed_above(c[t - 1], upper[t - 1], c[t], upper[t], c[t]):
            out.append((t, Action.EXIT, score, None, None))
    return out


def ref_weighted_score(rows: np.ndarray, p: dict) -> list[Decision]:
    c = rows[:, 4].copy()
    r = k.rsi_series(c, p["rsi_period"])
    fast, slow = k.ema_series(c, p["ma_fast"]), k.ema_series(c, p["ma_slow"])
    hist = k.macd_series(c, 12, 26, 9)[2]
    weights = p["w_rsi"] + p["w_ma"] + p["w_macd"]

    def score(t: int) -> float:
        subs = ((50.0 - r[t]) / 50.0, clip((fast[t] - slow[t]) / slow[t] * p["ma_scale"]),
                clip(hist[t] / slow[t] * p["macd_scale"]))
        return (p["w_rsi"] * subs[0] + p["w_ma"] * subs[1] + p["w_macd"] * subs[2]) / weights

    out = []
    for t in range(1, len(c)):
        now, was = score(t), score(t - 1)
        if crossed_above(was, p["buy"], now, p["buy"], 1.0):
            out.append((t, Action.ENTER_LONG, now, None, None))
        elif crossed_below(was, p["sell"], now, p["sell"], 1.0):
            out.append((t, Action.EXIT, now, None, None))
    return out


def ref_four_step(rows: np.ndarray, p: dict) -> list[Decision]:
    h, lo, c, v = (rows[:, f].copy() for f in (2, 3, 4, 5))
    trend = k.ema_series(c, p["trend"])
    r = k.rsi_series(c, p["rsi_period"])
    m, sig, _ = k.macd_series(c, 12, 26, 9)
    a = k.atr_series(h, lo, c, p["atr_period"])
    out = []
    for t in range(1, len(c)):
        if crossed_below(c[t - 1], trend[t - 1], c[t], trend[t], c[t]):  # never vetoed
            out.append((t, Action.EXIT, -1.0, None, None))
            continue
        gap = (c[t] - trend[t]) / trend[t]
        atr_pct = 100.0 * a[t] / c[t]
        crossed = crossed_above(m[t - 1], sig[t - 1], m[t], sig[t], c[t])
        momentum = (above(r[t], p["rsi_low"], 100.0) and below(r[t], p["rsi_high"], 100.0)
                    and above(m[t], 0.0, c[t]))
        calm = not above(atr_pct, p["atr_max_pct"], 100.0) and v[t] > 0
        steps = [(above(c[t], trend[t], c[t]), clip(100.0 * gap)),
                 (momentum, (r[t] - 50.0) / 50.0),
                 (calm, clip(1.0 - atr_pct / p["atr_max_pct"])),
                 (crossed, 1.0 if crossed else 0.0)]
        if all(ok for ok, _ in steps):
            score = sum(s for _, s in steps) / 4
            out.append((t, Action.ENTER_LONG, score, c[t] - p["stop_atr"] * a[t],
                        c[t] + p["target_atr"] * a[t]))
    return out


REFERENCES: dict[str, Callable[[np.ndarray, dict], list[Decision]]] = {
    "sma_cross": ref_sma_cross, "ema_rsi": ref_ema_rsi, "macd_bbands": ref_macd_bbands,
    "weighted_score": ref_weighted_score, "four_step": ref_four_step,
}
CAPACITY = 300  # above every strategy's warm-up, below BARS


@pytest.fixture(scope="module")
def decisions() -> dict[str, dict[str, list[Decision]]]:
    """strategy -> product -> what the runner decided over the real candles, bar by bar."""
    configs = {name: StrategyConfig(interval="1m") for name in REFERENCES}
    loaded = load_strategies(REPO / "strategies", configs)
    assert not isinstance(loaded, list), loaded
    runner = StrategyRunner(loaded)
    slots = {product_id: slot for slot, product_id in enumerate(FILES)}
    data = np.stack([candles(p) for p in FILES])
    window = ring.new_window(len(FILES), CAPACITY)
    found: dict[str, dict[str, list[Decision]]] = {n: {p: [] for p in FILES} for n in REFERENCES}
    for t in range(data.shape[1]):
        ring.push_all(window.buf, window.head, window.count, np.ascontiguousarray(data[:, t]))
        bar_time_s = int(data[0, t, 0])  # the files' times differ; a live bar has one time
        for s in runner.on_bar_close(60, bar_time_s, window, slots):
            assert s.bar_time_ns == bar_time_s * 1_000_000_000
            found[s.strategy][s.product_id].append(
                (t, s.action, s.score, s.stop, s.take_profit))
    for name, strategy in loaded.items():
        found[name]["_warmup"] = strategy.warmup_bars  # type: ignore[assignment]
        found[name]["_params"] = dict(strategy.params)  # type: ignore[assignment]
    return found


def same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_decisions_equal_the_reference_rules_bar_by_bar(name, decisions):
    warmup, params = decisions[name]["_warmup"], decisions[name]["_params"]
    for product_id in FILES:
        got = decisions[name][product_id]
        # the runner decides once a product's window holds `warmup` bars: from bar warmup - 1
        want = [d for d in REFERENCES[name](candles(product_id), params) if d[0] >= warmup - 1]
        assert [(t, a) for t, a, *_ in got] == [(t, a) for t, a, *_ in want], product_id
        for g, w in zip(got, want, strict=True):
            assert all(same(x, y) for x, y in zip(g[2:], w[2:], strict=True)), (product_id, g, w)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_each_strategy_enters_and_exits_on_real_data(name, decisions):
    actions = [d[1] for p in FILES for d in decisions[name][p]]
    assert actions.count(Action.ENTER_LONG) > 0
    assert actions.count(Action.EXIT) > 0
