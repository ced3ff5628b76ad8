"""Dead letters: the failed deliveries a bus with ``failure_policy="dead_letter"`` keeps
for inspection and retry (internal, but for :class:`DeadLetter`, which ``atlas_eda`` and
``atlas_eda.bus`` export)."""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from time import time
from typing import Any

from .events import Event
from .redaction import redact_text
from .trace import handler_name

__all__ = ["DeadLetter", "DeadLetters"]

# The bus's logger: users (and the CLI) configure the bus's logging by this one name.
logger = logging.getLogger("atlas_eda.bus")


@dataclass(frozen=True, slots=True, repr=False)
class DeadLetter:
    """One failed delivery kept for inspection and retry: the event, the handler that
    raised (held strongly until the letter is retried away or cleared), its name, the
    exception, when it failed (``time.time()``) and how many times it has been tried.
    ``handler_name`` is the handler's ``__qualname__``, as in traces. What it shows of
    the exception (``error_message``, its repr) has secrets hidden
    (:func:`atlas_eda.redaction.redact_text`); ``error`` is the exception itself."""

    event: Event
    handler: Callable[[Event], Any]
    handler_name: str
    error: Exception
    failed_at: float
    attempts: int = 1

    @property
    def error_message(self) -> str:
        """The exception's type and message, secrets hidden: what is safe to show."""
        return f"{type(self.error).__name__}: {redact_text(str(self.error))}"

    def __repr__(self) -> str:
        return (
            f"DeadLetter(event={self.event!r}, handler_name={self.handler_name!r}, "
            f"error={self.error_message!r}, failed_at={self.failed_at!r}, "
            f"attempts={self.attempts!r})"
        )


class DeadLetters:
    """The newest ``limit`` dead letters of a bus, oldest first (the oldest are dropped
    first). Appending is one atomic deque operation, so failing publishers on several
    threads need no lock."""

    __slots__ = ("_letters",)

    def __init__(self, limit: int) -> None:
        self._letters: deque[DeadLetter] = deque(maxlen=limit)

    def add(self, event: Event, handler: Callable[[Event], Any], error: Exception) -> None:
        """Keep the delivery of ``event`` to ``handler`` that raised ``error`` now."""
        self._letters.append(DeadLetter(event, handler, handler_name(handler), error, time()))

    def letters(self) -> list[DeadLetter]:
        """The letters kept, oldest first (a copy)."""
        return list(self._letters)

    def clear(self) -> None:
        """Forget every letter."""
        self._letters.clear()

    def retry(self, redeliver: Callable[[DeadLetter], Exception | None]) -> int:
        """Call ``redeliver(letter)`` for each letter kept when the retry began, oldest
        first; it returns ``None`` when the handler succeeded, which removes the letter,
        or the handler's exception, which replaces the letter by one with that error and
        one more attempt. Returns how many succeeded; what ``redeliver`` raises ends the
        retry and reaches the caller."""
        done = 0
        for letter in self.letters():
            error = redeliver(letter)
            if error is None:
                self._replace(letter, None)
                done += 1
                continue
            logger.warning(
                "dead letter retry: %s failed again: %s",
                letter.handler_name,
                redact_text(str(error)),
            )
            self._replace(
                letter, dataclasses.replace(letter, error=error, attempts=letter.attempts + 1)
            )
        return done

    def _replace(self, letter: DeadLetter, replacement: DeadLetter | None) -> None:
        """Put ``replacement`` where ``letter`` is, or remove ``letter`` if ``None``
        (nothing, if it was dropped or cleared meanwhile)."""
        letters = self._letters
        for index, candidate in enumerate(letters):
            if candidate is letter:
                if replacement is None:
                    del letters[index]
                else:
                    letters[index] = replacement
                return
