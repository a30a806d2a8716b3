"""The compiled backtest's trading core: orders, positions and risk on float64 state.

A mirror of trader.trading (orders, registry, risk) for trader.kernels.backtest's bar loop;
the execution (research/fills.py's bar fills) is kernels/backtest_fills.py. Conventions:

* Times are unix seconds (float64: exact for whole seconds). Money is float64 USD.
* `pos[P, NPOS]` one row per product: the registry's position (P_HELD 0/1 ...) and its mark.
* `ordr[P, NORD]` one row per product: the one order a product can have working (an entry
  needs nothing held and no entry working, an exit something held and no exit working).
  O_STATE: NONE, PENDING (sent, not yet accepted by the execution), OPEN.
* `acct[NACCT]` account and risk scalars, `cfg[NCFG]` costs and limits (see the names below),
  `rules[P, NRULE]` the products' increments and minimums.
* `errs` the circuit breaker's error times (a deque: errs[0] count, then times).
* `evq` the execution's deferred events (EV_ACCEPT, EV_CANCEL per product), drained in order
  after each call into the trading core, as the paper execution defers its reports.
* Quantization as money.py reads floats (their shortest decimal) onto a power-of-ten grid
  (`floor_to`, `ceil_to`); comparisons that are exact ties in Decimal are ties here too (a
  relative 1e-12 slack).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# positions
P_HELD, P_SIZE, P_COST, P_FEE, P_OPENED, P_PEAK, P_STOP, P_TP, P_STRAT, P_MARK, P_BOOK = range(11)
P_ENTRY_TIME, P_ENTRY_PRICE, P_REST, P_RESTED = 11, 12, 13, 14  # P_RESTED: a limit fill
NPOS = 15
# orders
O_STATE, O_KIND, O_MARKET, O_PRICE, O_SIZE, O_ATTEMPT, O_SENT, O_SEQ = range(8)
O_STRAT, O_REASON, O_STOP, O_TP, O_HOLD, O_FOLLOWED, O_REPRICING, O_FALLBACK = range(8, 16)
O_CANCELLING, O_AT_OPEN = 16, 17
NORD = 18
NONE, PENDING, OPEN = 0, 1, 2
ENTRY, EXIT = 0, 1
# exit reasons (trade records)
R_STRATEGY, R_STOP, R_TRAIL, R_TARGET, R_MAX_HOLD = range(5)
# account and risk
A_CASH, A_HOLDS, A_REALIZED, A_FEES, A_SEQ, A_BOOKS, A_DAY, A_DAY_START = range(8)
A_DAILY_HALT, A_DAILY_LOSS, A_STREAK, A_COOL_UNTIL, A_BREAK_UNTIL, A_STATE = range(8, 14)
A_CODE, A_RVAL, A_SEEN_STATE, A_SEEN_CODE, A_SEEN_RVAL, A_REJECTED = range(14, 20)
A_RESTS, A_AMBIGUOUS = 20, 21
NACCT = 22
ACTIVE, REDUCING, HALTED = 0, 1, 2
WHY_NONE, WHY_KILL, WHY_BREAKER, WHY_DAILY, WHY_COOLDOWN = range(5)
# config
C_MAKER, C_TAKER, C_SLIP, C_NEXT_OPEN, C_RISK_ON, C_POS_PCT, C_KILL, C_MAX_POS = range(8)
C_MAX_OPEN, C_MAX_EXPO, C_MAX_ORDER, C_DAILY, C_MAX_LOSSES, C_COOLDOWN = range(8, 14)
C_RISK_FRAC, C_STOP_PCT, C_TP_PCT, C_TRAIL_PCT, C_MAX_HOLD, C_BRK_ERRS = range(14, 20)
C_BRK_WIN, C_BRK_HALT, C_TIMEOUT, C_MAX_REPRICES, C_FALLBACK_MARKET, C_CASH0 = range(20, 26)
C_GUESS = 26  # bars coarser than a minute: NO_GUESS, PESSIMISTIC or OPTIMISTIC (see `guess`)
NCFG = 27
NO_GUESS, PESSIMISTIC, OPTIMISTIC = 0, 1, 2
# product rules: increments as scales (1 / increment: a power of ten) and the minimums
U_PRICE_SCALE, U_BASE_SCALE, U_BASE_MIN, U_BASE_MAX, U_QUOTE_MIN, U_TICK, U_DECIMALS = range(7)
NRULE = 7
# deferred execution events
EV_ACCEPT, EV_CANCEL = 0, 1
# trade records: a float64 row each
T_PRODUCT, T_ENTRY_TIME, T_EXIT_TIME, T_ENTRY_PRICE, T_EXIT_PRICE, T_SIZE = range(6)
T_PNL, T_FEES, T_REASON, T_STRAT = range(6, 10)
NTRADE = 10

SLACK = 1e-12  # relative: float ties of Decimal-exact equalities
DAY_S = 86_400.0


@njit(cache=True)
def floor_to(x, scale):
    """money.quantize_price of a buy: the float `x` read as its shortest decimal (as
    money.to_decimal reads it), floored to the grid of 1 / scale (a power of ten)."""
    n = round(x * scale)
    grid = n / scale  # the float of the decimal n / scale: division rounds correctly
    return grid if grid <= x else (n - 1) / scale


@njit(cache=True)
def ceil_to(x, scale):
    """money.quantize_price of a sell: as floor_to, rounded up."""
    n = round(x * scale)
    grid = n / scale
    return grid if grid >= x else (n + 1) / scale


@njit(cache=True, inline="always")
def bid(rules, closes, p):
    """The backtest quote's bid: one tick under the close, rounded to the tick's decimals as
    numpy rounds (driver.touch)."""
    return np.round(closes[p] - rules[p, U_TICK], int(rules[p, U_DECIMALS]))


@njit(cache=True, inline="always")
def ask(rules, closes, p):
    """The backtest quote's ask: one tick over the close, rounded as `bid`."""
    return np.round(closes[p] + rules[p, U_TICK], int(rules[p, U_DECIMALS]))


