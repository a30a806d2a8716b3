"""Mean reversion with trend confirmation: buy a close below the lower Bollinger band once the
MACD histogram turns up (the selling is losing pace); take profit at the middle band, exit when
the close crosses above the upper band."""

from trader.strategy import (
    CLOSE,
    ENTER_LONG,
    EXIT,
    HOLD,
    NAN,
    Param,
    above,
    bbands,
    below,
    columns,
    crossed_above,
    macd,
    njit,
    param_index,
)

INTERVAL = "5m"
BARS = 2  # the previous close too, for the exit cross
PARAMS = {
    "bb_period": Param(20, low=2, high=500),
    "bb_dev": Param(2.0, low=0.5, high=5.0),
    "fast": Param(12, low=2, high=200),
    "slow": Param(26, low=3, high=500),
    "signal": Param(9, low=2, high=200),
    "stop_dev": Param(1.0, low=0.0, high=10.0),  # stop this many stdevs below the close
}
P = param_index(PARAMS)


def indicators(p):
    return {"bb": bbands(p[P.bb_period], p[P.bb_dev]),
            "macd": macd(p[P.fast], p[P.slow], p[P.signal])}


C = columns(indicators, PARAMS)


def validate(p):
    return [] if p[P.fast] < p[P.slow] else [("fast", f"must be < slow ({p[P.slow]:g})")]


REASONS = {ENTER_LONG: "close below the lower band, MACD histogram rising",
           EXIT: "close crossed above the upper band"}


@njit(cache=True)
def decide(now, prev, bars, p):
    close, was = bars[-1, CLOSE], bars[-2, CLOSE]  # BARS = 2: this bar's close and the last
    upper, middle, lower = now[C.bb_upper], now[C.bb_middle], now[C.bb_lower]
    half = upper - middle
    # below the middle is bullish for a mean reverter: +1 at the lower band, -1 at the upper
    score = max(-1.0, min(1.0, (middle - close) / half)) if half > 0.0 else 0.0
    # values within TIE_REL of the close are equal: on a flat market the close is the bands'
    # (a running sum's) middle, and neither above nor below it
    if below(close, lower, close) and above(now[C.macd_hist], prev[C.macd_hist], close):
        stop = close - p[P.stop_dev] * half / p[P.bb_dev] if p[P.stop_dev] > 0.0 else NAN
        return score, ENTER_LONG, stop, middle
    if crossed_above(was, prev[C.bb_upper], close, upper, close):
        return score, EXIT, NAN, NAN
    return score, HOLD, NAN, NAN
