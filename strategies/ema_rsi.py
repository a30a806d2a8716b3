"""EMA golden/death cross confirmed by RSI: a cross only counts when momentum agrees with it."""

from trader.strategy import (
    CLOSE,
    ENTER_LONG,
    EXIT,
    HOLD,
    NAN,
    Param,
    above,
    below,
    columns,
    crossed_above,
    crossed_below,
    ema,
    njit,
    param_index,
    rsi,
)

INTERVAL = "5m"
PARAMS = {
    "fast": Param(12, low=2, high=200),
    "slow": Param(26, low=3, high=500),
    "rsi_period": Param(14, low=2, high=100),
    "rsi_buy": Param(50.0, low=0.0, high=100.0),  # enter only with RSI above this
    "rsi_sell": Param(50.0, low=0.0, high=100.0),  # exit only with RSI below this
}
P = param_index(PARAMS)


def indicators(p):
    return {"fast": ema(p[P.fast]), "slow": ema(p[P.slow]), "rsi": rsi(p[P.rsi_period])}


C = columns(indicators, PARAMS)


def validate(p):
    return [] if p[P.fast] < p[P.slow] else [("fast", f"must be < slow ({p[P.slow]:g})")]


REASONS = {ENTER_LONG: "golden EMA cross with RSI above rsi_buy",
           EXIT: "death EMA cross with RSI below rsi_sell"}


@njit(cache=True)
def decide(now, prev, bars, p):
    close, strength = bars[-1, CLOSE], now[C.rsi]
    score = (strength - 50.0) / 50.0
    # values within TIE_REL of the close (of 100 for the RSI) are equal: a tie is no side
    golden = crossed_above(prev[C.fast], prev[C.slow], now[C.fast], now[C.slow], close)
    death = crossed_below(prev[C.fast], prev[C.slow], now[C.fast], now[C.slow], close)
    if golden and above(strength, p[P.rsi_buy], 100.0):
        return score, ENTER_LONG, NAN, NAN
    if death and below(strength, p[P.rsi_sell], 100.0):
        return score, EXIT, NAN, NAN
    return score, HOLD, NAN, NAN
