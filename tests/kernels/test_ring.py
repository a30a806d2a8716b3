"""Mirrored ring-buffer windows against a plain-Python history of every slot."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.kernels import ring
from trader.kernels.ring import CLOSE, FIELDS

NAN_ROW = [float("nan")] * FIELDS


class RefWindow:
    """Each slot's full history as a list of rows (capacity NaN rows before the first push)."""

    def __init__(self, products: int, capacity: int) -> None:
        self.capacity = capacity
        self.rows = [[list(NAN_ROW) for _ in range(capacity)] for _ in range(products)]

    def push(self, by_slot: dict[int, list[float]]) -> None:
        for s, hist in enumerate(self.rows):
            hist.append(list(by_slot.get(s, NAN_ROW)))

    def reset(self, slot: int) -> None:
        self.rows[slot] = [list(NAN_ROW) for _ in self.rows[slot]]

    def load(self, slot: int, rows: list[list[float]]) -> None:
        self.reset(slot)
        keep = rows[len(rows) - min(len(rows), self.capacity) :]
        hist = self.rows[slot]
        hist[len(hist) - len(keep) :] = [list(r) for r in keep]

    def last_n(self, slot: int, n: int) -> np.ndarray:
        hist = self.rows[slot]
        return np.array(hist[len(hist) - n :], dtype=np.float64).reshape(n, FIELDS)

    def count(self, slot: int) -> int:
        n = 0
        for row in reversed(self.rows[slot]):
            if np.isnan(row[CLOSE]) or n == self.capacity:
                break
            n += 1
        return n


def random_row(rng: np.random.Generator, gap_p: float) -> list[float]:
    row = [float(x) for x in rng.integers(0, 1000, FIELDS)]
    if rng.random() < gap_p:
        row[CLOSE] = float("nan")
    return row


def apply_op(
    op: str, rng: np.random.Generator, w: ring.Window, ref: RefWindow, products: int
) -> None:
    if op == "all":
        rows = [random_row(rng, 0.1) for _ in range(products)]
        ring.push_all(w.buf, w.head, w.count, np.array(rows))
        ref.push(dict(enumerate(rows)))
    elif op == "some":
        slots = rng.permutation(products)[: rng.integers(0, products + 1)]
        rows = [random_row(rng, 0.1) for _ in slots]
        arr = np.array(rows, dtype=np.float64).reshape(len(slots), FIELDS)
        ring.push_rows(w.buf, w.head, w.count, slots.astype(np.int64), arr)
        ref.push({int(s): r for s, r in zip(slots, rows, strict=True)})
    elif op == "reset":
        slot = int(rng.integers(0, products))
        ring.reset_slot(w.buf, w.count, slot)
        ref.reset(slot)
    else:
        slot = int(rng.integers(0, products))
        rows = [random_row(rng, 0.05) for _ in range(rng.integers(0, 2 * w.capacity + 1))]
        arr = np.array(rows, dtype=np.float64).reshape(len(rows), FIELDS)
        ring.load_slot(w.buf, w.head, w.count, slot, arr)
        ref.load(slot, rows)


def check(w: ring.Window, ref: RefWindow, products: int) -> None:
    for n in range(w.capacity + 1):
        everyone = ring.last_n_all(w.buf, w.head, n)
        assert n == 0 or np.shares_memory(everyone, w.buf)
        for s in range(products):
            view = ring.last_n(w.buf, w.head, s, n)
            np.testing.assert_array_equal(view, ref.last_n(s, n))
            np.testing.assert_array_equal(everyone[s], view)
            assert n == 0 or np.shares_memory(view, w.buf)
    assert [int(c) for c in w.count] == [ref.count(s) for s in range(products)]


@settings(max_examples=150, deadline=None)
@given(
    products=st.integers(1, 4),
    capacity=st.integers(1, 7),
    ops=st.lists(st.sampled_from(["all"] * 6 + ["some"] * 3 + ["reset", "load"]), max_size=60),
    seed=st.integers(0, 2**32 - 1),
)
def test_last_n_equals_pushed_history(
    products: int, capacity: int, ops: list[str], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    w = ring.new_window(products, capacity)
    ref = RefWindow(products, capacity)
    for op in ops:
        apply_op(op, rng, w, ref, products)
        check(w, ref, products)


def test_many_wraparounds_keep_a_contiguous_view() -> None:
    w = ring.new_window(3, 5)
    for i in range(5 * 40 + 3):
        rows = np.tile(np.arange(FIELDS, dtype=np.float64) + 10.0 * i, (3, 1))
        ring.push_all(w.buf, w.head, w.count, rows)
    view = ring.last_n(w.buf, w.head, 1, 5)
    np.testing.assert_array_equal(view[:, 0], 10.0 * np.arange(198, 203))
    assert view.flags.c_contiguous and not view.flags.owndata
    view[-1, CLOSE] = -1.0  # a view: the write lands in the buffer
    assert w.buf[1, w.capacity + int(w.head[0]) - 1, CLOSE] == -1.0
    assert list(w.count) == [5, 5, 5]


def test_reused_slot_does_not_leak_old_bars() -> None:
    w = ring.new_window(2, 4)
    for i in range(9):
        ring.push_all(w.buf, w.head, w.count, np.full((2, FIELDS), float(i + 1)))
    ring.reset_slot(w.buf, w.count, 0)
    ring.push_rows(w.buf, w.head, w.count, np.array([0, 1]), np.full((2, FIELDS), 100.0))
    got = ring.last_n(w.buf, w.head, 0, 4)
    assert np.isnan(got[:3]).all()
    np.testing.assert_array_equal(got[3], np.full(FIELDS, 100.0))
    np.testing.assert_array_equal(ring.last_n(w.buf, w.head, 1, 4)[:, CLOSE], [7, 8, 9, 100])
    assert list(w.count) == [1, 4]


def test_unlisted_slot_gets_a_gap() -> None:
    w = ring.new_window(2, 3)
    ring.push_all(w.buf, w.head, w.count, np.ones((2, FIELDS)))
    ring.push_rows(w.buf, w.head, w.count, np.array([1]), np.full((1, FIELDS), 2.0))
    assert np.isnan(ring.last_n(w.buf, w.head, 0, 1)).all()
    assert list(w.count) == [0, 2]


def test_bad_arguments_raise() -> None:
    w = ring.new_window(2, 3)
    with pytest.raises(ValueError):
        ring.last_n(w.buf, w.head, 0, 4)
    with pytest.raises(ValueError):
        ring.last_n_all(w.buf, w.head, -1)
    with pytest.raises(IndexError):
        ring.push_rows(w.buf, w.head, w.count, np.array([2]), np.ones((1, FIELDS)))
    with pytest.raises(ValueError):
        ring.push_all(w.buf, w.head, w.count, np.ones((3, FIELDS)))
    with pytest.raises(ValueError):
        ring.new_window(0, 3)


def test_warmup_compiles() -> None:
    ring.warmup()
