"""The inspector's JSON endpoints over real HTTP (the app served by uvicorn on 127.0.0.1) and
the ``atlas-eda inspect`` command: what each view answers on a store with causes, filters and
paging, bad input answered 400 with a message, and that nothing but GET is accepted."""

from __future__ import annotations

import enum
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the inspector needs the 'inspect' extra")
import uvicorn
from starlette.applications import Starlette

from atlas_eda import EventBus, TemporalStore
from atlas_eda.inspector import views
from atlas_eda.inspector.app import SECURITY_HEADERS, create_app

XSS_TITLE = "<script>window.__pwned = 1</script>"
XSS_CONTENT = '<img src=x onerror="window.__pwned = 2">'
XSS_EDITOR = "</td><svg onload=window.__pwned=3>"


class Shop(enum.Enum):
    """The inspector tests' own bus events."""

    ORDER = "shop.order"
    SHIPPED = "shop.shipped"


def build_store(url: str) -> dict[str, Any]:
    """A store with causes: a root ORDER event whose handler creates a document and
    publishes SHIPPED, whose handler updates it and creates a second one (one tree of
    three writes), a write outside any delivery, an update carrying script payloads and
    a deletion. Returns the store's facts the tests check against."""
    bus = EventBus()
    store = TemporalStore(bus, url=url)
    made: dict[str, Any] = {}

    def take_order(event: Any) -> None:
        made["order"] = store.create_document("Order 7", "placed", "shop")
        bus.publish(Shop.SHIPPED, {"order": 7})

    def ship(event: Any) -> None:
        store.update_document(made["order"], content="shipped", editor="courier")
        made["label"] = store.create_document("Label 7", "to Ada", "courier")

    bus.subscribe(Shop.ORDER, take_order)
    bus.subscribe(Shop.SHIPPED, ship)
    made["root"] = bus.publish(Shop.ORDER, {"order": 7})  # positions 1, 2, 3
    made["note"] = store.create_document("Note", "by hand", "ada")  # 4, no cause
    store.update_document(  # 5
        made["note"], title=XSS_TITLE, content=XSS_CONTENT, editor=XSS_EDITOR
    )
    store.delete_document(made["label"], reason="lost")  # 6
    store.close()
    return made


