"""Subscriptions: a bus's receivers, one blinker signal per event type kept in connection
order, and the delivery plans made from them (internal; :class:`~atlas_eda.bus.EventBus`
is the public face).

blinker stays the registry of receivers (strong or weak references, ``connected_to``,
``muted``); what it cannot give a bus — calls in subscription order, a failure that does
not stop the other receivers, no copy of receiver sets per send — comes from each
signal's ready-made delivery list and the per-type :data:`Plan` built from them."""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, MutableSet
from enum import Enum
from typing import Any

from blinker import ANY, Signal
from blinker._utilities import make_id  # how blinker's registry keys a receiver
from blinker.base import ANY_ID

from .emits import Declaration, Declaring
from .errors import AsyncHandlerError, SubscriptionError
from .events import Event, check_event_type, type_name
from .trace import handler_name, qualified_name

__all__ = [
    "DeliveryWrap",
    "Gone",
    "Handler",
    "Once",
    "Plan",
    "Subscriptions",
    "Wrapped",
    "check_synchronous",
    "handler_of",
]

Handler = Callable[[Event], Any]
"""A subscriber: called as ``handler(event)``; may return an ``EffectMonad`` to be run."""


class Once:
    """A handler subscribed with ``once=True``: its first delivery unsubscribes it, then
    calls it (so it is unsubscribed even when it raises). Deliveries racing on other
    threads with plans made before the unsubscribe find it already used and call nothing:
    the handler runs exactly once. It bears the handler's name, so traces and the graph
    name the handler, not this wrapper. The publish path knows nothing of it."""

    def __init__(self, handler: Handler) -> None:
        functools.update_wrapper(self, handler)
        self.handler = handler
        self.unsubscribe: Callable[[], None] | None = None
        self._used = False
        self._lock = threading.Lock()

    def attach(self, unsubscribe: Callable[[], None]) -> None:
        """Give the wrapper the function that unsubscribes it; called at once when an
        event already came (on another thread) between connecting and this call."""
        with self._lock:
            self.unsubscribe = unsubscribe
            used = self._used
        if used:
            unsubscribe()

    def __call__(self, event: Event) -> Any:
        with self._lock:
            if self._used:
                return None
            self._used = True
            unsubscribe = self.unsubscribe
        if unsubscribe is not None:
            unsubscribe()
        return self.handler(event)


class Gone(Exception):
    """Raised in place of a delivery whose receiver went away after its plan was made."""


class Wrapped:
    """The base of a call that wraps a receiver's call in a plan (what a
    :data:`DeliveryWrap` returns, as :mod:`atlas_eda.telemetry`'s spans do): ``call`` is
    the wrapped one, which :func:`handler_of` looks through."""

    __slots__ = ("call",)

    def __init__(self, call: Callable[[Event], Any]) -> None:
        self.call = call

    def __call__(self, event: Event) -> Any:
        """Deliver ``event`` through the wrapped call (a subclass adds what it wraps)."""
        return self.call(event)


DeliveryWrap = Callable[[Callable[[Event], Any], str], Wrapped]
"""Called as ``wrap(call, name)`` for each receiver when a plan is made: what the plan
calls instead of the receiver's ``call`` (``name`` is the handler's name)."""


def _gone(event: Event) -> None:
    raise Gone


class _WeakCall:
    """Delivers to a weakly held receiver, or raises :class:`Gone` once it is collected."""

    __slots__ = ("ref",)

    def __init__(self, ref: Callable[[], Handler | None]) -> None:
        self.ref = ref

    def __call__(self, event: Event) -> Any:
        target = self.ref()
        if target is None:
            raise Gone
        return target(event)


