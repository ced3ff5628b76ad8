"""Timing helpers, result rows and the report table shared by every benchmark module.

A benchmark module exposes ``SECTION``, a :class:`Section` whose ``run(config)`` returns
:class:`Row`s. A row is one figure: what was measured, in which unit, and optionally a
:class:`Target` that decides PASS or FAIL; rows without a target are references (the raw
library measured in the same run) or ratios printed for information.

Timing rules: every figure is the median of at least :data:`MIN_REPEATS` samples; when a
figure is compared with a reference, both are sampled *interleaved* over the same inputs
(:func:`sample_interleaved`) so that a noisy neighbour slows both alike.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Literal, TypeVar

__all__ = [
    "MIN_REPEATS",
    "Config",
    "Row",
    "Section",
    "Target",
    "format_markdown",
    "format_table",
    "machine_description",
    "median",
    "per_call",
    "ratio_row",
    "rss_peak_mb",
    "sample_calls",
    "sample_interleaved",
]

T = TypeVar("T")

MIN_REPEATS = 5
"""No figure is the median of fewer samples than this."""

MAX_NUMBER = 10_000_000
"""The most calls one timing loop makes, however fast the function (a no-op's loop
would otherwise double for ever towards ``min_time``)."""

_UNIT_SCALE = {"s": 1.0, "ms": 1e3, "µs": 1e6, "ns": 1e9}


# -- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """What a run asks of every section: ``quick`` shrinks the data sets (for development),
    ``cache_dir`` holds data files that are expensive to build and safe to reuse."""

    quick: bool = False
    cache_dir: Path = field(default_factory=lambda: Path("/tmp/atlas_eda_bench"))
    seed: int = 20_260_101


# -- rows and targets ----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A bound on a figure: ``Target("<=", 2, "ms")`` or ``Target(">=", 0.8, "x")``.
    ``value`` is in ``unit``, the same unit the row is expressed in."""

    op: Literal["<=", ">="]
    value: float
    unit: str

    def met(self, measured: float) -> bool:
        if math.isnan(measured):
            return False
        return measured <= self.value if self.op == "<=" else measured >= self.value

    def __str__(self) -> str:
        sign = "≤" if self.op == "<=" else "≥"
        return f"{sign} {_number(self.value)} {self.unit}".rstrip()


@dataclass(frozen=True)
class Row:
    """One figure of the report. ``value`` is already in ``unit`` (ms, MB, x, …)."""

    figure: str
    value: float
    unit: str
    target: Target | None = None
    note: str = ""
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "ERROR"
        if self.target is None:
            return "info"
        return "PASS" if self.target.met(self.value) else "FAIL"

    @property
    def measured(self) -> str:
        if self.error is not None:
            return "—"
        return f"{_number(self.value)} {self.unit}".rstrip()

    @classmethod
    def failed(cls, figure: str, error: str) -> Row:
        """A row standing for a section that raised instead of measuring."""
        return cls(figure, math.nan, "", error=error)


def ratio_row(
    figure: str, numerator: float, denominator: float, target: Target | None = None
) -> Row:
    """A ratio of two same-run medians, printed as ``1.23 x``."""
    value = numerator / denominator if denominator else math.nan
    return Row(figure, value, "x", target)


@dataclass(frozen=True)
class Section:
    """A group of figures: ``run(config)`` measures and returns its rows."""

    name: str
    title: str
    run: Callable[[Config], list[Row]]


# -- timing --------------------------------------------------------------------------------


def median(samples: Sequence[float]) -> float:
    """The median of at least :data:`MIN_REPEATS` samples."""
    if len(samples) < MIN_REPEATS:
        raise ValueError(f"a figure needs at least {MIN_REPEATS} samples, got {len(samples)}")
    return statistics.median(samples)


def sample_calls(fn: Callable[[T], object], inputs: Iterable[T]) -> list[float]:
    """The duration in seconds of ``fn(x)`` for each input, each call timed alone."""
    clock = time.perf_counter
    samples: list[float] = []
    for x in inputs:
        start = clock()
        fn(x)
        samples.append(clock() - start)
    return samples


