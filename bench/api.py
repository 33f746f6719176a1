"""The API process of a benchmark: `cyklo api` itself, with its database transactions counted."""

import runpy

from bench.counting import count_transactions

if __name__ == "__main__":
    count_transactions()
    # The command line sits above the bench in the layers: its module is run, not imported,
    # exactly as `python -m cli.main api …` runs it.
    runpy.run_module("cli.main", run_name="__main__", alter_sys=True)
