"""Backtest speed: `trader backtest` over 5 years of minutes, and 500 products over a year.

Run: .venv/bin/python -m benchmarks --only backtest [--quick]
Input: the real Coinbase 1m candles of tests/data (`figures.minutes`), tiled on consecutive
minutes to 5 years (2,628,000 bars) of one product, written as a candle file; for 500
products, each real file folded to 5-minute bars on the backtest's own grid
(`trader.research.data.align`), then tiled to a year (105,120 bars) from a staggered offset
and scaled by a per-product factor, so no two products move alike.

(a) One product, `sma_cross --interval 1m --fill next-open --fees 0,0 --slippage 0 --risk off
    --position-pct 99` (the peer-parity job; 99 %: at 100 % the compiled path refused every
    entry when this was written).
    `trader backtest` runs as a child process, once to warm the numba cache, then best of
    REPEATS: its `timings.run_s` (the bar loop; target < 0.25 s) against the engine path
    (`--path engine`) on the first ENGINE_BARS bars, scaled per bar (and run_s again with
    sma_cross deciding on its own 5m INTERVAL); and the whole process
    (start, read the file, compile check, run, JSON) against the same job in vectorbt, also a
    child process warmed once (read the CSV with pandas, two SMAs, crosses,
    `Portfolio.from_signals` at the next open). Target: ours faster.
(c) The same job in backtesting.py, in this process: its `Backtest.run` on the first PEER_BARS
    bars, scaled per bar to 5 years (its per-bar cost is flat: 10x the bars took 5-10x the
    time). The strategy as backtesting.py's docs write an SMA cross (`self.I` SMAs,
    `lib.crossover` in `next`, long only), and again with the crosses computed beforehand
    (the reference of tests/research/test_peers.py). Target: at least 100x faster.
(b) 500 products x 1 year of 5-minute bars, sma_cross and ema_rsi on 5m, the selector (top 3
    by quote volume over 60 5m bars) and the config's risk limits, `--fill live`: the Python
    API `run_compiled` (the CLI takes one --data file), its `run_s` and bars/s (product-bars).
    Baseline: the engine path on the same products with 1-minute bars (what it steps), over
    ENGINE_MINUTES minutes, scaled per minute to the year.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from figures import FIVE_YEARS_1M, REPO, Figure, minutes, report

from trader import config as cfg
from trader.kernels.series import CandleArrays
from trader.research.data import VOLUME, BarData, align, inferred_rules
from trader.research.options import BacktestOptions
from trader.signals.loader import LoadedStrategy, load_strategy
from trader.store.history import write_candle_file

PRODUCT = "BTC-USD"
FAST, SLOW = 10, 30
REPEATS = 3
ENGINE_BARS = 20_000  # the engine path's share of (a), scaled per bar
PEER_BARS = 100_000  # backtesting.py's share of (c), scaled per bar
PRODUCTS = 500
YEAR_5M = 365 * 288  # 105,120 five-minute bars
ENGINE_MINUTES = 1_500  # the engine path's share of (b) (past warm-up), scaled per minute
SOURCES = ("BTC-USD", "ETH-USD", "LTC-USD", "BTC-EUR")
JOB = ["sma_cross", "--interval", "1m", "--param", f"fast={FAST}", "--param", f"slow={SLOW}",
       "--fill", "next-open", "--fees", "0,0", "--slippage", "0", "--risk", "off",
       "--position-pct", "99"]

VBT_JOB = """
import sys

import pandas as pd
import vectorbt as vbt

path, fast, slow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
candles = pd.read_csv(path)
close, open_ = candles["close"], candles["open"]
spread = close.rolling(fast).mean() - close.rolling(slow).mean()
was = spread.shift(1)
entries = (was <= 0) & (spread > 0)
exits = (was >= 0) & (spread < 0)
# decided at a bar's close, filled at the next bar's open
portfolio = vbt.Portfolio.from_signals(open_, entries.shift(1, fill_value=False),
                                       exits.shift(1, fill_value=False), init_cash=10_000.0,
                                       fees=0.0, freq="1min")
