"""The compiled backtest's execution: acceptance, cancels and fills of orders on bars.

A mirror of research/fills.py's BarExecution (the paper execution's rules on bars) for the
state of kernels/backtest_orders.py (its conventions): `drain` runs the deferred events
(accept: funds checked and held; cancel: then the trading core's reprice or fallback),
`bar_fills` the execution's side of a bar's fills, `apply_fill` the trading core's.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from trader.kernels import backtest_orders as bo


@njit(cache=True)
def drain(pos, ordr, acct, cfg, rules, errs, evq, closes, now):
    """Run the execution's deferred events in order (they may defer more)."""
    i = 0
    while i < evq[0, 0]:
        kind, p = evq[1 + i, 0], evq[1 + i, 1]
        i += 1
        if kind == bo.EV_ACCEPT:
            _accept(pos, ordr, acct, cfg, rules, errs, evq, closes, p, now)
        else:
            _cancel(pos, ordr, acct, cfg, rules, evq, closes, p, now)
    evq[0, 0] = 0


@njit(cache=True)
def _accept(pos, ordr, acct, cfg, rules, errs, evq, closes, p, now):
    """The bar execution's accept: funds checked and held; a market order (every order
    under next-open) waits for the next open, a limit order rests."""
    if ordr[p, bo.O_STATE] != bo.PENDING:
        return
    at_open = ordr[p, bo.O_MARKET] != 0.0 or cfg[bo.C_NEXT_OPEN] != 0.0
    if ordr[p, bo.O_KIND] == bo.ENTRY:  # a buy needs its cost and the taker fee in free bo.USD
        price = bo.ask(rules, closes, p) if at_open else ordr[p, bo.O_PRICE]  # the ask, or limit
        needed = ordr[p, bo.O_SIZE] * price * (1.0 + cfg[bo.C_TAKER])
        if needed > (acct[bo.A_CASH] - acct[bo.A_HOLDS]) * (1.0 + bo.SLACK):
            ordr[p, bo.O_STATE] = bo.NONE  # bo.INSUFFICIENT_FUND
            acct[bo.A_REJECTED] += 1.0
            bo.record_error(pos, acct, cfg, errs, now)
            bo.follow_risk(ordr, acct, evq)
            return
        ordr[p, bo.O_HOLD] = needed
        acct[bo.A_HOLDS] += needed
    if not at_open and pos[p, bo.P_REST] < 0:  # the execution's resting books, first come
        pos[p, bo.P_REST] = acct[bo.A_RESTS]
        acct[bo.A_RESTS] += 1.0
    ordr[p, bo.O_AT_OPEN] = 1.0 if at_open else 0.0
    ordr[p, bo.O_STATE] = bo.OPEN


@njit(cache=True)
def _cancel(pos, ordr, acct, cfg, rules, evq, closes, p, now):
    if ordr[p, bo.O_STATE] == bo.NONE:
        return
    acct[bo.A_HOLDS] -= ordr[p, bo.O_HOLD]
    ordr[p, bo.O_HOLD] = 0.0
    if not (ordr[p, bo.O_FOLLOWED] and ordr[p, bo.O_REPRICING]):
        ordr[p, bo.O_STATE] = bo.NONE
        return
    if ordr[p, bo.O_FALLBACK] and not cfg[bo.C_FALLBACK_MARKET]:
        ordr[p, bo.O_STATE] = bo.NONE  # gave up
        return
    bo.resend(pos, ordr, acct, cfg, rules, evq, closes, p, ordr[p, bo.O_FALLBACK] != 0.0, now)


