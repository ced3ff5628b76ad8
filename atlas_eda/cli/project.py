"""``atlas-eda project``: keep a projection's read model up to date from another process."""

from __future__ import annotations

import argparse
import contextlib

from ..projections import Projection
from .apps import import_app_module
from .command import Command, CommandError
from .command import seconds as as_seconds
from .signals import stop_on_signals
from .stores import add_store_option, open_store

UNTIL_CAUGHT_UP = "stop once the read model is caught up"

__all__ = ["COMMAND", "load_projection", "load_projections", "run_project"]


def _made(spec: str, what: str) -> tuple[object, str]:
    """What the factory of ``--app module:factory`` returns, called without arguments,
    with the factory's name; ``what`` says what it should return."""
    module, name = import_app_module(spec)
    factory = getattr(module, name, None)
    if not callable(factory):
        raise CommandError(
            f"--app {spec!r}: module {module.__name__!r} has no callable {name!r}; name a "
            f"function that takes no arguments and returns {what}."
        )
    try:
        return factory(), name
    except Exception as exc:
        raise CommandError(
            f"--app {spec!r}: calling {name}() raised {type(exc).__name__}: {exc}."
        ) from None


def load_projection(spec: str) -> Projection:
    """The projection ``--app module:factory`` makes: the module is imported and the
    factory called without arguments; it must return a
    :class:`~atlas_eda.projections.Projection`."""
    made, name = _made(spec, "a Projection")
    if not isinstance(made, Projection):
        raise CommandError(
            f"--app {spec!r}: {name}() returned a {type(made).__name__}, not an "
            f"atlas_eda.projections.Projection (for instance DocumentsByAuthor(url))."
        )
    return made


def load_projections(spec: str) -> list[Projection]:
    """The projections ``--app module:factory`` makes: as :func:`load_projection`, but
    the factory may also return a list or tuple of projections (with distinct names).
    On a refusal, the projections it made are closed."""
    made, name = _made(spec, "a Projection or a list of them")
    found = list(made) if isinstance(made, list | tuple) else [made]
    wrong = [type(p).__name__ for p in found if not isinstance(p, Projection)]
    names = [p.name for p in found if isinstance(p, Projection)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if not wrong and not twice and found:
        return [p for p in found if isinstance(p, Projection)]
    for projection in found:
        if isinstance(projection, Projection):
            projection.close()
    if twice:
        raise CommandError(
            f"--app {spec!r}: {name}() returned two projections named {twice[0]!r}; give "
            f"each its own name (Projection(url, name=...))."
        )
    returned = ", ".join(wrong) if wrong else "an empty list"
    raise CommandError(
        f"--app {spec!r}: {name}() returned {returned}, not an "
        f"atlas_eda.projections.Projection nor a list of them (for instance "
        f"[DocumentsByAuthor(url)])."
    )


def run_project(
    url: str | None,
    app: str,
    *,
    rebuild: bool = False,
    timeout: str | None = None,
    idle_timeout: str | None = None,
) -> str:
    """Bring the projection ``app`` makes up to date with the store at ``url`` (from the
    start with ``rebuild``), then keep it so until ``timeout`` seconds, or until nothing
    new came for ``idle_timeout`` seconds; with neither, stop once caught up. Returns the
    line that reports what was done."""
    seconds = as_seconds(timeout, "--timeout", UNTIL_CAUGHT_UP)
    idle = as_seconds(idle_timeout, "--idle-timeout", UNTIL_CAUGHT_UP)
    with open_store(url) as store:
        projection = load_projection(app)
        applied = 0
        # SIGTERM or Ctrl-C stops at the next page (a second signal at once); each page
        # is applied with its position in one transaction, so nothing applied is lost.
        with projection, stop_on_signals() as stop, contextlib.suppress(KeyboardInterrupt):
            applied = projection.rebuild(store) if rebuild else 0
            if seconds is None and idle is None:
                applied += projection.catch_up(store)
            else:
                applied += projection.run(
                    store, timeout=seconds, idle_timeout=idle, stop_event=stop
                )
            letters = len(projection.dead_letters())
        kept = f"; {letters} dead letter{'s' * (letters != 1)}" if letters else ""
        return (
            f"{projection.name}: applied {applied} event{'s' * (applied != 1)}, position "
            f"{projection.position} of {store.last_position()}{kept}"
        )


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser)
    parser.add_argument(
        "--app",
        metavar="MODULE:FACTORY",
        required=True,
        help="a function that takes no arguments and returns the Projection to run "
        "(its read model's home is the Projection's url)",
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="empty the read model and apply the log from the start",
    )
    parser.add_argument(
        "--timeout", metavar="SECONDS", help="keep applying new events for this many seconds"
    )
    parser.add_argument(
        "--idle-timeout",
        metavar="SECONDS",
        help="keep applying new events until none came for this many seconds",
    )


def _run(args: argparse.Namespace) -> int:
    print(
        run_project(
            args.store,
            args.app,
            rebuild=args.rebuild,
            timeout=args.timeout,
            idle_timeout=args.idle_timeout,
        ),
        flush=True,
    )
    return 0


COMMAND = Command(
    name="project",
    help="bring a projection's read model up to date with the store",
    description="Apply the store's document events to the read model of the Projection "
    "that --app makes, each with its position in one transaction (a killed run resumes "
    "where it stopped, applying no event twice), then print what was done. By default it "
    "stops once caught up; --timeout or --idle-timeout keep it polling for new events.",
    add_arguments=_arguments,
    run=_run,
)
