"""The status server: a unix socket serving the daemon's snapshot as JSON and Prometheus text,
and `/metrics` alone over TCP when `status.metrics_listen` is set (for Prometheus to scrape)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from trader.daemon.metrics import render_snapshot
from trader.errors import TraderError

log = logging.getLogger(__name__)

Snapshot = dict[str, Any]


class ListenError(TraderError):
    """`status.metrics_listen` is not an address this host can listen on."""


def read_rss_bytes() -> int | None:
    """Resident memory of this process, from /proc (an in-memory read, no disk I/O)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class StatusServer:
    """Serves `GET /status` (JSON) and `GET /metrics` (Prometheus text) on a unix socket, and
    `GET /metrics` on `metrics_listen` (host:port) too when it is set.

    `metrics` renders the exposition (the daemon's registry, histograms included); without
    it, the snapshot's figures alone.
    """

    name = "status"

    def __init__(self, socket_path: Path, snapshot: Callable[[], Snapshot], *,
                 metrics: Callable[[], bytes] | None = None, metrics_listen: str = "") -> None:
        self.socket_path = socket_path
        self._snapshot = snapshot
        self._render = metrics or (lambda: render_snapshot(self._snapshot()))
        self.metrics_listen = metrics_listen
        self._runner: web.AppRunner | None = None
        self._tcp_runner: web.AppRunner | None = None
        self.requests = 0

    async def start(self) -> None:
        """Listen on `metrics_listen` (ListenError: cannot), then bind the socket (mode 0600,
        replacing a stale one) and start serving."""
        if self.metrics_listen:
            self._tcp_runner = await self._listen_tcp(self.metrics_listen)
        app = web.Application()
        app.router.add_get("/status", self._status)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others connect
        try:
            await web.UnixSite(self._runner, str(self.socket_path)).start()
        finally:
            os.umask(old_umask)
        log.info("status server listening on %s", self.socket_path)

    async def _listen_tcp(self, address: str) -> web.AppRunner:
        """`/metrics` alone on host:port (the snapshot stays on the private socket)."""
        try:
            host, port = parse_listen(address)
        except ValueError as exc:
            raise ListenError(str(exc)) from None
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ListenError(f"status.metrics_listen = {address!r}: cannot listen: "
                              f"{exc.strerror or exc}") from None
        log.info("Prometheus metrics on http://%s/metrics", address)
        return runner

    async def run(self) -> None:
        try:
            if self._runner is None:
                await self.start()
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._tcp_runner is not None:
            tcp_runner, self._tcp_runner = self._tcp_runner, None
            await tcp_runner.cleanup()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()

    def snapshot(self) -> Snapshot:
        return {"socket": str(self.socket_path), "counters": {"requests": self.requests}}

    async def _status(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = orjson.dumps(self._snapshot(), option=orjson.OPT_NON_STR_KEYS)
        return web.Response(body=body, content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(body=self._render(),
                            headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def render_metrics(snapshot: Snapshot) -> str:
    """Prometheus text exposition of one snapshot's figures (no histograms): see
    `trader.daemon.metrics`."""
    return render_snapshot(snapshot).decode()


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (or `[v6 address]:port`) as (host, port); ValueError says what is wrong."""
    host, colon, port_text = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"status.metrics_listen must be host:port, e.g. 127.0.0.1:9464; "
                         f"got {value!r}")
    return host, int(port_text)
