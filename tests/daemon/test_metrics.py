"""Prometheus metrics: a real paper daemon (trading against the simulator, writing to a real
PostgreSQL) scraped over TCP on `status.metrics_listen` and over its unix socket, the
exposition parsed with `prometheus_client.parser`; the rendering of one snapshot; the parts."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.daemon.test_daemon_trading import flip_config
from tests.daemon.test_grafana import dashboard_metric_names
from tests.helpers import DaemonProcess, eventually, http_get, start_daemon
from tests.pg import PostgresServer
from trader.config import interval_name
from trader.daemon.metrics import FrameToOrder, Metrics, render_snapshot, rest_endpoint
from trader.daemon.status import ListenError, StatusServer
from trader.types import Order, OrderKind, OrderStatus, Side

PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD")  # the shipped config's
HISTOGRAMS = ("trader_bar_close_seconds", "trader_frame_to_order_seconds",
              "trader_writer_flush_seconds", "trader_rest_request_seconds")
Families = dict[str, tuple[str, str, list[Sample]]]  # name -> (type, help, samples)
SNAPSHOT = {  # shaped like the daemon's
    "daemon": {"version": "0.1.0", "state": "running", "mode": "paper", "uptime_s": 3700.0},
    "config": {"version": 3, "counters": {"version": 3}},
    "components": {
        "feed": {"connected": True, "counters": {"frames_per_s": 120.5, "bad_frames": 2}},
        "market": {"products": {"BTC-USD": {"close": 64000.5, "bars": 10},
                                "ETH-USD": {"close": 3100.25, "bars": 10}}},
        "storage": None,
        "config": {"version": 3, "counters": {"version": 3}},
    },
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def metrics_daemon(tmp_path_factory: pytest.TempPathFactory, sim_url: str,
                   postgres: PostgresServer) -> Iterator[tuple[DaemonProcess, str]]:
    """A trading paper daemon with a database and /metrics on a free loopback port."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.psql(f"CREATE DATABASE {name}")
    workdir = tmp_path_factory.mktemp("metrics") / "daemon"
    url = f"http://127.0.0.1:{free_port()}/metrics"
    text = flip_config(workdir, sim_url)
    text = text.replace('dsn = ""', f'dsn = "{postgres.dsn_of(name)}"', 1)
    text = text.replace('metrics_listen = ""', f'metrics_listen = "{url[7:-8]}"', 1)
    daemon = start_daemon(workdir, sim_url, text)
    try:
        yield daemon, url
        assert daemon.stop() == 0, daemon.log()
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
        postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def scrape(url: str) -> tuple[str, str]:
    """(content type, body) of a GET over TCP."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return response.headers["Content-Type"], await response.text()


def parse(text: str) -> Families:
    return {f.name: (f.type, f.documentation, f.samples)
            for f in text_string_to_metric_families(text)}


def count_of(families: Families, histogram: str) -> float:
    if histogram not in families:
        return 0.0
    return sum(s.value for s in families[histogram][2] if s.name == f"{histogram}_count")


async def observed_everywhere(url: str) -> Families | None:
    """The exposition once every histogram has observations and a fill happened."""
    families = parse((await scrape(url))[1])
    if all(count_of(families, h) > 0 for h in HISTOGRAMS) and any(
            s.value > 0 for s in families.get("trader_trading_fills", ("", "", []))[2]):
        return families
    return None


async def test_tcp_exposition_is_typed_with_help_counters_gauges_and_histograms(
        metrics_daemon: tuple[DaemonProcess, str]):
    _, url = metrics_daemon
    families = await eventually(lambda: observed_everywhere(url), timeout_s=120,
                                interval_s=0.5)
    content_type, _ = await scrape(url)
    assert content_type.startswith("text/plain; version=0.0.4")
    for name, (kind, help_text, samples) in families.items():
        assert kind in ("counter", "gauge", "histogram"), (name, kind)
        assert help_text, f"{name} has no HELP"
        if kind == "counter":
            assert all(s.name == f"{name}_total" for s in samples), name
    kinds = {name: kind for name, (kind, _, _) in families.items()}
    assert kinds["trader_feed_frames"] == "counter"
    assert kinds["trader_trading_fills"] == "counter"
    assert kinds["trader_trading_open_orders"] == "gauge"
    assert kinds["trader_trading_equity_usd"] == "gauge"
    assert kinds["trader_storage_backlog_rows"] == "gauge"
    assert kinds["trader_risk_trading_state"] == "gauge"
    assert all(kinds[h] == "histogram" for h in HISTOGRAMS)
    assert kinds["process_resident_memory_bytes"] == "gauge"


async def entry_timed(url: str) -> Families | None:
    """The exposition once an entry's frame-to-order latency was observed too (an exit's can
    come first: the entry of a position may be decided on a heartbeat's bar close)."""
    families = await observed_everywhere(url)
    if families is None:
        return None
    samples = families["trader_frame_to_order_seconds"][2]
    entered = any(s.labels.get("kind") == "entry" and s.name.endswith("_count")
                  for s in samples)
    return families if entered else None


