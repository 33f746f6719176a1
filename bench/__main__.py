"""`python -m bench …`: the same as `cyklo bench …`."""

import sys

from cli.main import app

if __name__ == "__main__":
    app(["bench", *sys.argv[1:]])
