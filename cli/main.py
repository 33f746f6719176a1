"""The `cyklo` command."""

from __future__ import annotations

import typer

from bench.command import bench
from bench.faults.command import faults
from bench.imports import bench_import
from bench.reports_at_scale import bench_reports
from cli.api import api
from cli.dev import dev
from cli.imports import customers, import_app, orders, start
from cli.journey_tests import test
from cli.platform import act, customer_app, event, inspect, put_customer
from cli.preview import preview
from cli.publish import diff, publish, rollback, versions
from cli.reconcile import reconcile
from cli.report import report
from cli.report_experiments import report_experiments
from cli.report_lifecycle import report_lifecycle
from cli.send_test import send_test
from cli.simulate import simulate
from cli.validate import validate
from cli.worker import worker
from process.errors import guarded

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=__doc__)


# A new command is a typed function in its own module (cli/<name>.py, or bench/command.py
# beside the suite it runs, so `python -m bench` needs no cli), listed here: the
# function name is the command name, its docstring the help, and `guarded` keeps
# tracebacks away from the people running it.
for _command in (
    validate,
    publish,
    versions,
    diff,
    rollback,
    simulate,
    test,
    preview,
    send_test,
    worker,
    api,
    dev,
    event,
    inspect,
    act,
    bench,
    reconcile,
    report,
    report_experiments,
    faults,
    bench_reports,
    report_lifecycle,
    bench_import,
):
    app.command()(guarded(_command))
customer_app.command("put")(guarded(put_customer))
app.add_typer(customer_app, name="customer")
for _import in (customers, orders, start):
    import_app.command()(guarded(_import))
app.add_typer(import_app, name="import")


if __name__ == "__main__":
    app()
