"""The compiled backtest: the engine's bar-close sequence over every base bar, in one loop.

A mirror of what the engine path steps in Python (trader.research.driver), built from the
same kernels: the higher intervals are folded from the base bars as kernels/candles.py folds
minutes (a partial first bar dropped), pushed into ring windows (kernels/ring.py layout),
the indicators stepped by the indicator step kernels (the bank's `step_rows` past
FEW_PRODUCTS products), the strategies' own compiled `decide` called through its address, the
selector's scores as market/selector.py computes them, and the trading core of
kernels/backtest_orders.py with the bar fills of kernels/backtest_fills.py. Per base bar t,
in order:

1. fills inside bar t (the execution's pass, then the trading core's on_fill per fill);
2. the close of bar t (clock time_s[t] + base_s): for each interval closing with it,
   ascending (the base first): push, selector, indicators and decisions, then, unless the
   bar is history (it opened before the first decided bar), exits at the base close and the
   signals; the execution's deferred events after all of them;
3. the tick: reprices and fallbacks of limit orders resting past the timeout.

Inputs are described at `run`; outputs are plain arrays (trades in a typed list).

Speed: a call to a compiled function costs two atomic reference counts per array argument
(as does an array view), which were most of a bar's time; so the close's steps are written
out in `run` and the trading helpers are called only when they have work. Bars coarser than
a minute may hold two events whose order decides the result: see backtest_orders.guess.
numba's cache keys `run` by this file alone: after editing backtest_orders.py or
backtest_fills.py (compiled into it), clear the cache (__pycache__/backtest*.nb*), or a
stale `run` is loaded.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from trader.kernels import backtest_fills as bf
from trader.kernels import backtest_orders as bo
from trader.kernels import bank as bk
from trader.kernels import indicators as ik
from trader.kernels.bank import step_rows
from trader.kernels.decide import ENTER_LONG, EXIT

TIME, OPEN, HIGH, LOW, CLOSE, VOLUME = 0, 1, 2, 3, 4, 5
FIELDS = 6
QUOTE_VOLUME, VOLATILITY, ABS_RETURN = 0, 1, 2
# signal records: (time, product, action, score, strategy)
S_TIME, S_PRODUCT, S_ACTION, S_SCORE, S_STRAT = range(5)
NSIG = 5
FEW_PRODUCTS = 8  # up to this many, indicators step product by product (step_one)


@njit(cache=True)
def _block_sum(a, lo, n):
    """numpy's pairwise summation of a block of at most 128: eight running sums."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r = a[lo : lo + 8].copy()
    i = 8
    while i < n - n % 8:
        for j in range(8):
            r[j] += a[lo + i + j]
        i += 8
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True)
def pairwise_sum(a, lo, n):
    """numpy's pairwise summation of a[lo:lo + n] (what ndarray.sum does on a row): halves
    (at a multiple of 8) summed apart down to blocks of 128. Not recursive: numba's cache
    leaves a recursive call unlinked."""
    if n <= 128:
        return _block_sum(a, lo, n)
    los, ns, stage = np.empty(64, np.int64), np.empty(64, np.int64), np.zeros(64, np.int64)
    sums = np.empty(64)
    los[0], ns[0], depth, n_sums = lo, n, 1, 0
    while depth:
        top = depth - 1
        size = ns[top]
        if size <= 128:
            sums[n_sums] = _block_sum(a, los[top], size)
            n_sums += 1
            depth -= 1
            continue
        half = size // 2
        half -= half % 8
        if stage[top] == 2:
            sums[n_sums - 2] += sums[n_sums - 1]
            n_sums -= 1
            depth -= 1
            continue
        if stage[top] == 0:
            los[depth], ns[depth] = los[top], half
        else:
            los[depth], ns[depth] = los[top] + half, size - half
        stage[top] += 1
        stage[depth] = 0
        depth += 1
    return sums[0]


@njit(cache=True)
def selector_score(buf, k, p, start, n, metric, work):
    """market/selector.py `scores` of product p's rows buf[k, p, start:start + n]."""
    if metric == QUOTE_VOLUME:
        for i in range(n):
            work[i] = buf[k, p, start + i, CLOSE] * buf[k, p, start + i, VOLUME]
        return pairwise_sum(work, 0, n)
    if metric == ABS_RETURN:
        return abs(buf[k, p, start + n - 1, CLOSE] / buf[k, p, start, CLOSE] - 1.0)
    m = n - 1
    for i in range(m):
        work[i] = (math.log(buf[k, p, start + i + 1, CLOSE])
                   - math.log(buf[k, p, start + i, CLOSE]))
    mean = pairwise_sum(work, 0, m) / m
    for i in range(m):
        d = work[i] - mean
        work[i] = d * d
    return math.sqrt(pairwise_sum(work, 0, m) / (m - 1))


