"""`python -m bench.faults …`: the same as `cyklo faults …`."""

import sys

from cli.main import app

if __name__ == "__main__":
    app(["faults", *sys.argv[1:]])
