"""`python -m emulator --port 8025 [--outbox FILE]`: the provider emulator on its own, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from emulator.server import ProviderEmulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument(
        "--outbox", type=Path, default=None, help="keep what it accepts in this file, across restarts"
    )
    arguments = parser.parse_args()
    # Started as `python -m emulator &` from a script, SIGINT arrives ignored: Ctrl-C (or the
    # supervisor's SIGINT) must stop it all the same, as it stops every cyklo process.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        emulator = ProviderEmulator(port=arguments.port, outbox=arguments.outbox)
    except OSError as error:
        raise SystemExit(f"cannot listen on 127.0.0.1:{arguments.port}: {error.strerror}") from None
    with emulator:
        print(
            f"provider emulator on {emulator.url} (SendGrid /v3/mail/send, Twilio /2010-04-01/...)",
            flush=True,
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
