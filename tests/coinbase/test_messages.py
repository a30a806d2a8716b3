"""coinbase/messages: real recorded frames, exact values, timestamps, malformed input, fuzzing."""

from __future__ import annotations

import calendar
import itertools
import json
import math
from collections import Counter
from datetime import datetime

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.recordings import advanced_trade_frames, advanced_trade_sent, ws_samples
from trader.coinbase.messages import (
    REASONS,
    Frame,
    ServerError,
    Subscriptions,
    parse_frame,
    parse_go_time_ns,
    parse_market_trades,
    parse_rfc3339_ns,
    parse_ticker,
    subscribe_message,
    unsubscribe_message,
)
from trader.errors import FrameError
from trader.types import Heartbeat, Quote, Side, Trade

FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def reference_ns(text: str) -> int:
    """Independent RFC3339 reading: strptime for the second, the fraction as padded digits."""
    head, _, frac = text.removesuffix("Z").partition(".")
    second = calendar.timegm(datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").timetuple())
    return second * 10**9 + int(frac.ljust(9, "0"))


def reference_trade(t: dict) -> Trade:
    flipped = {"BUY": Side.SELL, "SELL": Side.BUY}[t["side"]]
    return Trade(t["product_id"], int(t["trade_id"]), float(t["price"]), float(t["size"]),
                 flipped, reference_ns(t["time"]))


@pytest.fixture(scope="module")
def replayed() -> list[tuple[dict, Frame]]:
    """Every recorded frame, decoded independently with json and parsed with parse_frame."""
    return [(json.loads(r.data), parse_frame(r.data)) for r in advanced_trade_frames()]


def by_seq(replayed: list[tuple[dict, Frame]], seq: int) -> Frame:
    return next(frame for _, frame in replayed if frame.sequence_num == seq)


# ---- the real recording ----------------------------------------------------------------------


def test_every_recorded_frame_parses_and_only_unconsumed_channels_are_ignored(replayed):
    assert len(replayed) == 1030
    for plain, frame in replayed:
        assert frame.channel == plain["channel"]
        assert frame.ignored == (plain["channel"] in {"l2_data", "candles"})
        assert frame.timestamp_ns == reference_ns(plain["timestamp"])
        assert frame.event_type == plain["events"][0].get("type", "")
        if frame.ignored:
            assert frame.values == ()


def test_counts_per_channel_match_a_plain_json_pass(replayed):
    frames = Counter(plain["channel"] for plain, _ in replayed)
    assert frames == Counter(frame.channel for _, frame in replayed)
    assert frames == {"l2_data": 775, "ticker": 160, "market_trades": 59, "heartbeats": 25,
                      "candles": 6, "subscriptions": 5}
    items = {"market_trades": "trades", "ticker": "tickers"}
    expected = Counter()
    for plain, _ in replayed:
        if plain["channel"] in items:
            expected[plain["channel"]] += len(plain["events"][0][items[plain["channel"]]])
        elif plain["channel"] in ("heartbeats", "subscriptions"):
            expected[plain["channel"]] += len(plain["events"])
    parsed = Counter()
    for _, frame in replayed:
        parsed[frame.channel] += len(frame.values)
    assert +parsed == expected
    assert expected["market_trades"] == 279 and expected["ticker"] == 160


def test_every_recorded_trade_and_quote_equals_an_independent_reading(replayed):
    for plain, frame in replayed:
        if plain["channel"] == "market_trades":
            wire = plain["events"][0]["trades"]
            assert list(frame.values) == [reference_trade(t) for t in wire]
            assert parse_market_trades(orjson.loads(orjson.dumps(plain))) == list(frame.values)
        elif plain["channel"] == "ticker":
            (t,) = plain["events"][0]["tickers"]
            assert frame.values == (Quote(
                t["product_id"], float(t["price"]), float(t["best_bid"]), float(t["best_ask"]),
                float(t["best_bid_quantity"]), float(t["best_ask_quantity"]),
                float(t["volume_24_h"]), float(t["low_24_h"]), float(t["high_24_h"]),
                float(t["price_percent_chg_24_h"]), reference_ns(plain["timestamp"])),)


def test_sequence_num_is_one_gapless_counter_across_channels(replayed):
    assert [frame.sequence_num for _, frame in replayed] == list(range(1030))


def test_heartbeats_tick_once_a_second_with_a_server_wide_counter(replayed):
    beats = [(f.values[0], f.timestamp_ns) for _, f in replayed if f.channel == "heartbeats"]
    counters = [beat.heartbeat_counter for beat, _ in beats]
    assert counters == list(range(41691, 41716))
    gaps_ms = [(b.current_time_ns - a.current_time_ns) / 1e6
               for (a, _), (b, _) in itertools.pairwise(beats)]
    assert all(998 < gap < 1002 for gap in gaps_ms)  # observed 998.9-1000.7
    assert all(0 < sent - beat.current_time_ns < 5_000_000 for beat, sent in beats)  # <= 4.1 ms


def test_market_trades_snapshot_exact_values(replayed):
    frame = by_seq(replayed, 0)
    assert (frame.channel, frame.timestamp_ns, frame.event_type, frame.ignored) == (
        "market_trades", 1786309548_228568804, "snapshot", False)
    assert len(frame.values) == 100
    # wire side "SELL" (the maker sold) is an aggressive buy
    assert frame.values[0] == Trade("BTC-USD", 1068572090, 65083.67, 0.002186, Side.BUY,
                                    1786309542_514318000)
    # Go trims trailing zeros: four fraction digits
    short = next(t for t in frame.values if t.trade_id == 1068572055)
    assert short == Trade("BTC-USD", 1068572055, 65086.36, 0.12781711, Side.SELL,
                          1786309516_154200000)
    assert [t.trade_id for t in frame.values] == list(range(1068572090, 1068571990, -1))


def test_market_trades_update_exact_values(replayed):
    frame = by_seq(replayed, 255)
    assert (frame.timestamp_ns, frame.event_type) == (1786309554_379555714, "update")
    at = 1786309554_257824000
    assert frame.values == (
        Trade("ETH-USD", 833140787, 1919.38, 0.89452679, Side.SELL, at),
        Trade("ETH-USD", 833140786, 1919.42, 0.00066375, Side.SELL, at),
        Trade("ETH-USD", 833140785, 1919.43, 0.05050291, Side.SELL, at),
        Trade("ETH-USD", 833140784, 1919.47, 0.10672916, Side.SELL, at),
    )
    assert type(frame.values[0].time_ns) is int and frame.values[0].side is Side.SELL


def test_ticker_heartbeat_subscriptions_exact_values(replayed):
    assert by_seq(replayed, 6) == Frame("ticker", 6, 1786309548_229198328, "snapshot", (Quote(
        "BTC-USD", 65086.18, 65083.66, 65083.67, 0.20371215, 0.24290402, 2867.54532609,
        64675.22, 65252.99, 0.09601107287722, 1786309548_229198328),))
    assert by_seq(replayed, 85).timestamp_ns == 1786309550_047412800  # seven fraction digits
    assert by_seq(replayed, 35) == Frame("heartbeats", 35, 1786309548_856364007, "", (
        Heartbeat(current_time_ns=1786309548_854840045, heartbeat_counter=41691),))
    assert by_seq(replayed, 26) == Frame("subscriptions", 26, 1786309548_629706932, "", (
        Subscriptions({"candles": ("ETH-USD", "BTC-USD"), "heartbeats": ("heartbeats",),
                       "level2": ("BTC-USD", "ETH-USD"), "market_trades": ("BTC-USD", "ETH-USD"),
                       "ticker": ("BTC-USD", "ETH-USD")}),))


def test_ignored_channels_keep_their_envelope(replayed):
    assert by_seq(replayed, 13) == Frame("l2_data", 13, 1786309548_483587501, "snapshot", (),
                                         True)
    assert by_seq(replayed, 138) == Frame("candles", 138, 1786309551_491081826, "update", (),
                                          True)
    assert max(len(r.data) for r in advanced_trade_frames()) == 5_079_379  # the l2 snapshot


# ---- samples and fixtures --------------------------------------------------------------------

SAMPLE_EXPECTED = {  # file in tests/data/coinbase_samples -> (channel, ignored, values)
    "ws_candles_snapshot.json": ("candles", True, 0),
    "ws_candles_update.json": ("candles", True, 0),
    "ws_error_authentication_failure.json": ("error", False, 1),
    "ws_futures_balance_summary.json": ("futures_balance_summary", True, 0),
    "ws_heartbeats.json": ("heartbeats", False, 1),
    "ws_level2_snapshot.json": ("l2_data", True, 0),
    "ws_level2_update.json": ("l2_data", True, 0),
    "ws_market_trades_snapshot.json": ("market_trades", False, 5),
    "ws_market_trades_update.json": ("market_trades", False, 4),
    "ws_status.json": ("status", True, 0),
    "ws_subscriptions.json": ("subscriptions", False, 1),
    "ws_ticker_batch.json": ("ticker_batch", False, 1),
    "ws_ticker_snapshot.json": ("ticker", False, 1),
    "ws_ticker_update.json": ("ticker", False, 1),
    "ws_user_snapshot.json": ("user", True, 0),
    "ws_user_update.json": ("user", True, 0),
}
NOT_SERVER_FRAMES = {"ws_session_trace.json", "ws_subscribe_requests.json",
                     "ws_subscribe_sent_by_cryptofeed.json"}


def test_every_ws_sample_is_classified():
    assert set(ws_samples()) == set(SAMPLE_EXPECTED) | NOT_SERVER_FRAMES


@pytest.mark.parametrize("name", sorted(SAMPLE_EXPECTED))
def test_ws_samples_parse(name):
    frame = parse_frame(ws_samples()[name])
    assert (frame.channel, frame.ignored, len(frame.values)) == SAMPLE_EXPECTED[name]


def test_sample_exact_values():
    samples = ws_samples()
    assert parse_frame(samples["ws_error_authentication_failure.json"]) == Frame(
        "error", None, None, "", (ServerError("authentication failure"),))
    batch = parse_frame(samples["ws_ticker_batch.json"]).values[0]
    assert (batch.best_bid, batch.best_ask, batch.best_bid_size, batch.best_ask_size) == (
        None, None, None, None)
    assert (batch.price, batch.time_ns) == (65083.67, 1786309553_229198328)


def test_other_spellings_of_the_same_fields():
    """Zero-padded decimals, six fraction digits, a "+00:00" heartbeat time (other writers)."""
    envelope = {"client_id": "", "timestamp": "2026-08-09T21:05:54.379555Z", "sequence_num": 7}
    trades = parse_frame(orjson.dumps({**envelope, "channel": "market_trades", "events": [
        {"type": "update", "trades": [
            {"trade_id": "1068572101", "product_id": "BTC-USD", "price": "65083.60",
             "size": "0.00150000", "side": "BUY", "time": "2026-08-09T21:05:54.257824Z"},
            {"trade_id": "1068572100", "product_id": "BTC-USD", "price": "65083.00",
             "size": "0.05000000", "side": "SELL", "time": "2026-08-09T21:05:54.200000Z"}]}]}))
    assert trades.values == (
        Trade("BTC-USD", 1068572101, 65083.6, 0.0015, Side.SELL, 1786309554_257824000),
        Trade("BTC-USD", 1068572100, 65083.0, 0.05, Side.BUY, 1786309554_200000000))
    beat = parse_frame(orjson.dumps({**envelope, "channel": "heartbeats", "events": [
        {"current_time": "2026-08-09 21:05:55.000000000+00:00", "heartbeat_counter": 41698}]}))
    assert beat.values == (Heartbeat(1786309555_000000000, 41698),)
    # should heartbeats move to RFC3339 text, they still read
    assert parse_go_time_ns("2026-04-07T14:30:10.5Z") == 1775572210_500000000


# ---- outgoing --------------------------------------------------------------------------------


def test_subscribe_frames_match_what_cryptofeed_sent():
    channels = ["market_trades", "candles", "ticker", "level2", "heartbeats"]
    built = [subscribe_message(c, ["BTC-USD", "ETH-USD"]) for c in channels]
    assert built == list(advanced_trade_sent())


def test_subscribe_and_unsubscribe_shapes():
    assert orjson.loads(subscribe_message("heartbeats")) == {
        "type": "subscribe", "product_ids": [], "channel": "heartbeats"}
    assert orjson.loads(subscribe_message("user", ("BTC-USD",), jwt="a.b.c")) == {
        "type": "subscribe", "product_ids": ["BTC-USD"], "channel": "user", "jwt": "a.b.c"}
    assert orjson.loads(unsubscribe_message("market_trades", iter(["ETH-USD"]))) == {
        "type": "unsubscribe", "product_ids": ["ETH-USD"], "channel": "market_trades"}
    with pytest.raises(ValueError, match="unknown channel"):
        subscribe_message("l2_data", ["BTC-USD"])  # a received name, not a subscribable one
    with pytest.raises(TypeError):
        subscribe_message("ticker", "BTC-USD")
    with pytest.raises(ValueError):
        subscribe_message("ticker", ["BTC-USD", ""])


# ---- timestamps ------------------------------------------------------------------------------

moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))


