"""What `cyklo publish` and `cyklo diff` say changed between two versions of a journey."""

from __future__ import annotations

import json
from typing import Any

import pytest

from definition.changes import changes

pytestmark = pytest.mark.unit


def journey(**stages: list[dict[str, Any]]) -> str:
    return json.dumps(
        {
            "journey": "j",
            "entry": [{"on": "signed_up", "to": next(iter(stages))}],
            "stages": {name: {"flow": flow, "transitions": []} for name, flow in stages.items()},
        }
    )


WELCOME = {"send": {"channel": "email", "template": "welcome"}}
WAIT = {"wait": {"duration": "3d", "until": None}}
NUDGE = {"send": {"channel": "sms", "template": "nudge"}}


def test_the_same_content_has_no_changes() -> None:
    assert changes(journey(a=[WELCOME]), {"pl/email/x.txt": "x"}, journey(a=[WELCOME]), {"pl/email/x.txt": "x"}) == []


def test_a_first_version_names_its_stages() -> None:
    assert changes(None, {}, journey(a=[], b=[]), {}) == ["new journey: stages a, b"]


def test_steps_removed_added_and_changed_are_numbered_as_in_the_new_file() -> None:
    before = journey(a=[WELCOME, WAIT, NUDGE])
    after = journey(a=[WELCOME, {"wait": {"duration": "5d", "until": None}}, NUDGE, {"exit": {"reason": "done"}}])

    assert changes(before, {}, after, {}) == [
        "stage a step 2 changed: wait 3d → wait 5d",
        "stage a step 4 added: exit",
    ]
    assert changes(journey(a=[WELCOME, WAIT, NUDGE]), {}, journey(a=[WELCOME, NUDGE]), {}) == [
        "stage a step 2 removed: wait 3d"
    ]


def test_stages_added_and_removed_and_transitions_changed() -> None:
    before = json.loads(journey(a=[WELCOME], gone=[]))
    after = json.loads(journey(a=[WELCOME], fresh=[]))
    after["stages"]["a"]["transitions"] = [{"on": "purchase", "to": "fresh"}]
    after["quiet_hours"] = {"start": "22:00:00", "end": "08:00:00"}

    assert changes(json.dumps(before), {}, json.dumps(after), {}) == [
        "changed: quiet_hours",
        "stage fresh added",
        "stage gone removed",
        "stage a transitions changed",
    ]


def test_templates_are_named_by_message_channel_and_locale_whatever_their_parts() -> None:
    before = {"pl/email/welcome.html": "a", "pl/email/welcome.txt": "a", "en/sms/old.txt": "o"}
    after = {"pl/email/welcome.html": "b", "pl/email/welcome.txt": "a", "en/sms/new.txt": "n"}

    assert changes(journey(a=[]), before, journey(a=[]), after) == [
        "template new (sms, en) added",
        "template old (sms, en) removed",
        "template welcome (email, pl) changed",
    ]
