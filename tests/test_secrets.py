"""Secrets stay out of what the library shows (issue 16, items 10 and 11): exception
messages in ERROR events, logs, dead letters and cassettes; PostgreSQL passwords in every
message, log and repr."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import aspectlib
import pytest
from conftest import run_cli

from atlas_eda import (
    AtlasEdaError,
    EventBus,
    EventType,
    LoggingAspect,
    StoreFollower,
    StoreURLError,
    TemporalStore,
)
from atlas_eda.redaction import REDACTED, add_redaction_pattern, redact_text, redact_url
from atlas_eda.testing import record
from atlas_eda.testing.postgres import PostgresCluster

SECRET = "hunter2"


class Failing(Exception):
    pass


def _fail(_event: object) -> None:
    raise Failing(f"bad password {SECRET} for ann")


# -- item 10: exception messages -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bad password hunter2 for ann", "bad password *** for ann"),
        ("db_password=hunter2; retry", "db_password=***; retry"),
        ('{"api_key": "hunter2", "n": 1}', '{"api_key": ***, "n": 1}'),
        ("Authorization: Bearer hunter2", "Authorization: ***"),
        ("X-Api-Key: hunter2", "X-Api-Key: ***"),
        ("connect postgresql://u:hun/ter@2@h/db failed", "connect postgresql://u:***@h/db failed"),
        ("nothing to hide here", "nothing to hide here"),
    ],
)
def test_redact_text_hides_values_after_secret_names_and_url_passwords(
    text: str, expected: str
) -> None:
    assert redact_text(text) == expected


def test_user_patterns_are_applied_and_removable() -> None:
    remove = add_redaction_pattern(r"card (?P<secret>\d{16})")
    try:
        assert redact_text("card 4111111111111111 declined") == f"card {REDACTED} declined"
        remove_whole = add_redaction_pattern(re.compile(r"ssn-\d+"))
        assert redact_text("id ssn-123 and card 4111111111111111") == "id *** and card ***"
        remove_whole()
    finally:
        remove()
    assert redact_text("card 4111111111111111") == "card 4111111111111111"
    with pytest.raises(ValueError, match="not a valid regular expression"):
        add_redaction_pattern("(")
    with pytest.raises(ValueError, match="matches the empty string"):
        add_redaction_pattern("x*")
    with pytest.raises(TypeError, match="compiled str pattern"):
        add_redaction_pattern(42)  # type: ignore[arg-type]


def test_error_events_and_handler_logs_of_the_bus_are_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    errors: list[dict[str, object]] = []
    bus.subscribe(EventType.ERROR, lambda e: errors.append(dict(e.data)))
    bus.subscribe(EventType.DOCUMENT_CREATED, _fail)
    with caplog.at_level(logging.ERROR):
        bus.publish(EventType.DOCUMENT_CREATED, {"id": "1"})
    [error] = errors
    assert error["error_message"] == f"bad password {REDACTED} for ann"
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_user_patterns_reach_error_events() -> None:
    bus = EventBus()
    errors: list[str] = []
    bus.subscribe(EventType.ERROR, lambda e: errors.append(str(e.data["error_message"])))

    def leak(_event: object) -> None:
        raise Failing("customer 4111111111111111 refused")

    bus.subscribe(EventType.DOCUMENT_CREATED, leak)
    remove = add_redaction_pattern(r"\b\d{16}\b")
    try:
        bus.publish(EventType.DOCUMENT_CREATED, {})
    finally:
        remove()
    assert errors == [f"customer {REDACTED} refused"]


def test_dead_letters_show_the_message_redacted() -> None:
    bus = EventBus(failure_policy="dead_letter")
    bus.subscribe(EventType.DOCUMENT_CREATED, _fail)
    bus.publish(EventType.DOCUMENT_CREATED, {})
    [letter] = bus.dead_letters
    assert letter.error_message == f"Failing: bad password {REDACTED} for ann"
    assert SECRET not in repr(letter)
    assert str(letter.error) == f"bad password {SECRET} for ann"  # the exception itself


def test_logging_aspect_redacts_the_failure_in_its_log_and_error_event() -> None:
    class Account:
        def login(self, user: str) -> None:
            raise Failing(f"token {SECRET} rejected for {user}")

    bus = EventBus()
    errors: list[str] = []
    bus.subscribe(EventType.ERROR, lambda e: errors.append(str(e.data["error_message"])))
    lines: list[str] = []
    aspect = LoggingAspect(lines.append, event_bus=bus)
    account = Account()
    with aspectlib.weave(account.login, aspect), pytest.raises(Failing):
        account.login("ann")
    assert errors == [f"token {REDACTED} rejected for ann"]
    assert lines
    assert all(SECRET not in line for line in lines)


def test_cassettes_record_handler_and_effect_failures_redacted(tmp_path: Path) -> None:
    bus = EventBus()
    bus.subscribe(EventType.DOCUMENT_CREATED, _fail)
    path = tmp_path / "session.jsonl"
    with record(bus, path):
        bus.publish(EventType.DOCUMENT_CREATED, {"id": "1"})
    text = path.read_text()
    assert "bad password ***" in text
    assert SECRET not in text


def test_recorded_effect_errors_are_redacted() -> None:
    from atlas_eda.testing.cassette import RecordedError

    recorded = RecordedError.of(Failing(f"secret={SECRET}"))
    assert recorded.message == f"secret={REDACTED}"


# -- item 11: PostgreSQL passwords -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://atlas:s3/cr@t@127.0.0.1:5432/db",
            "postgresql://atlas:***@127.0.0.1:5432/db",
        ),
        ("postgresql://atlas:a%2Fb%40c@h:1/db?schema=s", "postgresql://atlas:***@h:1/db?schema=s"),
        ("postgresql://atlas:p?w#x@h/db", "postgresql://atlas:***@h/db"),
        ("postgres://atlas:pw@h:notaport/db", "postgres://atlas:***@h:notaport/db"),
        ("postgresql://atlas@h/db", "postgresql://atlas@h/db"),
        ("sqlite:///store.db", "sqlite:///store.db"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url_hides_every_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_url_with_an_unencoded_slash_is_refused_without_its_password() -> None:
    with pytest.raises(StoreURLError) as caught:
        TemporalStore(url="postgresql://atlas:s3/cr@t@127.0.0.1:5432/db")
    assert "s3/cr" not in str(caught.value)
    assert "cr@t" not in str(caught.value)


LEAKY_PASSWORD = "s3/cr@t:p?w#d"
"""A password with every character a URL gives a meaning to."""


def _forms(password: str) -> list[str]:
    """How a password can appear in output: as it is, URL-encoded, and its pieces."""
    return [password, quote(password, safe=""), "s3/cr", "cr@t", "p?w#d"]


@pytest.fixture
def leaky_role(pg_cluster: PostgresCluster) -> Iterator[str]:
    """A superuser role whose password holds '/', '@', ':', '?' and '#'."""
    pg_cluster.execute(f"CREATE ROLE leaky LOGIN SUPERUSER PASSWORD '{LEAKY_PASSWORD}'")
    yield "leaky"
    pg_cluster.execute("DROP OWNED BY leaky", "DROP ROLE leaky")


def _url(cluster: PostgresCluster, password: str, *, port: int | None = None, db: str = "") -> str:
    host = f"{cluster.host}:{port or cluster.port}"
    return f"postgresql://leaky:{quote(password, safe='')}@{host}/{db or cluster.database}"


def test_failing_postgresql_sessions_never_show_the_password(
    pg_cluster: PostgresCluster, leaky_role: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    schema = pg_cluster.create_schema()
    good = _url(pg_cluster, LEAKY_PASSWORD) + f"?schema={schema}&connect_timeout=2"
    wrong = _url(pg_cluster, "wr/ng@pa:ss") + "?connect_timeout=2"
    down = _url(pg_cluster, LEAKY_PASSWORD, port=1) + "?connect_timeout=2"
    bad_db = _url(pg_cluster, LEAKY_PASSWORD, db="no_such_db") + "?connect_timeout=2"
    raw = f"postgresql://leaky:{LEAKY_PASSWORD}@{pg_cluster.host}:{pg_cluster.port}/db"
    outputs: list[str] = []
    with caplog.at_level(logging.DEBUG):
        with TemporalStore(url=good) as store:
            document_id = store.create_document("t", "c", "ann")
            outputs += [repr(store), repr(store.timeline()), store.timeline()._repr_html_()]
        for url in (wrong, down, bad_db, raw):
            with pytest.raises(AtlasEdaError) as caught:
                TemporalStore(url=url)
            error: BaseException | None = caught.value
            while error is not None:  # the message, its repr, and every chained cause
                outputs += [str(error), repr(error)]
                error = error.__cause__ or error.__context__
    outputs += [record.getMessage() for record in caplog.records]
    for args in (
        ["log", "--store", good],
        ["show", document_id, "--store", good],
        ["show", "ffffffff", "--store", good],
        ["diff", "0", "1", "--store", good],
        ["follow", "--from-start", "--limit", "1", "--timeout", "10", "--store", good],
        *(["log", "--store", url] for url in (wrong, down, bad_db, raw)),
        *(["-v", "show", "abcd", "--store", url] for url in (wrong, down, bad_db)),
        ["follow", "--timeout", "2", "--store", wrong],
    ):
        result = run_cli(*args, cwd=tmp_path)
        outputs += [result.stdout, result.stderr]
        assert "Traceback" not in result.stderr, result.stderr
    pg_cluster.drop_schema(schema)
    everything = "\n".join(outputs)
    assert f"Log of {redact_url(good)}: positions 1 to 1" in everything  # read, and shown
    assert "leaky:***@" in everything  # the URLs are shown, without their password
    for form in [*_forms(LEAKY_PASSWORD), "wr/ng@pa:ss", "wr%2Fng%40pa%3Ass"]:
        assert form not in everything, form


def test_a_followers_durable_dead_letter_keeps_the_message_redacted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    writer = TemporalStore(url=url)
    writer.create_document("doc", "content", "ann")
    bus = EventBus(failure_policy="dead_letter")
    bus.subscribe(EventType.DOCUMENT_CREATED, _fail)
    with StoreFollower(url, bus, "indexer", from_start=True) as follower:
        assert follower.poll() == 1
    with StoreFollower(url, EventBus(), "indexer") as restarted:
        [letter] = restarted.dead_letters()
    assert letter.error_message == f"bad password {REDACTED} for ann"
    assert SECRET not in repr(letter)
    writer.close()
    assert SECRET.encode() not in (tmp_path / "store.db").read_bytes()