print(int(portfolio.trades.count()))
"""


# ---- (a) and (c): one product, five years -------------------------------------------------

def trader_backtest(folder: Path, data: Path, *extra: str) -> tuple[float, dict]:
    """One `trader backtest` child process: its wall time and its JSON."""
    out = folder / "out.json"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "trader", "backtest", *JOB, "--data",
                           str(data), "--json", str(out), *extra], cwd=folder,
                          capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"trader backtest failed: {done.stderr.strip()[-500:]}")
    return wall_s, json.loads(out.read_text())


def vectorbt_job(folder: Path, data: Path) -> tuple[float, int]:
    """The same job in vectorbt, a child process: its wall time and its trade count."""
    script = folder / "vbt_job.py"
    script.write_text(VBT_JOB)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), str(data), str(FAST), str(SLOW)],
                          cwd=folder, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the vectorbt job failed: {done.stderr.strip()[-500:]}")
    return wall_s, int(done.stdout.split()[-1])


def backtesting_py_s(candles: CandleArrays, precomputed: bool = False) -> float:
    """backtesting.py's Backtest.run of the long-only SMA cross over these bars: as its docs
    write it (`self.I` SMAs, `backtesting.lib.crossover` in `next`), or with the crosses
    computed beforehand (the reference of test_peers; `next` only reads them)."""
    import pandas as pd
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    frame = pd.DataFrame({"Open": candles.open, "High": candles.high, "Low": candles.low,
                          "Close": candles.close, "Volume": candles.volume},
                         index=pd.to_datetime(candles.time_s, unit="s"))
    spread = (frame.Close.rolling(FAST).mean() - frame.Close.rolling(SLOW).mean()).to_numpy()
    was = np.r_[np.nan, spread[:-1]]
    up, down = (was <= 0) & (spread > 0), (was >= 0) & (spread < 0)

    def sma(values: np.ndarray, period: int) -> np.ndarray:
        return pd.Series(values).rolling(period).mean().to_numpy()

    class SmaCross(Strategy):
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, FAST)
            self.slow = self.I(sma, self.data.Close, SLOW)

        def next(self) -> None:
            if crossover(self.fast, self.slow) and not self.position:
                self.buy()
            elif crossover(self.slow, self.fast) and self.position:
                self.position.close()

    class Precomputed(Strategy):
        def init(self) -> None:
            self.up = self.I(lambda: up, name="up", plot=False)
            self.down = self.I(lambda: down, name="down", plot=False)

        def next(self) -> None:
            if self.up[-1] and not self.position:
                self.buy()
            elif self.down[-1] and self.position:
                self.position.close()

    backtest = Backtest(frame, Precomputed if precomputed else SmaCross, cash=1e13,
                        commission=0.0, trade_on_close=False, finalize_trades=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        backtest.run()
        return time.perf_counter() - started


def one_product(quick: bool) -> list[Figure]:
    bars = FIVE_YEARS_1M // 10 if quick else FIVE_YEARS_1M
    engine_bars, peer_bars = (ENGINE_BARS // 10, PEER_BARS // 10) if quick else (
        ENGINE_BARS, PEER_BARS)
    repeats = 1 if quick else REPEATS
    span = f"{bars:,} 1m bars"
    candles = minutes(PRODUCT, bars)
    with tempfile.TemporaryDirectory(prefix="bench_backtest_") as name:
        folder = Path(name)
        (folder / "config.toml").write_text(
            f'[daemon]\nstrategies_dir = "{REPO / "strategies"}"\n')
        data = folder / f"{PRODUCT}_1m.csv.gz"
        write_candle_file(data, candles)
        trader_backtest(folder, data)  # warms the numba cache: compile is not measured
        ours = [trader_backtest(folder, data) for _ in range(repeats)]
        wall_s = min(w for w, _ in ours)
        run_s = min(r["timings"]["run_s"] for _, r in ours)
        result = ours[0][1]
        # sma_cross on its own INTERVAL (5m decisions, fills on the 1m bars); the last
        # --interval given wins
        own = [trader_backtest(folder, data, "--interval", "5m") for _ in range(repeats)]
        own_run_s = min(r["timings"]["run_s"] for _, r in own)
        if result["bars"] < bars - 100 or not result["trades"]:
            raise SystemExit(f"trader backtest did not run the job: {result['bars']} bars, "
                             f"{len(result['trades'])} trades")
        engine_until = str(int(candles.time_s[engine_bars]))
        _, engine = trader_backtest(folder, data, "--path", "engine", "--until", engine_until)
        engine_s = engine["timings"]["run_s"] * bars / engine["bars"]
        vectorbt_job(folder, data)  # warms vectorbt's numba cache
        vbt = [vectorbt_job(folder, data) for _ in range(repeats)]
        vbt_s = min(w for w, _ in vbt)
    peer = minutes(PRODUCT, peer_bars)
    peer_s = backtesting_py_s(peer) * bars / peer_bars
    peer_fast_s = backtesting_py_s(peer, precomputed=True) * bars / peer_bars
    area = "backtest"
    peer_name = f"backtesting.py Backtest.run, {peer_bars:,} bars scaled per bar"
    return [
        Figure(area, f"sma_cross, 1 product, {span}: timings.run_s (compiled, warm cache, "
               f"best of {repeats}; {len(result['trades']):,} trades)", run_s, "s",
               ("<", 0.25), f"--path engine, {engine['bars']:,} bars scaled per bar",
               engine_s, higher_is_better=False),
        Figure(area, f"the same with sma_cross on its own 5m interval (fills on the 1m bars; "
               f"{len(own[0][1]['trades']):,} trades): timings.run_s", own_run_s, "s",
               ("<", 0.25)),
        Figure(area, f"the same, whole `trader backtest` process (start, read the candle "
               f"file, run, JSON), best of {repeats}", wall_s, "s", ("<", vbt_s),
               f"vectorbt process (pandas read_csv, SMAs, from_signals; {vbt[0][1]:,} trades)",
               vbt_s, higher_is_better=False),
        Figure(area, "the same process against backtesting.py (SMAs by self.I, "
               "lib.crossover in next, as its docs write it)", wall_s, "s",
               ("<=", peer_s / 100), peer_name, peer_s, higher_is_better=False),
        Figure(area, "the same, our timings.run_s against it", run_s, "s",
               ("<=", peer_s / 100), peer_name, peer_s, higher_is_better=False),
        Figure(area, "the same process against backtesting.py with the crosses computed "
               "beforehand (next only reads them)", wall_s, "s", ("<=", peer_fast_s / 100),
               peer_name, peer_fast_s, higher_is_better=False),
    ]


# ---- (b): 500 products, a year of 5-minute bars --------------------------------------------

def five_minute_sources() -> list[np.ndarray]:
    """Each real file on the backtest's 5-minute grid: [bars, 5] (open .. volume)."""
    folded = []
    for name in SOURCES:
        grid = align({name: minutes(name)}, 60, None, None, 300)
        rows = grid.bars[0]
        whole = len(rows) // 5 * 5
        five = rows[:whole].reshape(-1, 5, 5)
        folded.append(np.column_stack([five[:, 0, 0], five[:, :, 1].max(1),
                                       five[:, :, 2].min(1), five[:, -1, 3],
                                       five[:, :, VOLUME].sum(1)]))
    return folded