@njit(cache=True)
def steps_down(x, unit):
    """floor(x / unit) of money._steps_down, an exact integral quotient kept as such."""
    q = x / unit
    n = round(q)  # a quotient within float noise (8 ulps) of a whole number is one
    return n if abs(q - n) <= 8 * 2.2e-16 * max(1.0, q) else math.floor(q)


@njit(cache=True)
def new_state(n_products, cfg):
    """(pos, ordr, acct, errs, evq) of a fresh run."""
    pos = np.zeros((n_products, NPOS))
    pos[:, P_MARK] = np.nan
    pos[:, P_BOOK] = -1.0
    pos[:, P_REST] = -1.0
    ordr = np.zeros((n_products, NORD))
    acct = np.zeros(NACCT)
    acct[A_CASH] = cfg[C_CASH0]
    acct[A_DAY] = -1.0
    errs = np.zeros(int(cfg[C_BRK_ERRS]) + 2)
    evq = np.zeros((8 * n_products + 8, 2), np.int64)
    return pos, ordr, acct, errs, evq


# ---- the registry's views ------------------------------------------------------------------

@njit(cache=True, inline="always")
def net_pnl(pos, acct):
    """Registry.pnl().net: realized + unrealized (held at the mark; 0 unmarked) - fees."""
    total = acct[A_REALIZED] - acct[A_FEES]
    for p in range(pos.shape[0]):
        if pos[p, P_HELD] and not math.isnan(pos[p, P_MARK]):
            total += pos[p, P_MARK] * pos[p, P_SIZE] - pos[p, P_COST]
    return total


@njit(cache=True)
def open_count(pos, ordr):
    """Products held or with an entry order working."""
    n = 0
    for p in range(pos.shape[0]):
        if pos[p, P_HELD] or (ordr[p, O_STATE] != NONE and ordr[p, O_KIND] == ENTRY):
            n += 1
    return n


@njit(cache=True, inline="always")
def exposure(pos, ordr):
    """Held at the mark (else at cost) plus the unfilled notional of working entries."""
    total = 0.0
    for p in range(pos.shape[0]):
        if pos[p, P_HELD]:
            mark = pos[p, P_MARK]
            total += pos[p, P_COST] if math.isnan(mark) else mark * pos[p, P_SIZE]
        if ordr[p, O_STATE] != NONE and ordr[p, O_KIND] == ENTRY:
            total += unfilled_notional(pos, ordr, p)
    return total


