"""Runtime: the parts of an atlas_eda application wired together from arguments or a TOML
file, and closed together, in order, when the application stops."""

from __future__ import annotations

import logging
import math
import os
import pkgutil
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from .aspects import AspectWeaver, LoggingAspect, MetricsAspect
from .bus import CLOSE_TIMEOUT, EventBus, check_bus
from .dispatch import POLICIES, FailurePolicy
from .effects import Effect, EffectHandler, EffectType
from .errors import RuntimeConfigError
from .follower import StoreFollower
from .projections import Projection
from .sagas import Saga, SagaManager
from .service import DocumentService
from .store import TemporalStore
from .testing.cassette import Recorder
from .views import short_repr

__all__ = ["ASPECTS", "SERVICE_METHODS", "Closeable", "FollowerConfig", "Runtime"]

logger = logging.getLogger(__name__)

ASPECTS: Mapping[str, Callable[[EventBus], LoggingAspect | MetricsAspect]] = {
    "logging": lambda bus: LoggingAspect(event_bus=bus),
    "metrics": lambda bus: MetricsAspect(),
}
"""The aspects a runtime can weave onto its service, by the name ``aspects=`` gives."""

SERVICE_METHODS = ("create_document", "update_document", "delete_document", "get_document")
"""The :class:`DocumentService` methods a runtime weaves its aspects onto."""

_CONFIG_KEYS = (
    "store_url",
    "history_limit",
    "traces",
    "failure_policy",
    "snapshot_interval",
    "aspects",
    "effects",
    "followers",
    "sagas",
    "shutdown_timeout",
    "projections",  # last: its factories open read models, once every other key is good
)
_FOLLOWER_KEYS = ("name", "url", "from_start", "commit_every")


class Closeable(Protocol):
    """A part a runtime closes for its owner (a metrics server, a health registry...)."""

    def close(self) -> None:
        """Release what the part holds."""


@dataclass(frozen=True)
class FollowerConfig:
    """A :class:`StoreFollower` a runtime runs on its bus: its durable ``name``, the
    store it follows (``url``; ``None``: the runtime's own store), whether a follower
    with no recorded position starts at the first event, and how often it records."""

    name: str
    url: str | None = None
    from_start: bool = False
    commit_every: int = 1


