"""Time travel: the store's global log as a Timeline, state as of any position, diffs,
replay, the stepping cursor, DocumentState, Jupyter views and the timeline plot.

Every expectation is checked against what the store showed *live*: after each command the
tests capture ``get_document(id).as_dict()`` for every document, and the time-travel views
must give back exactly those captures."""

from __future__ import annotations

import dataclasses
import inspect
import io
import itertools
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from uuid import uuid4

import matplotlib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from atlas_eda import (
    AtlasEdaError,
    Cursor,
    Document,
    DocumentDeletedError,
    DocumentState,
    Event,
    EventBus,
    FieldChange,
    PositionError,
    RecordedEvent,
    StateDiff,
    TemporalStore,
    Timeline,
)
from atlas_eda.plotting import KIND_COLOURS, plot_timeline, row_label
from atlas_eda.testing.postgres import PostgresCluster
from atlas_eda.timeline import HTML_ROWS

matplotlib.use("Agg")  # no display: plots render off screen

Fields = dict[str, Any]
"""``Document.as_dict()`` / ``DocumentState.as_dict()``."""

SCRIPT_TITLE = "<script>alert(1)</script>"


# -- live capture ----------------------------------------------------------------------


@dataclass
class Live:
    """Runs commands on a store and captures, right after each event, what the store shows
    live: ``states[p]`` is every document after the p-th event, ``versions[id][v]`` a
    document at version v, ``events[p - 1]`` (kind, id, version, changes) of the p-th event.
    It checks that every command adds exactly one event to a timeline held throughout."""

    store: TemporalStore
    timeline: Timeline = field(init=False)
    ids: list[str] = field(default_factory=list)
    states: list[dict[str, Fields]] = field(default_factory=lambda: [{}])
    versions: dict[str, dict[int, Fields]] = field(default_factory=dict)
    events: list[tuple[str, str, int, Fields]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.timeline = self.store.timeline()
        assert len(self.timeline) == 0

    def create(self, title: str, content: str, author: str) -> str:
        document_id = self.store.create_document(title, content, author)
        self.ids.append(document_id)
        self._captured(
            "created", document_id, {"title": title, "content": content, "author": author}
        )
        return document_id

    def update(
        self,
        document_id: str,
        title: str | None = None,
        content: str | None = None,
        editor: str | None = None,
    ) -> None:
        author = self.states[-1][document_id]["author"]
        assert self.store.update_document(document_id, title=title, content=content, editor=editor)
        changes = {k: v for k, v in (("title", title), ("content", content)) if v is not None}
        changes["last_editor"] = author if editor is None else editor
        self._captured("updated", document_id, changes)

    def delete(self, document_id: str, reason: str | None = None) -> None:
        assert self.store.delete_document(document_id, reason=reason)
        self._captured("deleted", document_id, {"is_deleted": True, "deletion_reason": reason})

    def is_deleted(self, document_id: str) -> bool:
        return bool(self.states[-1][document_id]["is_deleted"])

    def _captured(self, kind: str, document_id: str, changes: Fields) -> None:
        state: dict[str, Fields] = {}
        for each in self.ids:
            document = self.store.get_document(each)
            assert document is not None
            state[each] = document.as_dict()
        self.states.append(state)
        version = state[document_id]["version"]
        self.versions.setdefault(document_id, {})[version] = state[document_id]
        self.events.append((kind, document_id, version, changes))
        assert len(self.timeline) == len(self.events)  # the timeline follows the store


def as_dicts(state: dict[str, DocumentState]) -> dict[str, Fields]:
    return {k: v.as_dict() for k, v in state.items()}


def scripted(store: TemporalStore) -> tuple[Live, dict[str, str]]:
    """Ten events over four documents, every kind, two deletions:

    1 create A · 2 create B · 3 update A (title, editor) · 4 update B (content) ·
    5 create C · 6 delete B (reason) · 7 update A (content) · 8 update C (all fields) ·
    9 delete A (no reason) · 10 create D
    """
    live = Live(store)
    a = live.create("Alpha", "a1", "ann")
    b = live.create("Beta", "b1", "bob")
    live.update(a, title="Alpha 2", editor="eve")
    live.update(b, content="b2")
    c = live.create(SCRIPT_TITLE, "c1 & <b>bold</b>", "cat")
    live.delete(b, reason="obsolete")
    live.update(a, content="a3", editor="ann")
    live.update(c, title="Gamma 2", content="c2", editor="dan")
    live.delete(a)
    d = live.create("Delta", "d1", "dot")
    return live, {"A": a, "B": b, "C": c, "D": d}


@pytest.fixture
def script(store: TemporalStore) -> tuple[Live, dict[str, str]]:
    return scripted(store)


def check_against_live(store: TemporalStore, live: Live, *, checkpoint_every: int) -> None:
    """The store's timeline, states and versions are exactly the live captures."""
    timeline = Timeline(store, checkpoint_every=checkpoint_every)
    assert len(timeline) == len(live.events)
    assert [(e.kind, e.document_id, e.version, e.changes) for e in timeline] == live.events
    for p in range(len(timeline) + 1):
        assert as_dicts(timeline.state_at(p)) == live.states[p], p
    for document_id, versions in live.versions.items():
        for version, expected in versions.items():
            document = store.get_document(document_id, version=version)
            assert document is not None, (document_id, version)
            assert document.as_dict() == expected, (document_id, version)
        assert store.get_document(document_id, version=max(versions) + 1) is None


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"  # tmp paths are absolute: four slashes


# -- the sequence ----------------------------------------------------------------------


def test_len_follows_the_store_as_it_grows(store: TemporalStore) -> None:
    timeline = store.timeline()
    assert len(timeline) == 0
    assert list(timeline) == []
    assert timeline[:] == []
    document_id = store.create_document("t", "c", "a")
    assert len(timeline) == 1
    store.update_document(document_id, title="t2")
    store.delete_document(document_id)
    assert len(timeline) == 3
    assert len(timeline) == store.recorder.max_notification_id()
    assert store.update_document(str(uuid4()), title="x") is False  # nothing recorded
    assert len(timeline) == 3


def test_items_are_recorded_events_with_their_changes(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, ids = script
    timeline = live.timeline
    events = list(timeline)
    assert all(isinstance(e, RecordedEvent) for e in events)
    assert [e.position for e in events] == list(range(1, 11))
    assert [(e.kind, e.document_id, e.version, e.changes) for e in events] == live.events

    a, b = ids["A"], ids["B"]
    assert events[0].changes == {"title": "Alpha", "content": "a1", "author": "ann"}
    assert (events[0].kind, events[0].version) == ("created", 1)
    # an update records only the fields given, plus who edited (the author by default)
    assert events[2].changes == {"title": "Alpha 2", "last_editor": "eve"}
    assert (events[2].kind, events[2].document_id, events[2].version) == ("updated", a, 2)
    assert events[3].changes == {"content": "b2", "last_editor": "bob"}
    assert events[7].changes == {"title": "Gamma 2", "content": "c2", "last_editor": "dan"}
    assert events[5].changes == {"is_deleted": True, "deletion_reason": "obsolete"}
    assert (events[5].kind, events[5].document_id, events[5].version) == ("deleted", b, 3)
    assert events[8].changes == {"is_deleted": True, "deletion_reason": None}
    assert {e.kind for e in events} == {"created", "updated", "deleted"}


def test_timestamps_are_aware_utc_and_those_of_the_stored_versions(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, _ = script
    previous: datetime | None = None
    for event in live.timeline:
        assert event.timestamp.tzinfo is not None
        assert event.timestamp.utcoffset() == timedelta(0)
        expected = live.versions[event.document_id][event.version]
        assert event.timestamp.timestamp() == expected["modified_at"]
        if event.kind == "created":
            assert event.timestamp.timestamp() == expected["created_at"]
        if previous is not None:
            assert event.timestamp >= previous
        previous = event.timestamp


def test_indexing_is_zero_based_and_accepts_negative_indices(
    script: tuple[Live, dict[str, str]],
) -> None:
    timeline = script[0].timeline
    everything = list(timeline)
    for index in range(-10, 10):
        assert timeline[index] == everything[index]
        assert timeline[index].position == (index % 10) + 1
    assert timeline[0].position == 1
    assert timeline[-1].position == 10
    assert timeline.event_at(4) == timeline[3]


@pytest.mark.parametrize("index", [10, 11, 1000, -11, -1000])
def test_an_index_out_of_range_raises_index_error(
    script: tuple[Live, dict[str, str]], index: int
) -> None:
    with pytest.raises(IndexError, match="out of range"):
        script[0].timeline[index]


@pytest.mark.parametrize("index", ["1", 1.0, None, (1,)])
def test_an_index_that_is_not_an_int_raises_type_error(
    script: tuple[Live, dict[str, str]], index: Any
) -> None:
    with pytest.raises(TypeError, match="int or slice"):
        script[0].timeline[index]


@pytest.mark.parametrize("position", [0, 11, -1])
def test_event_at_takes_an_existing_1_based_position(
    script: tuple[Live, dict[str, str]], position: int
) -> None:
    with pytest.raises(PositionError):
        script[0].timeline.event_at(position)


BOUNDS = [None, -25, -12, -3, 0, 1, 5, 9, 10, 11, 25]
STEPS = [None, 1, 2, 3, 7, -1, -2, -3, -7]


@pytest.mark.parametrize("page_size", [1, 3, 200])
def test_slices_with_any_bounds_and_steps_are_those_of_a_list(
    store: TemporalStore, page_size: int
) -> None:
    scripted(store)
    timeline = store.timeline(page_size=page_size)
    everything = list(timeline)
    assert len(everything) == 10
    for start, stop, step in itertools.product(BOUNDS, BOUNDS, STEPS):
        chosen = timeline[start:stop:step]
        assert isinstance(chosen, list)
        assert chosen == everything[start:stop:step], (start, stop, step)


def test_a_zero_step_is_refused(script: tuple[Live, dict[str, str]]) -> None:
    with pytest.raises(ValueError, match="zero"):
        script[0].timeline[::0]


def test_iteration_is_in_position_order_and_can_start_anywhere(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, ids = script
    timeline = live.timeline
    assert [e.position for e in timeline] == list(range(1, 11))
    assert [e.position for e in timeline.iter_from(7)] == [7, 8, 9, 10]
    assert [e.position for e in timeline.iter_from(3, stop=5)] == [3, 4, 5]
    assert [e.position for e in timeline.iter_from(11)] == []
    a_events = list(timeline.iter_from(1, document_id=ids["A"]))
    assert [(e.position, e.version) for e in a_events] == [(1, 1), (3, 2), (7, 3), (9, 4)]
    assert list(timeline.iter_from(1, document_id=str(uuid4()))) == []
    assert list(timeline.iter_from(1, document_id="not-a-uuid")) == []


def test_page_size_and_checkpoint_interval_must_be_positive(store: TemporalStore) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Timeline(store, page_size=0)
    with pytest.raises(ValueError, match="at least 1"):
        Timeline(store, checkpoint_every=0)


# -- paging ------------------------------------------------------------------------------


@dataclass
class Reads:
    """Each ``select_notifications`` call: the limit asked for and how many came back."""

    calls: list[tuple[int, int]] = field(default_factory=list)

    @property
    def returned(self) -> int:
        return sum(n for _, n in self.calls)

    def clear(self) -> None:
        self.calls.clear()


@pytest.fixture
def reads(store: TemporalStore, monkeypatch: pytest.MonkeyPatch) -> Reads:
    """A spy on the real recorder: counts what the timeline reads, changes nothing."""
    spied = Reads()
    real: Callable[..., Sequence[Any]] = store.recorder.select_notifications
    signature = inspect.signature(real)

    def counting(*args: Any, **kwargs: Any) -> Sequence[Any]:
        page = real(*args, **kwargs)
        spied.calls.append((signature.bind(*args, **kwargs).arguments["limit"], len(page)))
        return page

    monkeypatch.setattr(store.recorder, "select_notifications", counting)
    return spied


def twenty_events(store: TemporalStore) -> list[str]:
    ids = [store.create_document(f"doc {i}", f"content {i}", "ann") for i in range(8)]
    for i in range(8):
        store.update_document(ids[i], content=f"revised {i}", editor="bob")
    for i in range(4):
        store.delete_document(ids[i], reason=f"reason {i}")
    return ids


def test_iteration_reads_the_log_page_by_page(store: TemporalStore, reads: Reads) -> None:
    twenty_events(store)
    reads.clear()
    timeline = store.timeline(page_size=3)
    assert len(timeline) == 20
    positions = [e.position for e in timeline]
    assert positions == list(range(1, 21))
    assert all(limit <= 3 for limit, _ in reads.calls)
    assert reads.returned == 20  # nothing read twice
    assert 7 <= len(reads.calls) <= 8  # ceil(20 / 3) pages (and the empty one ending it)


def test_one_item_reads_one_notification(store: TemporalStore, reads: Reads) -> None:
    twenty_events(store)
    timeline = store.timeline(page_size=3)
    reads.clear()
    event = timeline[5]
    assert event.position == 6
    assert reads.calls == [(1, 1)]
    reads.clear()
    assert timeline[-1].position == 20
    assert reads.calls == [(1, 1)]


def test_slices_read_only_their_range_page_by_page(store: TemporalStore, reads: Reads) -> None:
    twenty_events(store)
    timeline = store.timeline(page_size=3)
    everything = list(store.timeline(page_size=1000))
    for chosen, reference in [
        (slice(4, 17), everything[4:17]),
        (slice(2, 19, 4), everything[2:19:4]),
        (slice(17, 2, -1), everything[17:2:-1]),
        (slice(None, None, -3), everything[::-3]),
    ]:
        reads.clear()
        assert timeline[chosen] == reference
        assert all(limit <= 3 for limit, _ in reads.calls), chosen
        start, stop, step = chosen.indices(20)
        span = stop - start if step > 0 else start - stop
        assert reads.returned == span, chosen  # the covered range, each event once


def test_state_at_reads_page_by_page(store: TemporalStore, reads: Reads) -> None:
    twenty_events(store)
    timeline = Timeline(store, page_size=3, checkpoint_every=5)
    reads.clear()
    timeline.state_at(20)
    assert all(limit <= 3 for limit, _ in reads.calls)
    assert reads.returned == 20
    reads.clear()
    timeline.state_at(13)  # checkpoint 10, then three more events
    assert reads.returned == 3


def test_the_html_view_reads_only_the_rows_it_shows(store: TemporalStore, reads: Reads) -> None:
    for i in range(HTML_ROWS + 50):
        store.create_document(f"t{i}", "c", "a")
    reads.clear()
    store.timeline()._repr_html_()
    assert reads.returned == HTML_ROWS


# -- state as of a position ------------------------------------------------------------


@pytest.mark.parametrize("checkpoint_every", [1, 3, 1000])
def test_state_at_every_position_is_the_live_capture(
    store: TemporalStore, checkpoint_every: int
) -> None:
    live, ids = scripted(store)
    timeline = Timeline(store, checkpoint_every=checkpoint_every)
    for p in range(len(timeline) + 1):
        state = timeline.state_at(p)
        assert all(isinstance(s, DocumentState) for s in state.values())
        assert as_dicts(state) == live.states[p], p
        assert list(state) == [i for i in live.ids if i in state]  # creation order
    # the same answers in any order of asking, on a fresh index
    timeline = Timeline(store, checkpoint_every=checkpoint_every)
    for p in [10, 0, 7, 3, 9, 1, 6, 6, 2, 8, 4, 5]:
        assert as_dicts(timeline.state_at(p)) == live.states[p], p
    final = timeline.state_at(10)
    assert final[ids["A"]].is_deleted
    assert final[ids["B"]].is_deleted
    assert final[ids["B"]].deletion_reason == "obsolete"
    assert not final[ids["D"]].is_deleted


def test_state_at_keeps_up_as_the_store_grows(store: TemporalStore) -> None:
    live, ids = scripted(store)
    timeline = Timeline(store, checkpoint_every=3)
    assert as_dicts(timeline.state_at(10)) == live.states[10]
    live.update(ids["D"], title="Delta 2")
    live.update(ids["C"], content="c3", editor="eve")
    live.delete(ids["C"], reason="done")
    for p in range(len(live.states)):
        assert as_dicts(timeline.state_at(p)) == live.states[p], p


def test_state_at_of_an_empty_store_is_empty(store: TemporalStore) -> None:
    timeline = store.timeline()
    assert timeline.state_at(0) == {}
    with pytest.raises(PositionError, match="last recorded position is 0"):
        timeline.state_at(1)


@pytest.mark.parametrize("position", [11, 12, 10_000])
def test_a_position_past_the_end_names_the_last_one(
    script: tuple[Live, dict[str, str]], position: int
) -> None:
    with pytest.raises(PositionError, match=r"past the end.*last recorded position is 10\b") as e:
        script[0].timeline.state_at(position)
    assert isinstance(e.value, AtlasEdaError)
    assert isinstance(e.value, IndexError)


@pytest.mark.parametrize("position", [-1, -10, -11])
def test_a_negative_position_is_refused_naming_the_range(
    script: tuple[Live, dict[str, str]], position: int
) -> None:
    with pytest.raises(PositionError, match=r"before the start.*from 0 to 10\b"):
        script[0].timeline.state_at(position)


@pytest.mark.parametrize("position", ["3", 3.0, None, True])
def test_a_position_that_is_not_an_int_raises_type_error(
    script: tuple[Live, dict[str, str]], position: Any
) -> None:
    with pytest.raises(TypeError, match="must be an int"):
        script[0].timeline.state_at(position)


# -- the property ------------------------------------------------------------------------


@dataclass(frozen=True)
class Create:
    title: str
    content: str
    author: str


@dataclass(frozen=True)
class Update:
    target: int
    title: str | None
    content: str | None
    editor: str | None


@dataclass(frozen=True)
class Delete:
    target: int
    reason: str | None


TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
NAME = st.sampled_from(["ann", "bob", "", "Zoë"])
COMMANDS = st.lists(
    st.one_of(
        st.builds(Create, TEXT, TEXT, NAME),
        st.builds(Update, st.integers(0, 5), st.none() | TEXT, st.none() | TEXT, st.none() | NAME),
        st.builds(Delete, st.integers(0, 5), st.none() | TEXT),
    ),
    min_size=1,
    max_size=14,
)


def change(store: TemporalStore, target: str, command: Update | Delete) -> bool:
    if isinstance(command, Update):
        return store.update_document(target, command.title, command.content, command.editor)
    return store.delete_document(target, reason=command.reason)


def run_commands(live: Live, commands: list[Create | Update | Delete]) -> None:
    store = live.store
    for command in commands:
        if isinstance(command, Create):
            live.create(command.title, command.content, command.author)
            continue
        if not live.ids:
            continue
        target = live.ids[command.target % len(live.ids)]
        if live.is_deleted(target):
            # refused, and nothing recorded
            with pytest.raises(DocumentDeletedError):
                change(store, target, command)
            assert len(live.timeline) == len(live.events)
        elif isinstance(command, Update):
            live.update(target, command.title, command.content, command.editor)
        else:
            live.delete(target, command.reason)


def check_time_travel_after_reopening(
    url: str, commands: list[Create | Update | Delete], snapshot_interval: int
) -> None:
    store = TemporalStore(url=url, snapshot_interval=snapshot_interval)
    try:
        live = Live(store)
        run_commands(live, commands)
        check_against_live(store, live, checkpoint_every=1000)
        check_against_live(store, live, checkpoint_every=3)
        before = list(store.timeline())
    finally:
        store.close()
    reopened = TemporalStore(url=url, snapshot_interval=snapshot_interval)
    try:
        assert list(reopened.timeline()) == before  # timestamps and all
        check_against_live(reopened, live, checkpoint_every=2)
    finally:
        reopened.close()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(commands=COMMANDS, snapshot_interval=st.sampled_from([0, 2]))
def test_time_travel_gives_back_exactly_what_was_seen_live_also_after_reopening(
    commands: list[Create | Update | Delete], snapshot_interval: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        url = sqlite_url(Path(directory) / "store.db")
        check_time_travel_after_reopening(url, commands, snapshot_interval)


def test_time_travel_gives_back_exactly_what_was_seen_live_on_postgresql(
    pg_cluster: PostgresCluster,
) -> None:
    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(commands=COMMANDS, snapshot_interval=st.sampled_from([0, 2]))
    def check(commands: list[Create | Update | Delete], snapshot_interval: int) -> None:
        schema = pg_cluster.create_schema()
        try:
            url = pg_cluster.url(schema=schema, pool_size=1)
            check_time_travel_after_reopening(url, commands, snapshot_interval)
        finally:
            pg_cluster.drop_schema(schema)

    check()


# -- a document at a moment ------------------------------------------------------------


def between(earlier: datetime, later: datetime) -> datetime:
    assert earlier < later, "two events were recorded in the same microsecond"
    return earlier + (later - earlier) / 2


def test_get_document_at_a_moment(script: tuple[Live, dict[str, str]]) -> None:
    live, ids = script
    store, a = live.store, ids["A"]
    times = [e.timestamp for e in live.timeline.iter_from(1, document_id=a)]
    assert len(times) == 4  # v1 created, v2, v3 updated, v4 deleted
    versions = live.versions[a]
    tick = timedelta(microseconds=1)

    def at(when: datetime) -> Fields | None:
        document = store.get_document_at(a, when)
        return None if document is None else document.as_dict()

    assert at(times[0] - tick) is None  # before creation
    assert at(times[0]) == versions[1]  # exactly at a version's time: that version
    assert at(between(times[0], times[1])) == versions[1]  # between two: the earlier
    assert at(times[1] - tick) == versions[1]
    assert at(times[1]) == versions[2]
    assert at(between(times[1], times[2])) == versions[2]
    assert at(times[2]) == versions[3]
    assert at(times[3]) == versions[4]  # the deletion
    assert at(times[3] + timedelta(days=365)) == versions[4]  # after deletion: deleted
    assert versions[4]["is_deleted"]
    # the same moment in another time zone is the same moment
    eastern = timezone(timedelta(hours=-5))
    assert at(times[1].astimezone(eastern)) == versions[2]
    assert at((times[1] - tick).astimezone(timezone(timedelta(hours=9)))) == versions[1]
    # B was created after A: at A's creation it did not exist yet
    b_created = live.timeline[1].timestamp
    assert at(b_created) == versions[1]
    assert store.get_document_at(ids["B"], between(times[0], b_created)) is None


def test_get_document_at_refuses_a_naive_or_non_datetime_moment(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, ids = script
    moment = live.timeline[2].timestamp
    with pytest.raises(ValueError, match="timezone-aware"):
        live.store.get_document_at(ids["A"], moment.replace(tzinfo=None))
    with pytest.raises(ValueError, match="timezone-aware"):
        live.store.get_document_at(ids["A"], datetime.now())
    for not_a_datetime in [moment.timestamp(), moment.isoformat(), moment.date(), None]:
        with pytest.raises(TypeError, match="must be a datetime"):
            live.store.get_document_at(ids["A"], not_a_datetime)  # type: ignore[arg-type]
    assert isinstance(moment.date(), date)


@pytest.mark.parametrize("document_id", [str(uuid4()), "not-a-uuid", ""])
def test_get_document_at_an_unknown_id_is_none(
    script: tuple[Live, dict[str, str]], document_id: str
) -> None:
    assert script[0].store.get_document_at(document_id, datetime.now(UTC)) is None


# -- diffs -------------------------------------------------------------------------------


def test_diff_adds_removes_and_changes_field_by_field(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, ids = script
    timeline = live.timeline
    a, b, c = ids["A"], ids["B"], ids["C"]

    added = timeline.diff(0, 2)
    assert isinstance(added, StateDiff)
    assert (added.a, added.b) == (0, 2)
    assert list(added.added) == [a, b]
    assert as_dicts(added.added) == live.states[2]
    assert added.removed == {}
    assert added.changed == {}
    assert added

    removed = timeline.diff(5, 1)  # going back: B and C did not exist yet
    assert list(removed.removed) == [b, c]
    assert removed.added == {}
    assert set(removed.changed) == {a}  # A was at v2 at 5, v1 at 1

    changed = timeline.diff(2, 3)
    assert changed.added == {}
    assert changed.removed == {}
    assert set(changed.changed) == {a}
    fields = changed.changed[a]
    assert fields["title"] == FieldChange(before="Alpha", after="Alpha 2")
    assert fields["last_editor"] == FieldChange("ann", "eve")
    assert fields["version"] == FieldChange(1, 2)
    assert fields["modified_at"] == FieldChange(
        live.states[2][a]["modified_at"], live.states[3][a]["modified_at"]
    )
    assert set(fields) == {"title", "last_editor", "version", "modified_at"}

    deleted = timeline.diff(5, 6)
    assert set(deleted.changed) == {b}
    assert deleted.changed[b]["is_deleted"] == FieldChange(False, True)
    assert deleted.changed[b]["deletion_reason"] == FieldChange(None, "obsolete")
    assert deleted.changed[b]["deleted_at"].before is None
    assert set(deleted.changed[b]) == {
        "version",
        "modified_at",
        "is_deleted",
        "deleted_at",
        "deletion_reason",
    }


def test_diff_between_any_two_positions_matches_the_live_captures(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, _ = script
    timeline = live.timeline
    for a, b in itertools.product(range(11), repeat=2):
        diff = timeline.diff(a, b)
        before, after = live.states[a], live.states[b]
        assert as_dicts(diff.added) == {k: v for k, v in after.items() if k not in before}
        assert as_dicts(diff.removed) == {k: v for k, v in before.items() if k not in after}
        expected = {
            k: {
                f: FieldChange(before[k][f], after[k][f])
                for f in before[k]
                if before[k][f] != after[k][f]
            }
            for k in before.keys() & after.keys()
        }
        assert diff.changed == {k: v for k, v in expected.items() if v}, (a, b)
        assert bool(diff) == (before != after), (a, b)


def test_diff_of_a_position_with_itself_is_empty(script: tuple[Live, dict[str, str]]) -> None:
    for p in range(11):
        diff = script[0].timeline.diff(p, p)
        assert not diff
        assert (diff.added, diff.removed, diff.changed) == ({}, {}, {})
        assert diff.rows() == []


def test_diff_rows_list_every_change(script: tuple[Live, dict[str, str]]) -> None:
    live, ids = script
    a, b = ids["A"], ids["B"]
    rows = live.timeline.diff(1, 3).rows()
    assert rows[0] == (b, "added", "title", None, "Beta")
    assert (a, "changed", "title", "Alpha", "Alpha 2") in rows
    assert (a, "changed", "last_editor", "ann", "eve") in rows
    assert len(rows) == 1 + 4
    assert live.timeline.diff(3, 1).rows()[0] == (b, "removed", "title", "Beta", None)


def test_diff_positions_are_checked(script: tuple[Live, dict[str, str]]) -> None:
    timeline = script[0].timeline
    with pytest.raises(PositionError, match="10"):
        timeline.diff(0, 11)
    with pytest.raises(PositionError):
        timeline.diff(-1, 3)
    with pytest.raises(TypeError):
        timeline.diff("0", 3)  # type: ignore[arg-type]


# -- replay ------------------------------------------------------------------------------


def assert_holds_prefix(target: TemporalStore, live: Live, until: int) -> None:
    """``target`` holds exactly the source's first ``until`` events."""
    source_events = live.timeline[:until]
    assert list(target.timeline()) == source_events
    assert len(target.timeline()) == until
    assert as_dicts(target.timeline().state_at(until)) == live.states[until]
    expected_ids = [i for i in live.ids if i in live.states[until]]
    assert target.list_document_ids() == expected_ids
    for document_id in expected_ids:
        last = live.states[until][document_id]["version"]
        for version in range(1, last + 1):
            document = target.get_document(document_id, version=version)
            assert document is not None
            assert document.as_dict() == live.versions[document_id][version]
        assert target.get_document(document_id, version=last + 1) is None


@pytest.fixture
def published(bus: EventBus) -> list[Event]:
    events: list[Event] = []
    bus.subscribe_all(events.append)
    return events


@pytest.mark.parametrize("until", [1, 6, 9, 10])
def test_replay_into_memory_holds_exactly_the_prefix(
    script: tuple[Live, dict[str, str]], published: list[Event], until: int
) -> None:
    live, _ = script
    published.clear()
    replayed = live.timeline.replay(until=until, into="memory://")
    assert isinstance(replayed, TemporalStore)
    assert replayed is not live.store
    assert_holds_prefix(replayed, live, until)
    assert published == []  # the source's bus heard nothing
    assert len(live.timeline) == 10  # the source is untouched
    replayed.close()


def test_replay_defaults_to_a_memory_store(script: tuple[Live, dict[str, str]]) -> None:
    live, _ = script
    replayed = live.timeline.replay(4)
    assert replayed.url == "memory://"
    assert_holds_prefix(replayed, live, 4)


def test_replay_into_a_sqlite_url_persists(
    script: tuple[Live, dict[str, str]], tmp_path: Path
) -> None:
    live, ids = script
    url = sqlite_url(tmp_path / "what-if.db")
    replayed = live.timeline.replay(until=7, into=url)
    assert replayed.url == url
    assert_holds_prefix(replayed, live, 7)
    replayed.close()
    reopened = TemporalStore(url=url)
    try:
        assert_holds_prefix(reopened, live, 7)
        # what if: the replayed store goes its own way; the source does not follow
        assert reopened.update_document(ids["A"], title="another path")
        document = reopened.get_document(ids["A"])
        assert document is not None
        assert document.version == 4
        assert not document.is_deleted
    finally:
        reopened.close()
    assert live.timeline[8].kind == "deleted"
    assert len(live.timeline) == 10


def test_replay_into_an_empty_store_publishes_nothing_on_its_bus(
    script: tuple[Live, dict[str, str]], published: list[Event]
) -> None:
    live, _ = script
    target_bus = EventBus()
    heard: list[Event] = []
    target_bus.subscribe_all(heard.append)
    target = TemporalStore(target_bus, url="memory://")
    published.clear()
    assert live.timeline.replay(until=8, into=target) is target
    assert_holds_prefix(target, live, 8)
    assert heard == []
    assert published == []
    target.close()


def test_replay_refuses_a_store_that_holds_events_and_leaves_it_unchanged(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, _ = script
    target = TemporalStore(url="memory://")
    kept = target.create_document("mine", "keep me", "me")
    before = list(target.timeline())
    with pytest.raises(AtlasEdaError, match="already holds events"):
        live.timeline.replay(until=5, into=target)
    assert list(target.timeline()) == before
    assert target.list_document_ids() == [kept]
    assert len(live.timeline) == 10
    target.close()


def test_replay_refuses_a_sqlite_file_that_holds_events(
    script: tuple[Live, dict[str, str]], tmp_path: Path
) -> None:
    live, _ = script
    url = sqlite_url(tmp_path / "busy.db")
    existing = TemporalStore(url=url)
    kept = existing.create_document("mine", "keep me", "me")
    existing.close()
    with pytest.raises(AtlasEdaError, match="already holds events"):
        live.timeline.replay(until=5, into=url)
    reopened = TemporalStore(url=url)
    try:
        assert len(reopened.timeline()) == 1
        assert reopened.list_document_ids() == [kept]
    finally:
        reopened.close()


def test_replay_until_zero_gives_an_empty_store(script: tuple[Live, dict[str, str]]) -> None:
    replayed = script[0].timeline.replay(until=0)
    assert len(replayed.timeline()) == 0
    assert replayed.list_document_ids() == []


@pytest.mark.parametrize("until", [11, -1])
def test_replay_until_a_position_that_does_not_exist_is_refused(
    script: tuple[Live, dict[str, str]], until: int
) -> None:
    with pytest.raises(PositionError, match="10"):
        script[0].timeline.replay(until=until)


# -- the cursor --------------------------------------------------------------------------


def test_a_cursor_starts_at_the_end_and_steps(script: tuple[Live, dict[str, str]]) -> None:
    live, _ = script
    timeline = live.timeline
    cursor = timeline.cursor()
    assert isinstance(cursor, Cursor)
    assert cursor.position == 10
    assert cursor.event == timeline[-1]
    assert as_dicts(cursor.state) == live.states[10]

    assert cursor.back() is cursor
    assert cursor.position == 9
    assert cursor.event == timeline[8]
    assert cursor.back(3).position == 6
    assert as_dicts(cursor.state) == live.states[6]
    assert cursor.forward().position == 7
    assert cursor.forward(2).position == 9
    assert cursor.goto(2).position == 2
    assert cursor.state == timeline.state_at(2)
    at_start = cursor.goto(0)
    assert at_start.position == 0
    assert at_start.event is None
    assert at_start.state == {}
    for p in range(11):
        cursor.goto(p)
        assert as_dicts(cursor.state) == live.states[p]
        assert cursor.event == (timeline[p - 1] if p else None)


def test_a_cursor_does_not_move_past_either_end(script: tuple[Live, dict[str, str]]) -> None:
    cursor = script[0].timeline.cursor()
    with pytest.raises(PositionError, match="10"):
        cursor.forward()
    assert cursor.position == 10
    cursor.goto(0)
    with pytest.raises(PositionError):
        cursor.back()
    assert cursor.position == 0
    cursor.goto(4)
    with pytest.raises(PositionError):
        cursor.goto(11)
    with pytest.raises(PositionError):
        cursor.back(5)
    with pytest.raises(PositionError):
        cursor.forward(7)
    assert cursor.position == 4
    with pytest.raises(TypeError):
        cursor.goto("5")  # type: ignore[arg-type]
    assert cursor.position == 4


def test_a_cursor_can_start_anywhere_and_follows_growth(store: TemporalStore) -> None:
    live, ids = scripted(store)
    timeline = live.timeline
    assert timeline.cursor(3).position == 3
    assert timeline.cursor(0).event is None
    with pytest.raises(PositionError):
        timeline.cursor(11)
    cursor = timeline.cursor()
    live.update(ids["D"], title="Delta 2")
    assert cursor.forward().position == 11
    assert cursor.event is not None
    assert cursor.event.changes["title"] == "Delta 2"


def test_a_cursor_over_an_empty_store(store: TemporalStore) -> None:
    cursor = store.timeline().cursor()
    assert cursor.position == 0
    assert cursor.event is None
    assert cursor.state == {}
    with pytest.raises(PositionError):
        cursor.forward()


# -- DocumentState -----------------------------------------------------------------------


def test_a_document_state_is_a_frozen_copy_of_a_document(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, ids = script
    document = live.store.get_document(ids["A"], version=2)
    assert isinstance(document, Document)
    state = DocumentState.of(document)
    assert state.as_dict() == document.as_dict() == live.versions[ids["A"]][2]
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.title = "changed"  # type: ignore[misc]
    assert state == live.timeline.state_at(3)[ids["A"]]
    assert hash(state) == hash(live.timeline.state_at(3)[ids["A"]])


def test_after_applies_the_next_event_of_the_document(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, ids = script
    for name in "ABC":
        events = list(live.timeline.iter_from(1, document_id=ids[name]))
        first = live.store.get_document(ids[name], version=1)
        assert first is not None
        state = DocumentState.of(first)
        for event in events[1:]:
            state = state.after(event)
            assert state.as_dict() == live.versions[ids[name]][event.version]


def test_after_refuses_an_event_that_does_not_follow(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, ids = script
    timeline = live.timeline
    first = live.store.get_document(ids["A"], version=1)
    assert first is not None
    v1 = DocumentState.of(first)
    with pytest.raises(ValueError, match="expected version 2"):
        v1.after(timeline[6])  # A's v3: skips v2
    with pytest.raises(ValueError, match="does not follow"):
        v1.after(timeline[3])  # B's v2: another document
    with pytest.raises(ValueError, match="does not follow"):
        v1.after(timeline[0])  # A's own creation again
    v2 = v1.after(timeline[2])
    with pytest.raises(ValueError, match="expected version 3"):
        v2.after(timeline[2])


# -- Jupyter views -----------------------------------------------------------------------


class Table(HTMLParser):
    """Parses one table, checking that tags nest and are only table tags (so nothing a
    user wrote became markup), and collects its caption, headers and body rows."""

    TAGS = frozenset({"table", "caption", "thead", "tbody", "tr", "th", "td"})

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.caption = ""
        self.headers: list[str] = []
        self.rows: list[list[str]] = []
        self._text: list[str] | None = None
        self._in_body = False
        assert markup.startswith("<table")
        assert markup.endswith("</table>")
        self.feed(markup)
        self.close()
        assert self.stack == [], f"unclosed {self.stack}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in self.TAGS, f"unexpected <{tag}>"
        self.stack.append(tag)
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag in ("td", "th", "caption"):
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1:] == [tag], f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        if tag in ("td", "th", "caption"):
            assert self._text is not None
            text = "".join(self._text)
            self._text = None
            if tag == "td":
                self.rows[-1].append(text)
            elif tag == "th":
                self.headers.append(text)
            else:
                self.caption = text
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def assert_escaped(markup: str) -> None:
    assert "<script>" not in markup
    assert "<b>" not in markup
    assert "&lt;script&gt;" in markup


PRECISE_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")


def test_timeline_html_renders_at_most_200_rows_and_says_the_total(
    store: TemporalStore,
) -> None:
    for i in range(449):
        store.create_document(f"doc {i}", "c", "a")
    store.create_document(SCRIPT_TITLE, "c", "a")
    assert len(store.timeline()) == 450
    markup = store.timeline()._repr_html_()
    table = Table(markup)
    assert HTML_ROWS == 200
    assert len(table.rows) == 200
    assert "450" in table.caption
    assert table.headers == ["#", "time (UTC)", "document", "version", "kind", "changes", "cause"]
    assert [int(row[0]) for row in table.rows] == list(range(251, 451))  # the latest
    assert f"title={SCRIPT_TITLE}" in table.rows[-1][5]
    assert_escaped(markup)


def test_small_timeline_html_shows_every_event(script: tuple[Live, dict[str, str]]) -> None:
    table = Table(script[0].timeline._repr_html_())
    assert len(table.rows) == 10
    assert "10 events" in table.caption
    assert [row[4] for row in table.rows] == [e[0] for e in script[0].events]


def test_recorded_event_html_lists_its_changes(script: tuple[Live, dict[str, str]]) -> None:
    live, ids = script
    event = live.timeline[4]  # C's creation, with the script title
    markup = event._repr_html_()
    table = Table(markup)
    assert ids["C"] in table.caption
    assert "created" in table.caption
    assert table.rows == [
        ["title", SCRIPT_TITLE],
        ["content", "c1 & <b>bold</b>"],
        ["author", "cat"],
    ]
    assert_escaped(markup)


def test_document_state_html_lists_every_field_with_readable_times(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, ids = script
    state = live.timeline.state_at(5)[ids["C"]]
    markup = state._repr_html_()
    table = Table(markup)
    shown = dict(table.rows)
    assert list(shown) == list(state.as_dict())
    assert shown["title"] == SCRIPT_TITLE
    assert shown["version"] == "1"
    assert PRECISE_TIME.match(shown["created_at"])
    assert PRECISE_TIME.match(shown["modified_at"])
    assert shown["deleted_at"] == ""
    assert_escaped(markup)


def test_diff_html_puts_before_and_after_side_by_side(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, ids = script
    diff = live.timeline.diff(5, 8)  # C renamed from the script title, B deleted, A edited
    markup = diff._repr_html_()
    table = Table(markup)
    assert table.headers == ["document", "change", "field", "before (#5)", "after (#8)"]
    assert len(table.rows) == len(diff.rows())
    title_rows = [row for row in table.rows if row[2] == "title"]
    assert title_rows == [[ids["C"][:7] + "…", "changed", "title", SCRIPT_TITLE, "Gamma 2"]]
    modified = [row for row in table.rows if row[2] == "modified_at"]
    assert len(modified) == 3
    for row in modified:  # times shown readably, and visibly different
        assert PRECISE_TIME.match(row[3])
        assert PRECISE_TIME.match(row[4])
        assert row[3] != row[4]
    assert_escaped(markup)


def test_cursor_html_shows_the_store_at_its_position(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, _ = script
    cursor = live.timeline.cursor(5)
    markup = cursor._repr_html_()
    table = Table(markup)
    assert "position 5" in table.caption
    assert len(table.rows) == 3
    assert [row[2] for row in table.rows] == ["Alpha 2", "Beta", SCRIPT_TITLE]
    assert_escaped(markup)
    assert "position 0" in Table(cursor.goto(0)._repr_html_()).caption


def test_plain_reprs_are_one_short_line(store: TemporalStore) -> None:
    long_title = SCRIPT_TITLE + "\n" + "x" * 500
    document_id = store.create_document(long_title, "c\n" * 100, "a" * 200)
    store.update_document(document_id, title=long_title + "2", content="y" * 300, editor="e" * 200)
    timeline = store.timeline()
    shown: list[object] = [
        timeline,
        timeline[0],
        timeline[1],
        timeline.state_at(1)[document_id],
        timeline.diff(0, 2),
        timeline.diff(1, 2),
        timeline.cursor(),
    ]
    for value in shown:
        text = repr(value)
        assert "\n" not in text, text
        assert len(text) < 120, text
    assert repr(timeline) == "Timeline(2 events in memory://)"
    assert repr(timeline.cursor(1)) == "Cursor(#1 of 2)"


# -- the plot ----------------------------------------------------------------------------


def legend_texts(figure: Figure) -> list[str]:
    legend = figure.axes[0].get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def render(figure: Figure) -> None:
    figure.savefig(io.BytesIO(), format="png")


def test_plot_draws_one_coloured_series_per_kind(script: tuple[Live, dict[str, str]]) -> None:
    figure = script[0].timeline.plot()
    assert isinstance(figure, Figure)
    (ax,) = figure.axes
    by_label = {str(c.get_label()): c for c in ax.collections}
    assert set(by_label) == {"created (4)", "updated (4)", "deleted (2)"}
    assert sorted(legend_texts(figure)) == sorted(by_label)
    for label, collection in by_label.items():
        kind = label.split()[0]
        colours = np.asarray(collection.get_facecolor())
        assert [tuple(c) for c in colours] == [to_rgba(KIND_COLOURS[kind])]
        count = int(label.split("(")[1].rstrip(")"))
        assert len(np.asarray(collection.get_offsets())) == count
    render(figure)


def test_plot_only_shows_the_kinds_present(store: TemporalStore) -> None:
    document_id = store.create_document("t", "c", "a")
    store.update_document(document_id, title="t2")
    store.update_document(document_id, title="t3")
    figure = store.timeline().plot()
    labels = [c.get_label() for c in figure.axes[0].collections]
    assert labels == ["created (1)", "updated (2)"]
    assert legend_texts(figure) == labels
    render(figure)


def test_plot_draws_on_given_axes_and_leaves_the_rest_of_the_figure_alone(
    script: tuple[Live, dict[str, str]],
) -> None:
    figure = Figure(figsize=(6, 6))
    top, bottom = figure.subplots(2, 1)
    bottom.set_xlabel("mine")
    size = tuple(figure.get_size_inches())
    returned = script[0].timeline.plot(ax=top)
    assert returned is figure
    assert len(top.collections) == 3
    assert len(bottom.collections) == 0
    assert top.get_xlabel() == "time (UTC)"
    assert bottom.get_xlabel() == "mine"
    assert tuple(figure.get_size_inches()) == size
    render(figure)


def test_plot_labels_rows_by_title_with_the_short_id_after_it(
    script: tuple[Live, dict[str, str]],
) -> None:
    live, ids = script
    figure = live.timeline.plot()
    render(figure)  # Agg: tick labels are only final once drawn
    (ax,) = figure.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # each document's latest title (a deleted one keeps its last), cut to 28 characters
    assert labels == [
        f"Alpha 2 · {ids['A'][:8]}",
        f"Beta · {ids['B'][:8]}",
        f"Gamma 2 · {ids['C'][:8]}",
        f"Delta · {ids['D'][:8]}",
    ]
    assert row_label("0123456789", "x" * 40) == "x" * 27 + "… · 01234567"
    assert row_label("0123456789", None) == "01234567"


def test_plot_time_ticks_show_hours_and_the_legend_is_outside_the_data(
    script: tuple[Live, dict[str, str]],
) -> None:
    figure = script[0].timeline.plot()
    render(figure)
    (ax,) = figure.axes
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ticks
    # the script takes milliseconds: hours to the microsecond, so that no two ticks match
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{6}", tick) for tick in ticks), ticks
    assert len(set(ticks)) == len(ticks)
    day = min(e.timestamp for e in script[0].timeline).astimezone(UTC)
    assert ax.get_title().endswith(f" on {day:%Y-%m-%d} (UTC)")

    renderer = FigureCanvasAgg(figure).get_renderer()
    legend = ax.get_legend()
    assert legend is not None
    box = legend.get_window_extent(renderer)
    axes_box = ax.get_window_extent(renderer)
    assert box.x0 >= axes_box.x1  # right of the axes: no dot under it
    assert box.x1 <= figure.bbox.x1  # and still inside the figure


def test_plot_over_days_shows_the_date_with_hours(store: TemporalStore) -> None:
    store.create_document("Report", "v1", "ann")
    [created] = store.timeline()
    later = dataclasses.replace(
        created, timestamp=created.timestamp + timedelta(days=3), kind="updated", version=2
    )
    figure = plot_timeline([created, later])  # what it reads of a timeline: a sequence
    render(figure)
    ticks = [t.get_text() for t in figure.axes[0].get_xticklabels() if t.get_text()]
    assert ticks
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", tick) for tick in ticks), ticks
    assert figure.axes[0].get_title() == "2 events over 1 documents"


def test_an_empty_store_plots_without_error(store: TemporalStore) -> None:
    figure = store.timeline().plot()
    assert isinstance(figure, Figure)
    assert len(figure.axes[0].collections) == 0
    assert legend_texts(figure) == []
    render(figure)


def test_every_name_imports_from_the_package() -> None:
    import atlas_eda
    import atlas_eda.timeline

    for name in [
        "Timeline",
        "RecordedEvent",
        "DocumentState",
        "StateDiff",
        "FieldChange",
        "Cursor",
        "PositionError",
    ]:
        assert name in atlas_eda.__all__
        assert getattr(atlas_eda, name) is getattr(atlas_eda.timeline, name)
