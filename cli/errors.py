"""Errors for people: one clear line (or one per problem), never a stack trace."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from definition.loader import JourneyProblems


@contextmanager
def exit_on_error() -> Iterator[None]:
    from simulation.scenario import ScenarioError

    try:
        yield
    except (JourneyProblems, ScenarioError) as problems:
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