class Runtime:
    """One application's parts, wired: an :class:`EventBus` (``bus``), an
    :class:`EffectHandler` (``effect_handler``) performing ``effects`` (effect type →
    performer; every :class:`EffectType` not given is performed by logging it), a
    :class:`TemporalStore` at ``store_url`` publishing on the bus (``store``), a
    :class:`DocumentService` (``service``) with the named ``aspects`` woven onto its
    methods (``weaver``, ``metrics``), the ``followers`` (``followers[name]``) tailing a
    store onto the bus, the ``projections`` kept up to date after each commit, the
    ``sagas`` registered on a :class:`SagaManager` (``sagas``), and ``parts`` of the
    caller's to close with it. :meth:`from_toml` reads the same from a file. ``bus``: a
    bus of the caller's to wire (replay passes one), instead of a new one built with
    ``history_limit``, ``traces`` and ``failure_policy``; the runtime closes it too.

    A context manager: leaving the block calls :meth:`close`. The projections and parts
    given are the runtime's to close. If building a part fails, everything built or
    given is closed and the error raised.
    """

    def __init__(
        self,
        store_url: str | None = None,
        *,
        history_limit: int = 1000,
        traces: bool = True,
        failure_policy: FailurePolicy = "isolate",
        snapshot_interval: int | None = 100,
        aspects: Iterable[str] = (),
        effects: Mapping[Enum, Callable[[Effect], Any]] | None = None,
        followers: Iterable[FollowerConfig] = (),
        projections: Iterable[Projection] = (),
        sagas: Iterable[type[Saga]] = (),
        parts: Iterable[Closeable] = (),
        shutdown_timeout: float = CLOSE_TIMEOUT,
        bus: EventBus | None = None,
    ) -> None:
        aspect_names = _aspect_names(aspects)
        self.shutdown_timeout = _timeout(shutdown_timeout)
        self.bus = (
            EventBus(history_limit, traces=traces, failure_policy=failure_policy)
            if bus is None
            else check_bus("bus", bus)
        )
        self.followers: dict[str, StoreFollower] = {}
        # Given to the runtime: it closes them when it closes, or fails to build.
        self.projections: list[Projection] = list(projections)
        self.parts: list[Closeable] = list(parts)
        self._recorders: list[Recorder] = []
        self._closed = False
        self.store = TemporalStore(self.bus, url=store_url, snapshot_interval=snapshot_interval)
        try:
            self.effect_handler = EffectHandler(temporal_store=self.store, event_bus=self.bus)
            self.bus.effect_handler = self.effect_handler
            performers: dict[Enum, Callable[[Effect], Any]] = dict(effects or {})
            for member in EffectType:
                performers.setdefault(member, _log_effect)
            for effect_type, performer in performers.items():
                self.effect_handler.register_handler(effect_type, performer)
            self.service = DocumentService(self.bus, self.store, self.effect_handler)
            self.weaver = AspectWeaver()
            self.metrics: MetricsAspect | None = None
            self._weave(aspect_names)
            self.sagas = SagaManager(self.bus, self.store)
            for saga in sagas:
                self.sagas.register(saga)
            for projection in self.projections:
                projection.catch_up(self.store)
                self.store.project(projection)
            for config in followers:
                self._follow(config)
        except BaseException:
            self._release()
            raise

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **overrides: Any) -> Runtime:
        """The runtime a TOML file describes; ``overrides`` (the constructor's keyword
        arguments) win over the file. Top-level keys: ``store_url``, ``history_limit``,
        ``traces``, ``failure_policy``, ``snapshot_interval``, ``shutdown_timeout``,
        ``aspects`` (names of :data:`ASPECTS`), ``sagas`` (``"module:Class"`` each),
        ``projections`` (``"module:factory"`` each, called without arguments),
        ``[effects]`` (``EFFECT_TYPE = "module:function"``) and ``[[followers]]``
        tables (``name``, ``url``, ``from_start``, ``commit_every``). An unreadable file,
        one that is not TOML, an unknown key or a value of the wrong kind raises
        :class:`RuntimeConfigError` naming the key and the file, nothing opened."""
        shown = str(path)
        try:
            with Path(path).open("rb") as file:
                table = tomllib.load(file)
        except OSError as exc:
            raise RuntimeConfigError(
                f"{shown}: cannot read the runtime's configuration: {exc.strerror or exc}."
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise RuntimeConfigError(f"{shown}: not valid TOML: {exc}.") from None
        arguments = _arguments(table, shown)
        made: list[Projection] = arguments.get("projections", [])
        arguments.update(overrides)
        try:
            return cls(**arguments)
        except BaseException:
            for projection in made:  # opened for a runtime that failed to build
                projection.close()  # (closing twice does nothing)
            raise

    # -- running -----------------------------------------------------------------------

    def poll(self) -> int:
        """Deliver, on the bus, what each follower finds committed past its position;
        returns how many events were delivered (the application drives its followers:
        no thread of the runtime's own does)."""
        return sum(follower.poll() for follower in self.followers.values())

    def record(self, path: str | os.PathLike[str], **options: Any) -> Recorder:
        """Record the bus (and the store's changes) to the cassette at ``path``
        (:class:`~atlas_eda.testing.Recorder`'s ``options``); the recorder is flushed
        and closed by :meth:`close`."""
        recorder = Recorder(self.bus, path, store=self.store, **options)
        self._recorders.append(recorder)
        return recorder

    # -- lifetime ----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self, timeout: float | None = None) -> None:
        """Stop, in order: the bus stops taking new publishes and waits up to
        ``timeout`` seconds (default :attr:`shutdown_timeout`) for the deliveries under
        way; the followers record their positions; the recorders flush and close; the
        caller's parts close (last given, first closed); the projections, followers and
        the store release their databases. Each step is logged on the
        ``atlas_eda.runtime`` logger. A step that fails does not stop the later ones;
        its error is raised once all have run (an ``ExceptionGroup`` for several).
        Closing again does nothing."""
        if self._closed:
            return
        wait = self.shutdown_timeout if timeout is None else _timeout(timeout)
        self._closed = True
        logger.info("runtime closing: stopping new publishes, waiting up to %gs", wait)
        errors: list[Exception] = []
        _step(errors, "closing the bus", lambda: self.bus.close(wait))
        for name, follower in self.followers.items():
            _step(errors, f"recording follower {name!r}'s position", follower.commit)
            logger.info("follower %r recorded its position %d", name, follower.position)
        for recorder in self._recorders:
            _step(errors, f"closing the recorder of {recorder.path}", recorder.close)
        self._release(errors)
        logger.info("runtime closed")
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup(f"{len(errors)} step(s) of Runtime.close failed", errors)

    def _release(self, errors: list[Exception] | None = None) -> None:
        """Close the caller's parts, the projections, the followers and the store."""
        kept: list[Exception] = [] if errors is None else errors
        for part in reversed(self.parts):
            _step(kept, f"closing {short_repr(part)}", part.close)
        for projection in self.projections:
            _step(kept, f"closing projection {projection.name}", projection.close)
        for follower in self.followers.values():
            _step(kept, f"closing follower {follower.name!r}", follower.close)
        _step(kept, f"closing {self.store!r}", self.store.close)
        self._closed = True
        if errors is None and kept:
            for error in kept:  # building failed: that error is the one raised
                logger.error("while closing a runtime that failed to build: %s", error)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"Runtime({self.store!r}, followers={list(self.followers)}, "
            f"projections={len(self.projections)}, {state})"
        )

    # -- building ----------------------------------------------------------------------

    def _weave(self, names: tuple[str, ...]) -> None:
        for name in names:
            aspect = ASPECTS[name](self.bus)
            self.weaver.register_aspect(name, aspect)
            if isinstance(aspect, MetricsAspect):
                self.metrics = aspect
        for method in SERVICE_METHODS:
            target = getattr(self.service, method)
            for name in names:
                target = self.weaver.apply_aspect(name, target)
            setattr(self.service, method, target)

    def _follow(self, config: FollowerConfig) -> None:
        if not isinstance(config, FollowerConfig):
            raise RuntimeConfigError(
                f"followers takes FollowerConfig(name, url=...) values, got {short_repr(config)}."
            )
        if config.name in self.followers:
            raise RuntimeConfigError(f"two followers are named {config.name!r}; name each once.")
        url = config.url if config.url is not None else self.store.url
        self.followers[config.name] = StoreFollower(
            url,
            self.bus,
            config.name,
            from_start=config.from_start,
            commit_every=config.commit_every,
        )