@dataclass
class Answer:
    """One HTTP answer: status, headers (lower-case names) and body."""

    status_code: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class Client:
    """Real HTTP requests to a server on 127.0.0.1 (urllib: no client library needed)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(
            self.base + path + query, method=method, headers=dict(headers or {})
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, found, body = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            status, found, body = error.code, error.headers, error.read()
            error.close()
        return Answer(status, {k.lower(): v for k, v in found.items()}, body.decode())

    def get(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Answer:
        return self.request("GET", path, params, **kw)


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1 in a thread; yields its base
    URL (``http://127.0.0.1:PORT``) and stops the server afterwards."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # generous: a loaded 2-core machine
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


@pytest.fixture
def built(tmp_path: Path) -> dict[str, Any]:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    return {**build_store(url), "url": url}


@pytest.fixture
def client(built: dict[str, Any]) -> Iterator[Client]:
    store = TemporalStore(url=built["url"])
    with serving(create_app(store.timeline())) as base:
        yield Client(base)
    store.close()


def test_summary_names_the_store_and_its_last_position(
    client: Client, built: dict[str, Any]
) -> None:
    answer = client.get("/api/summary").json()
    assert answer == {"store": built["url"], "last_position": 6}


def test_the_first_page_is_the_log_s_end_and_pages_go_on_from_next(client: Client) -> None:
    page = client.get("/api/events", params={"limit": 4}).json()
    assert [e["position"] for e in page["events"]] == [3, 4, 5, 6]
    assert page["next"] is None
    first = client.get("/api/events", params={"since": 1, "limit": 4}).json()
    assert [e["position"] for e in first["events"]] == [1, 2, 3, 4]
    assert first["next"] == 5
    rest = client.get("/api/events", params={"since": first["next"], "limit": 4}).json()
    assert [e["position"] for e in rest["events"]] == [5, 6]


def test_events_carry_their_changes_and_cause(client: Client, built: dict[str, Any]) -> None:
    events = client.get("/api/events", params={"since": 1}).json()["events"]
    first = events[0]
    assert first["kind"] == "created"
    assert first["document_id"] == built["order"]
    assert first["changes"] == {"title": "Order 7", "content": "placed", "author": "shop"}
    assert first["cause"]["event_id"] == built["root"]
    assert first["cause"]["event_type"] == "Shop.ORDER"
    assert first["cause"]["handler"].endswith("take_order")
    assert events[3]["cause"] is None  # written outside any delivery


@pytest.mark.parametrize(
    ("query", "positions"),
    [
        ({"kind": "updated"}, [2, 5]),
        ({"kind": "deleted"}, [6]),
        ({"text": "COURIER"}, [2, 3]),  # case-insensitive, in values and causes
        ({"text": "shop.shipped"}, [2, 3]),  # the cause reads Shop.SHIPPED
        ({"from": "2000-01-01T00:00:00", "to": "2999-01-01"}, [1, 2, 3, 4, 5, 6]),
        ({"to": "2000-01-01T00:00:00+00:00"}, []),
    ],
)
def test_filters(client: Client, query: dict[str, str], positions: list[int]) -> None:
    page = client.get("/api/events", params=query).json()
    assert [e["position"] for e in page["events"]] == positions


def test_document_filter_and_history(client: Client, built: dict[str, Any]) -> None:
    page = client.get("/api/events", params={"document": built["order"]}).json()
    assert [e["position"] for e in page["events"]] == [1, 2]
    history = client.get("/api/document", params={"id": built["order"]}).json()
    assert [v["version"] for v in history["versions"]] == [1, 2]
    assert history["versions"][1]["fields"] == {
        "title": "Order 7",
        "content": "shipped",
        "author": "shop",
        "last_editor": "courier",
    }


def test_state_at_a_position_is_the_whole_store_then(client: Client, built: dict[str, Any]) -> None:
    empty = client.get("/api/state", params={"position": 0}).json()
    assert empty["count"] == 0
    assert empty["event"] is None
    at_three = client.get("/api/state", params={"position": 3}).json()
    assert at_three["event"]["position"] == 3
    assert [d["document_id"] for d in at_three["documents"]] == [built["order"], built["label"]]
    assert at_three["documents"][0]["content"] == "shipped"
    end = client.get("/api/state").json()
    assert end["position"] == 6
    assert end["documents"][1]["is_deleted"] is True
    assert end["documents"][1]["deletion_reason"] == "lost"


def test_diff_is_both_states_side_by_side_with_the_changed_fields(
    client: Client, built: dict[str, Any]
) -> None:
    diff = client.get("/api/diff", params={"a": 1, "b": 3}).json()
    assert diff["counts"] == {"added": 1, "removed": 0, "changed": 1}
    assert diff["added"][0]["document_id"] == built["label"]
    (changed,) = diff["changed"]
    assert changed["document_id"] == built["order"]
    assert changed["fields"] == ["content", "last_editor", "modified_at", "version"]
    assert (changed["before"]["content"], changed["after"]["content"]) == ("placed", "shipped")
    # b alone: the diff of the event at b
    assert client.get("/api/diff", params={"b": 6}).json()["a"] == 5


def test_cause_chain_names_the_event_handler_and_the_root_s_tree(
    client: Client, built: dict[str, Any]
) -> None:
    chain = client.get("/api/cause", params={"position": 2}).json()
    assert chain["cause"]["event_type"] == "Shop.SHIPPED"
    assert chain["cause"]["handler"].endswith("ship")
    assert [e["position"] for e in chain["same_delivery"]] == [2, 3]
    assert chain["root"] == built["root"]
    groups = [
        (g["cause"]["event_type"], [w["position"] for w in g["writes"]]) for g in chain["tree"]
    ]
    assert groups == [("Shop.ORDER", [1]), ("Shop.SHIPPED", [2, 3])]
    outside = client.get("/api/cause", params={"position": 4}).json()
    assert outside["cause"] is None
    assert outside["tree"] == []


def test_stored_script_payloads_come_back_as_plain_text(client: Client) -> None:
    state = client.get("/api/state").json()
    note = state["documents"][2]
    assert (note["title"], note["content"], note["last_editor"]) == (
        XSS_TITLE,
        XSS_CONTENT,
        XSS_EDITOR,
    )
    assert client.get("/api/state").headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        ("/api/state", {"position": "7"}, "position is 7, past the end"),
        ("/api/state", {"position": "-1"}, "position must be a whole number"),
        ("/api/state", {"position": "x"}, "position must be a whole number"),
        ("/api/events", {"kind": "renamed"}, "kind must be one of created, updated, deleted"),
        ("/api/events", {"document": "abc"}, "document must be a whole document id"),
        ("/api/events", {"from": "yesterday"}, "from must be an ISO 8601 time"),
        ("/api/events", {"limit": "0"}, "limit must be at least 1"),
        ("/api/document", {}, "id is missing"),
        ("/api/document", {"id": "00000000-0000-4000-8000-000000000000"}, "no document has id"),
        ("/api/cause", {"position": "0"}, "position 0 is before the first event"),
        ("/api/diff", {"a": "99"}, "a is 99, past the end"),
    ],
)
def test_bad_input_is_answered_400_with_what_to_do(
    client: Client, path: str, query: dict[str, str], message: str
) -> None:
    answer = client.get(path, params=query)
    assert answer.status_code == 400
    assert message in answer.json()["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "path", ["/", "/app.js", "/api/summary", "/api/events", "/api/state", "/api/diff"]
)
def test_no_endpoint_accepts_a_write_method(client: Client, method: str, path: str) -> None:
    assert client.request(method, path).status_code == 405


def test_every_answer_forbids_foreign_scripts_and_other_hosts_are_refused(
    client: Client,
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert '<script src="app.js" defer></script>' in page.text
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value
    assert client.get("/api/summary", headers={"host": "evil.example:8765"}).status_code == 400


def test_a_filtered_page_reads_a_bounded_stretch_of_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "SCAN_LIMIT", 40)
    store = TemporalStore(url=f"sqlite:///{tmp_path / 'long.db'}")
    doc = store.create_document("t", "c", "a")
    for i in range(45):
        store.update_document(doc, content=str(i))
    with serving(create_app(store.timeline())) as base:
        test_client = Client(base)
        page = test_client.get("/api/events", params={"kind": "deleted"}).json()
        assert page["events"] == []
        assert page["next"] == 41  # go on from there
        rest = test_client.get("/api/events", params={"kind": "deleted", "since": page["next"]})
        assert rest.json()["next"] is None
    store.close()


@dataclass
class Served:
    """A running ``atlas-eda inspect``: its base URL, and once stopped, its exit status and
    what it wrote to stderr."""

    base: str
    returncode: int | None = None
    stderr: str = ""


@contextmanager
def inspect_process(url: str, *extra: str, cwd: Path | None = None) -> Iterator[Served]:
    """``atlas-eda inspect --store URL --port 0 EXTRA`` as a real process (in ``cwd``
    when given), yielded once it printed the address it serves on; stopped with SIGINT
    (Ctrl-C) afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "atlas_eda.cli", "inspect", "--store", url, "--port", "0", *extra],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    served = Served(base="")
    try:
        line = process.stdout.readline()  # printed once the socket listens
        found = re.search(r" at (http://\S+)/ ", line)
        assert found, f"no address in {line!r}"
        served.base = found.group(1)
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        served.returncode = process.returncode
        served.stderr = process.stderr.read()
        process.stdout.close()
        process.stderr.close()


