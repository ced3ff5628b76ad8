"""``atlas-eda show``: every field of a document, now, at a version or as of a time."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from uuid import UUID

from ..document import Document
from ..document_events import as_document_event, cause_of
from ..sagas import SagaState
from ..store import TemporalStore, redact_url
from ..timeline import Cause, DocumentState
from ..views import TEXT_CELL_WIDTH, when
from .command import Command, CommandError, integer
from .format import (
    add_width_options,
    cause_line,
    field_value,
    format_table,
    value_width,
    wrapped_rows,
)
from .stores import PREFIX_LENGTH, add_store_option, open_store, resolve_document

__all__ = ["COMMAND", "TIME_FORMAT", "find_saga", "parse_time", "run_show", "show_saga"]

TIME_FORMAT = (
    "YYYY-MM-DDTHH:MM:SS[.ffffff][+HH:MM], e.g. 2024-05-01T12:30:00 or 2024-05-01T12:30:00.5+02:00"
)
"""The ``--at`` format, as error messages and ``--help`` show it."""

LISTED_VERSIONS = 12
"""The most versions listed one by one under ``show``'s table; more are elided."""

ENDS_SHOWN = 5
"""How many of the first and of the last versions are listed when the middle is elided."""


def run_show(
    document: str,
    url: str | None,
    *,
    version: str | None = None,
    at: str | None = None,
    width: str | None = None,
    full: bool = False,
) -> None:
    """Print every field of a document at its latest version, at ``version``, or as of the
    ISO-8601 time ``at`` (UTC when it has no offset), the list of its versions, and the
    cause of the version shown (the bus event and handler that wrote it). Values are
    wrapped at 48 characters, or at ``width``; ``full`` prints each line of a value whole."""
    cells = value_width(width, full, TEXT_CELL_WIDTH)
    moment = parse_time(at) if at is not None else None
    with open_store(url) as store:
        saga_id = find_saga(store, document)
        if saga_id is not None:
            if moment is not None:
                raise CommandError(
                    f"{saga_id} is a saga: --at is for documents; give --version N instead."
                )
            show_saga(store, saga_id, None if version is None else integer(version, "--version"))
            return
        document_id, latest = resolve_document(store, document)
        if version is not None:
            found, how = _at_version(store, document_id, integer(version, "--version"), latest)
        elif moment is not None:
            found, how = _as_of(store, document_id, moment)
        else:
            found, how = store.get_document(document_id), f"latest version {latest}"
        if found is None:  # the store changed under us, or the log is inconsistent
            raise CommandError(f"document {document_id} could not be read at {how}.")
        state = DocumentState.of(found)
        rows: list[list[str]] = []
        for name, value in state.as_dict().items():
            rows.extend(wrapped_rows([name, field_value(name, value)], cells))
        title = f"Document {document_id}, {how}"
        print(format_table(title, ["field", "value"], rows, max_width=cells))
        print()
        print(versions_line(latest, state.version))
        print(cause_line(state.version, _cause(store, document_id, state.version)))


def find_saga(store: TemporalStore, given: str) -> str | None:
    """The id of the saga instance ``given`` names (its id, or a unique prefix of at
    least 4 characters), or ``None`` when it names none."""
    prefix = given.strip().lower()
    if len(prefix) < PREFIX_LENGTH:
        return None
    matches = [i for i in store.saga_ids() if i.startswith(prefix)]
    if len(matches) > 1:
        raise CommandError(
            f"{given!r} is the start of {len(matches)} saga ids; give more of the id (list "
            f"them with: atlas-eda sagas --store {redact_url(store.url)})."
        )
    return matches[0] if matches else None


def show_saga(store: TemporalStore, saga_id: str, version: int | None) -> None:
    """Print every field of a saga instance at its latest version or at ``version``, the
    list of its versions and the cause of the version shown."""
    latest = store.get_saga(saga_id)
    if latest is None:  # pragma: no cover  (the id came from the log)
        raise CommandError(f"saga {saga_id} could not be read.")
    if version is not None and not 1 <= version <= latest.version:
        raise CommandError(
            f"saga {saga_id} has no version {version}: versions run from 1 to {latest.version}."
        )
    record = latest if version is None else store.get_saga(saga_id, version)
    if record is None:  # pragma: no cover  (checked above)
        raise CommandError(f"saga {saga_id} could not be read at version {version}.")
    state = SagaState.of(record)
    how = f"latest version {state.version}" if version is None else f"version {version}"
    rows: list[list[str]] = []
    for name, value in state.as_dict().items():
        rows.extend(wrapped_rows([name, saga_value(value)]))
    rows.extend(wrapped_rows(["modified_at", field_value("modified_at", state.modified_at)]))
    print(format_table(f"Saga {saga_id}, {how}", ["field", "value"], rows))
    print()
    print(versions_line(latest.version, state.version))
    print(cause_line(state.version, state.cause))


