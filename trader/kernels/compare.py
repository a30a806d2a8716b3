"""Comparisons for strategies that decide the same whatever bar the data started at.

A running sum (SMA, the Bollinger middle band) carries rounding errors that depend on the bar
it started from. On a flat market two averages of the same prices are equal, and their
difference comes out as -3.6e-15 from one start and +3.6e-15 from another (SOL-USD,
2023-03-28 22:50), so a plain ``fast > slow`` crosses in one run and not in the other. These
helpers treat values within ``TIE_REL * |scale|`` of each other as equal (a tie): pass the
price (the close) for prices and averages of prices, the range for oscillators (100.0 for an
RSI), 1.0 for scores in [-1, 1]. A comparison with NaN is false, as with the operators.

TIE_REL = 1e-10 sits between the rounding noise and any difference worth a decision, as
measured on real 1-minute data:

* noise: SMA(3..500) and Bollinger bands stepped over 2.7 million bars (Binance BTC-USDT
  minutes, repeated to five years' worth) and the same stepped from 20,000 bars before the
  end differ by at most 1e-13 of the price; EMA(12, 26) and MACD(12, 26, 9) forget their
  start and agree to the bit 1000 bars after it.
* real differences: at 1e-10 of the price (a thousandth of a cent on BTC at $100,000) no cross
  of SMA(2, 3), SMA(10, 30), SMA(199, 499) or EMA(12, 26) moves over a million bars of five
  products; 2 of 10,073 EMA(2, 3) crosses do, of spreads below 1e-10 of the price. At 1e-9
  that is 10 crosses, and EMA(2, 3) crosses of the built-ins' own data start to move.

A band only moves a decision whose value lands inside it, and only ties land there: a flat
market makes two averages equal, never 1e-10 of the price apart.
"""

from __future__ import annotations

from numba import njit

# Strategies' compiled decide embed this value, and numba's cache notices a change of the
# strategy file only: after changing it, clear the numba cache.
TIE_REL = 1e-10


@njit(cache=True, error_model="numpy")
def above(a: float, b: float, scale: float) -> bool:
    """a > b by more than a tie (TIE_REL * |scale|)."""
    return a - b > TIE_REL * abs(scale)


@njit(cache=True, error_model="numpy")
def below(a: float, b: float, scale: float) -> bool:
    """a < b by more than a tie (TIE_REL * |scale|)."""
    return b - a > TIE_REL * abs(scale)


@njit(cache=True, error_model="numpy")
def crossed_above(was_a: float, was_b: float, a: float, b: float, scale: float) -> bool:
    """a was at most b (a tie included) and is now above it by more than a tie."""
    tie = TIE_REL * abs(scale)
    return was_a - was_b <= tie and a - b > tie


@njit(cache=True, error_model="numpy")
def crossed_below(was_a: float, was_b: float, a: float, b: float, scale: float) -> bool:
    """a was at least b (a tie included) and is now below it by more than a tie."""
    tie = TIE_REL * abs(scale)
    return was_b - was_a <= tie and b - a > tie