def test_the_command_serves_the_store_on_loopback_until_ctrl_c(built: dict[str, Any]) -> None:
    with inspect_process(built["url"]) as served:
        assert served.base.startswith("http://127.0.0.1:")
        client = Client(served.base)
        assert client.get("/api/summary").json()["last_position"] == 6
        assert "<title>atlas_eda inspector</title>" in client.get("/").text
        # another name for this machine is refused: a page elsewhere cannot rebind to it
        assert client.get("/", headers={"host": "attacker.example"}).status_code == 400
    assert served.returncode == 0
    assert "WARNING" not in served.stderr


def test_another_bind_address_only_with_host_and_a_warning(built: dict[str, Any]) -> None:
    with inspect_process(built["url"], "--host", "0.0.0.0") as served:
        assert served.base.startswith("http://0.0.0.0:")
        port = served.base.rsplit(":", 1)[1]
        assert Client(f"http://127.0.0.1:{port}").get("/api/summary").status_code == 200
    assert "anyone who can reach this address can read the whole store" in served.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "sqlite:////nonexistent/x.db"], "does not exist"),
        (["--store", "memory://", "--port", "70000"], "--port must be from 0 to 65535"),
        (["--store", "memory://", "--port", "x"], "--port must be a whole number"),
        ([], "no store given"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path
) -> None:
    from conftest import run_cli

    done = run_cli("inspect", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("atlas-eda: error: ")
    assert message in line


def test_nothing_of_the_extras_is_imported_until_asked_for() -> None:
    code = (
        "import sys, atlas_eda.cli, atlas_eda.inspector, atlas_eda.timeline\n"
        "print(sorted(m for m in ('starlette', 'uvicorn', 'anywidget') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("missing", ["uvicorn", "starlette"])
def test_without_the_extra_the_command_says_which_to_install(missing: str) -> None:
    # sys.modules[name] = None makes `import name` fail as if it were not installed
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        "from atlas_eda.cli import main\n"
        "sys.exit(main(['inspect', '--store', 'memory://']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("atlas-eda: error: the inspector needs the 'inspect' extra")
    assert line.endswith("pip install 'atlas_eda[inspect]'")
