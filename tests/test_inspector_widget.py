"""``Timeline.widget()``: the notebook widget's position and its cursor move together, it
shows the state, diff and cause chain of its position, refuses positions that do not
exist, and falls back to HTML where widgets are not rendered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("anywidget", reason="the widget needs the 'notebook' extra")

from test_inspector import XSS_TITLE, build_store

from atlas_eda import TemporalStore
from atlas_eda.errors import PositionError
from atlas_eda.inspector.widget import TimelineWidget


@pytest.fixture
def shop(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    made = build_store(url)
    store = TemporalStore(url=url)
    yield store, made
    store.close()


def test_the_widget_starts_at_the_end_and_shows_that_position(shop: Any) -> None:
    store, _ = shop
    widget = store.timeline().widget()
    assert isinstance(widget, TimelineWidget)
    assert (widget.position, widget.last_position, widget.cursor.position) == (6, 6, 6)
    assert widget.view["state"]["position"] == 6
    assert widget.view["diff"]["a"] == 5
    assert widget.view["cause"]["event"]["position"] == 6


def test_moving_the_widget_moves_the_cursor_and_back(shop: Any) -> None:
    store, made = shop
    widget = store.timeline().widget(position=1)
    widget.position = 2  # what the page's scrubber does (the traitlet, synced)
    assert widget.cursor.position == 2
    assert widget.view["cause"]["cause"]["event_type"] == "Shop.SHIPPED"
    (changed,) = widget.view["diff"]["changed"]
    assert changed["document_id"] == made["order"]
    assert "content" in changed["fields"]
    widget.cursor.forward()  # and the cursor moves the widget
    assert widget.position == 3
    assert widget.view["state"]["count"] == 2
    widget.cursor.goto(0)
    assert widget.position == 0
    assert widget.view["cause"] is None
    assert widget.cursor.state == {}


def test_positions_that_do_not_exist_are_refused_and_nothing_moves(shop: Any) -> None:
    store, _ = shop
    widget = store.timeline().widget(position=3)
    with pytest.raises(PositionError, match="past the end"):
        widget.position = 7
    with pytest.raises(PositionError, match="past the end"):
        widget.cursor.goto(7)
    assert (widget.position, widget.cursor.position) == (3, 3)
    with pytest.raises(PositionError, match="before the start"):
        store.timeline().widget(position=-1)


def test_without_widgets_the_front_end_shows_the_cursor_s_html(shop: Any) -> None:
    store, _ = shop
    widget = store.timeline().widget(position=5)
    bundle = widget._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
    html = data["text/html"]
    assert html == widget.cursor._repr_html_()
    assert "Store at position 5" in html
    assert XSS_TITLE not in html  # escaped by the HTML table, as every stored value
    assert "&lt;script&gt;" in html


def test_the_widget_script_puts_values_on_the_page_as_text_only() -> None:
    import atlas_eda.inspector.widget

    script = Path(atlas_eda.inspector.widget.__file__).with_name("widget.js").read_text()
    assert "innerHTML" not in script
    assert "insertAdjacentHTML" not in script
    assert "createTextNode" in script


def test_without_anywidget_the_widget_says_which_extra_to_install() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['anywidget'] = None\n"
        "from atlas_eda import TemporalStore\n"
        "store = TemporalStore(url='memory://')\n"
        "try:\n"
        "    store.timeline().widget()\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.startswith("AtlasEdaError Timeline.widget needs anywidget")
    assert "pip install 'atlas_eda[notebook]'" in done.stdout
