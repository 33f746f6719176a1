"""`python -m bench.faults …`: the same as `cyklo faults …`."""

import typer

from bench.faults.command import faults
from process.errors import guarded

if __name__ == "__main__":
    typer.run(guarded(faults))
