"""Run the benchmarks and print one table: figure, measured, target, PASS/FAIL.

    python -m benchmarks.run            # the full run (make bench)
    python -m benchmarks.run --quick    # smaller data sets, for development
    python -m benchmarks.run --only store --markdown out.md

The run is a report: it exits 0 even when a figure misses its target (FAIL is printed
plainly); it exits 1 only when a section could not measure at all (ERROR).

Each section runs in a fresh interpreter (this module, with ``--rows-out``), so that no
figure depends on which sections ran before it: the store section, for one, leaves a
large heap behind, and the µs-scale comparisons measured after it in the same process
came out a few percent apart from the same comparisons measured alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import (
    bus,
    commands,
    components,
    end_to_end,
    graph,
    inspector,
    memory,
    projections,
    prometheus,
    replay,
    replay_state,
    resilience,
    sagas,
    scaling,
    telemetry,
    time_travel,
    timeline_memory,
)
from ._harness import (
    Config,
    Row,
    Section,
    Target,
    format_markdown,
    format_table,
    machine_description,
)

MARKDOWN_PREAMBLE = """# Performance

Written by `make bench` (`python -m benchmarks.run --markdown docs/performance.md`) on the
machine described below; run it again to measure yours. Every figure is a ratio of two
medians measured side by side in the same run (each of at least 5 repeats; callables timed
interleaved, alternating which goes first; each section in a fresh interpreter), because
absolute times on shared machines are not comparable from one run to the next. The rows
marked `info` give the absolute times behind the ratios. How each figure is measured is in
the docstring of its module in `benchmarks/`.

"""


def bus_sections() -> list[Section]:
    """The slot for bus benchmarks: return their sections here.

    Reserved for the EventBus figures (issue 3: trace overhead when nobody reads traces;
    issue 5: publish with 1 and 10 subscribers vs raw blinker, pyee, PyPubSub and
    zope.event, history bound, middleware). Each module exposes ``SECTION`` like
    ``benchmarks.time_travel``; add it to the list below.
    """
    return [bus.SECTION, commands.SECTION, graph.SECTION, telemetry.SECTION]


def all_sections() -> list[Section]:
    """Every registered section, in the order they run and print."""
    # The memory section runs first: its child process is spawned while this process
    # is still small (what exec carries over is then negligible either way).
    return [
        timeline_memory.SECTION,
        memory.SECTION,
        time_travel.SECTION,
        inspector.SECTION,
        *bus_sections(),
        components.SECTION,
        end_to_end.SECTION,
        prometheus.SECTION,
        replay.SECTION,
        replay_state.SECTION,
        resilience.SECTION,
        sagas.SECTION,
        scaling.SECTION,
        projections.SECTION,
    ]


def run_section(section: Section, config: Config) -> list[Row]:
    """The section's rows, measured in this process."""
    gc.collect()
    try:
        return section.run(config)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return [Row.failed(section.title, f"{type(exc).__name__}: {exc}")]


def run_section_alone(section: Section, config: Config) -> list[Row]:
    """The section's rows, measured in a fresh interpreter running only it (its progress
    and errors go to this process's stderr)."""
    with tempfile.TemporaryDirectory(prefix="atlas_eda_bench_") as scratch:
        out = Path(scratch) / "rows.json"
        command = [sys.executable, "-m", "benchmarks.run", "--only", section.name]
        command += ["--cache-dir", str(config.cache_dir), "--rows-out", str(out)]
        if config.quick:
            command.append("--quick")
        child = subprocess.run(command, check=False)
        if child.returncode != 0 or not out.exists():
            return [Row.failed(section.title, f"its process exited {child.returncode}")]
        return [_row(item) for item in json.loads(out.read_text(encoding="utf-8"))]


def _row(item: dict[str, object]) -> Row:
    target = item.pop("target")
    row = Row(**item)  # type: ignore[arg-type]
    if target is not None:
        row = dataclasses.replace(row, target=Target(**target))  # type: ignore[arg-type]
    return row


def main(argv: list[str] | None = None) -> int:
    sections = all_sections()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small data sets (10k events for the store, 100k for the timeline)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[s.name for s in sections],
        help="run only this section (repeatable)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "atlas_eda_bench",
        help="where expensive data files are cached between runs (default: %(default)s)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the report as Markdown")
    parser.add_argument("--rows-out", type=Path, help=argparse.SUPPRESS)  # a section's child
    args = parser.parse_args(argv)

    config = Config(quick=args.quick, cache_dir=args.cache_dir)
    chosen = [s for s in sections if not args.only or s.name in args.only]
    if args.rows_out is not None:  # the child measuring one section for the run
        rows = [row for section in chosen for row in run_section(section, config)]
        args.rows_out.write_text(json.dumps([dataclasses.asdict(r) for r in rows]), "utf-8")
        return 0
    machine = machine_description()
    machine["run"] = "quick (--quick): small data sets" if args.quick else "full"
    started = time.perf_counter()
    results: list[tuple[Section, list[Row]]] = []
    for section in chosen:
        print(f"running {section.title} …", file=sys.stderr, flush=True)
        begin = time.perf_counter()
        results.append((section, run_section_alone(section, config)))
        print(f"  done in {time.perf_counter() - begin:.0f} s", file=sys.stderr, flush=True)
    if not bus_sections() and not args.only:
        print("(no bus benchmarks are registered yet: see benchmarks.run.bus_sections)\n")
    elapsed = time.perf_counter() - started
    print(format_table(results, machine, elapsed))
    if args.markdown:
        args.markdown.write_text(
            MARKDOWN_PREAMBLE + format_markdown(results, machine, elapsed), encoding="utf-8"
        )
        print(f"\nwritten to {args.markdown}")
    errors = any(row.status == "ERROR" for _, rows in results for row in rows)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
