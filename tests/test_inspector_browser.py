"""The inspector in a real browser: headless Chromium (Debian's ``chromium``, installed by
``make test``'s chromium target) driven by Playwright against a real ``atlas-eda inspect``
process on a store the test builds. Screenshots are saved under each test's tmp_path.
Without Chromium or Playwright these tests skip, except under ``CI=true``, where they fail."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import unavailable
from test_inspector import XSS_CONTENT, XSS_EDITOR, XSS_TITLE, build_store, inspect_process
from test_inspector_sagas import XSS_TRAVELLER, build_saga_store, write_app_module

from atlas_eda import TemporalStore

CHROMIUM = os.environ.get("ATLAS_EDA_CHROMIUM", "/usr/bin/chromium")
"""Debian's Chromium (never a browser Playwright downloads)."""

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Flags that keep Chromium quiet on a machine without a network or a screen."""

WAIT_MS = 60_000
"""How long a step may take on a loaded machine before the test fails (not a speed check)."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable(
            "the browser tests need Playwright for Python",
            "pip install -e '.[dev,inspect]' (never 'playwright install')",
        )
    if shutil.which(CHROMIUM) is None:
        unavailable(
            f"the browser tests need Chromium at {CHROMIUM}",
            "run 'make chromium' as root, or 'sudo apt-get install chromium'",
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    made = build_store(url)
    with inspect_process(url) as process:
        yield {**made, "url": url, "base": process.base}


def opened(browser: Any, base: str, route: str, **context: Any) -> Any:
    """A new page of a fresh browser context at ``base/route``, once the view is drawn;
    every dialog is recorded (none may open) and dismissed."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}, **context).new_page()
    page.set_default_timeout(WAIT_MS)
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{base}/{route}")
    page.wait_for_selector("body[data-rendered]")
    return page


def drawn(page: Any, route: str) -> None:
    """Wait until the page has drawn ``route`` (its hash)."""
    page.wait_for_function("(r) => document.body.dataset.rendered === r", arg=route)


def test_click_through_timeline_scrubber_diff_and_cause_chain(
    browser: Any, served: dict[str, Any], tmp_path: Path
) -> None:
    page = opened(browser, served["base"], "#/timeline?since=1")
    rows = page.locator("#events tbody tr")
    assert rows.count() == 6
    assert rows.nth(0).locator("td").nth(4).text_content() == "created"
    assert "Shop.ORDER" in (rows.nth(0).text_content() or "")
    assert page.locator("#store").text_content() == served["url"]
    page.screenshot(path=tmp_path / "timeline.png", full_page=True)

    # the cause chain of position 2: bus event -> handler -> store change, and the root's tree
    rows.nth(1).locator("a.cause-link").click()
    drawn(page, "#/cause?position=2")
    chain = page.locator("#chain li").all_text_contents()
    assert chain[0].startswith("bus event Shop.SHIPPED")
    assert chain[1].startswith("handler ")
    assert chain[1].endswith("ship")
    assert chain[2].startswith("store change #2: updated")
    assert chain[2].endswith("content=shipped, last_editor=courier")
    tree = page.locator("#tree > li")
    assert tree.count() == 2
    assert (tree.nth(0).text_content() or "").startswith("Shop.ORDER")
    assert tree.nth(1).locator("tbody tr").count() == 2  # the SHIPPED delivery wrote 2 and 3
    page.screenshot(path=tmp_path / "cause.png", full_page=True)

    # the scrubber: move it to position 3, then step back one
    page.locator("#scrubber").fill("3")
    drawn(page, "#/state?position=3")
    assert page.locator("#state-title").text_content() == "The store at position 3"
    assert page.locator("#state tbody tr").count() == 2
    page.locator("#back").click()
    drawn(page, "#/state?position=2")
    assert page.locator("#state tbody tr").count() == 1
    assert page.locator("#position").input_value() == "2"
    page.screenshot(path=tmp_path / "state.png", full_page=True)

    # the diff of the event at 2, side by side with the changed fields highlighted
    page.locator("#state-event a", has_text="diff").click()
    drawn(page, "#/diff?a=1&b=2")
    highlighted = page.locator("#changed tr.changed")
    fields = [
        highlighted.nth(i).locator("td").first.text_content() for i in range(highlighted.count())
    ]
    assert fields == ["version", "content", "last_editor", "modified_at"]
    content = page.locator('#changed tr[data-field="content"] td')
    assert content.all_text_contents() == ["content", "placed", "shipped"]
    assert page.locator('#changed tr[data-field="title"]').get_attribute("class") is None
    page.screenshot(path=tmp_path / "diff.png", full_page=True)

    # a document's versions, from its link
    page.locator("#changed h4 a").click()
    drawn(page, f"#/document?id={served['order']}")
    assert page.locator("#versions tbody tr").count() == 2
    assert not page.dialogs
    for name in ("timeline", "cause", "state", "diff"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0


def test_every_view_has_a_link_that_opens_it(browser: Any, served: dict[str, Any]) -> None:
    page = opened(browser, served["base"], "#/diff?a=1&b=3")
    assert page.locator("#diff-title").text_content() == "What changed from position 1 to 3"
    assert page.locator("#diff-counts").text_content() == "1 added, 0 removed, 1 changed."
    assert page.locator("#scrubber").input_value() == "3"
    page = opened(browser, served["base"], "#/timeline?kind=deleted")
    assert page.locator("#events tbody tr").count() == 1
    assert page.locator('select[name="kind"]').input_value() == "deleted"
    page = opened(browser, served["base"], "#/state?position=99")
    assert "position is 99, past the end" in (page.locator("#error").text_content() or "")


def test_new_commits_show_up_without_reloading(browser: Any, served: dict[str, Any]) -> None:
    page = opened(browser, served["base"], "#/timeline")
    assert page.locator("#events tbody tr").count() == 6
    page.evaluate("window.__same_page = true")
    writer = TemporalStore(url=served["url"])  # another writer, as another process would be
    try:
        writer.create_document("Late", "arrived", "bob")
    finally:
        writer.close()
    page.wait_for_function("() => document.querySelectorAll('#events tbody tr').length === 7")
    assert page.locator("#scrubber").get_attribute("max") == "7"
    assert page.evaluate("window.__same_page") is True  # followed, not reloaded


@pytest.mark.parametrize("csp", [False, True], ids=["page-escaping-alone", "with-csp"])
def test_stored_script_payloads_are_shown_as_text_and_never_run(
    browser: Any, served: dict[str, Any], tmp_path: Path, csp: bool
) -> None:
    # Without the Content Security Policy, only the page's own escaping stands in the way.
    page = opened(browser, served["base"], "#/state", bypass_csp=not csp)
    for route in (
        "#/state",
        "#/timeline?since=1",
        "#/diff?a=4&b=5",
        "#/cause?position=5",
        f"#/document?id={served['note']}",
    ):
        page.evaluate("(r) => { location.hash = r; }", route)
        drawn(page, route)
        view = page.locator("#view")
        text = view.text_content() or ""
        assert XSS_TITLE in text
        assert XSS_CONTENT in text
        assert XSS_EDITOR in text
        assert view.locator("script, img, svg").count() == 0
        assert page.evaluate("typeof window.__pwned") == "undefined"
    page.screenshot(path=tmp_path / "payloads.png", full_page=True)
    assert not page.dialogs


@pytest.fixture
def trips_served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    url = f"sqlite:///{tmp_path / 'trips.db'}"
    views_url = f"sqlite:///{tmp_path / 'views.db'}"
    made = build_saga_store(url, views_url)
    spec = write_app_module(tmp_path, views_url)
    with inspect_process(url, "--app", spec, cwd=tmp_path) as process:
        yield {**made, "url": url, "base": process.base}


def test_sagas_and_projections_move_with_the_scrubber(
    browser: Any, trips_served: dict[str, Any], tmp_path: Path
) -> None:
    page = opened(browser, trips_served["base"], "#/sagas")
    assert page.locator("#sagas-title").text_content() == "Sagas at position 6"
    rows = page.locator("#sagas tbody tr")
    assert rows.count() == 2
    cells = rows.nth(0).locator("td").all_text_contents()
    assert cells[1:6] == ["TripSaga", "t1", "v2", "completed", "paid"]
    assert XSS_TRAVELLER in cells[6]  # the saga's state, shown as text
    assert page.locator("#nav-sagas").get_attribute("class") == "current"
    page.screenshot(path=tmp_path / "sagas.png", full_page=True)

    # the scrubber moves the sagas view through time: at 3, t1 was booked and t2 not started
    page.locator("#scrubber").fill("3")
    drawn(page, "#/sagas?position=3")
    assert page.locator("#sagas-count").text_content() == "1 saga instance started by position 3."
    cells = rows.nth(0).locator("td").all_text_contents()
    assert cells[3:6] == ["v1", "running", "booked"]

    # one saga's history, from its link; its versions link into the cause view
    rows.nth(0).locator("td a").first.click()
    drawn(page, f"#/saga?id={trips_served['t1']}&position=3")
    assert page.locator("#saga-versions tbody tr").count() == 1
    page.locator("#forward").click()
    drawn(page, f"#/saga?id={trips_served['t1']}&position=4")
    page.locator("#forward").click()
    drawn(page, f"#/saga?id={trips_served['t1']}&position=5")
    versions = page.locator("#saga-versions tbody tr")
    assert versions.count() == 2
    assert page.locator('#saga-state tr[data-field="status"] td').nth(1).text_content() == (
        "completed"
    )
    assert "Trip.PAID" in (versions.nth(1).text_content() or "")
    page.screenshot(path=tmp_path / "saga.png", full_page=True)
    versions.nth(1).locator("a.cause-link").click()
    drawn(page, "#/cause?position=5")
    chain = page.locator("#chain li").all_text_contents()
    assert chain[0].startswith("bus event Trip.PAID")
    assert chain[2].startswith("store change #5: saga")

    # the projections of --app: lag, and the read model as of the scrubber's position
    page.locator("#nav-projections").click()
    drawn(page, "#/projections")
    assert page.locator("p.lag").text_content() == (
        "Its read model has reached position 3: 3 behind the store's end."
    )
    table = page.locator('table[data-table="documents_by_author"] tbody tr')
    assert table.count() == 2
    page.screenshot(path=tmp_path / "projections.png", full_page=True)
    page.locator("#scrubber").fill("2")
    drawn(page, "#/projections?position=2")
    assert table.count() == 1
    assert table.nth(0).locator("td").nth(2).text_content() == "Plan"
    page.locator("#back").click()
    drawn(page, "#/projections?position=1")
    assert page.locator("h4").text_content() == "documents_by_author as of position 1: 1 row"

    # nothing stored ran as script anywhere
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("#view script").count() == 0
    assert not page.dialogs


@pytest.mark.parametrize("csp", [False, True], ids=["page-escaping-alone", "with-csp"])
def test_a_script_in_saga_state_is_shown_as_text_and_never_runs(
    browser: Any, trips_served: dict[str, Any], csp: bool
) -> None:
    page = opened(browser, trips_served["base"], "#/sagas", bypass_csp=not csp)
    for route in (
        "#/sagas",
        f"#/saga?id={trips_served['t1']}",
        "#/timeline?since=1",
        "#/cause?position=2",
    ):
        page.evaluate("(r) => { location.hash = r; }", route)
        drawn(page, route)
        view = page.locator("#view")
        assert XSS_TRAVELLER in (view.text_content() or "")
        assert view.locator("script").count() == 0
        assert page.evaluate("typeof window.__pwned") == "undefined"
    assert not page.dialogs


def test_without_app_the_projections_view_says_how_to_enable_it(
    browser: Any, served: dict[str, Any]
) -> None:
    page = opened(browser, served["base"], "#/projections")
    text = page.locator("#projections-off").text_content() or ""
    assert "Start the inspector with --app module:factory" in text
