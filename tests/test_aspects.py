"""Aspects: ``LoggingAspect``, ``MetricsAspect`` and ``AspectWeaver`` woven the seed's way
(stacked on bound methods), on classes, on plain functions, and through aspectlib itself."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import sys
import threading
from collections.abc import Iterator
from typing import Any

import aspectlib
import pytest

import atlas_eda.aspects as aspects_module
from atlas_eda import (
    AspectWeaver,
    AtlasEdaError,
    EventBus,
    EventType,
    LoggingAspect,
    MetricsAspect,
    MiddlewareError,
    UnknownAspectError,
)

ASPECT_LOGGER = "atlas_eda.aspects"


class Service:
    """A service as a user writes one."""

    def m(self, x: int, y: int = 1) -> int:
        return x + y

    def fail(self, exc: BaseException) -> None:
        raise exc

    def echo(self, value: Any) -> Any:
        return value

    @staticmethod
    def product(a: int, b: int) -> int:
        return a * b

    @classmethod
    def make(cls, label: str) -> str:
        return f"{cls.__name__}:{label}"


def double(x: int) -> int:
    """Twice x."""
    return 2 * x


class RecordingCollector:
    """A metrics collector that keeps every record it receives."""

    def __init__(self) -> None:
        self.records: list[tuple[str, float, bool]] = []
        self._lock = threading.Lock()

    def record(self, key: str, seconds: float, *, success: bool) -> None:
        with self._lock:
            self.records.append((key, seconds, success))


class BrokenCollector:
    def record(self, key: str, seconds: float, *, success: bool) -> None:
        raise OSError("statsd unreachable")


class FakeClock:
    """Stands in for ``time`` inside atlas_eda.aspects: durations are what calls say."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Timed:
    """A service whose calls take exactly the (fake) time they are asked to."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def work(self, seconds: float, fail: bool = False) -> float:
        self.clock.advance(seconds)
        if fail:
            raise RuntimeError("failed on purpose")
        return seconds


class CountingRepr:
    """An argument that counts how often it is formatted."""

    def __init__(self) -> None:
        self.calls = 0

    def __repr__(self) -> str:
        self.calls += 1
        return "CountingRepr()"


@pytest.fixture
def collector() -> RecordingCollector:
    return RecordingCollector()


@pytest.fixture
def metrics(collector: RecordingCollector) -> MetricsAspect:
    return MetricsAspect(collector)


@pytest.fixture
def weaver(metrics: MetricsAspect) -> AspectWeaver:
    w = AspectWeaver()
    w.register_aspect("logging", LoggingAspect())
    w.register_aspect("metrics", metrics)
    return w


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(aspects_module, "time", fake)
    return fake


@pytest.fixture
def info_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger=ASPECT_LOGGER):
        yield caplog


def aspect_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ASPECT_LOGGER]


# -- stacking keeps Class.method -------------------------------------------------------


def test_stacked_logging_then_metrics_keep_class_method_names(
    weaver: AspectWeaver,
    metrics: MetricsAspect,
    info_logs: pytest.LogCaptureFixture,
    clock: FakeClock,
) -> None:
    svc = Service()
    svc.m = weaver.apply_aspect("logging", svc.m)  # type: ignore[method-assign]
    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]

    assert svc.m(2, y=3) == 5

    assert list(metrics.get_metrics()) == ["Service.m"]
    assert aspect_lines(info_logs) == [
        "[1] ENTER Service.m(2, y=3)",
        "[1] EXIT Service.m in 0.0000s",  # the fake clock did not move
    ]
    assert all(r.levelno == logging.INFO for r in info_logs.records if r.name == ASPECT_LOGGER)


def test_stacked_metrics_then_logging_keep_class_method_names(
    weaver: AspectWeaver,
    metrics: MetricsAspect,
    info_logs: pytest.LogCaptureFixture,
    clock: FakeClock,
) -> None:
    svc = Service()
    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]
    svc.m = weaver.apply_aspect("logging", svc.m)  # type: ignore[method-assign]

    assert svc.m(4) == 5

    assert list(metrics.get_metrics()) == ["Service.m"]
    assert metrics.get_metrics()["Service.m"]["count"] == 1
    assert aspect_lines(info_logs) == ["[1] ENTER Service.m(4)", "[1] EXIT Service.m in 0.0000s"]


def test_stacked_aspects_keep_the_methods_name_and_doc(weaver: AspectWeaver) -> None:
    svc = Service()
    svc.m = weaver.apply_aspect("logging", svc.m)  # type: ignore[method-assign]
    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]

    assert svc.m.__name__ == "m"
    assert svc.m.__self__ is svc


def test_applying_to_the_original_method_again_stacks(
    weaver: AspectWeaver,
    metrics: MetricsAspect,
    info_logs: pytest.LogCaptureFixture,
    clock: FakeClock,
) -> None:
    svc = Service()
    original = svc.m
    weaver.apply_aspect("logging", original)
    weaver.apply_aspect("metrics", original)  # the pre-weaving bound method, again

    assert svc.m(1) == 2

    assert weaver.get_applied_aspects(svc.m) == ["logging", "metrics"]
    assert metrics.get_metrics()["Service.m"]["count"] == 1
    assert aspect_lines(info_logs) == ["[1] ENTER Service.m(1)", "[1] EXIT Service.m in 0.0000s"]


# -- get_applied_aspects ---------------------------------------------------------------


def test_get_applied_aspects_for_original_current_and_returned_callables(
    weaver: AspectWeaver,
) -> None:
    svc = Service()
    original = svc.m
    first = weaver.apply_aspect("logging", svc.m)
    svc.m = first  # type: ignore[method-assign]
    second = weaver.apply_aspect("metrics", svc.m)
    svc.m = second  # type: ignore[method-assign]

    expected = ["logging", "metrics"]  # innermost first
    assert weaver.get_applied_aspects(original) == expected
    assert weaver.get_applied_aspects(svc.m) == expected
    assert weaver.get_applied_aspects(first) == expected
    assert weaver.get_applied_aspects(second) == expected


def test_get_applied_aspects_is_empty_for_unwoven_targets(weaver: AspectWeaver) -> None:
    assert weaver.get_applied_aspects(Service().m) == []
    assert weaver.get_applied_aspects(Service) == []
    assert weaver.get_applied_aspects(double) == []


def test_a_second_instance_is_unaffected(
    weaver: AspectWeaver, metrics: MetricsAspect, info_logs: pytest.LogCaptureFixture
) -> None:
    svc, other = Service(), Service()
    svc.m = weaver.apply_aspect("logging", svc.m)  # type: ignore[method-assign]
    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]

    assert other.m(1) == 2

    assert weaver.get_applied_aspects(other.m) == []
    assert "m" not in vars(other)
    assert metrics.get_metrics() == {}
    assert aspect_lines(info_logs) == []


def test_the_returned_callable_is_the_patched_method(weaver: AspectWeaver) -> None:
    svc = Service()

    patched = weaver.apply_aspect("metrics", svc.m)

    assert vars(svc)["m"] is patched  # patched on the instance, as the seed expects
    assert patched(1) == 2


# -- metrics collector -----------------------------------------------------------------


def test_the_collector_records_successes_and_failures(
    weaver: AspectWeaver, collector: RecordingCollector, clock: FakeClock
) -> None:
    svc = Service()
    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]
    svc.fail = weaver.apply_aspect("metrics", svc.fail)  # type: ignore[method-assign]

    svc.m(1)
    with pytest.raises(KeyError):
        svc.fail(KeyError("k"))

    # The fake clock does not move while these run: each took exactly 0.0 s.
    assert collector.records == [("Service.m", 0.0, True), ("Service.fail", 0.0, False)]
    assert [type(seconds) for _, seconds, _ in collector.records] == [float, float]


def test_the_collector_gets_the_measured_duration(clock: FakeClock) -> None:
    collector = RecordingCollector()
    metrics = MetricsAspect(metrics_collector=collector)
    timed = Timed(clock)
    aspectlib.weave(timed.work, metrics)

    timed.work(0.25)

    assert collector.records == [("Timed.work", 0.25, True)]


def test_a_broken_collector_does_not_change_the_result_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    weaver = AspectWeaver()
    collector = BrokenCollector()
    metrics = MetricsAspect(collector)
    weaver.register_aspect("metrics", metrics)
    svc = Service()
    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]
    svc.fail = weaver.apply_aspect("metrics", svc.fail)  # type: ignore[method-assign]
    error = LookupError("the method's own")

    with caplog.at_level(logging.ERROR, logger=ASPECT_LOGGER):
        assert svc.m(1) == 2
        with pytest.raises(LookupError) as excinfo:
            svc.fail(error)

    assert excinfo.value is error
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (ASPECT_LOGGER, logging.ERROR, f"metrics collector {collector!r} failed to record {key}")
        for key in ("Service.m", "Service.fail")
    ]
    for record in caplog.records:
        assert record.exc_info is not None
        assert type(record.exc_info[1]) is OSError
        assert str(record.exc_info[1]) == "statsd unreachable"
    # The aspect's own statistics are kept all the same.
    assert metrics.get_metrics()["Service.m"]["count"] == 1
    assert metrics.get_metrics()["Service.fail"]["errors"] == 1


# -- get_metrics -------------------------------------------------------------------------

METRIC_FIELDS = {
    "count",
    "total_time",
    "min_time",
    "max_time",
    "errors",
    "avg_time",
    "error_rate",
    "p50",
    "p95",
    "p99",
}


def test_get_metrics_fields_are_consistent(weaver: AspectWeaver, metrics: MetricsAspect) -> None:
    svc = Service()
    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]
    svc.fail = weaver.apply_aspect("metrics", svc.fail)  # type: ignore[method-assign]

    for i in range(20):
        svc.m(i)
    for _ in range(3):
        with pytest.raises(ValueError, match="no"):
            svc.fail(ValueError("no"))

    report = metrics.get_metrics()
    assert set(report) == {"Service.m", "Service.fail"}
    for key, count, errors in [("Service.m", 20, 0), ("Service.fail", 3, 3)]:
        stats = report[key]
        assert set(stats) == METRIC_FIELDS
        assert stats["count"] == count
        assert stats["errors"] == errors
        assert stats["error_rate"] == errors / count
        assert stats["avg_time"] == pytest.approx(stats["total_time"] / count)
        assert 0 <= stats["min_time"] <= stats["p50"] <= stats["p95"]
        assert stats["p95"] <= stats["p99"] <= stats["max_time"] <= stats["total_time"]


def test_get_metrics_values_with_known_durations(clock: FakeClock) -> None:
    metrics = MetricsAspect()
    timed = Timed(clock)
    aspectlib.weave(timed.work, metrics)

    for seconds in range(1, 101):  # 1 s, 2 s, ... 100 s; every tenth fails
        if seconds % 10 == 0:
            with pytest.raises(RuntimeError):
                timed.work(float(seconds), fail=True)
        else:
            timed.work(float(seconds))

    stats = metrics.get_metrics()["Timed.work"]
    assert stats == {
        "count": 100,
        "total_time": 5050.0,
        "min_time": 1.0,
        "max_time": 100.0,
        "errors": 10,
        "avg_time": 50.5,
        "error_rate": 0.1,
        "p50": 50.0,
        "p95": 95.0,
        "p99": 99.0,
    }


def test_percentiles_cover_the_most_recent_reservoir_calls(clock: FakeClock) -> None:
    metrics = MetricsAspect(reservoir=10)
    timed = Timed(clock)
    aspectlib.weave(timed.work, metrics)

    for seconds in range(1, 101):
        timed.work(float(seconds))

    stats = metrics.get_metrics()["Timed.work"]
    assert (stats["count"], stats["min_time"], stats["max_time"]) == (100, 1.0, 100.0)
    assert (stats["p50"], stats["p95"], stats["p99"]) == (95.0, 100.0, 100.0)


def test_reservoir_must_be_positive() -> None:
    with pytest.raises(ValueError, match="reservoir"):
        MetricsAspect(reservoir=0)


def test_get_metrics_is_a_snapshot(weaver: AspectWeaver, metrics: MetricsAspect) -> None:
    svc = Service()
    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]
    svc.m(1)

    snapshot = metrics.get_metrics()
    svc.m(2)

    assert snapshot["Service.m"]["count"] == 1
    assert metrics.get_metrics()["Service.m"]["count"] == 2


def test_reset_forgets_every_measurement(weaver: AspectWeaver, metrics: MetricsAspect) -> None:
    svc = Service()
    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]
    svc.m(1)

    metrics.reset()
    assert metrics.get_metrics() == {}

    svc.m(1)  # still woven: measuring starts again from zero
    assert metrics.get_metrics()["Service.m"]["count"] == 1


def test_metrics_are_exact_under_concurrent_calls(
    weaver: AspectWeaver, metrics: MetricsAspect, collector: RecordingCollector
) -> None:
    threads_count, calls = 8, 500
    svc = Service()
    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]
    barrier = threading.Barrier(threads_count)
    results: list[int] = []

    def worker() -> None:
        barrier.wait()
        total = 0
        for i in range(calls):
            total += svc.m(i, y=0)
        results.append(total)

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stats = metrics.get_metrics()["Service.m"]
    assert stats["count"] == threads_count * calls
    assert stats["errors"] == 0
    assert len(collector.records) == threads_count * calls
    assert results == [sum(range(calls))] * threads_count


# -- LoggingAspect -----------------------------------------------------------------------


def test_logging_aspect_logs_enter_and_exit_at_info(info_logs: pytest.LogCaptureFixture) -> None:
    svc = Service()
    aspectlib.weave(svc.m, LoggingAspect())

    assert svc.m(3, y=4) == 7

    records = [r for r in info_logs.records if r.name == ASPECT_LOGGER]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    enter, leave = (r.getMessage() for r in records)
    assert "ENTER Service.m(3, y=4)" in enter
    assert "EXIT Service.m in " in leave
    # Both lines carry the same per-call request id.
    assert enter.split(" ", 1)[0] == leave.split(" ", 1)[0]


def test_logging_aspect_uses_the_given_logger(caplog: pytest.LogCaptureFixture) -> None:
    mine = logging.getLogger("tests.aspects.mine")
    svc = Service()
    aspectlib.weave(svc.m, LoggingAspect(mine))

    with caplog.at_level(logging.INFO, logger="tests.aspects.mine"):
        svc.m(1)

    assert [r.name for r in caplog.records] == ["tests.aspects.mine", "tests.aspects.mine"]


def test_logging_aspect_formats_nothing_when_the_logger_is_above_its_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    quiet = logging.getLogger("tests.aspects.quiet")
    svc = Service()
    aspectlib.weave(svc.echo, LoggingAspect(quiet))
    argument = CountingRepr()

    with caplog.at_level(logging.WARNING, logger="tests.aspects.quiet"):
        assert svc.echo(argument) is argument

    assert argument.calls == 0
    assert caplog.records == []


def test_logging_aspect_level_is_configurable(caplog: pytest.LogCaptureFixture) -> None:
    svc = Service()
    aspectlib.weave(svc.m, LoggingAspect(level=logging.DEBUG))

    with caplog.at_level(logging.DEBUG, logger=ASPECT_LOGGER):
        svc.m(1)

    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG]


def test_logging_aspect_with_a_plain_callable() -> None:
    lines: list[str] = []
    svc = Service()
    aspectlib.weave(svc.m, LoggingAspect(lines.append))

    assert svc.m(5) == 6

    assert len(lines) == 2
    assert "ENTER Service.m(5)" in lines[0]
    assert "EXIT Service.m" in lines[1]


def test_logging_aspect_logs_an_error_and_reraises_the_same_exception(
    info_logs: pytest.LogCaptureFixture,
) -> None:
    svc = Service()
    aspectlib.weave(svc.fail, LoggingAspect())
    error = ConnectionError("peer reset")

    with pytest.raises(ConnectionError) as excinfo:
        svc.fail(error)

    assert excinfo.value is error
    records = [r for r in info_logs.records if r.name == ASPECT_LOGGER]
    assert [r.levelno for r in records] == [logging.INFO, logging.ERROR]
    message = records[1].getMessage()
    assert "ERROR Service.fail" in message
    assert "ConnectionError: peer reset" in message


def test_logging_aspect_error_line_reaches_a_plain_callable() -> None:
    lines: list[str] = []
    svc = Service()
    aspectlib.weave(svc.fail, LoggingAspect(lines.append))

    with pytest.raises(ZeroDivisionError):
        svc.fail(ZeroDivisionError("x"))

    assert len(lines) == 2
    assert "ERROR Service.fail" in lines[1]
    assert "ZeroDivisionError: x" in lines[1]


def test_logging_aspect_preserves_the_return_value() -> None:
    svc = Service()
    aspectlib.weave(svc.echo, LoggingAspect(lambda line: None))
    value = {"a": [1, 2]}

    assert svc.echo(value) is value


def test_logging_aspect_truncates_long_argument_reprs() -> None:
    lines: list[str] = []
    svc = Service()
    aspectlib.weave(svc.echo, LoggingAspect(lines.append))
    huge = "x" * 10_000

    assert svc.echo(huge) is huge

    enter = lines[0]
    assert "ENTER Service.echo(" in enter
    assert "..." in enter
    assert len(enter) < 200


def test_logging_aspect_shows_every_argument_of_static_and_class_methods() -> None:
    lines: list[str] = []
    weaver = AspectWeaver()
    weaver.register_aspect("logging", LoggingAspect(lines.append))

    class Calc:
        @staticmethod
        def product(a: int, b: int) -> int:
            return a * b

        @classmethod
        def make(cls, label: str) -> str:
            return f"{cls.__name__}:{label}"

    weaver.apply_aspect("logging", Calc)
    assert Calc.product(6, 7) == 42
    assert Calc().make("x") == "Calc:x"
    make = weaver.apply_aspect("logging", Service.make)  # a classmethod bound to its class
    assert make("y") == "Service:y"

    enters = [line.split(" ", 1)[1] for line in lines if "ENTER" in line]
    assert enters == ["ENTER Calc.product(6, 7)", "ENTER Calc.make('x')", "ENTER Service.make('y')"]


def test_logging_aspect_as_a_decorator_of_a_bound_method_shows_every_argument() -> None:
    lines: list[str] = []
    svc = Service()

    logged = LoggingAspect(lines.append)(svc.m)

    assert logged(10, 20) == 30
    assert "ENTER Service.m(10, 20)" in lines[0]


def test_logging_aspect_publishes_one_error_event_on_failure() -> None:
    bus = EventBus()
    errors: list[Any] = []
    bus.subscribe(EventType.ERROR, errors.append)
    svc = Service()
    aspectlib.weave(svc.fail, LoggingAspect(lambda line: None, event_bus=bus))
    aspectlib.weave(svc.m, LoggingAspect(lambda line: None, event_bus=bus))

    svc.m(1)
    assert errors == []  # successes publish nothing

    with pytest.raises(TimeoutError):
        svc.fail(TimeoutError("slow"))

    assert len(errors) == 1
    event = errors[0]
    assert event.type is EventType.ERROR
    assert event.data["method"] == "Service.fail"
    assert event.data["error_type"] == "TimeoutError"
    assert event.data["error_message"] == "slow"
    assert len(bus.get_history(EventType.ERROR)) == 1


def test_a_bus_that_refuses_the_error_event_does_not_hide_the_methods_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()

    def broken_middleware(event: Any) -> Any:
        raise RuntimeError("middleware down")

    bus.add_middleware(broken_middleware)
    svc = Service()
    aspectlib.weave(svc.fail, LoggingAspect(lambda line: None, event_bus=bus))
    error = PermissionError("denied")

    with (
        caplog.at_level(logging.ERROR, logger=ASPECT_LOGGER),
        pytest.raises(PermissionError) as excinfo,
    ):
        svc.fail(error)

    assert excinfo.value is error
    # The report that could not be published is logged, with the bus's own error.
    [record] = [r for r in caplog.records if r.name == ASPECT_LOGGER]
    assert (record.levelno, record.getMessage()) == (
        logging.ERROR,
        "could not publish the ERROR event for Service.fail [1]",
    )
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], MiddlewareError)
    assert str(record.exc_info[1].__cause__) == "middleware down"


# -- AspectWeaver ------------------------------------------------------------------------


def test_apply_unknown_aspect_lists_the_registered_names(weaver: AspectWeaver) -> None:
    with pytest.raises(UnknownAspectError) as excinfo:
        weaver.apply_aspect("tracing", Service().m)

    error = excinfo.value
    assert isinstance(error, ValueError)
    assert isinstance(error, AtlasEdaError)
    message = str(error)
    assert "'tracing'" in message
    assert "logging" in message
    assert "metrics" in message
    assert "register_aspect" in message


def test_apply_with_nothing_registered_says_so() -> None:
    with pytest.raises(UnknownAspectError, match="none registered"):
        AspectWeaver().apply_aspect("logging", double)


@pytest.mark.parametrize("bad_name", ["", 3, None])
def test_register_aspect_refuses_a_bad_name(bad_name: Any) -> None:
    weaver = AspectWeaver()

    with pytest.raises(ValueError, match="non-empty str"):
        weaver.register_aspect(bad_name, MetricsAspect())

    assert weaver.aspects == {}


def test_register_aspect_refuses_a_non_callable_aspect() -> None:
    weaver = AspectWeaver()

    with pytest.raises(TypeError, match="'broken'"):
        weaver.register_aspect("broken", "not an aspect")


def test_register_aspect_replaces_a_name(metrics: MetricsAspect) -> None:
    weaver = AspectWeaver()
    other = MetricsAspect()
    weaver.register_aspect("metrics", other)
    weaver.register_aspect("metrics", metrics)

    svc = Service()
    weaver.apply_aspect("metrics", svc.m)(1)

    assert list(metrics.get_metrics()) == ["Service.m"]
    assert other.get_metrics() == {}


def test_apply_to_a_non_callable_is_a_type_error(weaver: AspectWeaver) -> None:
    with pytest.raises(TypeError, match="not callable"):
        weaver.apply_aspect("metrics", 42)


def test_a_users_own_decorator_can_be_registered() -> None:
    calls: list[str] = []

    @aspectlib.Aspect(bind=True)
    def audit(cutpoint: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(cutpoint.__name__)
        return (yield)

    weaver = AspectWeaver()
    weaver.register_aspect("audit", audit)
    svc = Service()
    svc.m = weaver.apply_aspect("audit", svc.m)  # type: ignore[method-assign]

    assert svc.m(1) == 2
    assert calls == ["m"]
    assert weaver.get_applied_aspects(svc.m) == ["audit"]


def test_weaving_a_class_measures_methods_of_new_instances(
    weaver: AspectWeaver, metrics: MetricsAspect
) -> None:
    class Repo:
        def save(self, item: str) -> str:
            return item.upper()

    patched = weaver.apply_aspect("metrics", Repo)

    assert patched is Repo
    assert Repo().save("a") == "A"
    assert Repo().save("b") == "B"
    assert metrics.get_metrics()["Repo.save"]["count"] == 2
    assert weaver.get_applied_aspects(Repo) == ["metrics"]


def test_weaving_a_plain_function_returns_a_wrapper_and_leaves_the_module_alone(
    weaver: AspectWeaver, metrics: MetricsAspect
) -> None:
    module = sys.modules[__name__]
    original = module.double

    wrapped = weaver.apply_aspect("metrics", double)

    assert module.double is original
    assert wrapped is not original
    assert wrapped(4) == 8
    assert double(4) == 8  # the module's function is not measured
    assert metrics.get_metrics()["double"]["count"] == 1
    assert wrapped.__name__ == "double"
    assert wrapped.__doc__ == "Twice x."
    assert weaver.get_applied_aspects(double) == ["metrics"]
    assert weaver.get_applied_aspects(wrapped) == ["metrics"]


def test_stacking_on_a_plain_function(
    weaver: AspectWeaver,
    metrics: MetricsAspect,
    info_logs: pytest.LogCaptureFixture,
    clock: FakeClock,
) -> None:
    logged = weaver.apply_aspect("logging", double)
    both = weaver.apply_aspect("metrics", logged)

    assert both(2) == 4

    assert list(metrics.get_metrics()) == ["double"]
    assert aspect_lines(info_logs) == ["[1] ENTER double(2)", "[1] EXIT double in 0.0000s"]
    for target in (double, logged, both):
        assert weaver.get_applied_aspects(target) == ["logging", "metrics"]

    weaver.rollback(both)
    assert weaver.get_applied_aspects(double) == []


def test_rollback_restores_a_stacked_bound_method(
    weaver: AspectWeaver, metrics: MetricsAspect, info_logs: pytest.LogCaptureFixture
) -> None:
    svc = Service()
    original = svc.m
    first = weaver.apply_aspect("logging", svc.m)
    svc.m = first  # type: ignore[method-assign]
    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]

    weaver.rollback(original)

    assert "m" not in vars(svc)
    assert svc.m.__func__ is Service.m
    assert svc.m(1) == 2
    assert metrics.get_metrics() == {}
    assert aspect_lines(info_logs) == []
    for target in (original, first, svc.m):
        assert weaver.get_applied_aspects(target) == []


def test_rollback_through_the_patched_method(weaver: AspectWeaver, metrics: MetricsAspect) -> None:
    svc = Service()
    svc.m = weaver.apply_aspect("logging", svc.m)  # type: ignore[method-assign]
    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]

    weaver.rollback(svc.m)

    assert svc.m(1) == 2
    assert metrics.get_metrics() == {}
    assert weaver.get_applied_aspects(svc.m) == []


def test_rollback_then_weave_again(weaver: AspectWeaver, metrics: MetricsAspect) -> None:
    svc = Service()
    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]
    weaver.rollback(svc.m)

    svc.m = weaver.apply_aspect("metrics", svc.m)  # type: ignore[method-assign]
    svc.m(1)

    assert metrics.get_metrics()["Service.m"]["count"] == 1
    assert weaver.get_applied_aspects(svc.m) == ["metrics"]


def test_rollback_restores_a_class(
    weaver: AspectWeaver, metrics: MetricsAspect, info_logs: pytest.LogCaptureFixture
) -> None:
    class Repo:
        def save(self, item: str) -> str:
            return item.upper()

    original = Repo.__dict__["save"]
    weaver.apply_aspect("logging", Repo)
    weaver.apply_aspect("metrics", Repo)
    assert weaver.get_applied_aspects(Repo) == ["logging", "metrics"]
    assert Repo().save("a") == "A"
    metrics.reset()
    info_logs.clear()

    weaver.rollback(Repo)

    assert Repo.__dict__["save"] is original
    assert Repo().save("b") == "B"
    assert metrics.get_metrics() == {}
    assert aspect_lines(info_logs) == []
    assert weaver.get_applied_aspects(Repo) == []


def test_rollback_of_an_unwoven_target_does_nothing(weaver: AspectWeaver) -> None:
    svc = Service()

    weaver.rollback(svc.m)
    weaver.rollback(Service)

    assert svc.m(1) == 2


# -- aspectlib itself --------------------------------------------------------------------


def test_aspects_are_aspectlib_aspects() -> None:
    assert isinstance(LoggingAspect(), aspectlib.Aspect)
    assert isinstance(MetricsAspect(), aspectlib.Aspect)


def test_aspects_work_with_aspectlib_weave_on_a_class() -> None:
    metrics = MetricsAspect()

    class Repo:
        def save(self, item: str) -> str:
            return item.upper()

    with aspectlib.weave(Repo, metrics):
        assert Repo().save("a") == "A"
    assert Repo().save("b") == "B"  # rolled back on leaving the block

    assert metrics.get_metrics()["Repo.save"]["count"] == 1


def test_aspects_stack_in_one_aspectlib_weave(
    info_logs: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    metrics = MetricsAspect()
    svc = Service()

    rollback = aspectlib.weave(svc.m, [LoggingAspect(), metrics])
    assert svc.m(2) == 3
    rollback()

    assert list(metrics.get_metrics()) == ["Service.m"]
    assert aspect_lines(info_logs) == [
        "[1] ENTER Service.m(2)",
        "[1] EXIT Service.m in 0.0000s",  # the fake clock did not move
    ]
    assert "m" not in vars(svc)


def test_aspects_work_as_plain_decorators() -> None:
    metrics = MetricsAspect()

    @metrics
    def triple(x: int) -> int:
        return 3 * x

    assert triple(2) == 6
    assert list(metrics.get_metrics()) == ["triple"]


# -- stacked aspects share one aspectlib layer ---------------------------------------------


def between(fn: Any) -> Any:
    """A user's transparent decorator: woven between two of ours, it keeps them in two
    aspectlib layers (the way stacked aspects ran before they shared one)."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return call


