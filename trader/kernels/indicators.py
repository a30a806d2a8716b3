"""Indicator kernels: step/series pairs, the first nine equal to TA-Lib's defaults.

Conventions, shared by every indicator here:

* ``<name>_state(params) -> ndarray`` allocates a float64 state vector. ``<name>_step(state, ...)``
  consumes one bar, updates the state in place and returns the value(s) for that bar.
  ``<name>_series(arrays, params)`` returns the values of every bar.
* The arithmetic exists once: each indicator's bar is one pure function ``_<name>_next(carried...,
  inputs) -> (carried..., values)``, inlined by numba where it is called. The step loads the
  carried values from the state, calls it and stores them back; the series keeps them in local
  variables (registers) and loops the same function, so a batch value and a live value are equal
  bit for bit (tested). Rings of past inputs are arrays in both: views into the state for the
  step, into a state allocated once for the series. Series outputs come from ``new_output``.
* Many products: stack one state per product as the rows of a C-contiguous matrix,
  ``states = np.tile(rsi_state(14), (products, 1))``; a caller's ``@njit`` loop
  ``for i in range(states.shape[0]): out[i] = rsi_step(states[i], close[i])`` then steps every
  product in one kernel call (a row is a view, nothing is copied; several indicators can share
  the loop). Rows for the same indicator and parameters have the same length.
* Layout (written above each ``_state`` function): ``state[0]`` counts the bars stepped so far,
  the parameters follow (``state[1]`` is the period) and are never written again, then running
  values; rings of the last ``period`` inputs come last with their next-write slot kept in the
  state. Counts and slots are stored as float64. STOCH embeds the states of its two SMAs.
* Warm-up: a step returns NaN until TA-Lib's lookback (unstable period 0) has passed, so a
  series is NaN exactly where ``talib.<NAME>`` is. Inputs must be finite.
* Seeding is TA-Lib's: EMA starts from the SMA of its first ``period`` inputs; RSI, ATR and ADX
  start Wilder smoothing from the average (ADX: the sum) of their first period; MACD's fast EMA is
  seeded from the ``fast`` inputs ending where the slow EMA seeds, so its state keeps a ring of
  the last ``fast`` inputs until then.
* Float operations follow the installed TA-Lib (C library 0.8.1) operation for operation, as its
  FMA build (which it runs on FMA CPUs) does them, so SMA, EMA, RSI, MACD, BBANDS, ATR, STOCH,
  ADX and OBV equal it bit for bit there (tested; elsewhere to ~1e-15 relative). Its quirks: a
  running sum adds the new input before dropping the old one; EMA (also in MACD) updates as
  ``fma(x - ema, k, ema)``; ATR as ``fma(atr, w, tr * (1 - w))``, ``w = (period - 1) / period``;
  RSI multiplies its Wilder averages by ``1 / period`` and is 0 unless they sum above 0; ADX keeps
  the 1e-14 near-zero tests. FMA is the llvm intrinsic: explicit, no fastmath. BBANDS keeps
  TA-Lib 0.8's running sums of ``x - shift`` (shift: the first input), re-centred on the window's
  mean by an exact re-sum of the ring when cancellation looms or every 32 periods.
* VWAP (typical price) and volatility (sample stdev of log returns) have no TA-Lib twin: VWAP
  keeps compensated running sums, so rounding drift cannot build up; volatility sums its ring in
  two exact passes (O(period) per bar), so a flat window is exactly 0.

Modules: ``_averages`` (SMA, EMA, MACD, BBANDS), ``_wilder`` (RSI, ATR, ADX), ``_ranges``
(STOCH, OBV, VWAP, volatility), ``_indicator_base`` (shared helpers). numba's cache does not
see across modules: after editing one, clear ``NUMBA_CACHE_DIR`` (or ``__pycache__``).
"""

from __future__ import annotations

import numpy as np

from trader.kernels._averages import (
    bbands_series,
    bbands_state,
    bbands_step,
    ema_series,
    ema_state,
    ema_step,
    macd_series,
    macd_state,
    macd_step,
    sma_series,
    sma_state,
    sma_step,
)
from trader.kernels._ranges import (
    obv_series,
    obv_state,
    obv_step,
    stoch_series,
    stoch_state,
    stoch_step,
    volatility_series,
    volatility_state,
    volatility_step,
    vwap_series,
    vwap_state,
    vwap_step,
)
from trader.kernels._wilder import (
    adx_series,
    adx_state,
    adx_step,
    atr_series,
    atr_state,
    atr_step,
    rsi_series,
    rsi_state,
    rsi_step,
)

__all__ = [
    "adx_series", "adx_state", "adx_step",
    "atr_series", "atr_state", "atr_step",
    "bbands_series", "bbands_state", "bbands_step",
    "ema_series", "ema_state", "ema_step",
    "macd_series", "macd_state", "macd_step",
    "obv_series", "obv_state", "obv_step",
    "rsi_series", "rsi_state", "rsi_step",
    "sma_series", "sma_state", "sma_step",
    "stoch_series", "stoch_state", "stoch_step",
    "volatility_series", "volatility_state", "volatility_step",
    "vwap_series", "vwap_state", "vwap_step",
    "warmup",
]


def warmup() -> None:
    """Compile (or load from the numba cache) every kernel on tiny float64 inputs."""
    x = np.linspace(1.0, 2.0, 8)
    high, low, volume = x + 0.5, x - 0.5, np.ones(8)
    sma_series(x, 2)
    ema_series(x, 2)
    rsi_series(x, 2)
    macd_series(x, 2, 3, 2)
    bbands_series(x, 2, 2.0)
    atr_series(high, low, x, 2)
    stoch_series(high, low, x, 2, 2, 2)
    adx_series(high, low, x, 2)
    obv_series(x, volume)
    vwap_series(high, low, x, volume, 2)
    volatility_series(x, 2)
    sma_step(sma_state(2), 1.0)
    ema_step(ema_state(2), 1.0)
    rsi_step(rsi_state(2), 1.0)
    macd_step(macd_state(2, 3, 2), 1.0)
    bbands_step(bbands_state(2, 2.0), 1.0)
    atr_step(atr_state(2), 1.5, 0.5, 1.0)
    stoch_step(stoch_state(2, 2, 2), 1.5, 0.5, 1.0)
    adx_step(adx_state(2), 1.5, 0.5, 1.0)
    obv_step(obv_state(), 1.0, 1.0)
    vwap_step(vwap_state(2), 1.5, 0.5, 1.0, 1.0)
    volatility_step(volatility_state(2), 1.0)
