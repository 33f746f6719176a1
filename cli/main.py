"""The `cyklo` command."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

from cli.api import api
from cli.bench import bench
from cli.dev import dev
from cli.errors import exit_on_error
from cli.faults import faults
from cli.platform import act, customer_app, event, inspect, put_customer
from cli.publish import diff, publish, rollback, versions
from cli.reconcile import reconcile
from cli.simulate import simulate
from cli.validate import validate
from cli.worker import worker

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=__doc__)


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """The command, with any failure turned into one line for a person and an exit code."""

    @functools.wraps(command)  # typer reads the parameters through __wrapped__
    def run(*args: Any, **kwargs: Any) -> Any:
        with exit_on_error():
            return command(*args, **kwargs)

    return run


# A new command is a typed function in its own module (cli/<name>.py), listed here: the
# function name is the command name, its docstring the help, and `guarded` keeps
# tracebacks away from the people running it.
for _command in (
    validate,
    publish,
    versions,
    diff,
    rollback,
    simulate,
    worker,
    api,
    dev,
    event,
    inspect,
    act,
    bench,
    reconcile,
    faults,
):
    app.command()(guarded(_command))
customer_app.command("put")(guarded(put_customer))
app.add_typer(customer_app, name="customer")


if __name__ == "__main__":
    app()
