"""Events: the frozen, keyword-only ``Event``, the built-in ``EventType``s, event ids
(canonical UUID4 strings, unique across threads and forked processes) and ``type_name``."""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import threading
import time
import uuid
import warnings
from types import MappingProxyType

import pytest
from conftest import Ping

from atlas_eda import AtlasEdaError, Event, EventType, InvalidEventError
from atlas_eda.events import EMPTY_METADATA, new_event_id, type_name


def assert_uuid4(value: str) -> None:
    parsed = uuid.UUID(value)
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == value  # canonical: lower-case, hyphenated, 36 characters


# -- the dataclass -------------------------------------------------------------------------


def test_event_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Event(Ping.PING)  # type: ignore[misc]
    with pytest.raises(TypeError):
        Event(Ping.PING, {"x": 1})  # type: ignore[misc]


def test_event_is_frozen() -> None:
    event = Event(type=Ping.PING, data=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.id = new_event_id()  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        event.extra = 1  # type: ignore[attr-defined]
    assert event.data == 1


def test_event_defaults() -> None:
    before = time.time()
    event = Event(type=Ping.PING)
    after = time.time()
    assert event.type is Ping.PING
    assert event.data is None
    assert event.source is None
    assert event.correlation_id is None
    assert event.causation_id is None
    assert dict(event.metadata) == {}
    assert before <= event.timestamp <= after
    assert_uuid4(event.id)


def test_every_field_is_kept() -> None:
    event = Event(
        type=EventType.DOCUMENT_UPDATED,
        data={"doc": 1},
        id="0b6d1f1c-9c1e-4a57-9d0b-3f1f5f0e8a11",
        timestamp=12.5,
        source="tests",
        metadata={"tenant": "acme"},
        correlation_id="root",
        causation_id="parent",
    )
    assert event.data == {"doc": 1}
    assert event.id == "0b6d1f1c-9c1e-4a57-9d0b-3f1f5f0e8a11"
    assert event.timestamp == 12.5
    assert event.source == "tests"
    assert event.metadata == {"tenant": "acme"}
    assert (event.correlation_id, event.causation_id) == ("root", "parent")


def test_built_in_event_types() -> None:
    names = {member.name for member in EventType}
    assert {
        "DOCUMENT_CREATED",
        "DOCUMENT_UPDATED",
        "DOCUMENT_DELETED",
        "COMMAND_EXECUTED",
        "QUERY_EXECUTED",
        "ERROR",
    } <= names


def test_any_enum_member_is_an_event_type() -> None:
    assert Event(type=Ping.PONG).type is Ping.PONG
    assert Event(type=EventType.ERROR).type is EventType.ERROR


@pytest.mark.parametrize("bad_type", ["ping", 1, None, Ping, object()])
def test_an_event_type_that_is_not_an_enum_member_is_refused(bad_type: object) -> None:
    with pytest.raises(InvalidEventError, match=r"enum\.Enum member") as info:
        Event(type=bad_type)  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, AtlasEdaError)


# -- metadata ------------------------------------------------------------------------------


def test_metadata_is_read_only_and_copied() -> None:
    given = {"tenant": "acme"}
    event = Event(type=Ping.PING, metadata=given)
    given["tenant"] = "evil"
    given["extra"] = True
    assert dict(event.metadata) == {"tenant": "acme"}
    with pytest.raises(TypeError):
        event.metadata["tenant"] = "other"  # type: ignore[index]


def test_metadata_given_by_dataclasses_replace_is_read_only_too() -> None:
    # The quickstart's middleware does exactly this.
    event = dataclasses.replace(Event(type=Ping.PING), metadata={"tenant": "acme"})
    assert event.metadata == {"tenant": "acme"}
    with pytest.raises(TypeError):
        event.metadata["tenant"] = "other"  # type: ignore[index]


def test_empty_metadata_is_read_only() -> None:
    for event in (Event(type=Ping.PING), Event(type=Ping.PING, metadata={})):
        assert event.metadata == {}
        with pytest.raises(TypeError):
            event.metadata["tenant"] = "other"  # type: ignore[index]
    assert isinstance(EMPTY_METADATA, MappingProxyType)


@pytest.mark.parametrize("bad_metadata", [[("a", 1)], "tenant", 0, [], ()])
def test_metadata_that_is_not_a_mapping_is_refused(bad_metadata: object) -> None:
    with pytest.raises(InvalidEventError, match="mapping"):
        Event(type=Ping.PING, metadata=bad_metadata)  # type: ignore[arg-type]


# -- ids -----------------------------------------------------------------------------------


def test_ids_are_canonical_uuid4_strings() -> None:
    for _ in range(1000):
        assert_uuid4(new_event_id())
    assert_uuid4(Event(type=Ping.PING).id)


def test_ids_are_unique_across_many_calls() -> None:
    ids = [new_event_id() for _ in range(50_000)]
    ids += [Event(type=Ping.PING).id for _ in range(5_000)]
    assert len(set(ids)) == len(ids)


