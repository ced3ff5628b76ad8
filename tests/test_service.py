"""DocumentService: the reference service, end to end through effects, store and bus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from atlas_eda import (
    DocumentDeletedError,
    DocumentNotFoundError,
    DocumentService,
    Effect,
    EffectHandler,
    EffectType,
    EventBus,
    EventType,
    TemporalStore,
    UnhandledEffectError,
)


class Outbox:
    """Records every effect performed, as a real performer would act on it."""

    def __init__(self) -> None:
        self.performed: list[Effect] = []

    def __call__(self, effect: Effect) -> dict[str, bool]:
        self.performed.append(effect)
        return {"success": True}

    def types(self) -> list[EffectType]:
        return [e.type for e in self.performed]  # type: ignore[misc]


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def service(bus: EventBus, store: TemporalStore, outbox: Outbox) -> Iterator[DocumentService]:
    handler = EffectHandler(temporal_store=store, event_bus=bus)
    for effect_type in EffectType:
        handler.register_handler(effect_type, outbox)
    svc = DocumentService(bus, store, handler)
    yield svc
    svc.close()


def test_create_writes_the_store_performs_effects_and_notifies(
    service: DocumentService, store: TemporalStore, bus: EventBus, outbox: Outbox
) -> None:
    doc_id = service.create_document("Title", "Body", "ada")

    document = store.get_document(doc_id)
    assert document is not None
    assert (document.title, document.content, document.author) == ("Title", "Body", "ada")
    assert outbox.types() == [EffectType.DATABASE_WRITE, EffectType.LOGGING]
    assert outbox.performed[0].payload == {"operation": "create", "title": "Title", "author": "ada"}
    [created] = bus.get_history(EventType.DOCUMENT_CREATED)
    assert created.data["id"] == doc_id


def test_update_and_delete_perform_write_and_notification(
    service: DocumentService, store: TemporalStore, outbox: Outbox
) -> None:
    doc_id = service.create_document("Title", "Body", "ada")
    outbox.performed.clear()

    assert service.update_document(doc_id, content="Body 2", editor="grace") is True
    assert outbox.types() == [EffectType.DATABASE_WRITE, EffectType.NOTIFICATION]
    assert outbox.performed[1].payload == {"recipient": "ada", "document_id": doc_id}
    assert "updated by grace" in outbox.performed[1].description

    assert service.delete_document(doc_id, reason="obsolete") is True
    deleted = store.get_document(doc_id)
    assert deleted is not None
    assert deleted.is_deleted
    assert deleted.deletion_reason == "obsolete"
    assert store.get_document(doc_id, version=2).content == "Body 2"  # type: ignore[union-attr]


def test_get_document_performs_a_read_effect(service: DocumentService, outbox: Outbox) -> None:
    doc_id = service.create_document("Title", "Body", "ada")
    outbox.performed.clear()

    document = service.get_document(doc_id)

    assert document is not None
    assert document.document_id == doc_id
    assert outbox.types() == [EffectType.DATABASE_READ]
    assert service.get_document("no-such-id") is None


@pytest.mark.parametrize("operation", ["update", "delete"])
def test_unknown_ids_raise_value_error_document_not_found(
    service: DocumentService, operation: str
) -> None:
    call = getattr(service, f"{operation}_document")
    with pytest.raises(ValueError, match="Document not found: missing") as raised:
        call("missing")
    assert isinstance(raised.value, DocumentNotFoundError)


def test_updating_a_deleted_document_is_refused(
    service: DocumentService, store: TemporalStore
) -> None:
    doc_id = service.create_document("Title", "Body", "ada")
    service.delete_document(doc_id)

    with pytest.raises(DocumentDeletedError):
        service.update_document(doc_id, content="late")
    assert store.get_document(doc_id).version == 2  # type: ignore[union-attr]


def test_missing_performer_is_refused_before_anything_is_written(
    bus: EventBus, store: TemporalStore, outbox: Outbox
) -> None:
    handler = EffectHandler(temporal_store=store, event_bus=bus)
    handler.register_handler(EffectType.DATABASE_WRITE, outbox)  # no LOGGING performer
    service = DocumentService(bus, store, handler)

    with pytest.raises(UnhandledEffectError, match=r"EffectType\.LOGGING"):
        service.create_document("Title", "Body", "ada")

    assert store.list_document_ids() == []
    assert outbox.performed == []
    assert bus.get_history() == []


def test_service_listens_to_document_events_and_stops_on_close(
    bus: EventBus, store: TemporalStore, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    handler = EffectHandler()
    for effect_type in EffectType:
        handler.register_handler(effect_type, outbox)
    service = DocumentService(bus, store, handler)

    with caplog.at_level("INFO", logger="atlas_eda.service"):
        doc_id = service.create_document("Title", "Body", "ada")
    [created] = bus.get_history(EventType.DOCUMENT_CREATED)
    assert created.data["id"] == doc_id
    assert [
        (r.levelname, r.getMessage()) for r in caplog.records if r.name == "atlas_eda.service"
    ] == [("INFO", f"document created: {created.data}")]

    service.close()
    caplog.clear()
    with caplog.at_level("INFO", logger="atlas_eda.service"):
        store.create_document("Other", "Body", "ada")
    assert not any(r.name == "atlas_eda.service" for r in caplog.records)