def many_products(bars_per_product: int, products: int = PRODUCTS,
                  base_s: int = 300) -> BarData:
    """`products` synthetic products from the real sources: staggered, scaled, tiled."""
    sources = five_minute_sources() if base_s == 300 else [
        np.column_stack(minutes(n).columns()[1:]) for n in SOURCES]
    bars = np.empty((products, bars_per_product, 5))
    for p in range(products):
        source = sources[p % len(sources)]
        index = (np.arange(bars_per_product) + p * 211) % len(source)
        bars[p] = source[index]
        bars[p, :, :VOLUME] *= 1.0 + (p % 97) / 100  # a price of its own, still in cents
        bars[p, :, :VOLUME] = np.round(bars[p, :, :VOLUME], 2)
    ids = tuple(f"P{p:03d}-USD" for p in range(products))
    time_s = 1_600_000_200 - 1_600_000_200 % 300 + base_s * np.arange(bars_per_product)
    return BarData(ids, base_s, time_s.astype(np.int64), bars, 0,
                   {pid: inferred_rules(pid, bars[i, :2000]) for i, pid in enumerate(ids)})


def two_strategies() -> list[LoadedStrategy]:
    """sma_cross and ema_rsi with their default parameters, deciding on 5-minute bars."""
    loaded = []
    for name in ("sma_cross", "ema_rsi"):
        one = load_strategy(REPO / "strategies" / f"{name}.py", name,
                            cfg.StrategyConfig(interval="5m"))
        if not isinstance(one, LoadedStrategy):
            raise SystemExit(f"strategy {name} failed to load: {one}")
        loaded.append(one)
    return loaded


def products_config() -> cfg.Config:
    """Defaults, with the selector ranking on 5-minute bars (the base bars of the run)."""
    config = cfg.Config()
    return replace(config, selector=replace(config.selector, interval="5m", window_bars=60))


def many_products_figures(quick: bool) -> list[Figure]:
    from trader.research.compiled import run_compiled
    from trader.research.driver import run_engine

    logging.getLogger("trader").setLevel(logging.ERROR)  # risk state lines, as the CLI does
    year = YEAR_5M // 10 if quick else YEAR_5M
    minutes_engine = ENGINE_MINUTES // 5 if quick else ENGINE_MINUTES
    config = products_config()
    strategies = two_strategies()
    options = BacktestOptions.from_paper(config.paper)
    data = many_products(year)
    run_compiled(many_products(2_000, 8), strategies, config, options)  # compile: untimed
    started = time.perf_counter()
    result = run_compiled(data, strategies, config, options)
    wall_s = time.perf_counter() - started
    run_s = result.timings["run_s"]
    del data
    engine_data = many_products(minutes_engine, base_s=60)
    engine = run_engine(engine_data, strategies, config, options)
    engine_s = engine.timings["run_s"] * year * 5 / minutes_engine  # a 5m bar is 5 minutes
    product_bars = PRODUCTS * year
    area = "backtest"
    name = (f"{PRODUCTS} products x {year:,} 5m bars, sma_cross + ema_rsi, selector top "
            f"{config.selector.top_n}, risk limits, --fill live ({len(result.trades):,} trades)")
    return [
        Figure(area, f"{name}: run_s (run_compiled, warm)", run_s, "s",
               baseline=f"engine path, 1m bars, {minutes_engine:,} minutes scaled to the year",
               baseline_value=engine_s, higher_is_better=False),
        Figure(area, "the same, product-bars per second of run_s", product_bars / run_s,
               "bars/s", baseline="engine path", baseline_value=product_bars / engine_s),
        Figure(area, "the same, run_compiled call (layout and result included)", wall_s, "s"),
    ]


def run(quick: bool) -> list[Figure]:
    return one_product(quick) + many_products_figures(quick)


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
