"""The config schema: one frozen tree, parsed from TOML bytes into values or a full error list.

Every key is declared once, with its default, unit, bounds, documentation and whether it can
change while the daemon runs. `parse` never raises on bad input: it returns a `Config` or every
`(key path, reason)` pair it found. Unknown keys are errors, so a typo cannot silently become a
default. `render_default` writes the documented default file from the same declarations.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import textwrap
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from trader.types import Mode

FILE_KEY = "<file>"  # the key path of errors that concern the whole file (unreadable, not TOML)

ConfigErrors = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Spec:
    """How one key is checked and documented."""

    doc: str
    kind: str  # bool | int | float | str | strs | choice | interval | intervals | params
    unit: str = ""
    min: float | None = None
    min_open: bool = False  # True: value must be > min, else >= min
    max: float | None = None
    choices: tuple[str, ...] = ()
    restart: bool = False
    convert: Callable[[Any], Any] | None = None
    allow_empty: bool = False  # an empty string means "not set here"


def key(default: Any, doc: str, kind: str, **spec: Any) -> Any:
    """Declare one config key: its default and its `Spec`."""
    metadata = {"spec": Spec(doc, kind, **spec)}
    if isinstance(default, MappingProxyType):  # unhashable, so dataclasses want a factory
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


def spec_of(f: dataclasses.Field) -> Spec:
    return f.metadata["spec"]


_INTERVAL_RE = re.compile(r"^([1-9][0-9]*)([mhd])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}
_PRODUCT_RE = re.compile(r"^[A-Z0-9]{1,12}-[A-Z0-9]{1,12}$")
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


def interval_seconds(text: str) -> int:
    """Seconds in an interval such as "5m"; ValueError unless a multiple of 1m up to 1d."""
    match = _INTERVAL_RE.match(text)
    if not match:
        raise ValueError(f"expected an interval like 1m, 5m, 1h or 1d, got {text!r}")
    seconds = int(match[1]) * _UNIT_S[match[2]]
    if seconds > 86400:
        raise ValueError(f"must be at most 1d, got {text!r}")
    return seconds


def interval_name(interval_s: int) -> str:
    """The inverse of `interval_seconds`: 60 -> "1m", 3600 -> "1h" (90 -> "90s")."""
    for unit, seconds in (("d", 86_400), ("h", 3600), ("m", 60)):
        if interval_s % seconds == 0:
            return f"{interval_s // seconds}{unit}"
    return f"{interval_s}s"


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    mode: Mode = key(
        Mode.PAPER, "paper: simulated fills on live prices; shadow: live logic, orders logged "
        "not sent; live: real orders", "choice", choices=tuple(Mode), convert=Mode, restart=True)
    state_dir: str = key(
        "state", "journal, spill files and the status socket live here (relative to the "
        "working directory)", "str", restart=True)
    shutdown_timeout_s: float = key(
        10.0, "deadline for the ordered shutdown after SIGTERM", "float", unit="s",
        min=0, min_open=True, max=600)
    reload_poll_s: float = key(
        1.0, "how often config.toml is checked for edits", "float", unit="s",
        min=0.05, max=60, restart=True)
    strategies_dir: str = key(
        "strategies", "where strategies/<name>.py files live; after editing one, reload "
        "(SIGHUP)", "str", restart=True)


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = key("info", "debug | info | warning | error", "choice",
                     choices=("debug", "info", "warning", "error"))
    format: str = key(
        "auto", "auto: plain lines under journald, colours on a terminal; or plain | json | rich",
        "choice", choices=("auto", "plain", "json", "rich"))


@dataclass(frozen=True, slots=True)
class StatusConfig:
    socket: str = key(
        "", "unix socket of the status server (mode 0600); empty: <state_dir>/status.sock",
        "str", restart=True)
    metrics_listen: str = key(
        "", "host:port to serve Prometheus /metrics over HTTP, e.g. 127.0.0.1:9464; empty: "
        "only on the status socket", "str", restart=True)


@dataclass(frozen=True, slots=True)
class CoinbaseConfig:
    ws_url: str = key("wss://advanced-trade-ws.coinbase.com", "market data websocket", "str",
                      restart=True)
    user_ws_url: str = key("wss://advanced-trade-ws-user.coinbase.com",
                           "authenticated user-channel websocket (orders, fills)", "str",
                           restart=True)
    rest_url: str = key("https://api.coinbase.com", "REST API base URL", "str", restart=True)
    key_file: str = key(
        "", "CDP API key JSON {name, privateKey}, mode 0600; empty: COINBASE_API_KEY / "
        "COINBASE_API_SECRET or the systemd credential; none is needed in paper mode",
        "str", restart=True)
    stale_after_s: float = key(
        10.0, "reconnect a market data feed silent for this long", "float", unit="s",
        min=2, max=300)
    public_rest_rps: float = key(
        8.0, "pace of public REST requests (Coinbase allows 10/s per IP)", "float",
        unit="requests/s", min=0, min_open=True, max=10)
    private_rest_rps: float = key(
        20.0, "pace of authenticated REST requests (Coinbase allows 30/s per user)", "float",
        unit="requests/s", min=0, min_open=True, max=30)
    request_timeout_s: float = key(
        10.0, "an order request unanswered this long is unknown and looked up, never resent "
        "with a new id", "float", unit="s", min=1, max=120)


@dataclass(frozen=True, slots=True)
class MarketConfig:
    products: tuple[str, ...] = key(
        ("BTC-USD", "ETH-USD", "SOL-USD"), "products to stream and build candles for",
        "strs")
    intervals: tuple[str, ...] = key(
        ("1m", "5m", "1h"), "candle windows kept, each a multiple of 1m up to 1d", "intervals",
        restart=True)
    close_grace_ms: int = key(
        1500, "a minute closes once exchange time passes its end by this much", "int",
        unit="ms", min=0, max=60_000)
    window_bars: int = key(1000, "bars kept per product and interval", "int", unit="bars",
                           min=10, max=1_000_000, restart=True)
    warmup_bars: int = key(
        300, "1-minute bars fetched from REST at start, before the first live minute (the "
        "start is aligned to the longest interval, so its first bar is complete)", "int",
        unit="bars", min=0, max=100_000, restart=True)


@dataclass(frozen=True, slots=True)
class SelectorConfig:
    top_n: int = key(3, "new positions are opened only in the N best-ranked products", "int",
                     min=1, max=1000)
    metric: str = key("quote_volume", "quote_volume | volatility | abs_return", "choice",
                      choices=("quote_volume", "volatility", "abs_return"))
    interval: str = key("1m", "candles the ranking is computed on (one of market.intervals)",
                        "interval")
    window_bars: int = key(60, "bars of that interval in the ranking window", "int",
                           unit="bars", min=2, max=100_000)


@dataclass(frozen=True, slots=True)
class StorageConfig:
    dsn: str = key("", "PostgreSQL/TimescaleDB DSN; empty: no database (the daemon still runs)",
                   "str", restart=True)
    batch_rows: int = key(5000, "flush a table's buffer at this many rows", "int",
                          unit="rows", min=1, max=1_000_000)
    flush_interval_ms: int = key(1000, "flush a buffer at least this often", "int", unit="ms",
                                 min=10, max=600_000)
    max_buffer_rows: int = key(200_000, "rows held in memory per table before spilling to "
                               "state_dir", "int", unit="rows", min=100, max=100_000_000)


@dataclass(frozen=True, slots=True)
class RiskConfig:
    kill_switch: bool = key(False, "true: cancel every open order and halt new entries",
                            "bool")
    max_position_usd: float = key(100.0, "notional of one new position", "float", unit="USD",
                                  min=0, min_open=True)
    max_open_positions: int = key(3, "positions open at once", "int", min=0, max=1000)
    max_exposure_usd: float = key(300.0, "total notional of all open positions", "float",
                                  unit="USD", min=0, min_open=True)
    max_order_usd: float = key(250.0, "largest single order (fat-finger guard)", "float",
                               unit="USD", min=0, min_open=True)
    daily_loss_limit_usd: float = key(
        50.0, "realized + unrealized loss that halts new entries until the next UTC day",
        "float", unit="USD", min=0, min_open=True)
    max_consecutive_losses: int = key(3, "losing trades in a row before a cooldown", "int",
                                      min=1, max=1000)
    cooldown_s: float = key(3600.0, "pause of new entries after that many losses", "float",
                            unit="s", min=0, max=7 * 86400)
    risk_fraction: float = key(
        0.0, "fraction of equity lost if an entry's stop is hit, which sizes each position "
        "(capped by max_position_usd and max_order_usd); 0: every position is max_position_usd",
        "float", min=0, max=0.1)
    stop_loss_pct: float = key(0.0, "exit when the price falls this far under the average "
                               "entry, unless the strategy set its own stop; 0: off", "float",
                               unit="%", min=0, max=99)
    take_profit_pct: float = key(0.0, "exit when the price rises this far over the average "
                                 "entry, unless the strategy set its own target; 0: off",
                                 "float", unit="%", min=0, max=1000)
    trailing_stop_pct: float = key(0.0, "exit when the price falls this far under its highest "
                                   "since entry; 0: off", "float", unit="%", min=0, max=99)
    max_hold_s: float = key(0.0, "exit a position held this long; 0: no limit", "float",
                            unit="s", min=0, max=365 * 86400)
    breaker_max_errors: int = key(5, "order rejects and execution errors within "
                                  "breaker_window_s that halt new entries", "int", min=1,
                                  max=1000)
    breaker_window_s: float = key(60.0, "sliding window of the circuit breaker", "float",
                                  unit="s", min=1, max=86400)
    breaker_halt_s: float = key(300.0, "how long the circuit breaker halts new entries",
                                "float", unit="s", min=0, max=86400)
    flatten_on_kill: bool = key(False, "with the kill switch, also sell every position at "
                                "market", "bool")


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    limit_timeout_s: float = key(20.0, "cancel and reprice a resting post-only limit order "
                                 "after this long", "float", unit="s", min=1, max=3600)
    max_reprices: int = key(3, "reprices before the fallback", "int", min=0, max=100)
    fallback: str = key("market", "after the last reprice: market (IOC) | cancel", "choice",
                        choices=("market", "cancel"))
    cancel_on_shutdown: bool = key(True, "cancel open orders on a clean shutdown", "bool")
    cancel_unknown_orders: bool = key(
        False, "live: cancel open exchange orders the journal does not know, at start and "
        "when one shows up while running (false: report them and leave them alone)", "bool")
    resend_window_s: float = key(
        60.0, "live: at start, a journaled order the exchange does not have is sent again "
        "(same client order id) only if it was decided this recently; older ones are "
        "dropped as never sent", "float", unit="s", min=0, max=3600)
    unknown_grace_s: float = key(
        10.0, "live: an order whose create answer was lost and that lookups still do not "
        "find after this long is sent again with the same client order id", "float",
        unit="s", min=0.5, max=600)
    poll_interval_s: float = key(
        2.0, "live: while the user channel is down, open orders and their fills are polled "
        "over REST this often", "float", unit="s", min=0.2, max=60)
    accounts_refresh_s: float = key(
        30.0, "live: balances (for equity) are fetched this often, and after fills", "float",
        unit="s", min=1, max=3600)


@dataclass(frozen=True, slots=True)
class PaperConfig:
    starting_balance_usd: float = key(10_000.0, "paper account cash at start", "float",
                                      unit="USD", min=0, min_open=True)
    slippage_bps: float = key(5.0, "market orders fill this far past the touch", "float",
                              unit="bps", min=0, max=1000)
    maker_fee_bps: float = key(40.0, "fee on resting (maker) fills", "float", unit="bps",
                               min=0, max=1000)
    taker_fee_bps: float = key(60.0, "fee on crossing (taker) fills", "float", unit="bps",
                               min=0, max=1000)


@dataclass(frozen=True, slots=True)
class ResearchConfig:
    min_sharpe: float = key(1.2, "approval gate: Sharpe ratio of daily returns at least this",
                            "float", min=-10, max=10)
    min_win_rate_pct: float = key(45.0, "approval gate: winning trades at least this share",
                                  "float", unit="%", min=0, max=100)
    min_profit_factor: float = key(1.5, "approval gate: gross profit / gross loss at least this",
                                   "float", min=0)
    max_drawdown_pct: float = key(15.0, "approval gate: deepest fall of equity from a peak at "
                                  "most this", "float", unit="%", min=0, max=100)


@dataclass(frozen=True, slots=True)
class StrategyConfig:
    enabled: bool = key(True, "run this strategy", "bool")
    interval: str = key("", "candles it decides on (one of market.intervals); empty: the "
                        "strategy file's INTERVAL", "interval", allow_empty=True)
    products: tuple[str, ...] = key((), "products it trades; empty: the selector's top N",
                                    "strs")
    params: MappingProxyType = key(MappingProxyType({}), "the strategy's own parameters",
                                   "params")


SECTIONS: dict[str, type] = {
    "daemon": DaemonConfig,
    "log": LogConfig,
    "status": StatusConfig,
    "coinbase": CoinbaseConfig,
    "market": MarketConfig,
    "selector": SelectorConfig,
    "storage": StorageConfig,
    "risk": RiskConfig,
    "execution": ExecutionConfig,
    "paper": PaperConfig,
    "research": ResearchConfig,
}


@dataclass(frozen=True, slots=True)
class Config:
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    log: LogConfig = field(default_factory=LogConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    coinbase: CoinbaseConfig = field(default_factory=CoinbaseConfig)
    market: MarketConfig = field(default_factory=MarketConfig)
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)
    research: ResearchConfig = field(default_factory=ResearchConfig)
    strategies: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))


# ---- parsing -------------------------------------------------------------------------------

class _Invalid(Exception):
    """One key's value is unusable; the message is the reason."""


