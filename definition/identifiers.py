"""The one rule for ids: customer ids, and the order and cart numbers events carry.

An id travels where nothing is encrypted or escaped for it: workflow ids, search attributes,
URL paths, history. So it is a short run of URL-safe characters, and never an email
address (workflow ids and search attributes must stay opaque). Digits alone are an id,
not a phone number: shops number their customers and orders that way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator

MAX_ID_LENGTH = 128
ID_CHARACTERS = "letters, digits and . _ : @ -"
ID_PATTERN = r"^[A-Za-z0-9_.:@-]+$"
_ID = re.compile(ID_PATTERN)
EMAIL_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
"""An email address anywhere in a text: local part, @, a domain with a dot."""

MAX_EVENT_ID_LENGTH = 200
_EVENT_ID = re.compile(r"[!-~]+")
"""Event ids come from other systems (Segment message ids, SendGrid's sg_event_id with
`=` and `/`): any visible ASCII character; they never appear in a URL path."""


def id_problem(value: object) -> str | None:
    """Why `value` is not an id, in words for the sender; None if it is one."""
    if not isinstance(value, str):
        return "an id is text"
    if not 0 < len(value) <= MAX_ID_LENGTH or not _ID.fullmatch(value):
        return f"an id is 1 to {MAX_ID_LENGTH} {ID_CHARACTERS}"
    if EMAIL_ADDRESS.search(value):
        return "an id must not be an email address: use the shop's own number for the customer"
    return None


def event_id_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return "an event id is text"
    if not 0 < len(value) <= MAX_EVENT_ID_LENGTH or not _EVENT_ID.fullmatch(value):
        return f"an event id is 1 to {MAX_EVENT_ID_LENGTH} visible ASCII characters (no spaces)"
    if EMAIL_ADDRESS.search(value):
        return "an event id must not contain an email address"
    return None


def _checked(problem_of: Callable[[object], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        problem = problem_of(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


ID_RULE = _checked(id_problem)
"""The rule as a pydantic validator, to add after declared constraints (an OpenAPI pattern)."""
Identifier = Annotated[str, ID_RULE]
"""A customer id (profiles, events, URL paths) or an order / cart number."""
EventId = Annotated[str, _checked(event_id_problem)]
