"""The command a benchmark's figures name is the one that was typed."""

from __future__ import annotations

import pytest

from bench.run import typed_command

pytestmark = pytest.mark.unit


def test_the_command_recorded_is_the_one_typed_through_the_cli_or_python_m() -> None:
    assert typed_command(["/venv/bin/cyklo", "bench", "--only", "base"]) == "cyklo bench --only base"
    assert typed_command(["/repo/bench/__main__.py", "--only", "base"]) == "cyklo bench --only base"
