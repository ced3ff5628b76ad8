"""Prometheus metrics of a bus, its effects, its store, followers and breakers (the
``prometheus`` extra: ``pip install 'atlas_eda[prometheus]'``; without it this module
cannot be imported, and nothing else in atlas_eda imports it).

:class:`PrometheusMetrics` is a ``prometheus_client`` collector. What the bus already
keeps is read, not counted twice: it watches the bus (``EventBus.watch``), which hands it
each root event's trace once everything the event caused is handled, and adds up events
per type, deliveries, failures and durations per handler, and effects per type. Effect
durations and store-write durations are timed by aspects (aspectlib, through
:class:`~atlas_eda.aspects.AspectWeaver`) woven onto the effect handler's and the store's
own methods. The store's head, the followers' positions, backlogs and lags, dead letters
and breaker states are read at scrape time. A :class:`~atlas_eda.aspects.MetricsAspect`
given this object as its ``metrics_collector`` feeds the same registry.
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate
from typing import Any

from .aspects import AroundAspect, AspectWeaver
from .bus import EventBus
from .effects import Effect, EffectHandler, EffectObserver, effect_observer
from .errors import AtlasEdaError
from .events import type_name
from .follower import StoreFollower
from .health import breakers_of, durable_followers, follower_state
from .redaction import redact_url
from .resilience import Breaker
from .store import TemporalStore
from .store.dead_letters import DeadLetterTable
from .trace import EventTrace

try:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
    from prometheus_client.utils import floatToGoString
except ModuleNotFoundError as missing:  # pragma: no cover - the extra is installed in tests
    raise ModuleNotFoundError(
        "atlas_eda.prometheus needs prometheus_client: install the extra with "
        "pip install 'atlas_eda[prometheus]'.",
        name=missing.name,
    ) from missing

__all__ = ["DEFAULT_BUCKETS", "MetricsServer", "MetricsServerError", "PrometheusMetrics"]

logger = logging.getLogger(__name__)

DEFAULT_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Histogram bucket bounds in seconds: 100 µs to 10 s (handlers and effects are usually
fast; a store commit takes about a millisecond)."""

STORE_WRITES = ("create_document", "update_document", "delete_document")
"""The store's write commands whose durations are measured."""

EFFECT_CALLS = ("handle", "perform_all")
"""The effect handler's methods through which effects are performed (``EffectMonad.run``
and the store's outbox call ``perform_all``)."""


class MetricsServerError(AtlasEdaError):
    """The metrics endpoint could not be served at the address asked for (a port in use,
    an address this machine does not have)."""


class _Histograms:
    """Bucket counts and sums of one histogram family, by label value (not thread-safe:
    :class:`PrometheusMetrics` holds its lock around every use)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.series: dict[str, tuple[list[int], list[float]]] = {}

    def observe(self, label: str, seconds: float) -> None:
        series = self.series.get(label)
        if series is None:
            series = self.series[label] = ([0] * (len(self.bounds) + 1), [0.0])
        # The first bound at or over the value: Prometheus buckets count values <= "le".
        series[0][bisect_left(self.bounds, seconds)] += 1
        series[1][0] += seconds

    def family(self, name: str, documentation: str, label: str) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=[label])
        for value, (counts, total) in sorted(self.series.items()):
            cumulative = list(accumulate(counts))
            buckets = [
                (floatToGoString(bound), float(count))  # type: ignore[no-untyped-call]
                for bound, count in zip(self.bounds, cumulative, strict=False)
            ]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric([value], buckets, total[0])
        return family


def _counter(name: str, documentation: str, labels: list[str], counts: dict[Any, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in sorted(counts.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], count)
    return family


def _effect_name(effect: object) -> str:
    return type_name(effect.type) if isinstance(effect, Effect) else type(effect).__qualname__


class _StoreWriteTiming(AroundAspect):
    """Times each store write command into :class:`PrometheusMetrics`."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def around(self, name: str, call: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return call()
        finally:
            self.metrics.observe_store_write(name.rpartition(".")[2], time.perf_counter() - start)