@njit(cache=True, inline="always")
def unfilled_notional(pos, ordr, p):
    """Registry._unfilled_notional of p's entry: at its limit (a market one at the mark)."""
    price = ordr[p, O_PRICE]
    if ordr[p, O_MARKET]:
        price = 0.0 if math.isnan(pos[p, P_MARK]) else pos[p, P_MARK]
    return ordr[p, O_SIZE] * price


# ---- risk -----------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def risk_update(pos, acct, cfg, now):
    """RiskManager.update at `now`: the daily loss first (a new UTC day takes its start),
    then the state in the order kill switch, breaker, daily loss, cooldown."""
    day = math.floor(now / DAY_S)
    pnl = net_pnl(pos, acct)
    if day != acct[A_DAY]:
        acct[A_DAY], acct[A_DAY_START], acct[A_DAILY_HALT] = day, pnl, 0.0
    loss = acct[A_DAY_START] - pnl
    if not acct[A_DAILY_HALT] and loss >= cfg[C_DAILY] * (1.0 - SLACK):
        acct[A_DAILY_HALT], acct[A_DAILY_LOSS] = 1.0, loss
    if cfg[C_KILL]:
        state, code, val = HALTED, WHY_KILL, 0.0
    elif now < acct[A_BREAK_UNTIL]:
        state, code, val = HALTED, WHY_BREAKER, acct[A_BREAK_UNTIL]
    elif acct[A_DAILY_HALT]:
        state, code, val = HALTED, WHY_DAILY, acct[A_DAILY_LOSS]
    elif now < acct[A_COOL_UNTIL]:
        state, code, val = REDUCING, WHY_COOLDOWN, acct[A_COOL_UNTIL]
    else:
        state, code, val = ACTIVE, WHY_NONE, 0.0
    acct[A_STATE], acct[A_CODE], acct[A_RVAL] = state, code, val
    return state


@njit(cache=True)
def record_trade(pos, acct, cfg, pnl, now):
    """RiskManager.record_trade: losses in a row start a cooldown of new entries."""
    acct[A_STREAK] = acct[A_STREAK] + 1.0 if pnl < 0.0 else 0.0
    if acct[A_STREAK] >= cfg[C_MAX_LOSSES]:
        acct[A_COOL_UNTIL] = now + cfg[C_COOLDOWN]
        acct[A_STREAK] = 0.0
    risk_update(pos, acct, cfg, now)


@njit(cache=True)
def record_error(pos, acct, cfg, errs, now):
    """RiskManager.record_error: too many within the window trip the breaker."""
    n = int(errs[0])
    errs[1 + n] = now
    n += 1
    drop = 0
    while drop < n and errs[1 + drop] <= now - cfg[C_BRK_WIN]:
        drop += 1
    for i in range(drop, n):
        errs[1 + i - drop] = errs[1 + i]
    n -= drop
    if n >= cfg[C_BRK_ERRS]:
        acct[A_BREAK_UNTIL] = now + cfg[C_BRK_HALT]
        n = 0
    errs[0] = n
    risk_update(pos, acct, cfg, now)


@njit(cache=True, inline="always")
def follow_risk(ordr, acct, evq):
    """Trading._follow_risk: on a change of (state, reason) to HALTED, cancel every order."""
    seen = (acct[A_STATE], acct[A_CODE], acct[A_RVAL])
    if seen == (acct[A_SEEN_STATE], acct[A_SEEN_CODE], acct[A_SEEN_RVAL]):
        return
    acct[A_SEEN_STATE], acct[A_SEEN_CODE], acct[A_SEEN_RVAL] = seen
    if acct[A_STATE] == HALTED:
        cancel_all(ordr, evq)


@njit(cache=True)
def cancel_all(ordr, evq):
    """Trading.cancel_all: every working order is cancelled and no longer followed (in
    product order: cancels only release holds, in any order the same)."""
    for p in range(ordr.shape[0]):
        if ordr[p, O_STATE] != NONE and not ordr[p, O_CANCELLING]:
            ordr[p, O_FOLLOWED] = 0.0
            ordr[p, O_CANCELLING] = 1.0
            push_event(evq, EV_CANCEL, p)


