"""The cassette loader's fast path held equal to its plain definition: msgspec's JSON
decoding (``_loads``) to the standard library's (``plain_loads``), and the entry read from
a line shaped as a recorder writes it (``_entry``) to the one read by the plain rules
(``plain_entry``), for what each accepts and for the message of what each refuses.
And the cycle collector, paused while a cassette loads, is on again after."""

from __future__ import annotations

import dataclasses
import gc
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Ping
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas_eda.testing import Cassette, CassetteError, cassette, register_types
from atlas_eda.testing.cassette import _entry, _loads, plain_entry, plain_loads

register_types(Ping)

EQUAL = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def typed(value: Any) -> Any:
    """``value`` with the type of every part spelled out (``1``, ``1.0`` and ``True``
    compare equal in Python, not here; floats by repr, so ``-0.0`` is not ``0.0``)."""
    if isinstance(value, dict):
        return ("dict", [(key, typed(item)) for key, item in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [typed(item) for item in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """What ``call`` gave (spelled out by :func:`typed`) or the exception it raised."""
    try:
        return "value", call()
    except Exception as exc:
        return type(exc).__name__, str(exc)


# -- JSON --------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(),
        st.text(),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)

ODD_TOKENS = [
    "NaN",
    "-Infinity",
    "1e999",
    "-1e400",
    "1e-400",
    "-0",
    "-0.0",
    "01",
    "1.",
    ".5",
    "1E+2",
    '"\\ud800"',
    '"\\udc00\\ud800"',
    '"\\u00e9"',
    '"\\/"',
    '"\\x41"',
    "9" * 4301,
    "9" * 4300,
    '{"a":1,"a":2}',
    "[" * 2000 + "]" * 2000,
    "\x0c",
    "\t",
    "\r",
    " ",
    "\u00a0",
    "\ufeff",
    "true",
    "tru",
    "null",
    ",",
    "}",
    "]",
]


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    """JSON text as ``json.dumps`` writes it (NaN and infinities included), cut, or with
    an odd token spliced in."""
    text = json.dumps(draw(json_values), ensure_ascii=draw(st.booleans()))
    how = draw(st.sampled_from(["as is", "cut", "splice", "token"]))
    if how == "cut":
        return text[: draw(st.integers(0, len(text)))]
    if how == "splice":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.sampled_from(ODD_TOKENS)) + text[at:]
    if how == "token":
        return draw(st.sampled_from(ODD_TOKENS))
    return text


@EQUAL
@given(text=st.one_of(json_texts(), st.text(max_size=30)))
def test_msgspec_decodes_json_as_the_standard_library_does(text: str) -> None:
    fast = outcome(lambda: typed(_loads(text)))
    plain = outcome(lambda: typed(plain_loads(text)))
    assert fast == plain


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a":NaN}', "NaN is not JSON"),
        ('{"a":-Infinity}', "-Infinity is not JSON"),
        ('{"a":1e999}', "too large for a float"),
        ("[" * 100_000, "nested too deeply to decode"),
        ("9" * 5000, "Exceeds the limit"),
    ],
)
def test_what_msgspec_refuses_is_refused_with_the_plain_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _loads(text)


def test_a_lone_surrogate_escape_reads_as_json_loads_reads_it() -> None:
    # msgspec refuses it; json.loads (the definition) gives the lone surrogate.
    assert _loads('{"a":"\\ud800"}') == {"a": "\ud800"}


# -- lines -------------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "specversion": "1.0",
    "id": "e1",
    "source": "shop",
    "type": "Ping.PING",
    "time": "2026-01-01T00:00:00.1234567Z",
    "datacontenttype": "application/json",
    "correlationid": "e0",
    "causationid": "e0",
    "atlasmetadata": json.dumps({"user": "ann", "n": [1, 2.5]}),
    "atlaseffects": json.dumps(
        [
            {
                "type": "EffectType.HTTP_CALL",
                "payload": {"url": "https://example.com"},
                "description": "fetch",
                "result": {"status": 200},
            },
            {
                "type": "Func",
                "payload": None,
                "description": "Func(...)",
                "error": {"type": "builtins.OSError", "message": "disk full"},
                "retried": [
                    {"error": {"type": "builtins.OSError", "message": "busy"}, "wait": 0},
                    {"error": {"type": "builtins.OSError", "message": "busy"}, "wait": 0.5},
                ],
            },
        ]
    ),
    "atlasstate": json.dumps(
        [
            {
                "document": "d4a51d65-383e-5b33-92aa-2a9b5b6267b5",
                "version": 1,
                "kind": "created",
                "fields": {"title": "T", "content": "C", "author": "ann"},
            }
        ]
    ),
    "atlasresult": json.dumps({"value": [1, "two"]}),
    "data": {"order": 1, "items": [1.5, "x", None, True], "nested": {"a": {"b": []}}},
}
"""A line with every attribute a recorder writes (but ``atlasdatatype``)."""

ATTRIBUTES = [*GOOD, "atlasdatatype", "data_base64", "extra"]

attribute_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            "",
            "1.0",
            "Ping.PING",
            "EffectType.ERROR",
            "Nowhere.THING",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.5z",
            "1969-12-31T23:59:59.5Z",
            "9999-12-31T23:59:59.9999999Z",
            "2026-01-01T00:00:00.1234567+02:00",
            "2026-13-01T00:00:00Z",
            "atlas_eda",
            "application/json",
            "Placed",
        ]
    ),
)

