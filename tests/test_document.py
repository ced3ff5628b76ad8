"""The Document aggregate: an eventsourcing Aggregate whose domain rules (no change after
deletion, only storable text) live on the aggregate, whose times come from its events, and
whose state is rebuilt identically by replaying those events."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import pytest
from eventsourcing.application import project_aggregate
from eventsourcing.domain import Aggregate

from atlas_eda import AtlasEdaError, Document, DocumentDeletedError, InvalidDocumentError
from atlas_eda.document import check_text

FIELDS = {
    "document_id",
    "version",
    "title",
    "content",
    "author",
    "last_editor",
    "created_at",
    "modified_at",
    "is_deleted",
    "deleted_at",
    "deletion_reason",
}

NOT_TEXT: list[Any] = [b"bytes", 1, 1.5, {"a": 1}, ["x"], object()]
BAD_UNICODE = ["\ud800", "before\udfffafter"]


def replay(events: Sequence[Any]) -> Document:
    """Rebuild a document from its events, as the repository does."""
    document: object = project_aggregate(None, events)
    assert isinstance(document, Document)
    return document


def new_document() -> Document:
    return Document(title="Title", content="Content", author="alice")


# -- the aggregate ---------------------------------------------------------------------


def test_document_is_an_eventsourcing_aggregate_created_by_an_event() -> None:
    document = new_document()

    assert isinstance(document, Aggregate)
    events = document.collect_events()
    assert [type(e) for e in events] == [Document.Created]
    assert events[0].originator_id == document.id
    assert events[0].originator_version == 1


def test_new_document_has_version_1_and_its_fields() -> None:
    document = new_document()

    assert document.version == 1
    assert document.document_id == str(document.id)
    assert (document.title, document.content, document.author) == ("Title", "Content", "alice")
    assert document.last_editor == "alice"
    assert document.is_deleted is False
    assert document.deleted_at is None
    assert document.deletion_reason is None


def test_times_come_from_the_events_timestamps() -> None:
    document = new_document()
    document.update(content="v2", editor="bob")
    document.delete(reason="obsolete")
    created, updated, deleted = document.collect_events()

    assert document.created_at == created.timestamp.timestamp()
    assert document.modified_at == deleted.timestamp.timestamp()
    assert document.deleted_at == deleted.timestamp.timestamp()
    assert updated.timestamp >= created.timestamp
    assert deleted.timestamp >= updated.timestamp


def test_replaying_the_events_rebuilds_identical_state_whatever_the_clock_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = new_document()
    document.update(title="T2", editor="bob")
    document.delete(reason="gone")
    live = document.as_dict()
    events = list(document.collect_events())

    # A clock read inside an event body would show up here.
    monkeypatch.setattr(time, "time", lambda: 0.0)
    assert replay(events).as_dict() == live
    assert replay(events).as_dict() == live
    assert replay(events[:1]).as_dict()["modified_at"] == live["created_at"]


# -- update ----------------------------------------------------------------------------


def test_update_changes_given_fields_and_leaves_none_ones_unchanged() -> None:
    document = new_document()

    document.update(title="New title", editor="bob")
    assert (document.title, document.content) == ("New title", "Content")
    assert document.last_editor == "bob"
    assert document.version == 2

    document.update(content="New content")
    assert (document.title, document.content) == ("New title", "New content")
    assert document.version == 3

    document.update()
    assert (document.title, document.content) == ("New title", "New content")
    assert document.version == 4
    events = document.collect_events()
    assert [type(e).__qualname__ for e in events] == [
        "Document.Created",
        "Document.Updated",
        "Document.Updated",
        "Document.Updated",
    ]


def test_update_without_editor_makes_the_author_last_editor() -> None:
    document = new_document()
    document.update(title="x", editor="bob")
    document.update(title="y")

    assert document.last_editor == "alice"


@pytest.mark.parametrize("text", ["", " ", "0"])
def test_update_keeps_falsy_strings_as_given(text: str) -> None:
    document = new_document()
    document.update(title=text, content=text, editor=text)

    assert (document.title, document.content, document.last_editor) == (text, text, text)
    assert replay(list(document.collect_events())).as_dict() == document.as_dict()


# -- delete ----------------------------------------------------------------------------


def test_delete_marks_the_document_deleted_with_reason_and_time() -> None:
    document = new_document()
    document.delete(reason="duplicate")

    assert document.is_deleted is True
    assert document.deletion_reason == "duplicate"
    assert document.deleted_at == document.modified_at
    assert document.version == 2
    assert (document.title, document.content) == ("Title", "Content")


def test_delete_without_reason() -> None:
    document = new_document()
    document.delete()

    assert document.is_deleted is True
    assert document.deletion_reason is None


@pytest.mark.parametrize(
    "action",
    [
        lambda d: d.update(title="again"),
        lambda d: d.update(),
        lambda d: d.delete(),
        lambda d: d.delete(reason="twice"),
    ],
    ids=["update", "empty-update", "delete", "delete-with-reason"],
)
def test_a_deleted_document_refuses_changes_and_records_nothing(action: Any) -> None:
    document = new_document()
    document.delete(reason="obsolete")
    before = document.as_dict()
    pending = len(document.collect_events())

    with pytest.raises(DocumentDeletedError) as excinfo:
        action(document)

    assert isinstance(excinfo.value, AtlasEdaError)
    message = str(excinfo.value)
    assert document.document_id in message
    assert "obsolete" in message
    assert "version=" in message  # tells the user how to read the earlier versions
    assert document.as_dict() == before
    assert document.collect_events() == []
    assert pending == 2


# -- invalid input ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [*NOT_TEXT, *BAD_UNICODE])
@pytest.mark.parametrize("field", ["title", "content", "editor"])
def test_update_refuses_unstorable_fields_before_recording_anything(field: str, value: Any) -> None:
    document = new_document()
    document.collect_events()
    before = document.as_dict()

    with pytest.raises(InvalidDocumentError) as excinfo:
        document.update(**{field: value})

    assert excinfo.value.field == field
    assert repr(field) in str(excinfo.value)
    assert document.as_dict() == before
    assert document.collect_events() == []


@pytest.mark.parametrize("value", [*NOT_TEXT, *BAD_UNICODE])
def test_delete_refuses_an_unstorable_reason_before_recording_anything(value: Any) -> None:
    document = new_document()
    document.collect_events()
    before = document.as_dict()

    with pytest.raises(InvalidDocumentError) as excinfo:
        document.delete(reason=value)

    assert excinfo.value.field == "reason"
    assert document.as_dict() == before
    assert document.is_deleted is False
    assert document.collect_events() == []


# -- as_dict and repr ------------------------------------------------------------------


def test_as_dict_holds_every_field_and_is_json_serialisable() -> None:
    document = new_document()
    document.update(content="v2", editor="bob")
    document.delete(reason="done")
    data = document.as_dict()

    assert set(data) == FIELDS
    assert data == {
        "document_id": document.document_id,
        "version": 3,
        "title": "Title",
        "content": "v2",
        "author": "alice",
        "last_editor": "bob",
        "created_at": document.created_at,
        "modified_at": document.modified_at,
        "is_deleted": True,
        "deleted_at": document.modified_at,
        "deletion_reason": "done",
    }
    assert json.loads(json.dumps(data)) == data


def test_as_dict_is_a_copy() -> None:
    document = new_document()
    data = document.as_dict()
    data["title"] = "changed"

    assert document.title == "Title"


def test_repr_names_id_version_title_and_deletion() -> None:
    document = new_document()
    assert repr(document) == f"Document({document.document_id}, v1, 'Title')"
    document.delete()
    assert repr(document) == f"Document({document.document_id}, v2, 'Title', deleted)"


# -- check_text ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "plain", "nul\x00inside", "astral \U0001f600 \U0010ffff"])
def test_check_text_accepts_any_valid_str(value: str) -> None:
    check_text("title", value)
    check_text("title", value, optional=True)


def test_check_text_accepts_none_only_when_optional() -> None:
    check_text("editor", None, optional=True)

    with pytest.raises(InvalidDocumentError) as excinfo:
        check_text("author", None)

    assert excinfo.value.field == "author"
    assert "'author' must be a str, got NoneType" in str(excinfo.value)


@pytest.mark.parametrize("value", NOT_TEXT)
def test_check_text_refuses_non_str_naming_field_and_type(value: Any) -> None:
    with pytest.raises(InvalidDocumentError) as excinfo:
        check_text("content", value)

    error = excinfo.value
    assert isinstance(error, AtlasEdaError)
    assert isinstance(error, ValueError)
    assert error.field == "content"
    assert f"'content' must be a str, got {type(value).__name__}" in str(error)
    assert "nothing was saved" in str(error)


def test_check_text_optional_message_mentions_none() -> None:
    with pytest.raises(InvalidDocumentError, match=r"'editor' must be a str or None, got int"):
        check_text("editor", 3, optional=True)


@pytest.mark.parametrize(("value", "index"), [("\ud800", 0), ("before\udfffafter", 6)])
def test_check_text_refuses_lone_surrogates_saying_where(value: str, index: int) -> None:
    with pytest.raises(InvalidDocumentError) as excinfo:
        check_text("title", value, optional=True)

    assert excinfo.value.field == "title"
    assert "'title' is not valid Unicode" in str(excinfo.value)
    assert f"at index {index}" in str(excinfo.value)


def test_check_text_survives_a_hostile_repr_and_shortens_long_ones() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    with pytest.raises(InvalidDocumentError, match=r"got Hostile \(<Hostile>\)"):
        check_text("title", Hostile())

    with pytest.raises(InvalidDocumentError) as excinfo:
        check_text("title", b"x" * 1000)
    assert len(str(excinfo.value)) < 200
    assert "…" in str(excinfo.value)
