"""Keeping secrets out of what atlas_eda shows: logs, ERROR events, dead letters,
cassettes and error messages.

One set of rules for the whole library:

- a value whose *name* contains one of :data:`DEFAULT_SECRET_NAMES` (compared
  case-insensitively, ignoring ``_`` and ``-``) is shown as :data:`REDACTED`: what
  :class:`~atlas_eda.LoggingAspect` does with arguments and mapping keys;
- in free text (an exception's message), :func:`redact_text` hides the value written after
  such a name (``password hunter2``, ``token=abc``, ``"api_key": "x"``), the password of
  every URL (``scheme://user:password@host``), and whatever the patterns added with
  :func:`add_redaction_pattern` match;
- :func:`redact_url` hides the password of one URL, for messages, logs and reprs.

The bus applies :func:`redact_text` to the ``error_message`` of every ``ERROR`` event it
publishes (only when a handler failed: a publish without failure pays nothing), and so do
``LoggingAspect``, dead letters and the cassette recorder's recorded failures.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "DEFAULT_SECRET_NAMES",
    "REDACTED",
    "add_redaction_pattern",
    "is_secret_name",
    "normal_name",
    "redact_text",
    "redact_url",
]

DEFAULT_SECRET_NAMES: tuple[str, ...] = (
    "password",
    "passwd",
    "token",
    "secret",
    "api_key",
    "authorization",
    "credential",
    "private_key",
)
"""Parts of names whose values are never shown. Matched case-insensitively, ignoring
``_`` and ``-``: ``api_key`` also covers ``apiKey``, ``X-Api-Key`` and ``api_keys``."""

REDACTED = "***"
"""What is shown instead of a secret value."""


def normal_name(name: str) -> str:
    """``name`` as secret names are compared: lower case, without ``_`` and ``-``."""
    return name.lower().replace("_", "").replace("-", "")


def is_secret_name(name: object, parts: tuple[str, ...] | None = None) -> bool:
    """Whether a value called ``name`` is a secret: its normal form contains one of
    ``parts`` (normal forms; default: those of :data:`DEFAULT_SECRET_NAMES`)."""
    if not isinstance(name, str):
        return False
    normal = normal_name(name)
    return any(part in normal for part in (_DEFAULT_PARTS if parts is None else parts))


_DEFAULT_PARTS = tuple(normal_name(n) for n in DEFAULT_SECRET_NAMES)


def _name_pattern(name: str) -> str:
    """A regex for ``name`` with an optional ``_`` or ``-`` between its letters'
    words, as :func:`normal_name` ignores them."""
    return "[_-]?".join(re.escape(c) for c in normal_name(name))


# A secret name (inside a longer word too: db_password, X-Api-Key), then ':', '=' or
# blanks, then the value: quoted, or up to the next blank or delimiter.
_NAMED_VALUE = re.compile(
    r"(?P<name>(?:" + "|".join(_name_pattern(n) for n in DEFAULT_SECRET_NAMES) + r")[\w-]*"
    r"['\"]?\s*(?:[:=]\s*|\s+))"
    r"(?P<secret>(?:(?:bearer|basic|digest)\s+)?(?:\"[^\"]*\"|'[^']*'|[^\s'\",;)}\]]+))",
    re.IGNORECASE,
)
# scheme://user:password@ -- the password up to the last '@' before a blank, so that an
# unencoded '/', ':' or '@' in it is hidden too.
_URL_PASSWORD = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(?P<secret>\S*)@")

_LOCK = threading.Lock()
_USER_PATTERNS: list[re.Pattern[str]] = []


def add_redaction_pattern(pattern: str | re.Pattern[str]) -> Callable[[], None]:
    """Hide what ``pattern`` (a regex, as a str or compiled) matches in every text
    :func:`redact_text` cleans, from now on, in this process: the match's group named
    ``secret`` when the pattern has one (``r"card (?P<secret>\\d{16})"``), else the whole
    match. Returns a function that removes the pattern again. A str that is not a valid
    regex is refused with ``ValueError``."""
    if isinstance(pattern, str):
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}.") from None
    elif isinstance(pattern, re.Pattern) and isinstance(pattern.pattern, str):
        compiled = pattern
    else:
        raise TypeError(
            f"add_redaction_pattern takes a regex as a str or a compiled str pattern, got "
            f"{type(pattern).__name__}."
        )
    if compiled.match(""):
        raise ValueError(f"{compiled.pattern!r} matches the empty string: it would hide nothing.")
    with _LOCK:
        _USER_PATTERNS.append(compiled)

    def remove() -> None:
        with _LOCK:
            if compiled in _USER_PATTERNS:
                _USER_PATTERNS.remove(compiled)

    return remove


def _hide(match: re.Match[str]) -> str:
    groups = match.re.groupindex
    if "secret" not in groups:
        return REDACTED
    start, end = match.span("secret")
    if start < 0:
        return match.group(0)
    whole_start = match.start()
    text = match.group(0)
    return text[: start - whole_start] + REDACTED + text[end - whole_start :]


def redact_text(text: str) -> str:
    """``text`` with every secret it shows replaced by :data:`REDACTED`: values after a
    secret name, URL passwords, and matches of :func:`add_redaction_pattern`'s patterns."""
    text = _URL_PASSWORD.sub(_hide, text)
    text = _NAMED_VALUE.sub(_hide, text)
    with _LOCK:
        patterns = tuple(_USER_PATTERNS)
    for pattern in patterns:
        text = pattern.sub(_hide, text)
    return text


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``: safe for messages, logs and
    reprs. Parsed with :func:`urllib.parse.urlsplit`; a password holding an unencoded
    ``/``, ``?``, ``#`` or ``@`` (which ``urlsplit`` cannot place) is hidden up to the last
    ``@``, so it is never shown either."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is not None and "@" in parts.netloc:
        after = url[url.index(parts.netloc) + len(parts.netloc) :]
        if "@" not in after:
            userinfo, _, hostport = parts.netloc.rpartition("@")
            user, colon, _ = userinfo.partition(":")
            if not colon:
                return url
            return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{hostport}"))
    userinfo, _, tail = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return url
    return f"{scheme}://{user.partition('/')[0]}:{REDACTED}@{tail}"
