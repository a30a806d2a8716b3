"""The compiled frame scanner (trader/kernels/frame_scan.py): every frame it takes gets exactly
the values of the Python path; everything else goes to that path, with its FrameError reasons."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.coinbase.test_messages import FUZZ
from tests.recordings import advanced_trade_frames
from trader.coinbase import fast_frames, messages
from trader.coinbase.messages import Frame, parse_frame
from trader.errors import FrameError
from trader.kernels import frame_scan
from trader.simulator import wire

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def scanned(raw: bytes | str) -> Frame | None:
    return fast_frames._scanned_frame(raw)


def decoded(raw: bytes | str) -> Frame | str:
    """The Python path's frame, or its FrameError reason."""
    try:
        return parse_frame(raw, trade_columns=True)
    except FrameError as exc:
        return exc.reason


def outcome(raw: bytes | str) -> Frame | str:
    try:
        return fast_frames.parse_frame(raw)
    except FrameError as exc:
        return exc.reason


def kernel_count(raw: bytes) -> int:
    """The scanner's own answer on fresh outputs with room for every trade."""
    ints, floats = frame_scan.new_outputs(raw.count(b"trade_id") + 1)
    if raw.startswith(b'{"channel":"heartbeats"'):
        return frame_scan.scan_heartbeat(raw, ints)
    return frame_scan.scan_market_trades(raw, ints, floats)


def assert_identical(frame: Frame, reference: Frame) -> None:
    """Equal, down to each value's type, each float's bits and the interned product ids."""
    assert frame == reference
    assert [type(v) for v in frame[:4]] == [type(v) for v in reference[:4]]
    for value, expected in zip(frame.values, reference.values, strict=True):
        assert type(value) is type(expected)
        if not isinstance(value, messages.TradeColumns):
            assert [type(v) for v in vars_of(value)] == [type(v) for v in vars_of(expected)]
            continue
        for column, expected_column in zip(value, expected, strict=True):
            assert [type(v) for v in column] == [type(v) for v in expected_column]
        for name in ("prices", "sizes"):
            assert [x.hex() for x in getattr(value, name)] == [
                x.hex() for x in getattr(expected, name)]
        assert all(a is b for a, b in zip(value.product_ids, expected.product_ids, strict=True))


def vars_of(value: object) -> list[object]:
    return [getattr(value, name) for name in value.__slots__]


def check_taken(raw: bytes) -> None:
    reference = decoded(raw)  # first: it interns the product ids the scanner may use
    assert isinstance(reference, Frame)
    assert kernel_count(raw) >= 0
    frame = scanned(raw)
    assert frame is not None
    assert_identical(frame, reference)
    assert_identical(fast_frames.parse_frame(raw), reference)


# ---- real and simulated traffic always takes the scanner -------------------------------------


def test_every_recorded_trade_and_heartbeat_frame_takes_the_scanner():
    seen = {"market_trades": 0, "heartbeats": 0}
    for record in advanced_trade_frames():
        channel = parse_frame(record.data).channel
        if channel in seen:
            check_taken(record.data)
            check_taken_as_text(record.data)
            seen[channel] += 1
        else:
            assert scanned(record.data) is None
    assert seen == {"market_trades": 59, "heartbeats": 25}


def check_taken_as_text(raw: bytes) -> None:
    """aiohttp hands text frames over as str: the same frame, the same values."""
    assert_identical(scanned(raw.decode()), decoded(raw))


def simulated_frames(rng: random.Random, count: int) -> list[bytes]:
    """Frames as `trader.simulator.wire` builds them (the bench's), with odd but real values."""
    out, time_ns = [], 1_775_000_000 * 10**9
    for seq in range(count):
        time_ns += rng.randrange(10**12)
        if rng.random() < 0.2:
            out.append(wire.envelope("heartbeats", seq, time_ns, [wire.heartbeat_event(
                time_ns, rng.randrange(10**12), rng.uniform(0, 10**6))]))
            continue
        prints = [wire.trade(rng.choice(["BTC-USD", "ETH-USD", "SHIB-USDC"]),
                             rng.randrange(10**rng.randint(1, 18)),
                             rng.choice([rng.uniform(1e-3, 1e6), round(rng.uniform(1, 9e4), 2)]),
                             rng.choice([rng.uniform(1e-5, 1e4), round(rng.uniform(0, 9), 8)
                                         or 1e-8]),
                             time_ns - rng.randrange(10**10), rng.random() < 0.5)
                  for _ in range(rng.choice([1, 1, 1, 2, 3, 10, 40]))]
        out.append(wire.envelope("market_trades", seq, time_ns, [wire.trade_event(
            rng.choice(["update", "snapshot"]), prints)]))
    return out


