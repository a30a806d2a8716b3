"""RFC3339 times read by position, held to a regex reference on near-miss texts."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.coinbase.wire_time import parse_rfc3339_ns
from trader.errors import FrameError

REFERENCE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z", re.ASCII)


def reference_ns(text: str) -> int | None:
    """The slow reading: a strict regex, then the calendar; None where it refuses."""
    match = REFERENCE.fullmatch(text)
    if match is None:
        return None
    second, fraction = match.groups()
    try:
        moment = datetime.fromisoformat(second).replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(moment.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def ours(text: str) -> int | None:
    try:
        return parse_rfc3339_ns(text)
    except FrameError as exc:
        assert exc.reason == "bad_time"
        return None


CANONICAL = "2026-08-09T21:05:42.514318Z"


@given(st.integers(0, len(CANONICAL) - 1), st.sampled_from(
    ["", "0", "9", "a", "-", ":", ".", "T", " ", "Z", "+", "٣", "00", "1234567890"]))
def test_a_text_one_edit_from_canonical_reads_as_the_reference_reads_it(at: int, piece: str):
    for text in (CANONICAL[:at] + piece + CANONICAL[at + 1:], CANONICAL[:at] + piece
                 + CANONICAL[at:]):
        assert ours(text) == reference_ns(text), text


@pytest.mark.parametrize("text", [
    "2026-08-09T21:05:42Z", "2026-08-09T21:05:42.5Z", "2026-08-09T21:05:42.123456789Z",
    "2024-02-29T00:00:00Z", "1970-01-01T00:00:00.000000001Z"])
def test_valid_times_are_exact(text: str):
    assert ours(text) == reference_ns(text) is not None


@pytest.mark.parametrize("text", [
    "2025-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-08-09T24:00:00Z",
    "2026-08-09T21:05:42.Z", "2026-08-09T21:05:42.1234567890Z", "2026-08-09 21:05:42Z",
    "2026-08-09T21:05:42", "+026-08-09T21:05:42Z", "2026-08-09T21:05:4٣Z"])
def test_impossible_or_malformed_times_are_bad_time(text: str):
    assert ours(text) is None and reference_ns(text) is None
