"""`trader backfill`: candle history from Coinbase public REST into the database or a file.

Resumable and idempotent. A run first reads what is held in [since, until): the ranges earlier
runs fetched (table `backfill_ranges`; for a file, its part names and its `.ranges` sidecar)
and every run of consecutive candles already stored. Only the holes between are fetched, in
batches of pages. Each batch is stored together with the record of its range, atomically (one
transaction in db_store; one renamed part file in file_store), so a run killed at any moment
continues without duplicates, and a range the exchange answered with no candles (no trades) is
not asked again.

All products share one PublicRest, so one Pacer keeps the whole run under the public rate
limit; 429 and 5xx answers are retried there with backoff.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, zip_longest
from typing import Protocol

import aiohttp
import asyncpg
import uvloop
from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichBars
from rich.text import Text

from trader.coinbase.rest import CANDLES_PER_REQUEST, Pacer, PublicRest, RestError
from trader.store.backfill.candle_store import BackfillError, Range, Store, merge_ranges
from trader.store.backfill.db_store import DatabaseStore
from trader.store.backfill.file_store import FileStore

# Failures of the outside world, reported with their message (exit 1); anything else is a bug.
EXPECTED_ERRORS = (BackfillError, RestError, OSError, asyncpg.PostgresError,
                   asyncpg.InterfaceError)


@dataclass(frozen=True, slots=True)
class BackfillJob:
    """What to fetch and where to put it."""

    products: tuple[str, ...]
    interval_s: int
    since_s: int
    until_s: int | None  # exclusive; None: up to the last closed bar by exchange time
    rest_url: str
    rate_per_s: float
    dsn: str = ""
    out: str | None = None  # a file path; "{product}" in it becomes the product id
    batch_pages: int = 10  # pages of CANDLES_PER_REQUEST stored (and lost to a kill) at once
    workers: int | None = None  # requests in flight; None: enough to keep the pace


@dataclass
class ProductReport:
    held_buckets: int = 0  # of the span, already held before this run
    missing_buckets: int = 0  # to fetch in this run
    holes: int = 0
    batches: int = 0
    candles: int = 0  # written by this run


@dataclass
class BackfillReport:
    since_s: int
    until_s: int
    products: dict[str, ProductReport] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)  # PublicRest counters
    elapsed_s: float = 0.0


class Progress(Protocol):
    def start(self, product_id: str, total: int, held: int) -> None: ...
    def advance(self, product_id: str, buckets: int, candles: int) -> None: ...


# ---- ranges ---------------------------------------------------------------------------------

def missing_ranges(span: Range, held: Iterable[Range]) -> list[Range]:
    """The parts of `span` outside every held range."""
    holes, cursor = [], span[0]
    for start, end in merge_ranges(held):
        if start >= span[1]:
            break
        if start > cursor:
            holes.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < span[1]:
        holes.append((cursor, span[1]))
    return holes


def batches_of(holes: Iterable[Range], interval_s: int, batch_pages: int) -> list[Range]:
    step = batch_pages * CANDLES_PER_REQUEST * interval_s
    return [(start, min(start + step, end)) for first, end in holes
            for start in range(first, end, step)]


def parse_time_s(text: str) -> int:
    """Unix seconds from "2024-01-31", "2024-01-31T12:00[:00][Z|+01:00]" or "1706659200".

    Without a zone the time is UTC. ValueError otherwise.
    """
    if text.isdigit():
        return int(text)
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def floor_to(time_s: int, interval_s: int) -> int:
    return time_s - time_s % interval_s


# ---- the run --------------------------------------------------------------------------------

async def backfill(job: BackfillJob, rest: PublicRest, store: Store,
                   progress: Progress) -> BackfillReport:
    """Fetch every hole of [since, until) for each product and store it; see the module doc."""
    started = time.monotonic()
    span = (floor_to(job.since_s, job.interval_s), await _until_s(job, rest))
    report = BackfillReport(*span)
    batches = []
    for product_id in job.products:
        product_batches = await _plan(job, store, product_id, span, report)
        stats = report.products[product_id]
        progress.start(product_id, stats.held_buckets + stats.missing_buckets, stats.held_buckets)
        batches.append([(product_id, batch) for batch in product_batches])
    queue = deque(b for b in chain.from_iterable(zip_longest(*batches)) if b is not None)
    await _run_workers(job, rest, store, progress, queue, report)
    for product_id in job.products:
        await store.finish(product_id, job.interval_s)
    report.requests = dict(rest.counters)
    report.elapsed_s = time.monotonic() - started
    return report


def _first_expected(group: ExceptionGroup) -> BaseException | None:
    """The first error of the workers if all of them are expected failures, else None."""
    matched, others = group.split(EXPECTED_ERRORS)
    if matched is None or others is not None:
        return None
    error: BaseException = matched
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def _run_workers(job: BackfillJob, rest: PublicRest, store: Store, progress: Progress,
                       queue: deque[tuple[str, Range]], report: BackfillReport) -> None:
    """Enough workers to keep the pace (requests in flight cover the latency); one error
    stops them all and is raised as itself."""
    workers = job.workers or min(32, max(2, math.ceil(job.rate_per_s / 2)))
    try:
        async with asyncio.TaskGroup() as group:
            for i in range(min(workers, len(queue))):
                group.create_task(_work(job, rest, store, progress, queue, report),
                                  name=f"backfill-{i}")
    except ExceptionGroup as failed:
        first = _first_expected(failed)
        if first is None:
            raise
        raise first from None


async def _until_s(job: BackfillJob, rest: PublicRest) -> int:
    """The exclusive end: --until, but never past the last closed bar by exchange time."""
    try:
        now_s = await rest.server_time_s()
    except RestError as exc:
        raise BackfillError(str(exc)) from None
    closed_s = floor_to(now_s, job.interval_s)
    until_s = closed_s if job.until_s is None else min(job.until_s, closed_s)
    return floor_to(until_s, job.interval_s)


async def _plan(job: BackfillJob, store: Store, product_id: str, span: Range,
                report: BackfillReport) -> list[Range]:
    held = await store.held(product_id, job.interval_s, span)
    holes = missing_ranges(span, held)
    missing = sum(end - start for start, end in holes) // job.interval_s
    total = max(0, span[1] - span[0]) // job.interval_s
    report.products[product_id] = ProductReport(
        held_buckets=total - missing, missing_buckets=missing, holes=len(holes))
    return batches_of(holes, job.interval_s, job.batch_pages)


async def _work(job: BackfillJob, rest: PublicRest, store: Store, progress: Progress,
                queue: deque[tuple[str, Range]], report: BackfillReport) -> None:
    while queue:
        product_id, batch = queue.popleft()
        candles = await rest.candles(product_id, *batch, job.interval_s)
        await store.store(product_id, job.interval_s, batch, candles)
        stats = report.products[product_id]
        stats.batches += 1
        stats.candles += len(candles)
        progress.advance(product_id, (batch[1] - batch[0]) // job.interval_s, len(candles))


# ---- the command ----------------------------------------------------------------------------

def run(job: BackfillJob) -> int:
    """`trader backfill`: progress on stderr, a summary on stdout; the exit code (0 or 1).

    Ctrl-C stops at once (130); every batch stored so far is kept for the next run.
    """
    console = Console(stderr=True)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            report = runner.run(_run(job, console))
    except KeyboardInterrupt:
        print("trader backfill: interrupted; what was stored is kept, run again to go on",
              file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as exc:
        print(f"trader backfill: error: {exc}", file=sys.stderr)
        return 1
    print(summary(job, report))
    return 0


async def _run(job: BackfillJob, console: Console) -> BackfillReport:
    store: Store = FileStore(job.out) if job.out else await DatabaseStore.open(job.dsn)
    try:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            rest = PublicRest(session, job.rest_url, Pacer(job.rate_per_s), max_attempts=8)
            with RichProgress(console) as progress:
                return await backfill(job, rest, store, progress)
    finally:
        await store.close()


def summary(job: BackfillJob, report: BackfillReport) -> str:
    """What was done, one line per product and a total."""
    lines = []
    for product_id, stats in report.products.items():
        lines.append(f"{product_id}: {stats.candles:,} candles written, {stats.missing_buckets:,} "
                     f"bars asked for in {stats.holes:,} hole(s), {stats.held_buckets:,} held")
    counters, elapsed_s = report.requests, max(report.elapsed_s, 1e-9)
    span = " .. ".join(datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")
                       for t in (report.since_s, report.until_s))
    where = ", ".join(str(FileStore(job.out).path_of(p)) for p in job.products) if job.out \
        else "the database"
    lines.append(f"{span} UTC into {where}: {counters.get('requests', 0):,} requests "
                 f"({counters.get('retries', 0):,} retried, {counters.get('rate_limited', 0):,} "
                 f"rate limited) in {report.elapsed_s:.1f} s = "
                 f"{counters.get('requests', 0) / elapsed_s:.2f} requests/s at a pace of "
                 f"{job.rate_per_s:g}/s")
    return "\n".join(lines)


class RichProgress:
    """One bar per product: bars held of the span, candles written by this run, rate, ETA."""

    def __init__(self, console: Console) -> None:
        self._progress = RichBars(
            TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} bars"),
            TextColumn("{task.fields[candles]:,} candles"), _RateColumn(),
            TimeRemainingColumn(), console=console)
        self._tasks: dict[str, TaskID] = {}
        self._candles: dict[str, int] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def start(self, product_id: str, total: int, held: int) -> None:
        self._candles[product_id] = 0
        self._tasks[product_id] = self._progress.add_task(product_id, total=total,
                                                          completed=held, candles=0)

    def advance(self, product_id: str, buckets: int, candles: int) -> None:
        self._candles[product_id] += candles
        self._progress.update(self._tasks[product_id], advance=buckets,
                              candles=self._candles[product_id])


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} bars/s" if speed else "- bars/s")
