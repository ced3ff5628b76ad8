"""The inspector's sagas and projections views over real HTTP: every saga instance as of a
position, one instance's versions with their causes, the projections of ``--app`` with
their lag and their read models as of a position, and bad input answered 400."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the inspector needs the 'inspect' extra")
from test_inspector import Client, inspect_process, serving

from atlas_eda import EventBus, Saga, SagaManager, TemporalStore, step
from atlas_eda.inspector.app import create_app
from atlas_eda.projections import DocumentsByAuthor
from atlas_eda.sagas import StepResult, saga_id_of

XSS_TRAVELLER = "<script>window.__pwned = 4</script>"


class Trip(enum.Enum):
    """The saga tests' own bus events."""

    BOOKED = "trip.booked"
    PAID = "trip.paid"


class TripSaga(Saga):
    """Booked, then paid: two versions, the second completes it."""

    starts_with = Trip.BOOKED
    correlation_key = "trip"

    @step(Trip.BOOKED)
    def booked(self, event: Any) -> StepResult:
        self.data["traveller"] = event.data["traveller"]
        return None

    @step(Trip.PAID)
    def paid(self, event: Any) -> StepResult:
        self.data["paid"] = event.data["amount"]
        self.complete()
        return None


def build_saga_store(url: str, views_url: str) -> dict[str, Any]:
    """A store with documents and two saga instances, and a read model (at ``views_url``)
    caught up to position 3 of its 6:

    1 Plan created · 2 trip t1 booked (its traveller a script payload) · 3 Notes created ·
    4 trip t2 booked · 5 trip t1 paid (completed) · 6 Plan updated."""
    bus = EventBus()
    store = TemporalStore(bus, url=url)
    unregister = SagaManager(bus, store).register(TripSaga)
    plan = store.create_document("Plan", "draft", "ada")
    bus.publish(Trip.BOOKED, {"trip": "t1", "traveller": XSS_TRAVELLER})
    store.create_document("Notes", "x", "bob")
    with DocumentsByAuthor(views_url) as projection:
        projection.catch_up(store)
    bus.publish(Trip.BOOKED, {"trip": "t2", "traveller": "ann"})
    bus.publish(Trip.PAID, {"trip": "t1", "amount": 90})
    store.update_document(plan, content="final", editor="ada")
    assert store.last_position() == 6
    unregister()
    store.close()
    return {
        "plan": plan,
        "t1": saga_id_of(TripSaga, "t1"),
        "t2": saga_id_of(TripSaga, "t2"),
    }


def write_app_module(where: Path, views_url: str) -> str:
    """The user's code ``atlas-eda inspect --app`` names: a module in ``where`` whose
    factory returns the read model of ``views_url``; returns ``module:factory``."""
    (where / "trip_views.py").write_text(
        "from atlas_eda.projections import DocumentsByAuthor\n\n\n"
        "def make_projections():\n"
        f"    return [DocumentsByAuthor({views_url!r})]\n"
    )
    return "trip_views:make_projections"


@pytest.fixture
def trips(tmp_path: Path) -> dict[str, Any]:
    url = f"sqlite:///{tmp_path / 'trips.db'}"
    views_url = f"sqlite:///{tmp_path / 'views.db'}"
    return {**build_saga_store(url, views_url), "url": url, "views_url": views_url}


@pytest.fixture
def client(trips: dict[str, Any]) -> Iterator[Client]:
    store = TemporalStore(url=trips["url"])
    with (
        DocumentsByAuthor(trips["views_url"]) as projection,
        serving(create_app(store.timeline(), projections=[projection])) as base,
    ):
        yield Client(base)
    store.close()


