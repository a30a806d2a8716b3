"""SMA crossover: enter long when the fast SMA crosses above the slow one, exit on the cross below.

Copy this file to start a strategy of your own; the API, with this file walked through line by
line, is strategies/README.md.
"""

from trader.strategy import (
    CLOSE,
    ENTER_LONG,
    EXIT,
    HOLD,
    NAN,
    Param,
    columns,
    crossed_above,
    crossed_below,
    njit,
    param_index,
    sma,
)

INTERVAL = "5m"
PARAMS = {
    "fast": Param(10, low=2, high=200),
    "slow": Param(30, low=3, high=500),
}
P = param_index(PARAMS)  # p[P.fast]: every function below reads a parameter this way


def indicators(p):
    return {"fast": sma(p[P.fast]), "slow": sma(p[P.slow])}


C = columns(indicators, PARAMS)  # now[C.fast]: positions of the indicator columns


def validate(p):
    return [] if p[P.fast] < p[P.slow] else [("fast", f"must be < slow ({p[P.slow]:g})")]


REASONS = {ENTER_LONG: "fast SMA crossed above slow SMA",
           EXIT: "fast SMA crossed below slow SMA"}


@njit(cache=True)
def decide(now, prev, bars, p):
    close, fast, slow = bars[-1, CLOSE], now[C.fast], now[C.slow]
    # score: the spread relative to price, saturating at 1 % (a tanh-like clip)
    score = max(-1.0, min(1.0, 100.0 * (fast - slow) / close))
    # SMAs within TIE_REL of the close are equal (a tie): crosses do not hang on rounding
    # errors; NaN compares false, so warm-up bars never cross
    if crossed_above(prev[C.fast], prev[C.slow], fast, slow, close):
        return score, ENTER_LONG, NAN, NAN
    if crossed_below(prev[C.fast], prev[C.slow], fast, slow, close):
        return score, EXIT, NAN, NAN
    return score, HOLD, NAN, NAN
