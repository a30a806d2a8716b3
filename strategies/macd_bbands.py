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
    bbands,
    columns,
    macd,
    njit,
    param_index,
    sma,
)

INTERVAL = "5m"
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
    # sma(1) is the close itself: its `prev` column is the previous close, for the exit cross
    return {"bb": bbands(p["bb_period"], p["bb_dev"]),
            "macd": macd(p["fast"], p["slow"], p["signal"]), "close": sma(1)}


C = columns(indicators, PARAMS)


def validate(p):
    return [] if p["fast"] < p["slow"] else [("fast", f"must be < slow ({p['slow']})")]


REASONS = {ENTER_LONG: "close below the lower band, MACD histogram rising",
           EXIT: "close crossed above the upper band"}


@njit(cache=True)
def decide(now, prev, bar, p):
    close, upper, middle, lower = bar[CLOSE], now[C.bb_upper], now[C.bb_middle], now[C.bb_lower]
    half = upper - middle
    # below the middle is bullish for a mean reverter: +1 at the lower band, -1 at the upper
    score = max(-1.0, min(1.0, (middle - close) / half)) if half > 0.0 else 0.0
    if close < lower and now[C.macd_hist] > prev[C.macd_hist]:
        stop = close - p[P.stop_dev] * half / p[P.bb_dev] if p[P.stop_dev] > 0.0 else NAN
        return score, ENTER_LONG, stop, middle
    if prev[C.close] <= prev[C.bb_upper] and close > upper:
        return score, EXIT, NAN, NAN
    return score, HOLD, NAN, NAN
