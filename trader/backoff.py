"""Capped full-jitter backoff, for every retry loop of the daemon (stdlib only)."""

from __future__ import annotations

import random


class Backoff:
    """The n-th wait is uniform in [base/2, min(cap, base * 2^n)]; `reset` after a success."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random) -> None:
        self.base_s, self.cap_s, self._rng = base_s, cap_s, rng
        self.attempt = 0

    def next_s(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return self._rng.uniform(self.base_s / 2, max(self.base_s / 2, ceiling))

    def reset(self) -> None:
        self.attempt = 0
