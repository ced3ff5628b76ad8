"""The Document aggregate: an eventsourcing ``Aggregate`` whose every version stays readable.

Domain rules live here: a deleted document cannot be updated or deleted again. Times come
from the events' own timestamps (eventsourcing's ``created_on``/``modified_on``), never
from the clock inside an event body, so replaying the events rebuilds identical state.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from .errors import DocumentDeletedError, InvalidDocumentError
from .views import short_repr

__all__ = ["Document", "check_text"]


def check_text(field: str, value: object, *, optional: bool = False) -> None:
    """Refuse, with :class:`InvalidDocumentError` naming ``field``, a value that cannot be
    stored as document text: anything but ``str`` (or ``None`` when ``optional``), and
    strings that are not valid Unicode (lone surrogates)."""
    if value is None and optional:
        return
    if not isinstance(value, str):
        expected = "a str or None" if optional else "a str"
        raise InvalidDocumentError(
            f"Document field {field!r} must be {expected}, got {type(value).__name__} "
            f"({short_repr(value)}); nothing was saved.",
            field,
        )
    try:
        str.encode(value, "utf-8")  # not value.encode: a str subclass may override it
    except UnicodeEncodeError as exc:
        raise InvalidDocumentError(
            f"Document field {field!r} is not valid Unicode text ({exc.reason} at index "
            f"{exc.start}); nothing was saved. Decode your input with errors='replace' first.",
            field,
        ) from None


def _no_cause(state: dict[str, Any]) -> None:
    """Upcast an event stored before events recorded their cause: it has none."""
    state["cause"] = None


class Document(Aggregate):
    """A versioned document. ``version`` is the aggregate's version: 1 after creation,
    one more for each update or deletion.

    Each event records its ``cause``: the bus context it was written in (a plain dict of
    ``event_id``, ``event_type``, ``correlation_id`` and ``handler``, as the store builds
    it), or ``None`` for a write outside any delivery. The cause is part of the event,
    not of the document's state. Events stored before causes were recorded (class
    version 1) are upcast with ``cause`` ``None``."""

    # Explicit event classes, for eventsourcing's class versions: version 2 added
    # ``cause``; ``upcast_v1_v2`` reads events written before it.
    class Created(Aggregate.Created):
        """The document was created."""

        title: str
        content: str
        author: str
        cause: dict[str, Any] | None
        class_version = 2
        upcast_v1_v2 = staticmethod(_no_cause)

    class Updated(Aggregate.Event):
        """A new version: the fields given changed, ``editor`` edited it."""

        title: str | None
        content: str | None
        editor: str | None
        cause: dict[str, Any] | None
        class_version = 2
        upcast_v1_v2 = staticmethod(_no_cause)

    class Deleted(Aggregate.Event):
        """The document was deleted, for ``reason``."""

        reason: str | None
        cause: dict[str, Any] | None
        class_version = 2
        upcast_v1_v2 = staticmethod(_no_cause)

    @event(Created)
    def __init__(
        self, title: str, content: str, author: str, cause: dict[str, Any] | None = None
    ) -> None:
        self.title = title
        self.content = content
        self.author = author
        self.last_editor: str | None = author
        self.is_deleted = False
        self.deletion_reason: str | None = None

    @classmethod
    def create(
        cls,
        title: str,
        content: str,
        author: str,
        *,
        document_id: UUID | None = None,
        cause: dict[str, Any] | None = None,
    ) -> Document:
        """A new document (its ``Created`` event pending) with the id ``document_id``, or
        a random one (uuid4) when ``None``; ``cause`` is recorded with the event."""
        if document_id is None:
            return cls(title=title, content=content, author=author, cause=cause)
        # eventsourcing's own constructor with a given id (Document(...) takes none).
        return cls._create(
            cls.Created, id=document_id, title=title, content=content, author=author, cause=cause
        )

    @property
    def document_id(self) -> str:
        """The document's id, as a string."""
        return str(self.id)

    @property
    def created_at(self) -> float:
        """When the document was created (seconds since the epoch, from its first event)."""
        return self.created_on.timestamp()

    @property
    def modified_at(self) -> float:
        """When the document last changed (seconds since the epoch, from its last event)."""
        return self.modified_on.timestamp()

    @property
    def deleted_at(self) -> float | None:
        """When the document was deleted, or ``None``; deletion is always its last event."""
        return self.modified_at if self.is_deleted else None

    def update(
        self,
        title: str | None = None,
        content: str | None = None,
        editor: str | None = None,
        *,
        cause: dict[str, Any] | None = None,
    ) -> None:
        """Record a new version; ``None`` leaves a field unchanged. The editor (or the
        author, when none is given) becomes ``last_editor``; ``cause`` is recorded with
        the event (see the class)."""
        self._refuse_if_deleted("update")
        check_text("title", title, optional=True)
        check_text("content", content, optional=True)
        check_text("editor", editor, optional=True)
        # The event records who edited, resolved, so each event says what it changed
        # without the state before it (the timeline relies on that).
        self._updated(
            title=title,
            content=content,
            editor=self.author if editor is None else editor,
            cause=cause,
        )

    def delete(self, reason: str | None = None, *, cause: dict[str, Any] | None = None) -> None:
        """Record the deletion; the document keeps every earlier version. ``cause`` is
        recorded with the event (see the class)."""
        self._refuse_if_deleted("delete")
        check_text("reason", reason, optional=True)
        self._deleted(reason=reason, cause=cause)

    @event(Updated)
    def _updated(
        self,
        title: str | None,
        content: str | None,
        editor: str | None,
        cause: dict[str, Any] | None,
    ) -> None:
        if title is not None:
            self.title = title
        if content is not None:
            self.content = content
        self.last_editor = self.author if editor is None else editor

    @event(Deleted)
    def _deleted(self, reason: str | None, cause: dict[str, Any] | None) -> None:
        self.is_deleted = True
        self.deletion_reason = reason

    def _refuse_if_deleted(self, action: str) -> None:
        if self.is_deleted:
            raise DocumentDeletedError(
                f"Cannot {action} document {self.document_id}: it was deleted at version "
                f"{self.version} ({self.deletion_reason or 'no reason given'}). Its earlier "
                f"versions remain readable with get_document(id, version=n)."
            )

    def as_dict(self) -> dict[str, Any]:
        """The document's fields as a plain dict (for tables, JSON and comparisons)."""
        return {
            "document_id": self.document_id,
            "version": self.version,
            "title": self.title,
            "content": self.content,
            "author": self.author,
            "last_editor": self.last_editor,
            "created_at": self.created_at,
            "modified_at": self.modified_at,
            "is_deleted": self.is_deleted,
            "deleted_at": self.deleted_at,
            "deletion_reason": self.deletion_reason,
        }

    def __repr__(self) -> str:
        state = ", deleted" if self.is_deleted else ""
        return f"Document({self.document_id}, v{self.version}, {self.title!r}{state})"
