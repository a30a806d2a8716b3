"""The status server: a unix socket serving the daemon's snapshot as JSON and Prometheus text."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger(__name__)

Snapshot = dict[str, Any]
_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def read_rss_bytes() -> int | None:
    """Resident memory of this process, from /proc (an in-memory read, no disk I/O)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class StatusServer:
    """Serves `GET /status` (JSON) and `GET /metrics` (Prometheus text) on a unix socket."""

    name = "status"

    def __init__(self, socket_path: Path, snapshot: Callable[[], Snapshot]) -> None:
        self.socket_path = socket_path
        self._snapshot = snapshot
        self._runner: web.AppRunner | None = None
        self.requests = 0

    async def start(self) -> None:
        """Bind the socket (mode 0600, replacing a stale one) and start serving."""
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

    async def run(self) -> None:
        try:
            if self._runner is None:
                await self.start()
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
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
        text = render_metrics(self._snapshot())
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Prometheus-Format": "0.0.4"})


def render_metrics(snapshot: Snapshot) -> str:
    """Prometheus text exposition of the snapshot's daemon figures and component counters."""
    samples: list[tuple[str, str, Any]] = []  # (metric name, label text, value)
    daemon = snapshot.get("daemon", {})
    for key in ("uptime_s", "rss_bytes"):
        samples.append((f"trader_{key}", "", daemon.get(key)))
    for component, body in snapshot.get("components", {}).items():
        running = 0 if body is None else 1
        samples.append(("trader_component_running", _labels(component=component), running))
        if body is not None:
            samples += _component_samples(component, body)
    return _exposition(samples)


def _component_samples(component: str, body: Snapshot) -> list[tuple[str, str, Any]]:
    samples = [(_metric_name(component, name), "", value)
               for name, value in (body.get("counters") or {}).items()]
    for product, figures in (body.get("products") or {}).items():
        samples += [(_metric_name(component, name), _labels(product=product), value)
                    for name, value in figures.items()]
    return samples


def _exposition(samples: list[tuple[str, str, Any]]) -> str:
    by_name: dict[str, list[str]] = {}
    for name, labels, value in samples:
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, int | float) or (isinstance(value, float) and math.isnan(value)):
            continue  # no number to report; an absent sample says "unknown"
        by_name.setdefault(name, []).append(f"{name}{labels} {value}")
    lines = []
    for name, rows in by_name.items():
        lines += [f"# TYPE {name} gauge", *rows]
    return "\n".join(lines) + "\n"


def _metric_name(component: str, name: str) -> str:
    return _METRIC_CHARS.sub("_", f"trader_{component}_{name}")


def _labels(**labels: str) -> str:
    pairs = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
    return "{" + pairs + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