def parse(data: bytes) -> Config | ConfigErrors:
    """Parse config.toml bytes into a `Config`, or return every (key path, reason) error."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [(FILE_KEY, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [(FILE_KEY, f"invalid TOML: {exc}")]
    if not raw:
        return [(FILE_KEY, "has no settings (an empty file?); `trader init` writes the defaults")]
    errors: ConfigErrors = []
    _check_unknown(raw, [*SECTIONS, "strategies"], "", errors)
    sections = {name: _parse_table(cls, raw.get(name, {}), name, errors)
                for name, cls in SECTIONS.items()}
    strategies = _parse_strategies(raw.get("strategies", {}), errors)
    if errors:
        return errors
    config = Config(**sections, strategies=strategies)
    errors.extend(_cross_checks(config))
    return errors or config


def _parse_table(cls: type, raw: Any, path: str, errors: ConfigErrors) -> Any:
    if not isinstance(raw, dict):
        errors.append((path, f"expected a table, got {_type_name(raw)}"))
        return None
    _check_unknown(raw, [f.name for f in fields(cls)], path + ".", errors)
    values = {}
    for f in fields(cls):
        if f.name not in raw:
            continue
        try:
            values[f.name] = _check_value(spec_of(f), raw[f.name])
        except _Invalid as exc:
            errors.append((f"{path}.{f.name}", str(exc)))
    return cls(**values)


def _check_unknown(raw: dict, known: list[str], prefix: str, errors: ConfigErrors) -> None:
    for name in raw:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            errors.append((f"{prefix}{name}", f"unknown key{hint}"))


def _parse_strategies(raw: Any, errors: ConfigErrors) -> MappingProxyType:
    if not isinstance(raw, dict):
        errors.append(("strategies", f"expected a table, got {_type_name(raw)}"))
        return MappingProxyType({})
    parsed = {}
    for name, table in raw.items():
        if not _NAME_RE.match(name):
            errors.append((f"strategies.{name}", "a strategy name is lower_snake_case"))
            continue
        parsed[name] = _parse_table(StrategyConfig, table, f"strategies.{name}", errors)
    return MappingProxyType(parsed)


def _check_value(spec: Spec, value: Any) -> Any:
    check = _CHECKS[spec.kind]
    checked = check(spec, value)
    return spec.convert(checked) if spec.convert else checked


def _check_bool(spec: Spec, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_show(value)}")
    return value


def _check_number(spec: Spec, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"expected a number, got {_show(value)}")
    if spec.kind == "int" and not isinstance(value, int):
        raise _Invalid(f"expected a whole number, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(f"must be a finite number, got {value}")
    _check_range(spec, value)
    return float(value) if spec.kind == "float" else value


def _check_range(spec: Spec, value: float) -> None:
    unit = f" {spec.unit}" if spec.unit else ""
    if spec.min is not None:
        if spec.min_open and not value > spec.min:
            raise _Invalid(f"must be > {_num(spec.min)}{unit}, got {_num(value)}")
        if not spec.min_open and value < spec.min:
            raise _Invalid(f"must be >= {_num(spec.min)}{unit}, got {_num(value)}")
    if spec.max is not None and value > spec.max:
        raise _Invalid(f"must be <= {_num(spec.max)}{unit}, got {_num(value)}")


def _check_str(spec: Spec, value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_show(value)}")
    if "\x00" in value:
        raise _Invalid("must not contain NUL characters")
    return value


def _check_choice(spec: Spec, value: Any) -> str:
    if not isinstance(value, str) or value not in spec.choices:
        options = " | ".join(str(c) for c in spec.choices)
        raise _Invalid(f"expected one of {options}, got {_show(value)}")
    return value


def _check_strs(spec: Spec, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid(f"expected a list of strings, got {_show(value)}")
    bad = [v for v in value if not _PRODUCT_RE.match(v)]
    if bad:
        raise _Invalid(f"expected product ids like BTC-USD, got {bad[0]!r}")
    if len(set(value)) != len(value):
        raise _Invalid("lists a product twice")
    return tuple(value)


def _check_interval(spec: Spec, value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected an interval string like \"5m\", got {_show(value)}")
    if value == "" and spec.allow_empty:
        return value
    try:
        interval_seconds(value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return value


def _check_intervals(spec: Spec, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _Invalid(f"expected a non-empty list of intervals, got {_show(value)}")
    checked = tuple(_check_interval(spec, v) for v in value)
    if len({interval_seconds(v) for v in checked}) != len(checked):
        raise _Invalid("lists an interval twice")
    return checked


def _check_params(spec: Spec, value: Any) -> MappingProxyType:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a table of parameters, got {_show(value)}")
    for name, item in value.items():
        if not isinstance(item, bool | int | float):
            raise _Invalid(f"parameter {name!r} must be a number or boolean, got {_show(item)}")
        if isinstance(item, float) and not math.isfinite(item):
            raise _Invalid(f"parameter {name!r} must be finite, got {item}")
    return MappingProxyType(dict(value))


_CHECKS: dict[str, Callable[[Spec, Any], Any]] = {
    "bool": _check_bool, "int": _check_number, "float": _check_number, "str": _check_str,
    "choice": _check_choice, "strs": _check_strs, "interval": _check_interval,
    "intervals": _check_intervals, "params": _check_params,
}


def _cross_checks(config: Config) -> ConfigErrors:
    errors: ConfigErrors = []
    kept = {interval_seconds(i) for i in config.market.intervals}
    if interval_seconds(config.selector.interval) not in kept:
        errors.append(("selector.interval", f"{config.selector.interval!r} is not in "
                       f"market.intervals {list(config.market.intervals)}"))
    for name, strategy in config.strategies.items():
        if strategy.interval and interval_seconds(strategy.interval) not in kept:
            errors.append((f"strategies.{name}.interval", f"{strategy.interval!r} is not in "
                           f"market.intervals {list(config.market.intervals)}"))
    if config.risk.max_position_usd > config.risk.max_exposure_usd:
        errors.append(("risk.max_position_usd", f"must be <= risk.max_exposure_usd "
                       f"({_num(config.risk.max_exposure_usd)}), got "
                       f"{_num(config.risk.max_position_usd)}"))
    return errors


def _type_name(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a float"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    shown = text if len(text) <= 40 else text[:37] + "..."
    return f"{_type_name(value)} {shown}" if not isinstance(value, dict) else "a table"


def _num(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


# ---- diff and hot reload -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ConfigChange:
    """What a new config changes: the config to run now, the sections that changed in it,
    and the key paths that differ but wait for a restart (they keep their running value)."""

    effective: Config
    changed_sections: tuple[str, ...]
    restart_required: tuple[str, ...]


def diff(old: Config, new: Config) -> ConfigChange:
    """Split the difference between two configs into hot changes and keys needing a restart."""
    pending: list[str] = []
    effective = {}
    for name in SECTIONS:
        old_section, new_section = getattr(old, name), getattr(new, name)
        kept = {}
        for f in fields(new_section):
            if spec_of(f).restart and getattr(old_section, f.name) != getattr(new_section, f.name):
                pending.append(f"{name}.{f.name}")
                kept[f.name] = getattr(old_section, f.name)
        effective[name] = dataclasses.replace(new_section, **kept)
    merged = Config(**effective, strategies=new.strategies)
    changed = tuple(name for name in [*SECTIONS, "strategies"]
                    if getattr(old, name) != getattr(merged, name))
    return ConfigChange(merged, changed, tuple(pending))


# ---- the documented default file -----------------------------------------------------------

_HEADER = """\
# trader configuration. Edits are applied while the daemon runs (checked about once a second
# and on SIGHUP); an invalid edit is rejected with its key path and reason and the daemon keeps
# the last good config. Keys marked [restart] only take effect after a restart.
# Check a file with: trader check-config -c config.toml
"""

_STRATEGY_EXAMPLE = """\
# [strategies.<name>] runs <strategies_dir>/<name>.py; built in: sma_cross, ema_rsi,
# macd_bbands, weighted_score, four_step (each file documents its parameters).
[strategies.sma_cross]
# run this strategy
enabled = true
# candles it decides on (one of market.intervals); empty: the strategy file's INTERVAL
interval = "5m"
# products it trades; empty: the selector's top N
products = []
# the strategy's own parameters; unknown names are errors
params = { fast = 10, slow = 30 }
"""


def render_default() -> str:
    """The default config.toml, every key with a comment, from the schema itself."""
    parts = [_HEADER]
    for name, cls in SECTIONS.items():
        parts.append(f"\n[{name}]\n")
        for f in fields(cls):
            parts.append(_render_key(f))
    parts.append("\n" + _STRATEGY_EXAMPLE)
    return "".join(parts)


def _render_key(f: dataclasses.Field) -> str:
    spec = spec_of(f)
    notes = [n for n in (spec.unit, _range_note(spec), "restart" if spec.restart else "") if n]
    suffix = f" [{'; '.join(notes)}]" if notes else ""
    comment = textwrap.fill(f"{spec.doc}{suffix}", width=98, initial_indent="# ",
                            subsequent_indent="# ")
    return f"{comment}\n{f.name} = {_toml_value(f.default)}\n"


def _range_note(spec: Spec) -> str:
    low = None if spec.min is None else f"{'>' if spec.min_open else '>='} {_num(spec.min)}"
    high = None if spec.max is None else f"<= {_num(spec.max)}"
    return ", ".join(n for n in (low, high) if n)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # Mode is a str enum and renders as its value
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


# ---- the reference (README) ----------------------------------------------------------------

_SECTION_NOTES = {
    "daemon": "The process: trading mode, where its files live, shutdown and reload.",
    "log": "What is logged and how it is written.",
    "status": "The status server that `trader status` and Prometheus read.",
    "coinbase": "Endpoints, the API key and request pacing.",
    "market": "Products streamed and the candle windows built from their trades.",
    "selector": "The ranking that picks which products new positions may open in.",
    "storage": "The PostgreSQL/TimescaleDB writer.",
    "risk": "Limits checked before every entry (a refusal has a reason) and the exits risk "
            "adds.",
    "execution": "How orders are placed, repriced and reconciled.",
    "paper": "The simulated account of paper and shadow mode (and the backtest's defaults).",
    "research": "Approval gates a backtest's metrics are checked against (the terminal "
                "summary and the report show each); the daemon does not read them.",
}

_KIND_NAMES = {
    "bool": "true \\| false", "int": "integer", "float": "number", "str": "string",
    "strs": "list of product ids", "interval": "interval (1m … 1d)",
    "intervals": "list of intervals (1m … 1d)", "params": "table of numbers or booleans",
}


def render_reference() -> str:
    """Markdown tables of every config key (`trader config-reference`; README.md holds a copy)."""
    parts = [
        "Generated from the schema in `trader/config.py` by `trader config-reference`. "
        "*applies*: `hot` takes effect on reload while the daemon runs; `restart` keeps its "
        "running value until the next start.\n",
    ]
    tables = [(f"[{name}]", _SECTION_NOTES.get(name, ""), cls) for name, cls in SECTIONS.items()]
    tables.append(("[strategies.<name>]", "One table per strategy to run: "
                   "`<strategies_dir>/<name>.py` with these settings (`params`: its `PARAMS`; "
                   "unknown names are errors).", StrategyConfig))
    for title, note, cls in tables:
        parts.append(f"\n#### `{title}`\n\n{note}\n\n" if note else f"\n#### `{title}`\n\n")
        parts.append("| key | default | values | unit | applies | what it sets |\n"
                     "|---|---|---|---|---|---|\n")
        parts.extend(_reference_row(f, getattr(cls(), f.name)) for f in fields(cls))
    return "".join(parts)


def _reference_row(f: dataclasses.Field, value: Any) -> str:
    spec = spec_of(f)
    if spec.kind == "choice":
        values = " \\| ".join(f"`{c}`" for c in spec.choices)
    else:
        values = " ".join(n for n in (_KIND_NAMES[spec.kind], _range_note(spec)) if n)
    default = "{}" if isinstance(value, MappingProxyType) else _toml_value(value)
    doc = spec.doc.replace("|", "\\|").replace("<", "\\<")
    applies = "restart" if spec.restart else "hot"
    return f"| `{f.name}` | `{default}` | {values} | {spec.unit} | {applies} | {doc} |\n"