@njit(cache=True, inline="always")
def sort_by(table, col, out, n):
    """Sort the products out[:n] by table[product, col] (distinct), in place: insertion (few;
    no view of the column: each would cost two atomic reference counts)."""
    for i in range(1, n):
        p = out[i]
        j = i - 1
        while j >= 0 and table[out[j], col] > table[p, col]:
            out[j + 1] = out[j]
            j -= 1
        out[j + 1] = p


@njit(cache=True, inline="always")
def by_seq(ordr, state, out):
    """Products whose order is in `state`, in the order the orders were sent, into out;
    returns how many."""
    n = 0
    for p in range(ordr.shape[0]):
        if ordr[p, O_STATE] == state:
            out[n] = p
            n += 1
    if n > 1:
        sort_by(ordr, O_SEQ, out, n)
    return n


@njit(cache=True)
def push_event(evq, kind, p):
    n = evq[0, 0]
    evq[1 + n, 0], evq[1 + n, 1] = kind, p
    evq[0, 0] = n + 1


# ---- entries and exits ----------------------------------------------------------------------

@njit(cache=True)
def entry_notional(acct, cfg, pos, closes, price, stop):
    """RiskManager.entry_notional (risk on), or position_pct of equity less the taker fee."""
    if not cfg[C_RISK_ON]:
        return equity(acct, pos, closes) * cfg[C_POS_PCT] / 100.0 / (1.0 + cfg[C_TAKER])
    cap = min(cfg[C_MAX_POS], cfg[C_MAX_ORDER])
    if math.isnan(stop) and cfg[C_STOP_PCT]:
        stop = price * (1.0 - cfg[C_STOP_PCT] / 100.0)
    if cfg[C_RISK_FRAC] == 0.0 or math.isnan(stop):
        return cap
    if stop >= price:
        return 0.0
    size = equity(acct, pos, closes) * cfg[C_RISK_FRAC] / (price - stop)
    return min(size * price, cap)


@njit(cache=True, inline="always")
def equity(acct, pos, closes):
    """The execution's equity: USD plus every holding at its last close."""
    total = acct[A_CASH]
    for p in range(pos.shape[0]):
        if pos[p, P_HELD]:
            total += pos[p, P_SIZE] * closes[p]
    return total


@njit(cache=True)
def _size_ok(rules, p, size, price):
    """money's size and notional checks of an order of `size` at `price`."""
    return (size > 0.0 and size >= rules[p, U_BASE_MIN] * (1.0 - SLACK)
            and size <= rules[p, U_BASE_MAX]
            and size * price >= rules[p, U_QUOTE_MIN] * (1.0 - SLACK))


@njit(cache=True)
def enter(pos, ordr, acct, cfg, rules, errs, evq, closes, p, strat, stop, tp, now):
    """Trading._enter: a post-only limit buy at the bid (the close), sized and risk-checked.
    Returns 1 if an order was sent."""
    price = floor_to(bid(rules, closes, p), rules[p, U_PRICE_SCALE])  # at the bid
    notional = entry_notional(acct, cfg, pos, closes, price, stop)
    if price <= 0.0 or not notional > 0.0:
        return 0
    base_scale = rules[p, U_BASE_SCALE]
    size = steps_down(notional, price / base_scale) / base_scale
    if not _size_ok(rules, p, size, price):
        return 0
    if not check_entry(pos, ordr, acct, cfg, p, size * price, now):
        follow_risk(ordr, acct, evq)
        return 0
    follow_risk(ordr, acct, evq)
    send(ordr, acct, evq, p, ENTRY, 0, price, size, 0, strat, R_STRATEGY, stop, tp, now)
    return 1