def test_sagas_view_lists_every_instance_as_of_the_position(
    client: Client, trips: dict[str, Any]
) -> None:
    now = client.get("/api/sagas").json()
    assert now["position"] == 6
    assert now["count"] == 2
    t1, t2 = now["sagas"]
    assert (t1["id"], t1["saga"], t1["key"]) == (trips["t1"], "TripSaga", "t1")
    assert (t1["version"], t1["status"], t1["step"], t1["position"]) == (2, "completed", "paid", 5)
    assert t1["data"] == {"traveller": XSS_TRAVELLER, "paid": 90}
    assert t1["steps"] == ["booked", "paid"]
    assert t1["cause"]["event_type"] == "Trip.PAID"
    assert (t2["key"], t2["version"], t2["status"], t2["position"]) == ("t2", 1, "running", 4)

    # scrubbed back: t1 before it was paid, t2 not started yet
    then = client.get("/api/sagas", params={"position": "3"}).json()
    assert then["count"] == 1
    (early,) = then["sagas"]
    assert (early["version"], early["status"], early["step"]) == (1, "running", "booked")
    assert early["data"] == {"traveller": XSS_TRAVELLER}
    assert client.get("/api/sagas", params={"position": "1"}).json()["sagas"] == []
    paged = client.get("/api/sagas", params={"offset": "1", "limit": "5"}).json()
    assert [s["key"] for s in paged["sagas"]] == ["t2"]
    assert paged["count"] == 2


def test_saga_view_is_its_versions_with_their_causes_up_to_the_position(
    client: Client, trips: dict[str, Any]
) -> None:
    whole = client.get("/api/saga", params={"id": trips["t1"]}).json()
    assert whole["saga"]["status"] == "completed"
    versions = whole["versions"]
    assert [(v["version"], v["position"], v["kind"]) for v in versions] == [
        (1, 2, "saga"),
        (2, 5, "saga"),
    ]
    assert [(v["status"], v["step"]) for v in versions] == [
        ("running", "booked"),
        ("completed", "paid"),
    ]
    assert [v["cause"]["event_type"] for v in versions] == ["Trip.BOOKED", "Trip.PAID"]
    assert versions[1]["changes"]["status"] == "completed"
    # each version's position opens the cause view of that change
    cause = client.get("/api/cause", params={"position": versions[1]["position"]}).json()
    assert cause["event"]["document_id"] == trips["t1"]
    assert cause["cause"]["event_id"] == versions[1]["cause"]["event_id"]

    earlier = client.get("/api/saga", params={"id": trips["t1"], "position": "4"}).json()
    assert [v["version"] for v in earlier["versions"]] == [1]
    assert earlier["saga"]["status"] == "running"
    assert earlier["saga"]["position"] == 2
    before = client.get("/api/saga", params={"id": trips["t2"], "position": "3"}).json()
    assert before["saga"] is None
    assert before["versions"] == []


def test_projections_view_shows_the_lag_and_the_read_model_as_of_the_position(
    client: Client,
) -> None:
    now = client.get("/api/projections").json()
    assert now["enabled"] is True
    (projection,) = now["projections"]
    assert projection["name"] == "DocumentsByAuthor"
    assert (projection["tracked"], projection["lag"]) == (3, 3)
    (table,) = projection["tables"]
    assert table["name"] == "documents_by_author"
    assert table["columns"][:3] == ["document_id", "author", "title"]
    rows = {row["title"]: row for row in table["rows"]}
    assert rows["Plan"]["versions"] == 2  # as of the end: the update at 6 is in
    assert table["count"] == 2

    then = client.get("/api/projections", params={"position": "2"}).json()
    (table,) = then["projections"][0]["tables"]
    assert [(row["title"], row["versions"]) for row in table["rows"]] == [("Plan", 1)]
    assert then["projections"][0]["tracked"] == 3  # the read model itself is not moved
    assert (
        client.get("/api/projections", params={"position": "0"}).json()["projections"][0]["tables"][
            0
        ]["rows"]
        == []
    )


class Picky(DocumentsByAuthor):
    """A read model whose ``apply`` raises on the document titled Notes."""

    def apply(self, event: Any, sql: Any) -> None:
        if getattr(event, "title", None) == "Notes":
            raise ValueError("notes are not welcome")
        super().apply(event, sql)


