"""Four steps, each able to veto: (1) trend filter: close above a long EMA; (2) momentum: RSI
in a band and MACD above zero; (3) volatility and volume gate: ATR within bounds, a traded bar;
(4) trigger: MACD crosses above its signal. Exit when the close crosses below the trend EMA.
Stop and target are ATR multiples from the close."""

from trader.strategy import (
    CLOSE,
    ENTER_LONG,
    EXIT,
    VOLUME,
    Param,
    above,
    atr,
    below,
    columns,
    crossed_above,
    crossed_below,
    ema,
    macd,
    njit,
    param_index,
    pipeline,
    rsi,
)

INTERVAL = "5m"
BARS = 2  # the previous close too, for the exit cross
PARAMS = {
    "trend": Param(100, low=10, high=1000),
    "rsi_period": Param(14, low=2, high=100),
    "rsi_low": Param(50.0, low=0.0, high=100.0),
    "rsi_high": Param(75.0, low=0.0, high=100.0),  # above: too stretched to chase
    "atr_period": Param(14, low=2, high=200),
    "atr_max_pct": Param(2.0, low=0.0, high=100.0),  # ATR above this % of price: too wild
    "stop_atr": Param(2.0, low=0.0, high=20.0),
    "target_atr": Param(3.0, low=0.0, high=50.0),
}
P = param_index(PARAMS)


def indicators(p):
    return {"trend": ema(p[P.trend]), "rsi": rsi(p[P.rsi_period]), "macd": macd(12, 26, 9),
            "atr": atr(p[P.atr_period])}


C = columns(indicators, PARAMS)


def validate(p):
    return [] if p[P.rsi_low] < p[P.rsi_high] else [("rsi_low", "must be < rsi_high")]


REASONS = {ENTER_LONG: "trend, momentum and volatility agree; MACD crossed above its signal",
           EXIT: "close crossed below the trend EMA"}


@njit(cache=True)
def trend(now, prev, bars, p):
    close = bars[-1, CLOSE]
    gap = (close - now[C.trend]) / now[C.trend]
    return above(close, now[C.trend], close), max(-1.0, min(1.0, 100.0 * gap))


@njit(cache=True)
def momentum(now, prev, bars, p):
    r, close = now[C.rsi], bars[-1, CLOSE]
    ok = (above(r, p[P.rsi_low], 100.0) and below(r, p[P.rsi_high], 100.0)
          and above(now[C.macd_macd], 0.0, close))
    return ok, (r - 50.0) / 50.0


@njit(cache=True)
def gate(now, prev, bars, p):
    atr_pct = 100.0 * now[C.atr] / bars[-1, CLOSE]
    calm = 1.0 - atr_pct / p[P.atr_max_pct] if p[P.atr_max_pct] > 0.0 else 0.0
    calm_enough = not above(atr_pct, p[P.atr_max_pct], 100.0)  # NaN: only in warm-up
    return calm_enough and bars[-1, VOLUME] > 0.0, max(-1.0, min(1.0, calm))


@njit(cache=True)
def trigger(now, prev, bars, p):
    crossed = crossed_above(prev[C.macd_macd], prev[C.macd_signal], now[C.macd_macd],
                            now[C.macd_signal], bars[-1, CLOSE])
    return crossed, 1.0 if crossed else 0.0


@njit(cache=True)
def trend_broken(now, prev, bars, p):
    # the cross, not the state: one exit signal per break rather than one per bar below
    close = bars[-1, CLOSE]
    return crossed_below(bars[-2, CLOSE], prev[C.trend], close, now[C.trend], close), 1.0


@njit(cache=True)
def decide(now, prev, bars, p):
    close, width = bars[-1, CLOSE], now[C.atr]
    steps = (trend(now, prev, bars, p), momentum(now, prev, bars, p), gate(now, prev, bars, p),
             trigger(now, prev, bars, p))
    return pipeline(steps, trend_broken(now, prev, bars, p),
                    close - p[P.stop_atr] * width, close + p[P.target_atr] * width)
