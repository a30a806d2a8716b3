"""Weighted score: RSI, moving-average and MACD sub-scores in [-1, 1], weighted and summed;
enter when the score crosses above `buy`, exit when it crosses below `sell`."""

from trader.strategy import (
    ENTER_LONG,
    EXIT,
    HOLD,
    NAN,
    Param,
    columns,
    crossed_above,
    crossed_below,
    ema,
    macd,
    njit,
    param_index,
    rsi,
)

INTERVAL = "5m"
PARAMS = {
    "rsi_period": Param(14, low=2, high=100),
    "ma_fast": Param(10, low=2, high=200),
    "ma_slow": Param(40, low=3, high=500),
    "w_rsi": Param(1.0, low=0.0, high=10.0),
    "w_ma": Param(1.0, low=0.0, high=10.0),
    "w_macd": Param(1.0, low=0.0, high=10.0),
    "ma_scale": Param(200.0, low=1.0, high=10000.0),  # 1 / (relative MA spread scoring 1.0)
    "macd_scale": Param(1000.0, low=1.0, high=100000.0),  # same for the MACD histogram
    "buy": Param(0.3, low=-1.0, high=1.0),
    "sell": Param(-0.3, low=-1.0, high=1.0),
}
P = param_index(PARAMS)


def indicators(p):
    return {"rsi": rsi(p[P.rsi_period]), "fast": ema(p[P.ma_fast]), "slow": ema(p[P.ma_slow]),
            "macd": macd(12, 26, 9)}


C = columns(indicators, PARAMS)


def validate(p):
    errors = []
    if p[P.w_rsi] + p[P.w_ma] + p[P.w_macd] <= 0.0:
        errors.append(("w_rsi", "the weights must not all be 0"))
    if p[P.sell] >= p[P.buy]:
        errors.append(("sell", f"must be < buy ({p[P.buy]:g})"))
    return errors


@njit(cache=True)
def clip(x):
    return max(-1.0, min(1.0, x))


@njit(cache=True)
def score_of(v, p):
    """The weighted score of one bar's indicator columns `v` (now or prev)."""
    rsi_s = (50.0 - v[C.rsi]) / 50.0  # contrarian: oversold scores up
    ma_s = clip((v[C.fast] - v[C.slow]) / v[C.slow] * p[P.ma_scale])  # trend follower
    macd_s = clip(v[C.macd_hist] / v[C.slow] * p[P.macd_scale])
    total = p[P.w_rsi] * rsi_s + p[P.w_ma] * ma_s + p[P.w_macd] * macd_s
    return total / (p[P.w_rsi] + p[P.w_ma] + p[P.w_macd])


@njit(cache=True)
def decide(now, prev, bars, p):
    score, was = score_of(now, p), score_of(prev, p)
    # crosses only: one signal per swing, not one per bar; a score within TIE_REL of a
    # threshold (the score's scale is 1) is on it, neither side
    if crossed_above(was, p[P.buy], score, p[P.buy], 1.0):
        return score, ENTER_LONG, NAN, NAN
    if crossed_below(was, p[P.sell], score, p[P.sell], 1.0):
        return score, EXIT, NAN, NAN
    return score, HOLD, NAN, NAN
