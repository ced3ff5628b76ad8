"""DocumentService: the reference application service of the source document. Each
operation describes its side effects as an ``EffectMonad``, checks that every effect can
be performed, writes through the ``TemporalStore`` and then performs the effects."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypedDict, TypeVar

from .bus import EventBus, check_bus
from .document import Document
from .effects import Effect, EffectHandler, EffectMonad, EffectType
from .errors import DocumentNotFoundError
from .events import Event, EventType
from .store import TemporalStore
from .store.outbox import Performer, check_effects

__all__ = ["DocumentService"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class OutboxArguments(TypedDict):
    """The outbox arguments of a store write."""

    effects: tuple[Effect, ...]
    performer: Performer


class DocumentService:
    """Creates, updates, deletes and reads documents through the event-driven stack:
    effects performed by ``effect_handler``, state in ``temporal_store``, notifications on
    ``event_bus``. Unknown ids raise ``DocumentNotFoundError`` (a ``ValueError``).

    Every effect is checked for a performer before anything is written
    (:class:`UnhandledEffectError`, nothing saved); the effects are performed after the
    commit, and a performer (or bus subscriber) failing then raises
    :class:`DeliveryAfterCommitError`, which carries the committed ``document_id``,
    ``version`` and ``result``: the write happened, do not retry it."""

    def __init__(
        self, event_bus: EventBus, temporal_store: TemporalStore, effect_handler: EffectHandler
    ) -> None:
        self.event_bus = check_bus("DocumentService's event_bus", event_bus)
        self.temporal_store = temporal_store
        self.effect_handler = effect_handler
        # Effects of earlier writes whose process died (or whose performer failed) before
        # they were performed: at least once, so now.
        performed = temporal_store.outbox.retry(effect_handler)
        if performed:
            logger.info("performed %d pending outbox entries", len(performed))
        self._unsubscribe = [
            event_bus.subscribe(EventType.DOCUMENT_CREATED, self._handle_document_created),
            event_bus.subscribe(EventType.DOCUMENT_UPDATED, self._handle_document_updated),
            event_bus.subscribe(EventType.DOCUMENT_DELETED, self._handle_document_deleted),
        ]

    def create_document(
        self, title: str, content: str, author: str, *, document_id: str | None = None
    ) -> str:
        """Create a document; returns its id. Performs a DATABASE_WRITE and a LOGGING effect
        after the commit.
        ``document_id`` is passed to :meth:`TemporalStore.create_document`: the id chosen
        by the caller (a str holding a UUID), or ``None`` for one made by the store."""
        plan = (
            EffectMonad.pure({"title": title, "content": content, "author": author})
            .with_effect(
                Effect(
                    EffectType.DATABASE_WRITE,
                    {"operation": "create", "title": title, "author": author},
                    f"Creating document: {title}",
                )
            )
            .with_effect(
                Effect(
                    EffectType.LOGGING,
                    {"author": author, "action": "create"},
                    f"Document created by {author}",
                )
            )
        )
        self.effect_handler.ensure_handled(plan.effects)
        return self.temporal_store.create_document(
            title, content, author, document_id=document_id, **self._outbox(plan)
        )

    def update_document(
        self,
        document_id: str,
        title: str | None = None,
        content: str | None = None,
        editor: str | None = None,
        *,
        retries: int = 0,
    ) -> bool:
        """Record a new version of a document; performs DATABASE_WRITE and NOTIFICATION.
        ``retries`` is passed to :meth:`TemporalStore.update_document`: how many times a
        change that lost a race with another writer is reapplied before
        :class:`ConcurrencyError` is raised."""
        document = self._existing(document_id)
        plan = self._change_plan(
            {"id": document_id, "title": title, "content": content, "editor": editor},
            document,
            "update",
            f"Document '{document.title}' was updated by {editor or 'unknown'}",
        )
        self.effect_handler.ensure_handled(plan.effects)
        return self.temporal_store.update_document(
            document_id, title, content, editor, retries=retries, **self._outbox(plan)
        )

    def delete_document(
        self, document_id: str, reason: str | None = None, *, retries: int = 0
    ) -> bool:
        """Delete a document (its versions stay readable); performs DATABASE_WRITE and
        NOTIFICATION. ``retries`` is passed to :meth:`TemporalStore.delete_document`."""
        document = self._existing(document_id)
        plan = self._change_plan(
            {"id": document_id, "reason": reason},
            document,
            "delete",
            f"Document '{document.title}' was deleted",
        )
        self.effect_handler.ensure_handled(plan.effects)
        return self.temporal_store.delete_document(
            document_id, reason, retries=retries, **self._outbox(plan)
        )

    def get_document(self, document_id: str) -> Document | None:
        """The document's latest version, or ``None``; performs a DATABASE_READ effect."""
        plan = EffectMonad.pure(document_id).with_effect(
            Effect(
                EffectType.DATABASE_READ, {"id": document_id}, f"Reading document: {document_id}"
            )
        )
        return self._perform(plan, self.temporal_store.get_document)

    def close(self) -> None:
        """Stop listening to the bus."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    @staticmethod
    def _change_plan(
        value: dict[str, str | None], document: Document, operation: str, notice: str
    ) -> EffectMonad[dict[str, str | None]]:
        """The effects of changing an existing document: the write, then telling its author."""
        verb = {"update": "Updating", "delete": "Deleting"}[operation]
        return (
            EffectMonad.pure(value)
            .with_effect(
                Effect(
                    EffectType.DATABASE_WRITE,
                    {"operation": operation, "id": document.document_id},
                    f"{verb} document: {document.document_id}",
                )
            )
            .with_effect(
                Effect(
                    EffectType.NOTIFICATION,
                    {"recipient": document.author, "document_id": document.document_id},
                    notice,
                )
            )
        )

    def _outbox(self, plan: EffectMonad[Any]) -> OutboxArguments:
        """The store's arguments that save the plan's effects in the write's outbox entry
        and perform them after the commit with this service's handler."""
        return {"effects": check_effects(plan.effects), "performer": self.effect_handler}

    def _perform(self, plan: EffectMonad[T], operation: Callable[[T], R]) -> R:
        # Refuse before writing: a missing performer must not leave a write whose
        # effects (notifications, audit logs) never happen.
        self.effect_handler.ensure_handled(plan.effects)
        return plan.map(operation).run(self.effect_handler)

    def _existing(self, document_id: str) -> Document:
        document = self.temporal_store.get_document(document_id)
        if document is None:
            raise DocumentNotFoundError(f"Document not found: {document_id}")
        return document

    def _handle_document_created(self, event: Event) -> None:
        logger.info("document created: %s", event.data)

    def _handle_document_updated(self, event: Event) -> None:
        logger.info("document updated: %s", event.data)

    def _handle_document_deleted(self, event: Event) -> None:
        logger.info("document deleted: %s", event.data)
