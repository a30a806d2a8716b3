"""The sd_notify protocol: READY, RELOADING, STOPPING, STATUS and WATCHDOG datagrams."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)


class Notifier:
    """Sends state lines to systemd over `$NOTIFY_SOCKET`; does nothing when it is unset."""

    name = "watchdog"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._address = _socket_address(environ.get("NOTIFY_SOCKET", ""))
        self._watchdog_s = _watchdog_interval_s(environ)
        self._socket: socket.socket | None = None
        self.sent = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between WATCHDOG pings (half of WATCHDOG_USEC), or None when not asked."""
        return self._watchdog_s

    def notify(self, *lines: str) -> bool:
        """Send one datagram of `KEY=value` lines; True when it was delivered."""
        if self._address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            self.failed += 1
            log.warning("sd_notify to %s failed: %s", self._address, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def reloading(self) -> bool:
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=stopping")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    async def run(self) -> None:
        """Ping WATCHDOG=1 from the event loop, so a stuck loop gets the service restarted."""
        try:
            interval_s = self._watchdog_s
            if self._address is None or interval_s is None:
                await asyncio.Event().wait()  # nothing to do; park until cancelled
            else:
                while True:
                    self.notify("WATCHDOG=1")
                    await asyncio.sleep(interval_s)
        finally:
            self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def snapshot(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "watchdog_interval_s": self._watchdog_s,
                "counters": {"notify_sent": self.sent, "notify_failed": self.failed}}


def _socket_address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):  # abstract namespace
        return "\0" + value[1:]
    return value


def _watchdog_interval_s(environ: Mapping[str, str]) -> float | None:
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process
    return int(usec) / 2_000_000
