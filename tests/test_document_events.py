"""One translation of stored Document events: the bus data the store and followers
publish, and the field changes a timeline shows."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.domain import Aggregate, event

from atlas_eda import AtlasEdaError, Document, EventType
from atlas_eda.document_events import (
    KINDS,
    bus_event,
    field_changes,
    kind_of,
    live_bus_event,
    topics,
)


def history() -> tuple[str, list[Any]]:
    """A document's four events: created, updated (title, editor), updated (content, no
    editor), deleted."""
    document = Document(title="t", content="c", author="ann")
    document.update(title="t2", editor="bob")
    document.update(content="c3")
    document.delete(reason="done")
    return document.document_id, document.collect_events()


def test_bus_event_is_the_data_a_follower_publishes() -> None:
    document_id, events = history()

    assert [tuple(bus_event(e)) for e in events] == [
        (
            EventType.DOCUMENT_CREATED,
            {"id": document_id, "title": "t", "author": "ann", "version": 1},
        ),
        (
            EventType.DOCUMENT_UPDATED,
            {"id": document_id, "title": "t2", "editor": "bob", "version": 2},
        ),
        # The event records the resolved editor: the author when none was given.
        (
            EventType.DOCUMENT_UPDATED,
            {"id": document_id, "title": None, "editor": "ann", "version": 3},
        ),
        (EventType.DOCUMENT_DELETED, {"id": document_id, "reason": "done", "version": 4}),
    ]


def test_the_live_bus_event_carries_the_editor_as_given() -> None:
    _, events = history()

    assert live_bus_event(events[2], editor=None).data["editor"] is None
    assert live_bus_event(events[1], editor="bob") == bus_event(events[1])
    for other in (events[0], events[3]):
        assert live_bus_event(other, editor="ignored") == bus_event(other)


def test_field_changes_and_kinds_are_what_a_timeline_shows() -> None:
    _, events = history()

    assert [kind_of(e) for e in events] == ["created", "updated", "updated", "deleted"]
    assert [field_changes(e) for e in events] == [
        {"title": "t", "content": "c", "author": "ann"},
        {"title": "t2", "last_editor": "bob"},
        {"content": "c3", "last_editor": "ann"},
        {"is_deleted": True, "deletion_reason": "done"},
    ]


def test_topics_name_the_stored_classes() -> None:
    assert topics(KINDS) == [
        "atlas_eda.document:Document.Created",
        "atlas_eda.document:Document.Updated",
        "atlas_eda.document:Document.Deleted",
    ]


class Foreign(Aggregate):
    @event("Created")
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.mark.parametrize("translate", [kind_of, bus_event, field_changes])
def test_another_applications_event_is_refused_by_name(translate: Any) -> None:
    [foreign] = Foreign(name="x").collect_events()
    with pytest.raises(AtlasEdaError, match=r"Foreign\.Created is not a Document event"):
        translate(foreign)