@njit(cache=True)
def refresh_top(buf, head, count, k, n, top_n, metric, top, values, work):
    """Selector.refresh then mask, on window k: top[p] for the top_n best scores over full
    windows, ties to the earlier product (the selector's stable argsort). `values` is
    scratch of one float per product."""
    products = buf.shape[1]
    cap = buf.shape[2] // 2
    start = head[k] + cap - n
    top[:] = False
    if products <= top_n:  # every product with a full window is in the top N
        for p in range(products):
            top[p] = count[k, p] >= n
        return
    for p in range(products):
        values[p] = -np.inf
        if count[k, p] < n:
            continue
        if metric == QUOTE_VOLUME and n <= 128:
            v = _quote_volume_block(buf, k, p, start, n)
        else:
            v = selector_score(buf, k, p, start, n, metric, work)
        if np.isfinite(v):
            values[p] = v
    for _ in range(top_n):  # the best not yet taken, the earliest of equals
        best = -1
        for p in range(products):
            if not top[p] and values[p] > -np.inf and (best < 0 or values[p] > values[best]):
                best = p
        if best < 0:
            return
        top[best] = True


@njit(cache=True)
def _quote_volume_block(buf, k, p, start, n):
    """`pairwise_sum` of close * volume over at most 128 rows, the products made on the way
    (no scratch array, no call per product)."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += buf[k, p, start + i, CLOSE] * buf[k, p, start + i, VOLUME]
        return res
    r0 = buf[k, p, start, CLOSE] * buf[k, p, start, VOLUME]
    r1 = buf[k, p, start + 1, CLOSE] * buf[k, p, start + 1, VOLUME]
    r2 = buf[k, p, start + 2, CLOSE] * buf[k, p, start + 2, VOLUME]
    r3 = buf[k, p, start + 3, CLOSE] * buf[k, p, start + 3, VOLUME]
    r4 = buf[k, p, start + 4, CLOSE] * buf[k, p, start + 4, VOLUME]
    r5 = buf[k, p, start + 5, CLOSE] * buf[k, p, start + 5, VOLUME]
    r6 = buf[k, p, start + 6, CLOSE] * buf[k, p, start + 6, VOLUME]
    r7 = buf[k, p, start + 7, CLOSE] * buf[k, p, start + 7, VOLUME]
    i = 8
    while i < n - n % 8:
        b = start + i
        r0 += buf[k, p, b, CLOSE] * buf[k, p, b, VOLUME]
        r1 += buf[k, p, b + 1, CLOSE] * buf[k, p, b + 1, VOLUME]
        r2 += buf[k, p, b + 2, CLOSE] * buf[k, p, b + 2, VOLUME]
        r3 += buf[k, p, b + 3, CLOSE] * buf[k, p, b + 3, VOLUME]
        r4 += buf[k, p, b + 4, CLOSE] * buf[k, p, b + 4, VOLUME]
        r5 += buf[k, p, b + 5, CLOSE] * buf[k, p, b + 5, VOLUME]
        r6 += buf[k, p, b + 6, CLOSE] * buf[k, p, b + 6, VOLUME]
        r7 += buf[k, p, b + 7, CLOSE] * buf[k, p, b + 7, VOLUME]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += buf[k, p, start + i, CLOSE] * buf[k, p, start + i, VOLUME]
        i += 1
    return res


@njit(cache=True, inline="always")
def fold(agg, meta, k, bars, t, time_s, base_s, interval_s):
    """candles.fold_interval of base bar t into one interval: 1 when a complete bar closed
    (in agg), -1 when a partial one did (dropped), 0 while the interval runs."""
    ts = time_s[t]
    if meta[k, 0] < 0:
        meta[k, 0], meta[k, 1] = ts - ts % interval_s, 0
        for p in range(agg.shape[1]):
            agg[k, p, OPEN] = agg[k, p, HIGH] = agg[k, p, LOW] = agg[k, p, CLOSE] = np.nan
            agg[k, p, TIME], agg[k, p, VOLUME] = float(meta[k, 0]), 0.0
    for p in range(agg.shape[1]):
        close = bars[p, t, 3]
        if math.isnan(close):
            continue
        if math.isnan(agg[k, p, CLOSE]):
            agg[k, p, OPEN], agg[k, p, HIGH] = bars[p, t, 0], bars[p, t, 1]
            agg[k, p, LOW] = bars[p, t, 2]
        else:
            agg[k, p, HIGH] = max(agg[k, p, HIGH], bars[p, t, 1])
            agg[k, p, LOW] = min(agg[k, p, LOW], bars[p, t, 2])
        agg[k, p, CLOSE] = close
        agg[k, p, VOLUME] += bars[p, t, 4]
    meta[k, 1] += 1
    if (ts + base_s) % interval_s != 0:
        return 0
    meta[k, 0] = -1
    return 1 if meta[k, 1] * base_s == interval_s else -1


@njit(cache=True)
def step_one(kind, state, high, low, close, volume):
    """bank.step_rows for one slot and a row with a close: the kind's step kernel, its
    outputs padded with NaN to three. (Few products are stepped one by one: a step_rows
    call costs more reference counting than it saves.)"""
    nan = np.nan
    if kind == bk.SMA:
        return ik.sma_step(state, close), nan, nan
    if kind == bk.EMA:
        return ik.ema_step(state, close), nan, nan
    if kind == bk.RSI:
        return ik.rsi_step(state, close), nan, nan
    if kind == bk.MACD:
        return ik.macd_step(state, close)
    if kind == bk.BBANDS:
        return ik.bbands_step(state, close)
    if kind == bk.ATR:
        return ik.atr_step(state, high, low, close), nan, nan
    if kind == bk.STOCH:
        slow_k, slow_d = ik.stoch_step(state, high, low, close)
        return slow_k, slow_d, nan
    if kind == bk.ADX:
        return ik.adx_step(state, high, low, close), nan, nan
    if kind == bk.OBV:
        return ik.obv_step(state, close, volume), nan, nan
    if kind == bk.VWAP:
        return ik.vwap_step(state, high, low, close, volume), nan, nan
    return ik.volatility_step(state, close), nan, nan


@njit(cache=True)
def _grown(a):
    bigger = np.empty((2 * a.shape[0] + 16, a.shape[1]))
    bigger[: a.shape[0]] = a
    return bigger


@njit(cache=True)
def run(time_s, bars, first, base_s, ivs, iv_used, cap, sel_k, sel_n, top_n, metric,
        st_iv, decides, st_params, st_nparams, st_nbars, st_warm, st_cols, st_ncols,
        st_pinned, st_has_products, ind_iv, ind_kind, ind_col, ind_width, states, fresh,
        n_cols, cfg, rules, trades):
    """The bar loop. Base bars: time_s int64[T], bars float64[P, T, 5] (OHLCV), decisions
    traded from bar `first` on. Intervals ivs int64[NI] (ivs[0] == base_s), windows of `cap`
    bars. Selector on interval sel_k (-1: none) over sel_n bars, top_n, metric code.
    Strategies s: interval st_iv[s], decides[s], params st_params[s, :st_nparams[s]], BARS,
    warm-up bars, indicator columns st_cols[s, :st_ncols[s]] of their interval, pinned
    products. Indicators i: interval, bank kind, column, width, states[i] [P, L], fresh[i].
    cfg and rules: kernels/backtest_orders.py. Closed trades are appended to `trades`.

    Returns (equity, exposure, signals, pos, ordr, acct): equity and exposure at the close of
    every bar from `first`, signal rows (time, product, action, score, strategy), and the
    final state (kernels/backtest_orders.py).
    """
    n_p, n_t = bars.shape[0], bars.shape[1]
    cap = int(cap)
    n_i, n_s = ivs.shape[0], st_iv.shape[0]
    buf = np.full((n_i, n_p, 2 * cap, FIELDS), np.nan)
    head = np.zeros(n_i, np.int64)
    count = np.zeros((n_i, n_p), np.int64)
    agg = np.full((n_i, n_p, FIELDS), np.nan)
    meta = np.full((n_i, 2), -1, np.int64)
    now_all = np.full((n_i, n_p, max(1, n_cols.max())), np.nan)
    prev_all = now_all.copy()
    rows = np.empty((n_p, FIELDS))
    which = np.ones(n_p, np.bool_)
    top = np.zeros(n_p, np.bool_)
    values = np.empty(n_p)  # the selector's scores
    work = np.empty(max(2, sel_n))
    now_bufs = [np.empty(st_ncols[s]) for s in range(n_s)]
    prev_bufs = [np.empty(st_ncols[s]) for s in range(n_s)]
    bar_bufs = [np.empty((st_nbars[s], FIELDS)) for s in range(n_s)]
    params = [st_params[s, : st_nparams[s]].copy() for s in range(n_s)]
    decided = np.empty((n_s * n_p, 6))
    pos, ordr, acct, errs, evq = bo.new_state(n_p, cfg)
    fill_p = np.empty(n_p, np.int64)
    scratch = np.empty(n_p, np.int64)
    iv_banked = np.zeros(n_i, np.bool_)  # intervals with indicators, with strategies
    iv_decided = np.zeros(n_i, np.bool_)
    for i in range(ind_iv.shape[0]):
        iv_banked[ind_iv[i]] = True
    for s in range(n_s):
        iv_decided[st_iv[s]] = True
    fill_x = np.empty((n_p, 2))
    n_out = max(0, n_t - first)
    equity = np.empty(n_out)
    exposure = np.empty(n_out)
    signals = np.empty((1024, NSIG))
    n_sig = 0
    live_from = time_s[first] if first < n_t else time_s[-1] + 1
    closes = np.empty(n_p)
    held = np.zeros(n_p, np.bool_)
    for t in range(n_t):
        ts = float(time_s[t])
        # 1. fills inside bar t
        # the helpers take many arrays: each call costs two atomic reference counts per array,
        # so they are called only when there is something for them to do
        n_open = 0
        for p in range(n_p):
            if ordr[p, bo.O_STATE] == bo.OPEN:
                n_open += 1
        n_fill = 0
        if t >= first and n_open:
            n_fill = bf.bar_fills(pos, ordr, acct, cfg, bars, t, fill_p, fill_x, scratch)
        for i in range(n_fill):
            bf.apply_fill(pos, ordr, acct, cfg, evq, trades, fill_p[i], fill_x[i, 0],
                          fill_x[i, 1], ts, ts)
        for p in range(n_p):
            closes[p] = bars[p, t, 3]
        if evq[0, 0]:
            bf.drain(pos, ordr, acct, cfg, rules, errs, evq, closes, ts)
        # 2. the close of bar t, interval by interval
        now = ts + base_s
        for k in range(n_i):
            if k == 0:
                bar_open = ts
                if iv_used[0]:
                    for p in range(n_p):
                        rows[p, TIME] = ts
                        for f in range(5):
                            rows[p, 1 + f] = bars[p, t, f]
            elif not iv_used[k]:
                continue
            else:
                done = fold(agg, meta, k, bars, t, time_s, base_s, ivs[k])
                if done <= 0:
                    continue
                for p in range(n_p):
                    for f in range(FIELDS):
                        rows[p, f] = agg[k, p, f]
                bar_open = agg[k, 0, TIME]
            any_held = False
            for p in range(n_p):
                held[p] = pos[p, bo.P_HELD] != 0.0
                any_held = any_held or held[p]
            n_dec = 0
            if iv_used[k]:
                # the steps of a close written out here, not called: a call costs two atomic
                # reference counts per array argument, which were most of a bar's time
                h = head[k]  # ring.push_all
                for p in range(n_p):
                    for f in range(FIELDS):
                        buf[k, p, h, f] = buf[k, p, h + cap, f] = rows[p, f]
                    if math.isnan(rows[p, CLOSE]):
                        count[k, p] = 0
                    elif count[k, p] < cap:
                        count[k, p] += 1
                head[k] = 0 if h + 1 == cap else h + 1
                if k == sel_k:
                    if n_p <= top_n:  # every product with a full window is in the top N
                        for p in range(n_p):
                            top[p] = count[k, p] >= sel_n
                    else:
                        refresh_top(buf, head, count, k, sel_n, top_n, metric, top,
                                    values, work)
                if iv_banked[k]:  # IndicatorBank.on_bar_close
                    for p in range(n_p):
                        for c in range(now_all.shape[2]):
                            prev_all[k, p, c] = now_all[k, p, c]
                    for i in range(ind_iv.shape[0]):
                        if ind_iv[i] != k:
                            continue
                        if n_p > FEW_PRODUCTS:
                            step_rows(ind_kind[i], states[i], fresh[i], rows, which,
                                      now_all[k], ind_col[i], ind_width[i])
                            continue
                        col, width = ind_col[i], ind_width[i]
                        for p in range(n_p):
                            if math.isnan(rows[p, CLOSE]):  # a gap resets, as step_rows
                                states[i, p, :] = fresh[i]
                                for j in range(width):
                                    now_all[k, p, col + j] = np.nan
                                continue
                            out = step_one(ind_kind[i], states[i, p], rows[p, HIGH],
                                           rows[p, LOW], rows[p, CLOSE], rows[p, VOLUME])
                            for j in range(width):
                                now_all[k, p, col + j] = out[j]
                for s in range(n_s):  # StrategyRunner.on_bar_close
                    if st_iv[s] != k:
                        continue
                    nb = st_nbars[s]
                    nowb, prevb, barb = now_bufs[s], prev_bufs[s], bar_bufs[s]
                    start = head[k] + cap - nb
                    for p in range(n_p):
                        if st_has_products[s]:
                            allowed = st_pinned[s, p]
                        else:
                            allowed = top[p] or held[p] or sel_k < 0
                        if not allowed or count[k, p] < st_warm[s]:
                            continue
                        for j in range(st_ncols[s]):
                            col = st_cols[s, j]
                            nowb[j], prevb[j] = now_all[k, p, col], prev_all[k, p, col]
                        for r in range(nb):
                            for f in range(FIELDS):
                                barb[r, f] = buf[k, p, start + r, f]
                        score, action, stop, tp = decides[s](nowb, prevb, barb, params[s])
                        if action != ENTER_LONG and action != EXIT:
                            continue
                        decided[n_dec, 0], decided[n_dec, 1] = p, action
                        decided[n_dec, 2] = (0.0 if math.isnan(score)
                                             else min(1.0, max(-1.0, score)))
                        decided[n_dec, 3], decided[n_dec, 4], decided[n_dec, 5] = stop, tp, s
                        n_dec += 1
            for i in range(n_dec):
                if n_sig == signals.shape[0]:
                    signals = _grown(signals)
                signals[n_sig, S_TIME], signals[n_sig, S_PRODUCT] = bar_open, decided[i, 0]
                signals[n_sig, S_ACTION], signals[n_sig, S_SCORE] = decided[i, 1], decided[i, 2]
                signals[n_sig, S_STRAT] = decided[i, 5]
                n_sig += 1
            if bar_open < live_from:
                continue  # history: decided, never traded
            if k == 0 and any_held and cfg[bo.C_GUESS] != bo.NO_GUESS:
                for p in range(n_p):
                    if held[p]:
                        bo.guess(pos, ordr, acct, cfg, rules, evq, bars, t, ts, closes, p, now)
            if k == 0 and any_held:  # Trading.on_prices, called only for an exit
                exits = False
                for p in range(n_p):
                    if held[p] and not math.isnan(closes[p]):
                        pos[p, bo.P_MARK] = closes[p]
                        pos[p, bo.P_PEAK] = max(pos[p, bo.P_PEAK], closes[p])
                        exits = exits or bo.exit_reason(pos, cfg, p, closes[p], now) >= 0
                if exits:
                    bo.on_prices(pos, ordr, acct, cfg, rules, errs, evq, closes, now, scratch)
                else:
                    bo.risk_update(pos, acct, cfg, now)
                    bo.follow_risk(ordr, acct, evq)
            for i in range(n_dec):
                p = int(decided[i, 0])
                if decided[i, 1] == ENTER_LONG:
                    bo.enter(pos, ordr, acct, cfg, rules, errs, evq, closes, p, decided[i, 5],
                             decided[i, 3], decided[i, 4], now)
                elif pos[p, bo.P_HELD]:
                    bo.exit_position(pos, ordr, acct, evq, rules, closes, p, bo.R_STRATEGY, 0,
                                     now)
        if evq[0, 0]:
            bf.drain(pos, ordr, acct, cfg, rules, errs, evq, closes, now)
        # 3. the tick: reprices
        due = False
        for p in range(n_p):
            due = due or (ordr[p, bo.O_STATE] == bo.OPEN
                          and now - ordr[p, bo.O_SENT] >= cfg[bo.C_TIMEOUT])
        if due:
            bo.on_tick(ordr, cfg, evq, now, scratch)
        if evq[0, 0]:
            bf.drain(pos, ordr, acct, cfg, rules, errs, evq, closes, now)
        if t >= first:
            held_value = 0.0
            exposed = 0.0
            for p in range(n_p):
                if pos[p, bo.P_HELD]:
                    held_value += pos[p, bo.P_SIZE] * closes[p]
                    mark = pos[p, bo.P_MARK]
                    exposed += pos[p, bo.P_COST] if math.isnan(mark) else mark * pos[p, bo.P_SIZE]
                if ordr[p, bo.O_STATE] != bo.NONE and ordr[p, bo.O_KIND] == bo.ENTRY:
                    exposed += bo.unfilled_notional(pos, ordr, p)
            equity[t - first] = acct[bo.A_CASH] + held_value
            exposure[t - first] = exposed
    return equity, exposure, signals[:n_sig].copy(), pos, ordr, acct