def test_ids_are_unique_across_threads() -> None:
    per_thread: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(len(per_thread))

    def make(out: list[str]) -> None:
        start.wait(timeout=10)
        out.extend(new_event_id() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    every = [i for out in per_thread for i in out]
    assert len(every) == 8 * 5_000
    assert len(set(every)) == len(every)


def test_ids_are_unique_in_a_forked_child() -> None:
    parent_before = [new_event_id() for _ in range(1_000)]
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() while other threads (say, a library's) run;
        # the child below only computes ids and writes them, it takes no lock.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: write its ids and leave at once, whatever happens
        status = 1
        try:
            os.close(read_end)
            payload = "\n".join(new_event_id() for _ in range(1_000)).encode()
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    parent_after = [new_event_id() for _ in range(1_000)]
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode().split("\n")
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    assert os.WEXITSTATUS(status) == 0
    assert len(child) == 1_000
    for value in child:
        assert_uuid4(value)
    parent = parent_before + parent_after
    assert len(set(child)) == len(child)
    assert not set(child) & set(parent)


# -- naming and repr -----------------------------------------------------------------------


def test_type_name() -> None:
    assert type_name(Ping.PING) == "Ping.PING"
    assert type_name(EventType.DOCUMENT_CREATED) == "EventType.DOCUMENT_CREATED"


class _MultiLine:
    def __repr__(self) -> str:
        return "first line\nsecond line\r\nthird"


class _BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


@pytest.mark.parametrize(
    "data",
    [None, "x", {"k": "v" * 10_000}, list(range(100_000)), _MultiLine(), _BrokenRepr()],
    ids=["none", "short", "long-dict", "long-list", "multi-line-repr", "broken-repr"],
)
def test_repr_is_one_short_line(data: object) -> None:
    event = Event(type=Ping.PING, data=data, source="s" * 500)
    text = repr(event)
    assert "\n" not in text
    assert "\r" not in text
    assert len(text) <= 200
    assert text.startswith("Event(Ping.PING, ")
    assert event.id in text


def test_repr_names_type_id_data_and_source() -> None:
    event = Event(type=Ping.PONG, data={"n": 1}, source="tests")
    assert repr(event) == f"Event(Ping.PONG, id={event.id}, data={{'n': 1}}, source='tests')"


# -- copies --------------------------------------------------------------------------------


def test_replace_keeps_every_other_field() -> None:
    event = Event(type=Ping.PING, data=1, source="a", metadata={"m": 1}, correlation_id="c")
    changed = dataclasses.replace(event, data=2)
    assert changed.data == 2
    assert (changed.id, changed.timestamp, changed.source) == (
        event.id,
        event.timestamp,
        event.source,
    )
    assert changed.metadata == {"m": 1}
    assert changed.correlation_id == "c"


@pytest.mark.parametrize(
    "duplicate",
    [lambda e: pickle.loads(pickle.dumps(e)), copy.deepcopy, copy.copy],
    ids=["pickle", "deepcopy", "copy"],
)
def test_events_pickle_and_copy(duplicate: object) -> None:
    event = Event(
        type=Ping.PING,
        data={"n": [1, 2]},
        source="tests",
        metadata={"tenant": "acme"},
        correlation_id="c",
        causation_id="p",
    )
    again = duplicate(event)  # type: ignore[operator]
    assert again == event
    assert again.id == event.id
    assert again.timestamp == event.timestamp
    assert again.type is Ping.PING
    with pytest.raises(TypeError):
        again.metadata["tenant"] = "other"
    assert pickle.loads(pickle.dumps(Event(type=Ping.PONG))).metadata == {}


# -- the bus's fast path (atlas_eda.dispatch.EventDraft) builds the same events -------------


def test_the_bus_builds_exactly_what_event_gives() -> None:
    from atlas_eda import EventBus

    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(Ping.PONG, seen.append)
    bus.subscribe(Ping.PING, lambda e: bus.publish(Ping.PONG, {"a": 1}, "src", metadata={"k": 1}))
    parent_id = bus.publish(Ping.PING)
    [fast] = seen  # a child: built with causation and correlation ids
    assert (fast.causation_id, fast.correlation_id) == (parent_id, parent_id)
    slow = Event(
        type=Ping.PONG,
        data={"a": 1},
        id=fast.id,
        timestamp=fast.timestamp,
        source="src",
        metadata={"k": 1},
        correlation_id=fast.correlation_id,
        causation_id=fast.causation_id,
    )
    assert type(fast) is Event
    assert fast == slow
    assert slow == fast
    assert repr(fast) == repr(slow)
    for f in dataclasses.fields(Event):
        assert getattr(fast, f.name) == getattr(slow, f.name)
    assert pickle.loads(pickle.dumps(fast)) == slow
    assert copy.deepcopy(fast) == slow
    assert dataclasses.replace(fast, data=2) == dataclasses.replace(slow, data=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.data = 3  # type: ignore[misc]
    for event in (fast, slow):  # (a TypeError on 3.11: CPython's frozen-slots quirk)
        with pytest.raises((AttributeError, TypeError)):
            event.extra = 3  # type: ignore[attr-defined]


def test_next_id_is_the_same_source_as_new_event_id() -> None:
    ids = [new_event_id.next_id() for _ in range(5000)] + [new_event_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for event_id in ids[::499]:
        assert_uuid4(event_id)
    # Blocks of 4,096 suffixes follow each other with no gap and no repeat.
    counters = [int(event_id[24:], 16) for event_id in ids]
    assert counters == list(range(counters[0], counters[0] + len(ids)))