@given(moments, st.integers(0, 10**9 - 1), st.integers(0, 9), st.booleans())
def test_rfc3339_matches_the_reference(moment, nanos, digits, trim):
    frac = f"{nanos:09d}"[:digits]
    frac = frac.rstrip("0") if trim else frac
    text = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + (f".{frac}" if frac else "")
    text += "Z"
    expected = calendar.timegm(moment.timetuple()) * 10**9 + int(frac.ljust(9, "0"))
    assert parse_rfc3339_ns(text) == expected == reference_ns(text)


@given(moments, st.integers(0, 10**9 - 1), st.integers(-23 * 60 - 59, 23 * 60 + 59),
       st.sampled_from(["+0000 UTC m=+41691.260485341", "{sign}{hh}{mm} XYZ", "{sign}{hh}:{mm}"]))
def test_go_time_matches_the_reference(moment, nanos, offset_min, zone):
    sign, hh, mm = "+" if offset_min >= 0 else "-", abs(offset_min) // 60, abs(offset_min) % 60
    if zone.startswith("+0000"):
        offset_min = 0
    zone = zone.format(sign=sign, hh=f"{hh:02d}", mm=f"{mm:02d}")
    frac = f"{nanos:09d}".rstrip("0")  # Go's time.String() trims trailing zeros
    text = moment.strftime("%Y-%m-%d %H:%M:%S").rjust(19, "0") + (f".{frac}" if frac else "")
    expected = (calendar.timegm(moment.timetuple()) - offset_min * 60) * 10**9 + nanos
    assert parse_go_time_ns(f"{text} {zone}") == expected


