"""Top-N ranking over the market's windows, checked against plain numpy on real candles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trader.config import SelectorConfig
from trader.kernels import ring
from trader.market.candles import Market
from trader.market.selector import Selector
from trader.store.history import read_candle_file

DATA = Path(__file__).resolve().parents[1] / "data"
FILES = {"BTC-USD": "coinbase_BTC-USD_1m.csv.gz", "ETH-USD": "coinbase_ETH-USD_1m.csv.gz",
         "LTC-USD": "coinbase_LTC-USD_1m.csv.gz", "BTC-EUR": "coinbase_BTC-EUR_1m.csv.gz"}
START_S = 1522886400 + 6 * 3600  # 2018-04-05 06:00 UTC


def filled_market(bars: int, short: str | None = None) -> tuple[Market, dict[str, np.ndarray]]:
    """A market whose 1-minute windows hold `bars` real bars per product (fewer for `short`)."""
    market = Market(FILES, [60], capacity=200, grace_ms=0, warmup_bars=0)
    rows = {}
    for product, name in FILES.items():
        candles = read_candle_file(DATA / name).between(START_S, START_S + 20 * bars * 60)
        rows[product] = np.column_stack(candles.columns()).astype(np.float64)[:bars]
    window = market.windows[60]
    for k in range(bars):
        step = np.full((len(market._rows), 6), np.nan)
        for product, slot in market.slots.items():
            if product != short or k >= bars // 2:
                step[slot] = rows[product][k]
        ring.push_all(window.buf, window.head, window.count, step)
    return market, rows


@pytest.mark.parametrize("metric", ["quote_volume", "volatility", "abs_return"])
def test_ranks_follow_the_metric_over_the_window(metric):
    market, rows = filled_market(90)
    selector = Selector(SelectorConfig(top_n=2, metric=metric, interval="1m", window_bars=60),
                        market)
    selector.refresh()
    expected = {}
    for product, table in rows.items():
        close, volume = table[-60:, 4], table[-60:, 5]
        expected[product] = {"quote_volume": float((close * volume).sum()),
                             "volatility": float(np.diff(np.log(close)).std(ddof=1)),
                             "abs_return": abs(close[-1] / close[0] - 1)}[metric]
    for product, value in expected.items():
        assert selector.scores[product] == pytest.approx(value, rel=1e-12)
    order = sorted(expected, key=expected.get, reverse=True)
    assert [p for p, _ in sorted(selector.ranks.items(), key=lambda kv: kv[1])] == order
    assert selector.top() == order[:2]
    assert selector.allows(order[0]) and not selector.allows(order[2])


def test_a_product_without_a_full_window_is_not_ranked():
    market, _ = filled_market(90, short="LTC-USD")
    selector = Selector(SelectorConfig(top_n=3, window_bars=60), market)
    selector.refresh()
    assert "LTC-USD" not in selector.ranks and len(selector.ranks) == 3
    assert selector.snapshot()["products"]["LTC-USD"] == {"rank": None, "score": None}


def test_a_config_change_reranks_at_once():
    market, _ = filled_market(90)
    selector = Selector(SelectorConfig(top_n=1, metric="quote_volume", window_bars=60), market)
    selector.refresh()
    by_volume = selector.top()
    selector.apply(SelectorConfig(top_n=1, metric="abs_return", window_bars=30))
    assert selector.top() != [] and selector.section.metric == "abs_return"
    assert len(selector.ranks) == 4 and by_volume == ["BTC-USD"]


def test_ranking_refreshes_on_the_selectors_bar_close():
    market, _ = filled_market(90)
    selector = Selector(SelectorConfig(window_bars=60), market)
    selector.on_bar(60, START_S)
    assert selector.refreshed_s == START_S and selector.ranks