effect_items = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(
            st.sampled_from(["EffectType.HTTP_CALL", "Func", "", "Secret.MEMBER", "A.B.C"]),
            json_values,
        ),
        "payload": json_values,
        "description": st.one_of(st.text(max_size=5), json_values),
        "result": json_values,
        "error": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "type": st.one_of(st.sampled_from(["builtins.OSError", ""]), json_values),
                    "message": st.one_of(st.text(max_size=5), json_values),
                    "extra": json_values,
                },
            ),
            json_values,
        ),
        "retried": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "error": st.one_of(
                            st.just({"type": "builtins.OSError", "message": "busy"}), json_values
                        ),
                        "wait": st.one_of(
                            st.sampled_from([0, 1, -1, 0.5, -0.0, -0.5, 1e308, True, False]),
                            json_values,
                        ),
                    },
                ),
                max_size=2,
            ),
            json_values,
        ),
        "extra": json_values,
    },
)


@st.composite
def cassette_lines(draw: st.DrawFn) -> str:
    """A recorder's line with a few attributes removed or changed, and maybe its effects'
    items, or its time, the recorder's way or another, or the line written twice over."""
    line = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(ATTRIBUTES), max_size=4)):
        choice = draw(st.integers(0, 2))
        if choice == 0:
            line.pop(name, None)
        elif choice == 1:
            line[name] = draw(attribute_values)
        else:
            line[name] = json.dumps(draw(attribute_values))
    if draw(st.booleans()):
        line["atlaseffects"] = json.dumps(draw(st.lists(effect_items, max_size=3)))
    text = json.dumps(line)
    if draw(st.booleans()):  # an attribute repeated: the last one counts
        name = draw(st.sampled_from(ATTRIBUTES))
        text = text[:-1] + f", {json.dumps(name)}: {json.dumps(draw(attribute_values))}}}"
    return text


def entry_outcome(read: Callable[..., Any], text: str) -> tuple[str, Any]:
    types: dict[str, Any] = {}

    def read_line() -> Any:
        entry = read(7, text, types)
        event = entry.event
        fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        return (
            entry,
            repr(entry),
            typed(fields["data"]),
            typed(dict(event.metadata)),
            [
                (typed(e.payload), typed(e.result), typed([a.wait for a in e.retried]))
                for e in entry.effects
            ],
            typed(entry.result.value if entry.result else None),
            {name: (type(value), value) for name, value in fields.items() if name != "data"},
        )

    return outcome(read_line)


@EQUAL
@given(text=cassette_lines())
def test_the_fast_entry_is_the_plain_entry(text: str) -> None:
    assert entry_outcome(_entry, text) == entry_outcome(plain_entry, text)


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"datacontenttype": None},
        {"data_base64": "AA=="},
        {"extra": 1},
        {"time": "1969-12-31T23:59:59.5Z"},
        {"time": "9999-12-31T23:59:59.9999999Z"},
        {"atlasdatatype": "Placed"},
        {"atlaseffects": json.dumps([{"type": "Func", "retried": [{"wait": True}]}])},
        {"atlaseffects": json.dumps([{"type": "Func", "description": None}])},
        {"atlaseffects": json.dumps([{"type": "Func", "error": {"type": "", "message": ""}}])},
        {"atlaseffects": json.dumps([{"type": "Secret.MEMBER"}])},
        {"atlaseffects": json.dumps([{"type": "Func", "retried": None}])},
        {"atlasstate": "[{}]"},
    ],
)
def test_lines_the_fast_path_leaves_to_the_plain_rules(change: dict[str, Any]) -> None:
    text = json.dumps({**GOOD, **change})
    assert entry_outcome(_entry, text) == entry_outcome(plain_entry, text)


def test_the_good_line_takes_the_fast_path_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object) -> None:
        raise AssertionError("the line was left to plain_entry")

    expected = plain_entry(3, json.dumps(GOOD), {})
    monkeypatch.setattr(cassette, "plain_entry", never)
    entry = _entry(3, json.dumps(GOOD), {})
    assert entry == expected
    assert entry.event.type is Ping.PING
    assert [effect.retried[1].wait for effect in entry.effects[1:]] == [0.5]
    assert entry.state[0].fields == {"title": "T", "content": "C", "author": "ann"}


# -- the cycle collector -------------------------------------------------------------------


def _cassette(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "c.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_the_cycle_collector_is_on_again_after_a_load_good_or_bad(tmp_path: Path) -> None:
    assert gc.isenabled()
    assert len(Cassette.load(_cassette(tmp_path, json.dumps(GOOD)))) == 1
    assert gc.isenabled()
    with pytest.raises(CassetteError, match="line 2"):
        Cassette.load(_cassette(tmp_path, json.dumps(GOOD), "{"))
    assert gc.isenabled()


def test_a_load_leaves_a_paused_collector_paused(tmp_path: Path) -> None:
    gc.disable()
    try:
        Cassette.load(_cassette(tmp_path, json.dumps(GOOD)))
        assert not gc.isenabled()
    finally:
        gc.enable()