@njit(cache=True)
def check_entry(pos, ordr, acct, cfg, p, notional, now):
    """RiskManager.check_entry: True when allowed (every check in the live order)."""
    if risk_update(pos, acct, cfg, now) != ACTIVE:
        return False
    if pos[p, P_HELD] or (ordr[p, O_STATE] != NONE and ordr[p, O_KIND] == ENTRY):
        return False
    if notional <= 0.0 or notional > cfg[C_MAX_ORDER] or notional > cfg[C_MAX_POS]:
        return False
    if open_count(pos, ordr) >= cfg[C_MAX_OPEN]:
        return False
    return exposure(pos, ordr) + notional <= cfg[C_MAX_EXPO] * (1.0 + SLACK)


@njit(cache=True)
def exit_position(pos, ordr, acct, evq, rules, closes, p, reason, urgent, now):
    """Trading._exit: a market sell for urgent reasons, else a post-only limit at the ask."""
    if not pos[p, P_HELD] or (ordr[p, O_STATE] != NONE and ordr[p, O_KIND] == EXIT):
        return 0
    size = pos[p, P_SIZE]
    if urgent:
        price = closes[p]
    else:
        price = ceil_to(ask(rules, closes, p), rules[p, U_PRICE_SCALE])  # at the ask
    if not _size_ok(rules, p, size, price):
        return 0
    send(ordr, acct, evq, p, EXIT, urgent, price, size, 0, pos[p, P_STRAT], reason, np.nan,
         np.nan, now)
    return 1


@njit(cache=True)
def send(ordr, acct, evq, p, kind, market, price, size, attempt, strat, reason, stop, tp, now):
    """Trading._send: the order is recorded (PENDING) and its acceptance deferred."""
    ordr[p, :] = 0.0
    ordr[p, O_STATE], ordr[p, O_KIND], ordr[p, O_MARKET] = PENDING, kind, market
    ordr[p, O_PRICE], ordr[p, O_SIZE], ordr[p, O_ATTEMPT] = price, size, attempt
    ordr[p, O_SENT], ordr[p, O_SEQ], ordr[p, O_STRAT] = now, acct[A_SEQ], strat
    ordr[p, O_REASON], ordr[p, O_STOP], ordr[p, O_TP], ordr[p, O_FOLLOWED] = reason, stop, tp, 1.0
    acct[A_SEQ] += 1.0
    push_event(evq, EV_ACCEPT, p)


# ---- protective exits and reprices ----------------------------------------------------------

@njit(cache=True)
def guess(pos, ordr, acct, cfg, rules, evq, bars, t, t_s, closes, p, now):
    """A bar coarser than a minute whose range holds both a stop (or trailing) level and the
    target of p's position, or its resting entry's fill and the target (reached before the
    fill, or after): the order inside it is unknown. Counted; PESSIMISTIC exits as the stop
    would have (market, at the next open; after a fill, nothing: the target came first),
    OPTIMISTIC as the target would have (a limit sell at the ask). A fill and the stop are
    no guess: a long's limit is crossed before any stop under it."""
    entry = pos[p, P_ENTRY_PRICE]
    stop = pos[p, P_STOP]
    if math.isnan(stop) and cfg[C_STOP_PCT]:
        stop = entry * (1.0 - cfg[C_STOP_PCT] / 100.0)
    reason = R_STOP
    if cfg[C_TRAIL_PCT]:
        trail = pos[p, P_PEAK] * (1.0 - cfg[C_TRAIL_PCT] / 100.0)
        if math.isnan(stop) or trail > stop:
            stop, reason = trail, R_TRAIL
    target = pos[p, P_TP]
    if math.isnan(target) and cfg[C_TP_PCT]:
        target = entry * (1.0 + cfg[C_TP_PCT] / 100.0)
    low, high = bars[p, t, 2], bars[p, t, 1]
    stopped = not math.isnan(stop) and low <= stop
    reached = not math.isnan(target) and high >= target
    filled_here = pos[p, P_OPENED] == t_s and pos[p, P_RESTED]
    if not (reached and (stopped or filled_here)):
        return
    acct[A_AMBIGUOUS] += 1.0
    if cfg[C_GUESS] == PESSIMISTIC and stopped:
        exit_position(pos, ordr, acct, evq, rules, closes, p, reason, 1, now)
    elif cfg[C_GUESS] == OPTIMISTIC and reached:
        exit_position(pos, ordr, acct, evq, rules, closes, p, R_TARGET, 0, now)


