"""Health checks on real stores (a SQLite file, a PostgreSQL schema) with a real follower
left behind, and ``atlas-eda health`` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atlas_eda import Breaker, EventBus, StoreFollower, TemporalStore
from atlas_eda.health import (
    BreakerCheck,
    CheckResult,
    DeadLetterCheck,
    FollowerCheck,
    Health,
    Status,
    StoreCheck,
    Thresholds,
)
from tests.conftest import Ping, run_cli, sqlite_url


def behind(url: str, written: int, delivered: int) -> None:
    """A durable follower ``mailer`` that delivered ``delivered`` of ``written`` events."""
    with TemporalStore(url=url) as store:
        follower = StoreFollower(url, EventBus(), "mailer", from_start=True)
        for n in range(written):
            store.create_document(f"t{n}", "c", "a")
        follower.poll(delivered)
        follower.close()


def test_a_follower_behind_is_degraded_then_failing_by_its_backlog(durable_url: str) -> None:
    behind(durable_url, written=5, delivered=1)
    store = TemporalStore(url=durable_url)
    try:
        ok = FollowerCheck(store, "mailer")()
        assert ok.status is Status.OK
        assert ok.details["position"] == 1
        assert ok.details["backlog"] == 4
        assert ok.details["head"] == 5
        degraded = FollowerCheck(store, "mailer", backlog=Thresholds(3, 10))()
        assert degraded.status is Status.DEGRADED
        assert "backlog at or over 3" in degraded.reason
        failing = FollowerCheck(store, "mailer", backlog=Thresholds(2, 4))()
        assert failing.status is Status.FAILING
        # The lag: the oldest undelivered event has waited since its commit.
        late = FollowerCheck(store, "mailer", lag=Thresholds(1, 2), clock=lambda: 4e9)()
        assert late.status is Status.FAILING
        assert late.details["lag_seconds"] > 1
        report = Health.of(store=store, followers=["mailer"]).run()
        assert [r.name for r in report.results] == ["store", "follower:mailer", "dead letters"]
        assert report.results[0].details == {"head": 5}
        assert report.status is Status.OK
    finally:
        store.close()


def test_a_caught_up_follower_has_no_lag(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "s.db")
    behind(url, written=2, delivered=2)
    store = TemporalStore(url=url)
    try:
        result = FollowerCheck(store, "mailer", lag=Thresholds(1, 2), clock=lambda: 4e9)()
        assert result.status is Status.OK
        assert result.details["backlog"] == 0
        assert result.details["lag_seconds"] == 0
        unknown = FollowerCheck(store, "nobody")()
        assert unknown.status is Status.FAILING
    finally:
        store.close()


def test_dead_letters_and_open_breakers_degrade(tmp_path: Path) -> None:
    bus = EventBus(failure_policy="dead_letter")

    def fails(event: object) -> None:
        raise RuntimeError("down")

    bus.subscribe(Ping.PING, fails)
    assert DeadLetterCheck(bus=bus)().status is Status.OK
    bus.publish(Ping.PING)
    letters = DeadLetterCheck(bus=bus)()
    assert letters.status is Status.DEGRADED
    assert letters.details == {"bus": 1, "durable": 0}
    breaker = Breaker(fail_max=1, name="mail")
    assert BreakerCheck([breaker])().status is Status.OK
    with pytest.raises(RuntimeError):
        breaker.call(fails, None)
    opened = BreakerCheck([breaker])()
    assert opened.status is Status.DEGRADED
    assert opened.reason == "mail open"


def test_a_check_that_raises_is_failing_and_the_others_still_run() -> None:
    def broken() -> CheckResult:
        raise OSError("disk gone")

    broken.name = "disk"  # type: ignore[attr-defined]
    store = TemporalStore(url="memory://")
    report = Health([broken, StoreCheck(store)]).run()  # type: ignore[list-item]
    assert report.status is Status.FAILING
    assert report.exit_code == 2
    assert report.results[0].reason == "check raised OSError: disk gone"
    assert report.results[1].status is Status.OK
    assert json.loads(report.to_json())["status"] == "failing"
    with pytest.raises(ValueError, match="already registered"):
        Health([StoreCheck(store), StoreCheck(store)])
    with pytest.raises(ValueError, match="must not exceed"):
        Thresholds(10, 5)


def test_the_command_exits_0_1_2_and_tells_bad_input_apart(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "s.db")
    behind(url, written=4, delivered=1)
    ok = run_cli("health", "--store", url, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "follower:mailer  ok" in ok.stdout
    degraded = run_cli("health", "--store", url, "--backlog", "3,10", "--json", cwd=tmp_path)
    assert degraded.returncode == 1
    report = json.loads(degraded.stdout)
    assert report["status"] == "degraded"
    assert report["checks"][1]["details"]["backlog"] == 3
    failing = run_cli("health", "--store", url, "--backlog", "1,2", "--json", cwd=tmp_path)
    assert failing.returncode == 2
    assert json.loads(failing.stdout)["status"] == "failing"
    # Bad input: also 2, but one line on stderr and nothing on stdout.
    for args in (["--follower", "nope"], ["--backlog", "5"]):
        bad = run_cli("health", "--store", url, "--json", *args, cwd=tmp_path)
        assert bad.returncode == 2
        assert bad.stdout == ""
        assert bad.stderr.startswith("atlas-eda: error: ")
        assert len(bad.stderr.strip().splitlines()) == 1
