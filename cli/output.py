"""What every `--json` option prints: one key order for all of them."""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import to_jsonable_python


def json_text(data: Any) -> str:
    """`data` (models, lists of them, plain values) as indented JSON with its keys sorted at
    every level: two runs, or two versions of cyklo, print the same object the same way, so a
    script's `diff` or `jq` sees only real changes."""
    return json.dumps(to_jsonable_python(data), indent=2, ensure_ascii=False, sort_keys=True)