def test_a_projection_that_cannot_be_built_says_why_and_the_others_still_show(
    trips: dict[str, Any],
) -> None:
    store = TemporalStore(url=trips["url"])
    with (
        Picky(name="picky") as picky,
        DocumentsByAuthor() as fine,
        serving(create_app(store.timeline(), projections=[picky, fine])) as base,
    ):
        client = Client(base)
        before = client.get("/api/projections", params={"position": "2"}).json()
        after = client.get("/api/projections", params={"position": "3"}).json()
    store.close()
    assert [p["error"] for p in before["projections"]] == [None, None]
    assert before["projections"][0]["tables"][0]["count"] == 1
    broken, shown = after["projections"]
    assert "picky could not be built as of position 3" in broken["error"]
    assert "notes are not welcome" in broken["error"]
    assert broken["tables"] == []
    assert (shown["name"], shown["error"], shown["tables"][0]["count"]) == (
        "DocumentsByAuthor",
        None,
        2,
    )
    assert (shown["tracked"], shown["lag"]) == (0, 6)  # an in-memory read model never run


def test_without_projections_the_view_says_it_has_none(trips: dict[str, Any]) -> None:
    store = TemporalStore(url=trips["url"])
    with serving(create_app(store.timeline())) as base:
        answer = Client(base).get("/api/projections").json()
    store.close()
    assert answer["enabled"] is False
    assert answer["projections"] == []


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        ("/api/saga", {}, "id is missing: give a saga id"),
        ("/api/saga", {"id": "t1"}, "saga must be a whole saga id (a UUID), got 't1'"),
        (
            "/api/saga",
            {"id": "00000000-0000-4000-8000-000000000000"},
            "no saga instance has id 00000000-0000-4000-8000-000000000000",
        ),
        ("/api/saga", {"id": "{t1}", "position": "x"}, "saga must be a whole saga id"),
        ("/api/sagas", {"position": "two"}, "position must be a whole number, got 'two'"),
        ("/api/sagas", {"position": "7"}, "position is 7, past the end"),
        ("/api/sagas", {"offset": "-1"}, "offset must be a whole number"),
        ("/api/projections", {"position": "1.5"}, "position must be a whole number"),
        ("/api/projections", {"position": "99"}, "position is 99, past the end"),
    ],
)
def test_bad_input_is_answered_400_with_what_to_do(
    client: Client, path: str, query: dict[str, str], message: str
) -> None:
    answer = client.get(path, params=query)
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_a_document_id_is_not_a_saga(client: Client, trips: dict[str, Any]) -> None:
    answer = client.get("/api/saga", params={"id": trips["plan"]})
    assert answer.status_code == 400
    assert f"no saga instance has id {trips['plan']}" in answer.json()["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/api/sagas", "/api/saga", "/api/projections"])
def test_the_new_endpoints_accept_no_write_method(client: Client, method: str, path: str) -> None:
    assert client.request(method, path).status_code == 405


def test_the_command_shows_the_projections_of_app(trips: dict[str, Any], tmp_path: Path) -> None:
    spec = write_app_module(tmp_path, trips["views_url"])
    with inspect_process(trips["url"], "--app", spec, cwd=tmp_path) as served:
        answer = Client(served.base).get("/api/projections").json()
        assert [(p["name"], p["lag"]) for p in answer["projections"]] == [("DocumentsByAuthor", 3)]
        assert Client(served.base).get("/api/sagas").json()["count"] == 2
    assert served.returncode == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def make_projections():\n    return 42\n", "returned int, not an"),
        ("def make_projections():\n    return []\n", "returned an empty list"),
        (
            "from atlas_eda.projections import DocumentsByAuthor\n"
            "def make_projections():\n"
            "    return [DocumentsByAuthor(), DocumentsByAuthor()]\n",
            "two projections named 'DocumentsByAuthor'",
        ),
        ("def make_projections():\n    raise OSError('no disk')\n", "raised OSError: no disk"),
    ],
)
def test_a_bad_app_is_one_line_and_exit_2(
    trips: dict[str, Any], tmp_path: Path, body: str, message: str
) -> None:
    from conftest import run_cli

    (tmp_path / "bad_views.py").write_text(body)
    done = run_cli(
        "inspect", "--store", trips["url"], "--app", "bad_views:make_projections", cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("atlas-eda: error: --app 'bad_views:make_projections': ")
    assert message in line