class _EffectTiming(AroundAspect):
    """Times each effect performed through the woven handler method: an effect observer
    (:data:`atlas_eda.effects.effect_observer`, chained to the one already set) is told as
    each effect ends, so each effect lasts from the previous one's end (or the call's
    start) to its own."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def around(self, name: str, call: Callable[[], Any]) -> Any:
        earlier = effect_observer.get()
        if getattr(earlier, "times_effects", None) is self.metrics:
            return call()  # an outer call of the same handler is timing these effects
        observer = _EffectClock(self.metrics, earlier)
        token = effect_observer.set(observer)
        try:
            return call()
        finally:
            effect_observer.reset(token)


class _EffectClock:
    """The effect observer of one timed call (see :class:`_EffectTiming`)."""

    def __init__(self, metrics: PrometheusMetrics, earlier: EffectObserver | None) -> None:
        self.times_effects = metrics
        self.earlier = earlier
        self.since = time.perf_counter()

    def __call__(self, effect: object, result: Any, error: BaseException | None) -> None:
        now = time.perf_counter()
        self.times_effects.observe_effect(_effect_name(effect), now - self.since)
        self.since = now
        if self.earlier is not None:
            self.earlier(effect, result, error)


class PrometheusMetrics(Collector):
    """The metrics of the parts given, as a ``prometheus_client`` collector registered in
    ``registry`` (a new ``CollectorRegistry`` of its own by default: no global state).

    - ``bus``: events published per type, deliveries and failures per handler, delivery
      durations (histogram), effects per type and outcome, and the bus's dead letters;
      read from each root event's trace (``bus.watch``; the bus must keep traces).
    - ``effect_handler``: effect durations per effect type (histogram), timed by an aspect
      woven onto its ``handle`` and ``perform_all``; its breakers' states.
    - ``store``: store-write durations per command (histogram), timed by an aspect woven
      onto its write commands; its head position, read at scrape time.
    - ``followers``: durable follower names or :class:`StoreFollower` objects of
      ``store``'s log: position, backlog and lag, and durable dead letters, read at scrape
      time; with ``all_followers=True`` every name recorded in the store's tracking table
      too.
    - ``breakers``: state (a gauge per state, 1 for the current one) and failures.

    :meth:`record` makes it a ``MetricsAspect`` collector. :meth:`close` undoes the
    weaving, stops watching and unregisters."""

    def __init__(
        self,
        *,
        bus: EventBus | None = None,
        store: TemporalStore | None = None,
        effect_handler: EffectHandler | None = None,
        followers: Iterable[str | StoreFollower] = (),
        all_followers: bool = False,
        breakers: Iterable[Breaker] = (),
        registry: CollectorRegistry | None = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        namespace: str = "atlas_eda",
    ) -> None:
        self.bus = bus
        self.store = store
        self.effect_handler = effect_handler
        self.followers = list(followers)
        self.all_followers = all_followers
        self.breakers = list(breakers)
        if (self.followers or all_followers) and store is None:
            raise ValueError("Follower metrics read the store's log: pass store= too.")
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[0] <= 0:
            raise ValueError(f"buckets must be positive seconds, got {list(buckets)!r}.")
        self.namespace = namespace
        self.registry = CollectorRegistry() if registry is None else registry
        self._lock = threading.Lock()
        self._events: dict[str, int] = {}
        self._deliveries: dict[str, int] = {}
        self._failures: dict[str, int] = {}
        self._effects: dict[tuple[str, str], int] = {}
        self._call_failures: dict[str, int] = {}
        self._delivery_seconds = _Histograms(bounds)
        self._effect_seconds = _Histograms(bounds)
        self._store_seconds = _Histograms(bounds)
        self._call_seconds = _Histograms(bounds)
        self._undo: list[Callable[[], None]] = []
        self._weaver = AspectWeaver()
        if bus is not None:
            self._undo.append(bus.watch(self._count_trace))
        if store is not None:
            self._weave("store writes", _StoreWriteTiming(self), store, STORE_WRITES)
        if effect_handler is not None:
            self._weave("effects", _EffectTiming(self), effect_handler, EFFECT_CALLS)
        self.registry.register(self)
        self._undo.append(lambda: self.registry.unregister(self))

    def _weave(
        self, name: str, aspect: AroundAspect, target: object, methods: Sequence[str]
    ) -> None:
        self._weaver.register_aspect(name, aspect)
        for method in methods:
            patched = self._weaver.apply_aspect(name, getattr(target, method))
            self._undo.append(functools.partial(self._weaver.rollback, patched))

    # -- what is counted as it happens ---------------------------------------------------

    def _count_trace(self, trace: EventTrace) -> None:
        """Add up one root event's trace and every descendant's (a bus watcher)."""
        with self._lock:
            for node in trace.walk():
                event_type = type_name(node.event.type)
                self._events[event_type] = self._events.get(event_type, 0) + 1
                for delivery in node.deliveries:
                    handler = delivery.handler
                    self._deliveries[handler] = self._deliveries.get(handler, 0) + 1
                    if delivery.error is not None:
                        self._failures[handler] = self._failures.get(handler, 0) + 1
                    self._delivery_seconds.observe(handler, delivery.duration)
                    for outcome in delivery.effects:
                        self._count_effect(outcome.effect, outcome.ok)
                for outcome in node.effects:
                    self._count_effect(outcome.effect, outcome.ok)

    def _count_effect(self, effect: object, ok: bool) -> None:
        key = (_effect_name(effect), "ok" if ok else "error")
        self._effects[key] = self._effects.get(key, 0) + 1

    def observe_effect(self, effect_type: str, seconds: float) -> None:
        """Count one effect of ``effect_type`` (``"EffectType.NOTIFICATION"``) that took
        ``seconds`` to perform."""
        with self._lock:
            self._effect_seconds.observe(effect_type, seconds)

    def observe_store_write(self, command: str, seconds: float) -> None:
        """Count one store write command (``"update_document"``) that took ``seconds``."""
        with self._lock:
            self._store_seconds.observe(command, seconds)

    def record(self, key: str, seconds: float, *, success: bool = True) -> None:
        """One call of ``key`` (``"Class.method"``) that took ``seconds``: what a
        :class:`~atlas_eda.aspects.MetricsAspect` given this object as its
        ``metrics_collector`` reports for each call it measures."""
        with self._lock:
            self._call_seconds.observe(key, seconds)
            if not success:
                self._call_failures[key] = self._call_failures.get(key, 0) + 1

    # -- the collector ---------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        """Nothing: the families depend on what has happened, so the registry is not told
        them in advance (and does not collect at registration)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every family, read now (prometheus_client calls this at each scrape)."""
        ns = self.namespace
        with self._lock:
            families: list[Metric] = [
                _counter(
                    f"{ns}_events_published", "Events published, by type.", ["type"], self._events
                ),
                _counter(
                    f"{ns}_deliveries",
                    "Deliveries of events to handlers, by handler.",
                    ["handler"],
                    self._deliveries,
                ),
                _counter(
                    f"{ns}_delivery_failures",
                    "Deliveries whose handler raised.",
                    ["handler"],
                    self._failures,
                ),
                self._delivery_seconds.family(
                    f"{ns}_delivery_duration_seconds", "How long each delivery took.", "handler"
                ),
                _counter(
                    f"{ns}_effects",
                    "Effects performed during deliveries, by type and outcome.",
                    ["type", "outcome"],
                    self._effects,
                ),
                self._effect_seconds.family(
                    f"{ns}_effect_duration_seconds",
                    "How long each effect took to perform.",
                    "type",
                ),
                self._store_seconds.family(
                    f"{ns}_store_write_duration_seconds",
                    "How long each store write command took (commit included).",
                    "command",
                ),
                self._call_seconds.family(
                    f"{ns}_call_duration_seconds", "Calls measured by a MetricsAspect.", "call"
                ),
                _counter(
                    f"{ns}_call_failures",
                    "Calls measured by a MetricsAspect that raised.",
                    ["call"],
                    self._call_failures,
                ),
            ]
        yield from families
        yield from self._read_parts()

    def _read_parts(self) -> Iterator[Metric]:
        """What is read from the parts at scrape time: dead letters, the store, followers,
        breakers. A store that cannot be read is ``store_up 0``, not a failed scrape."""
        ns = self.namespace
        if self.bus is not None:
            yield GaugeMetricFamily(
                f"{ns}_bus_dead_letters",
                "Dead letters the bus keeps.",
                value=len(self.bus.dead_letters),
            )
        if self.store is not None:
            try:
                yield from self._read_store()
            except Exception:
                logger.warning(
                    "metrics: cannot read the store %s", redact_url(self.store.url), exc_info=True
                )
                yield GaugeMetricFamily(f"{ns}_store_up", "Whether the store could be read.", 0)
        yield from self._read_breakers()

    def _read_store(self) -> Iterator[Metric]:
        ns = self.namespace
        assert self.store is not None
        head = self.store.last_position()
        followers: list[str | StoreFollower] = list(self.followers)
        if self.all_followers:
            named = {f if isinstance(f, str) else f.name for f in followers}
            followers.extend(n for n in durable_followers(self.store) if n not in named)
        position = GaugeMetricFamily(
            f"{ns}_follower_position",
            "The last log position a follower delivered.",
            labels=["follower"],
        )
        backlog = GaugeMetricFamily(
            f"{ns}_follower_backlog",
            "Log positions past a follower's position.",
            labels=["follower"],
        )
        lag = GaugeMetricFamily(
            f"{ns}_follower_lag_seconds",
            "Seconds the oldest event a follower has not delivered has waited (0: caught up).",
            labels=["follower"],
        )
        for follower in followers:
            state = follower_state(self.store, follower)
            if state is None:
                continue
            position.add_metric([state.name], state.position)
            backlog.add_metric([state.name], state.backlog)
            lag.add_metric([state.name], state.lag)
        letters = GaugeMetricFamily(
            f"{ns}_follower_dead_letters",
            "Durable dead letters kept in the store's database, by follower.",
            labels=["follower"],
        )
        counts: dict[str, int] = {}
        if followers:
            for letter in DeadLetterTable(self.store.tracking_recorder()).letters():
                counts[letter.follower] = counts.get(letter.follower, 0) + 1
        for name, count in sorted(counts.items()):
            letters.add_metric([name], count)
        yield GaugeMetricFamily(f"{ns}_store_up", "Whether the store could be read.", 1)
        yield GaugeMetricFamily(
            f"{ns}_store_head_position",
            "The position of the newest event in the store's log.",
            value=head,
        )
        yield from (position, backlog, lag, letters)

    def _read_breakers(self) -> Iterator[Metric]:
        ns = self.namespace
        breakers = list(self.breakers)
        if self.effect_handler is not None:
            breakers.extend(b for b in breakers_of(self.effect_handler) if b not in breakers)
        if not breakers:
            return
        state = GaugeMetricFamily(
            f"{ns}_breaker_state",
            "1 for a breaker's current state, 0 for the others.",
            labels=["breaker", "state"],
        )
        failures = GaugeMetricFamily(
            f"{ns}_breaker_failures",
            "Failures in a row a breaker has counted.",
            labels=["breaker"],
        )
        for number, breaker in enumerate(breakers, 1):
            name = breaker.name or f"breaker {number}"
            current = breaker.state
            for each in ("closed", "open", "half-open"):
                state.add_metric([name, each], 1.0 if each == current else 0.0)
            failures.add_metric([name], breaker.failures)
        yield state
        yield failures

    # -- serving and closing -------------------------------------------------------------

    def serve(self, port: int = 0, address: str = "127.0.0.1") -> MetricsServer:
        """Serve this registry's exposition at ``http://address:port/metrics`` (port 0:
        any free port; see :attr:`MetricsServer.port`) on prometheus_client's server
        thread, until :meth:`MetricsServer.close`. A port in use or an address this
        machine lacks is a :class:`MetricsServerError`."""
        return MetricsServer(self.registry, port, address)

    def close(self) -> None:
        """Stop watching the bus, undo the timing aspects and leave the registry; calling
        it again does nothing."""
        undo, self._undo = self._undo, []
        for step in reversed(undo):
            step()

    def __enter__(self) -> PrometheusMetrics:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        parts = [
            name
            for name, part in (
                ("bus", self.bus),
                ("store", self.store),
                ("effect_handler", self.effect_handler),
            )
            if part is not None
        ]
        return f"PrometheusMetrics({', '.join(parts) or 'nothing'}, namespace={self.namespace!r})"


class MetricsServer:
    """A running metrics endpoint (see :meth:`PrometheusMetrics.serve`): ``address`` and
    ``port`` it listens on, ``url`` of its exposition; :meth:`close` stops it."""

    def __init__(self, registry: CollectorRegistry, port: int, address: str) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:  # noqa: PLR2004
            raise MetricsServerError(f"port must be a whole number from 0 to 65535, got {port!r}.")
        try:
            self._server, self._thread = start_http_server(port, address, registry)
        except socket.gaierror as exc:
            raise MetricsServerError(
                f"cannot serve metrics on {address}:{port}: {address!r} is not an address of "
                f"this machine ({exc.strerror}); use 127.0.0.1, or an address it has."
            ) from exc
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                reason = "the port is already in use; choose another port (or 0 for any free one)"
            else:
                reason = f"{exc.strerror or exc}; use 127.0.0.1, or an address this machine has"
            raise MetricsServerError(
                f"cannot serve metrics on {address}:{port}: {reason}."
            ) from exc
        self.address = address
        self.port = int(self._server.server_port)
        self._closed = False

    @property
    def url(self) -> str:
        """The exposition's URL."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving"
        return f"MetricsServer({self.url}, {state})"