async def test_histograms_carry_bounded_labels_and_consistent_buckets(
        metrics_daemon: tuple[DaemonProcess, str]):
    _, url = metrics_daemon
    families = await eventually(lambda: entry_timed(url), timeout_s=120, interval_s=0.5)
    labels = {h: {tuple(sorted(s.labels.items())) for s in families[h][2]
                  if s.name.endswith("_count")} for h in HISTOGRAMS}
    assert (("interval", "1m"),) in labels["trader_bar_close_seconds"]
    assert (("kind", "entry"), ("strategy", "flip")) in labels["trader_frame_to_order_seconds"]
    assert (("table", "candles"),) in labels["trader_writer_flush_seconds"]
    endpoints = {dict(label)["endpoint"] for label in labels["trader_rest_request_seconds"]}
    assert "/market/products/{product_id}/candles" in endpoints  # the warm-up's candles
    assert not any(p in e for e in endpoints for p in PRODUCTS)  # ids never become labels
    for histogram in HISTOGRAMS:
        samples = families[histogram][2]
        for count in (s for s in samples if s.name == f"{histogram}_count"):
            buckets = [s for s in samples if s.name == f"{histogram}_bucket"
                       and {k: v for k, v in s.labels.items() if k != "le"} == count.labels]
            values = [s.value for s in sorted(buckets, key=lambda s: float(s.labels["le"]))]
            assert values == sorted(values) and values[-1] == count.value


async def test_per_product_figures_are_labelled_by_the_configured_products(
        metrics_daemon: tuple[DaemonProcess, str]):
    _, url = metrics_daemon
    families = parse((await scrape(url))[1])
    closes = families["trader_market_product_close"][2]
    assert {s.labels["product"] for s in closes} <= set(PRODUCTS)
    bars = families["trader_market_product_bars"][2]
    assert {s.labels["product"] for s in bars} == set(PRODUCTS)
    written = families["trader_storage_rows_written"][2]
    assert {s.labels["table"] for s in written} >= {"candles", "equity"}


async def test_the_unix_socket_serves_the_same_metrics(
        metrics_daemon: tuple[DaemonProcess, str]):
    daemon, url = metrics_daemon
    await eventually(lambda: observed_everywhere(url), timeout_s=120, interval_s=0.5)
    code, content_type, body = await asyncio.to_thread(http_get, daemon.socket, "/metrics")
    assert code == 200 and content_type.startswith("text/plain; version=0.0.4")
    by_socket = parse(body.decode())
    by_tcp = parse((await scrape(url))[1])
    # the daemon trades between the two scrapes: a position's own series may come or go
    moving = {n for n in by_socket.keys() ^ by_tcp.keys()
              if n.startswith("trader_trading_product_")}
    assert by_socket.keys() ^ by_tcp.keys() == moving
    assert {n: k for n, (k, _, _) in by_socket.items() if n not in moving} == {
        n: k for n, (k, _, _) in by_tcp.items() if n not in moving}
    assert count_of(by_socket, "trader_bar_close_seconds") > 0


async def test_tcp_serves_metrics_only(metrics_daemon: tuple[DaemonProcess, str]):
    _, url = metrics_daemon
    async with aiohttp.ClientSession() as session:
        async with session.get(url.replace("/metrics", "/status")) as response:
            assert response.status == 404


async def test_every_grafana_query_names_a_served_metric(
        metrics_daemon: tuple[DaemonProcess, str]):
    """Over the scrapes of a trading run: per-product position figures exist while held."""
    _, url = metrics_daemon
    used = dashboard_metric_names()
    assert used, "the dashboard names no metric"
    served: set[str] = set()

    async def all_served() -> bool:
        families = parse((await scrape(url))[1])
        served.update(s.name for _, _, samples in families.values() for s in samples)
        return used <= served

    with contextlib.suppress(AssertionError):
        await eventually(all_served, timeout_s=120, interval_s=0.5)
    assert used <= served, f"not served: {sorted(used - served)}"


# ---- the status server's TCP listener --------------------------------------------------------

