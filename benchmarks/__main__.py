"""Every benchmark in one run, one table: `python -m benchmarks [--quick] [--only NAME ...]`.

Runs `run(quick)` of each `bench_*.py` in turn (in ORDER, or those named by --only, as
`bar_close` or `bench_bar_close`) and prints one table of their figures under a line naming
the machine and the date. A benchmark that fails prints one line naming it and the error, the
others still run, and the exit status is 1. --quick does a small part of each one's work (the
whole run in about two minutes); without it, the figures RESULTS.md records (about ten).
--markdown FILE also writes the table grouped per area, the start of a RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# As when a bench runs as a script: `figures` beside it, the repository for `tests.pg`.
sys.path[:0] = [str(HERE), str(HERE.parent)]

import figures  # noqa: E402

# The table's order, by area as RESULTS.md has it; a bench not listed here runs after these.
ORDER = ("parse", "ingest", "bar_close", "indicators", "strategies", "startup", "rss", "writer",
         "history_load", "backfill", "journal", "order_latency")


def available() -> list[str]:
    names = sorted(path.stem.removeprefix("bench_") for path in HERE.glob("bench_*.py"))
    return sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small part of the work")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=", ".join(available()))
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="also write the figures grouped per area to FILE")
    args = parser.parse_args(argv)
    names = available()
    if args.only:
        chosen = [n.removesuffix(".py").removeprefix("bench_") for n in args.only]
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            parser.error(f"no benchmark {', '.join(unknown)} (there are {', '.join(names)})")
        names = [n for n in names if n in chosen]
    heading = f"{figures.heading()}; {'quick' if args.quick else 'full'} run"
    print(heading, flush=True)
    collected: list[figures.Figure] = []
    failed: list[str] = []
    started = time.perf_counter()
    for name in names:
        began = time.perf_counter()
        try:
            module = importlib.import_module(f"bench_{name}")
            run = getattr(module, "run", None)
            if run is None:
                print(f"bench_{name}: skipped, it defines no run(quick) yet", flush=True)
                continue
            got = run(quick=args.quick)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit too: a bench's own exit is its failure
            print(f"bench_{name}: FAILED: {one_line(exc)}", flush=True)
            failed.append(name)
            continue
        collected += got
        print(f"bench_{name}: {len(got)} figures in {time.perf_counter() - began:.0f} s",
              file=sys.stderr, flush=True)
    print(f"{len(names)} benchmarks in {time.perf_counter() - started:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    print(figures.markdown(collected))
    if args.markdown:
        args.markdown.write_text(f"# Benchmark results\n\n{heading}\n\n"
                                 f"{figures.by_area(collected)}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
