"""The config schema: defaults, every kind of error with its key path, diff and restart keys."""

from __future__ import annotations

import dataclasses
import tomllib
from types import MappingProxyType

import pytest
import tomli_w

from tests.helpers import REPO
from trader import config as cfg
from trader.types import Mode


def parse_dict(raw: dict) -> cfg.Config | cfg.ConfigErrors:
    return cfg.parse(tomli_w.dumps(raw).encode())


def test_shipped_config_is_the_rendered_default_and_parses_to_the_schema_defaults():
    shipped = (REPO / "config.toml").read_text()
    assert shipped == cfg.render_default()
    parsed = cfg.parse(shipped.encode())
    assert dataclasses.replace(parsed, strategies=MappingProxyType({})) == cfg.Config()
    assert dict(parsed.strategies["sma_cross"].params) == {"fast": 10, "slow": 30}
    assert parsed.daemon.mode is Mode.PAPER
    assert parsed.market.products == ("BTC-USD", "ETH-USD", "SOL-USD")
    assert parsed.storage.dsn == ""
    assert parsed.coinbase.key_file == ""


def test_every_key_of_the_default_file_has_a_comment_above_it():
    lines = cfg.render_default().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(("#", "[")):
            assert lines[i - 1].startswith("#"), f"no comment above {line!r}"


def test_every_schema_key_appears_in_the_default_file():
    rendered = tomllib.loads(cfg.render_default())
    for name, section in cfg.SECTIONS.items():
        assert set(rendered[name]) == {f.name for f in dataclasses.fields(section)}


@pytest.mark.parametrize(("raw", "expected"), [
    ({"market": {"products": "BTC-USD"}},
     ("market.products", "expected a list of strings, got a string 'BTC-USD'")),
    ({"market": {"products": ["btc"]}},
     ("market.products", "expected product ids like BTC-USD, got 'btc'")),
    ({"market": {"prodcts": ["BTC-USD"]}},
     ("market.prodcts", "unknown key (did you mean 'products'?)")),
    ({"risk": {"max_position_usd": -5}}, ("risk.max_position_usd", "must be > 0 USD, got -5")),
    ({"risk": {"max_open_positions": 2.5}},
     ("risk.max_open_positions", "expected a whole number, got a float 2.5")),
    ({"daemon": {"mode": "yolo"}},
     ("daemon.mode", "expected one of paper | shadow | live, got a string 'yolo'")),
    ({"market": {"intervals": ["1m", "2d"]}}, ("market.intervals", "must be at most 1d, got '2d'")),
    ({"market": {"intervals": ["1m", "60m", "1h"]}},
     ("market.intervals", "lists an interval twice")),
    ({"daemon": {"shutdown_timeout_s": float("nan")}},
     ("daemon.shutdown_timeout_s", "must be a finite number, got nan")),
    ({"risk": {"kill_switch": "yes"}},
     ("risk.kill_switch", "expected true or false, got a string 'yes'")),
    ({"market": 3}, ("market", "expected a table, got an integer")),
    ({"nonsense": {"a": 1}}, ("nonsense", "unknown key")),
    ({"strategies": {"Bad-Name": {}}},
     ("strategies.Bad-Name", "a strategy name is lower_snake_case")),
    ({"strategies": {"sma_cross": {"params": {"fast": "ten"}}}},
     ("strategies.sma_cross.params", "parameter 'fast' must be a number or boolean, got a "
                                     "string 'ten'")),
    ({"strategies": {"sma_cross": {"interval": "15m"}}},
     ("strategies.sma_cross.interval", "'15m' is not in market.intervals ['1m', '5m', '1h']")),
    ({"risk": {"max_position_usd": 500.0}},
     ("risk.max_position_usd", "must be <= risk.max_exposure_usd (300), got 500")),
])
def test_an_invalid_value_is_reported_with_its_key_path_and_reason(raw, expected):
    assert parse_dict(raw) == [expected]


def test_all_errors_are_reported_at_once():
    errors = parse_dict({"market": {"products": [1], "x": 1}, "risk": {"cooldown_s": -1}})
    assert [path for path, _ in errors] == ["market.x", "market.products", "risk.cooldown_s"]


@pytest.mark.parametrize(("data", "reason_start"), [
    (b"", "has no settings"),
    (b"# only a comment\n", "has no settings"),
    (b"[market\nproducts = []", "invalid TOML: "),
    (b"\xff\xfe[daemon]", "not UTF-8 text"),
])
def test_a_file_that_is_not_a_config_is_a_file_level_error(data, reason_start):
    [(path, reason)] = cfg.parse(data)
    assert path == cfg.FILE_KEY
    assert reason.startswith(reason_start)


def test_strategies_parse_into_frozen_sections_with_their_params():
    parsed = parse_dict({"strategies": {"ema_rsi": {"interval": "1h", "products": ["ETH-USD"],
                                                    "params": {"fast": 9, "rsi_on": True}}}})
    strategy = parsed.strategies["ema_rsi"]
    assert strategy == cfg.StrategyConfig(interval="1h", products=("ETH-USD",),
                                          params=strategy.params)
    assert dict(strategy.params) == {"fast": 9, "rsi_on": True}
    with pytest.raises(TypeError):
        strategy.params["fast"] = 10


def test_interval_seconds():
    assert [cfg.interval_seconds(t) for t in ("1m", "5m", "1h", "4h", "1d")] == [
        60, 300, 3600, 14400, 86400]
    for bad in ("0m", "1s", "25h", "m", "1.5h", " 1m"):
        with pytest.raises(ValueError):
            cfg.interval_seconds(bad)


def test_diff_applies_hot_keys_and_holds_restart_keys_at_their_running_value():
    old = cfg.Config()
    new = parse_dict({"daemon": {"mode": "live", "shutdown_timeout_s": 3.0},
                      "market": {"products": ["BTC-USD"]}})
    change = cfg.diff(old, new)
    assert change.restart_required == ("daemon.mode",)
    assert change.effective.daemon.mode is Mode.PAPER
    assert change.effective.daemon.shutdown_timeout_s == 3.0
    assert change.effective.market.products == ("BTC-USD",)
    assert change.changed_sections == ("daemon", "market")


def test_diff_of_equal_configs_changes_nothing():
    change = cfg.diff(cfg.Config(), cfg.Config())
    assert change.changed_sections == ()
    assert change.restart_required == ()


def test_diff_reports_a_changed_strategy_section():
    new = parse_dict({"strategies": {"sma_cross": {"params": {"fast": 5}}}})
    assert cfg.diff(cfg.Config(), new).changed_sections == ("strategies",)