@njit(cache=True)
def bar_fills(pos, ordr, acct, cfg, bars, t, fill_p, fill_x, scratch):
    """The execution's side of the fills inside bar t: which orders fill, at what price, and
    the cash they move. Returns how many; fill_p[k] is the product, fill_x[k] (price, fee)."""
    n = 0
    slip = cfg[bo.C_SLIP]
    n_open = bo.by_seq(ordr, bo.OPEN, scratch)
    if n_open == 0:
        return 0
    for i in range(n_open):  # orders waiting for the open, in send order
        p = scratch[i]
        if ordr[p, bo.O_AT_OPEN] != 1.0 or math.isnan(bars[p, t, 0]):
            continue
        buy = ordr[p, bo.O_KIND] == bo.ENTRY
        price = bars[p, t, 0] * (1.0 + slip if buy else 1.0 - slip)
        n = _filled(ordr, acct, p, price, cfg[bo.C_TAKER], buy, fill_p, fill_x, n)
    n_rest = 0
    for p in range(ordr.shape[0]):  # resting limits, by the execution's books
        if ordr[p, bo.O_STATE] == bo.OPEN and ordr[p, bo.O_AT_OPEN] == 0.0:
            scratch[n_rest] = p
            n_rest += 1
    if n_rest > 1:
        bo.sort_by(pos, bo.P_REST, scratch, n_rest)
    for i in range(n_rest):
        p = scratch[i]
        buy = ordr[p, bo.O_KIND] == bo.ENTRY
        if (bars[p, t, 2] < ordr[p, bo.O_PRICE]) if buy else (bars[p, t, 1] > ordr[p, bo.O_PRICE]):
            n = _filled(ordr, acct, p, ordr[p, bo.O_PRICE], cfg[bo.C_MAKER], buy, fill_p, fill_x, n)
    return n


@njit(cache=True, inline="always")
def _filled(ordr, acct, p, price, rate, buy, fill_p, fill_x, n):
    value = price * ordr[p, bo.O_SIZE]
    fee = value * rate
    acct[bo.A_HOLDS] -= ordr[p, bo.O_HOLD]
    ordr[p, bo.O_HOLD] = 0.0
    ordr[p, bo.O_AT_OPEN] = -1.0  # filled: the trading core hears of it after the bar's fills
    acct[bo.A_CASH] += -(value + fee) if buy else value - fee
    fill_p[n], fill_x[n, 0], fill_x[n, 1] = p, price, fee
    return n + 1


@njit(cache=True)
def apply_fill(pos, ordr, acct, cfg, evq, trades, p, price, fee, t_s, now):
    """Trading.on_fill then the FILLED update: the registry's position, a closed trade, risk."""
    size = ordr[p, bo.O_SIZE]
    acct[bo.A_FEES] += fee
    if ordr[p, bo.O_KIND] == bo.ENTRY:
        if pos[p, bo.P_BOOK] < 0:
            pos[p, bo.P_BOOK] = acct[bo.A_BOOKS]
            acct[bo.A_BOOKS] += 1.0
        pos[p, bo.P_HELD], pos[p, bo.P_SIZE] = 1.0, size
        pos[p, bo.P_COST], pos[p, bo.P_FEE] = price * size, fee
        pos[p, bo.P_OPENED], pos[p, bo.P_PEAK] = t_s, price
        pos[p, bo.P_STOP], pos[p, bo.P_TP] = ordr[p, bo.O_STOP], ordr[p, bo.O_TP]
        pos[p, bo.P_STRAT] = ordr[p, bo.O_STRAT]
        pos[p, bo.P_ENTRY_TIME], pos[p, bo.P_ENTRY_PRICE] = t_s, price
        pos[p, bo.P_RESTED] = not (ordr[p, bo.O_MARKET] or cfg[bo.C_NEXT_OPEN])
    else:
        realized = price * size - pos[p, bo.P_COST]
        fees = pos[p, bo.P_FEE] + fee
        acct[bo.A_REALIZED] += realized
        pos[p, bo.P_HELD] = 0.0
        row = np.empty(bo.NTRADE)
        row[bo.T_PRODUCT], row[bo.T_STRAT] = p, pos[p, bo.P_STRAT]
        row[bo.T_ENTRY_TIME], row[bo.T_EXIT_TIME] = pos[p, bo.P_ENTRY_TIME], t_s
        row[bo.T_ENTRY_PRICE], row[bo.T_EXIT_PRICE] = pos[p, bo.P_ENTRY_PRICE], price
        row[bo.T_SIZE], row[bo.T_PNL], row[bo.T_FEES] = size, realized - fees, fees
        row[bo.T_REASON] = ordr[p, bo.O_REASON]
        trades.append(row)
        bo.record_trade(pos, acct, cfg, realized - fees, now)
    bo.follow_risk(ordr, acct, evq)
    ordr[p, bo.O_STATE] = bo.NONE  # FILLED: terminal, no longer followed
