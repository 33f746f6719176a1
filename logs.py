"""Standard logging for cyklo's processes (worker, API, `cyklo dev`): set up once, at start.

Lines carry ids and statuses only, never contact data: an address or a number would outlive
the customer's erasure in whatever keeps the logs.
"""

from __future__ import annotations

import logging

from settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(settings: Settings) -> None:
    """Log to stderr at CYKLO_LOG_LEVEL. Leaves a handler someone else installed (pytest's
    capture) in place, so a second call only changes the level."""
    logging.basicConfig(format=FORMAT)
    logging.getLogger().setLevel(settings.log_level)