class _Receiver:
    """One connected receiver as delivery plans hold it (internal). ``call`` delivers to
    it; when blinker's registry drops the receiver (disconnect, or clean-up of a
    collected weak one), :meth:`gone` makes every plan that holds it, including one a
    publish is iterating over, skip it instead of asking the registry on every delivery."""

    __slots__ = ("call", "declaration", "entry", "plans")

    def __init__(self, entry: Any, declaration: Declaration | None = None) -> None:
        self.entry = entry  # what blinker's registry holds: the receiver or a weak ref
        self.call: Callable[[Event], Any] = (
            _WeakCall(entry) if isinstance(entry, weakref.ref) else entry
        )
        # What the receiver declared it emits (emits=): only then is it called through
        # a Declaring, which the run-time check needs (see atlas_eda.emits).
        self.declaration = declaration
        if declaration is not None:
            self.call = Declaring(self.call, declaration)
        # The plans holding ``call`` (weakly: a plan lives while cached or in use).
        self.plans: list[weakref.ref[_Calls]] = []

    def planned_in(self, calls: _Calls) -> None:
        """Note that ``calls`` holds this receiver (under the plan lock)."""
        self.plans = [ref for ref in self.plans if ref() is not None]
        self.plans.append(weakref.ref(calls))

    def gone(self) -> None:
        """Replace this receiver by :func:`_gone` in every plan (under the plan lock).
        Item assignment is atomic, so a publish iterating a plan on another thread sees
        either the receiver or its replacement."""
        self.call = _gone
        for ref in self.plans:
            calls = ref()
            if calls is not None:
                for index, receiver in enumerate(calls.receivers):
                    if receiver is self:
                        calls[index] = _gone
        self.plans = []


class _Calls(list[Callable[[Event], Any]]):
    """What one event type is delivered to, ready to call in order (internal), and the
    :class:`_Receiver` behind each call. A publish iterates the list itself (a list
    iterator reads items as it goes), so a receiver made gone meanwhile is skipped."""

    __slots__ = ("__weakref__", "receivers")

    def __init__(
        self,
        receivers: Iterable[_Receiver],
        wrap: DeliveryWrap | None = None,
        names: Iterable[str] = (),
    ) -> None:
        self.receivers = tuple(receivers)
        if wrap is None:
            super().__init__(receiver.call for receiver in self.receivers)
        else:
            calls = zip(self.receivers, names, strict=True)
            super().__init__(wrap(receiver.call, name) for receiver, name in calls)


def _is_async(handler: object) -> bool:
    """Whether calling ``handler`` makes a coroutine or an async generator instead of
    running it: an ``async def`` function or method, a ``functools.partial`` of one, or
    an object whose ``__call__`` is one."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    if inspect.iscoroutinefunction(handler) or inspect.isasyncgenfunction(handler):
        return True
    if inspect.isfunction(handler) or inspect.ismethod(handler) or inspect.isbuiltin(handler):
        return False
    call = getattr(type(handler), "__call__", None)  # noqa: B004 - the class's, not the instance's
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)


def check_synchronous(handler: object) -> None:
    """Raise :class:`AsyncHandlerError` if ``handler`` is a coroutine function (or a
    partial of one, or an object with an ``async def __call__``): the bus calls handlers
    synchronously and would never await what they return."""
    if _is_async(handler):
        raise AsyncHandlerError(
            f"{qualified_name(handler)} is a coroutine function (async def), but the bus is "
            f"synchronous: it calls handler(event) on the publishing thread and never awaits "
            f"the result, so the handler would never run. Subscribe a plain function (one "
            f"that hands the event to your event loop, e.g. with "
            f"asyncio.run_coroutine_threadsafe, if the work is async)."
        )


def handler_of(receiver: Callable[..., Any]) -> Callable[..., Any]:
    """The subscribed handler behind a plan's ``call`` (for reports and dead letters)."""
    if isinstance(receiver, Wrapped):
        receiver = receiver.call
    if type(receiver) is Declaring:
        receiver = receiver.call
    if type(receiver) is _WeakCall:
        return receiver.ref() or receiver
    if type(receiver) is Once:  # a dead letter's retry calls the handler itself
        return receiver.handler
    return receiver


_Deliveries = tuple[tuple[_Receiver, str], ...]
"""A signal's ready-made delivery list: each receiver and its name, in connection order."""

Plan = tuple[_Calls, tuple[str, ...]]
"""What one event type is delivered to: its receivers, ready to call in order, and their
names (what a trace record keeps at :data:`~atlas_eda.trace.NAMES`)."""


