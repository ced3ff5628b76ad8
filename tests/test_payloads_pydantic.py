"""Pydantic models as event data (issue 15 item 6): a frozen model passes as it is, a model
that is not frozen is refused when the event is built, and a registered frozen model
round-trips through a cassette (recorded as ``model_dump(mode="json")``, rebuilt with
``model_validate``), like a frozen dataclass. atlas_eda never imports pydantic itself."""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from pydantic import BaseModel, ConfigDict, ValidationError

from atlas_eda import Event, EventBus, InvalidEventError
from atlas_eda.errors import TypeRegistrationError
from atlas_eda.testing import Cassette, RecordingError, record, register_types, replay


class ModelShop(enum.Enum):
    PAID = "model_shop.paid"


class Paid(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: str
    amount: int
    items: tuple[str, ...] = ()


class LoosePaid(BaseModel):
    order_id: str


class UnregisteredPaid(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: str


def test_a_frozen_model_is_carried_as_it_is_and_cannot_be_changed() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(ModelShop.PAID, seen.append)
    paid = Paid(order_id="o-1", amount=10)
    bus.publish(ModelShop.PAID, paid)
    assert seen[0].data is paid
    with pytest.raises(ValidationError, match="frozen"):
        seen[0].data.amount = 0  # type: ignore[misc]


def test_a_model_that_is_not_frozen_is_refused_when_the_event_is_built() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe_all(seen.append)
    with pytest.raises(InvalidEventError, match=r"pydantic model that is not frozen"):
        bus.publish(ModelShop.PAID, LoosePaid(order_id="o-1"))
    with pytest.raises(InvalidEventError, match=r"data\['order'\].*not frozen"):
        Event(type=ModelShop.PAID, data={"order": LoosePaid(order_id="o-1")})
    assert seen == []
    assert bus.get_history() == []


def test_a_registered_frozen_model_round_trips_through_a_cassette(tmp_path: Path) -> None:
    register_types(ModelShop, Paid)
    path = tmp_path / "c.jsonl"
    bus = EventBus()
    bus.subscribe(ModelShop.PAID, lambda event: None)
    with record(bus, path):
        bus.publish(ModelShop.PAID, Paid(order_id="o-1", amount=10, items=("a", "b")))
    line = json.loads(path.read_text().splitlines()[0])
    assert line["atlasdatatype"] == "Paid"
    assert line["data"] == {"order_id": "o-1", "amount": 10, "items": ["a", "b"]}
    loaded = Cassette.load(path).entries[0].event.data
    assert loaded == Paid(order_id="o-1", amount=10, items=("a", "b"))  # a tuple again
    replay(Cassette.load(path), bus, "check").assert_no_divergence()


def test_an_unregistered_model_is_refused_by_the_recorder(tmp_path: Path) -> None:
    bus = EventBus()
    with (
        pytest.raises(RecordingError, match=r"UnregisteredPaid.*register_types"),
        record(bus, tmp_path / "c.jsonl"),
    ):
        bus.publish(ModelShop.PAID, UnregisteredPaid(order_id="o-1"))
    assert (tmp_path / "c.jsonl").read_text() == ""


def test_register_types_refuses_a_model_that_is_not_frozen() -> None:
    with pytest.raises(TypeRegistrationError, match="frozen pydantic models"):
        register_types(LoosePaid)


def test_recorded_fields_that_fail_validation_are_refused_by_line(tmp_path: Path) -> None:
    register_types(ModelShop, Paid)
    path = tmp_path / "c.jsonl"
    bus = EventBus()
    with record(bus, path):
        bus.publish(ModelShop.PAID, Paid(order_id="o-1", amount=10))
    path.write_text(path.read_text().replace('"amount":10', '"amount":"ten"'))
    with pytest.raises(Exception, match=r"line 1: the recorded fields do not build a Paid"):
        Cassette.load(path)


def test_the_cli_registers_a_model_with_types(tmp_path: Path) -> None:
    (tmp_path / "model_app.py").write_text(
        "import enum\n\nfrom pydantic import BaseModel, ConfigDict\n\n\n"
        "class Beeps(enum.Enum):\n    BEEP = 'beep'\n\n\n"
        "class Beep(BaseModel):\n    model_config = ConfigDict(frozen=True)\n    n: int\n",
        encoding="utf-8",
    )
    line = {
        "specversion": "1.0",
        "id": "e1",
        "source": "here",
        "type": "Beeps.BEEP",
        "time": "2026-01-01T00:00:00.000000Z",
        "datacontenttype": "application/json",
        "data": {"n": 1},
        "atlasdatatype": "Beep",
    }
    (tmp_path / "beeps.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    types = ["--types", "model_app:Beeps", "--types", "model_app:Beep"]
    shown = run_cli("cassette", "beeps.jsonl", *types, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Beeps.BEEP" in shown.stdout


def test_atlas_eda_does_not_import_pydantic() -> None:
    code = (
        "import sys, atlas_eda, atlas_eda.testing, atlas_eda.payloads\n"
        "atlas_eda.EventBus().publish(atlas_eda.EventType.ERROR, {'a': [1]})\n"
        "print('pydantic' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
