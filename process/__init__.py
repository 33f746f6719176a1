"""Running cyklo's processes (`cyklo …`, `python worker.py`, `python -m bench`): how they stop,
and what reaches the person when they fail."""
