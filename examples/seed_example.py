"""The "Complete Event-Driven Application Example" of the source document
(shared/seeds/002_b67567ea6e4b6428.txt), re-indented, with only its imports changed."""

from atlas_eda import (
    AspectWeaver,
    Effect,
    EffectHandler,
    EffectMonad,
    EffectType,
    EventBus,
    EventType,
    LoggingAspect,
    MetricsAspect,
    TemporalStore,
)

# First, set up the base components
event_bus = EventBus()
temp_store = TemporalStore(event_bus=event_bus)
effect_handler = EffectHandler(temporal_store=temp_store, event_bus=event_bus)

# Set up aspects
logging_aspect = LoggingAspect(event_bus=event_bus)
metrics_aspect = MetricsAspect()
aspect_weaver = AspectWeaver()

# Register aspects
aspect_weaver.register_aspect("logging", logging_aspect)
aspect_weaver.register_aspect("metrics", metrics_aspect)


# Set up effect handlers
def handle_database_write(effect):
    print(f"Handling database write: {effect.description}")
    # Actual database operation would go here
    return {"success": True}


def handle_notification(effect):
    print(f"Sending notification: {effect.description}")
    # Actual notification sending would go here
    return {"success": True}


def handle_logging(effect):
    print(f"Logging effect: {effect.description}")
    # Actual logging would go here
    return {"success": True}


# Register effect handlers
effect_handler.register_handler(EffectType.DATABASE_WRITE, handle_database_write)
effect_handler.register_handler(EffectType.NOTIFICATION, handle_notification)
effect_handler.register_handler(EffectType.LOGGING, handle_logging)


# Document service that uses the event-driven architecture
class DocumentService:
    def __init__(self, event_bus, temporal_store, effect_handler):
        self.event_bus = event_bus
        self.temporal_store = temporal_store
        self.effect_handler = effect_handler

        # Subscribe to document events
        self.event_bus.subscribe(EventType.DOCUMENT_CREATED, self._handle_document_created)
        self.event_bus.subscribe(EventType.DOCUMENT_UPDATED, self._handle_document_updated)
        self.event_bus.subscribe(EventType.DOCUMENT_DELETED, self._handle_document_deleted)

    def create_document(self, title, content, author):
        # Create an effect chain
        effect_monad = EffectMonad.pure({"title": title, "content": content, "author": author})

        # Add effects
        effect_monad = effect_monad.with_effect(
            Effect(
                EffectType.DATABASE_WRITE,
                {"operation": "create", "title": title, "author": author},
                f"Creating document: {title}",
            )
        )

        effect_monad = effect_monad.with_effect(
            Effect(
                EffectType.LOGGING,
                {"author": author, "action": "create"},
                f"Document created by {author}",
            )
        )

        # Execute effects and transform result
        result = effect_monad.map(
            lambda data: self.temporal_store.create_document(
                data["title"], data["content"], data["author"]
            )
        ).run(self.effect_handler)

        return result

    def update_document(self, document_id, title=None, content=None, editor=None):
        # Get document to verify it exists
        document = self.temporal_store.get_document(document_id)
        if not document:
            raise ValueError(f"Document not found: {document_id}")

        # Create an effect chain
        effect_monad = EffectMonad.pure(
            {"id": document_id, "title": title, "content": content, "editor": editor}
        )

        # Add effects
        effect_monad = effect_monad.with_effect(
            Effect(
                EffectType.DATABASE_WRITE,
                {"operation": "update", "id": document_id},
                f"Updating document: {document_id}",
            )
        )

        effect_monad = effect_monad.with_effect(
            Effect(
                EffectType.NOTIFICATION,
                {"recipient": document.author, "document_id": document_id},
                f"Document '{document.title}' was updated by {editor or 'unknown'}",
            )
        )

        # Execute effects and transform result
        result = effect_monad.map(
            lambda data: self.temporal_store.update_document(
                data["id"], data["title"], data["content"], data["editor"]
            )
        ).run(self.effect_handler)

        return result

    def delete_document(self, document_id, reason=None):
        # Get document to verify it exists
        document = self.temporal_store.get_document(document_id)
        if not document:
            raise ValueError(f"Document not found: {document_id}")

        # Create an effect chain
        effect_monad = EffectMonad.pure({"id": document_id, "reason": reason})

        # Add effects
        effect_monad = effect_monad.with_effect(
            Effect(
                EffectType.DATABASE_WRITE,
                {"operation": "delete", "id": document_id},
                f"Deleting document: {document_id}",
            )
        )

        effect_monad = effect_monad.with_effect(
            Effect(
                EffectType.NOTIFICATION,
                {"recipient": document.author, "document_id": document_id},
                f"Document '{document.title}' was deleted",
            )
        )

        # Execute effects and transform result
        result = effect_monad.map(
            lambda data: self.temporal_store.delete_document(data["id"], data["reason"])
        ).run(self.effect_handler)

        return result

    def get_document(self, document_id):
        effect_monad = EffectMonad.pure(document_id)

        # Add effects
        effect_monad = effect_monad.with_effect(
            Effect(
                EffectType.DATABASE_READ, {"id": document_id}, f"Reading document: {document_id}"
            )
        )

        # Execute effects and transform result
        result = effect_monad.map(lambda id: self.temporal_store.get_document(id)).run(
            self.effect_handler
        )

        return result

    def _handle_document_created(self, event):
        print(f"Document created event received: {event.data}")
        # Additional handling logic can go here

    def _handle_document_updated(self, event):
        print(f"Document updated event received: {event.data}")
        # Additional handling logic can go here

    def _handle_document_deleted(self, event):
        print(f"Document deleted event received: {event.data}")
        # Additional handling logic can go here


# Create the service
doc_service = DocumentService(event_bus, temp_store, effect_handler)

# Apply aspects to service methods
doc_service.create_document = aspect_weaver.apply_aspect("logging", doc_service.create_document)
doc_service.create_document = aspect_weaver.apply_aspect("metrics", doc_service.create_document)
doc_service.update_document = aspect_weaver.apply_aspect("logging", doc_service.update_document)
doc_service.delete_document = aspect_weaver.apply_aspect("logging", doc_service.delete_document)

# Now we can use the service with event-driven architecture
# Create a document
doc_id = doc_service.create_document(
    "Event-Driven Architecture with NERV",
    "This document explains how to implement event-driven architecture...",
    "[email protected]",
)

# Update the document
doc_service.update_document(
    doc_id,
    content="Updated content about event-driven architecture with NERV...",
    editor="[email protected]",
)

# Get recent events
recent_events = event_bus.get_history(limit=5)
for event in recent_events:
    print(f"Event: {event.type.name}, Data: {event.data}")

# Get metrics
print("\nMethod metrics:")
for method, metrics in metrics_aspect.get_metrics().items():
    print(f"{method}: {metrics['count']} calls, Avg time: {metrics.get('avg_time', 0):.4f}s")