def _log_effect(effect: Effect) -> None:
    """The performer of an effect type the runtime was given none for: log it."""
    logger.info("effect %s: %s", effect.type, effect.description or short_repr(effect.payload))


def _step(errors: list[Exception], what: str, action: Callable[[], object]) -> None:
    """Run one step of closing; its failure is logged and kept in ``errors``."""
    try:
        action()
    except Exception as exc:
        logger.error("runtime close: %s failed: %s: %s", what, type(exc).__name__, exc)
        errors.append(exc)


def _timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise RuntimeConfigError(
            f"shutdown_timeout must be a non-negative number of seconds, got {short_repr(value)}."
        )
    return float(value)


def _aspect_names(aspects: Iterable[str]) -> tuple[str, ...]:
    if isinstance(aspects, str):
        aspects = (aspects,)
    names = tuple(aspects)
    unknown = [name for name in names if name not in ASPECTS]
    if unknown:
        raise RuntimeConfigError(
            f"aspects: unknown aspect {short_repr(unknown[0])}; the runtime weaves "
            f"{', '.join(map(repr, ASPECTS))}."
        )
    return names


# -- the TOML file ---------------------------------------------------------------------


def _arguments(table: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The constructor's keyword arguments a TOML file's ``table`` gives, each checked."""
    _known(table, _CONFIG_KEYS, path, "")
    arguments: dict[str, Any] = {}
    checks: dict[str, Callable[[str, Any], Any]] = {
        "store_url": lambda key, value: _of(value, str, key, path, "a store URL string"),
        "history_limit": lambda key, value: _count(value, key, path),
        "snapshot_interval": lambda key, value: _count(value, key, path),
        "traces": lambda key, value: _of(value, bool, key, path, "true or false"),
        "failure_policy": lambda key, value: _policy(value, key, path),
        "shutdown_timeout": lambda key, value: _seconds(value, key, path),
        "aspects": lambda key, value: _names(value, key, path, tuple(ASPECTS)),
        "effects": lambda key, value: _effects(value, key, path),
        "sagas": lambda key, value: [
            _resolved(name, f"{key}[{n}]", path)
            for n, name in enumerate(_names(value, key, path, None))
        ],
        "projections": lambda key, value: [
            _made(name, f"{key}[{n}]", path)
            for n, name in enumerate(_names(value, key, path, None))
        ],
        "followers": lambda key, value: _followers(value, key, path),
    }
    for key in _CONFIG_KEYS:
        if key in table:
            arguments[key] = checks[key](key, table[key])
    return arguments


def _known(table: Mapping[str, Any], keys: tuple[str, ...], path: str, where: str) -> None:
    for key in table:
        if key not in keys:
            raise RuntimeConfigError(
                f"{path}: unknown key {where}{key!r}; the known keys are {', '.join(keys)}."
            )


def _wrong(key: str, path: str, wanted: str, value: object) -> RuntimeConfigError:
    return RuntimeConfigError(f"{path}: {key} must be {wanted}, got {short_repr(value)}.")


def _of(value: object, kind: type, key: str, path: str, wanted: str) -> Any:
    if not isinstance(value, kind):
        raise _wrong(key, path, wanted, value)
    return value


def _count(value: object, key: str, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _wrong(key, path, "a whole number, 0 or more", value)
    return value


def _seconds(value: object, key: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise _wrong(key, path, "a number of seconds, 0 or more", value)
    return float(value)


def _policy(value: object, key: str, path: str) -> FailurePolicy:
    for policy in POLICIES:
        if value == policy:
            return policy
    raise _wrong(key, path, f"one of {', '.join(map(repr, POLICIES))}", value)


def _names(value: object, key: str, path: str, allowed: tuple[str, ...] | None) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _wrong(key, path, "a list of strings", value)
    for item in value:
        if allowed is not None and item not in allowed:
            raise _wrong(key, path, f"a list of {', '.join(map(repr, allowed))}", item)
    return value


def _resolved(name: str, key: str, path: str) -> Any:
    """What ``"module:name"`` names (``pkgutil.resolve_name``)."""
    if ":" not in name:
        raise _wrong(key, path, '"module:name"', name)
    try:
        return pkgutil.resolve_name(name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise RuntimeConfigError(
            f"{path}: {key} names {name!r}, which cannot be loaded: {type(exc).__name__}: {exc}."
        ) from None


def _made(name: str, key: str, path: str) -> Projection:
    factory = _resolved(name, key, path)
    if not callable(factory):
        raise _wrong(key, path, "a function returning a Projection", name)
    made = factory()
    if not isinstance(made, Projection):
        factory_name = name.partition(":")[2]
        raise RuntimeConfigError(
            f"{path}: {key}: {factory_name}() returned {type(made).__name__}, not an "
            f"atlas_eda.projections.Projection."
        )
    return made


def _effects(value: object, key: str, path: str) -> dict[Enum, Callable[[Effect], Any]]:
    if not isinstance(value, dict):
        raise _wrong(key, path, 'a table of EFFECT_TYPE = "module:function"', value)
    performers: dict[Enum, Callable[[Effect], Any]] = {}
    for type_key, name in value.items():
        where = f"{key}.{type_key}"
        if type_key not in EffectType.__members__:
            raise RuntimeConfigError(
                f"{path}: unknown key {where!r}; the effect types are "
                f"{', '.join(EffectType.__members__)}."
            )
        performer = _resolved(_of(name, str, where, path, '"module:function"'), where, path)
        if not callable(performer):
            raise _wrong(where, path, "a function", name)
        performers[EffectType[type_key]] = performer
    return performers


def _followers(value: object, key: str, path: str) -> list[FollowerConfig]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _wrong(key, path, "an array of tables ([[followers]])", value)
    configs = []
    for n, item in enumerate(value):
        where = f"{key}[{n}]."
        _known(item, _FOLLOWER_KEYS, path, where)
        if "name" not in item:
            raise RuntimeConfigError(f"{path}: {key}[{n}] needs a name.")
        configs.append(
            FollowerConfig(
                name=_of(item["name"], str, f"{where}name", path, "a string"),
                url=_of(item.get("url", ""), str, f"{where}url", path, "a store URL") or None,
                from_start=_of(
                    item.get("from_start", False), bool, f"{where}from_start", path, "true/false"
                ),
                commit_every=_count(item.get("commit_every", 1), f"{where}commit_every", path),
            )
        )
    return configs
