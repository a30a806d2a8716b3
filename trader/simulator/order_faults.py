"""Faults on the private side: 429s, 5xxs, orders accepted but never answered, user-channel drops;
and the behaviours Coinbase leaves unverified (PROTOCOL.md, Idempotency), selectable.

Each fault fires either by chance (a rate, drawn from a seeded generator, so a run is
reproducible) or on demand: `arm(kind, n)` makes the next `n` chances of that kind fire, which is
what tests use through `POST /_sim/faults`. The unverified behaviours:
- `duplicate_answer`: a repeated client order id is answered with the existing order
  (`existing`: `success: true` and its order id) or refused (`refuse`: `success: false`,
  `DUPLICATE_CLIENT_ORDER_ID`); neither creates anything.
- `lost_hidden_s`: an order whose create answer was lost stays PENDING, off the book and out
  of every lookup (lists, get by id; a cancel does not find it), for this many wall seconds.
- `id_retention_s`: a closed order's client order id is forgotten this many wall seconds after
  it closed, so a repeat of it creates a new order (0: kept forever).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

# rate_limit, server_error: per private REST request, before it is handled.
# accept_timeout: per accepted POST /orders; the order exists, then the answer is delayed past
#   any client timeout (`accept_delay_s`) or, half of the time, the connection is cut.
#   Armed on demand as `accept_delay` or `accept_drop` to pick one of the two.
# user_drop: per user-channel frame; the connection is cut instead of sending it.
KINDS = ("rate_limit", "server_error", "accept_timeout", "accept_delay", "accept_drop",
         "user_drop")
DUPLICATE_ANSWERS = ("existing", "refuse")


@dataclass(frozen=True, slots=True)
class OrderFaults:
    """Fault rates (probabilities per chance) and their parameters."""

    seed: int = 0
    rate_limit_rate: float = 0.0
    server_error_rate: float = 0.0
    accept_timeout_rate: float = 0.0
    user_drop_rate: float = 0.0
    retry_after_s: int = 1
    accept_delay_s: float = 60.0
    duplicate_answer: str = "existing"  # existing | refuse
    lost_hidden_s: float = 0.0
    id_retention_s: float = 0.0  # 0: a client order id is kept forever

    def __post_init__(self) -> None:
        if self.duplicate_answer not in DUPLICATE_ANSWERS:
            raise ValueError(f"duplicate_answer must be one of {list(DUPLICATE_ANSWERS)}, "
                             f"got {self.duplicate_answer!r}")
        if self.lost_hidden_s < 0 or self.id_retention_s < 0:
            raise ValueError("lost_hidden_s and id_retention_s must be >= 0")


class FaultDice:
    """The live fault state: rates, armed one-shots and counts of faults fired."""

    def __init__(self, faults: OrderFaults) -> None:
        self.faults = faults
        self.armed: Counter[str] = Counter()
        self.fired: Counter[str] = Counter()
        self._rng = random.Random(faults.seed)

    def roll(self, kind: str) -> bool:
        """Whether a fault of `kind` fires at this chance (and count it if so)."""
        if self.armed[kind] > 0:
            self.armed[kind] -= 1
        elif not self._draw(getattr(self.faults, f"{kind}_rate", 0.0)):
            return False
        self.fired[kind] += 1
        return True

    def accept_fault(self) -> str | None:
        """None, "delay" or "drop" for an order just accepted."""
        for mode in ("delay", "drop"):
            if self.armed[f"accept_{mode}"] > 0:
                self.roll(f"accept_{mode}")
                return mode
        if not self.roll("accept_timeout"):
            return None
        return "delay" if self._rng.random() < 0.5 else "drop"

    def choice(self, options: tuple[int, ...]) -> int:
        return self._rng.choice(options)

    def update(self, body: dict[str, Any]) -> None:
        """Apply a control request: new rates/parameters, and `arm: {kind: n}` one-shots.

        Raises ValueError on an unknown key or kind, or a setting out of range.
        """
        names = {f.name for f in fields(OrderFaults)} - {"seed"}
        unknown = set(body) - names - {"arm"}
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        arm = body.get("arm") or {}
        if not isinstance(arm, dict) or set(arm) - set(KINDS):
            raise ValueError(f"arm takes {{kind: count}} with kind in {list(KINDS)}")
        changes = {k: type(getattr(self.faults, k))(v) for k, v in body.items() if k != "arm"}
        self.faults = replace(self.faults, **changes)
        for kind, count in arm.items():
            self.armed[kind] = int(count)

    def state(self) -> dict[str, Any]:
        return {"faults": asdict(self.faults), "armed": dict(+self.armed),
                "fired": dict(self.fired)}

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate
