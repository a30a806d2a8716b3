"""Pre-trade checks that return a reason, exit rules, and the trading state.

States: ACTIVE lets everything through. REDUCING (a cooldown after consecutive losses) allows
exits only. HALTED (kill switch, circuit breaker, daily loss limit) allows exits only and asks
the trading core to cancel open orders (`cancel_open_orders` in the snapshot; the core looks
at the state after each call that may change it); cancelling is the execution layer's job.
Exits are never refused because of the state: a stop must work in every state.

All times come from the injected clock (unix ns), so backtests and tests drive them.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from trader.clock import NS_PER_S, Clock, utc_day, wall_ns
from trader.config import RiskConfig
from trader.money import to_decimal
from trader.trading.registry import Registry
from trader.types import ClosedTrade, OrderKind, Position, TradingState

log = logging.getLogger(__name__)

ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_STATE_CODE = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
StateListener = Callable[[TradingState, str], None]  # (state, reason)

def _ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


@dataclass(frozen=True, slots=True)
class Limits:
    """The `risk` config section in exact units: USD as Decimal, durations in ns, 0 = off."""

    kill_switch: bool
    max_position_usd: Decimal
    max_open_positions: int
    max_exposure_usd: Decimal
    max_order_usd: Decimal
    daily_loss_limit_usd: Decimal
    max_consecutive_losses: int
    cooldown_ns: int
    risk_fraction: Decimal
    stop_loss_pct: Decimal
    take_profit_pct: Decimal
    trailing_stop_pct: Decimal
    max_hold_ns: int
    breaker_max_errors: int
    breaker_window_ns: int
    breaker_halt_ns: int

    @classmethod
    def from_section(cls, s: RiskConfig) -> Limits:
        usd = to_decimal
        return cls(
            s.kill_switch, usd(s.max_position_usd), s.max_open_positions,
            usd(s.max_exposure_usd), usd(s.max_order_usd), usd(s.daily_loss_limit_usd),
            s.max_consecutive_losses, _ns(s.cooldown_s), to_decimal(s.risk_fraction),
            to_decimal(s.stop_loss_pct), to_decimal(s.take_profit_pct),
            to_decimal(s.trailing_stop_pct), _ns(s.max_hold_s), s.breaker_max_errors,
            _ns(s.breaker_window_s), _ns(s.breaker_halt_s))


def _utc(time_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(time_ns // NS_PER_S, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _usd(value: Decimal) -> str:
    return f"{value:.2f}"


def _price(value: Decimal) -> str:
    return f"{value.normalize():f}"


class RiskManager:
    """Pre-trade checks (`check_entry`, `check_exit`), sizing (`entry_notional`), exit rules
    (`exit_reason`) and the trading state. The trading core hands it every closed trade
    (`record_trade`), which feeds the consecutive-loss cooldown."""

    name = "risk"

    def __init__(self, section: RiskConfig, registry: Registry, clock: Clock = wall_ns,
                 listeners: Sequence[StateListener] = ()) -> None:
        self.registry = registry
        self.clock = clock
        self.limits = Limits.from_section(section)
        self.state = TradingState.ACTIVE
        self.reason = ""
        self.listeners = tuple(listeners)  # told of every change of the state
        self.counters = collections.Counter[str]()
        self._killed_by = ""  # who called `kill()`; "" if nobody
        self._day = -1
        self._day_start_pnl = ZERO
        self._daily_halt = ""  # the reason while today's loss limit is hit
        self._loss_streak = 0
        self._cooldown_until_ns = 0
        self._cooldown_reason = ""
        self._errors_ns: collections.deque[int] = collections.deque()
        self._breaker_until_ns = 0
        self._breaker_reason = ""
        self._last_denial: dict[tuple[str, str], str] = {}

    # ---- configuration and the trading state -----------------------------------------------

    def apply_config(self, section: RiskConfig) -> None:
        """New limits, effective at once (hot reload)."""
        self.limits = Limits.from_section(section)
        self.update()

    def update(self) -> TradingState:
        """Re-evaluate the state at the clock's now; listeners hear of every change."""
        state, reason = self._evaluate(self.clock())
        if (state, reason) != (self.state, self.reason):
            log.warning("trading state %s%s", state, f": {reason}" if reason else "")
            self.state, self.reason = state, reason
            self.counters[f"entered_{state}"] += 1
            for listener in self.listeners:
                listener(state, reason)
        return state

    def _evaluate(self, now_ns: int) -> tuple[TradingState, str]:
        daily = self._daily_loss(now_ns)  # always, so each day's start is taken on time
        if self.limits.kill_switch:
            return TradingState.HALTED, "kill switch (risk.kill_switch)"
        if self._killed_by:
            return TradingState.HALTED, f"kill switch ({self._killed_by})"
        if now_ns < self._breaker_until_ns:
            return TradingState.HALTED, self._breaker_reason
        if daily:
            return TradingState.HALTED, daily
        if now_ns < self._cooldown_until_ns:
            return TradingState.REDUCING, self._cooldown_reason
        return TradingState.ACTIVE, ""

    def _daily_loss(self, now_ns: int) -> str:
        """Today's loss is measured from the total net PnL at the day's first evaluation."""
        day, pnl = utc_day(now_ns), self.registry.pnl().net
        if day != self._day:
            self._day, self._day_start_pnl, self._daily_halt = day, pnl, ""
        loss = self._day_start_pnl - pnl
        if not self._daily_halt and loss >= self.limits.daily_loss_limit_usd:
            self._daily_halt = (f"daily loss {_usd(loss)} USD >= daily_loss_limit_usd "
                                f"{_usd(self.limits.daily_loss_limit_usd)}; entries resume "
                                f"at 00:00 UTC")
        return self._daily_halt

    def kill(self, reason: str = "SIGUSR1") -> None:
        """Halt new entries until `reset_kill_switch()` or a restart; open orders are to be
        cancelled (the snapshot and the listeners say so)."""
        self._killed_by = reason
        self.counters["kills"] += 1
        self.update()

    def reset_kill_switch(self) -> None:
        self._killed_by = ""
        self.update()

    def record_trade(self, trade: ClosedTrade) -> None:
        """A closed round trip: losses in a row start a cooldown of new entries."""
        self._loss_streak = self._loss_streak + 1 if trade.pnl < 0 else 0
        if self._loss_streak >= self.limits.max_consecutive_losses:
            until_ns = self.clock() + self.limits.cooldown_ns
            self._cooldown_until_ns = until_ns
            self._cooldown_reason = (f"cooldown after {self._loss_streak} losing trades in a "
                                     f"row, until {_utc(until_ns)}")
            self._loss_streak = 0
            self.counters["cooldowns"] += 1
        self.update()

    def record_error(self, kind: str) -> None:
        """An order reject or an execution error; too many in the window trip the breaker."""
        now_ns, limits = self.clock(), self.limits
        self.counters[f"errors_{kind}"] += 1
        errors = self._errors_ns
        errors.append(now_ns)
        while errors and errors[0] <= now_ns - limits.breaker_window_ns:
            errors.popleft()
        if len(errors) >= limits.breaker_max_errors:
            self._breaker_until_ns = now_ns + limits.breaker_halt_ns
            self._breaker_reason = (
                f"circuit breaker: {len(errors)} rejects/errors within "
                f"{limits.breaker_window_ns // NS_PER_S} s, until {_utc(self._breaker_until_ns)}")
            errors.clear()
            self.counters["breaker_trips"] += 1
        self.update()

    # ---- pre-trade checks ------------------------------------------------------------------

    def entry_notional(self, equity_usd: Decimal, entry_price: Decimal,
                       stop_price: Decimal | None) -> Decimal:
        """USD notional of a new position, before quantization.

        Fixed (`max_position_usd`) when `risk_fraction` is 0; else the size that loses
        `equity_usd * risk_fraction` at the stop (the strategy's, else `stop_loss_pct` under
        the entry; fixed when there is neither), capped by max_position_usd and max_order_usd.
        0 when the stop is not below the entry.
        """
        limits = self.limits
        cap = min(limits.max_position_usd, limits.max_order_usd)
        stop = stop_price if stop_price is not None else self._pct_stop(entry_price)
        if limits.risk_fraction == 0 or stop is None:
            return cap
        if stop >= entry_price:
            return ZERO
        size = equity_usd * limits.risk_fraction / (entry_price - stop)
        return min(size * entry_price, cap)

    def check_entry(self, strategy: str, product_id: str, notional_usd: Decimal) -> str | None:
        """Why a new position of `notional_usd` may not be opened now, or None."""
        denied = self._entry_denial(strategy, product_id, notional_usd)
        key = (strategy, product_id)
        if denied is None:
            self.counters["entries_allowed"] += 1
            self._last_denial.pop(key, None)
            return None
        label, reason = denied
        self.counters["entries_denied"] += 1
        self.counters[f"denied_{label}"] += 1
        if self._last_denial.get(key) != reason:  # the same denial every bar is logged once
            log.info("entry denied: %s %s: %s", strategy, product_id, reason)
            self._last_denial[key] = reason
        return reason

    def _entry_denial(self, strategy: str, product_id: str,
                      notional_usd: Decimal) -> tuple[str, str] | None:
        limits, registry = self.limits, self.registry
        if self.update() is not TradingState.ACTIVE:
            return "state", f"{self.state}: {self.reason}"
        held = registry.can_enter(strategy, product_id)
        if held is not None:
            return "held", held
        if notional_usd <= 0:
            return "size", "order notional is 0 (no size at this stop)"
        if notional_usd > limits.max_order_usd:
            return "order_notional", (f"order notional {_usd(notional_usd)} USD > "
                                      f"max_order_usd {_usd(limits.max_order_usd)}")
        if notional_usd > limits.max_position_usd:
            return "position_notional", (f"position notional {_usd(notional_usd)} USD > "
                                         f"max_position_usd {_usd(limits.max_position_usd)}")
        count = registry.open_count()
        if count >= limits.max_open_positions:
            return "open_positions", (f"{count} positions open or entering, "
                                      f"max_open_positions is {limits.max_open_positions}")
        exposure = registry.exposure_usd() + notional_usd
        if exposure > limits.max_exposure_usd:
            return "exposure", (f"exposure would be {_usd(exposure)} USD > max_exposure_usd "
                                f"{_usd(limits.max_exposure_usd)}")
        return None

    def check_exit(self, product_id: str) -> str | None:
        """Why an exit may not be sent: only nothing held or an exit already working. The
        trading state never blocks an exit."""
        if self.registry.position(product_id) is None:
            return f"nothing held in {product_id}"
        for order in self.registry.open_orders(product_id):
            if order.kind is OrderKind.EXIT:
                return f"an exit order for {product_id} is already {order.status}"
        return None

    # ---- exits -----------------------------------------------------------------------------

    def exit_reason(self, position: Position, last_price: Decimal, now_ns: int,
                    strategy_said_exit: bool) -> str | None:
        """Why `position` should be closed at `last_price` now, or None. Protective exits
        first: stop-loss, trailing stop, take-profit, then the strategy, then max hold time."""
        stop = self._stop_price(position)
        if stop is not None and last_price <= stop:
            return f"stop-loss: {_price(last_price)} <= stop {_price(stop)}"
        trail = self._trailing_stop(position, last_price)
        if trail is not None and last_price <= trail:
            return (f"trailing stop: {_price(last_price)} <= {_price(trail)} "
                    f"({_price(self.limits.trailing_stop_pct)} % under the peak)")
        target = self._take_profit_price(position)
        if target is not None and last_price >= target:
            return f"take-profit: {_price(last_price)} >= target {_price(target)}"
        if strategy_said_exit:
            return "strategy exit"
        max_hold_ns = self.limits.max_hold_ns
        if max_hold_ns and now_ns - position.opened_ns >= max_hold_ns:
            return (f"max hold time: held {(now_ns - position.opened_ns) // NS_PER_S} s >= "
                    f"{max_hold_ns // NS_PER_S} s")
        return None

    def _pct_stop(self, entry_price: Decimal) -> Decimal | None:
        pct = self.limits.stop_loss_pct
        return entry_price * (1 - pct / _HUNDRED) if pct else None

    def _stop_price(self, position: Position) -> Decimal | None:
        if position.stop_price is not None:
            return position.stop_price
        return self._pct_stop(position.average_entry_price)

    def _trailing_stop(self, position: Position, last_price: Decimal) -> Decimal | None:
        pct = self.limits.trailing_stop_pct
        if not pct:
            return None
        return max(position.peak_price, last_price) * (1 - pct / _HUNDRED)

    def _take_profit_price(self, position: Position) -> Decimal | None:
        if position.take_profit_price is not None:
            return position.take_profit_price
        pct = self.limits.take_profit_pct
        return position.average_entry_price * (1 + pct / _HUNDRED) if pct else None

    # ---- status ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        counters: dict[str, float] = dict(self.counters)
        counters.update(
            trading_state=_STATE_CODE[self.state], loss_streak=self._loss_streak,
            daily_pnl_usd=float(self.registry.pnl().net - self._day_start_pnl),
            exposure_usd=float(self.registry.exposure_usd()))
        limits = {f.name: str(getattr(self.limits, f.name))
                  for f in dataclasses.fields(self.limits)}
        return {"state": str(self.state), "reason": self.reason,
                "cancel_open_orders": self.state is TradingState.HALTED,
                "counters": counters, "limits": limits}
