"""How a backtest runs: fills, costs, cash and risk, as the CLI and the config give them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from trader.config import PaperConfig, RiskConfig

FILLS = ("live", "next-open")


@dataclass(frozen=True, slots=True)
class BacktestOptions:
    """`fill`: "live" (the paper execution's rules on bars) or "next-open" (every order a
    market order at the next bar's open). `risk_on` False: no risk limit or risk exit, and each
    entry spends `position_pct` of equity (less the taker fee its hold needs)."""

    fill: str = "live"
    maker_fee_bps: float = 40.0
    taker_fee_bps: float = 60.0
    slippage_bps: float = 5.0
    cash_usd: float = 10_000.0
    risk_on: bool = True
    position_pct: float = 100.0

    @classmethod
    def from_paper(cls, paper: PaperConfig, **overrides: object) -> BacktestOptions:
        """Costs and cash from `[paper]`, then whatever the command line gave."""
        base = cls(maker_fee_bps=paper.maker_fee_bps, taker_fee_bps=paper.taker_fee_bps,
                   slippage_bps=paper.slippage_bps, cash_usd=paper.starting_balance_usd)
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(base, **given)  # type: ignore[arg-type]

    def paper_section(self) -> PaperConfig:
        """The `[paper]` section the bar execution charges (fees, slippage, cash)."""
        return PaperConfig(starting_balance_usd=self.cash_usd, slippage_bps=self.slippage_bps,
                           maker_fee_bps=self.maker_fee_bps, taker_fee_bps=self.taker_fee_bps)


def unlimited_risk() -> RiskConfig:
    """`--risk off`: every limit as wide as the schema allows and no exit rule."""
    return RiskConfig(
        kill_switch=False, max_position_usd=1e15, max_open_positions=1000,
        max_exposure_usd=1e15, max_order_usd=1e15, daily_loss_limit_usd=1e15,
        max_consecutive_losses=1000, cooldown_s=0.0, risk_fraction=0.0, stop_loss_pct=0.0,
        take_profit_pct=0.0, trailing_stop_pct=0.0, max_hold_s=0.0, breaker_max_errors=1000,
        breaker_window_s=1.0, breaker_halt_s=0.0, flatten_on_kill=False)
