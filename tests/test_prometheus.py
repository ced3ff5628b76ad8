"""Prometheus metrics: the real HTTP endpoint scraped on 127.0.0.1 and parsed with
prometheus_client's own parser, from code and from ``atlas-eda metrics`` in a real
process stopped by SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from atlas_eda import (
    Breaker,
    DocumentService,
    Effect,
    EffectHandler,
    EffectMonad,
    EffectType,
    EventBus,
    EventType,
    MetricsAspect,
    StoreFollower,
    TemporalStore,
)
from atlas_eda.prometheus import MetricsServerError, PrometheusMetrics
from tests.conftest import run_cli, sqlite_url


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition at ``url``: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=60) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_endpoint_exposes_what_the_system_did(tmp_path: Path) -> None:  # noqa: PLR0915
    bus = EventBus(failure_policy="dead_letter")
    url = sqlite_url(tmp_path / "s.db")
    store = TemporalStore(bus, url=url)
    breaker = Breaker(fail_max=1, name="mail")
    handler = EffectHandler(temporal_store=store, event_bus=bus)
    for effect_type in EffectType:
        handler.register_handler(effect_type, lambda effect: {"ok": True})
    bus.effect_handler = handler
    service = DocumentService(bus, store, handler)
    follower = StoreFollower(url, EventBus(), "mailer", from_start=True)
    metrics = PrometheusMetrics(
        bus=bus, store=store, effect_handler=handler, followers=["mailer"], breakers=[breaker]
    )
    aspect = MetricsAspect(metrics_collector=metrics)

    def fails(event: Any) -> None:
        raise RuntimeError("down")

    def logs(event: Any) -> EffectMonad[None]:
        return EffectMonad.pure(None).with_effect(Effect(EffectType.LOGGING, "created"))

    bus.subscribe(EventType.DOCUMENT_UPDATED, fails)
    bus.subscribe(EventType.DOCUMENT_CREATED, logs)
    create = aspect(service.create_document)
    document_id = create("T", "c", "a")
    service.update_document(document_id, content="d", editor="e")
    follower.poll(1)
    with pytest.raises(RuntimeError):
        breaker.call(fails, None)
    server = metrics.serve(0)
    try:
        samples = scrape(server.url)
    finally:
        server.close()
        metrics.close()
        follower.close()
    ns = "atlas_eda"
    assert samples[(f"{ns}_events_published_total", (("type", "EventType.DOCUMENT_CREATED"),))] == 1
    assert samples[(f"{ns}_events_published_total", (("type", "EventType.ERROR"),))] == 1
    failing = (("handler", "test_the_endpoint_exposes_what_the_system_did.<locals>.fails"),)
    assert samples[(f"{ns}_deliveries_total", failing)] == 1
    assert samples[(f"{ns}_delivery_failures_total", failing)] == 1
    assert samples[(f"{ns}_delivery_duration_seconds_count", failing)] == 1
    assert samples[(f"{ns}_delivery_duration_seconds_bucket", (*failing, ("le", "+Inf")))] == 1
    logging_ok = (("outcome", "ok"), ("type", "EffectType.LOGGING"))
    assert samples[(f"{ns}_effects_total", logging_ok)] == 1
    assert samples[(f"{ns}_effect_duration_seconds_count", (("type", "EffectType.LOGGING"),))] >= 1
    for command in ("create_document", "update_document"):
        key = (f"{ns}_store_write_duration_seconds_count", (("command", command),))
        assert samples[key] == 1
    call = (("call", "DocumentService.create_document"),)
    assert samples[(f"{ns}_call_duration_seconds_count", call)] == 1
    assert samples[(f"{ns}_bus_dead_letters", ())] == 1
    assert samples[(f"{ns}_store_up", ())] == 1
    head = samples[(f"{ns}_store_head_position", ())]
    assert head >= 2
    assert samples[(f"{ns}_follower_position", (("follower", "mailer"),))] == 1
    assert samples[(f"{ns}_follower_backlog", (("follower", "mailer"),))] == head - 1
    assert samples[(f"{ns}_follower_lag_seconds", (("follower", "mailer"),))] >= 0
    assert samples[(f"{ns}_breaker_state", (("breaker", "mail"), ("state", "open")))] == 1
    assert samples[(f"{ns}_breaker_state", (("breaker", "mail"), ("state", "closed")))] == 0
    # close() undid the weaving and the watching: nothing more is counted.
    assert "perform_all" not in vars(handler)
    assert "update_document" not in vars(store)
    store.close()


def test_a_port_in_use_is_one_clear_error() -> None:
    metrics = PrometheusMetrics()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsServerError, match="already in use"):
            metrics.serve(port)


def test_the_command_serves_until_sigterm_and_exits_0(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "s.db")
    with TemporalStore(url=url) as store:
        follower = StoreFollower(url, EventBus(), "mailer", from_start=True)
        for n in range(3):
            store.create_document(f"t{n}", "c", "a")
        follower.poll(1)
        follower.close()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "atlas_eda.cli",
            "metrics",
            "--store",
            url,
            "--serve",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "ATLAS_EDA_STORE_URL"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        served = re.search(r"(http://127\.0\.0\.1:\d+/metrics)", line)
        assert served, (line, process.stderr.read() if process.stderr else "")
        samples = scrape(served.group(1))
        assert samples[("atlas_eda_store_head_position", ())] == 3
        assert samples[("atlas_eda_follower_backlog", (("follower", "mailer"),))] == 2
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert out.strip() == "Stopped."
    assert err == ""


def test_the_command_refuses_a_port_in_use_and_a_bad_address(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "s.db")
    TemporalStore(url=url).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = run_cli("metrics", "--store", url, "--serve", f"127.0.0.1:{port}", cwd=tmp_path)
    for done, expected in (
        (in_use, "already in use"),
        (
            run_cli("metrics", "--store", url, "--serve", "nohost.invalid:9", cwd=tmp_path),
            "not an address of this machine",
        ),
        (
            run_cli("metrics", "--store", url, "--serve", "127.0.0.1", cwd=tmp_path),
            "must be HOST:PORT",
        ),
        (
            run_cli("metrics", "--store", url, "--serve", "127.0.0.1:70000", cwd=tmp_path),
            "must be 0 to 65535",
        ),
    ):
        assert done.returncode == 2
        assert done.stdout == ""
        assert expected in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_without_the_extra_nothing_imports_it(tmp_path: Path) -> None:
    # prometheus_client made unimportable: atlas_eda, its health checks and the CLI's help
    # still work, and importing atlas_eda.prometheus says which extra to install.
    script = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "import atlas_eda, atlas_eda.health, atlas_eda.cli\n"
        "from atlas_eda import *\n"
        "print(sorted(m for m in sys.modules if m.startswith('prometheus')))\n"
        "try:\n"
        "    import atlas_eda.prometheus\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "['prometheus_client']"  # only the blocked entry itself
    assert "pip install 'atlas_eda[prometheus]'" in lines[1]
