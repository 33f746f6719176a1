"""Errors for people: one clear line (or one per problem), never a stack trace."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from definition.problems import ProblemsForPeople


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
    except Exception as error:  # the last line of defence: a person reads this, not a developer
        print(f"cyklo: {type(error).__name__}: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """The command, with any failure turned into one line for a person and an exit code."""

    @functools.wraps(command)  # typer reads the parameters through __wrapped__
    def run(*args: Any, **kwargs: Any) -> Any:
        with exit_on_error():
            return command(*args, **kwargs)

    return run
