"""Hot reload: watch config.toml, parse edits off the event loop, hand over what changed."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trader import config as cfg

log = logging.getLogger(__name__)

SETTLE_S = 0.05  # an editor's save (truncate, then write) is over well within this
SETTLE_TRIES = 20
FileIdentity = tuple[int, int, int, int] | None  # (device, inode, size, mtime_ns)


def read_config(path: Path) -> cfg.Config | cfg.ConfigErrors:
    """Read and parse a config file; a missing or unreadable file is an error, not a raise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [(cfg.FILE_KEY, f"cannot read {path}: {exc.strerror or exc}")]
    return cfg.parse(data)


def file_identity(path: Path) -> FileIdentity:
    """What tells an edit apart: editors often replace the file, so the inode counts too."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """The outcome of the latest reload attempt."""

    at_ns: int
    outcome: str  # applied | unchanged | rejected
    errors: tuple[tuple[str, str], ...] = ()
    changed_sections: tuple[str, ...] = ()
    restart_required: tuple[str, ...] = ()


class ConfigWatcher:
    """Polls the config file about once per `poll_s` and on request (SIGHUP).

    A rejected edit leaves the running config as it was. An accepted one is diffed against
    the running config and passed to `on_change`; keys that need a restart keep their old
    value until then and are reported in the result.
    """

    name = "config"

    def __init__(self, path: Path, current: cfg.Config,
                 on_change: Callable[[cfg.ConfigChange], None], poll_s: float,
                 on_reloading: Callable[[], object] = lambda: None,  # result unused
                 on_reloaded: Callable[[ReloadResult], Awaitable[None] | None] = (
                     lambda result: None)) -> None:
        self.path = path
        self.current = current
        self.version = 1
        self.last: ReloadResult | None = None
        self.counts = {"applied": 0, "unchanged": 0, "rejected": 0}
        self.restart_required: tuple[str, ...] = ()  # keys the file changed, not yet in force
        self._on_change = on_change
        self._on_reloading = on_reloading
        self._on_reloaded = on_reloaded
        self._poll_s = poll_s
        self._identity = file_identity(path)
        self._wake = asyncio.Event()
        self._forced = False

    def request_reload(self) -> None:
        """Re-read the file now even if it looks unchanged (SIGHUP)."""
        self._forced = True
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:  # asyncio.timeout: 3.11's wait_for can swallow a cancellation
                async with asyncio.timeout(self._poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self.check()

    async def check(self) -> ReloadResult | None:
        """Reload if the file changed (or a reload was requested); return what happened."""
        identity = await asyncio.to_thread(file_identity, self.path)
        if identity == self._identity and not self._forced:
            return None
        self._forced = False
        self._identity = await self._settled(identity)
        self._on_reloading()
        parsed = await asyncio.to_thread(read_config, self.path)
        result = self._apply(parsed)
        self.last = result
        self.counts[result.outcome] += 1
        follow_up = self._on_reloaded(result)
        if follow_up is not None:
            await follow_up
        return result

    async def _settled(self, identity: FileIdentity) -> FileIdentity:
        """Wait until the file stops changing, so a half-written save is not read."""
        for _ in range(SETTLE_TRIES):
            await asyncio.sleep(SETTLE_S)
            again = await asyncio.to_thread(file_identity, self.path)
            if again == identity:
                break
            identity = again
        return identity

    def _apply(self, parsed: cfg.Config | cfg.ConfigErrors) -> ReloadResult:
        now_ns = time.time_ns()
        if not isinstance(parsed, cfg.Config):
            for key_path, reason in parsed:
                log.error("config rejected, keeping version %d: %s: %s",
                          self.version, key_path, reason)
            return ReloadResult(now_ns, "rejected", errors=tuple(parsed))
        change = cfg.diff(self.current, parsed)
        for key_path in set(change.restart_required) - set(self.restart_required):
            log.warning("config key %s changed; it takes effect after a restart", key_path)
        self.restart_required = change.restart_required
        if not change.changed_sections:
            return ReloadResult(now_ns, "unchanged", restart_required=change.restart_required)
        self.current = change.effective
        self.version += 1
        log.info("config version %d applied: %s", self.version,
                 ", ".join(change.changed_sections))
        self._on_change(change)
        return ReloadResult(now_ns, "applied", changed_sections=change.changed_sections,
                            restart_required=change.restart_required)

    def snapshot(self) -> dict[str, Any]:
        last = self.last
        return {
            "path": str(self.path),
            "version": self.version,
            "restart_required": list(self.restart_required),
            "last_reload": None if last is None else {
                "at_ns": last.at_ns,
                "outcome": last.outcome,
                "errors": [list(e) for e in last.errors],
                "changed_sections": list(last.changed_sections),
                "restart_required": list(last.restart_required),
            },
            "counters": {"version": self.version,
                         **{f"reloads_{k}": v for k, v in self.counts.items()},
                         "errors": len(last.errors) if last else 0},
        }
