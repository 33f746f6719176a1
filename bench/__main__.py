"""`python -m bench …`: the same as `cyklo bench …`."""

import typer

from bench.command import bench
from process.errors import guarded

if __name__ == "__main__":
    typer.run(guarded(bench))
