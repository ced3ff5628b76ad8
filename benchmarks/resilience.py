"""Retry policy figures (issue 18): an effect whose performer has a retry policy and
succeeds at its first attempt, beside the same effect with a bare performer, each run
inside ``EffectMonad.run`` through an ``EffectHandler``.

Two handlers register the same performer for one effect type, one plainly and one with
``Retry(attempts=5, backoff=0.1)``; a monad holding one effect of that type is run
through each, interleaved and alternating which goes first. The performer never fails,
so the figure is what a policy costs when nothing goes wrong (target ≤ 1.3). A retried
effect costs tenacity's machinery and the wait on top: not measured, the wait dominates.
"""

from __future__ import annotations

from typing import Any

from atlas_eda import Effect, EffectHandler, EffectMonad, EffectType, Retry

from ._harness import (
    Config,
    Row,
    Section,
    Target,
    interleaved_per_call,
    median,
    ratio_row,
    time_row,
)

__all__ = ["SECTION", "run"]


def run(config: Config) -> list[Row]:
    repeats = 7 if config.quick else 15
    min_time = 0.01 if config.quick else 0.03
    performed: list[Any] = []

    def perform(effect: Effect) -> int:
        performed.append(effect)
        return 1

    bare, guarded = EffectHandler(), EffectHandler()
    bare.register_handler(EffectType.HTTP_CALL, perform)
    guarded.register_handler(EffectType.HTTP_CALL, perform, retry=Retry(5, backoff=0.1))
    monad = EffectMonad("value", (Effect(EffectType.HTTP_CALL, {"url": "/stock"}),))

    def run_bare() -> object:
        return monad.run(bare)

    def run_guarded() -> object:
        return monad.run(guarded)

    # What is timed really performs, both ways alike.
    assert run_bare() == run_guarded() == "value"
    assert performed == [monad.effects[0]] * 2
    s = interleaved_per_call(
        {"bare": run_bare, "retry": run_guarded}, repeats=repeats, min_time=min_time
    )
    performed.clear()
    m = {name: median(values) for name, values in s.items()}
    return [
        ratio_row(
            "EffectMonad.run, performer with Retry (succeeds at once) / bare performer",
            m["retry"],
            m["bare"],
            Target("<=", 1.3, "x"),
        ),
        time_row("  EffectMonad.run, performer with Retry", s["retry"], "µs"),
        time_row("  EffectMonad.run, bare performer", s["bare"], "µs"),
    ]


SECTION = Section("resilience", "Retry policy on an effect performer vs a bare one", run)
