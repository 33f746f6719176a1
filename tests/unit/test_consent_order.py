"""A consent change counts only if it is newer than the one cyklo holds for its channel:
platforms retry and deliver out of order, and a late "subscribed" must never undo a newer
"unsubscribed"."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from definition.channels import Channel
from storage import consents, customers, ledger
from storage.database import migrate, session_for
from storage.models import Customer

pytestmark = pytest.mark.unit

T1 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
T2 = T1 + timedelta(hours=1)
T3 = T2 + timedelta(hours=1)


def test_a_change_older_than_the_last_one_recorded_takes_no_effect() -> None:
    assert consents.takes_effect(T1, None, grants=True)
    assert consents.takes_effect(T3, T2, grants=True)
    assert not consents.takes_effect(T1, T2, grants=True)
    assert not consents.takes_effect(T1, T2, grants=False)


def test_at_the_same_instant_a_withdrawal_wins_over_a_grant() -> None:
    assert consents.takes_effect(T2, T2, grants=False)
    assert not consents.takes_effect(T2, T2, grants=True)


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/cyklo.db"
    migrate(url)
    return url


def changer(url: str) -> Callable[[Channel, bool, datetime], bool]:
    def change(channel: Channel, granted: bool, at: datetime) -> bool:
        with session_for(url) as session:
            return customers.change_consent(session, "bob", channel, granted, f"{granted} at {at}", at)

    return change


def bob(url: str) -> Customer:
    with session_for(url) as session:
        customer = session.get(Customer, "bob")
    assert customer is not None
    return customer


def test_a_new_customer_s_unsubscribe_outlasts_a_late_subscribe_but_not_a_newer_one(url: str) -> None:
    change = changer(url)

    # Bob is new to cyklo and unsubscribed: nothing changes, but the time is kept.
    assert change(Channel.EMAIL, False, T2)
    assert not change(Channel.EMAIL, True, T1)
    assert not bob(url).consent_email
    assert change(Channel.EMAIL, True, T3)
    assert bob(url).consent_email


def test_a_retried_subscribe_keeps_the_newer_unsubscribe_per_channel(url: str) -> None:
    change = changer(url)

    assert change(Channel.EMAIL, True, T1)
    assert change(Channel.EMAIL, False, T2)
    assert not change(Channel.EMAIL, True, T1)  # Shopify's retry of the first delivery
    # The other channel has its own history: an SMS consent of T1 is not older than anything.
    assert change(Channel.SMS, True, T1)
    saved = bob(url)
    assert (saved.consent_email, saved.consent_sms) == (False, True)
    assert (saved.consent_source, saved.consent_updated_at) == (f"True at {T1}", T2)
    with session_for(url) as session:
        history = [(row.channel, row.change, row.at) for row in consents.history(session, "bob")]
    assert history == [
        ("email", "granted", T1),
        ("sms", "granted", T1),
        ("email", "withdrawn", T2),
    ]

    assert change(Channel.EMAIL, True, T3)
    assert (bob(url).consent_email, bob(url).consent_sms) == (True, True)


def test_a_profile_saved_from_an_older_snapshot_keeps_the_newer_consent(url: str) -> None:
    with session_for(url) as session:
        customers.change_consent(session, "bob", Channel.EMAIL, False, "unsubscribed", T2)
    older = customers.CustomerProfile(
        id="bob", email="bob@example.com", consents=customers.Consents(email=True, source="signup", at=T1)
    )

    with session_for(url) as session:
        customers.upsert(session, older)
    # The contact data is the profile's; the consent stays the newer withdrawal.
    saved = bob(url)
    assert (saved.email, saved.consent_email, saved.consent_source) == (
        "bob@example.com",
        False,
        "unsubscribed",
    )


def test_an_unsubscribe_by_sendgrid_outlasts_an_older_subscribe_from_the_shop(url: str) -> None:
    change = changer(url)
    assert change(Channel.EMAIL, True, T1)
    with session_for(url) as session:
        ledger.set_email_consent(session, "bob", False, "sendgrid unsubscribe")
        session.commit()

    # The shop's subscribe, dated before SendGrid's unsubscribe, loses to it however late it comes.
    assert not change(Channel.EMAIL, True, T1 + timedelta(minutes=1))
    assert not bob(url).consent_email