def test_every_simulated_frame_takes_the_scanner():
    for raw in simulated_frames(random.Random(7), 3000):
        check_taken(raw)


def test_outputs_grow_for_a_frame_with_more_trades_than_they_hold():
    raw = max(simulated_frames(random.Random(3), 200), key=len)
    assert kernel_count(raw) == 40
    fast_frames._outputs = fast_frames._Outputs(1)
    check_taken(raw)
    assert len(fast_frames._outputs.floats) >= 40 * frame_scan.FLOAT_FIELDS


def test_an_unknown_product_goes_to_the_python_path_which_then_knows_it():
    raw = simulated_frames(random.Random(1), 1)[0].replace(b"BTC-USD", b"NEW-COIN").replace(
        b"ETH-USD", b"NEW-COIN").replace(b"SHIB-USDC", b"NEW-COIN")
    messages._PRODUCTS.pop("NEW-COIN", None)
    messages.PRODUCT_BYTES.pop(b"NEW-COIN", None)
    assert kernel_count(raw) >= 0 and scanned(raw) is None
    check_taken(raw)


def test_warmup_compiles_both_scanners():
    frame_scan.warmup()


# ---- the float and time fast paths -----------------------------------------------------------


def scan_text(scanner, text: str) -> tuple[int, object]:
    raw = text.encode()
    end, value = scanner(raw + b'"', 0)
    return (end, value) if end < 0 else (end - len(raw), value)


@pytest.mark.parametrize("text", [
    "0.1", "0.3", "1", "00.5", "65083.67", "0.00000001", "123456789012345.6",
    "9007199254740991", "9007199254740992", "9007199254740993", "9007199254740995",
    "900719925474099.3", "0.22369827108333334", "18014398509481985", "1.7976931348623157",
    "4.4501477170144023", "0.000000000000000000001", "999999999999999.9", "118.24403361344537",
    "288230376151711.75", "0.0000000000000000000000",
])
def test_decimals_in_reach_are_python_floats_bit_for_bit(text):
    end, value = scan_text(frame_scan.decimal, text)
    if float(text) == 0.0:
        assert end < 0  # a zero price or size is the slow path's error
        return
    assert end == 0 and value.hex() == float(text).hex()


@pytest.mark.parametrize("text", [
    "0", "0.0", "-1", "+1", "1e3", "1E3", ".5", "5.", "1.2.3", "1_0", "nan", "inf", " 1", "",
    "1234567890123456789", "0.00000000000000000000001", "999999999999999999",
    "\u0661", "1,5",
])
def test_decimals_out_of_reach_miss(text):
    end, _ = scan_text(frame_scan.decimal, text)
    assert end != 0


def test_random_decimals_match_python_floats():
    rng = random.Random(11)
    taken = 0
    for _ in range(20_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 19)))
        cut = rng.randint(1, len(digits))
        text = digits if cut == len(digits) else f"{digits[:cut]}.{digits[cut:]}"
        end, value = scan_text(frame_scan.decimal, text)
        if end == 0:
            taken += 1
            assert value.hex() == float(text).hex(), text
    assert taken > 15_000


def halfway_texts() -> list[str]:
    """Decimals exactly halfway between two doubles, and one unit in the last place off."""
    rng, out = random.Random(5), []
    for _ in range(3000):
        m, e = rng.randrange(2**52, 2**53), rng.randint(-20, 6)
        exact = (2 * m + 1) * 2**e if e >= 0 else None
        if exact is not None:
            out.append(str(exact))
        else:
            out.append(format(Decimal(2 * m + 1) / Decimal(2) ** (-e), "f"))
    return [t for t in out if len(t.replace(".", "").lstrip("0")) <= 18]