@njit(cache=True, inline="always")
def exit_reason(pos, cfg, p, price, now):
    """RiskManager.exit_reason without the strategy: -1 for none."""
    stop = pos[p, P_STOP]
    if math.isnan(stop) and cfg[C_STOP_PCT]:
        stop = pos[p, P_ENTRY_PRICE] * (1.0 - cfg[C_STOP_PCT] / 100.0)
    if not math.isnan(stop) and price <= stop * (1.0 + SLACK):
        return R_STOP
    if cfg[C_TRAIL_PCT]:
        trail = max(pos[p, P_PEAK], price) * (1.0 - cfg[C_TRAIL_PCT] / 100.0)
        if price <= trail * (1.0 + SLACK):
            return R_TRAIL
    target = pos[p, P_TP]
    if math.isnan(target) and cfg[C_TP_PCT]:
        target = pos[p, P_ENTRY_PRICE] * (1.0 + cfg[C_TP_PCT] / 100.0)
    if not math.isnan(target) and price >= target * (1.0 - SLACK):
        return R_TARGET
    if cfg[C_MAX_HOLD] and now - pos[p, P_OPENED] >= cfg[C_MAX_HOLD]:
        return R_MAX_HOLD
    return -1


@njit(cache=True)
def on_prices(pos, ordr, acct, cfg, rules, errs, evq, closes, now, scratch):
    """Trading.on_prices: mark what is held at the closes, take the protective exits."""
    n = 0
    for p in range(pos.shape[0]):
        if pos[p, P_HELD]:
            scratch[n] = p
            n += 1
    if n > 1:
        sort_by(pos, P_BOOK, scratch, n)  # the registry's order
    for i in range(n):
        p = scratch[i]
        price = closes[p]
        if math.isnan(price):
            continue
        pos[p, P_MARK] = price
        pos[p, P_PEAK] = max(pos[p, P_PEAK], price)
        reason = exit_reason(pos, cfg, p, price, now)
        if reason >= 0:
            exit_position(pos, ordr, acct, evq, rules, closes, p, reason,
                          reason == R_STOP or reason == R_TRAIL, now)
    risk_update(pos, acct, cfg, now)
    follow_risk(ordr, acct, evq)


@njit(cache=True)
def on_tick(ordr, cfg, evq, now, scratch):
    """Trading.on_tick: cancel limit orders resting past the timeout (to reprice or fall back)."""
    for i in range(by_seq(ordr, OPEN, scratch)):
        p = scratch[i]
        if (not ordr[p, O_FOLLOWED] or ordr[p, O_REPRICING] or ordr[p, O_MARKET]
                or now - ordr[p, O_SENT] < cfg[C_TIMEOUT]):
            continue
        ordr[p, O_REPRICING] = 1.0
        ordr[p, O_FALLBACK] = 1.0 if ordr[p, O_ATTEMPT] >= cfg[C_MAX_REPRICES] else 0.0
        ordr[p, O_CANCELLING] = 1.0
        push_event(evq, EV_CANCEL, p)


@njit(cache=True)
def resend(pos, ordr, acct, cfg, rules, evq, closes, p, market, now):
    """Trading._resend of a cancelled order's rest: at the new touch, or at market."""
    ordr[p, O_STATE] = NONE
    if ordr[p, O_KIND] == ENTRY:
        state = risk_update(pos, acct, cfg, now)
        follow_risk(ordr, acct, evq)
        if state != ACTIVE:
            return
    if market:
        price = closes[p]
    elif ordr[p, O_KIND] == ENTRY:
        price = floor_to(bid(rules, closes, p), rules[p, U_PRICE_SCALE])
    else:
        price = ceil_to(ask(rules, closes, p), rules[p, U_PRICE_SCALE])
    if price <= 0.0 or not _size_ok(rules, p, ordr[p, O_SIZE], price):
        return
    send(ordr, acct, evq, p, ordr[p, O_KIND], market, price, ordr[p, O_SIZE],
         ordr[p, O_ATTEMPT] + 1, ordr[p, O_STRAT], ordr[p, O_REASON], ordr[p, O_STOP],
         ordr[p, O_TP], now)