class Lines:
    """A logger callable that keeps its lines, with the timings taken out."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.lines: list[str] = []
        self.fail_on = fail_on

    def __call__(self, line: str) -> None:
        self.lines.append(re.sub(r"\d+\.\d{4}s", "<t>", line))
        if self.fail_on is not None and self.fail_on in line:
            raise OSError(f"cannot write {self.fail_on}")


def woven_pair(svc: Service, method: str, *, shared: bool, logger: Any) -> MetricsAspect:
    """Logging then metrics on ``svc.<method>`` through a weaver: in one shared layer, or
    (shared=False) in two layers kept apart by a pass-through, as before sharing."""
    weaver = AspectWeaver()
    metrics = MetricsAspect()
    weaver.register_aspect("logging", LoggingAspect(logger))
    weaver.register_aspect("metrics", metrics)
    weaver.register_aspect("between", between)
    weaver.apply_aspect("logging", getattr(svc, method))
    if not shared:
        weaver.apply_aspect("between", getattr(svc, method))
    weaver.apply_aspect("metrics", getattr(svc, method))
    return metrics


def counts(metrics: MetricsAspect) -> dict[str, tuple[int, int]]:
    return {key: (s["count"], s["errors"]) for key, s in metrics.get_metrics().items()}


def test_stacked_aspects_share_one_aspectlib_layer(weaver: AspectWeaver) -> None:
    svc = Service()
    first = weaver.apply_aspect("logging", svc.m)
    second = weaver.apply_aspect("metrics", svc.m)

    base, chain = aspects_module._LAYERS[second.__func__]
    assert base is Service.m
    assert chain == (weaver.aspects["metrics"], weaver.aspects["logging"])  # outermost first
    # Unwrapping still goes through every aspect, as if each had its own layer.
    assert second.__func__.__wrapped__ is first.__func__
    assert first(1) == second(1) == 2


def test_a_third_aspect_gets_a_layer_of_its_own(collector: RecordingCollector) -> None:
    lines = Lines()
    metrics = MetricsAspect(collector)
    svc = Service()
    aspectlib.weave(svc.m, [LoggingAspect(lines), metrics, MetricsAspect()])

    assert svc.m(1) == 2

    assert counts(metrics) == {"Service.m": (1, 0)}
    assert [line.split(" ", 1)[1] for line in lines.lines] == [
        "ENTER Service.m(1)",
        "EXIT Service.m in <t>",
    ]


@pytest.mark.parametrize("shared", [True, False])
def test_shared_and_separate_layers_log_and_measure_alike_as_the_level_changes(
    shared: bool,
) -> None:
    mine = logging.getLogger(f"tests.aspects.level.{shared}")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    mine.addHandler(handler)
    mine.propagate = False
    mine.setLevel(logging.WARNING)
    svc = Service()
    metrics = woven_pair(svc, "m", shared=shared, logger=mine)

    try:
        assert svc.m(1) == 2  # below the level: nothing logged
        mine.setLevel(logging.INFO)  # after weaving: takes effect at once
        assert svc.m(2, y=5) == 7
        mine.setLevel(logging.WARNING)
        assert svc.m(3) == 4
        mine.setLevel(logging.DEBUG)
        assert svc.m(4) == 5
    finally:
        mine.removeHandler(handler)

    got = [re.sub(r"\d+\.\d{4}s", "<t>", r.getMessage()) for r in records]
    assert got == [
        "[2] ENTER Service.m(2, y=5)",
        "[2] EXIT Service.m in <t>",
        "[4] ENTER Service.m(4)",
        "[4] EXIT Service.m in <t>",
    ]
    assert counts(metrics) == {"Service.m": (4, 0)}


@pytest.mark.parametrize("shared", [True, False])
def test_shared_and_separate_layers_fail_alike(shared: bool) -> None:
    lines = Lines()
    svc = Service()
    metrics = woven_pair(svc, "fail", shared=shared, logger=lines)
    error = KeyError("gone")

    with pytest.raises(KeyError) as excinfo:
        svc.fail(error)

    assert excinfo.value is error
    assert lines.lines == [
        "[1] ENTER Service.fail(KeyError('gone'))",
        "[1] ERROR Service.fail after <t>: KeyError: 'gone'",
    ]
    assert counts(metrics) == {"Service.fail": (1, 1)}


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("fail_on", ["ENTER", "EXIT"])
def test_a_failing_inner_aspect_is_a_failure_to_the_outer_one(shared: bool, fail_on: str) -> None:
    lines = Lines(fail_on=fail_on)
    svc = Service()
    metrics = woven_pair(svc, "m", shared=shared, logger=lines)

    with pytest.raises(OSError, match=f"cannot write {fail_on}"):
        svc.m(1)

    assert counts(metrics) == {"Service.m": (1, 1)}


@pytest.mark.parametrize("shared", [True, False])
def test_shared_and_separate_layers_publish_the_same_error_event(shared: bool) -> None:
    bus = EventBus()
    errors: list[Any] = []
    bus.subscribe(EventType.ERROR, errors.append)
    weaver = AspectWeaver()
    weaver.register_aspect("metrics", MetricsAspect())
    weaver.register_aspect("logging", LoggingAspect(lambda line: None, event_bus=bus))
    weaver.register_aspect("between", between)
    svc = Service()
    weaver.apply_aspect("metrics", svc.fail)
    if not shared:
        weaver.apply_aspect("between", svc.fail)
    weaver.apply_aspect("logging", svc.fail)

    with pytest.raises(TimeoutError):
        svc.fail(TimeoutError("slow"))

    assert [(e.data["method"], e.data["error_type"], e.data["request_id"]) for e in errors] == [
        ("Service.fail", "TimeoutError", 1)
    ]


def test_a_generator_method_woven_with_both_aspects(
    weaver: AspectWeaver,
    metrics: MetricsAspect,
    info_logs: pytest.LogCaptureFixture,
    clock: FakeClock,
) -> None:
    class Source:
        def numbers(self, n: int) -> Iterator[int]:
            yield from range(n)

    source = Source()
    weaver.apply_aspect("logging", source.numbers)
    weaver.apply_aspect("metrics", source.numbers)

    assert list(source.numbers(3)) == [0, 1, 2]

    assert counts(metrics) == {"Source.numbers": (1, 0)}
    assert aspect_lines(info_logs) == [
        "[1] ENTER Source.numbers(3)",
        "[1] EXIT Source.numbers in 0.0000s",
    ]


def test_a_coroutine_method_woven_with_both_aspects(
    weaver: AspectWeaver,
    metrics: MetricsAspect,
    info_logs: pytest.LogCaptureFixture,
    clock: FakeClock,
) -> None:
    class Remote:
        async def fetch(self, key: str) -> str:
            await asyncio.sleep(0)
            if key == "missing":
                raise LookupError(key)
            return key.upper()

    remote = Remote()
    weaver.apply_aspect("logging", remote.fetch)
    weaver.apply_aspect("metrics", remote.fetch)

    assert asyncio.run(remote.fetch("a")) == "A"
    with pytest.raises(LookupError):
        asyncio.run(remote.fetch("missing"))

    assert counts(metrics) == {"Remote.fetch": (2, 1)}
    assert aspect_lines(info_logs) == [
        "[1] ENTER Remote.fetch('a')",
        "[1] EXIT Remote.fetch in 0.0000s",
        "[2] ENTER Remote.fetch('missing')",
        "[2] ERROR Remote.fetch after 0.0000s: LookupError: missing",
    ]


def test_a_copy_of_a_wrapper_by_functools_wraps_is_not_shared() -> None:
    calls: list[int] = []
    lines = Lines()
    logged = LoggingAspect(lines)(double)

    @functools.wraps(logged)
    def audited(x: int) -> int:
        calls.append(x)
        return logged(x)  # type: ignore[no-any-return]

    metrics = MetricsAspect()
    measured = metrics(audited)

    assert measured(3) == 6
    assert calls == [3]  # the user's decorator still runs
    assert len(lines.lines) == 2
    assert counts(metrics) == {"double": (1, 0)}


# -- metrics counted in batches ------------------------------------------------------------


def test_metrics_counted_in_batches_equal_metrics_counted_per_call(clock: FakeClock) -> None:
    metrics = MetricsAspect(reservoir=50)
    timed = Timed(clock)
    aspectlib.weave(timed.work, metrics)
    durations = [float((i * 37) % 101 + 1) / 8 for i in range(3 * aspects_module._FOLD_AT + 7)]

    for i, seconds in enumerate(durations):
        if i % 97 == 3:
            with pytest.raises(RuntimeError):
                timed.work(seconds, fail=True)
        else:
            timed.work(seconds)

    total = 0.0
    for seconds in durations:
        total += seconds
    recent = sorted(durations[-50:])
    errors = sum(1 for i in range(len(durations)) if i % 97 == 3)
    assert metrics.get_metrics()["Timed.work"] == {
        "count": len(durations),
        "total_time": total,
        "min_time": min(durations),
        "max_time": max(durations),
        "errors": errors,
        "avg_time": total / len(durations),
        "error_rate": errors / len(durations),
        "p50": recent[24],
        "p95": recent[47],
        "p99": recent[49],
    }


def test_reset_forgets_the_calls_not_yet_counted(
    weaver: AspectWeaver, metrics: MetricsAspect
) -> None:
    svc = Service()
    weaver.apply_aspect("metrics", svc.m)
    for i in range(5):
        svc.m(i)

    metrics.reset()
    svc.m(1)

    assert counts(metrics) == {"Service.m": (1, 0)}