class _OrderedSet(MutableSet[Any]):
    """A set that iterates in insertion order; blinker's receiver buckets use it so that
    handlers run in subscription order (blinker's default ``set`` has no order)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._items: dict[Any, None] = dict.fromkeys(items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, value: Any) -> None:
        self._items[value] = None

    def discard(self, value: Any) -> None:
        self._items.pop(value, None)

    def copy(self) -> _OrderedSet:
        # dict.copy is a single C call: a consistent snapshot even while another
        # thread subscribes, which is what blinker's receivers_for iterates over.
        new = _OrderedSet()
        new._items = self._items.copy()
        return new


class _PlanCache:
    """A bus's delivery plans, one per event type: the receivers of the type's signal and
    of the every-type signal, ready to call. Any change to either signal (connect,
    disconnect, blinker's clean-up of a collected weak receiver, mute) drops them all."""

    __slots__ = ("keep", "lock", "plans", "version")

    def __init__(self) -> None:
        self.plans: dict[int, Plan] = {}
        # The event types whose ids key ``plans``: alive, so that no id is reused.
        self.keep: dict[int, Enum] = {}
        self.version = 0
        # Re-entrant: dropping a plan may free a handler whose finaliser triggers
        # blinker's weak-reference clean-up, which invalidates again on this thread.
        self.lock = threading.RLock()

    def invalidate(self) -> None:
        with self.lock:
            self.version += 1
            self.plans.clear()
            self.keep.clear()


class _OrderedSignal(Signal):
    """A blinker ``Signal`` whose receivers are called in the order they connected, and
    which keeps a ready-made delivery list: blinker stays the registry of receivers (weak
    references, ``connected_to``, ``muted``), while a publish reuses the list instead of
    copying receiver sets and resolving ids on every send. Any connect or disconnect,
    including blinker's own clean-up of a collected weak receiver, and muting, drops the
    list and the plans of the bus that owns the signal."""

    set_class = _OrderedSet  # type: ignore[assignment]

    def __init__(self, plans: _PlanCache, doc: str, label: str) -> None:
        # Set before blinker's __init__, which assigns is_muted (see the property).
        self.label = label  # what error messages call the signal
        self._plans = plans
        self._deliveries: _Deliveries | None = None
        self._held: dict[Hashable, _Receiver] = {}
        # One token per connection, made when a receiver connects and dropped when
        # blinker's registry drops it: an unsubscribe function holds its token, so it
        # removes its own connection and never a later one of the same receiver.
        self._tokens: dict[Hashable, object] = {}
        # What each receiver declared it emits (emits=), set before it connects.
        self._declared: dict[Hashable, Declaration] = {}
        self._version = 0
        self._muted = False
        super().__init__(doc)

    @property
    def is_muted(self) -> bool:
        """Whether blinker's ``muted()`` is in effect: nothing is delivered."""
        return self._muted

    @is_muted.setter
    def is_muted(self, value: bool) -> None:
        self._muted = value
        self._invalidate()

    def connect(
        self,
        receiver: Any,
        sender: Any = ANY,
        weak: bool = True,
        declaration: Declaration | None = None,
    ) -> Any:
        """Connect ``receiver`` as blinker does (``connected_to`` and ``connect_via`` come
        here too), but refuse with :class:`SubscriptionError` a ``sender`` filter (the
        bus delivers every event of the type to every receiver: a filter would never
        match) and a receiver already connected, and with :class:`AsyncHandlerError` a
        coroutine function. Nothing is connected when it refuses. ``declaration`` is
        what the receiver declared it emits (``subscribe(..., emits=)``)."""
        receiver_id = self._check_connectable(receiver, sender)
        if declaration is None:
            self._declared.pop(receiver_id, None)
        else:
            self._declared[receiver_id] = declaration
        try:
            connected = super().connect(receiver, sender, weak)
            self._tokens[receiver_id] = object()
            return connected
        except BaseException:
            self._declared.pop(receiver_id, None)
            raise
        finally:
            self._invalidate()

    def _check_connectable(self, receiver: Any, sender: Any) -> Hashable:
        """``receiver``'s id in blinker's registry, if it may connect (see connect)."""
        if sender is not ANY:
            raise SubscriptionError(
                f"The signal of {self.label}: a receiver cannot be connected for sender "
                f"{sender!r}. The bus calls every receiver of an event type with every event "
                f"of that type (never filtered by sender), so it refuses sender filters "
                f"rather than never calling the receiver. Connect it for any sender and "
                f"test event.source inside it."
            )
        check_synchronous(receiver)
        receiver_id: Hashable = make_id(receiver)
        entry = self.receivers.get(receiver_id)
        if entry is not None and (not isinstance(entry, weakref.ref) or entry() is not None):
            raise SubscriptionError(
                f"{qualified_name(receiver)} is already subscribed to {self.label}; a "
                f"handler subscribes once per event type (each subscription has its own "
                f"unsubscribe function). Call the unsubscribe function of the first "
                f"subscription before subscribing it again, e.g. to change weak=."
            )
        return receiver_id

    def connection(self, receiver_id: Hashable) -> object | None:
        """The token of the receiver ``receiver_id``'s current connection (None if it is
        not connected)."""
        return self._tokens.get(receiver_id)

    def disconnect_connection(self, receiver_id: Hashable, token: object) -> None:
        """Disconnect the receiver ``receiver_id`` if it is still connected by the
        connection ``token`` names; otherwise do nothing."""
        if self._tokens.get(receiver_id) is not token:
            return
        entry = self.receivers.get(receiver_id)
        target = entry() if isinstance(entry, weakref.ref) else entry
        if target is not None:
            self.disconnect(target)

    def disconnect(self, receiver: Callable[..., Any], sender: Any = ANY) -> None:
        try:
            super().disconnect(receiver, sender)
        finally:
            self._invalidate()

    def _disconnect(self, receiver_id: Hashable, sender_id: Hashable) -> None:
        # Every removal from blinker's registry comes through here: disconnect() and the
        # weak-reference clean-up (which sends no receiver_disconnected).
        try:
            super()._disconnect(receiver_id, sender_id)
        finally:
            with self._plans.lock:  # not while deliveries() is building from the registry
                if receiver_id not in self.receivers:
                    self._tokens.pop(receiver_id, None)
                    self._declared.pop(receiver_id, None)
                    held = self._held.pop(receiver_id, None)
                    if held is not None:
                        held.gone()
            self._invalidate()

    def _invalidate(self) -> None:
        self._version += 1
        self._deliveries = None
        self._plans.invalidate()

    def deliveries(self) -> _Deliveries:
        """``(receiver, name)`` for each receiver connected for any sender, in
        connection order."""
        cached = self._deliveries
        if cached is None:
            version = self._version
            items = []
            receivers = self.receivers
            held = self._held
            # Under the lock _disconnect takes: a receiver it drops meanwhile is either
            # not seen here or made gone there, never kept in a plan as live.
            with self._plans.lock:
                for receiver_id in self._by_sender[ANY_ID].copy():
                    entry = receivers.get(receiver_id)
                    if entry is None:
                        continue
                    target = entry() if isinstance(entry, weakref.ref) else entry
                    if target is None:
                        continue
                    receiver = held.get(receiver_id)
                    if receiver is None or receiver.entry is not entry:
                        # New, or connected again (blinker then holds a new weak ref;
                        # the old one still reaches the same receiver: it is not gone).
                        receiver = held[receiver_id] = _Receiver(
                            entry, self._declared.get(receiver_id)
                        )
                    items.append((receiver, handler_name(target)))
            cached = tuple(items)
            if version == self._version:  # nothing connected meanwhile: safe to keep
                self._deliveries = cached
        return cached


class Subscriptions:
    """A bus's receivers: one ordered blinker signal per event type (made on first use),
    one for every event whatever its type, and the delivery plans made from them, kept in
    :attr:`plans` by ``id(event type)`` (an int hashes far faster than an ``Enum``
    member, whose ``__hash__`` is Python code) until any signal changes."""

    __slots__ = ("_cache", "_lock", "_signals", "every", "plans", "wrap")

    def __init__(self) -> None:
        self._cache = _PlanCache()
        # What each plan's calls are wrapped in (None: the receivers' own calls).
        self.wrap: DeliveryWrap | None = None
        # Cleared in place, never replaced: the dispatcher keeps a reference to it.
        self.plans = self._cache.plans
        self._signals: dict[Enum, _OrderedSignal] = {}
        self.every = _OrderedSignal(
            self._cache, "every event, whatever its type", "every event (subscribe_all)"
        )
        self._lock = threading.Lock()  # connections and signal creation

    def __len__(self) -> int:
        """How many event types have a signal."""
        return len(self._signals)

    def signal(self, event_type: Enum) -> Signal:
        """The signal of ``event_type``, made on first use; :class:`InvalidEventError`
        if it is not an ``Enum`` member."""
        check_event_type(event_type)
        signal = self._signals.get(event_type)
        if signal is None:
            with self._lock:
                signal = self._signals.get(event_type)
                if signal is None:
                    name = type_name(event_type)
                    signal = _OrderedSignal(
                        self._cache, f"atlas_eda events of type {name}", f"events of {name}"
                    )
                    self._signals[event_type] = signal
                    self._cache.invalidate()
        return signal

    def connect(
        self,
        signal: Signal,
        handler: Handler,
        weak: bool,
        declaration: Declaration | None = None,
    ) -> Callable[[], None]:
        """Connect ``handler`` to ``signal`` (weakly if ``weak``), with what it declared
        it emits (``declaration``, see :mod:`atlas_eda.emits`); returns the function
        that disconnects exactly this connection, once: calling it again, or after the
        handler was disconnected some other way and connected again, does nothing. A
        handler already connected to ``signal``, a coroutine function or a handler that
        cannot be weakly referenced with ``weak=True`` is refused, nothing connected."""
        if not callable(handler):
            raise TypeError(f"A handler must be callable as handler(event), got {handler!r}.")
        if not isinstance(signal, _OrderedSignal):  # pragma: no cover - internal misuse
            raise TypeError(f"Not a bus signal: {signal!r}.")
        if weak:
            try:
                weakref.WeakMethod(handler) if inspect.ismethod(handler) else weakref.ref(handler)
            except TypeError:
                raise TypeError(
                    f"{handler!r} cannot be weakly referenced; subscribe it with weak=False."
                ) from None
        with self._lock:
            signal.connect(handler, weak=weak, declaration=declaration)
            receiver_id: Hashable = make_id(handler)
            token = signal.connection(receiver_id)
        del handler  # the disconnecting closure must not keep a weak handler alive

        def disconnect() -> None:
            with self._lock:
                signal.disconnect_connection(receiver_id, token)

        return disconnect

    def wrap_deliveries(self, wrap: DeliveryWrap | None) -> None:
        """Make every plan from now on call ``wrap(call, name)`` instead of each
        receiver's call (``None``: the calls themselves again); the plans made before are
        dropped."""
        self.wrap = wrap
        self._cache.invalidate()

    def plan(self, event_type: Enum) -> Plan:
        """Who receives events of ``event_type``: the type's own subscribers, then the
        every-type subscribers, leaving out a muted signal's. Kept in :attr:`plans` until
        a signal changes. Built under the plan lock, which removals take too: a receiver
        dropped meanwhile is either left out here or made gone in the plan (see
        _Receiver.gone)."""
        cache = self._cache
        with cache.lock:
            version = cache.version
            receivers: list[_Receiver] = []
            names: list[str] = []
            for signal in (self._signals.get(event_type), self.every):
                if signal is None or signal.is_muted:
                    continue
                for receiver, name in signal.deliveries():
                    receivers.append(receiver)
                    names.append(name)
            calls = _Calls(receivers, self.wrap, names)
            for receiver in receivers:
                receiver.planned_in(calls)
            plan: Plan = (calls, tuple(names))
            if cache.version == version:  # nothing changed meanwhile: safe to keep
                cache.plans[id(event_type)] = plan
                cache.keep[id(event_type)] = event_type
        return plan

    def declarations(self) -> list[tuple[Enum, str, Declaration | None]]:
        """Each subscription to an event type (not to every event): the type, the
        handler's name and what it declared it emits (``None``: nothing), in the order the
        types got their signals and, within a type, in subscription order."""
        with self._lock:
            signals = list(self._signals.items())
        return [
            (event_type, name, receiver.declaration)
            for event_type, signal in signals
            for receiver, name in signal.deliveries()
        ]