def test_halfway_decimals_round_to_even_as_python_does():
    texts = halfway_texts()
    assert len(texts) > 500
    for text in texts:
        end, value = scan_text(frame_scan.decimal, text)
        assert end < 0 or (end == 0 and value.hex() == float(text).hex()), text


@pytest.mark.parametrize("text", [
    "2026-08-09T21:05:42.514318Z", "2024-02-29T00:00:00Z", "2000-02-29T12:34:56.123456789Z",
    "1970-01-01T00:00:00Z", "2261-12-31T23:59:59.999999999Z", "2026-08-09T21:05:48.1Z",
    "2026-12-31T23:59:59.05Z", "2100-03-01T00:00:00.000000000Z",
])
def test_times_in_reach_are_the_python_paths_ns(text):
    end, value = scan_text(frame_scan.time_ns, text)
    whole = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    frac = text[20:-1]
    expected = (whole - EPOCH) // timedelta(seconds=1) * 10**9 + int(frac.ljust(9, "0") or 0)
    assert end == 0 and value == expected == messages.parse_rfc3339_ns(text)


@pytest.mark.parametrize("text", [
    "2023-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2026-13-01T00:00:00Z",
    "2026-00-10T00:00:00Z", "2026-04-31T00:00:00Z", "2026-08-00T00:00:00Z",
    "2026-08-09T24:00:00Z", "2026-08-09T23:60:00Z", "2026-08-09T23:59:60Z",
    "2026-08-09T21:05:42.1234567890Z", "2026-08-09T21:05:42.Z", "2026-08-09 21:05:42Z",
    "2026-08-09t21:05:42Z", "2026-08-09T21:05:42z", "2026-08-09T21:05:42+00:00",
    "2026-08-09T21:05:42.5", "1969-12-31T23:59:59Z", "2262-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z", "2026-8-09T21:05:42Z", "+026-08-09T21:05:42Z",
])
def test_times_out_of_reach_miss(text):
    end, _ = scan_text(frame_scan.time_ns, text)
    assert end != 0


@pytest.mark.parametrize("text", [
    "2026-08-09 21:05:48.854840045 +0000 UTC m=+41691.260485341",
    "2026-08-09 21:05:48.8 +0000 UTC", "2024-02-29 00:00:00.000000001 +0000 UTC m=+1",
])
def test_go_times_in_reach_are_the_python_paths_ns(text):
    end, value = scan_text(frame_scan.go_time_ns, text)
    assert end == 0 and value == messages.parse_go_time_ns(text)


@pytest.mark.parametrize("text", [
    "2026-08-09 21:05:48 +0000 UTC", "2026-08-09 21:05:48.5 +0100 UTC",
    "2026-08-09 21:05:48.5Z", "2026-08-09T21:05:48.5 +0000 UTC", "2026-08-09 21:05:48.5 +0000",
    "2026-08-09 21:05:48.5 +0000 UTC m=-1", "2026-02-30 21:05:48.5 +0000 UTC",
])
def test_go_times_out_of_reach_miss(text):
    end, _ = scan_text(frame_scan.go_time_ns, text)
    assert end != 0


# ---- fuzz: canonical frames, then mutated ----------------------------------------------------