@pytest.mark.parametrize("address", ["9464", "localhost", "127.0.0.1:http", ":9464",
                                     "127.0.0.1:70000"])
async def test_a_malformed_listen_address_is_a_clear_error_at_start(tmp_path: Path,
                                                                     address: str):
    server = StatusServer(tmp_path / "s.sock", lambda: SNAPSHOT, metrics_listen=address)
    with pytest.raises(ListenError, match=r"status\.metrics_listen must be host:port"):
        await server.start()
    assert not (tmp_path / "s.sock").exists()


async def test_an_address_in_use_is_a_clear_error_at_start(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        server = StatusServer(tmp_path / "s.sock", lambda: SNAPSHOT, metrics_listen=address)
        with pytest.raises(ListenError, match="cannot listen"):
            await server.start()
    assert not (tmp_path / "s.sock").exists()


async def test_a_bad_listen_address_stops_trader_run_with_the_reason(tmp_path: Path,
                                                                      sim_url: str):
    workdir = tmp_path / "daemon"
    text = flip_config(workdir, sim_url).replace(
        'metrics_listen = ""', 'metrics_listen = "127.0.0.1:notaport"', 1)
    daemon = start_daemon(workdir, sim_url, text, wait_ready=False)
    assert await asyncio.to_thread(daemon.proc.wait, 60) == 2  # a config error, not a crash
    assert "status.metrics_listen must be host:port" in daemon.log()


# ---- one snapshot and the parts ----------------------------------------------------------------

def test_a_snapshot_renders_typed_families_with_labels():
    families = parse(render_snapshot(SNAPSHOT).decode())
    assert families["trader_uptime_seconds"][2][0].value == 3700.0
    assert families["trader_feed_bad_frames"][0] == "counter"
    assert families["trader_feed_bad_frames"][2][0].value == 2
    assert families["trader_feed_frames_per_second"][0] == "gauge"
    running = {s.labels["component"]: s.value
               for s in families["trader_component_running"][2]}
    assert running["feed"] == 1 and running["storage"] == 0
    closes = {s.labels["product"]: s.value
              for s in families["trader_market_product_close"][2]}
    assert closes == {"BTC-USD": 64000.5, "ETH-USD": 3100.25}
    assert [s.value for s in families["trader_config_version"][2]] == [3]  # exported once


def test_two_daemons_in_one_process_keep_their_own_registries():
    first, second = Metrics(lambda: SNAPSHOT), Metrics(lambda: SNAPSHOT)
    first.observe_bar_close(60, 0.01)
    assert b'trader_bar_close_seconds_count{interval="1m"} 1.0' in first.render()
    assert b"trader_bar_close_seconds_count" not in second.render()


def test_rest_paths_are_named_by_template_and_intervals_as_in_the_config():
    assert rest_endpoint("/market/products/BTC-USD/candles") == (
        "/market/products/{product_id}/candles")
    assert rest_endpoint("/market/products") == "/market/products"
    assert rest_endpoint("/orders/historical/abc-123") == "/orders/historical/{order_id}"
    assert rest_endpoint("/orders/historical/batch") == "/orders/historical/batch"
    assert rest_endpoint("/orders/historical/fills") == "/orders/historical/fills"
    assert [interval_name(s) for s in (60, 300, 3600, 86400, 90)] == [
        "1m", "5m", "1h", "1d", "90s"]


def order(status: OrderStatus = OrderStatus.PENDING, updated_ns: int = 0) -> Order:
    return Order("cid", "", "flip", "BTC-USD", Side.BUY, OrderKind.ENTRY, status,
                 Decimal(1), None, Decimal(100), Decimal(0), Decimal(0), Decimal(0),
                 updated_ns, "")


def test_frame_to_order_times_new_intents_inside_a_frame_only():
    registry = CollectorRegistry(auto_describe=False)
    histogram = Histogram("t_seconds", "t", ["strategy", "kind"], registry=registry)
    now = iter([10.0, 10.25, 20.0])
    timer = FrameToOrder(histogram, clock=lambda: next(now))
    timer.on_order(order())  # no frame: an intent made elsewhere
    timer.received()
    timer.on_order(order())  # a new intent inside the frame: 0.25 s
    timer.on_order(order(OrderStatus.OPEN, updated_ns=1))  # an update: not an intent
    timer.done()
    timer.on_order(order())
    assert registry.get_sample_value("t_seconds_count", {"strategy": "flip",
                                                         "kind": "entry"}) == 1
    assert registry.get_sample_value("t_seconds_sum", {"strategy": "flip",
                                                       "kind": "entry"}) == 0.25