def saga_value(value: object) -> str:
    """A saga field's value as text: sequences joined, ``None`` as empty, dicts as JSON."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, tuple):
        return ", ".join(
            saga_value(item) if isinstance(item, tuple) else str(item) for item in value
        )
    return str(value)


def _cause(store: TemporalStore, document_id: str, version: int) -> Cause | None:
    """The cause recorded with the event that made ``version`` of the document."""
    events = store.events.get(UUID(document_id), gt=version - 1, lte=version)
    return next((cause_of(as_document_event(e)) for e in events), None)


def _at_version(
    store: TemporalStore, document_id: str, wanted: int, latest: int
) -> tuple[Document | None, str]:
    """The document at version ``wanted``, and how the table's title says so."""
    if not 1 <= wanted <= latest:
        raise CommandError(
            f"document {document_id} has no version {wanted}: its latest version is "
            f"{latest} (versions run from 1 to {latest})."
        )
    return store.get_document(document_id, version=wanted), f"version {wanted}"


def _as_of(store: TemporalStore, document_id: str, moment: datetime) -> tuple[Document | None, str]:
    """The document as it was at ``moment``, and how the table's title says so."""
    found = store.get_document_at(document_id, moment)
    if found is None:
        first = store.get_document(document_id, version=1)
        created = when(first.created_at, precise=True) if first is not None else "later"
        raise CommandError(
            f"document {document_id} did not exist yet at {when(moment, precise=True)} UTC: "
            f"it was created at {created} UTC; give a later --at time."
        )
    return found, f"as of {when(moment, precise=True)} UTC: version {found.version}"


def parse_time(text: str) -> datetime:
    """An ISO-8601 time, in UTC; one without a UTC offset is taken as UTC. A time that
    cannot be moved to UTC (outside the years 1 to 9999 there) is a :class:`CommandError`."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            f"--at {text!r} is not an ISO-8601 time: expected {TIME_FORMAT}."
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        # In UTC here, so that comparing it with the store's times cannot overflow later
        # (0001-01-01T00:00:00+14:00 is before the first moment a datetime holds in UTC).
        return moment.astimezone(UTC)
    except OverflowError:
        raise CommandError(
            f"--at {text!r} is out of range: in UTC it falls outside the years 1 to 9999."
        ) from None


def versions_line(latest: int, shown: int) -> str:
    """The line under ``show``'s table: the document's versions (the middle elided when
    there are many), how many, which one is shown."""
    if latest > LISTED_VERSIONS:
        numbers = [
            *map(str, range(1, ENDS_SHOWN + 1)),
            "…",
            *map(str, range(latest - ENDS_SHOWN + 1, latest + 1)),
        ]
    else:
        numbers = [str(v) for v in range(1, latest + 1)]
    noun = "version" if latest == 1 else "versions"
    return f"Versions: {', '.join(numbers)} ({latest} {noun}; shown: {shown}, latest: {latest})"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "document", metavar="DOC_ID", help="the document's (or a saga's) id, or a prefix"
    )
    add_store_option(parser)
    moment = parser.add_mutually_exclusive_group()
    moment.add_argument("--version", metavar="N", help="the document at version N (1 = created)")
    moment.add_argument(
        "--at",
        metavar="ISO-TIME",
        help=f"the document as it was at this time, ISO 8601: {TIME_FORMAT}; "
        "a time without an offset is UTC",
    )
    add_width_options(parser)


def _run(args: argparse.Namespace) -> int:
    run_show(
        args.document,
        args.store,
        version=args.version,
        at=args.at,
        width=args.width,
        full=args.full,
    )
    return 0


COMMAND = Command(
    name="show",
    help="every field of a document (or a saga), now or at a version or time",
    description="Print every field of a document at its latest version, at a given "
    "version, or as it was at a given time, list its versions, and say which bus event "
    "and handler wrote the version shown. Given a saga's id, the same for the saga "
    "(--version only).",
    add_arguments=_arguments,
    run=_run,
)