def usually(common: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """`common` values, and one time in ten an `odd` one."""
    return st.integers(0, 9).flatmap(lambda k: odd if k == 0 else common)


def time_texts(separator: str = "T") -> st.SearchStrategy[str]:
    """Mostly real times of 1970-2261 (leap days included), else random and often invalid
    fields; 0-9 fraction digits, or 10."""
    fields = st.builds(
        lambda y, mo, d, h, mi, s: f"{y:04d}-{mo:02d}-{d:02d}{separator}{h:02d}:{mi:02d}:{s:02d}",
        st.integers(1960, 2270) | st.sampled_from([2000, 2100, 2024, 2023]),
        st.integers(0, 13) | st.just(2), st.integers(0, 32) | st.just(29),
        st.integers(0, 24), st.integers(0, 60), st.integers(0, 60))
    real = st.datetimes(datetime(1970, 1, 1), datetime(2261, 12, 31, 23, 59, 59)).map(
        lambda moment: moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S")) | st.sampled_from(
        [f"2024-02-29{separator}23:59:59", f"2000-02-29{separator}00:00:00"])
    fraction = usually(st.from_regex(r"(\.[0-9]{1,9})?", fullmatch=True),
                       st.from_regex(r"\.[0-9]{0,12}", fullmatch=True))
    return st.builds(str.__add__, usually(real, fields), fraction)


decimal_texts = usually(
    st.floats(1e-6, 1e9).map(repr).filter(lambda text: "e" not in text)
    | st.from_regex(r"[1-9][0-9]{0,8}(\.[0-9]{1,8})?", fullmatch=True),
    st.from_regex(r"[0-9]{1,20}(\.[0-9]{1,25})?", fullmatch=True)
    | st.sampled_from(["1e3", "-1", "0", "0.0", "1.5E-3", "nan", "1_0", " 2", "5.", "\\u0031"]))


@st.composite
def trade_texts(draw: st.DrawFn) -> str:
    fields = [
        ("product_id", draw(usually(st.sampled_from(["BTC-USD", "ETH-USD", "SHIB-USDC"]),
                                    st.sampled_from(["", "B\\u0054C-USD", "NEW-USD"])))),
        ("trade_id", draw(usually(st.integers(0, 10**18 - 1).map(str),
                                  st.from_regex(r"-?[0-9]{0,20}", fullmatch=True)))),
        ("price", draw(decimal_texts)), ("size", draw(decimal_texts)),
        ("time", draw(time_texts()) + "Z"),
        ("side", draw(usually(st.sampled_from(["BUY", "SELL"]), st.sampled_from(["buy", ""])))),
    ]
    if draw(st.integers(0, 9)) == 0:
        fields = draw(st.permutations(fields))
    return "{" + ",".join(f'"{key}":"{value}"' for key, value in fields) + "}"


@st.composite
def frame_texts(draw: st.DrawFn) -> bytes:
    stamp = draw(time_texts()) + "Z"
    seq = draw(usually(st.integers(0, 10**6), st.integers(-1, 10**19)))
    client = '"client_id":"",' if draw(st.booleans()) else ""
    if draw(st.integers(0, 4)) == 0:
        counter = draw(usually(st.integers(0, 10**6), st.integers(-1, 10**19)))
        current = draw(time_texts(" ")) + draw(usually(st.sampled_from(
            [" +0000 UTC m=+41691.260485341", " +0000 UTC"]), st.sampled_from(
            [" +0100 UTC", "Z", " +0000 UTC m=+1e3"])))
        event = f'{{"current_time":"{current}","heartbeat_counter":{counter}}}'
        channel = "heartbeats"
    else:
        trades = ",".join(draw(st.lists(trade_texts(), max_size=4)))
        kind = draw(usually(st.sampled_from(["update", "snapshot"]), st.just("other")))
        event = f'{{"type":"{kind}","trades":[{trades}]}}'
        channel = "market_trades"
    events = ",".join([event] * draw(usually(st.just(1), st.integers(0, 2))))
    return (f'{{"channel":"{channel}",{client}"timestamp":"{stamp}","sequence_num":{seq},'
            f'"events":[{events}]}}').encode()


INTERESTING_BYTES = b'0123456789.-+eE"\\ ,:{}[]TZzt\x00\xff'


@st.composite
def mutated(draw: st.DrawFn, raw: bytes) -> bytes:
    for _ in range(draw(usually(st.just(0), st.integers(1, 2)))):
        at = draw(st.integers(0, len(raw)))
        cut = draw(st.integers(0, 3))
        insert = draw(st.binary(max_size=3) | st.sampled_from(
            [bytes([b]) for b in INTERESTING_BYTES]) | st.just(b""))
        raw = raw[:at] + insert + raw[at + cut:]
    return raw


@FUZZ
@given(st.data())
def test_the_scanner_takes_nothing_the_python_path_would_parse_differently(data):
    raw = data.draw(mutated(data.draw(frame_texts())))
    reference = decoded(raw)
    frame = scanned(raw)
    if frame is not None:
        assert isinstance(reference, Frame)
        assert_identical(frame, reference)
    result = outcome(raw)
    if isinstance(reference, str):
        assert result == reference  # the same FrameError reason
    else:
        assert_identical(result, reference)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_canonical_frames_always_take_the_scanner(rng):
    check_taken(simulated_frames(rng, 1)[0])
