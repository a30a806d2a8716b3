"""Numbers of a CSV body (ASCII, comma-separated, one row per line) parsed in one pass.

A decimal number with at most 15 significant digits and a power of ten within 1e±22 is
read as `mantissa / 10**k` (or `mantissa * 10**k`): both operands are exact doubles, so the
one rounding of the division is the correctly rounded value, the very float Python's
`float(text)` gives (Clinger's fast path). Any other token (17-digit reprs, `nan`, `inf`,
huge exponents) is returned as a (row, column, start, end) span for the caller to read with
`float()`. A row with the wrong number of fields, or a token that is not a number, stops the
parse and reports its row.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

MAX_EXACT_DIGITS = 15
MAX_POW10 = 22
_POW10 = np.array([10.0**i for i in range(MAX_POW10 + 1)])
COMMA, NEWLINE, CR = 44, 10, 13
OK, BAD_FIELDS, BAD_NUMBER, SLOW_FULL = 0, 1, 2, 3


@njit(cache=True)
def count_rows(body):
    """Lines of `body` (a last line without a newline counts; empty lines do not)."""
    rows = 0
    started = False
    for c in body:
        if c == NEWLINE:
            if started:
                rows += 1
            started = False
        elif c != CR:
            started = True
    return rows + (1 if started else 0)


@njit(cache=True)
def parse_rows(body, n_fields, out, slow):
    """Fill out[rows, n_fields] from `body`; slow[k] = (row, col, start, end) of tokens left
    for `float()`. Returns (status, rows parsed or the bad row, slow tokens); SLOW_FULL: more
    tokens than `slow` holds."""
    n, i, row, n_slow = len(body), 0, 0, 0
    while i < n:
        if body[i] == NEWLINE or body[i] == CR:  # an empty line
            i += 1
            continue
        for col in range(n_fields):
            start = i
            value, exact, i = _number(body, start, n)
            if exact == 0:  # float() reads it: find where the token ends
                while i < n and body[i] != COMMA and body[i] != NEWLINE and body[i] != CR:
                    i += 1
            if exact == 1:
                out[row, col] = value
            elif exact == 0:
                if n_slow == slow.shape[0]:
                    return SLOW_FULL, row, n_slow
                slow[n_slow, 0], slow[n_slow, 1] = row, col
                slow[n_slow, 2], slow[n_slow, 3] = start, i
                n_slow += 1
                out[row, col] = np.nan
            else:
                return BAD_NUMBER, row, n_slow
            last = col == n_fields - 1
            at_end = i >= n or body[i] == NEWLINE or body[i] == CR
            if last != at_end:
                return BAD_FIELDS, row, n_slow
            i += 1
        row += 1
    return OK, row, n_slow


@njit(cache=True, inline="always")
def _number(body, i, n):
    """(value, 1, end) read exactly from body[i:] up to a comma or a line end; (nan, 0, i) when
    only float() can read it; (nan, -1, i): not a number."""
    start = i
    negative = False
    if i < n and (body[i] == 45 or body[i] == 43):  # - +
        negative = body[i] == 45
        i += 1
    mantissa, digits, scale, seen = 0, 0, 0, False
    while i < n and 48 <= body[i] <= 57:
        digits += 1 if (mantissa or body[i] != 48) else 0
        if digits <= 18:
            mantissa = mantissa * 10 + (body[i] - 48)
        else:
            scale += 1
        seen = True
        i += 1
    if i < n and body[i] == 46:  # .
        i += 1
        while i < n and 48 <= body[i] <= 57:
            digits += 1 if (mantissa or body[i] != 48) else 0
            if digits <= 18:
                mantissa = mantissa * 10 + (body[i] - 48)
                scale -= 1
            seen = True
            i += 1
    if i < n and seen and (body[i] == 101 or body[i] == 69):  # e E
        i += 1
        sign = 1
        if i < n and (body[i] == 45 or body[i] == 43):
            sign = -1 if body[i] == 45 else 1
            i += 1
        exponent, any_digit = 0, False
        while i < n and 48 <= body[i] <= 57:
            if exponent < 100_000:
                exponent = exponent * 10 + (body[i] - 48)
            any_digit = True
            i += 1
        if not any_digit:
            return np.nan, -1, start
        scale += sign * exponent
    if i < n and body[i] != COMMA and body[i] != NEWLINE and body[i] != CR:
        return np.nan, 0, start  # nan, inf, or something else: float() decides
    if not seen:
        return np.nan, -1, start
    if digits > MAX_EXACT_DIGITS or scale > MAX_POW10 or scale < -MAX_POW10:
        return np.nan, 0, start
    value = float(mantissa)
    value = value * _POW10[scale] if scale >= 0 else value / _POW10[-scale]
    return (-value if negative else value), 1, i


@njit(cache=True)
def decimals_of(prices, most):
    """The fewest decimals (at most `most`) that write every finite price exactly: the
    increment a series of prices is quoted in. One pass; a price needing more stops it."""
    found = 0
    for x in prices.ravel():
        if not math.isfinite(x):
            continue
        while found < most:
            scaled = x * _POW10[found]
            if abs(scaled - np.round(scaled)) <= min(0.01, 1e-9 * max(1.0, abs(scaled))):
                break
            found += 1
        if found == most:
            return most
    return found
