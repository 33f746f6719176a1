"""The machine stays plain Python: importing it loads nothing of Temporal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def test_the_machine_imports_no_temporal() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, workflows.machine; print(sorted(m for m in sys.modules if 'temporal' in m))",
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )

    assert loaded.stdout.strip() == "[]"
