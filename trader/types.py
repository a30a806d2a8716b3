"""Domain values: frozen slotted dataclasses and enums. Timestamps are int ns named `*_ns`."""

from __future__ import annotations

import enum


class Mode(enum.StrEnum):
    """How orders leave the daemon."""

    PAPER = "paper"
    SHADOW = "shadow"
    LIVE = "live"


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"
