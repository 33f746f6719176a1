"""Errors for people: one clear line (or one per problem), never a stack trace."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from sqlalchemy.exc import OperationalError

from definition.problems import ProblemsForPeople, SaidToPeople


@contextmanager
def exit_on_error() -> Iterator[None]:
    try:
        yield
    except ProblemsForPeople as problems:
        for line in str(problems).splitlines():
            print(line, file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except (SystemExit, typer.Exit, typer.BadParameter):
        raise  # typer's own exits and usage errors already speak to people
    except SaidToPeople as error:
        print(f"cyklo: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except OperationalError as error:
        print(f"cyklo: {database_unreachable(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as error:  # the last line of defence: a person reads this, not a developer
        print(f"cyklo: {unexpected(error)}", file=sys.stderr)
        raise SystemExit(2) from None


def database_unreachable(error: OperationalError) -> str:
    """The driver's own first line (it names host and port, never a password), without
    SQLAlchemy's statement and link."""
    reason = str(error.orig or "no answer").strip().splitlines()[0]
    return f"the database does not answer ({reason}): check CYKLO_DATABASE_URL and that the server is up"


def unexpected(error: Exception) -> str:
    """A sentence, not a class name: what went wrong, and that it is cyklo's to fix."""
    what = str(error).strip().splitlines()[0] if str(error).strip() else "an unexpected error"
    return f"{what} (unexpected: please report it with the command you ran)"


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """The command, with any failure turned into one line for a person and an exit code."""

    @functools.wraps(command)  # typer reads the parameters through __wrapped__
    def run(*args: Any, **kwargs: Any) -> Any:
        with exit_on_error():
            return command(*args, **kwargs)

    return run