def sample_interleaved(
    fns: Mapping[str, Callable[[T], object]], inputs: Iterable[T]
) -> dict[str, list[float]]:
    """Each function timed once per input, alternating which goes first, so that every
    function sees the same inputs and the same machine noise. Returns seconds per call."""
    clock = time.perf_counter
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for turn, x in enumerate(inputs):
        order = names if turn % 2 == 0 else names[::-1]
        for name in order:
            fn = fns[name]
            start = clock()
            fn(x)
            samples[name].append(clock() - start)
    return samples


def per_call(
    fn: Callable[[], object],
    *,
    number: int | None = None,
    repeats: int = 7,
    min_time: float = 0.05,
    disable_gc: bool = True,
) -> list[float]:
    """For cheap operations: ``repeats`` samples of the mean seconds per call over a loop of
    ``number`` calls (``number`` is calibrated to last ``min_time`` when not given). The
    garbage collector is off inside each loop, as in ``timeit``."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS}")
    if number is None:
        number = 1
        while True:
            if _loop(fn, number, disable_gc) >= min_time or number >= MAX_NUMBER:
                break
            number *= 2
    return [_loop(fn, number, disable_gc) / number for _ in range(repeats)]


def _loop(fn: Callable[[], object], number: int, disable_gc: bool) -> float:
    gc_was_on = gc.isenabled()
    if disable_gc:
        gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - start
    finally:
        if gc_was_on:
            gc.enable()


def in_unit(seconds: float, unit: str) -> float:
    """``seconds`` expressed in ``unit`` (s, ms, µs or ns)."""
    return seconds * _UNIT_SCALE[unit]


# -- memory --------------------------------------------------------------------------------


def rss_peak_mb() -> dict[str, float]:
    """This process's peak resident set size, in MB (2**20 bytes), two ways:
    ``ru_maxrss`` from ``getrusage`` and ``VmHWM`` from ``/proc/self/status`` (Linux).

    They differ in a process started by ``exec``: Linux carries the parent's high-water mark
    into the child's ``ru_maxrss`` at ``execve``, while ``VmHWM`` belongs to the child's own
    address space. A child's own peak is therefore ``VmHWM`` where it exists."""
    import resource  # noqa: PLC0415  (POSIX only)

    peaks = {"ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                peaks[key] = int(value.split()[0]) / 1024
    return peaks


# -- the machine ---------------------------------------------------------------------------


def machine_description() -> dict[str, str]:
    """What ran the benchmarks: enough to tell machines apart in a report."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    versions = []
    for name in ("atlas_eda", "eventsourcing", "blinker", "effect", "aspectlib"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    import sqlite3  # noqa: PLC0415

    versions.append(f"SQLite {sqlite3.sqlite_version}")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "cpu": f"{cpu} — {os.cpu_count()} CPUs ({usable} usable)",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "libraries": ", ".join(versions),
        "load average at start": load,
    }


# -- the report ----------------------------------------------------------------------------

_HEADER = ("figure", "measured", "target", "result")


# The decimals a figure is printed with, by its size: three significant figures at most,
# since more would be noise on a shared machine.
_DECIMALS = ((100.0, ",.0f"), (10.0, ".1f"), (1.0, ".2f"))


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value == int(value):
        return f"{value:,.0f}"
    for smallest, spec in _DECIMALS:
        if abs(value) >= smallest:
            return format(value, spec)
    return f"{value:.3g}"


def _cells(row: Row) -> tuple[str, str, str, str]:
    return (row.figure, row.measured, str(row.target) if row.target else "—", row.status)


def format_table(
    sections: Sequence[tuple[Section, list[Row]]], machine: Mapping[str, str], elapsed: float
) -> str:
    """The report as plain text: machine, then one table of every section's rows, then the
    notes and errors, and a summary line."""
    lines = [f"{key:>22}: {value}" for key, value in machine.items()]
    all_rows = [row for _, rows in sections for row in rows]
    widths = [len(h) for h in _HEADER]
    for row in all_rows:
        widths = [max(w, len(c)) for w, c in zip(widths, _cells(row), strict=True)]
    rule = "  ".join("-" * w for w in widths)

    def fmt(cells: Sequence[str]) -> str:
        figure, measured, target, result = cells
        return (
            f"{figure:<{widths[0]}}  {measured:>{widths[1]}}  "
            f"{target:>{widths[2]}}  {result:<{widths[3]}}"
        ).rstrip()

    lines += ["", fmt(_HEADER), rule]
    notes: list[str] = []
    for section, rows in sections:
        lines.append(f"[{section.title}]")
        for row in rows:
            lines.append(fmt(_cells(row)))
            if row.error:
                notes.append(f"ERROR in {row.figure}: {row.error}")
            elif row.note:
                notes.append(f"{row.figure}: {row.note}")
    lines.append(rule)
    if notes:
        lines += ["", "notes:"] + [f"  - {n}" for n in notes]
    lines += ["", _summary(all_rows, elapsed)]
    return "\n".join(lines)


def format_markdown(
    sections: Sequence[tuple[Section, list[Row]]], machine: Mapping[str, str], elapsed: float
) -> str:
    """The same report as a Markdown document (for docs/performance.md)."""
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in machine.items()]
    lines += ["", "| " + " | ".join(_HEADER) + " |", "|---|---:|---:|---|"]
    for section, rows in sections:
        lines.append(f"| **{section.title}** | | | |")
        for row in rows:
            cells = [c.replace("|", "\\|") for c in _cells(row)]
            if cells[3] in ("FAIL", "ERROR"):
                cells[3] = f"**{cells[3]}**"
            lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"- {r.figure}: {r.error or r.note}"
        for _, rows in sections
        for r in rows
        if r.error or r.note
    ]
    if notes:
        lines += ["", *notes]
    all_rows = [row for _, rows in sections for row in rows]
    lines += ["", _summary(all_rows, elapsed)]
    return "\n".join(lines) + "\n"


def _summary(rows: Sequence[Row], elapsed: float) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    parts = [f"{counts.get(k, 0)} {k}" for k in ("PASS", "FAIL", "ERROR") if counts.get(k)]
    return f"{', '.join(parts) or 'no targets'} — run took {elapsed:.0f} s"


def time_row(figure: str, samples: Sequence[float], unit: str, extra: str = "") -> Row:
    """An information row: the median of ``samples`` (seconds) in ``unit``, with its spread."""
    return Row(figure, in_unit(median(samples), unit), unit, note=stats_note(samples, unit, extra))


def describe_samples(samples: Sequence[float], unit: str = "ms") -> str:
    """``median [min-max] over n`` for a note."""
    return (
        f"median of {len(samples)}; min {_number(in_unit(min(samples), unit))} {unit}, "
        f"max {_number(in_unit(max(samples), unit))} {unit}"
    )


def stats_note(samples: Sequence[float], unit: str = "ms", extra: str = "") -> str:
    """A row note describing the spread of its samples, plus anything ``extra``."""
    text = describe_samples(samples, unit)
    return f"{text}; {extra}" if extra else text


def _gc_on_loop(fn: Callable[[], object], number: int) -> float:
    clock = time.perf_counter
    start = clock()
    for _ in range(number):
        fn()
    return clock() - start


def interleaved_per_call(
    fns: Mapping[str, Callable[[], object]], *, repeats: int, min_time: float
) -> dict[str, list[float]]:
    """Seconds per call of each function: ``repeats`` samples each, every sample the mean
    over a loop of the same ``number`` of calls, the functions alternating which goes first.
    ``number`` is calibrated so that the slowest function's loop lasts ``min_time``. The
    garbage collector stays on, as in an application."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS}")
    names = list(fns)
    number = 1
    while max(_gc_on_loop(fns[name], number) for name in names) < min_time and number < MAX_NUMBER:
        number *= 2
    samples: dict[str, list[float]] = {name: [] for name in names}
    for turn in range(repeats):
        order = names if turn % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(_gc_on_loop(fns[name], number) / number)
    return samples