@pytest.mark.parametrize("text", [
    "", "2026-08-09", "2026-08-09T21:05:42", "2026-08-09T21:05:42.Z", "2026-08-09T21:05:42.5",
    "2026-08-09T21:05:42.1234567890Z", "2026-13-09T21:05:42Z", "2026-02-30T21:05:42Z",
    "2026-08-09T24:00:00Z", "2026-08-09T21:05:60Z", "2026-08-09T21:05:42.+5Z",
    "2026-08-09T21:05:42.-5Z", "2026-08-09T21:05:42.5_0Z", "2026-08-09T21:05:42+00:00",
    "2026-8-09T21:05:42.5Z", "+026-08-09T21:05:42.5Z", "2026-08-09T21:05:42.5z",
    "2026-08-09T21:05:42.²Z", "\uff12026-08-09T21:05:42Z",
])
def test_bad_rfc3339_is_a_bad_time(text):
    with pytest.raises(FrameError) as caught:
        parse_rfc3339_ns(text)
    assert caught.value.reason == "bad_time"


@given(st.text(max_size=40) | st.from_regex(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d*)?Z?.{0,3}"))
def test_timestamp_parsers_raise_only_frame_errors(text):
    for parse in (parse_rfc3339_ns, parse_go_time_ns):
        try:
            assert type(parse(text)) is int
        except FrameError as exc:
            assert exc.reason == "bad_time"


# ---- malformed frames ------------------------------------------------------------------------

TRADES = ('{"channel":"market_trades","timestamp":"2026-08-09T21:05:54.379555714Z",'
          '"sequence_num":7,"events":[{"type":"update","trades":[%s]}]}')
TRADE = ('{"product_id":"ETH-USD","trade_id":"833140787","price":"1919.38","size":"0.89",'
         '"time":"2026-08-09T21:05:54.257824Z","side":"BUY"}')


def trade_frame(**changes: object) -> bytes:
    """TRADES with one trade whose fields are changed (None deletes the field)."""
    trade = {**json.loads(TRADE), **changes}
    return (TRADES % json.dumps({k: v for k, v in trade.items() if v is not None})).encode()


MALFORMED = [
    ("truncated", TRADES.encode()[:50], "bad_json"),
    ("binary garbage", bytes(range(256)), "bad_json"),
    ("not utf-8", b'{"channel":"\xff"}', "bad_json"),
    ("empty", b"", "bad_json"),
    ("an array", b"[1, 2]", "bad_type"),
    ("missing sequence_num", b'{"channel":"ticker","timestamp":"x","events":[]}', "missing_field"),
    ("sequence_num a string", (TRADES % TRADE).replace('7,', '"7",').encode(), "bad_type"),
    ("sequence_num a bool", (TRADES % TRADE).replace('7,', 'true,').encode(), "bad_type"),
    ("negative sequence_num", (TRADES % TRADE).replace('7,', '-1,').encode(), "bad_number"),
    ("bad envelope time", (TRADES % TRADE).replace('54.379555714Z', '54.3Z+').encode(),
     "bad_time"),
    ("events an object", (TRADES % TRADE).replace('"events":[', '"events":{"x":[').encode()[:-1]
     + b"}}", "bad_type"),
    ("event a string", TRADES.replace('{"type":"update","trades":[%s]}', '"x"').encode(),
     "bad_type"),
    ("no trades list", TRADES.replace('"trades":[%s]', '"deals":[]').encode(), "missing_field"),
    ("missing price", trade_frame(price=None), "missing_field"),
    ("non-numeric price", trade_frame(price="12,5"), "bad_number"),
    ("NaN price", trade_frame(price="nan"), "bad_number"),
    ("zero size", trade_frame(size="0"), "bad_number"),
    ("price a JSON number", trade_frame(price=1919.38), "bad_type"),
    ("price a bool", trade_frame(price=True), "bad_type"),
    ("trade_id not a number", trade_frame(trade_id="abc"), "bad_number"),
    ("bad trade time", trade_frame(time="2026-08-09T21:05:54.25782Z9"), "bad_time"),
    ("unknown side", trade_frame(side="HOLD"), "bad_value"),
    ("empty product", trade_frame(product_id=""), "bad_value"),
    ("unknown channel", (TRADES % TRADE).replace("market_trades", "trades").encode(),
     "unknown_channel"),
    ("ticker without best_bid", json.dumps({
        "channel": "ticker", "timestamp": "2026-08-09T21:05:48Z", "sequence_num": 1,
        "events": [{"type": "update", "tickers": [{"product_id": "BTC-USD", "price": "1"}]}],
    }).encode(), "missing_field"),
    ("heartbeat counter text", json.dumps({
        "channel": "heartbeats", "timestamp": "2026-08-09T21:05:48Z", "sequence_num": 1,
        "events": [{"current_time": "2026-08-09 21:05:48 +0000 UTC", "heartbeat_counter": "x"}],
    }).encode(), "bad_number"),
    ("heartbeat time not a time", json.dumps({
        "channel": "heartbeats", "timestamp": "2026-08-09T21:05:48Z", "sequence_num": 1,
        "events": [{"current_time": "2026-08-09 21:05:48 UTC", "heartbeat_counter": 1}],
    }).encode(), "bad_time"),
    ("subscriptions not a list", json.dumps({
        "channel": "subscriptions", "timestamp": "2026-08-09T21:05:48Z", "sequence_num": 1,
        "events": [{"subscriptions": {"ticker": "BTC-USD"}}],
    }).encode(), "bad_type"),
]


@pytest.mark.parametrize(("raw", "reason"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_frames_raise_frame_error_with_a_stable_reason(raw, reason):
    assert reason in REASONS
    with pytest.raises(FrameError) as caught:
        parse_frame(raw)
    assert caught.value.reason == reason


def test_the_unchanged_trade_fixture_parses():
    assert parse_frame(trade_frame()).values == (
        Trade("ETH-USD", 833140787, 1919.38, 0.89, Side.SELL, 1786309554_257824000),)


# ---- fuzzing ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["", "0", "-1", "nan", "inf", "1e999", "BUY", "SELL", "snapshot",
                       "2026-08-09T21:05:42.5Z", "2026-08-09 21:05:48 +0000 UTC", "ticker"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6,
)


def small_real_frames() -> list[bytes]:
    frames, seen = [], Counter()
    for r in advanced_trade_frames():
        channel = orjson.loads(r.data)["channel"]
        if len(r.data) < 4000 and seen[channel] < 3:
            seen[channel] += 1
            frames.append(r.data)
    return [*frames, ws_samples()["ws_error_authentication_failure.json"]]


def paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indexes) into a decoded JSON value, the root included."""
    found = [prefix]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(
        node, list) else ()
    for key, child in items:
        found += paths(child, (*prefix, key))
    return found


def mutate(doc: object, path: tuple, value: object, delete: bool) -> object:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def parses_or_frame_error(raw: bytes) -> None:
    try:
        frame = parse_frame(raw)
    except FrameError as exc:
        assert exc.reason in REASONS
    else:
        assert isinstance(frame, Frame)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_frame_error(raw):
    parses_or_frame_error(raw)


@FUZZ
@given(st.sampled_from(small_real_frames()), st.data())
def test_mutated_real_frames_raise_only_frame_error(raw, data):
    doc = orjson.loads(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths(doc)))
        doc = mutate(doc, path, data.draw(json_values), bool(path) and data.draw(st.booleans()))
    parses_or_frame_error(orjson.dumps(doc))


@FUZZ
@given(st.sampled_from(small_real_frames()), st.integers(0, 4000), st.integers(0, 8),
       st.binary(max_size=8))
def test_byte_spliced_real_frames_raise_only_frame_error(raw, at, cut, insert):
    parses_or_frame_error(raw[:at] + insert + raw[at + cut:])


ODD_TRADE_VALUES = {
    "product_id": st.sampled_from(["", "ETH-USD"]) | json_values,
    "trade_id": st.sampled_from(["+1", " 7", "1_0", "-3", "x", "", "\uff11\uff12"]) | json_values,
    "price": st.sampled_from(["0", "-1", "nan", "inf", "1e3", " 2 ", "1e999"]) | json_values,
    "size": st.sampled_from(["1_0", "5e-324", "0.0", "-0"]) | json_values,
    "time": st.sampled_from(["2026-08-09T21:05:54Z", "2026-08-09T21:05:54.\u0663Z",
                             "2026-08-09 21:05:54.1Z", "2026-08-09T21:05:54.1234567891Z",
                             "2026-08-09T21:05:54.Z", "2026-08-09T21:05:54.5"]) | json_values,
    "side": st.sampled_from(["buy", "", "SELL "]) | json_values,
}


@st.composite
def trade_dicts(draw: st.DrawFn) -> dict:
    """A valid wire trade with up to two fields replaced by odd values or deleted."""
    moment = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
    frac = str(draw(st.integers(0, 10**9 - 1))).zfill(9)[:draw(st.integers(1, 9))]
    trade = {
        "product_id": draw(st.sampled_from(["ETH-USD", "BTC-USD", "SHIB-USD"])),
        "trade_id": str(draw(st.integers(0, 2**40))),
        "price": repr(draw(st.floats(1e-8, 1e7))),
        "size": draw(st.sampled_from(["0.89", "1", "0.00000001", "12345.6789"])),
        "time": moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac}Z",
        "side": draw(st.sampled_from(["BUY", "SELL"])),
    }
    for name in draw(st.lists(st.sampled_from(sorted(trade)), max_size=2, unique=True)):
        if draw(st.booleans()):
            trade[name] = draw(ODD_TRADE_VALUES[name])
        else:
            del trade[name]
    return trade


def test_parsed_trades_are_ordinary_frozen_values():
    trade = parse_frame(trade_frame()).values[0]
    assert trade == Trade(**{name: getattr(trade, name) for name in Trade.__slots__})
    with pytest.raises(AttributeError):
        trade.price = 1.0  # type: ignore[misc]
    assert math.isclose(trade.price, 1919.38) and repr(trade).startswith("Trade(")


def test_parse_ticker_on_a_decoded_frame():
    raw = ws_samples()["ws_ticker_update.json"]
    assert parse_ticker(orjson.loads(raw)) == list(parse_frame(raw).values)
